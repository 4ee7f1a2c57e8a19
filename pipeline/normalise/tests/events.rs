//! Events and logs to documents: the document written for each body shape, the index it goes
//! to, its `_id`, the bodies refused with the reason they are counted under, and index patterns.

use bytes::Bytes;
use serde_json::{Value, json};
use sluice_core::ack::SourceMessage;
use sluice_core::document::Document;
use sluice_core::rejection::Rejection;
use sluice_normalise::{
    EventDecoder, EventError, IndexPattern, IndexPatternError, document_id, parse_manager_timestamp,
};

/// The event example of the wire formats, section 3.
const EXAMPLE: &str = r#"{"event_type":"task_succeeded","type":"cloudify_event","message_code":null,"timestamp":"2016-06-15 10:13:20.123+0000","message":{"text":"Task succeeded 'script_runner.tasks.run'","arguments":null},"context":{"blueprint_id":"nodecellar","deployment_id":"nodecellar","execution_id":"5e1c0d2a","workflow_id":"install","task_id":"a9f0b1","task_name":"script_runner.tasks.run","operation":"cloudify.interfaces.lifecycle.start","plugin":"script","node_id":"nodejs_q1w2e","node_name":"nodejs","task_current_retries":0,"task_total_retries":-1}}"#;

const LOG: &str = r#"{"level": "info", "timestamp": "2016-06-15 10:13:21.004+0000", "message_code": null, "message": {"text": "Starting"}, "type": "cloudify_log", "logger": "a9f0b1", "context": {"blueprint_id": "nodecellar", "deployment_id": "nodecellar", "execution_id": "5e1c0d2a", "workflow_id": "install"}}"#;

/// A 3.x delivery: default exchange, routing key = queue name.
fn message_3x(body: &[u8]) -> SourceMessage {
    SourceMessage {
        body: Bytes::copy_from_slice(body),
        exchange: String::new(),
        routing_key: "cloudify-events".to_owned(),
        redelivered: false,
    }
}

fn decode_with(decoder: &EventDecoder, body: &str) -> Result<Document, EventError> {
    let message = message_3x(body.as_bytes());
    decoder.decode(&mut body.as_bytes().to_vec(), &message)
}

fn decode(body: &str) -> Result<Document, EventError> {
    decode_with(&EventDecoder::default(), body)
}

fn document(body: &str) -> Document {
    decode(body).unwrap_or_else(|error| panic!("{body}: {error} ({})", error.reason()))
}

fn source(document: &Document) -> Value {
    assert!(
        !document.source.contains(&b'\n'),
        "raw line break in {:?}",
        document.source
    );
    serde_json::from_slice(&document.source).expect("the source is JSON")
}

/// `body` as a JSON value, with `@timestamp` set.
fn with_timestamp(body: &str, stamp: &str) -> Value {
    let mut value: Value = serde_json::from_str(body).expect("JSON");
    value["@timestamp"] = json!(stamp);
    value
}

/// `body` with its top-level `key` set to `value` (raw JSON), or removed with `None`.
fn set_key(body: &str, key: &str, value: Option<&str>) -> String {
    let mut object: serde_json::Map<String, Value> = serde_json::from_str(body).expect("object");
    match value {
        Some(value) => {
            object.insert(key.to_owned(), serde_json::from_str(value).expect("JSON"));
        }
        None => {
            object.remove(key);
        }
    }
    Value::Object(object).to_string()
}

#[test]
fn the_wire_format_example_is_stored_as_sent_with_its_timestamp_added() {
    let document = document(EXAMPLE);
    assert_eq!(document.index, "logstash-2016.06.15");
    assert_eq!(
        document.id,
        document_id("", "cloudify-events", EXAMPLE.as_bytes())
    );
    // Byte for byte: the body's keys in the body's order, compact, `@timestamp` last.
    let expected = format!(
        "{},\"@timestamp\":\"2016-06-15T10:13:20.123Z\"}}",
        EXAMPLE.strip_suffix('}').expect("an object")
    );
    assert_eq!(
        std::str::from_utf8(&document.source).expect("UTF-8"),
        expected
    );
}

#[test]
fn a_log_is_stored_as_sent_with_its_timestamp_added() {
    let document = document(LOG);
    assert_eq!(document.index, "logstash-2016.06.15");
    assert_eq!(
        source(&document),
        with_timestamp(LOG, "2016-06-15T10:13:21.004Z")
    );
    let text = std::str::from_utf8(&document.source).expect("UTF-8");
    assert!(
        text.starts_with(r#"{"level":"info","timestamp":"#),
        "{text}"
    );
}

#[test]
fn the_index_comes_from_the_utc_timestamp_not_the_local_date() {
    let cases = [
        ("2016-06-15T23:59:59.999Z", "logstash-2016.06.15"),
        ("2016-06-15 23:59:59.999", "logstash-2016.06.15"),
        ("2016-06-15T23:59:59.999999999Z", "logstash-2016.06.15"),
        ("2016-06-16T00:00:00.000Z", "logstash-2016.06.16"),
        // Local morning east of UTC is the previous UTC day.
        ("2016-06-16 01:30+0200", "logstash-2016.06.15"),
        ("2016-01-01 00:59:59.999+0100", "logstash-2015.12.31"),
        // Local evening west of UTC is the next UTC day.
        ("2016-06-15 22:00:00.000-0300", "logstash-2016.06.16"),
        ("2016-12-31T20:00:00-05:00", "logstash-2017.01.01"),
        ("2016-02-28 23:30:00.000-0100", "logstash-2016.02.29"),
    ];
    for (timestamp, index) in cases {
        let body = set_key(EXAMPLE, "timestamp", Some(&json!(timestamp).to_string()));
        assert_eq!(document(&body).index, index, "{timestamp}");
    }
}

#[test]
fn other_index_patterns_name_fixed_and_hourly_indices() {
    let fixed = EventDecoder::new(IndexPattern::parse("cloudify_events").expect("valid"));
    assert_eq!(
        decode_with(&fixed, EXAMPLE).expect("decodes").index,
        "cloudify_events"
    );
    let hourly =
        EventDecoder::new(IndexPattern::parse("cloudify-%{+yyyy.MM.dd}-%{+HH}").expect("valid"));
    let body = set_key(EXAMPLE, "timestamp", Some(r#""2016-06-16 01:30+0200""#));
    assert_eq!(
        decode_with(&hourly, &body).expect("decodes").index,
        "cloudify-2016.06.15-23"
    );
}

#[test]
fn policy_engine_events_keep_args_and_hyphenated_context_keys() {
    let body = r#"{"event_type":"processing_trigger","type":"cloudify_event","timestamp":"2016-06-15 10:20:05.310","message":{"text":"Processing trigger","args":["heal",1]},"context":{"deployment_id":"d","group":"g","policy":"p","trigger":"heal","trigger-parameters":{"workflow":"heal","force":false}}}"#;
    let document = document(body);
    assert_eq!(
        source(&document),
        with_timestamp(body, "2016-06-15T10:20:05.310Z")
    );
}

#[test]
fn unknown_fields_nested_values_and_numbers_are_kept() {
    let body = r#"{"type":"cloudify_log","timestamp":"2016-06-15T10:13:20Z","level":"debug","extra":{"deep":[1,-2,{"x":[]}],"empty":{}},"big":18446744073709551615,"small":-9223372036854775808,"float":0.1,"huge":1e300,"tiny":-2.5e-300,"whole":3.0,"zero":-0.0,"flag":true,"nothing":null}"#;
    let document = document(body);
    assert_eq!(
        source(&document),
        with_timestamp(body, "2016-06-15T10:13:20.000Z")
    );
    let text = std::str::from_utf8(&document.source).expect("UTF-8");
    assert!(text.contains(r#""big":18446744073709551615"#), "{text}");
    assert!(text.contains(r#""small":-9223372036854775808"#), "{text}");
}

#[test]
fn integers_past_64_bits_are_kept_as_floats() {
    let body = r#"{"type":"cloudify_log","timestamp":"2016-06-15T10:13:20Z","n":123456789012345678901234567890}"#;
    let document = document(body);
    assert_eq!(source(&document)["n"], json!(1.2345678901234568e29));
}

#[test]
fn strings_are_escaped_so_the_source_is_one_line() {
    let text = "line one\nline two\r\n\ttab \"quoted\" back\\slash \u{1} \u{7f} caf\u{e9} \u{2028} \u{1f600}";
    let body = json!({
        "type": "cloudify_log", "timestamp": "2016-06-15T10:13:20Z",
        "message": {"text": text}, "key\nwith\"break": "v"
    })
    .to_string();
    let stored = source(&document(&body));
    assert_eq!(stored["message"]["text"], text);
    assert_eq!(stored["key\nwith\"break"], "v");
    // Escapes in the body (\u00e9, \/) are read, and written back as plain or escaped text.
    let escaped = r#"{"type":"cloudify_log","timestamp":"2016-06-15T10:13:20Z","t":"caf\u00e9 a\/b \ud83d\ude00"}"#;
    assert_eq!(source(&document(escaped))["t"], "caf\u{e9} a/b \u{1f600}");
}

#[test]
fn pretty_printed_bodies_become_one_line() {
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(LOG).expect("JSON"))
        .expect("serialises");
    assert!(pretty.contains('\n'));
    let document = document(&pretty);
    assert_eq!(
        source(&document),
        with_timestamp(LOG, "2016-06-15T10:13:21.004Z")
    );
}

#[test]
fn a_timestamp_field_in_the_body_is_replaced_not_repeated() {
    let body = set_key(LOG, "@timestamp", Some(r#""1999-01-01T00:00:00.000Z""#));
    let document = document(&body);
    let text = std::str::from_utf8(&document.source).expect("UTF-8");
    assert_eq!(text.matches("@timestamp").count(), 1, "{text}");
    assert_eq!(source(&document)["@timestamp"], "2016-06-15T10:13:21.004Z");
}

#[test]
fn system_wide_workflows_with_null_ids_are_stored() {
    let body = r#"{"event_type":"workflow_started","type":"cloudify_event","timestamp":"2016-06-15T10:13:20.5Z","message":{"text":"x","arguments":null},"context":{"blueprint_id":null,"deployment_id":null,"execution_id":"e","workflow_id":"create_snapshot"},"message_code":null}"#;
    assert_eq!(
        source(&document(body)),
        with_timestamp(body, "2016-06-15T10:13:20.500Z")
    );
    // Null context and message are also fine: Elasticsearch treats them as absent.
    let bare = r#"{"type":"cloudify_event","timestamp":"2016-06-15T10:13:20Z","context":null,"message":null}"#;
    assert_eq!(
        source(&document(bare)),
        with_timestamp(bare, "2016-06-15T10:13:20.000Z")
    );
}

#[test]
fn a_redelivered_message_gets_the_same_id_and_other_routing_another() {
    let decoder = EventDecoder::default();
    let first = decoder
        .decode(
            &mut EXAMPLE.as_bytes().to_vec(),
            &message_3x(EXAMPLE.as_bytes()),
        )
        .expect("decodes");
    let mut redelivered_message = message_3x(EXAMPLE.as_bytes());
    redelivered_message.redelivered = true;
    let again = decoder
        .decode(&mut EXAMPLE.as_bytes().to_vec(), &redelivered_message)
        .expect("decodes");
    assert_eq!(first, again);

    let from_4x = SourceMessage {
        body: Bytes::from_static(EXAMPLE.as_bytes()),
        exchange: "cloudify-events".to_owned(),
        routing_key: String::new(),
        redelivered: false,
    };
    let other = decoder
        .decode(&mut EXAMPLE.as_bytes().to_vec(), &from_4x)
        .expect("decodes");
    assert_ne!(first.id, other.id);
    assert_eq!(first.source, other.source);

    // A body that differs only in spacing is another message, with another id.
    let spaced = EXAMPLE.replacen(":", ": ", 1);
    assert_ne!(document(&spaced).id, first.id);
    assert_eq!(document(&spaced).source, first.source);
}

#[test]
fn the_id_hashes_the_body_as_passed_in_not_the_parsed_scratch() {
    // simd-json rewrites escapes in place; the id must still be that of the delivered bytes.
    let body = r#"{"type":"cloudify_log","timestamp":"2016-06-15T10:13:20Z","t":"a\nb\u00e9"}"#;
    assert_eq!(
        document(body).id,
        document_id("", "cloudify-events", body.as_bytes())
    );
}

#[test]
fn deep_nesting_up_to_the_parser_limit_is_written_without_overflow() {
    let depth = 1000;
    let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let body = format!(
        r#"{{"type":"cloudify_log","timestamp":"2016-06-15T10:13:20Z","context":{{"deep":{nested}}}}}"#
    );
    let document = document(&body);
    assert!(document.source.len() > 2 * depth);
}

/// The reason a body is refused under, and the error's message.
fn refusal(body: &[u8]) -> (&'static str, String) {
    let message = message_3x(body);
    match EventDecoder::default().decode(&mut body.to_vec(), &message) {
        Ok(document) => panic!(
            "{:?} accepted as {document:?}",
            String::from_utf8_lossy(body)
        ),
        Err(error) => (error.reason().as_str(), error.to_string()),
    }
}

/// A valid log body with the field `n` written as `number`, which JSON allows but a float cannot
/// hold.
fn with_number(number: &str) -> Vec<u8> {
    format!(r#"{{"type":"cloudify_log","timestamp":"2016-06-15T10:13:20Z","n":{number}}}"#)
        .into_bytes()
}

#[test]
fn bad_bodies_are_refused_with_their_reason() {
    let deep = format!(
        r#"{{"type":"cloudify_log","timestamp":"2016-06-15T10:13:20Z","x":{}{}}}"#,
        "[".repeat(2000),
        "]".repeat(2000)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("invalid UTF-8", b"{\"type\":\"cloudify_log\",\"t\":\"\xff\"}".to_vec(), "invalid_utf8"),
        ("not JSON", b"task_succeeded at 10:13".to_vec(), "invalid_json"),
        ("empty body", Vec::new(), "invalid_json"),
        ("truncated", EXAMPLE.as_bytes()[..50].to_vec(), "invalid_json"),
        ("trailing garbage", format!("{EXAMPLE} x").into_bytes(), "invalid_json"),
        ("two objects", format!("{EXAMPLE}{EXAMPLE}").into_bytes(), "invalid_json"),
        ("number past a float", with_number("1e999"), "invalid_json"),
        ("integer past a float", with_number(&"9".repeat(400)), "invalid_json"),
        ("nested past 1024", deep.into_bytes(), "invalid_json"),
        ("duplicate top-level key", br#"{"type":"cloudify_log","type":"cloudify_event","timestamp":"2016-06-15T10:13:20Z"}"#.to_vec(), "invalid_json"),
        ("duplicate nested key", br#"{"type":"cloudify_log","timestamp":"2016-06-15T10:13:20Z","context":{"a":[{"k":1,"k":2}]}}"#.to_vec(), "invalid_json"),
        ("an array", b"[1,2]".to_vec(), "wrong_type"),
        ("a string", br#""cloudify_event""#.to_vec(), "wrong_type"),
        ("null", b"null".to_vec(), "wrong_type"),
        ("a number", b"5".to_vec(), "wrong_type"),
        ("no type", set_key(EXAMPLE, "type", None).into_bytes(), "missing_field"),
        ("a metric type", set_key(EXAMPLE, "type", Some(r#""cloudify_metric""#)).into_bytes(), "wrong_type"),
        ("type upper case", set_key(EXAMPLE, "type", Some(r#""CLOUDIFY_EVENT""#)).into_bytes(), "wrong_type"),
        ("type a number", set_key(EXAMPLE, "type", Some("1")).into_bytes(), "wrong_type"),
        ("type null", set_key(EXAMPLE, "type", Some("null")).into_bytes(), "wrong_type"),
        ("no timestamp", set_key(EXAMPLE, "timestamp", None).into_bytes(), "missing_field"),
        ("epoch timestamp", set_key(EXAMPLE, "timestamp", Some("1466000000")).into_bytes(), "bad_timestamp"),
        ("null timestamp", set_key(EXAMPLE, "timestamp", Some("null")).into_bytes(), "bad_timestamp"),
        ("month 13", set_key(EXAMPLE, "timestamp", Some(r#""2016-13-15 10:13:20.123+0000""#)).into_bytes(), "bad_timestamp"),
        ("text timestamp", set_key(EXAMPLE, "timestamp", Some(r#""yesterday""#)).into_bytes(), "bad_timestamp"),
        ("empty timestamp", set_key(EXAMPLE, "timestamp", Some(r#""""#)).into_bytes(), "bad_timestamp"),
        ("date only", set_key(EXAMPLE, "timestamp", Some(r#""2016-06-15""#)).into_bytes(), "bad_timestamp"),
        ("context a string", set_key(EXAMPLE, "context", Some(r#""nodecellar""#)).into_bytes(), "wrong_type"),
        ("message an array", set_key(EXAMPLE, "message", Some(r#"["text"]"#)).into_bytes(), "wrong_type"),
    ];
    for (case, body, reason) in cases {
        let (found, message) = refusal(&body);
        assert_eq!(found, reason, "{case}: {message}");
        assert!(message.len() < 300, "{case}: {message}");
    }
}

#[test]
fn errors_say_which_field_and_what_was_found() {
    let cases = [
        (
            set_key(EXAMPLE, "type", None),
            r#"event or log body has no "type" field"#.to_owned(),
        ),
        (
            set_key(LOG, "timestamp", None),
            r#"log body has no "timestamp" field"#.to_owned(),
        ),
        (
            set_key(EXAMPLE, "timestamp", None),
            r#"event body has no "timestamp" field"#.to_owned(),
        ),
        (
            set_key(EXAMPLE, "type", Some(r#""cloudify_metric""#)),
            r#"field "type" is the string "cloudify_metric", expected "cloudify_event" or "cloudify_log""#.to_owned(),
        ),
        (
            set_key(EXAMPLE, "timestamp", Some("1466000000")),
            r#"field "timestamp": the number 1466000000 is not a timestamp: it is not a string"#
                .to_owned(),
        ),
        (
            set_key(EXAMPLE, "context", Some("[1]")),
            r#"field "context" is an array, expected an object"#.to_owned(),
        ),
        (
            "[1,2]".to_owned(),
            "body is an array, expected a JSON object".to_owned(),
        ),
        (
            r#"{"type":"cloudify_log","type":"cloudify_log"}"#.to_owned(),
            r#"body has the key "type" more than once in one object"#.to_owned(),
        ),
    ];
    for (body, expected) in cases {
        let (_, message) = refusal(body.as_bytes());
        assert_eq!(message, expected);
    }
    let (_, message) = refusal(
        set_key(
            EXAMPLE,
            "timestamp",
            Some(r#""2016-13-15 10:13:20.123+0000""#),
        )
        .as_bytes(),
    );
    assert!(
        message.starts_with(
            r#"field "timestamp": the string "2016-13-15 10:13:20.123+0000" is not a timestamp: "#
        ),
        "{message}"
    );
}

#[test]
fn long_values_are_quoted_short() {
    let long = "x".repeat(5000);
    for (key, value) in [("type", &long), ("timestamp", &long)] {
        let body = set_key(EXAMPLE, key, Some(&json!(value).to_string()));
        let (_, message) = refusal(body.as_bytes());
        assert!(message.len() < 300, "{message}");
    }
    let body = format!(r#"{{"{long}":1,"{long}":2}}"#);
    let (reason, message) = refusal(body.as_bytes());
    assert_eq!(reason, "invalid_json");
    assert!(message.len() < 300, "{message}");
}

#[test]
fn index_patterns_render_utc_dates() {
    let instant = parse_manager_timestamp("2016-06-15 01:30:00.000+0200").expect("valid");
    let cases = [
        ("logstash-%{+YYYY.MM.dd}", "logstash-2016.06.14"),
        ("logstash-%{+yyyy.MM.dd}", "logstash-2016.06.14"),
        ("cloudify_events", "cloudify_events"),
        ("events-%{+YYYYMMdd}", "events-20160614"),
        ("events-%{+YYYY.MM}", "events-2016.06"),
        ("events-%{+YYYY}-%{+MM}-x", "events-2016-06-x"),
        ("%{+yyyy.MM.dd.HH}", "2016.06.14.23"),
        ("events-%{+dd-MM-YYYY}", "events-14-06-2016"),
        ("100%-%{+YYYY}", "100%-2016"),
        ("événements-%{+YYYY}", "événements-2016"),
    ];
    for (pattern, expected) in cases {
        let parsed =
            IndexPattern::parse(pattern).unwrap_or_else(|error| panic!("{pattern}: {error}"));
        assert_eq!(parsed.index_for(instant), expected, "{pattern}");
        assert_eq!(parsed.as_str(), pattern);
        assert_eq!(parsed.to_string(), pattern);
        assert_eq!(parsed.is_fixed(), !pattern.contains("%{"), "{pattern}");
    }
    assert_eq!(
        IndexPattern::default(),
        IndexPattern::parse("logstash-%{+YYYY.MM.dd}").expect("valid")
    );
    let from_str: IndexPattern = "cloudify_events".parse().expect("valid");
    assert!(from_str.is_fixed());
}

#[test]
fn index_patterns_that_make_illegal_names_are_refused_when_parsed() {
    fn illegal(example: &'static str) -> impl Fn(&IndexPatternError) -> bool {
        move |error| matches!(error, IndexPatternError::IllegalName { example: found, .. } if found == example)
    }
    type Expectation = Box<dyn Fn(&IndexPatternError) -> bool>;
    let cases: Vec<(&str, Expectation)> = vec![
        ("", Box::new(|error| *error == IndexPatternError::Empty)),
        (
            "logstash-%{+YYYY.MM.dd",
            Box::new(|error| *error == IndexPatternError::Unclosed { at: 9 }),
        ),
        (
            "logstash-%{type}",
            Box::new(
                |error| matches!(error, IndexPatternError::FieldReference { name } if name == "type"),
            ),
        ),
        (
            "logstash-%{+}",
            Box::new(|error| *error == IndexPatternError::EmptyDate { at: 9 }),
        ),
        (
            "logstash-%{+YY.MM.dd}",
            Box::new(
                |error| matches!(error, IndexPatternError::UnsupportedToken { token, .. } if token == "YY"),
            ),
        ),
        (
            "logstash-%{+yyyy.M.dd}",
            Box::new(
                |error| matches!(error, IndexPatternError::UnsupportedToken { token, .. } if token == "M"),
            ),
        ),
        (
            "logstash-%{+YYYY.MM.dd'x'}",
            Box::new(
                |error| matches!(error, IndexPatternError::UnsupportedToken { token, .. } if token == "'"),
            ),
        ),
        (
            "logstash-%{+xxxx.ww}",
            Box::new(
                |error| matches!(error, IndexPatternError::UnsupportedToken { token, .. } if token == "xxxx"),
            ),
        ),
        (
            "Logstash-%{+YYYY.MM.dd}",
            Box::new(illegal("Logstash-1970.01.01")),
        ),
        ("-events", Box::new(illegal("-events"))),
        ("_events", Box::new(illegal("_events"))),
        ("+events", Box::new(illegal("+events"))),
        (".", Box::new(illegal("."))),
        ("..", Box::new(illegal(".."))),
        ("events %{+YYYY}", Box::new(illegal("events 1970"))),
        ("events,%{+YYYY}", Box::new(illegal("events,1970"))),
        ("events#1", Box::new(illegal("events#1"))),
        ("events:1", Box::new(illegal("events:1"))),
        ("a/b", Box::new(illegal("a/b"))),
        ("a\\b", Box::new(illegal("a\\b"))),
        ("a*", Box::new(illegal("a*"))),
        ("a?", Box::new(illegal("a?"))),
        ("a\"", Box::new(illegal("a\""))),
        ("a<>", Box::new(illegal("a<>"))),
        ("a|b", Box::new(illegal("a|b"))),
        ("a\nb", Box::new(illegal("a\nb"))),
        (
            "events-%{+YYYY.MM.dd}-\u{c9}",
            Box::new(illegal("events-1970.01.01-\u{c9}")),
        ),
    ];
    for (pattern, expected) in cases {
        match IndexPattern::parse(pattern) {
            Ok(parsed) => panic!("{pattern:?} parsed as {parsed:?}"),
            Err(error) => assert!(expected(&error), "{pattern:?}: {error:?}"),
        }
    }
    let long = "a".repeat(256);
    assert!(matches!(
        IndexPattern::parse(&long),
        Err(IndexPatternError::IllegalName { .. })
    ));
    assert!(IndexPattern::parse(&"a".repeat(255)).is_ok());
    // A date at the front writes a digit first, which is legal.
    assert!(IndexPattern::parse("%{+YYYY}-events").is_ok());
}

#[test]
fn index_pattern_errors_read_well() {
    let error = IndexPattern::parse("Events-%{+YYYY}").expect_err("upper case");
    assert_eq!(
        error.to_string(),
        r#"index pattern gives names such as "Events-1970", which Elasticsearch refuses: it has upper-case letters"#
    );
    let error = IndexPattern::parse("e-%{+YYYY.ww}").expect_err("week");
    assert_eq!(
        error.to_string(),
        r#"date format "YYYY.ww" has "ww": supported are yyyy or YYYY (year), MM, dd, HH and characters other than letters and quotes"#
    );
}
