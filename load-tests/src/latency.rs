//! End-to-end latency as an hdrhistogram, and throughput over time, from the proxy's log of
//! writes.

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::json;

/// The longest latency the histogram tells apart from "longer" (an hour, in microseconds).
const MAX_TRACKED_MICROS: u64 = 3_600_000_000;

/// Latencies with three significant digits (hdrhistogram's usual precision: 0.1 %).
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
}

impl LatencyHistogram {
    pub fn new() -> anyhow::Result<Self> {
        let histogram = Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3)
            .context("creating the latency histogram")?;
        Ok(Self { histogram })
    }

    /// Records one latency; anything beyond an hour counts as an hour, zero as a microsecond.
    pub fn record_micros(&mut self, micros: u64) {
        self.histogram
            .saturating_record(micros.clamp(1, MAX_TRACKED_MICROS));
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Adds every latency `other` recorded (each of several senders keeps its own histogram).
    pub fn add(&mut self, other: &LatencyHistogram) -> anyhow::Result<()> {
        self.histogram
            .add(&other.histogram)
            .context("adding latency histograms")
    }

    pub fn summary(&self) -> LatencySummary {
        let millis = |micros: u64| micros as f64 / 1000.0;
        let at = |quantile: f64| millis(self.histogram.value_at_quantile(quantile));
        if self.histogram.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.histogram.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: millis(self.histogram.max()),
            mean_ms: self.histogram.mean() / 1000.0,
        }
    }
}

/// The percentiles a run reports, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencySummary {
    /// `p50 3.1 ms, p90 9.0 ms, p99 24.8 ms, p99.9 40.2 ms, max 51.0 ms (49500 writes)`.
    pub fn line(&self) -> String {
        self.line_of("writes")
    }

    /// [`LatencySummary::line`], counting `what` (`requests`, ...).
    pub fn line_of(&self, what: &str) -> String {
        format!(
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms ({} {what})",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "count": self.count,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "p99_9_ms": self.p999_ms,
            "max_ms": self.max_ms,
            "mean_ms": self.mean_ms,
        })
    }
}

/// How many events fell in each whole second after `start_micros` (index 0: the first second).
/// Events before the start count in second 0.
pub fn per_second_counts(
    start_micros: u64,
    event_micros: impl IntoIterator<Item = u64>,
) -> Vec<u64> {
    let mut counts: Vec<u64> = Vec::new();
    for micros in event_micros {
        let second = (micros.saturating_sub(start_micros) / 1_000_000) as usize;
        if counts.len() <= second {
            counts.resize(second + 1, 0);
        }
        counts[second] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut latencies = LatencyHistogram::new().expect("histogram");
        // 1 ms .. 1000 ms, one each: p50 is 500 ms, p99 990 ms, p99.9 999 ms.
        for millis in 1..=1000u64 {
            latencies.record_micros(millis * 1000);
        }
        let summary = latencies.summary();
        assert_eq!(summary.count, 1000);
        // Three significant digits: each percentile is within 0.1 % of the exact value.
        let close = |actual: f64, expected: f64| (actual - expected).abs() <= expected * 0.001;
        assert!(close(summary.p50_ms, 500.0), "{summary:?}");
        assert!(close(summary.p90_ms, 900.0), "{summary:?}");
        assert!(close(summary.p99_ms, 990.0), "{summary:?}");
        assert!(close(summary.p999_ms, 999.0), "{summary:?}");
        assert!(close(summary.max_ms, 1000.0), "{summary:?}");
        assert!(close(summary.mean_ms, 500.5), "{summary:?}");
    }

    #[test]
    fn one_stall_shows_in_the_tail_not_the_median() {
        let mut latencies = LatencyHistogram::new().expect("histogram");
        for _ in 0..990 {
            latencies.record_micros(2_000);
        }
        for _ in 0..10 {
            latencies.record_micros(800_000);
        }
        let summary = latencies.summary();
        assert!((summary.p50_ms - 2.0).abs() < 0.01);
        assert!(summary.p999_ms > 790.0);
        assert!(
            summary
                .line()
                .starts_with("p50 2.0 ms, p90 2.0 ms, p99 2.0 ms, p99.9 80")
        );
    }

    #[test]
    fn out_of_range_latencies_are_clamped_not_lost() {
        let mut latencies = LatencyHistogram::new().expect("histogram");
        latencies.record_micros(0);
        latencies.record_micros(u64::MAX);
        assert_eq!(latencies.count(), 2);
        assert!(latencies.summary().max_ms >= 3_600_000.0);
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        let summary = LatencyHistogram::new().expect("histogram").summary();
        assert_eq!(summary, LatencySummary::default());
        assert_eq!(summary.to_json()["count"], json!(0));
    }

    #[test]
    fn counts_per_second_include_empty_seconds() {
        let start = 10_000_000;
        let counts = per_second_counts(start, [start, start + 999_999, start + 2_500_000, 0]);
        assert_eq!(counts, vec![3, 0, 1]);
        assert!(per_second_counts(start, []).is_empty());
    }
}
