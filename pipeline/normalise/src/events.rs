//! Cloudify events and logs (wire formats, section 3) to the documents Elasticsearch stores.
//!
//! The manager's readers query `logstash-*`, filter on `type` and `context.execution_id` and sort
//! on `@timestamp`, so a document is the body itself, every field kept as sent (unknown ones
//! too), with `@timestamp` added: the body's own `timestamp` as a UTC instant, in RFC 3339 with
//! milliseconds. Logstash also added `@version` and `tags`; no reader uses them, so they are not
//! written.
//!
//! - [`IndexPattern`]: the index name, fixed (`cloudify_events`, 3.2) or daily in Logstash's
//!   sprintf date syntax (`logstash-%{+YYYY.MM.dd}`, 3.3 on, the default), always taken from the
//!   document's own `@timestamp` in UTC, never from the time it was ingested.
//! - [`EventDecoder`]: one body in, one [`Document`] out, with an `_id` from
//!   [`document_id`] so that a redelivered message writes the same document again.
//!
//! simd-json parses the body in place into its tape; the document is written back from the tape
//! with simd-json's own writer (which escapes every string, so the source is one line), the
//! body's keys in the body's order and `@timestamp` last.

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::Bytes;
use jiff::Timestamp;
use jiff::tz::Offset;
use simd_json::prelude::*;
use simd_json::tape::{Node, Value};
use simd_json::{BorrowedValue, ValueType};
use sluice_core::ack::SourceMessage;
use sluice_core::document::Document;
use sluice_core::rejection::{Reason, Rejection};
use xxhash_rust::xxh3::Xxh3;

use crate::BodyError;
use crate::diamond::quote;
use crate::timestamp::{TimestampError, format_event_timestamp, parse_manager_timestamp};

/// The `type` of an event body.
pub const EVENT_TYPE: &str = "cloudify_event";
/// The `type` of a log body.
pub const LOG_TYPE: &str = "cloudify_log";
/// The field the decoder adds.
pub const TIMESTAMP_FIELD: &str = "@timestamp";
/// The index the manager reads since 3.3, one per UTC day.
pub const LOGSTASH_DAILY: &str = "logstash-%{+YYYY.MM.dd}";

/// Elasticsearch refuses index names longer than this many bytes.
const MAX_INDEX_NAME_BYTES: usize = 255;

/// Why an index pattern was refused. Raised when the configuration is read, never per message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexPatternError {
    #[error("index pattern is empty")]
    Empty,
    #[error("index pattern has \"%{{\" at byte {at} with no \"}}\" after it")]
    Unclosed { at: usize },
    #[error(
        "index pattern refers to the field {name:?}: only dates such as \"%{{+YYYY.MM.dd}}\" are supported"
    )]
    FieldReference { name: String },
    #[error("index pattern has an empty date \"%{{+}}\" at byte {at}")]
    EmptyDate { at: usize },
    #[error(
        "date format {format:?} has {token:?}: supported are yyyy or YYYY (year), MM, dd, HH and \
         characters other than letters and quotes"
    )]
    UnsupportedToken { format: String, token: String },
    #[error("index pattern gives names such as {example:?}, which Elasticsearch refuses: {why}")]
    IllegalName { example: String, why: String },
}

/// One piece of an index name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// The UTC year, four digits.
    Year,
    /// The UTC month, two digits.
    Month,
    /// The UTC day of the month, two digits.
    Day,
    /// The UTC hour, two digits.
    Hour,
}

/// An Elasticsearch index name, fixed or made from a document's UTC timestamp.
///
/// The syntax is Logstash's `sprintf` date reference: text, with `%{+FORMAT}` replaced by the
/// timestamp in Joda format letters, of which `yyyy`/`YYYY` (both the calendar year, as in
/// Joda), `MM`, `dd` and `HH` are supported. Field references (`%{type}`) are not. Every name a
/// pattern can make is checked when it is parsed: the tokens only ever write digits, so one
/// sample name stands for all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPattern {
    pattern: String,
    segments: Vec<Segment>,
}

impl IndexPattern {
    pub fn parse(pattern: &str) -> Result<IndexPattern, IndexPatternError> {
        if pattern.is_empty() {
            return Err(IndexPatternError::Empty);
        }
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = pattern;
        let mut offset = 0;
        while let Some(start) = rest.find("%{") {
            literal.push_str(&rest[..start]);
            let reference_start = start + 2;
            let Some(length) = rest[reference_start..].find('}') else {
                return Err(IndexPatternError::Unclosed { at: offset + start });
            };
            let reference = &rest[reference_start..reference_start + length];
            let Some(format) = reference.strip_prefix('+') else {
                return Err(IndexPatternError::FieldReference {
                    name: reference.to_owned(),
                });
            };
            if format.is_empty() {
                return Err(IndexPatternError::EmptyDate { at: offset + start });
            }
            parse_date_format(format, &mut segments, &mut literal)?;
            let consumed = reference_start + length + 1;
            offset += consumed;
            rest = &rest[consumed..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        let parsed = IndexPattern {
            pattern: pattern.to_owned(),
            segments,
        };
        let example = parsed.index_for(sample_timestamp());
        if let Err(why) = check_index_name(&example) {
            return Err(IndexPatternError::IllegalName { example, why });
        }
        Ok(parsed)
    }

    /// The daily index the manager reads since 3.3: `logstash-%{+YYYY.MM.dd}`.
    pub fn logstash_daily() -> IndexPattern {
        IndexPattern {
            pattern: LOGSTASH_DAILY.to_owned(),
            segments: vec![
                Segment::Literal("logstash-".to_owned()),
                Segment::Year,
                Segment::Literal(".".to_owned()),
                Segment::Month,
                Segment::Literal(".".to_owned()),
                Segment::Day,
            ],
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether every document goes to the same index.
    pub fn is_fixed(&self) -> bool {
        self.segments
            .iter()
            .all(|segment| matches!(segment, Segment::Literal(_)))
    }

    /// An index pattern matching every name this pattern makes, for index templates and
    /// searches: each date field becomes `*` (`logstash-%{+YYYY.MM.dd}` gives `logstash-*.*.*`).
    pub fn wildcard(&self) -> String {
        let mut wildcard = String::with_capacity(self.pattern.len());
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => wildcard.push_str(text),
                Segment::Year | Segment::Month | Segment::Day | Segment::Hour => wildcard.push('*'),
            }
        }
        wildcard
    }

    /// The index a document with this `@timestamp` goes to, its date fields taken in UTC.
    ///
    /// Every name is legal for timestamps in the years 0000 to 9999, which are all that
    /// [`parse_manager_timestamp`] returns.
    pub fn index_for(&self, timestamp: Timestamp) -> String {
        let utc = Offset::UTC.to_datetime(timestamp);
        let mut name = String::with_capacity(self.pattern.len() + 4);
        for segment in &self.segments {
            let written = match segment {
                Segment::Literal(text) => {
                    name.push_str(text);
                    Ok(())
                }
                Segment::Year => write!(name, "{:04}", utc.year()),
                Segment::Month => write!(name, "{:02}", utc.month()),
                Segment::Day => write!(name, "{:02}", utc.day()),
                Segment::Hour => write!(name, "{:02}", utc.hour()),
            };
            written.expect("writing to a String cannot fail");
        }
        name
    }
}

impl Default for IndexPattern {
    /// [`IndexPattern::logstash_daily`], where the manager looks.
    fn default() -> Self {
        IndexPattern::logstash_daily()
    }
}

impl std::str::FromStr for IndexPattern {
    type Err = IndexPatternError;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        IndexPattern::parse(pattern)
    }
}

impl std::fmt::Display for IndexPattern {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.pattern)
    }
}

/// Splits a Joda date format into segments: runs of one letter are tokens, anything else but a
/// quote is literal text (appended to `literal`, which carries text across references).
fn parse_date_format(
    format: &str,
    segments: &mut Vec<Segment>,
    literal: &mut String,
) -> Result<(), IndexPatternError> {
    let mut characters = format.chars().peekable();
    while let Some(character) = characters.next() {
        if !character.is_ascii_alphabetic() && character != '\'' {
            literal.push(character);
            continue;
        }
        let mut run = 1;
        while characters.next_if_eq(&character).is_some() {
            run += 1;
        }
        let segment = match (character, run) {
            ('y' | 'Y', 4) => Segment::Year,
            ('M', 2) => Segment::Month,
            ('d', 2) => Segment::Day,
            ('H', 2) => Segment::Hour,
            (_, run) => {
                return Err(IndexPatternError::UnsupportedToken {
                    format: format.to_owned(),
                    token: character.to_string().repeat(run),
                });
            }
        };
        if !literal.is_empty() {
            segments.push(Segment::Literal(std::mem::take(literal)));
        }
        segments.push(segment);
    }
    Ok(())
}

/// The instant sample names are made from when a pattern is checked.
fn sample_timestamp() -> Timestamp {
    Timestamp::UNIX_EPOCH
}

/// Elasticsearch's rules for an index name (`MetadataCreateIndexService`), and no control
/// characters.
fn check_index_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if name.len() > MAX_INDEX_NAME_BYTES {
        return Err(format!(
            "it is longer than {MAX_INDEX_NAME_BYTES} bytes ({})",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("it is \".\" or \"..\"".to_owned());
    }
    if name.starts_with(['-', '_', '+']) {
        return Err("it starts with '-', '_' or '+'".to_owned());
    }
    if let Some(character) = name.chars().find(|character| {
        matches!(
            character,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        )
    }) {
        return Err(format!("it contains {character:?}"));
    }
    if name.chars().any(char::is_control) {
        return Err("it contains a control character".to_owned());
    }
    if name.chars().any(char::is_uppercase) {
        return Err("it has upper-case letters".to_owned());
    }
    Ok(())
}

/// Why an event or log body was not turned into a document. None of these is worth retrying:
/// the body is dead-lettered and counted under [`reason`](EventError::reason). Messages name the
/// field and quote at most a short part of what was found, never the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not UTF-8, not JSON, not an object, a field missing or of the wrong type.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// Anywhere in the body: one of the values would be lost, and Elasticsearch refuses such a
    /// document anyway.
    #[error("body has the key {key:?} more than once in one object")]
    DuplicateKey { key: String },
    #[error("field \"timestamp\": {0}")]
    BadTimestamp(#[from] TimestampError),
}

impl Rejection for EventError {
    fn reason(&self) -> Reason {
        match self {
            EventError::Body(error) => error.reason(),
            EventError::DuplicateKey { .. } => Reason::InvalidJson,
            EventError::BadTimestamp(error) => error.reason(),
        }
    }
}

/// The deterministic `_id` of a message's document: the xxh3 128-bit hash of the exchange, the
/// routing key and the body bytes as delivered, as 32 lower-case hex digits.
///
/// Exchange and routing key are each prefixed with their length, so no two different triples
/// hash the same input. A redelivered message (same routing, same bytes) gets the same id, and
/// `create` answers 409 instead of storing it twice. The same body on a 3.x queue (default
/// exchange, routing key `cloudify-events`) and a 4.x exchange (`cloudify-events`, routing key
/// `""`) gets different ids, which is right: they are different deliveries.
pub fn document_id(exchange: &str, routing_key: &str, body: &[u8]) -> String {
    let mut hasher = Xxh3::new();
    for part in [exchange, routing_key] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.update(body);
    format!("{:032x}", hasher.digest128())
}

/// Whether a body is an event or a log, by its `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Event,
    Log,
}

impl Kind {
    fn body_name(self) -> &'static str {
        match self {
            Kind::Event => "event body",
            Kind::Log => "log body",
        }
    }
}

/// Turns event and log bodies into documents for one index pattern. Cheap to share: `decode`
/// takes `&self`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventDecoder {
    index: IndexPattern,
}

impl EventDecoder {
    pub fn new(index: IndexPattern) -> Self {
        Self { index }
    }

    pub fn index_pattern(&self) -> &IndexPattern {
        &self.index
    }

    /// Decodes one event or log body into the document to store. `message` gives the routing
    /// for the `_id`, which is hashed from `body` as it is passed in (the delivered bytes);
    /// simd-json then parses `body` in place, so it is scratch afterwards.
    ///
    /// The body must be a JSON object with `type` `cloudify_event` or `cloudify_log` and a
    /// `timestamp` in one of the manager's shapes; `context` and `message`, when present and not
    /// null, must be objects (the manager's index maps them as such). An `@timestamp` the body
    /// may carry is replaced by the one made from `timestamp`.
    pub fn decode(&self, body: &mut [u8], message: &SourceMessage) -> Result<Document, EventError> {
        let id = document_id(&message.exchange, &message.routing_key, body);
        let body_length = body.len();
        let tape = simd_json::to_tape(body).map_err(|error| BodyError::syntax(&error))?;
        let root = tape.as_value();
        let Some(object) = root.as_object() else {
            return Err(BodyError::NotAnObject {
                found: kind_of(root),
            }
            .into());
        };
        if let Some(key) = duplicate_key(&tape.0) {
            return Err(EventError::DuplicateKey {
                key: quote(key).into_owned(),
            });
        }

        let kind = match object.get("type") {
            None => {
                return Err(BodyError::MissingField {
                    message: "event or log body",
                    field: "type",
                }
                .into());
            }
            Some(value) => match value.as_str() {
                Some(EVENT_TYPE) => Kind::Event,
                Some(LOG_TYPE) => Kind::Log,
                _ => {
                    return Err(BodyError::WrongType {
                        field: "type",
                        expected: "\"cloudify_event\" or \"cloudify_log\"",
                        found: describe(value),
                    }
                    .into());
                }
            },
        };
        let timestamp = match object.get("timestamp") {
            None => {
                return Err(BodyError::MissingField {
                    message: kind.body_name(),
                    field: "timestamp",
                }
                .into());
            }
            Some(value) => match value.as_str() {
                Some(text) => parse_manager_timestamp(text)?,
                None => {
                    return Err(TimestampError::new(describe(value), "it is not a string").into());
                }
            },
        };
        for field in ["context", "message"] {
            if let Some(value) = object.get(field)
                && !value.is_null()
                && value.as_object().is_none()
            {
                return Err(BodyError::WrongType {
                    field,
                    expected: "an object",
                    found: describe(value),
                }
                .into());
            }
        }

        let stamp = format_event_timestamp(timestamp);
        let mut source = Vec::with_capacity(body_length + stamp.len() + 20);
        source.push(b'{');
        for (key, value) in object.iter().filter(|(key, _)| *key != TIMESTAMP_FIELD) {
            write_json(&mut source, &BorrowedValue::String(Cow::Borrowed(key)));
            source.push(b':');
            write_json(&mut source, &value);
            source.push(b',');
        }
        source.extend_from_slice(b"\"@timestamp\":\"");
        source.extend_from_slice(stamp.as_bytes());
        source.extend_from_slice(b"\"}");

        Ok(Document {
            index: self.index.index_for(timestamp),
            id,
            source: Bytes::from(source),
        })
    }
}

/// Appends one value with simd-json's writer, which escapes every string (so no raw line break
/// is written) and writes floats in their shortest form.
fn write_json(out: &mut Vec<u8>, value: &impl Writable) {
    value.write(out).expect("writing to a Vec cannot fail");
}

/// The first key found twice in one object, anywhere in the tape.
///
/// The tape lists an object as its header, then each key and the value's nodes; a container's
/// `count` is how many nodes follow it inside it. Each object's keys are gathered by skipping
/// over its values and compared sorted, so the whole walk is linear in the tape (plus the sorts)
/// and uses no recursion, whatever the depth.
fn duplicate_key<'input>(nodes: &[Node<'input>]) -> Option<&'input str> {
    let mut keys: Vec<&'input str> = Vec::new();
    for (start, node) in nodes.iter().enumerate() {
        let Node::Object { len, .. } = *node else {
            continue;
        };
        if len < 2 {
            continue;
        }
        keys.clear();
        let mut at = start + 1;
        for _ in 0..len {
            let Some(Node::String(key)) = nodes.get(at) else {
                break;
            };
            keys.push(key);
            at += 1 + nodes.get(at + 1).map_or(1, node_span);
        }
        keys.sort_unstable();
        if let Some(pair) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
            return Some(pair[0]);
        }
    }
    None
}

/// How many tape nodes a value takes, itself included.
fn node_span(node: &Node<'_>) -> usize {
    match *node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        Node::String(_) | Node::Static(_) => 1,
    }
}

/// What kind of JSON value this is, for an error message.
fn kind_of(value: Value<'_, '_>) -> &'static str {
    if value.is_null() {
        "null"
    } else if value.as_object().is_some() {
        "an object"
    } else if value.as_array().is_some() {
        "an array"
    } else if value.is_str() {
        "a string"
    } else if value.is_bool() {
        "a boolean"
    } else {
        "a number"
    }
}

/// What was found, for an error message: the type and a short quote of a scalar.
fn describe(value: Value<'_, '_>) -> String {
    if let Some(text) = value.as_str() {
        return format!("the string {:?}", quote(text));
    }
    let described = match value.value_type() {
        ValueType::Null => return "null".to_owned(),
        ValueType::Bool => value.as_bool().map(|value| format!("the boolean {value}")),
        ValueType::I64 => value.as_i64().map(|number| format!("the number {number}")),
        ValueType::U64 => value.as_u64().map(|number| format!("the number {number}")),
        // Debug, not Display: 1e300 prints as `1e300`, not as 301 digits.
        ValueType::F64 => value
            .as_f64()
            .map(|number| format!("the number {number:?}")),
        _ => None,
    };
    described.unwrap_or_else(|| kind_of(value).to_owned())
}

#[cfg(test)]
mod tests {

    #[test]
    fn wildcard_matches_every_name_the_pattern_makes() {
        let daily = IndexPattern::parse("logstash-%{+YYYY.MM.dd}").expect("valid");
        assert_eq!(daily.wildcard(), "logstash-*.*.*");
        let fixed = IndexPattern::parse("cloudify_events").expect("valid");
        assert_eq!(fixed.wildcard(), "cloudify_events");
    }

    use super::*;

    fn tape_nodes(json: &str) -> Vec<String> {
        let mut body = json.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut body).expect("valid JSON");
        tape.0.iter().map(|node| format!("{node:?}")).collect()
    }

    #[test]
    fn container_counts_cover_keys_and_nested_nodes() {
        // The duplicate walk relies on this layout.
        let nodes = tape_nodes(r#"{"a":{"b":1,"c":[1,2]},"d":null}"#);
        assert_eq!(nodes[0], "Object { len: 2, count: 10 }");
        assert_eq!(nodes[2], "Object { len: 2, count: 6 }");
        assert_eq!(nodes[6], "Array { len: 2, count: 2 }");
        assert_eq!(nodes.len(), 11);
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth_and_only_within_one_object() {
        let cases = [
            (r#"{"a":1,"b":2,"a":3}"#, Some("a")),
            (r#"{"a":{"x":1,"y":[{"k":1,"k":2}]},"b":2}"#, Some("k")),
            (r#"{"a":{"x":{"z":[1,{"q":1}]},"x":2}}"#, Some("x")),
            (r#"{"a":{"x":1},"b":{"x":1},"x":[{"x":1},{"x":2}]}"#, None),
            (r#"{"a":"a","b":"a"}"#, None),
            (r#"[{"a":1},{"a":1}]"#, None),
            (r#"{}"#, None),
        ];
        for (json, expected) in cases {
            let mut body = json.as_bytes().to_vec();
            let tape = simd_json::to_tape(&mut body).expect("valid JSON");
            assert_eq!(duplicate_key(&tape.0), expected, "{json}");
        }
    }

    #[test]
    fn ids_match_an_independent_xxh3_128_of_the_framed_input() {
        // Computed with Python's `xxhash.xxh3_128_intdigest` over
        // `u64le(len(exchange)) exchange u64le(len(routing_key)) routing_key body`.
        assert_eq!(
            document_id("", "cloudify-events", br#"{"type":"cloudify_event"}"#),
            "599c0c620e5c6125f6746853bdebccfb"
        );
        assert_eq!(document_id("", "", b""), "e5189a9599e3f86205ea23ef06e28b2d");
    }

    #[test]
    fn ids_are_stable_hex_and_separate_routing_from_body() {
        let id = document_id("", "cloudify-events", b"{}");
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
        );
        assert_eq!(id, document_id("", "cloudify-events", b"{}"));
        assert_ne!(id, document_id("cloudify-events", "", b"{}"));
        assert_ne!(document_id("ab", "c", b"{}"), document_id("a", "bc", b"{}"));
        assert_ne!(document_id("a", "b", b"c{}"), document_id("a", "bc", b"{}"));
    }

    #[test]
    fn kinds_and_descriptions_name_what_was_found() {
        let cases = [
            ("null", "null", "null"),
            ("true", "a boolean", "the boolean true"),
            ("-5", "a number", "the number -5"),
            (
                "18446744073709551615",
                "a number",
                "the number 18446744073709551615",
            ),
            ("1e300", "a number", "the number 1e300"),
            (r#""x""#, "a string", r#"the string "x""#),
            ("[1]", "an array", "an array"),
            (r#"{"a":1}"#, "an object", "an object"),
        ];
        for (json, kind, description) in cases {
            let mut body = json.as_bytes().to_vec();
            let tape = simd_json::to_tape(&mut body).expect("valid JSON");
            assert_eq!(kind_of(tape.as_value()), kind, "{json}");
            assert_eq!(describe(tape.as_value()), description, "{json}");
        }
    }
}
