//! The checks of sluice's fuzz targets: one function per decoder that reads outside input. Each
//! takes arbitrary bytes, runs them through the decoder exactly as the pipeline does, and panics
//! when a property the pipeline relies on does not hold (a panic in the decoder itself counts
//! too). Where the decoder's output goes on to a store, the target checks that output as the
//! store would read it: a point is encoded and parsed back by InfluxDB's line-protocol parser,
//! a document is read as JSON with a UTC `@timestamp`.
//!
//! cargo-fuzz's package (`benches/fuzz`, nightly, outside the workspace) calls these functions
//! from libFuzzer, one target each; this crate's `tests/replay.rs` runs them on stable over
//! every corpus and every crash kept in `benches/fuzz/`, so CI guards what fuzzing found.
//!
//! Targets ([`TARGETS`]), each in its module:
//!
//! - [`diamond`]: Diamond metric bodies normalised, under both namings.
//! - [`events`]: Cloudify event and log bodies to documents, with index patterns.
//! - [`graphite`]: Graphite plaintext bodies named by Graphite templates.
//! - [`config`]: the configuration file, loaded and validated.
//! - [`groups`]: the manager's `groups` files, run by the policy engine.
//! - [`generic_rules`]: generic rule files, run by the generic engine.
//! - [`influx_response`]: InfluxDB's answers to a refused write.
//! - [`elasticsearch_response`]: Elasticsearch's `_bulk` and error answers.
//!
//! `line_protocol` (private) holds the round trip both metrics targets check.
//!
//! A target whose input has two parts (a configuration and a body) takes them separated by the
//! first NUL byte ([`split_at_nul`]); without one, the whole input is the body and the
//! configuration is a fixed, realistic one, so that the corpora's real bodies work unchanged.

mod config;
mod diamond;
mod elasticsearch_response;
mod events;
mod generic_rules;
mod graphite;
mod groups;
mod influx_response;
mod line_protocol;

pub use config::config;
pub use diamond::diamond;
pub use elasticsearch_response::elasticsearch_response;
pub use events::events;
pub use generic_rules::generic_rules;
pub use graphite::graphite;
pub use groups::groups;
pub use influx_response::influx_response;

/// A target's checks: arbitrary bytes in, a panic when a property does not hold.
pub type Target = fn(&[u8]);

/// Every target by name: the name is its cargo-fuzz target and its directory under
/// `benches/fuzz/corpus/` and `benches/fuzz/artifacts/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("diamond", diamond),
    ("events", events),
    ("graphite", graphite),
    ("config", config),
    ("groups", groups),
    ("generic_rules", generic_rules),
    ("influx_response", influx_response),
    ("elasticsearch_response", elasticsearch_response),
];

/// The part before the first NUL byte and the part after it; `None` without a NUL.
pub fn split_at_nul(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = data.iter().position(|byte| *byte == 0)?;
    Some((&data[..at], &data[at + 1..]))
}
