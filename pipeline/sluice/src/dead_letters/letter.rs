//! One dead letter as read from the queue: what its headers say, and how `list` and `show`
//! print it.

use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Map, Value, json};
use sluice_amqp::dead_letter::headers;

/// Longest error text `list` prints; `show` prints all of it.
const LIST_ERROR_CHARS: usize = 160;

/// A letter read from the dead-letter queue and not yet settled.
#[derive(Debug)]
pub struct Letter {
    /// 1 for the head of the queue when it was read.
    pub position: usize,
    /// A fingerprint of the letter (see [`fingerprint`]): stable across reads, unlike its
    /// position, so `replay --id` picks exactly the letter `list` showed.
    pub id: String,
    /// The delivery tag on the reading channel: what acking removes.
    pub delivery_tag: u64,
    /// `<stage>.<reason>`, as the dead-letter publisher routed it.
    pub routing_key: String,
    pub stage: String,
    pub reason: String,
    pub error: Option<String>,
    pub attempts: Option<i64>,
    pub rejected_at_ms: Option<i64>,
    pub original_exchange: Option<String>,
    pub original_routing_key: Option<String>,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

impl Letter {
    pub fn from_delivery(position: usize, delivery: Delivery) -> Letter {
        let routing_key = delivery.routing_key.to_string();
        let table = delivery.properties.headers().clone().unwrap_or_default();
        let text = |name: &str| table.inner().get(name).and_then(text_value);
        let number = |name: &str| table.inner().get(name).and_then(integer_value);
        // Letters published without sluice's headers still show where they were routed.
        let (routed_stage, routed_reason) = routing_key
            .split_once('.')
            .map_or((routing_key.as_str(), ""), |(stage, reason)| {
                (stage, reason)
            });
        let stage = text(headers::STAGE).unwrap_or_else(|| routed_stage.to_owned());
        let reason = text(headers::REASON).unwrap_or_else(|| routed_reason.to_owned());
        let error = text(headers::ERROR);
        let rejected_at_ms = number(headers::REJECTED_AT_MS);
        let id = fingerprint(
            &routing_key,
            rejected_at_ms,
            error.as_deref(),
            &delivery.data,
        );
        Letter {
            position,
            id,
            delivery_tag: delivery.delivery_tag,
            stage,
            reason,
            error,
            attempts: number(headers::ATTEMPTS),
            rejected_at_ms,
            original_exchange: text(headers::ORIGINAL_EXCHANGE),
            original_routing_key: text(headers::ORIGINAL_ROUTING_KEY),
            routing_key,
            properties: delivery.properties,
            body: delivery.data,
        }
    }

    /// The rejection time as RFC 3339 (UTC), when the letter says it.
    pub fn rejected_at(&self) -> Option<String> {
        let millis = self.rejected_at_ms?;
        jiff::Timestamp::from_millisecond(millis)
            .ok()
            .map(|time| time.to_string())
    }

    /// What `list --json` prints: everything but the body, the error cut short.
    pub fn summary_json(&self) -> Value {
        json!({
            "position": self.position,
            "id": self.id,
            "stage": self.stage,
            "reason": self.reason,
            "attempts": self.attempts,
            "rejected_at": self.rejected_at(),
            "original_exchange": self.original_exchange,
            "original_routing_key": self.original_routing_key,
            "error": self.error.as_deref().map(|error| cut(error, LIST_ERROR_CHARS)),
            "body_bytes": self.body.len(),
        })
    }

    /// What `list` prints: one line a person reads.
    pub fn summary_line(&self) -> String {
        let origin = match (&self.original_exchange, &self.original_routing_key) {
            (Some(exchange), Some(routing_key)) => format!("{exchange:?} {routing_key:?}"),
            _ => "(origin unknown)".to_owned(),
        };
        let error = self.error.as_deref().unwrap_or("");
        format!(
            "{:>4}  {}  {}.{}  attempts={}  {}  from {}  {}",
            self.position,
            self.id,
            self.stage,
            self.reason,
            self.attempts
                .map_or_else(|| "?".to_owned(), |attempts| attempts.to_string()),
            self.rejected_at()
                .unwrap_or_else(|| "(time unknown)".to_owned()),
            origin,
            cut(error, LIST_ERROR_CHARS).replace('\n', " "),
        )
    }

    /// What `show` prints: the summary's fields in full, every header and the body.
    pub fn full_json(&self) -> Value {
        let mut value = self.summary_json();
        let (body, encoding) = body_text(&self.body);
        if let Value::Object(fields) = &mut value {
            fields.insert("error".into(), json!(self.error));
            fields.insert("routing_key".into(), json!(self.routing_key));
            fields.insert(
                "headers".into(),
                Value::Object(table_json(
                    &self.properties.headers().clone().unwrap_or_default(),
                )),
            );
            if let Some(content_type) = self.properties.content_type() {
                fields.insert("content_type".into(), json!(content_type.as_str()));
            }
            fields.insert("body_encoding".into(), json!(encoding));
            fields.insert("body".into(), json!(body));
        }
        value
    }
}

/// The body as its exact text when it is UTF-8 (JSON bodies stay byte for byte as published:
/// `jq '.body | fromjson'` parses them), else as lowercase hex.
pub fn body_text(body: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => (hex(body), "hex"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// FNV-1a (64 bits) over the routing key, rejection time, error and body: the same letter gives
/// the same id on every read. Two letters identical in all four share it, and are picked
/// together.
fn fingerprint(
    routing_key: &str,
    rejected_at_ms: Option<i64>,
    error: Option<&str>,
    body: &[u8],
) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    feed(routing_key.as_bytes());
    feed(&[0]);
    feed(&rejected_at_ms.unwrap_or(0).to_le_bytes());
    feed(error.unwrap_or("").as_bytes());
    feed(&[0]);
    feed(body);
    format!("{hash:016x}")
}

/// At most `limit` characters of `text`, with an ellipsis when cut.
fn cut(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn text_value(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        _ => None,
    }
}

fn integer_value(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(number) => Some(i64::from(*number)),
        AMQPValue::ShortShortUInt(number) => Some(i64::from(*number)),
        AMQPValue::ShortInt(number) => Some(i64::from(*number)),
        AMQPValue::ShortUInt(number) => Some(i64::from(*number)),
        AMQPValue::LongInt(number) => Some(i64::from(*number)),
        AMQPValue::LongUInt(number) => Some(i64::from(*number)),
        AMQPValue::LongLongInt(number) => Some(*number),
        AMQPValue::Timestamp(number) => i64::try_from(*number).ok(),
        _ => None,
    }
}

/// Headers as JSON: strings as text (lossy when not UTF-8), numbers as numbers, tables and
/// arrays nested.
pub fn table_json(table: &FieldTable) -> Map<String, Value> {
    table
        .inner()
        .iter()
        .map(|(key, value)| (key.to_string(), value_json(value)))
        .collect()
}

fn value_json(value: &AMQPValue) -> Value {
    if let Some(text) = text_value(value) {
        return Value::String(text);
    }
    if let Some(number) = integer_value(value) {
        return json!(number);
    }
    match value {
        AMQPValue::Boolean(flag) => json!(flag),
        AMQPValue::Float(number) => json!(number),
        AMQPValue::Double(number) => json!(number),
        AMQPValue::DecimalValue(decimal) => {
            json!({ "value": decimal.value, "scale": decimal.scale })
        }
        AMQPValue::FieldArray(array) => array.as_slice().iter().map(value_json).collect(),
        AMQPValue::FieldTable(table) => Value::Object(table_json(table)),
        AMQPValue::ByteArray(bytes) => json!({ "hex": hex(bytes.as_slice()) }),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_depends_on_every_part_and_nothing_else() {
        let id = fingerprint("influx.x", Some(5), Some("e"), b"body");
        assert_eq!(id, fingerprint("influx.x", Some(5), Some("e"), b"body"));
        assert_eq!(id.len(), 16);
        assert_ne!(id, fingerprint("influx.y", Some(5), Some("e"), b"body"));
        assert_ne!(id, fingerprint("influx.x", Some(6), Some("e"), b"body"));
        assert_ne!(id, fingerprint("influx.x", Some(5), Some("f"), b"body"));
        assert_ne!(id, fingerprint("influx.x", Some(5), Some("e"), b"bodY"));
    }

    #[test]
    fn bodies_are_exact_text_or_hex() {
        assert_eq!(body_text(b"{\"a\": 1.0}"), ("{\"a\": 1.0}".into(), "utf8"));
        assert_eq!(body_text(b"\xff\x00A"), ("ff0041".into(), "hex"));
    }

    #[test]
    fn cutting_counts_characters_and_marks_the_cut() {
        assert_eq!(cut("héllo", 2), "hé…");
        assert_eq!(cut("héllo", 5), "héllo");
    }

    #[test]
    fn headers_become_json() {
        let mut table = FieldTable::default();
        table.insert("text".into(), AMQPValue::LongString("x".into()));
        table.insert("count".into(), AMQPValue::LongLongInt(3));
        table.insert("flag".into(), AMQPValue::Boolean(true));
        assert_eq!(
            Value::Object(table_json(&table)),
            json!({ "text": "x", "count": 3, "flag": true })
        );
    }
}
