//! The samples of one key over a moving window of event time, and the stats computed over them.
//!
//! Samples are kept sorted by time (ties in arrival order), so every stat is a plain pass over a
//! slice and an out-of-order point only costs an insertion. Stats are recomputed at each
//! evaluation: the window is bounded, and nothing incremental can drift or lose exactness across
//! a checkpoint.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One observation: event time (Unix ms) and the field's value (always finite).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub time_ms: i64,
    #[serde(with = "crate::exact_float::exact_f64")]
    pub value: f64,
}

/// What a comparison rule computes over its window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    Avg,
    Min,
    Max,
    Sum,
    Count,
    /// Per-second increase between the oldest and newest sample; a decrease is a counter reset.
    Rate,
    /// The newest sample's value.
    Last,
    /// Nearest-rank percentile, N in (0, 100].
    Percentile(f64),
}

impl FromStr for Stat {
    type Err = String;

    /// `avg`, `min`, `max`, `sum`, `count`, `rate`, `last`, `pN` or `p(N)` (`p99`, `p(99.9)`).
    fn from_str(text: &str) -> Result<Stat, String> {
        let stat = match text {
            "avg" => Stat::Avg,
            "min" => Stat::Min,
            "max" => Stat::Max,
            "sum" => Stat::Sum,
            "count" => Stat::Count,
            "rate" => Stat::Rate,
            "last" => Stat::Last,
            _ => return parse_percentile(text),
        };
        Ok(stat)
    }
}

fn parse_percentile(text: &str) -> Result<Stat, String> {
    let unknown = || {
        format!(
            "unknown stat `{text}`; expected one of avg, min, max, sum, count, rate, last, \
             pN or p(N) with N in (0, 100]"
        )
    };
    let Some(rest) = text.strip_prefix('p') else {
        return Err(unknown());
    };
    let number_text = rest
        .strip_prefix('(')
        .and_then(|inner| inner.strip_suffix(')'))
        .unwrap_or(rest);
    let percent: f64 = number_text.parse().map_err(|_| unknown())?;
    if !(percent > 0.0 && percent <= 100.0) {
        return Err(format!("percentile {text}: N must be in (0, 100]"));
    }
    Ok(Stat::Percentile(percent))
}

impl fmt::Display for Stat {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stat::Avg => formatter.write_str("avg"),
            Stat::Min => formatter.write_str("min"),
            Stat::Max => formatter.write_str("max"),
            Stat::Sum => formatter.write_str("sum"),
            Stat::Count => formatter.write_str("count"),
            Stat::Rate => formatter.write_str("rate"),
            Stat::Last => formatter.write_str("last"),
            Stat::Percentile(percent) => write!(formatter, "p({percent})"),
        }
    }
}

impl Stat {
    /// The stat over `samples`, which must be sorted by time. None when there is no value: no
    /// samples, `rate` without two samples at different times, or a non-finite result.
    pub fn compute(&self, samples: &[Sample]) -> Option<f64> {
        let (first, last) = (samples.first()?, samples.last()?);
        let values = samples.iter().map(|sample| sample.value);
        let result = match self {
            Stat::Avg => values.sum::<f64>() / samples.len() as f64,
            Stat::Min => values.fold(f64::INFINITY, f64::min),
            Stat::Max => values.fold(f64::NEG_INFINITY, f64::max),
            Stat::Sum => values.sum(),
            Stat::Count => samples.len() as f64,
            Stat::Last => last.value,
            Stat::Rate => {
                let elapsed_ms = last.time_ms.checked_sub(first.time_ms)?;
                if elapsed_ms <= 0 {
                    return None;
                }
                counter_increase(samples) / (elapsed_ms as f64 / 1000.0)
            }
            Stat::Percentile(percent) => {
                let mut sorted: Vec<f64> = values.collect();
                sorted.sort_by(f64::total_cmp);
                let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
                *sorted.get(rank.clamp(1, sorted.len()) - 1)?
            }
        };
        result.is_finite().then_some(result)
    }
}

/// The increase of a counter over time-sorted samples: the sum of the rises, where a fall means
/// the counter restarted from zero, so the new value is all increase since the restart.
fn counter_increase(samples: &[Sample]) -> f64 {
    samples
        .windows(2)
        .map(|pair| {
            let (previous, current) = (pair[0].value, pair[1].value);
            if current >= previous {
                current - previous
            } else {
                current
            }
        })
        .sum()
}

/// One key's samples, sorted by time, ties in arrival order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Window {
    samples: VecDeque<Sample>,
}

impl Window {
    /// Adds a sample unless it is older than the window (returns false then), drops samples that
    /// left the window, and keeps at most `max_samples` (the oldest go first).
    pub(crate) fn insert(&mut self, sample: Sample, window_ms: i64, max_samples: usize) -> bool {
        let newest_ms = self
            .newest_ms()
            .map_or(sample.time_ms, |newest| newest.max(sample.time_ms));
        let oldest_kept_ms = newest_ms.saturating_sub(window_ms);
        if sample.time_ms < oldest_kept_ms {
            return false;
        }
        let position = self
            .samples
            .partition_point(|kept| kept.time_ms <= sample.time_ms);
        self.samples.insert(position, sample);
        while self
            .samples
            .front()
            .is_some_and(|oldest| oldest.time_ms < oldest_kept_ms)
        {
            self.samples.pop_front();
        }
        self.truncate(max_samples);
        true
    }

    pub(crate) fn truncate(&mut self, max_samples: usize) {
        while self.samples.len() > max_samples.max(1) {
            self.samples.pop_front();
        }
    }

    /// The key's event clock: the newest sample's time.
    pub(crate) fn newest_ms(&self) -> Option<i64> {
        self.samples.back().map(|sample| sample.time_ms)
    }

    pub(crate) fn compute(&mut self, stat: Stat) -> Option<f64> {
        stat.compute(self.samples.make_contiguous())
    }
}
