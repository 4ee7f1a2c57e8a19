//! The shape of `GET /status`: what the page and `sluice top` show. Serialised by the running
//! sluice, read back by `sluice top`, so both sides share these types.
//!
//! Rates are per second over the last sampling interval; `*_total` are counts since start;
//! percentiles are over the values recorded in the last interval (`None` when none was).

use serde::{Deserialize, Serialize};
use sluice_rest::stage::RuleActivitySnapshot;

use super::recent::LogEntry;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// `0.1.0 (commit ...)`.
    pub version: String,
    pub uptime_s: u64,
    /// Unix milliseconds of the sample.
    pub sampled_at_ms: i64,
    /// The length of the interval the rates are over, in seconds.
    pub interval_s: f64,
    pub paths: Vec<PathFigures>,
    pub acks: AckFigures,
    pub dead_letters: DeadLetterFigures,
    /// `None` when the rule stage does not run.
    pub rules: Option<RuleFigures>,
    /// The last warnings and errors, newest first.
    pub errors: Vec<LogEntry>,
}

/// One path: its sources, the decode (and encode) stage, the batcher and the sink.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PathFigures {
    /// `metrics` or `events`.
    pub name: String,
    /// Every source of the path is consuming from the broker.
    pub consuming: bool,
    pub sources: Vec<SourceFigures>,
    pub decode: DecodeFigures,
    pub batch: BatchFigures,
    pub sink: SinkFigures,
    /// The path's received rate, oldest first, one per interval (the last minute or so).
    pub received_history: Vec<f64>,
    /// The sink's written rate, oldest first.
    pub written_history: Vec<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceFigures {
    pub name: String,
    pub queue: String,
    /// The broker's URL, its password as `***`.
    pub broker: String,
    pub received_per_s: f64,
    pub received_total: u64,
    /// Delivered by the broker, not yet covered by an ack.
    pub unacked: f64,
    pub reconnects_total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecodeFigures {
    /// `normalise` or `events`: the stage bad input is dead-lettered under.
    pub stage: String,
    pub decoded_per_s: f64,
    pub decoded_total: u64,
    /// Refused by the decoder (bad input), on its way to the dead-letter publisher.
    pub rejected_per_s: f64,
    pub control_messages_total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchFigures {
    pub batches_per_s: f64,
    pub items_p50: Option<f64>,
    pub items_p99: Option<f64>,
    pub bytes_p50: Option<f64>,
    pub bytes_p99: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkFigures {
    /// `influx` or `elasticsearch`.
    pub name: String,
    /// The store's URL without credentials.
    pub url: String,
    pub written_per_s: f64,
    pub written_total: u64,
    pub retried_per_s: f64,
    pub rejected_per_s: f64,
    /// Taken by the sink driver, not yet delivered or dead-lettered (retries included).
    pub in_flight: f64,
    pub write_p50_ms: Option<f64>,
    pub write_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AckFigures {
    pub acked_per_s: f64,
    pub acked_total: u64,
    pub requeued_per_s: f64,
    pub requeued_total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterFigures {
    pub exchange: String,
    /// Confirmed by the broker, per second.
    pub dead_lettered_per_s: f64,
    pub by_reason: Vec<ReasonFigures>,
    /// Letters the broker did not take (`unroutable`, `nack`, `connection`), since start.
    pub failures: Vec<CountFigures>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReasonFigures {
    pub stage: String,
    pub reason: String,
    /// Confirmed dead letters since start.
    pub total: u64,
    pub per_s: f64,
}

/// A count by one label value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CountFigures {
    pub label: String,
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleFigures {
    /// The manager's REST URL without credentials.
    pub manager: String,
    pub fired_per_s: f64,
    pub fired_total: u64,
    /// `sluice_actions_total` by `kind/outcome`.
    pub actions: Vec<CountFigures>,
    pub activity: RuleActivitySnapshot,
}
