//! What the push inputs count and log, in one place so counters and logs never drift.
//!
//! - `sluice_intake_received_total{input}`: lines (or samples) accepted and handed to the
//!   publisher.
//! - `sluice_intake_refused_total{input, reason}`: what an input refused or skipped: a line
//!   that does not parse, a non-finite sample, a series without a name, a body too large,
//!   bad credentials, an over-long Graphite line.
//! - `sluice_intake_dropped_total{input, reason}`: lines received and then lost (UDP only: a
//!   full publish queue, or a publish that failed at shutdown).
//! - `sluice_intake_requests_total{input, status}`: HTTP answers by status.
//!
//! The publisher counts `sluice_intake_published_total{input, result}` (see
//! `sluice_amqp::confirmed`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) fn received(input: &'static str, count: usize) {
    metrics::counter!("sluice_intake_received_total", "input" => input).increment(count as u64);
}

pub(crate) fn refused(input: &'static str, reason: &'static str, count: usize) {
    metrics::counter!("sluice_intake_refused_total", "input" => input, "reason" => reason)
        .increment(count as u64);
}

pub(crate) fn dropped(input: &'static str, reason: &'static str, count: usize) {
    metrics::counter!("sluice_intake_dropped_total", "input" => input, "reason" => reason)
        .increment(count as u64);
    tracing::warn!(input, reason, lines = count, "intake dropped lines");
}

pub(crate) fn answered(input: &'static str, status: u16) {
    metrics::counter!("sluice_intake_requests_total", "input" => input, "status" => status.to_string())
        .increment(1);
}

/// Lets a log line through at most once per interval, so a sender that repeats a mistake
/// thousands of times a second is logged, not flooding the log. The counter still counts each.
#[derive(Debug)]
pub(crate) struct RateLimitedLog {
    interval: Duration,
    last: Mutex<Option<Instant>>,
}

impl RateLimitedLog {
    pub(crate) const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
        }
    }

    /// True when a line may be logged now.
    pub(crate) fn allow(&self) -> bool {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        match *last {
            Some(previous) if now.duration_since(previous) < self.interval => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limited_log_lets_one_line_through_per_interval() {
        let log = RateLimitedLog::new(Duration::from_secs(3600));
        assert!(log.allow());
        assert!(!log.allow());
    }
}
