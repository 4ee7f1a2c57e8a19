//! Drain figures, and sluice's drain as a ratio to the null consumer's.
//!
//! An absolute rate such as "22,800 msgs/s" depends on the machine, the broker's version and
//! whatever else shares the cores at the time. The rate at which the broker alone hands the same
//! messages to a consumer that does nothing, measured in the same session, is the ceiling sluice
//! can approach, so each drain is reported as a fraction of it, and its CPU per message as a
//! multiple of the null consumer's.

use std::time::Duration;

use serde_json::json;

use crate::procfs::ConsumerUse;

/// What one consumer did while draining a pre-loaded queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrainFigures {
    /// Messages drained.
    pub messages: u64,
    pub elapsed: Duration,
    /// CPU time the consumer's whole process spent during the drain, if it was measured.
    pub cpu: Option<Duration>,
    /// The process's peak RSS (`VmHWM`) at the end of the drain, in KiB.
    pub peak_rss_kib: Option<u64>,
    /// Context switches of all the process's threads during the drain: how often a thread
    /// stopped to wait for another (a delivery, a wake-up), the cost the profile points at.
    pub context_switches: Option<u64>,
    /// CPU time the broker (RabbitMQ's `beam.smp`) spent during the drain, if it was measured:
    /// on a shared machine it tells a slow broker from a slow consumer.
    pub broker_cpu: Option<Duration>,
    /// CPU time the store (InfluxDB's `influxd`) spent during the drain, if it was measured.
    /// The null consumer has no store; on a machine this small, sluice's shares the cores.
    pub store_cpu: Option<Duration>,
    /// How busy all the machine's cores were over the drain (0 to 1), whoever used them.
    pub machine_busy: Option<f64>,
}

impl DrainFigures {
    /// A consumer's drain of `messages` in `elapsed`, using `used`; the neighbours' figures are
    /// left for the caller, who measured them.
    pub fn consumed(messages: u64, elapsed: Duration, used: Option<ConsumerUse>) -> Self {
        Self {
            messages,
            elapsed,
            cpu: used.map(|used| used.cpu),
            peak_rss_kib: used.map(|used| used.peak_rss_kib),
            context_switches: used.map(|used| used.context_switches),
            broker_cpu: None,
            store_cpu: None,
            machine_busy: None,
        }
    }

    /// Messages per second; `None` for a drain that took no measurable time.
    pub fn messages_per_second(&self) -> Option<f64> {
        let seconds = self.elapsed.as_secs_f64();
        (seconds > 0.0).then(|| self.messages as f64 / seconds)
    }

    /// Microseconds of CPU per message; `None` without a CPU figure or without messages.
    pub fn cpu_micros_per_message(&self) -> Option<f64> {
        self.micros_per_message(self.cpu?)
    }

    /// Microseconds of the broker's CPU per message.
    pub fn broker_cpu_micros_per_message(&self) -> Option<f64> {
        self.micros_per_message(self.broker_cpu?)
    }

    /// Microseconds of the store's CPU per message.
    pub fn store_cpu_micros_per_message(&self) -> Option<f64> {
        self.micros_per_message(self.store_cpu?)
    }

    /// The whole path's CPU per message: consumer, broker and, where there is one, the store.
    /// `None` unless the consumer's and the broker's were both measured.
    pub fn path_cpu_micros_per_message(&self) -> Option<f64> {
        let path = self.cpu? + self.broker_cpu? + self.store_cpu.unwrap_or_default();
        self.micros_per_message(path)
    }

    /// Context switches per message.
    pub fn context_switches_per_message(&self) -> Option<f64> {
        let switches = self.context_switches?;
        (self.messages > 0).then(|| switches as f64 / self.messages as f64)
    }

    fn micros_per_message(&self, cpu: Duration) -> Option<f64> {
        (self.messages > 0).then(|| cpu.as_secs_f64() * 1e6 / self.messages as f64)
    }

    /// One line: `100000 msgs in 4.38s (22831 msgs/s), cpu 2.98s (29.8 µs/msg), peak rss 41 MiB`.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} msgs in {:.2}s ({} msgs/s)",
            self.messages,
            self.elapsed.as_secs_f64(),
            format_option(self.messages_per_second(), 0)
        );
        if let Some(cpu) = self.cpu {
            line.push_str(&format!(
                ", cpu {:.2}s ({} µs/msg)",
                cpu.as_secs_f64(),
                format_option(self.cpu_micros_per_message(), 1)
            ));
        }
        if let Some(kib) = self.peak_rss_kib {
            line.push_str(&format!(", peak rss {:.0} MiB", kib as f64 / 1024.0));
        }
        if let Some(switches) = self.context_switches {
            line.push_str(&format!(
                ", {switches} context switches ({}/msg)",
                format_option(self.context_switches_per_message(), 3)
            ));
        }
        if let Some(cpu) = self.broker_cpu {
            line.push_str(&format!(
                ", broker cpu {:.2}s ({} µs/msg)",
                cpu.as_secs_f64(),
                format_option(self.broker_cpu_micros_per_message(), 1)
            ));
        }
        if let Some(cpu) = self.store_cpu {
            line.push_str(&format!(
                ", influxdb cpu {:.2}s ({} µs/msg)",
                cpu.as_secs_f64(),
                format_option(self.store_cpu_micros_per_message(), 1)
            ));
        }
        if let Some(busy) = self.machine_busy {
            line.push_str(&format!(", cores {:.0}% busy", busy * 100.0));
        }
        line
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "messages": self.messages,
            "seconds": self.elapsed.as_secs_f64(),
            "messages_per_second": self.messages_per_second(),
            "cpu_seconds": self.cpu.map(|cpu| cpu.as_secs_f64()),
            "cpu_micros_per_message": self.cpu_micros_per_message(),
            "peak_rss_kib": self.peak_rss_kib,
            "context_switches": self.context_switches,
            "context_switches_per_message": self.context_switches_per_message(),
            "broker_cpu_seconds": self.broker_cpu.map(|cpu| cpu.as_secs_f64()),
            "broker_cpu_micros_per_message": self.broker_cpu_micros_per_message(),
            "store_cpu_seconds": self.store_cpu.map(|cpu| cpu.as_secs_f64()),
            "store_cpu_micros_per_message": self.store_cpu_micros_per_message(),
            "path_cpu_micros_per_message": self.path_cpu_micros_per_message(),
            "machine_busy": self.machine_busy,
        })
    }
}

/// sluice's drain beside the null consumer's, of the same bodies in the same session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub sluice: DrainFigures,
    pub null_consumer: DrainFigures,
}

impl Comparison {
    /// sluice's rate as a fraction of the null consumer's (1.0: as fast as the broker alone).
    pub fn rate_ratio(&self) -> Option<f64> {
        ratio(
            self.sluice.messages_per_second()?,
            self.null_consumer.messages_per_second()?,
        )
    }

    /// sluice's CPU per message as a multiple of the null consumer's.
    pub fn cpu_ratio(&self) -> Option<f64> {
        ratio(
            self.sluice.cpu_micros_per_message()?,
            self.null_consumer.cpu_micros_per_message()?,
        )
    }

    /// The rate ratio the machine allows when both drains are limited by the cores: the null
    /// path's CPU per message (consumer + broker) over sluice's (sluice + broker + InfluxDB).
    /// With every core busy, a path's rate is the cores' time divided by its CPU per message,
    /// so no consumer can beat this ratio without making the whole path cheaper.
    pub fn cpu_bound_ratio(&self) -> Option<f64> {
        ratio(
            self.null_consumer.path_cpu_micros_per_message()?,
            self.sluice.path_cpu_micros_per_message()?,
        )
    }

    /// The combined report line.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "drain vs null consumer: sluice {} msgs/s, null consumer {} msgs/s, ratio {}; \
             cpu sluice {} µs/msg, null consumer {} µs/msg, ratio {}",
            format_option(self.sluice.messages_per_second(), 0),
            format_option(self.null_consumer.messages_per_second(), 0),
            format_option(self.rate_ratio(), 2),
            format_option(self.sluice.cpu_micros_per_message(), 1),
            format_option(self.null_consumer.cpu_micros_per_message(), 1),
            format_option(self.cpu_ratio(), 2),
        );
        if let Some(bound) = self.cpu_bound_ratio() {
            line.push_str(&format!(
                "; whole path cpu sluice {} µs/msg, null consumer {} µs/msg: \
                 with the cores busy, the ratio can be at most {bound:.2}",
                format_option(self.sluice.path_cpu_micros_per_message(), 1),
                format_option(self.null_consumer.path_cpu_micros_per_message(), 1),
            ));
        }
        line
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "sluice": self.sluice.to_json(),
            "null_consumer": self.null_consumer.to_json(),
            "rate_ratio": self.rate_ratio(),
            "cpu_per_message_ratio": self.cpu_ratio(),
            "cpu_bound_ratio": self.cpu_bound_ratio(),
        })
    }
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0 && numerator.is_finite() && denominator.is_finite())
        .then(|| numerator / denominator)
}

fn format_option(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(value) => format!("{value:.decimals$}"),
        None => "n/a".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(messages: u64, millis: u64, cpu_millis: Option<u64>) -> DrainFigures {
        DrainFigures {
            messages,
            elapsed: Duration::from_millis(millis),
            cpu: cpu_millis.map(Duration::from_millis),
            peak_rss_kib: None,
            context_switches: None,
            broker_cpu: None,
            store_cpu: None,
            machine_busy: None,
        }
    }

    #[test]
    fn rate_and_cpu_per_message() {
        let figures = drain(100_000, 4_000, Some(3_000));
        assert_eq!(figures.messages_per_second(), Some(25_000.0));
        assert_eq!(figures.cpu_micros_per_message(), Some(30.0));
    }

    #[test]
    fn no_time_or_no_messages_give_no_figure_rather_than_infinity() {
        assert_eq!(drain(10, 0, Some(1)).messages_per_second(), None);
        assert_eq!(drain(0, 10, Some(1)).cpu_micros_per_message(), None);
        assert_eq!(drain(10, 10, None).cpu_micros_per_message(), None);
    }

    #[test]
    fn ratios_put_sluice_over_the_null_consumer() {
        let comparison = Comparison {
            sluice: drain(100_000, 5_000, Some(3_000)),
            null_consumer: drain(100_000, 2_000, Some(800)),
        };
        // 20,000 / 50,000 msgs/s; 30 / 8 µs per message.
        assert_eq!(comparison.rate_ratio(), Some(0.4));
        assert_eq!(comparison.cpu_ratio(), Some(3.75));
        assert_eq!(
            comparison.summary(),
            "drain vs null consumer: sluice 20000 msgs/s, null consumer 50000 msgs/s, ratio 0.40; \
             cpu sluice 30.0 µs/msg, null consumer 8.0 µs/msg, ratio 3.75"
        );
    }

    #[test]
    fn a_missing_cpu_figure_leaves_only_the_cpu_ratio_out() {
        let comparison = Comparison {
            sluice: drain(100, 1_000, None),
            null_consumer: drain(100, 500, Some(0)),
        };
        assert_eq!(comparison.rate_ratio(), Some(0.5));
        assert_eq!(comparison.cpu_ratio(), None);
        assert!(comparison.summary().ends_with("ratio n/a"));
        assert_eq!(comparison.to_json()["cpu_per_message_ratio"], json!(null));
    }

    #[test]
    fn the_cpu_bound_ratio_weighs_the_whole_path_of_each_drain() {
        let comparison = Comparison {
            sluice: DrainFigures {
                broker_cpu: Some(Duration::from_millis(2_500)),
                store_cpu: Some(Duration::from_millis(1_500)),
                machine_busy: Some(0.97),
                ..drain(100_000, 5_000, Some(2_000))
            },
            null_consumer: DrainFigures {
                broker_cpu: Some(Duration::from_millis(2_000)),
                ..drain(100_000, 2_000, Some(1_000))
            },
        };
        // sluice's path: 20 + 25 + 15 µs; the null consumer's: 10 + 20 µs.
        assert_eq!(comparison.sluice.path_cpu_micros_per_message(), Some(60.0));
        assert_eq!(
            comparison.null_consumer.path_cpu_micros_per_message(),
            Some(30.0)
        );
        assert_eq!(comparison.cpu_bound_ratio(), Some(0.5));
        assert!(
            comparison.summary().ends_with(
                "whole path cpu sluice 60.0 µs/msg, null consumer 30.0 µs/msg: \
                 with the cores busy, the ratio can be at most 0.50"
            ),
            "{}",
            comparison.summary()
        );
        assert!(comparison.sluice.summary().ends_with(
            "broker cpu 2.50s (25.0 µs/msg), influxdb cpu 1.50s (15.0 µs/msg), cores 97% busy"
        ));
        assert_eq!(comparison.to_json()["cpu_bound_ratio"], json!(0.5));
    }

    #[test]
    fn without_the_broker_cpu_there_is_no_whole_path_figure() {
        let comparison = Comparison {
            sluice: drain(100, 1_000, Some(10)),
            null_consumer: drain(100, 500, Some(5)),
        };
        assert_eq!(comparison.sluice.path_cpu_micros_per_message(), None);
        assert_eq!(comparison.cpu_bound_ratio(), None);
        assert!(!comparison.summary().contains("whole path"));
    }

    #[test]
    fn summary_and_json_carry_the_same_figures() {
        let figures = DrainFigures {
            peak_rss_kib: Some(41 * 1024),
            context_switches: Some(12_345),
            broker_cpu: Some(Duration::from_millis(1_500)),
            ..drain(100_000, 4_380, Some(2_980))
        };
        assert_eq!(
            figures.summary(),
            "100000 msgs in 4.38s (22831 msgs/s), cpu 2.98s (29.8 µs/msg), peak rss 41 MiB, \
             12345 context switches (0.123/msg), broker cpu 1.50s (15.0 µs/msg)"
        );
        let json = figures.to_json();
        assert_eq!(json["messages"], json!(100_000));
        assert_eq!(json["peak_rss_kib"], json!(41 * 1024));
        assert_eq!(json["cpu_seconds"], json!(2.98));
        assert_eq!(json["context_switches_per_message"], json!(0.12345));
        assert_eq!(json["broker_cpu_micros_per_message"], json!(15.0));
    }
}
