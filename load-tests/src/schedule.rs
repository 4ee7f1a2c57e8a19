//! The open loop's send schedule, and the one clock that both the publisher and the latency proxy
//! read.
//!
//! Message `i` is *meant* to be sent at `t0 + i / rate`. Its latency is measured from that
//! intended time, not from when the publisher got round to sending it: if the broker or sluice
//! stalls and the publisher falls behind, the messages it sends late still count the stall in
//! their latency (no "coordinated omission", the flaw of closed-loop load generators, which wait
//! for the system under test and so only ever measure it at the pace it chooses).
//!
//! The intended time travels inside the message as microseconds since the Unix epoch, so that
//! the proxy in front of InfluxDB can compute "written minus intended" from the write alone. Both
//! ends read [`EpochClock`], which is the wall clock sampled once and then advanced by the
//! monotonic clock: a wall-clock step during a run cannot distort the figures.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// Wall-clock microseconds since the Unix epoch, advanced monotonically from one reading.
#[derive(Debug, Clone, Copy)]
pub struct EpochClock {
    epoch_micros_at_start: u64,
    started: Instant,
}

impl EpochClock {
    pub fn new() -> anyhow::Result<Self> {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the system clock is before 1970")?;
        Ok(Self {
            epoch_micros_at_start: duration_micros(since_epoch),
            started: Instant::now(),
        })
    }

    /// A clock that reads `epoch_micros` now (tests).
    pub fn starting_at(epoch_micros: u64) -> Self {
        Self {
            epoch_micros_at_start: epoch_micros,
            started: Instant::now(),
        }
    }

    /// Microseconds since the Unix epoch, now.
    pub fn now_micros(&self) -> u64 {
        self.epoch_micros_at_start + duration_micros(self.started.elapsed())
    }

    /// The instant at which this clock reads `epoch_micros` (now, if that is already past).
    pub fn instant_at(&self, epoch_micros: u64) -> Instant {
        let offset = epoch_micros.saturating_sub(self.epoch_micros_at_start);
        self.started + Duration::from_micros(offset)
    }
}

fn duration_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// `count` messages at `rate` per second from `start_micros` (epoch microseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub start_micros: u64,
    pub rate: f64,
    pub count: u64,
}

impl Schedule {
    pub fn new(start_micros: u64, rate: f64, count: u64) -> anyhow::Result<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("the rate must be a positive number of messages per second, not {rate}");
        }
        if rate > 1_000_000.0 {
            // Intended times are whole microseconds: above a million per second two messages
            // would share one and the proxy could not tell their writes apart.
            bail!("the rate {rate}/s is above 1,000,000/s, which the schedule cannot express");
        }
        Ok(Self {
            start_micros,
            rate,
            count,
        })
    }

    /// The intended send time of message `index`, in epoch microseconds: `t0 + index / rate`.
    pub fn intended_micros(&self, index: u64) -> u64 {
        // f64 keeps whole microseconds exact up to 2^53 (year 2255 as epoch micros), and the
        // product stays far below that for any run this harness makes.
        self.start_micros + (index as f64 * 1e6 / self.rate).round() as u64
    }

    /// How many messages are due at `now_micros`: those whose intended time is not after it.
    pub fn due_by(&self, now_micros: u64) -> u64 {
        if now_micros < self.start_micros {
            return 0;
        }
        let elapsed = (now_micros - self.start_micros) as f64 / 1e6;
        // floor(elapsed * rate) is the last index due, so one more are due in all; the rounding
        // in intended_micros can put that index a microsecond later, which the check fixes.
        let mut due = (elapsed * self.rate).floor() as u64 + 1;
        while due > 0 && self.intended_micros(due - 1) > now_micros {
            due -= 1;
        }
        due.min(self.count)
    }

    /// How long the whole schedule lasts (the last message's intended time minus `t0`).
    pub fn span(&self) -> Duration {
        Duration::from_micros(
            self.intended_micros(self.count.saturating_sub(1)) - self.start_micros,
        )
    }
}

/// Latency of one write, in microseconds: written minus intended, 0 if the clocks disagree.
pub fn latency_micros(intended_micros: u64, written_micros: u64) -> u64 {
    written_micros.saturating_sub(intended_micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_780_000_000_000_000;

    #[test]
    fn intended_times_are_t0_plus_index_over_rate() {
        let schedule = Schedule::new(T0, 4_000.0, 10).expect("valid");
        assert_eq!(schedule.intended_micros(0), T0);
        assert_eq!(schedule.intended_micros(1), T0 + 250);
        assert_eq!(schedule.intended_micros(4_000), T0 + 1_000_000);
        // A rate that does not divide a second rounds to the nearest microsecond.
        let schedule = Schedule::new(T0, 3.0, 10).expect("valid");
        assert_eq!(schedule.intended_micros(1), T0 + 333_333);
        assert_eq!(schedule.intended_micros(2), T0 + 666_667);
    }

    #[test]
    fn intended_times_survive_the_trip_through_an_f64_value() {
        let schedule = Schedule::new(T0, 40_000.0, 2_000_000).expect("valid");
        for index in [0, 1, 39_999, 1_999_999] {
            let micros = schedule.intended_micros(index);
            assert_eq!((micros as f64) as u64, micros);
        }
    }

    #[test]
    fn due_counts_every_message_whose_time_has_come() {
        let schedule = Schedule::new(T0, 1_000.0, 5_000).expect("valid");
        assert_eq!(schedule.due_by(T0 - 1), 0);
        assert_eq!(schedule.due_by(T0), 1);
        assert_eq!(schedule.due_by(T0 + 999), 1);
        assert_eq!(schedule.due_by(T0 + 1_000), 2);
        // A stalled publisher that looks again after 2 s finds 2,001 due, not one: it catches
        // up, and each late message keeps its own intended time.
        assert_eq!(schedule.due_by(T0 + 2_000_000), 2_001);
        assert_eq!(schedule.due_by(T0 + 3_600_000_000), 5_000);
        let odd = Schedule::new(T0, 3.0, 100).expect("valid");
        assert_eq!(odd.due_by(T0 + 666_666), 2);
        assert_eq!(odd.due_by(T0 + 666_667), 3);
    }

    #[test]
    fn span_is_the_last_intended_time() {
        let schedule = Schedule::new(T0, 1_000.0, 2_000).expect("valid");
        assert_eq!(schedule.span(), Duration::from_micros(1_999_000));
    }

    #[test]
    fn nonsense_rates_are_refused() {
        assert!(Schedule::new(T0, 0.0, 1).is_err());
        assert!(Schedule::new(T0, -5.0, 1).is_err());
        assert!(Schedule::new(T0, f64::NAN, 1).is_err());
        assert!(Schedule::new(T0, 2e6, 1).is_err());
    }

    #[test]
    fn latency_is_written_minus_intended_and_never_negative() {
        assert_eq!(latency_micros(T0, T0 + 12_345), 12_345);
        assert_eq!(latency_micros(T0 + 5, T0), 0);
    }

    #[test]
    fn the_clock_maps_epoch_times_to_instants() {
        let clock = EpochClock::starting_at(T0);
        assert!(clock.now_micros() >= T0);
        let at = clock.instant_at(T0 + 1_000_000);
        let now = Instant::now();
        assert!(at > now && at <= now + Duration::from_secs(1));
    }
}
