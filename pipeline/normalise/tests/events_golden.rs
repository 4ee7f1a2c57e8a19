//! Golden fixtures for events and logs: every `schemas/fixtures/events/<case>.json` body decodes
//! to the `_index`, `_id` and `_source` in `<case>.document.json` beside it, with the default
//! index pattern (`logstash-%{+YYYY.MM.dd}`) and the routing of a 4.x manager (exchange
//! `cloudify-events`, routing key ""). The `_id` hashes the fixture file's bytes as they are.
//!
//! Every body is also checked against its schema (`cloudify-event.schema.json` or
//! `cloudify-log.schema.json`, by its `type`), and every document against
//! `event-document.schema.json`.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::{Value, json};
use sluice_core::ack::SourceMessage;
use sluice_core::rejection::Rejection;
use sluice_normalise::{EventDecoder, IndexPattern};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path:?}: {error}"))
}

fn validator(file: &str) -> jsonschema::Validator {
    let schema = read_json(&schemas_dir().join(file));
    jsonschema::meta::validate(&schema)
        .unwrap_or_else(|error| panic!("{file} is not a valid JSON Schema: {error}"));
    jsonschema::draft202012::new(&schema).unwrap_or_else(|error| panic!("{file}: {error}"))
}

fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect()
}

/// The bodies of the fixture folder, sorted, skipping the expected documents.
fn cases(folder: &Path) -> Vec<PathBuf> {
    let mut inputs: Vec<PathBuf> = fs::read_dir(folder)
        .unwrap_or_else(|error| panic!("{folder:?}: {error}"))
        .map(|entry| entry.expect("readable folder entry").path())
        .filter(|path| {
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            path.is_file() && name.ends_with(".json") && !name.ends_with(".document.json")
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn event_fixtures_decode_to_their_golden_documents() {
    let folder = schemas_dir().join("fixtures/events");
    let event_schema = validator("cloudify-event.schema.json");
    let log_schema = validator("cloudify-log.schema.json");
    let document_schema = validator("event-document.schema.json");
    let decoder = EventDecoder::new(IndexPattern::default());
    let inputs = cases(&folder);
    assert!(
        inputs.len() >= 7,
        "only {} fixtures in {folder:?}",
        inputs.len()
    );

    for input in inputs {
        let expected_file = input.with_extension("document.json");
        let expected = read_json(&expected_file);
        let original = fs::read(&input).expect("readable fixture");

        let body_value: Value = serde_json::from_slice(&original).expect("fixture is JSON");
        let body_schema = match body_value["type"].as_str() {
            Some("cloudify_event") => &event_schema,
            Some("cloudify_log") => &log_schema,
            other => panic!("{input:?} has type {other:?}"),
        };
        let errors = schema_errors(body_schema, &body_value);
        assert!(errors.is_empty(), "{input:?}: body schema says {errors:?}");

        let message = SourceMessage {
            body: Bytes::from(original.clone()),
            exchange: "cloudify-events".to_owned(),
            routing_key: String::new(),
            redelivered: false,
        };
        let document = decoder
            .decode(&mut original.clone(), &message)
            .unwrap_or_else(|error| panic!("{input:?}: {error} ({})", error.reason()));

        assert!(
            !document.source.contains(&b'\n'),
            "{input:?}: the source has a raw line break"
        );
        let source: Value = serde_json::from_slice(&document.source)
            .unwrap_or_else(|error| panic!("{input:?}: the source is not JSON: {error}"));
        let produced = json!({"_index": document.index, "_id": document.id, "_source": source});
        assert_eq!(produced, expected, "{input:?} against {expected_file:?}");

        let errors = schema_errors(&document_schema, &source);
        assert!(
            errors.is_empty(),
            "{input:?}: document schema says {errors:?}"
        );
    }
}

#[test]
fn the_document_schema_refuses_what_the_decoder_never_writes() {
    let schema = validator("event-document.schema.json");
    let good = json!({
        "type": "cloudify_log", "timestamp": "2016-06-15 10:13+0000",
        "@timestamp": "2016-06-15T10:13:00.000Z", "context": {"execution_id": "e"}, "extra": [1]
    });
    assert!(schema.is_valid(&good));
    let with = |key: &str, value: Value| {
        let mut document = good.clone();
        document[key] = value;
        document
    };
    let without = |key: &str| {
        let mut document = good.clone();
        document.as_object_mut().expect("an object").remove(key);
        document
    };
    let bad = [
        without("@timestamp"),
        without("type"),
        without("timestamp"),
        with("type", json!("cloudify_metric")),
        with("@timestamp", json!("2016-06-15T10:13:00Z")),
        with("@timestamp", json!("2016-06-15T10:13:00.000+00:00")),
        with("@timestamp", json!("2016-06-15 10:13:00.000Z")),
        with("@timestamp", json!("2016-13-15T10:13:00.000Z")),
        with("@timestamp", json!(1466000000000_i64)),
        with("context", json!("nodecellar")),
        with("message", json!(["text"])),
    ];
    for document in bad {
        assert!(!schema.is_valid(&document), "schema accepted {document}");
    }
}

#[test]
fn the_body_schemas_take_every_timestamp_shape_and_tell_events_from_logs() {
    let event_schema = validator("cloudify-event.schema.json");
    let log_schema = validator("cloudify-log.schema.json");
    let event = |timestamp: &str| {
        json!({
            "type": "cloudify_event", "event_type": "workflow_started", "timestamp": timestamp,
            "message": {"text": "x", "arguments": null},
            "context": {"blueprint_id": null, "deployment_id": null, "execution_id": "e", "workflow_id": "w"}
        })
    };
    for timestamp in [
        "2016-06-15 10:13:20.123+0000",
        "2016-06-15 10:13+0000",
        "2016-06-15 10:13:20.123",
        "2016-06-15T10:13:20.123Z",
        "2016-06-15T10:13:20Z",
        "2016-06-15T10:13:20.123456789+02:00",
    ] {
        let errors = schema_errors(&event_schema, &event(timestamp));
        assert!(errors.is_empty(), "{timestamp}: {errors:?}");
    }
    for timestamp in ["1466000000", "2016-06-15", "15/06/2016 10:13", ""] {
        assert!(!event_schema.is_valid(&event(timestamp)), "{timestamp}");
    }
    assert!(
        !log_schema.is_valid(&event("2016-06-15T10:13:20Z")),
        "an event is not a log"
    );
    let mut no_context_ids = event("2016-06-15T10:13:20Z");
    no_context_ids["context"] = json!({"node_id": "n"});
    assert!(!event_schema.is_valid(&no_context_ids));
    let mut policy = event("2016-06-15 10:13:20.123");
    policy["context"] =
        json!({"group": "g", "policy": "p", "trigger": "t", "trigger-parameters": {}});
    policy["message"] = json!({"text": "x", "args": ["a"]});
    let errors = schema_errors(&event_schema, &policy);
    assert!(errors.is_empty(), "{errors:?}");
}
