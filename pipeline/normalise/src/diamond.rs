//! The Diamond metric body on the wire (wire formats, section 1) and its decoding.
//!
//! simd-json parses the body in place and hands out strings borrowed from it, so decoding
//! allocates only for the tape. The body is read into [`WireBody`], whose slots keep each known
//! key's value as a [`Raw`] scalar: nothing about a field's type is decided by serde, so a wrong
//! or missing field becomes a [`NormaliseError`] naming that field, and every serde error left is
//! a syntax error. Containers are skipped, never built.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use simd_json::ErrorType;

use crate::{BodyError, ControlMessage, ControlState, NormaliseError};

/// The `service` of a policy-engine control message.
pub(crate) const CONTROL_SERVICE: &str = "cloudify.configuration";

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// How much of a string value an error message quotes.
const QUOTE_CHARS: usize = 40;

/// One JSON value as far as normalising cares: scalars are kept, containers only named.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Null,
    Array,
    Object,
}

impl Raw<'_> {
    /// What was found, for an error message: the type and a short quote of the value.
    fn describe(&self) -> String {
        match self {
            Raw::Str(text) => format!("the string {:?}", quote(text)),
            Raw::Int(number) => format!("the number {number}"),
            Raw::UInt(number) => format!("the number {number}"),
            // Debug, not Display: 1e300 prints as `1e300`, not as 301 digits.
            Raw::Float(number) => format!("the number {number:?}"),
            Raw::Bool(value) => format!("the boolean {value}"),
            Raw::Null => "null".to_owned(),
            Raw::Array => "an array".to_owned(),
            Raw::Object => "an object".to_owned(),
        }
    }
}

/// At most [`QUOTE_CHARS`] characters of `text`, so no error carries a whole body.
pub(crate) fn quote(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((end, _)) => Cow::Owned(format!("{}...", &text[..end])),
        None => Cow::Borrowed(text),
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(text)))
    }

    fn visit_i64<E>(self, number: i64) -> Result<Raw<'de>, E> {
        Ok(Raw::Int(number))
    }

    fn visit_u64<E>(self, number: u64) -> Result<Raw<'de>, E> {
        Ok(Raw::UInt(number))
    }

    fn visit_f64<E>(self, number: f64) -> Result<Raw<'de>, E> {
        Ok(Raw::Float(number))
    }

    fn visit_bool<E>(self, value: bool) -> Result<Raw<'de>, E> {
        Ok(Raw::Bool(value))
    }

    fn visit_unit<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }

    fn visit_none<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Raw::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw::Object)
    }
}

impl<'de> Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

/// The known keys of a Diamond metric or a control message, each as found (or not) in the body.
/// Unknown keys are skipped.
#[derive(Debug, Default)]
pub(crate) struct WireBody<'a> {
    deployment_id: Option<Raw<'a>>,
    node_name: Option<Raw<'a>>,
    node_id: Option<Raw<'a>>,
    host: Option<Raw<'a>>,
    name: Option<Raw<'a>>,
    path: Option<Raw<'a>>,
    service: Option<Raw<'a>>,
    metric: Option<Raw<'a>>,
    unit: Option<Raw<'a>>,
    metric_type: Option<Raw<'a>>,
    time: Option<Raw<'a>>,
    ttl: Option<Raw<'a>>,
    state: Option<Raw<'a>>,
    config_path: Option<Raw<'a>>,
    /// The first known key found twice: the body is refused rather than guessed at.
    duplicate_key: Option<&'static str>,
}

impl<'a> WireBody<'a> {
    fn slot(&mut self, key: &str) -> Option<(&'static str, &mut Option<Raw<'a>>)> {
        let slot = match key {
            "deployment_id" => ("deployment_id", &mut self.deployment_id),
            "node_name" => ("node_name", &mut self.node_name),
            "node_id" => ("node_id", &mut self.node_id),
            "host" => ("host", &mut self.host),
            "name" => ("name", &mut self.name),
            "path" => ("path", &mut self.path),
            "service" => ("service", &mut self.service),
            "metric" => ("metric", &mut self.metric),
            "unit" => ("unit", &mut self.unit),
            "type" => ("type", &mut self.metric_type),
            "time" => ("time", &mut self.time),
            "ttl" => ("ttl", &mut self.ttl),
            "state" => ("state", &mut self.state),
            "config_path" => ("config_path", &mut self.config_path),
            _ => return None,
        };
        Some(slot)
    }
}

/// The top-level JSON value: an object read into slots, or the kind of anything else.
#[expect(
    clippy::large_enum_variant,
    reason = "lives on the stack for one call; boxing the object would allocate per message"
)]
pub(crate) enum Decoded<'a> {
    Object(WireBody<'a>),
    NotObject(&'static str),
}

struct DecodedVisitor;

impl<'de> Visitor<'de> for DecodedVisitor {
    type Value = Decoded<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Decoded<'de>, A::Error> {
        let mut body = WireBody::default();
        while let Some(key) = map.next_key::<Raw<'de>>()? {
            let slot = match &key {
                Raw::Str(key) => body.slot(key),
                _ => None,
            };
            match slot {
                Some((name, slot)) => {
                    let value = map.next_value::<Raw<'de>>()?;
                    if slot.replace(value).is_some() && body.duplicate_key.is_none() {
                        body.duplicate_key = Some(name);
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Decoded::Object(body))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Decoded<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Decoded::NotObject("an array"))
    }

    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Decoded<'de>, E> {
        Ok(Decoded::NotObject("a string"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Decoded<'de>, E> {
        Ok(Decoded::NotObject("a string"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Decoded<'de>, E> {
        Ok(Decoded::NotObject("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Decoded<'de>, E> {
        Ok(Decoded::NotObject("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Decoded<'de>, E> {
        Ok(Decoded::NotObject("a number"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Decoded<'de>, E> {
        Ok(Decoded::NotObject("a boolean"))
    }

    fn visit_unit<E>(self) -> Result<Decoded<'de>, E> {
        Ok(Decoded::NotObject("null"))
    }

    fn visit_none<E>(self) -> Result<Decoded<'de>, E> {
        Ok(Decoded::NotObject("null"))
    }
}

impl<'de> Deserialize<'de> for Decoded<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DecodedVisitor)
    }
}

/// Parses a body into its known keys. simd-json rewrites `body` in place; on an error, pass the
/// error and the body to [`syntax_error`].
/// `buffers` are simd-json's working memory, reused across calls so parsing allocates nothing.
pub(crate) fn decode<'a>(
    body: &'a mut [u8],
    buffers: &mut simd_json::Buffers,
) -> Result<Decoded<'a>, simd_json::Error> {
    simd_json::serde::from_slice_with_buffers::<Decoded<'_>>(body, buffers)
}

/// What a simd-json error means for the body it came from.
///
/// simd-json refuses a number whose value overflows a float (`1e999`) as an invalid number.
/// JSON allows it, so it is told apart: it is `not_finite`, or `bad_timestamp` as the `time`.
/// The key is the one just before the number, wherever it is nested. Only string contents with
/// escapes are rewritten before simd-json stops, so the number and the structure around it are
/// still the body's own bytes.
pub(crate) fn syntax_error(error: &simd_json::Error, body: &[u8]) -> NormaliseError {
    let invalid_number = matches!(
        error.error(),
        ErrorType::InvalidNumber | ErrorType::InvalidExponent
    );
    let overflowing = invalid_number
        .then(|| overflowing_number(body, error.index()))
        .flatten();
    let Some((start, number, value)) = overflowing else {
        return BodyError::syntax(error).into();
    };
    match key_before(body, start) {
        Some("metric") => NormaliseError::NotFinite {
            field: "metric",
            value,
        },
        Some("time") => NormaliseError::BadTimestamp {
            found: format!("the number {}", quote(number)),
            why: "it is not finite",
        },
        _ => NormaliseError::NumberOutOfRange {
            offset: start,
            number: quote(number).into_owned(),
        },
    }
}

fn is_number_byte(byte: u8) -> bool {
    matches!(byte, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
}

/// The JSON number around byte `index`, with its start, if it is valid JSON whose value
/// overflows a float.
fn overflowing_number(body: &[u8], index: usize) -> Option<(usize, &str, f64)> {
    let index = index.min(body.len());
    let start = body[..index]
        .iter()
        .rposition(|byte| !is_number_byte(*byte))
        .map_or(0, |position| position + 1);
    let end = body[index..]
        .iter()
        .position(|byte| !is_number_byte(*byte))
        .map_or(body.len(), |position| index + position);
    let number = std::str::from_utf8(&body[start..end]).ok()?;
    if !is_json_number(number) {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    value.is_infinite().then_some((start, number, value))
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, the JSON number grammar.
fn is_json_number(text: &str) -> bool {
    fn digits(bytes: &[u8]) -> usize {
        bytes
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count()
    }
    let bytes = text.as_bytes();
    let mut at = usize::from(bytes.first() == Some(&b'-'));
    match digits(&bytes[at..]) {
        0 => return false,
        count if count > 1 && bytes[at] == b'0' => return false,
        count => at += count,
    }
    if bytes.get(at) == Some(&b'.') {
        match digits(&bytes[at + 1..]) {
            0 => return false,
            count => at += 1 + count,
        }
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        match digits(&bytes[at..]) {
            0 => return false,
            count => at += count,
        }
    }
    at == bytes.len()
}

/// The known key a value at `start` belongs to, if the bytes before it are `"metric":` or
/// `"time":` after `{` or `,` (JSON whitespace allowed between).
fn key_before(body: &[u8], start: usize) -> Option<&'static str> {
    fn trim_end(bytes: &[u8]) -> &[u8] {
        let end = bytes
            .iter()
            .rposition(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
            .map_or(0, |position| position + 1);
        &bytes[..end]
    }
    let before = trim_end(&body[..start]).strip_suffix(b":")?;
    let before = trim_end(before);
    ["metric", "time"].into_iter().find(|key| {
        let quoted = format!("\"{key}\"");
        before
            .strip_suffix(quoted.as_bytes())
            .is_some_and(|rest| matches!(trim_end(rest).last(), Some(b'{' | b',')))
    })
}

impl<'a> Decoded<'a> {
    /// Checks the body's shape and fields: see [`WireBody::into_message`].
    pub(crate) fn into_message(self) -> Result<Message<'a>, NormaliseError> {
        match self {
            Decoded::NotObject(found) => {
                Err(NormaliseError::from(BodyError::NotAnObject { found }))
            }
            Decoded::Object(wire) => match wire.duplicate_key {
                Some(key) => Err(NormaliseError::DuplicateKey { key }),
                None => wire.into_message(),
            },
        }
    }
}

/// A Diamond metric whose fields all have the types the wire format promises.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DiamondMetric<'a> {
    pub(crate) deployment_id: Cow<'a, str>,
    pub(crate) node_name: Cow<'a, str>,
    pub(crate) node_id: Cow<'a, str>,
    pub(crate) name: Cow<'a, str>,
    pub(crate) path: Cow<'a, str>,
    pub(crate) service: Cow<'a, str>,
    pub(crate) value: f64,
    /// Nanoseconds since the Unix epoch.
    pub(crate) timestamp: i64,
    /// Absent from older agents.
    pub(crate) host: Option<Cow<'a, str>>,
    pub(crate) unit: Option<Cow<'a, str>>,
    pub(crate) metric_type: Option<Cow<'a, str>>,
    /// The event's own ttl (Riemann's, in seconds), when it sent a usable one.
    pub(crate) ttl: Option<Duration>,
}

/// What a body is, once its fields are checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message<'a> {
    Metric(DiamondMetric<'a>),
    Control(ControlMessage),
}

const METRIC: &str = "metric body";
const CONTROL: &str = "control message";

impl<'a> WireBody<'a> {
    /// Checks the fields of a metric or, when `service` is `cloudify.configuration`, of a
    /// control message. Required fields are checked in the wire format's order, so the error
    /// names the first one wrong.
    fn into_message(self) -> Result<Message<'a>, NormaliseError> {
        if matches!(&self.service, Some(Raw::Str(service)) if service == CONTROL_SERVICE) {
            return self.into_control().map(Message::Control);
        }
        let deployment_id = required_str(self.deployment_id, "deployment_id", METRIC)?;
        let node_name = required_str(self.node_name, "node_name", METRIC)?;
        let node_id = required_str(self.node_id, "node_id", METRIC)?;
        let name = required_str(self.name, "name", METRIC)?;
        let path = required_str(self.path, "path", METRIC)?;
        let value = metric_value(self.metric)?;
        let service = required_str(self.service, "service", METRIC)?;
        let timestamp = timestamp_nanos(required(self.time, "time", METRIC)?)?;
        Ok(Message::Metric(DiamondMetric {
            deployment_id,
            node_name,
            node_id,
            name,
            path,
            service,
            value,
            timestamp,
            host: optional_str(self.host, "host")?,
            unit: optional_str(self.unit, "unit")?,
            metric_type: optional_str(self.metric_type, "type")?,
            ttl: event_ttl(self.ttl),
        }))
    }

    fn into_control(self) -> Result<ControlMessage, NormaliseError> {
        let state = match required(self.state, "state", CONTROL)? {
            Raw::Str(state) if state == "start" => ControlState::Start,
            Raw::Str(state) if state == "stop" => ControlState::Stop,
            other => {
                return Err(NormaliseError::from(BodyError::WrongType {
                    field: "state",
                    expected: "\"start\" or \"stop\"",
                    found: other.describe(),
                }));
            }
        };
        let deployment_id = required_str(self.deployment_id, "deployment_id", CONTROL)?;
        let config_path = required_str(self.config_path, "config_path", CONTROL)?;
        let time = timestamp_nanos(required(self.time, "time", CONTROL)?)?;
        Ok(ControlMessage {
            state,
            deployment_id: deployment_id.into_owned(),
            config_path: config_path.into_owned(),
            time: time / NANOS_PER_SECOND,
        })
    }
}

fn required<'a>(
    slot: Option<Raw<'a>>,
    field: &'static str,
    message: &'static str,
) -> Result<Raw<'a>, NormaliseError> {
    slot.ok_or(NormaliseError::from(BodyError::MissingField {
        message,
        field,
    }))
}

fn required_str<'a>(
    slot: Option<Raw<'a>>,
    field: &'static str,
    message: &'static str,
) -> Result<Cow<'a, str>, NormaliseError> {
    match required(slot, field, message)? {
        Raw::Str(text) => Ok(text),
        other => Err(NormaliseError::from(BodyError::WrongType {
            field,
            expected: "a string",
            found: other.describe(),
        })),
    }
}

/// An optional string: absent and `null` are both "not sent".
fn optional_str<'a>(
    slot: Option<Raw<'a>>,
    field: &'static str,
) -> Result<Option<Cow<'a, str>>, NormaliseError> {
    match slot {
        None | Some(Raw::Null) => Ok(None),
        Some(Raw::Str(text)) => Ok(Some(text)),
        Some(other) => Err(NormaliseError::from(BodyError::WrongType {
            field,
            expected: "a string",
            found: other.describe(),
        })),
    }
}

/// The metric's value: any JSON number, always as a float.
fn metric_value(slot: Option<Raw<'_>>) -> Result<f64, NormaliseError> {
    // Diamond values are floats: an integer above 2^53 rounds, as it would in the agent.
    let value = match required(slot, "metric", METRIC)? {
        Raw::Float(value) => value,
        Raw::Int(value) => value as f64,
        Raw::UInt(value) => value as f64,
        other => {
            return Err(NormaliseError::from(BodyError::WrongType {
                field: "metric",
                expected: "a number",
                found: other.describe(),
            }));
        }
    };
    if value.is_finite() {
        Ok(value)
    } else {
        Err(NormaliseError::NotFinite {
            field: "metric",
            value,
        })
    }
}

/// The event's `ttl`: a positive, finite number of seconds (Riemann's unit; a float is kept to
/// the nanosecond). Anything else (absent, null, zero, negative, a string, too large for a
/// duration) is `None`, and the host_failure policy's own ttl applies: the ttl only tunes the
/// rules, so a bad one must not cost the point its way to the store.
fn event_ttl(slot: Option<Raw<'_>>) -> Option<Duration> {
    let seconds = match slot? {
        Raw::Int(seconds) => seconds as f64,
        Raw::UInt(seconds) => seconds as f64,
        Raw::Float(seconds) => seconds,
        _ => return None,
    };
    if seconds > 0.0 {
        Duration::try_from_secs_f64(seconds).ok()
    } else {
        None
    }
}

/// Epoch seconds (an integer, or a float rounded to the nanosecond) as nanoseconds.
fn timestamp_nanos(raw: Raw<'_>) -> Result<i64, NormaliseError> {
    let bad = |raw: &Raw<'_>, why: &'static str| NormaliseError::BadTimestamp {
        found: raw.describe(),
        why,
    };
    const NEGATIVE: &str = "it is before the Unix epoch";
    const TOO_LATE: &str = "it is past what nanoseconds since the epoch can hold (year 2262)";
    match &raw {
        Raw::Int(seconds) if *seconds < 0 => Err(bad(&raw, NEGATIVE)),
        Raw::Int(seconds) => seconds
            .checked_mul(NANOS_PER_SECOND)
            .ok_or_else(|| bad(&raw, TOO_LATE)),
        Raw::UInt(seconds) => i64::try_from(*seconds)
            .ok()
            .and_then(|seconds| seconds.checked_mul(NANOS_PER_SECOND))
            .ok_or_else(|| bad(&raw, TOO_LATE)),
        Raw::Float(seconds) if !seconds.is_finite() => Err(bad(&raw, "it is not finite")),
        Raw::Float(seconds) if *seconds < 0.0 => Err(bad(&raw, NEGATIVE)),
        Raw::Float(seconds) => {
            // Whole seconds and the fraction apart, so the fraction keeps its precision.
            let whole = seconds.trunc();
            // i64::MAX nanoseconds is 9_223_372_036.85 s: anything this large overflows below.
            if whole >= 9_223_372_037.0 {
                return Err(bad(&raw, TOO_LATE));
            }
            // `whole` is in 0..9.3e9 and the rounded fraction in 0..=1e9: both casts are exact.
            let (whole, fraction) = (whole as i64, ((seconds - whole) * 1e9).round() as i64);
            whole
                .checked_mul(NANOS_PER_SECOND)
                .and_then(|nanos| nanos.checked_add(fraction))
                .ok_or_else(|| bad(&raw, TOO_LATE))
        }
        _ => Err(bad(&raw, "it is not a number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::rejection::Rejection;

    fn decode_str(json: &str) -> WireBody<'static> {
        let body: &'static mut [u8] = json.as_bytes().to_vec().leak();
        match decode(body, &mut simd_json::Buffers::default()).expect("valid JSON") {
            Decoded::Object(wire) => wire,
            Decoded::NotObject(found) => panic!("{found}"),
        }
    }

    #[test]
    fn times_convert_to_nanoseconds() {
        let cases: &[(Raw<'_>, i64)] = &[
            (Raw::Int(1_466_000_000), 1_466_000_000_000_000_000),
            (Raw::UInt(1_466_000_000), 1_466_000_000_000_000_000),
            (Raw::Int(0), 0),
            (Raw::Float(1_466_000_000.25), 1_466_000_000_250_000_000),
            (Raw::Float(1.5), 1_500_000_000),
            (Raw::Float(0.000_000_000_4), 0),
            (Raw::Float(-0.0), 0),
            (Raw::Int(9_223_372_036), 9_223_372_036_000_000_000),
        ];
        for (raw, nanos) in cases {
            assert_eq!(
                timestamp_nanos(raw.clone()).expect("in range"),
                *nanos,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn times_out_of_range_are_bad_timestamps() {
        let cases = [
            Raw::Int(-1),
            Raw::Int(9_223_372_037),
            Raw::Int(i64::MAX),
            Raw::UInt(u64::MAX),
            Raw::Float(-0.5),
            Raw::Float(9_223_372_036.9),
            Raw::Float(1e30),
            Raw::Float(f64::INFINITY),
            Raw::Float(f64::NAN),
            Raw::Str("1466000000".into()),
            Raw::Null,
            Raw::Bool(true),
            Raw::Array,
        ];
        for raw in cases {
            let error = timestamp_nanos(raw.clone()).expect_err("out of range");
            assert_eq!(error.reason(), "bad_timestamp", "{raw:?}: {error}");
        }
    }

    #[test]
    fn a_ttl_is_positive_seconds_and_anything_else_leaves_the_policy_default() {
        let cases: &[(Raw<'_>, Option<Duration>)] = &[
            (Raw::Int(10), Some(Duration::from_secs(10))),
            (Raw::UInt(10), Some(Duration::from_secs(10))),
            (Raw::Float(2.5), Some(Duration::from_millis(2500))),
            (Raw::Int(0), None),
            (Raw::Int(-10), None),
            (Raw::Float(f64::NAN), None),
            (Raw::Float(f64::INFINITY), None),
            (Raw::Float(1e300), None),
            (Raw::Str("10".into()), None),
            (Raw::Null, None),
            (Raw::Object, None),
        ];
        for (raw, ttl) in cases {
            assert_eq!(event_ttl(Some(raw.clone())), *ttl, "{raw:?}");
        }
        assert_eq!(event_ttl(None), None);
    }

    #[test]
    fn strings_are_borrowed_from_the_body_even_with_escapes() {
        let wire = decode_str(r#"{"name":"cpu","path":"total\u005fuser"}"#);
        assert!(matches!(wire.name, Some(Raw::Str(Cow::Borrowed("cpu")))));
        assert!(matches!(
            wire.path,
            Some(Raw::Str(Cow::Borrowed("total_user")))
        ));
    }

    #[test]
    fn nested_and_unknown_values_are_skipped() {
        let wire = decode_str(r#"{"x":{"a":[1,{"b":null}]},"name":[1,2],"path":{"q":1},"y":[]}"#);
        assert_eq!(wire.name, Some(Raw::Array));
        assert_eq!(wire.path, Some(Raw::Object));
    }

    #[test]
    fn json_numbers_follow_the_grammar() {
        for good in [
            "0", "-0", "1", "12", "1.5", "-1.5e10", "1E+999", "1e-999", "0.0e0",
        ] {
            assert!(is_json_number(good), "{good}");
        }
        for bad in [
            "", "-", "+1", "01", "1.", ".5", "1e", "1e+", "1.5.5", "1ee5", "--1", "inf",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn overflowing_numbers_are_found_with_their_key() {
        let body = br#"{"a":1, "metric" : -1e999,"time":1e400}"#;
        let (start, number, value) =
            overflowing_number(body, 20).expect("-1e999 is around byte 20");
        assert_eq!((start, number, value), (19, "-1e999", f64::NEG_INFINITY));
        assert_eq!(key_before(body, start), Some("metric"));
        let (start, _, _) = overflowing_number(body, 34).expect("1e400 is at byte 34");
        assert_eq!(key_before(body, start), Some("time"));
        assert_eq!(overflowing_number(body, 5), None, "1 is finite");
        assert_eq!(key_before(br#"{"xmetric":1e999}"#, 11), None);
    }

    #[test]
    fn quotes_are_cut_at_forty_characters() {
        assert_eq!(quote("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(quote(&long), format!("{}...", "é".repeat(40)));
    }
}
