//! The normalise stage: one Diamond message body in, one validated [`Point`] (or a policy-engine
//! control message) out; one Cloudify event or log body in, one Elasticsearch [`Document`] out.
//!
//! [`Document`]: sluice_core::document::Document
//!
//! In a path (`sluice_core::path`: decode and encode -> batch -> sink -> outcomes -> ack), this
//! crate is the decode half of the encode stage: [`DiamondDecoder`] and [`EventsDecoder`] are
//! the metrics and events paths' [`Decoder`](sluice_core::path::Decoder)s. A point goes on to
//! the sink's encoder, a [`ControlMessage`] to the rule stage, and a [`NormaliseError`] is
//! dead-lettered and counted under its [`Rejection::reason`]. Nothing here does I/O.
//!
//! - [`decoders`]: the two decoders, and [`MetricTap`], through which the rule stage sees the
//!   metrics as they are decoded.
//! - `diamond` (private): the wire struct of the Diamond body (wire formats,
//!   section 1), decoded in place with simd-json, and the checks that turn it into a typed metric
//!   or control message.
//! - [`graphite`]: graphite naming templates in the InfluxDB/Telegraf syntax, which turn a dotted
//!   metric name into measurement, field key and tags.
//! - [`events`]: Cloudify event and log bodies (wire formats, section 3) to documents with
//!   `@timestamp`, their daily index ([`IndexPattern`]) and a deterministic `_id`.
//! - [`timestamp`]: every timestamp shape the manager writes, parsed to a UTC instant.
//! - [`formats`]: decoders for bodies of many points, chosen per AMQP source: Graphite
//!   plaintext lines, InfluxDB line protocol, JSON mapped by pointers.
//! - [`transform`]: what a configured pipeline does to points between sources and sinks: tags
//!   added, dropped and renamed, points filtered, Graphite templates applied.
//! - this file: [`Normaliser`], which picks the naming ([`Naming`]), builds the point and runs
//!   [`Point::validate`] on every point it returns.

mod body;
pub mod decoders;
mod diamond;
pub mod events;
pub mod formats;
pub mod graphite;
pub mod timestamp;
pub mod transform;

use std::borrow::Cow;

use sluice_core::point::{FieldRef, InvalidPoint, Point, PointLimits, PointRef, ValidPoint};
use sluice_core::rejection::{Reason, Rejection};
use smallvec::SmallVec;

pub use crate::body::BodyError;
pub use crate::decoders::{DiamondDecoder, EventsDecoder, MetricTap};
use crate::diamond::{DiamondMetric, Message};
pub use crate::events::{EventDecoder, EventError, IndexPattern, IndexPatternError, document_id};
pub use crate::formats::{
    GraphiteLinesDecoder, JsonDecoder, JsonMapping, JsonMappingError, JsonMappingSettings,
    LineProtocolDecoder, MeasurementSource, TimeFormat, TimestampPrecision,
};
pub use crate::graphite::{Applied, AppliedRef, TemplateError, TemplateSet};
pub use crate::timestamp::{TimestampError, format_event_timestamp, parse_manager_timestamp};
pub use crate::transform::{PointFilter, TagEdit, Transform, TransformChain};

/// How a Diamond metric becomes a measurement, tags and fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Naming {
    /// Graphite templates applied to the part of `service` after
    /// `<deployment_id>.<node_name>.<node_id>.`; the body's ids, `host` and `type` become tags.
    Templates(TemplateSet),
    /// The old consumer's series: measurement `<deployment_id>.<node_name>.<node_id>.<name>_<path>`,
    /// no tags, fields `value`, `unit` and `type`.
    CloudifyLegacy,
}

impl Default for Naming {
    /// [`Naming::Templates`] with [`TemplateSet::default_diamond`].
    fn default() -> Self {
        Naming::Templates(TemplateSet::default_diamond())
    }
}

/// What one body normalises to.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Normalised {
    Point(Point),
    Control(ControlMessage),
}

/// [`Normalised`], with the point borrowing from the body it was decoded from.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "lives on the stack for one message; boxing the point would allocate per message"
)]
pub enum NormalisedRef<'a> {
    Point(ValidPoint<'a>),
    Control(ControlMessage),
}

impl NormalisedRef<'_> {
    pub fn to_owned(&self) -> Normalised {
        match self {
            NormalisedRef::Point(point) => Normalised::Point(point.to_point()),
            NormalisedRef::Control(control) => Normalised::Control(control.clone()),
        }
    }
}

/// What the normalise stage reuses from one message to the next, so that the hot path allocates
/// nothing per message: the copy of the body simd-json parses in place (the original stays
/// intact for dead-lettering) and simd-json's own buffers. One per normalising task.
#[derive(Default)]
pub struct Scratch {
    body: Vec<u8>,
    json: simd_json::Buffers,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Scratch")
            .field("body_capacity", &self.body.capacity())
            .finish_non_exhaustive()
    }
}

/// A policy-engine control message (`service: "cloudify.configuration"`): start or stop the
/// policies of a deployment, whose `groups` file is in `config_path`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ControlMessage {
    pub state: ControlState,
    pub deployment_id: String,
    pub config_path: String,
    /// Epoch seconds, as the manager sent it.
    pub time: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlState {
    Start,
    Stop,
}

/// Why a body was not normalised. None of these is worth retrying: the body is dead-lettered and
/// counted under [`reason`](NormaliseError::reason). Messages name the field and quote at most a
/// short part of what was found, never the body.
#[derive(Debug, thiserror::Error)]
pub enum NormaliseError {
    /// Not UTF-8, not JSON, not an object, a field missing or of the wrong type.
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("body has the key {key:?} more than once")]
    DuplicateKey { key: &'static str },
    #[error("field {field:?} is {value}, not a finite number")]
    NotFinite { field: &'static str, value: f64 },
    #[error("body has the number {number} (at byte {offset}), beyond the range of a 64-bit float")]
    NumberOutOfRange { offset: usize, number: String },
    #[error("field \"time\" is {found}, which is not a timestamp: {why}")]
    BadTimestamp { found: String, why: &'static str },
    #[error("metric {service:?} makes a point that cannot be written: {source}")]
    InvalidPoint {
        /// The metric's `service`, cut short.
        service: String,
        source: InvalidPoint,
    },
}

impl Rejection for NormaliseError {
    fn reason(&self) -> Reason {
        match self {
            NormaliseError::Body(error) => error.reason(),
            NormaliseError::DuplicateKey { .. } => Reason::InvalidJson,
            NormaliseError::NotFinite { .. } | NormaliseError::NumberOutOfRange { .. } => {
                Reason::NotFinite
            }
            NormaliseError::BadTimestamp { .. } => Reason::BadTimestamp,
            NormaliseError::InvalidPoint { source, .. } => source.reason(),
        }
    }
}

/// Turns Diamond message bodies into points under one naming and one set of limits. Cheap to
/// share: `normalise` takes `&self`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normaliser {
    naming: Naming,
    limits: PointLimits,
}

impl Normaliser {
    pub fn new(naming: Naming, limits: PointLimits) -> Self {
        Self { naming, limits }
    }

    /// Decodes one message body into an owned point, for callers off the hot path (the CLI,
    /// tests); the pipeline uses [`normalise_borrowed`](Self::normalise_borrowed).
    ///
    /// Every point returned has passed [`Point::validate`] with this normaliser's limits.
    pub fn normalise(&self, body: &[u8]) -> Result<Normalised, NormaliseError> {
        let mut scratch = Scratch::default();
        self.normalise_borrowed(body, &mut scratch, |_| {})
            .map(|normalised| normalised.to_owned())
    }

    /// The hot path: decodes a copy of `body` in `scratch` and returns the point borrowing from
    /// it, having shown `observe` the metric's Diamond fields if it became a valid point. The
    /// rule stage reads the raw `service` and ids this way; a caller with no rules loaded pays
    /// nothing for it. The point is a [`ValidPoint`]: it passed validation with this
    /// normaliser's limits.
    pub fn normalise_borrowed<'a>(
        &'a self,
        body: &[u8],
        scratch: &'a mut Scratch,
        observe: impl FnOnce(&MetricSample<'_>),
    ) -> Result<NormalisedRef<'a>, NormaliseError> {
        scratch.body.clear();
        scratch.body.extend_from_slice(body);
        let decoded = diamond::decode(&mut scratch.body, &mut scratch.json);
        self.normalise_decoded(decoded, body, observe)
    }

    /// `original` is the body as it was before simd-json rewrote its copy, for error messages.
    fn normalise_decoded<'a>(
        &'a self,
        decoded: Result<diamond::Decoded<'a>, simd_json::Error>,
        original: &[u8],
        observe: impl FnOnce(&MetricSample<'_>),
    ) -> Result<NormalisedRef<'a>, NormaliseError> {
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(error) => return Err(diamond::syntax_error(&error, original)),
        };
        let metric = match decoded.into_message()? {
            Message::Control(control) => return Ok(NormalisedRef::Control(control)),
            Message::Metric(metric) => metric,
        };
        let point = match &self.naming {
            Naming::Templates(templates) => templated_point(templates, &metric),
            Naming::CloudifyLegacy => legacy_point(&metric),
        };
        let point = match point.validated(&self.limits) {
            Ok(point) => point,
            Err(source) => {
                return Err(NormaliseError::InvalidPoint {
                    service: diamond::quote(&metric.service).into_owned(),
                    source,
                });
            }
        };
        observe(&MetricSample {
            deployment_id: &metric.deployment_id,
            node_name: &metric.node_name,
            node_id: &metric.node_id,
            host: metric.host.as_deref(),
            service: &metric.service,
            value: metric.value,
            timestamp_ns: metric.timestamp,
            ttl: metric.ttl,
        });
        Ok(NormalisedRef::Point(point))
    }
}

/// The fields of one Diamond metric the rule stage needs, as the agent sent them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSample<'a> {
    pub deployment_id: &'a str,
    pub node_name: &'a str,
    pub node_id: &'a str,
    pub host: Option<&'a str>,
    /// `<deployment_id>.<node_name>.<node_id>.<collector>.<path>`, unchanged by any naming.
    pub service: &'a str,
    pub value: f64,
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The body's own `ttl` (seconds on the wire), when it is a positive number: host_failure
    /// expires the series after it instead of the policy's ttl.
    pub ttl: Option<std::time::Duration>,
}

/// The name the templates see: `service` without the `<deployment_id>.<node_name>.<node_id>.`
/// prefix, taken from the body's own ids so that ids containing dots still strip cleanly. When
/// `service` does not start with that prefix (or nothing follows it), `<name>.<path>`.
fn metric_name<'m>(metric: &DiamondMetric<'m>) -> Cow<'m, str> {
    let stripped = |service: &'m str| {
        service
            .strip_prefix(metric.deployment_id.as_ref())
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_prefix(metric.node_name.as_ref()))
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_prefix(metric.node_id.as_ref()))
            .and_then(|rest| rest.strip_prefix('.'))
            .filter(|rest| !rest.is_empty())
    };
    let rest = match &metric.service {
        Cow::Borrowed(service) => stripped(service).map(Cow::Borrowed),
        // An escaped service string was unescaped into a new allocation: keep what it left.
        Cow::Owned(service) => stripped_owned(service, metric),
    };
    rest.unwrap_or_else(|| format!("{}.{}", metric.name, metric.path).into())
}

fn stripped_owned<'m>(service: &str, metric: &DiamondMetric<'_>) -> Option<Cow<'m, str>> {
    let prefix = format!(
        "{}.{}.{}.",
        metric.deployment_id, metric.node_name, metric.node_id
    );
    service
        .strip_prefix(prefix.as_str())
        .filter(|rest| !rest.is_empty())
        .map(|rest| Cow::Owned(rest.to_owned()))
}

fn templated_point<'a>(templates: &'a TemplateSet, metric: &DiamondMetric<'a>) -> PointRef<'a> {
    // The template's output borrows from the name, so only a name borrowed from the body can be
    // borrowed on; a name built anew (the `<name>.<path>` fallback) makes an owned point.
    let applied = match metric_name(metric) {
        Cow::Borrowed(name) => templates.apply_borrowed(name),
        Cow::Owned(name) => owned_applied(templates.apply(&name)),
    };
    let field = applied.field.unwrap_or(Cow::Borrowed("value"));
    // The body's tags win over the template's: they go in first, and a stable sort followed by
    // a dedup that keeps the first of each key keeps them. An empty body value counts as not
    // sent, so it leaves a template's tag in place.
    // In key order, so that without template tags nothing needs sorting.
    let body_tags = [
        ("deployment_id", Some(&metric.deployment_id)),
        ("host", metric.host.as_ref()),
        ("metric_type", metric.metric_type.as_ref()),
        ("node_id", Some(&metric.node_id)),
        ("node_name", Some(&metric.node_name)),
    ];
    let mut tags: SmallVec<[(Cow<'a, str>, Cow<'a, str>); 6]> = body_tags
        .into_iter()
        .filter_map(|(key, value)| {
            let value = value.filter(|value| !value.is_empty())?;
            Some((Cow::Borrowed(key), value.clone()))
        })
        .collect();
    if !applied.tags.is_empty() {
        tags.extend(applied.tags);
        tags.sort_by(|(left, _), (right, _)| left.cmp(right));
        tags.dedup_by(|later, earlier| later.0 == earlier.0);
    }
    PointRef {
        measurement: applied.measurement,
        tags,
        fields: smallvec::smallvec![(field, FieldRef::Float(metric.value))],
        timestamp: metric.timestamp,
    }
}

fn owned_applied<'a>(applied: Applied) -> AppliedRef<'a> {
    AppliedRef {
        measurement: Cow::Owned(applied.measurement),
        field: applied.field.map(Cow::Owned),
        tags: applied
            .tags
            .into_iter()
            .map(|(key, value)| (Cow::Owned(key), Cow::Owned(value)))
            .collect(),
    }
}

fn legacy_point<'a>(metric: &DiamondMetric<'a>) -> PointRef<'a> {
    let measurement = format!(
        "{}.{}.{}.{}_{}",
        metric.deployment_id, metric.node_name, metric.node_id, metric.name, metric.path
    );
    let text = |value: &Option<Cow<'a, str>>| FieldRef::String(value.clone().unwrap_or_default());
    PointRef {
        measurement: Cow::Owned(measurement),
        tags: SmallVec::new(),
        // Sorted by key.
        fields: smallvec::smallvec![
            (Cow::Borrowed("type"), text(&metric.metric_type)),
            (Cow::Borrowed("unit"), text(&metric.unit)),
            (Cow::Borrowed("value"), FieldRef::Float(metric.value)),
        ],
        timestamp: metric.timestamp,
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::point::FieldValue;

    use super::*;

    const EXAMPLE: &str = r#"{"node_id":"nodejs_host_x7k2p","node_name":"nodejs_host","deployment_id":"nodecellar","name":"cpu","path":"total_user","metric":3.2,"unit":"","type":"GAUGE","host":"nodejs_host_x7k2p","service":"nodecellar.nodejs_host.nodejs_host_x7k2p.cpu.total.user","time":1466000000}"#;

    fn normalise_with(naming: Naming, json: &str) -> Result<Normalised, NormaliseError> {
        Normaliser::new(naming, PointLimits::default()).normalise(json.as_bytes())
    }

    #[test]
    fn the_observer_sees_the_raw_service_of_valid_points_only() {
        let normaliser = Normaliser::new(Naming::default(), PointLimits::default());
        let mut seen = None;
        let mut scratch = Scratch::default();
        let result = normaliser.normalise_borrowed(EXAMPLE.as_bytes(), &mut scratch, |sample| {
            seen = Some((
                sample.service.to_owned(),
                sample.node_id.to_owned(),
                sample.value,
            ))
        });
        assert!(matches!(result, Ok(NormalisedRef::Point(_))));
        drop(result);
        assert_eq!(
            seen,
            Some((
                "nodecellar.nodejs_host.nodejs_host_x7k2p.cpu.total.user".to_owned(),
                "nodejs_host_x7k2p".to_owned(),
                3.2
            ))
        );

        let not_finite = EXAMPLE.replace("3.2", "1e999");
        let mut called = false;
        let result =
            normaliser.normalise_borrowed(not_finite.as_bytes(), &mut scratch, |_| called = true);
        assert!(result.is_err());
        assert!(!called, "an invalid metric must not reach the rules");
    }

    #[test]
    fn the_observer_sees_the_bodys_own_ttl_and_the_point_does_not_change() {
        let normaliser = Normaliser::new(Naming::default(), PointLimits::default());
        let mut scratch = Scratch::default();
        let ttl_of = |json: &str, scratch: &mut Scratch| {
            let mut seen = None;
            let result =
                normaliser.normalise_borrowed(json.as_bytes(), scratch, |sample| seen = sample.ttl);
            assert!(matches!(result, Ok(NormalisedRef::Point(_))), "{json}");
            seen
        };
        let with_ttl = EXAMPLE.replace(r#""time":"#, r#""ttl":10,"time":"#);
        assert_eq!(
            ttl_of(&with_ttl, &mut scratch),
            Some(std::time::Duration::from_secs(10))
        );
        assert_eq!(ttl_of(EXAMPLE, &mut scratch), None);
        let unusable = EXAMPLE.replace(r#""time":"#, r#""ttl":"soon","time":"#);
        assert_eq!(ttl_of(&unusable, &mut scratch), None, "still a point");
        assert_eq!(
            point(Naming::default(), &with_ttl),
            point(Naming::default(), EXAMPLE),
            "the ttl is for the rules, not a field of the point"
        );
    }

    fn point(naming: Naming, json: &str) -> Point {
        match normalise_with(naming, json).expect("normalises") {
            Normalised::Point(point) => point,
            other => panic!("expected a point, got {other:?}"),
        }
    }

    #[test]
    fn the_wire_format_example_becomes_the_documented_point() {
        let point = point(Naming::default(), EXAMPLE);
        let mut expected = Point::with_value("cpu.total.user", 3.2, 1_466_000_000_000_000_000);
        for (key, value) in [
            ("deployment_id", "nodecellar"),
            ("node_name", "nodejs_host"),
            ("node_id", "nodejs_host_x7k2p"),
            ("host", "nodejs_host_x7k2p"),
            ("metric_type", "GAUGE"),
        ] {
            expected.set_tag(key, value);
        }
        assert_eq!(point, expected);
    }

    #[test]
    fn template_tags_and_field_combine_with_body_tags_body_first() {
        let templates = TemplateSet::parse(
            "_",
            &[
                "cpu.* measurement.host.field* host=fixed,node_id=fixed,zone=1c".to_owned(),
                "measurement*".to_owned(),
            ],
        )
        .expect("valid");
        let point = point(Naming::Templates(templates), EXAMPLE);
        assert_eq!(point.measurement, "cpu");
        assert_eq!(
            point.fields,
            [("user".to_owned(), FieldValue::Float(3.2))].into()
        );
        // host: the body's beats the extracted "total"; node_id: the body's beats the fixed one;
        // zone: fixed, nothing else has it.
        assert_eq!(point.tags["host"], "nodejs_host_x7k2p");
        assert_eq!(point.tags["node_id"], "nodejs_host_x7k2p");
        assert_eq!(point.tags["zone"], "1c");
        assert_eq!(point.tags.len(), 6);
    }

    #[test]
    fn without_a_body_host_the_template_host_stays() {
        let body = EXAMPLE.replace(r#""host":"nodejs_host_x7k2p","#, r#""host":"","#);
        let templates =
            TemplateSet::parse(".", &["measurement.host.measurement".to_owned()]).expect("valid");
        let point = point(Naming::Templates(templates), &body);
        assert_eq!(point.measurement, "cpu.user");
        assert_eq!(point.tags["host"], "total");
    }

    #[test]
    fn service_without_the_id_prefix_falls_back_to_name_and_path() {
        for service in [
            "cpu.total.user",
            "nodecellar.nodejs_host.nodejs_host_x7k2p.",
        ] {
            let body = EXAMPLE.replace(
                "nodecellar.nodejs_host.nodejs_host_x7k2p.cpu.total.user",
                service,
            );
            assert_eq!(
                point(Naming::default(), &body).measurement,
                "cpu.total_user",
                "{service}"
            );
        }
    }

    #[test]
    fn legacy_naming_keeps_the_old_series_name_and_columns() {
        let point = point(Naming::CloudifyLegacy, EXAMPLE);
        assert_eq!(
            point,
            Point {
                measurement: "nodecellar.nodejs_host.nodejs_host_x7k2p.cpu_total_user".to_owned(),
                tags: Default::default(),
                fields: [
                    ("value".to_owned(), FieldValue::Float(3.2)),
                    ("unit".to_owned(), FieldValue::String(String::new())),
                    ("type".to_owned(), FieldValue::String("GAUGE".to_owned())),
                ]
                .into(),
                timestamp: 1_466_000_000_000_000_000,
            }
        );
    }

    #[test]
    fn control_messages_are_not_metrics() {
        let body = r#"{"service":"cloudify.configuration","state":"stop","config_path":"/tmp/x","deployment_id":"d.1","time":1466000000}"#;
        for naming in [Naming::default(), Naming::CloudifyLegacy] {
            let normalised = normalise_with(naming, body).expect("a control message");
            assert_eq!(
                normalised,
                Normalised::Control(ControlMessage {
                    state: ControlState::Stop,
                    deployment_id: "d.1".to_owned(),
                    config_path: "/tmp/x".to_owned(),
                    time: 1_466_000_000,
                })
            );
        }
    }

    #[test]
    fn errors_say_which_field_and_what_was_found() {
        let cases = [
            (
                EXAMPLE.replace("3.2", r#""3.2""#),
                r#"field "metric" is the string "3.2", expected a number"#,
            ),
            (
                EXAMPLE.replace(r#""node_id":"nodejs_host_x7k2p","#, ""),
                r#"metric body has no "node_id" field"#,
            ),
            (
                EXAMPLE.replace("1466000000", "-5"),
                r#"field "time" is the number -5, which is not a timestamp: it is before the Unix epoch"#,
            ),
            (
                r#"{"service":"cloudify.configuration","state":"pause"}"#.to_owned(),
                r#"field "state" is the string "pause", expected "start" or "stop""#,
            ),
            (
                r#"{"service":"cloudify.configuration","state":"start"}"#.to_owned(),
                r#"control message has no "deployment_id" field"#,
            ),
            (
                "[1,2]".to_owned(),
                "body is an array, expected a JSON object",
            ),
            (
                EXAMPLE.replace(r#""name":"cpu""#, r#""name":"cpu","name":"mem""#),
                r#"body has the key "name" more than once"#,
            ),
        ];
        for (body, message) in cases {
            let error = normalise_with(Naming::default(), &body).expect_err("refused");
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn long_values_are_quoted_short() {
        let long = "x".repeat(5000);
        let body = EXAMPLE.replace("3.2", &format!("{long:?}"));
        let error = normalise_with(Naming::default(), &body).expect_err("refused");
        assert!(error.to_string().len() < 150, "{error}");
    }
}
