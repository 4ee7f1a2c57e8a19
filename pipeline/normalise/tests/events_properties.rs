//! Property tests for events and logs: `decode` never panics; a body the model says is good
//! becomes exactly itself plus `@timestamp`, on one line, in the index of its UTC day; every
//! manager timestamp shape reads as the instant it was written from; index patterns only ever
//! make legal names.

use bytes::Bytes;
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;
use proptest::prelude::*;
use serde_json::{Map, Value};
use sluice_core::ack::SourceMessage;
use sluice_core::document::Document;
use sluice_core::rejection::Rejection;
use sluice_normalise::{
    EventDecoder, EventError, IndexPattern, format_event_timestamp, parse_manager_timestamp,
};

const REASONS: &[&str] = &[
    "invalid_utf8",
    "invalid_json",
    "wrong_type",
    "missing_field",
    "bad_timestamp",
];

fn decode(body: &[u8]) -> Result<Document, EventError> {
    let message = SourceMessage {
        body: Bytes::copy_from_slice(body),
        exchange: "cloudify-events".to_owned(),
        routing_key: String::new(),
        redelivered: false,
    };
    EventDecoder::default().decode(&mut body.to_vec(), &message)
}

/// What every outcome must satisfy, whatever the body.
fn check_outcome(outcome: &Result<Document, EventError>) -> Result<(), TestCaseError> {
    match outcome {
        Ok(document) => {
            prop_assert!(!document.source.contains(&b'\n'));
            let source: Value = serde_json::from_slice(&document.source)
                .map_err(|error| TestCaseError::fail(format!("source is not JSON: {error}")))?;
            let stamp = source["@timestamp"].as_str().unwrap_or_default();
            prop_assert_eq!(stamp.len(), 24, "{}", stamp);
            prop_assert_eq!(&document.index, &daily_index(stamp));
            prop_assert_eq!(document.id.len(), 32);
        }
        Err(error) => {
            prop_assert!(
                REASONS.contains(&error.reason().as_str()),
                "{}",
                error.reason()
            );
            prop_assert!(error.to_string().len() < 400, "{}", error);
        }
    }
    Ok(())
}

/// `logstash-YYYY.MM.dd` from an `@timestamp`.
fn daily_index(stamp: &str) -> String {
    format!(
        "logstash-{}.{}.{}",
        stamp.get(0..4).unwrap_or_default(),
        stamp.get(5..7).unwrap_or_default(),
        stamp.get(8..10).unwrap_or_default()
    )
}

/// Strings that hit the edges: line breaks, quotes, escapes, the known keys, and noise.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("@timestamp".to_owned()),
        Just("type".to_owned()),
        Just("a\nb\r\"c\\d\u{0}".to_owned()),
        "[a-z@._ -]{0,12}",
        any::<String>(),
    ]
}

/// JSON values whose numbers survive a text round trip exactly (dyadic fractions, integers), so
/// that stored and sent values compare equal.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i32>().prop_map(|number| Value::from(f64::from(number) / 1024.0)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..5)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A timestamp as a manager would write it, with the instant it must read as.
#[derive(Debug, Clone)]
struct Written {
    text: String,
    instant: Timestamp,
}

/// The shapes of wire formats section 3.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// `2016-06-15 10:13:20.123+0000`
    SpaceFractionOffset,
    /// `2016-06-15 10:13:20+0000`
    SpaceOffset,
    /// `2016-06-15 10:13+0000`, the lost-seconds quirk: seconds and fraction are zero.
    LostSeconds,
    /// `2016-06-15 10:13:20.123`, the policy engine: UTC.
    NoZone,
    /// `2016-06-15T10:13:20.123Z`
    IsoZulu,
    /// `2016-06-15T10:13:20.123+02:00`
    IsoOffset,
}

fn written_timestamp() -> impl Strategy<Value = Written> {
    (
        // 0000-01-01 to late 9999.
        -62_167_219_200i64..253_402_000_000,
        0i32..1_000_000_000,
        -1439i32..=1439,
        prop::sample::select(vec![
            Shape::SpaceFractionOffset,
            Shape::SpaceOffset,
            Shape::LostSeconds,
            Shape::NoZone,
            Shape::IsoZulu,
            Shape::IsoOffset,
        ]),
        1usize..=9,
    )
        .prop_filter_map(
            "local time outside the years 0000 to 9999",
            |(seconds, nanos, offset_minutes, shape, digits)| {
                written(seconds, nanos, offset_minutes, shape, digits)
            },
        )
}

fn written(
    seconds: i64,
    nanos: i32,
    offset_minutes: i32,
    shape: Shape,
    digits: usize,
) -> Option<Written> {
    let offset_minutes = match shape {
        Shape::NoZone | Shape::IsoZulu => 0,
        _ => offset_minutes,
    };
    let offset = Offset::from_seconds(offset_minutes * 60).ok()?;
    let local = offset.to_datetime(Timestamp::new(seconds, nanos).ok()?);
    if !(0..=9999).contains(&local.year()) {
        return None;
    }
    // What the text keeps of the local time.
    let (second, nanosecond) = match shape {
        Shape::LostSeconds => (0, 0),
        Shape::SpaceOffset => (local.second(), 0),
        _ => {
            let unit = 10i32.pow(9 - u32::try_from(digits).ok()?);
            (local.second(), local.subsec_nanosecond() / unit * unit)
        }
    };
    let kept = DateTime::new(
        local.year(),
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        second,
        nanosecond,
    )
    .ok()?;
    let instant = offset.to_timestamp(kept).ok()?;

    let date = format!(
        "{:04}-{:02}-{:02}",
        local.year(),
        local.month(),
        local.day()
    );
    let hour_minute = format!("{:02}:{:02}", local.hour(), local.minute());
    let fraction = format!("{:09}", nanosecond);
    let fraction = &fraction[..digits];
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let (offset_hours, offset_rest) = (
        offset_minutes.unsigned_abs() / 60,
        offset_minutes.unsigned_abs() % 60,
    );
    let basic_offset = format!("{sign}{offset_hours:02}{offset_rest:02}");
    let text = match shape {
        Shape::SpaceFractionOffset => {
            format!("{date} {hour_minute}:{second:02}.{fraction}{basic_offset}")
        }
        Shape::SpaceOffset => format!("{date} {hour_minute}:{second:02}{basic_offset}"),
        Shape::LostSeconds => format!("{date} {hour_minute}{basic_offset}"),
        Shape::NoZone => format!("{date} {hour_minute}:{second:02}.{fraction}"),
        Shape::IsoZulu => format!("{date}T{hour_minute}:{second:02}.{fraction}Z"),
        Shape::IsoOffset => format!(
            "{date}T{hour_minute}:{second:02}.{fraction}{sign}{offset_hours:02}:{offset_rest:02}"
        ),
    };
    Some(Written { text, instant })
}

/// `@timestamp` as jiff's own printer writes it (three digits, cut), to check ours against.
fn expected_stamp(instant: Timestamp) -> String {
    format!("{instant:.3}")
}

/// What a body's `timestamp` is, for the model.
#[derive(Debug, Clone)]
enum TimestampField {
    Absent,
    Good(Written),
    /// Any other value: a string that may or may not parse, or a non-string.
    Other(Value),
}

/// The body to decode and what the model expects of it.
#[derive(Debug, Clone)]
struct Case {
    object: Map<String, Value>,
    pretty: bool,
    /// The reason it must be refused under, `None` when it must be stored; `Some("")` when the
    /// timestamp is an arbitrary string, which may parse or be a bad timestamp.
    expected: Option<&'static str>,
    stamp: Option<String>,
}

fn case() -> impl Strategy<Value = Case> {
    let kind = prop_oneof![
        4 => prop::sample::select(vec!["cloudify_event", "cloudify_log"]).prop_map(|kind| Some(Value::from(kind))),
        1 => Just(None),
        1 => json_value().prop_map(Some),
    ];
    let timestamp = prop_oneof![
        6 => written_timestamp().prop_map(TimestampField::Good),
        1 => Just(TimestampField::Absent),
        1 => json_value().prop_map(TimestampField::Other),
    ];
    let container = prop_oneof![
        3 => prop::collection::btree_map(text(), json_value(), 0..6)
            .prop_map(|map| Some(Value::Object(map.into_iter().collect()))),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => json_value().prop_map(Some),
    ];
    (
        kind,
        timestamp,
        container.clone(),
        container,
        prop::collection::btree_map(text(), json_value(), 0..8),
        any::<bool>(),
    )
        .prop_map(|(kind, timestamp, context, message, extra, pretty)| {
            let mut object: Map<String, Value> = extra.into_iter().collect();
            for known in ["type", "timestamp", "context", "message"] {
                object.remove(known);
            }
            let mut expected = None;
            let mut refuse = |reason: &'static str| {
                expected.get_or_insert(reason);
            };
            match &kind {
                None => refuse("missing_field"),
                Some(Value::String(kind)) if kind == "cloudify_event" || kind == "cloudify_log" => {
                }
                Some(_) => refuse("wrong_type"),
            }
            let mut stamp = None;
            match &timestamp {
                TimestampField::Absent => refuse("missing_field"),
                TimestampField::Good(written) => stamp = Some(expected_stamp(written.instant)),
                TimestampField::Other(Value::String(_)) => refuse(""),
                TimestampField::Other(_) => refuse("bad_timestamp"),
            }
            for value in [&context, &message] {
                if matches!(value, Some(value) if !value.is_null() && !value.is_object()) {
                    refuse("wrong_type");
                }
            }
            if let Some(kind) = kind {
                object.insert("type".to_owned(), kind);
            }
            match timestamp {
                TimestampField::Absent => {}
                TimestampField::Good(written) => {
                    object.insert("timestamp".to_owned(), Value::String(written.text));
                }
                TimestampField::Other(value) => {
                    object.insert("timestamp".to_owned(), value);
                }
            }
            for (key, value) in [("context", context), ("message", message)] {
                if let Some(value) = value {
                    object.insert(key.to_owned(), value);
                }
            }
            Case {
                object,
                pretty,
                expected,
                stamp,
            }
        })
}

/// Legal Elasticsearch index names, checked apart from the crate's own check.
fn is_legal_index_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.starts_with(['-', '_', '+'])
        && !name.chars().any(|character| {
            "\\/*?\"<>| ,#:".contains(character)
                || character.is_control()
                || character.is_uppercase()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        check_outcome(&decode(&body))?;
    }

    #[test]
    fn arbitrary_text_never_panics(body in "\\PC{0,256}") {
        check_outcome(&decode(body.as_bytes()))?;
    }

    #[test]
    fn mangled_bodies_never_panic(case in case(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut body = serde_json::to_vec(&Value::Object(case.object)).expect("serialises");
        let at = cut.index(body.len());
        body[at] = byte;
        check_outcome(&decode(&body))?;
    }

    #[test]
    fn bodies_are_stored_as_sent_or_refused_as_the_model_says(case in case()) {
        let value = Value::Object(case.object.clone());
        let body = if case.pretty {
            serde_json::to_vec_pretty(&value)
        } else {
            serde_json::to_vec(&value)
        }
        .expect("serialises");
        let outcome = decode(&body);
        check_outcome(&outcome)?;
        match (case.expected, outcome) {
            (None, Ok(document)) => {
                let stamp = case.stamp.expect("a good timestamp");
                let mut expected = case.object;
                expected.insert("@timestamp".to_owned(), Value::String(stamp.clone()));
                let stored: Value = serde_json::from_slice(&document.source).expect("JSON");
                prop_assert_eq!(stored, Value::Object(expected));
                prop_assert_eq!(&document.index, &daily_index(&stamp));
                prop_assert_eq!(
                    document.id,
                    sluice_normalise::document_id("cloudify-events", "", &body)
                );
            }
            (None, Err(error)) => {
                return Err(TestCaseError::fail(format!("refused ({}): {error}", error.reason())));
            }
            (Some(""), Ok(_)) => {}
            (Some(""), Err(error)) => {
                prop_assert!(
                    ["bad_timestamp", "wrong_type"].contains(&error.reason().as_str()),
                    "{}", error
                );
            }
            (Some(reason), Ok(document)) => {
                return Err(TestCaseError::fail(format!("stored, expected {reason}: {document:?}")));
            }
            (Some(reason), Err(error)) => prop_assert_eq!(error.reason(), reason, "{}", error),
        }
    }

    #[test]
    fn every_timestamp_shape_reads_as_its_instant(written in written_timestamp()) {
        let parsed = parse_manager_timestamp(&written.text)
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(parsed, written.instant, "{}", written.text);
        prop_assert_eq!(format_event_timestamp(parsed), expected_stamp(parsed));
    }

    #[test]
    fn index_patterns_never_panic_and_only_make_legal_names(
        pattern in prop_oneof![
            "[a-zA-Z0-9%{}+.\\-_ #:/]{0,24}",
            "[a-z_\\-]{0,8}%\\{\\+[yYMdHhmsw.\\-']{0,10}\\}[a-z.\\-]{0,8}",
            any::<String>(),
        ],
        seconds in -62_167_219_200i64..253_402_000_000,
    ) {
        if let Ok(parsed) = IndexPattern::parse(&pattern) {
            let instant = Timestamp::from_second(seconds).expect("in range");
            let name = parsed.index_for(instant);
            prop_assert!(is_legal_index_name(&name), "{:?} made {:?}", pattern, name);
            prop_assert!(
                is_legal_index_name(&parsed.index_for(Timestamp::UNIX_EPOCH)),
                "{:?}", pattern
            );
        }
    }

    #[test]
    fn the_daily_index_is_the_utc_date_of_the_timestamp(written in written_timestamp()) {
        let parsed = parse_manager_timestamp(&written.text)
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let utc = Offset::UTC.to_datetime(parsed);
        prop_assert_eq!(
            IndexPattern::default().index_for(parsed),
            format!("logstash-{:04}.{:02}.{:02}", utc.year(), utc.month(), utc.day())
        );
    }
}
