//! The parts of `sluice-load` that are worth testing on their own. `main.rs` is the command line
//! around them.
//!
//! - Pre-load and baseline: confirmed publishing ([`publish`]), the null-consumer baseline
//!   ([`baseline`]), a process's CPU and memory from `/proc` ([`procfs`]), and the drain report
//!   that puts sluice beside the null consumer ([`report`]).
//! - Open loop: the send schedule and its clock ([`schedule`]), the publisher ([`open_loop`]),
//!   the proxy in front of InfluxDB that sees each point written ([`latency_proxy`]), and the
//!   latency histogram ([`latency`]).
//! - Push inputs: the line-protocol (and Graphite) load generator, open and closed loop
//!   ([`push`]), and the comparison of sluice's `influxdb_write` intake with InfluxDB's own
//!   `/write` ([`push_compare`]).
//! - sluice's own counters, scraped during a run ([`scrape`]).
//! - Sweeps: scenario files ([`scenario`]), a sluice child process ([`sluice_process`]), one
//!   measurement per setting ([`sweep`]), and the SVG plot ([`plot`]).
//! - Chaos: a live load into a real sluice with one fault per round, and the count of what was
//!   lost, duplicated or left queued ([`chaos`]).

pub mod baseline;
pub mod broker;
pub mod chaos;
pub mod demo;
pub mod latency;
pub mod latency_proxy;
pub mod open_loop;
pub mod plot;
pub mod procfs;
pub mod publish;
pub mod push;
pub mod push_compare;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod scrape;
pub mod sluice_process;
pub mod sweep;
