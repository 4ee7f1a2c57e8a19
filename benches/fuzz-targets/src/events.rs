//! Cloudify event and log bodies (wire formats, section 3), as the events path decodes them.
//!
//! The input is `<index pattern> NUL <body>`, or a body alone for the manager's daily
//! `logstash-%{+YYYY.MM.dd}`. A pattern the configuration would refuse is checked no further
//! and the body is decoded with the default. A decoded document:
//!
//! - is one line of JSON (no raw line break, for the NDJSON bulk body): an object holding the
//!   body's fields, unchanged, and `@timestamp`;
//! - has `@timestamp` in RFC 3339 UTC with milliseconds (`2016-06-15T10:13:20.123Z`), at most
//!   a millisecond before the instant the body's `timestamp` names, never after it;
//! - goes to the index the pattern names for that `@timestamp`, a name Elasticsearch accepts;
//! - has the `_id` hashed from the routing and the body as delivered.

use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use sluice_core::ack::SourceMessage;
use sluice_normalise::{EventDecoder, IndexPattern, document_id, parse_manager_timestamp};

use crate::split_at_nul;

const EXCHANGE: &str = "cloudify-events";
const ROUTING_KEY: &str = "";

/// Decodes `data` as one event or log body; panics when a property above does not hold.
pub fn events(data: &[u8]) {
    let (pattern, body) = match split_at_nul(data) {
        Some((pattern, body)) => (
            std::str::from_utf8(pattern)
                .ok()
                .and_then(|pattern| IndexPattern::parse(pattern).ok()),
            body,
        ),
        None => (None, data),
    };
    let pattern = pattern.unwrap_or_default();
    let decoder = EventDecoder::new(pattern.clone());
    let message = SourceMessage {
        body: Bytes::copy_from_slice(body),
        exchange: EXCHANGE.to_owned(),
        routing_key: ROUTING_KEY.to_owned(),
        redelivered: false,
    };
    let mut scratch = body.to_vec();
    let Ok(document) = decoder.decode(&mut scratch, &message) else {
        return;
    };

    assert_eq!(
        document.id,
        document_id(EXCHANGE, ROUTING_KEY, body),
        "the _id is not the hash of the delivery"
    );
    assert!(
        !document.source.contains(&b'\n'),
        "a raw line break in the source: {:?}",
        String::from_utf8_lossy(&document.source)
    );
    let source: Value = match serde_json::from_slice(&document.source) {
        Ok(source) => source,
        // serde_json stops at 128 levels; Elasticsearch reads deeper documents.
        Err(error) if error.to_string().contains("recursion limit") => return,
        Err(error) => panic!(
            "the source is not JSON: {error}: {:?}",
            String::from_utf8_lossy(&document.source)
        ),
    };
    let Some(fields) = source.as_object() else {
        panic!("the source is not an object: {source}");
    };

    let Some(Value::String(stamp)) = fields.get("@timestamp") else {
        panic!("no @timestamp string: {source}");
    };
    assert!(
        is_utc_millis(stamp),
        "@timestamp {stamp:?} is not UTC RFC 3339 with ms"
    );
    let stamp: Timestamp = stamp
        .parse()
        .unwrap_or_else(|error| panic!("@timestamp {stamp:?} does not parse: {error}"));
    let Some(Value::String(sent)) = fields.get("timestamp") else {
        panic!("a document without its body's timestamp string: {source}");
    };
    let named = parse_manager_timestamp(sent)
        .unwrap_or_else(|error| panic!("the decoder took a timestamp it refuses: {error}"));
    let behind = named.duration_since(stamp);
    assert!(
        behind >= SignedDuration::ZERO && behind < SignedDuration::from_millis(1),
        "@timestamp {stamp} is not {sent:?} ({named}) cut to the millisecond"
    );

    assert_eq!(document.index, pattern.index_for(stamp), "index of {stamp}");
    if let Err(why) = check_index_name(&document.index) {
        panic!(
            "index {:?} is refused by Elasticsearch: {why}",
            document.index
        );
    }

    // The body's fields, as serde_json reads them (when it does: simd-json reads some numbers
    // serde_json refuses), are the document's, but for `@timestamp`.
    if let Ok(Value::Object(mut sent)) = serde_json::from_slice::<Value>(body) {
        sent.remove("@timestamp");
        let mut kept = fields.clone();
        kept.remove("@timestamp");
        assert!(
            same_json(&Value::Object(sent), &Value::Object(kept)),
            "the document's fields are not the body's: {source}"
        );
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, as `@timestamp` is written.
fn is_utc_millis(stamp: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd.dddZ";
    stamp.len() == SHAPE.len()
        && stamp.bytes().zip(SHAPE).all(|(byte, shape)| match shape {
            b'd' => byte.is_ascii_digit(),
            literal => byte == *literal,
        })
}

/// Equal JSON, numbers compared by value: simd-json and serde_json may type one differently
/// (`-0`, integers past 64 bits) without it being another number.
fn same_json(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => left.as_f64() == right.as_f64(),
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .zip(right)
                    .all(|(left, right)| same_json(left, right))
        }
        (Value::Object(left), Value::Object(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .all(|(key, left)| right.get(key).is_some_and(|right| same_json(left, right)))
        }
        (left, right) => left == right,
    }
}

/// Elasticsearch's rules for an index name (`MetadataCreateIndexService`), written out again
/// here so that the decoder's own check is not what checks it.
fn check_index_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 255 {
        return Err("empty or longer than 255 bytes");
    }
    if name == "." || name == ".." || name.starts_with(['-', '_', '+']) {
        return Err("\".\", \"..\" or a leading '-', '_' or '+'");
    }
    let forbidden = |character: char| {
        "\\/*?\"<>| ,#:".contains(character) || character.is_control() || character.is_uppercase()
    };
    if name.chars().any(forbidden) {
        return Err("a forbidden, control or upper-case character");
    }
    Ok(())
}
