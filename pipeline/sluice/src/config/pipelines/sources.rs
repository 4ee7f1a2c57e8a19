//! `[sources.<name>]`: where a pipeline's points come from. Every source is consumed from a
//! RabbitMQ queue through a decoder; a push input also runs the listener that fills the queue.
//!
//! - `amqp`: an exchange someone else publishes to, with the body format (`[decoder]`);
//! - `graphite`: a Graphite plaintext listener (TCP and/or UDP);
//! - `influxdb_write`: InfluxDB's write API (`/write`, `/api/v2/write`);
//! - `prometheus_remote_write`: Prometheus `remote_write` (`/api/v1/write`).
//!
//! A push input publishes to the durable exchange `sluice.intake` into its queue
//! `sluice.intake.<name>` ([`RawIntakeBroker`]), the queue's name as routing key. An instance runs both the
//! listener and the consumer by default; `run = "intake"` or `run = "consume"` splits them, so
//! intake and writers scale out apart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::str::FromStr;

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sluice_amqp::connection::BrokerUrl;
use sluice_amqp::source::SourceSettings;
use sluice_amqp::topology::{ExchangeSpec, Overflow, QueueSpec, SourceTopology};
use sluice_core::point::PointLimits;
use sluice_core::retry::RetryPolicy;
use sluice_normalise::{
    JsonMapping, JsonMappingSettings, MeasurementSource, Naming, TemplateSet, TimeFormat,
    TimestampPrecision,
};

use super::super::amqp::{BrokerConnection, RawExchangeType};
use super::super::secret::{SecretFile, secret};
use super::super::{at_least_one, redacted_option};
use super::field;
use super::graph::RouteSpec;

/// Enough to spread one queue over several connections.
const MAX_CONSUMERS: u16 = 16;
/// InfluxDB's own default `max-body-size`.
const DEFAULT_MAX_BODY_BYTES: usize = 25_000_000;

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RawSource {
    Amqp(RawAmqpSource),
    Graphite(RawGraphiteSource),
    InfluxdbWrite(RawInfluxWriteSource),
    PrometheusRemoteWrite(RawRemoteWriteSource),
}

/// Points published to RabbitMQ by someone else.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAmqpSource {
    /// Declared (durable unless `exchange_durable = false`) and bound to the queue.
    pub exchange: String,
    #[serde(default = "topic")]
    pub exchange_type: RawExchangeType,
    #[serde(default = "yes")]
    pub exchange_durable: bool,
    /// Default `sluice.<name>`; durable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The queue's `x-max-length`, with `x-overflow = reject-publish` (publishers with confirms
    /// see a nack; nothing is dropped). Whoever else declares the queue, such as another tier's
    /// `amqp` sink, must give the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    #[serde(default = "all_keys")]
    pub binding_keys: Vec<String>,
    #[serde(default = "one")]
    pub consumers: u16,
    pub decoder: RawDecoder,
}

/// How a body becomes points.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(tag = "format", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawDecoder {
    /// Cloudify's Diamond JSON, named by Graphite templates as `[metrics]` does.
    Diamond {
        #[serde(default = "measurement_star")]
        templates: Vec<String>,
        #[serde(default = "dot")]
        separator: String,
    },
    /// Graphite plaintext lines, `path value timestamp`, named by Graphite templates.
    Graphite {
        #[serde(default = "measurement_star")]
        templates: Vec<String>,
        #[serde(default = "dot")]
        separator: String,
    },
    /// InfluxDB line protocol, one point per line.
    LineProtocol {
        #[serde(default)]
        precision: RawLinePrecision,
    },
    /// A JSON object, or an array of them, each one point, mapped by JSON pointers.
    Json {
        /// `{ pointer = "/name" }` or `{ constant = "weather" }`.
        measurement: RawMeasurement,
        /// Tag key = pointer to its value.
        #[serde(default)]
        tags: BTreeMap<String, String>,
        /// Field key = pointer to its value; at least one.
        fields: BTreeMap<String, String>,
        /// Pointer to the time.
        time: String,
        time_format: RawTimeFormat,
    },
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawMeasurement {
    Pointer(String),
    Constant(String),
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum RawTimeFormat {
    UnixS,
    UnixMs,
    UnixNs,
    Rfc3339,
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum RawLinePrecision {
    #[default]
    #[serde(rename = "ns")]
    Nanoseconds,
    #[serde(rename = "us")]
    Microseconds,
    #[serde(rename = "ms")]
    Milliseconds,
    #[serde(rename = "s")]
    Seconds,
}

/// Which halves of a push input this instance runs.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum RawRun {
    /// The listener and the consumer of its queue.
    #[default]
    Both,
    /// Only the listener, publishing to the broker.
    Intake,
    /// Only the consumer of the queue (the listener runs elsewhere).
    Consume,
}

/// Where a push input's data waits: its durable buffer in the broker.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawIntakeBroker {
    /// A durable topic exchange; the routing key is the queue's name.
    pub exchange: String,
    /// Default `sluice.intake.<name>`; durable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// `x-max-length` of the queue, with `x-overflow = reject-publish`: when the writers fall
    /// this far behind, the listener answers 503 with `Retry-After` instead of buffering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    pub run: RawRun,
    pub consumers: u16,
}

impl Default for RawIntakeBroker {
    fn default() -> Self {
        Self {
            exchange: "sluice.intake".into(),
            queue: None,
            max_length: None,
            run: RawRun::Both,
            consumers: 1,
        }
    }
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGraphiteSource {
    /// `host:port` of the TCP listener; at least one of `tcp` and `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<String>,
    #[serde(default = "measurement_star")]
    pub templates: Vec<String>,
    #[serde(default = "dot")]
    pub separator: String,
    #[serde(default)]
    pub broker: RawIntakeBroker,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawInfluxWriteSource {
    #[serde(default = "influx_listen")]
    pub listen: String,
    /// When set, writes must carry it (`Authorization: Token`, or v1's `p`); never logged.
    #[schemars(with = "Option<String>")]
    #[serde(
        default,
        serialize_with = "redacted_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<SecretString>,
    /// A file holding the token, instead of `token`.
    #[schemars(with = "Option<String>")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<SecretFile>,
    #[serde(default = "max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default)]
    pub broker: RawIntakeBroker,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteWriteSource {
    #[serde(default = "remote_write_listen")]
    pub listen: String,
    #[serde(default = "max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default)]
    pub broker: RawIntakeBroker,
}

fn topic() -> RawExchangeType {
    RawExchangeType::Topic
}
fn yes() -> bool {
    true
}
fn one() -> u16 {
    1
}
fn all_keys() -> Vec<String> {
    vec!["#".to_owned()]
}
fn measurement_star() -> Vec<String> {
    vec!["measurement*".to_owned()]
}
fn dot() -> String {
    ".".to_owned()
}
fn influx_listen() -> String {
    "127.0.0.1:8186".to_owned()
}
fn remote_write_listen() -> String {
    "127.0.0.1:9201".to_owned()
}
fn max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

/// A checked source.
pub struct SourceSpec {
    pub name: String,
    /// The consuming half; `None` when this instance runs only the listener.
    pub consume: Option<ConsumeSpec>,
    /// The listener of a push input; `None` for an `amqp` source or `run = "consume"`.
    pub intake: Option<IntakeSpec>,
}

pub struct ConsumeSpec {
    pub source: SourceSettings,
    pub consumers: u16,
    pub decoder: DecoderSpec,
    pub point_limits: PointLimits,
    pub routes: Vec<RouteSpec>,
}

#[derive(Debug, Clone)]
pub enum DecoderSpec {
    Diamond(Naming),
    Graphite(TemplateSet),
    LineProtocol(TimestampPrecision),
    Json(JsonMapping),
}

/// Where a push input publishes.
#[derive(Debug, Clone)]
pub struct PublishTarget {
    pub url: BrokerUrl,
    pub exchange: ExchangeSpec,
    pub queue: QueueSpec,
    pub routing_key: String,
    pub reconnect: RetryPolicy,
}

#[derive(Debug, Clone)]
pub enum IntakeSpec {
    Graphite {
        tcp: Option<SocketAddr>,
        udp: Option<SocketAddr>,
        target: PublishTarget,
    },
    InfluxWrite {
        listen: SocketAddr,
        token: Option<SecretString>,
        max_body_bytes: NonZeroUsize,
        target: PublishTarget,
    },
    RemoteWrite {
        listen: SocketAddr,
        max_body_bytes: NonZeroUsize,
        target: PublishTarget,
    },
}

impl RawSource {
    pub(super) fn validate(
        &self,
        name: &str,
        amqp: &BrokerConnection<'_>,
        routes: Vec<RouteSpec>,
        fail: &mut impl FnMut(&str, String),
    ) -> Option<SourceSpec> {
        let field = |key: &str| field("sources", name, key);
        let point_limits = PointLimits::default();
        match self {
            RawSource::Amqp(raw) => {
                check_consumers(&field("consumers"), raw.consumers, fail);
                if raw.exchange.is_empty() {
                    fail(&field("exchange"), "must not be empty".into());
                }
                if raw.binding_keys.is_empty() {
                    fail(
                        &field("binding_keys"),
                        "needs at least one key (\"#\" for all)".into(),
                    );
                }
                let decoder = raw.decoder.validate(&field("decoder"), fail);
                let topology = SourceTopology {
                    exchange: Some(ExchangeSpec {
                        name: raw.exchange.clone(),
                        kind: raw.exchange_type.into(),
                        durable: raw.exchange_durable,
                        auto_delete: false,
                    }),
                    queue: bounded_queue(
                        raw.queue
                            .clone()
                            .unwrap_or_else(|| format!("sluice.{name}")),
                        raw.max_length,
                    ),
                    binding_keys: raw.binding_keys.clone(),
                };
                Some(SourceSpec {
                    name: name.to_owned(),
                    consume: Some(ConsumeSpec {
                        source: amqp.source(name.to_owned(), topology)?,
                        consumers: raw.consumers,
                        decoder: decoder?,
                        point_limits,
                        routes,
                    }),
                    intake: None,
                })
            }
            RawSource::Graphite(raw) => {
                let tcp = raw
                    .tcp
                    .as_deref()
                    .and_then(|text| socket_address(&field("tcp"), text, fail));
                let udp = raw
                    .udp
                    .as_deref()
                    .and_then(|text| socket_address(&field("udp"), text, fail));
                if raw.tcp.is_none() && raw.udp.is_none() {
                    fail(
                        &field("tcp"),
                        "a graphite source needs tcp, udp or both".into(),
                    );
                }
                let templates = TemplateSet::parse(&raw.separator, &raw.templates)
                    .map_err(|error| fail(&field("templates"), error.to_string()))
                    .ok();
                push_source(
                    name,
                    &raw.broker,
                    amqp,
                    routes,
                    fail,
                    templates.map(DecoderSpec::Graphite),
                    |target| Some(IntakeSpec::Graphite { tcp, udp, target }),
                )
            }
            RawSource::InfluxdbWrite(raw) => {
                let listen = socket_address(&field("listen"), &raw.listen, fail);
                let max_body_bytes =
                    at_least_one(&field("max_body_bytes"), raw.max_body_bytes, fail);
                let token = secret(
                    &field("token"),
                    raw.token.as_ref(),
                    raw.token_file.as_ref(),
                    fail,
                );
                let decoder = Some(DecoderSpec::LineProtocol(TimestampPrecision::Nanoseconds));
                push_source(name, &raw.broker, amqp, routes, fail, decoder, |target| {
                    Some(IntakeSpec::InfluxWrite {
                        listen: listen?,
                        token: token.ok()?,
                        max_body_bytes: max_body_bytes?,
                        target,
                    })
                })
            }
            RawSource::PrometheusRemoteWrite(raw) => {
                let listen = socket_address(&field("listen"), &raw.listen, fail);
                let max_body_bytes =
                    at_least_one(&field("max_body_bytes"), raw.max_body_bytes, fail);
                let decoder = Some(DecoderSpec::LineProtocol(TimestampPrecision::Nanoseconds));
                push_source(name, &raw.broker, amqp, routes, fail, decoder, |target| {
                    Some(IntakeSpec::RemoteWrite {
                        listen: listen?,
                        max_body_bytes: max_body_bytes?,
                        target,
                    })
                })
            }
        }
    }
}

/// A durable queue; with a `max_length`, a full queue refuses publishes (`reject-publish`)
/// rather than the broker dropping the oldest points behind everyone's back. Without one it
/// declares no `x-overflow`, so it matches a queue declared plainly elsewhere.
pub(super) fn bounded_queue(name: String, max_length: Option<u32>) -> QueueSpec {
    let mut queue = QueueSpec::durable(name);
    queue.max_length = max_length;
    if max_length.is_some() {
        queue.overflow = Overflow::RejectPublish;
    }
    queue
}

/// A push input's two halves: the listener publishing to its queue, and the consumer of it.
fn push_source(
    name: &str,
    broker: &RawIntakeBroker,
    amqp: &BrokerConnection<'_>,
    routes: Vec<RouteSpec>,
    fail: &mut impl FnMut(&str, String),
    decoder: Option<DecoderSpec>,
    intake: impl FnOnce(PublishTarget) -> Option<IntakeSpec>,
) -> Option<SourceSpec> {
    let field = |key: &str| field("sources", name, &format!("broker.{key}"));
    check_consumers(&field("consumers"), broker.consumers, fail);
    if broker.exchange.is_empty() {
        fail(&field("exchange"), "must not be empty".into());
    }
    let exchange = ExchangeSpec {
        name: broker.exchange.clone(),
        kind: sluice_amqp::topology::ExchangeType::Topic,
        durable: true,
        auto_delete: false,
    };
    let mut queue = QueueSpec::durable(
        broker
            .queue
            .clone()
            .unwrap_or_else(|| format!("sluice.intake.{name}")),
    );
    queue.max_length = broker.max_length;
    // A full queue refuses the publish, so the listener answers 503 rather than the broker
    // dropping the oldest points behind everyone's back.
    queue.overflow = Overflow::RejectPublish;
    let target = PublishTarget {
        url: amqp.broker.clone()?,
        exchange: exchange.clone(),
        queue: queue.clone(),
        // The queue's name, not the source's: two instances configured alike share one queue
        // (competing consumers), and sources of the same name that keep their points in other
        // queues never receive each other's.
        routing_key: queue.name.clone(),
        reconnect: amqp.reconnect,
    };
    let topology = SourceTopology {
        exchange: Some(exchange),
        binding_keys: vec![target.routing_key.clone()],
        queue,
    };
    let decoder = decoder?;
    let consume = (broker.run != RawRun::Intake)
        .then(|| {
            Some(ConsumeSpec {
                source: amqp.source(name.to_owned(), topology)?,
                consumers: broker.consumers,
                decoder,
                point_limits: PointLimits::default(),
                routes,
            })
        })
        .flatten();
    let intake = match broker.run {
        RawRun::Consume => None,
        RawRun::Both | RawRun::Intake => Some(intake(target)?),
    };
    Some(SourceSpec {
        name: name.to_owned(),
        consume,
        intake,
    })
}

impl RawDecoder {
    fn validate(&self, field: &str, fail: &mut impl FnMut(&str, String)) -> Option<DecoderSpec> {
        let templates =
            |separator: &str, templates: &[String], fail: &mut dyn FnMut(&str, String)| {
                TemplateSet::parse(separator, templates)
                    .map_err(|error| fail(&format!("{field}.templates"), error.to_string()))
                    .ok()
            };
        match self {
            RawDecoder::Diamond {
                templates: lines,
                separator,
            } => templates(separator, lines, fail)
                .map(|set| DecoderSpec::Diamond(Naming::Templates(set))),
            RawDecoder::Graphite {
                templates: lines,
                separator,
            } => templates(separator, lines, fail).map(DecoderSpec::Graphite),
            RawDecoder::LineProtocol { precision } => {
                Some(DecoderSpec::LineProtocol(match precision {
                    RawLinePrecision::Nanoseconds => TimestampPrecision::Nanoseconds,
                    RawLinePrecision::Microseconds => TimestampPrecision::Microseconds,
                    RawLinePrecision::Milliseconds => TimestampPrecision::Milliseconds,
                    RawLinePrecision::Seconds => TimestampPrecision::Seconds,
                }))
            }
            RawDecoder::Json {
                measurement,
                tags,
                fields,
                time,
                time_format,
            } => JsonMappingSettings {
                measurement: match measurement {
                    RawMeasurement::Pointer(pointer) => MeasurementSource::Pointer(pointer.clone()),
                    RawMeasurement::Constant(name) => MeasurementSource::Constant(name.clone()),
                },
                tags: tags.clone(),
                fields: fields.clone(),
                time: time.clone(),
                time_format: match time_format {
                    RawTimeFormat::UnixS => TimeFormat::UnixS,
                    RawTimeFormat::UnixMs => TimeFormat::UnixMs,
                    RawTimeFormat::UnixNs => TimeFormat::UnixNs,
                    RawTimeFormat::Rfc3339 => TimeFormat::Rfc3339,
                },
            }
            .validate()
            .map(DecoderSpec::Json)
            .map_err(|error| fail(field, error.to_string()))
            .ok(),
        }
    }
}

fn check_consumers(field: &str, consumers: u16, fail: &mut impl FnMut(&str, String)) {
    if !(1..=MAX_CONSUMERS).contains(&consumers) {
        fail(field, format!("must be from 1 to {MAX_CONSUMERS}"));
    }
}

fn socket_address(
    field: &str,
    text: &str,
    fail: &mut impl FnMut(&str, String),
) -> Option<SocketAddr> {
    SocketAddr::from_str(text)
        .map_err(|error| fail(field, format!("{text:?} is not host:port: {error}")))
        .ok()
}
