//! `[sinks.<name>]`: where a pipeline's points are written. Every sink encodes points as line
//! protocol: InfluxDB 1.x, 2.x and 3.x take it, and the `amqp` sink publishes it for another
//! tier to read with the `line_protocol` decoder.

use std::num::NonZeroUsize;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_amqp::confirmed::{BoundQueue, ConfirmedPublisherSettings};
use sluice_amqp::sink::AmqpSinkSettings;
use sluice_amqp::topology::ExchangeSpec;
use sluice_core::path::PathLimits;
use sluice_core::point::PointLimits;
use sluice_influx::InfluxSettings;

use super::super::amqp::{BrokerConnection, RawExchangeType};
use super::super::influx::{InfluxSink, RawInflux};
use super::super::{SinkWrites, at_least_one};
use super::field;
use super::sources::bounded_queue;

#[derive(Deserialize, Serialize, JsonSchema)]
pub struct RawSink {
    /// The sources and transforms whose points this sink writes.
    pub inputs: Vec<String>,
    #[serde(flatten)]
    pub kind: RawSinkKind,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RawSinkKind {
    /// InfluxDB: the same settings as `[influx]`; `api` picks 1.x, 2.x or 3.x.
    Influxdb(Box<RawInflux>),
    /// RabbitMQ: batches of line protocol published with confirms, for another tier's `amqp`
    /// source (`decoder = { format = "line_protocol" }`).
    Amqp(RawAmqpSink),
}

/// Publishes to `[amqp]`'s broker.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAmqpSink {
    /// Declared on every (re)connect, durable.
    pub exchange: String,
    #[serde(default = "topic")]
    pub exchange_type: RawExchangeType,
    /// Every batch's routing key; default the sink's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    /// A durable queue declared and bound with the routing key, so that what is published is
    /// kept before the next tier first starts. Without it, a batch nobody's queue is bound for
    /// is retried (never dropped) until one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The queue's `x-max-length`, with `x-overflow = reject-publish`: when the next tier
    /// falls this far behind, this sink backs off (and its sources stop being acked) instead of
    /// the broker dropping points. The next tier's `amqp` source must give the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// A batch is published when it holds this many points...
    #[serde(default = "batch_max_points")]
    pub batch_max_points: usize,
    /// ...or this many bytes of line protocol...
    #[serde(default = "batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// ...or this long after its first point arrived.
    #[serde(default = "batch_linger", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub batch_linger: Duration,
    /// Batches awaiting their confirm at once.
    #[serde(default = "concurrency")]
    pub concurrency: usize,
    /// How long a batch waits for the broker's confirm before it is sent again.
    #[serde(default = "confirm_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub confirm_timeout: Duration,
    #[serde(default = "retry_initial_delay", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_initial_delay: Duration,
    #[serde(default = "retry_max_delay", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_max_delay: Duration,
}

fn topic() -> RawExchangeType {
    RawExchangeType::Topic
}
fn batch_max_points() -> usize {
    1000
}
fn batch_max_bytes() -> usize {
    1024 * 1024
}
fn batch_linger() -> Duration {
    Duration::from_millis(200)
}
fn concurrency() -> usize {
    2
}
fn confirm_timeout() -> Duration {
    Duration::from_secs(10)
}
fn retry_initial_delay() -> Duration {
    Duration::from_millis(200)
}
fn retry_max_delay() -> Duration {
    Duration::from_secs(10)
}

/// A checked sink.
pub struct SinkSpec {
    pub name: String,
    pub kind: SinkKind,
    pub limits: PathLimits,
}

pub enum SinkKind {
    Influx {
        settings: InfluxSettings,
        create_database: bool,
    },
    Amqp {
        publisher: ConfirmedPublisherSettings,
        sink: AmqpSinkSettings,
    },
}

impl RawSink {
    pub(super) fn validate(
        &self,
        name: &str,
        amqp: &BrokerConnection<'_>,
        fail: &mut impl FnMut(&str, String),
    ) -> Option<SinkSpec> {
        match &self.kind {
            RawSinkKind::Influxdb(influx) => {
                // `[influx]`'s checks name `influx.<key>`; here the field is this sink's.
                let mut renamed = |key: &str, message: String| {
                    let key = key.strip_prefix("influx.").unwrap_or(key);
                    fail(&field("sinks", name, key), message);
                };
                let InfluxSink {
                    settings,
                    create_database,
                    limits,
                } = influx.validate(PointLimits::default(), &mut renamed)?;
                Some(SinkSpec {
                    name: name.to_owned(),
                    kind: SinkKind::Influx {
                        settings,
                        create_database,
                    },
                    limits,
                })
            }
            RawSinkKind::Amqp(raw) => raw.validate(name, amqp, fail),
        }
    }
}

impl RawAmqpSink {
    fn validate(
        &self,
        name: &str,
        amqp: &BrokerConnection<'_>,
        fail: &mut impl FnMut(&str, String),
    ) -> Option<SinkSpec> {
        let section = format!("sinks.{name}");
        let field = |key: &str| field("sinks", name, key);
        if self.exchange.is_empty() {
            // The default exchange would route by queue name, past any binding this sink
            // declares: say so rather than publish somewhere surprising.
            fail(&field("exchange"), "must not be empty".into());
        }
        let routing_key = self.routing_key.clone().unwrap_or_else(|| name.to_owned());
        if self.max_length.is_some() && self.queue.is_none() {
            fail(
                &field("max_length"),
                "limits the queue this sink declares: set `queue` too".into(),
            );
        }
        let limits = SinkWrites {
            section: &section,
            max_items_key: "batch_max_points",
            max_items: self.batch_max_points,
            max_bytes: self.batch_max_bytes,
            linger: self.batch_linger,
            concurrency: self.concurrency,
            timeout_key: "confirm_timeout",
            request_timeout: self.confirm_timeout,
            retry_initial_delay: self.retry_initial_delay,
            retry_max_delay: self.retry_max_delay,
        }
        .validate(fail)?;
        // Each batch in flight is one publish; the bytes bound is what a full set of batches
        // can hold, so that the publisher never answers Busy to its own sink's concurrency.
        let max_in_flight = at_least_one(&field("concurrency"), self.concurrency, fail)?;
        let max_in_flight_bytes = NonZeroUsize::new(
            self.batch_max_bytes
                .saturating_mul(self.concurrency)
                .max(1 << 20),
        )?;
        let mut publisher = ConfirmedPublisherSettings::new(
            amqp.broker.clone()?,
            format!("sink-{name}"),
            ExchangeSpec {
                name: self.exchange.clone(),
                kind: self.exchange_type.into(),
                durable: true,
                auto_delete: false,
            },
        );
        publisher.queue = self.queue.as_ref().map(|queue| BoundQueue {
            queue: bounded_queue(queue.clone(), self.max_length),
            binding_keys: vec![routing_key.clone()],
        });
        publisher.max_in_flight = max_in_flight;
        publisher.max_in_flight_bytes = max_in_flight_bytes;
        publisher.confirm_timeout = self.confirm_timeout;
        publisher.reconnect = amqp.reconnect;
        Some(SinkSpec {
            name: name.to_owned(),
            kind: SinkKind::Amqp {
                publisher,
                sink: AmqpSinkSettings {
                    routing_key,
                    max_point: PointLimits::default(),
                    retry_after: self.retry_initial_delay,
                },
            },
            limits,
        })
    }
}
