//! Test doubles and helpers for sluice's test suites and its load harness. No production crate
//! depends on this one: the doubles stand in for what cannot run on the development machines,
//! and the helpers are what every suite needs to share real services without stepping on each
//! other.
//!
//! - Doubles, each answering as the real peer does, errors included:
//!   - [`elasticsearch::FakeElasticsearch`]: Elasticsearch 8's `_bulk`, mappings, templates
//!     and searches, with injectable faults;
//!   - [`influx3::FakeInfluxDb3`]: InfluxDB 3 Core's `/api/v3/write_lp` with its partial
//!     writes, column types, tokens, databases and faults;
//!   - [`manager::FakeManager`]: the Cloudify manager's REST API as the executor calls it;
//!   - [`recording_server::RecordingServer`]: any HTTP peer answering from a closure and
//!     recording each request (InfluxDB 2's API, statuses the real InfluxDB 1.x never sends).
//! - Real services: [`influx`] (a private database per test on the shared InfluxDB, or a
//!   private `influxd` that can be stopped), [`services`] (where RabbitMQ and InfluxDB are),
//!   [`rabbitmq_node`] (a private RabbitMQ node listening for `amqps://`).
//! - Helpers: [`names::unique`] and [`names::free_port`], [`wait::eventually`] (a condition
//!   awaited, never a sleep), [`recorded::recorded`] (what a `metrics` recorder saw), and
//!   [`sink::encode_and_write`] (items through a sink the way a path drives it).

pub mod elasticsearch;
pub mod influx;
pub mod influx3;
pub mod manager;
pub mod names;
pub mod rabbitmq_node;
pub mod recorded;
pub mod recording_server;
pub mod services;
pub mod sink;
mod stoppable;
pub mod tls;
pub mod wait;
