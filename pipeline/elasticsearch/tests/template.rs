//! The index template against Elasticsearch's dynamic mapping, date detection on as it is by
//! default: the fake by default, a real Elasticsearch or OpenSearch when `ES_URL` is set (see
//! `support/target.rs`). The manager's `timestamp` arrives as ISO 8601 with `Z` (3.5+) and as
//! `2016-06-15 10:13:20.123+0000` (3.x); these tests show that a daily index left to date
//! detection refuses one shape after the other, and that sluice's template keeps both.

#[path = "support/target.rs"]
mod target;

use serde_json::{Value, json};
use sluice_core::outcome::ItemOutcome;
use sluice_core::rejection::Reason;
use sluice_elasticsearch::TemplateOptions;
use sluice_normalise::IndexPattern;

use target::{Target, assert_all_delivered, document, write};

/// A manager event of `timestamp`, with `arguments` and the policy engine's
/// `trigger-parameters` of whatever shape the test gives.
fn manager_event(timestamp: &str, arguments: Value, trigger_parameters: Value) -> String {
    json!({
        "type": "cloudify_event",
        "event_type": "trigger_succeeded",
        "message_code": null,
        "timestamp": timestamp,
        "message": {"text": format!("event of {timestamp}"), "arguments": arguments},
        "context": {
            "deployment_id": "nodecellar",
            "execution_id": "5e1c0d2a",
            "trigger-parameters": trigger_parameters,
        },
        "@timestamp": "2016-06-15T10:13:20.123Z",
    })
    .to_string()
}

/// A unique base name, its daily pattern `<base>-%{+YYYY.MM.dd}` as the events path is
/// configured with it, and the pattern's index of 2016-06-15 (deleted at the end).
fn daily_pattern(target: &Target, label: &str) -> (String, IndexPattern, String) {
    let base = target.index(label);
    let pattern = IndexPattern::parse(&format!("{base}-%{{+YYYY.MM.dd}}")).expect("a pattern");
    let day = target.also_delete(format!("{base}-2016.06.15"));
    (base, pattern, day)
}

#[tokio::test]
async fn regression_without_a_template_a_daily_index_that_saw_iso_timestamps_refuses_3x_ones() {
    let target = Target::start().await;
    let writer = target.writer();
    let (_, _, index) = daily_pattern(&target, "notemplate");

    let iso = document(
        &index,
        "iso",
        &manager_event("2016-06-15T10:13:20.123Z", Value::Null, Value::Null),
    );
    assert_all_delivered(&write(&writer, &[iso]).await, 1);
    let mapping = target.mapping(&index).await;
    assert_eq!(
        mapping["properties"]["timestamp"]["type"], "date",
        "date detection took the ISO shape for a date: {mapping}"
    );

    let manager_3x = document(
        &index,
        "3x",
        &manager_event("2016-06-15 10:13:21.456+0000", Value::Null, Value::Null),
    );
    let outcomes = write(&writer, &[manager_3x]).await;
    assert!(
        matches!(
            &outcomes[..],
            [ItemOutcome::Reject { reason: Reason::MappingConflict, detail }]
                if detail.contains("timestamp")
        ),
        "{outcomes:?}"
    );
    assert_eq!(target.count(&index).await, 1);
}

#[tokio::test]
async fn with_the_template_every_timestamp_shape_and_any_arguments_land_in_one_daily_index() {
    let target = Target::start().await;
    let writer = target.writer();
    let (_, pattern, index) = daily_pattern(&target, "template");
    let template = target.template_name("events");
    writer
        .install_index_template(
            &template,
            &[pattern.wildcard()],
            &TemplateOptions::default(),
        )
        .await
        .expect("template installed");

    // Each of the manager's shapes, the ISO one first as in the refused case; free-form
    // arguments of every kind, each conflicting with the one before under dynamic mapping.
    let shapes = [
        (
            "iso",
            "2016-06-15T10:13:20.123Z",
            json!(null),
            json!({"metric": 91.5}),
        ),
        (
            "3x",
            "2016-06-15 10:13:21.456+0000",
            json!(["a", 1]),
            json!({"metric": "high"}),
        ),
        (
            "policy",
            "2016-06-15 10:13:22.789",
            json!({"x": {"y": 1}}),
            json!("none"),
        ),
        (
            "noseconds",
            "2016-06-15 10:14+0000",
            json!("text"),
            json!([1, {"a": true}]),
        ),
    ];
    let documents: Vec<_> = shapes
        .iter()
        .map(|(id, timestamp, arguments, parameters)| {
            let source = manager_event(timestamp, arguments.clone(), parameters.clone());
            document(&index, id, &source)
        })
        .collect();
    // One at a time, so that each meets the mapping the ones before it made.
    for document in &documents {
        assert_all_delivered(&write(&writer, std::slice::from_ref(document)).await, 1);
    }

    assert_eq!(target.count(&index).await, 4);
    let mapping = target.mapping(&index).await;
    let properties = &mapping["properties"];
    assert_eq!(properties["timestamp"]["type"], "keyword", "{mapping}");
    assert_eq!(properties["@timestamp"]["type"], "date", "{mapping}");
    for free_form in [
        &properties["message"]["properties"]["arguments"],
        &properties["context"]["properties"]["trigger-parameters"],
    ] {
        assert_eq!(free_form["enabled"], false, "{mapping}");
    }
    // The other strings are still text with a keyword sub-field, as without the template.
    assert_eq!(
        properties["context"]["properties"]["execution_id"]["fields"]["keyword"]["type"], "keyword",
        "{mapping}"
    );

    // Found by the manager's own shape, as sent, and by the reader's filter.
    let hits = target
        .search_ids(
            &index,
            json!({"query": {"term": {"timestamp": "2016-06-15 10:13:21.456+0000"}}}),
        )
        .await;
    assert_eq!(hits, ["3x"]);
    let mut hits = target
        .search_ids(
            &index,
            json!({"size": 10, "query": {"term": {"context.execution_id.keyword": "5e1c0d2a"}}}),
        )
        .await;
    hits.sort();
    assert_eq!(hits, ["3x", "iso", "noseconds", "policy"]);
    let (status, stored) = target.get(&index, "policy").await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(
        stored["_source"]["message"]["arguments"],
        json!({"x": {"y": 1}})
    );
}

#[tokio::test]
async fn the_template_shapes_only_new_indices_of_its_pattern() {
    let target = Target::start().await;
    let writer = target.writer();
    let (base, pattern, _) = daily_pattern(&target, "scope");
    let before = target.also_delete(format!("{base}-2016.06.14"));
    let after = target.also_delete(format!("{base}-2016.06.16"));
    let elsewhere = target.also_delete(format!("{base}-other"));
    let iso = |index: &str| {
        document(
            index,
            "iso",
            &manager_event("2016-06-15T10:13:20.123Z", Value::Null, Value::Null),
        )
    };

    // An index that exists before the template keeps the mapping it already has.
    assert_all_delivered(&write(&writer, &[iso(&before)]).await, 1);
    let template = target.template_name("scope");
    writer
        .install_index_template(
            &template,
            &[pattern.wildcard()],
            &TemplateOptions::default(),
        )
        .await
        .expect("template installed");
    // Reinstalled at each start: the second put changes nothing.
    writer
        .install_index_template(
            &template,
            &[pattern.wildcard()],
            &TemplateOptions::default(),
        )
        .await
        .expect("template installed again");
    assert_all_delivered(&write(&writer, &[iso(&after), iso(&elsewhere)]).await, 2);

    let timestamp_type = |mapping: Value| mapping["properties"]["timestamp"]["type"].clone();
    assert_eq!(timestamp_type(target.mapping(&before).await), "date");
    assert_eq!(timestamp_type(target.mapping(&after).await), "keyword");
    assert_eq!(
        timestamp_type(target.mapping(&elsewhere).await),
        "date",
        "an index the pattern does not make is left to dynamic mapping"
    );
}

#[tokio::test]
async fn an_ilm_policy_is_named_in_the_template_settings() {
    let target = Target::start().await;
    let writer = target.writer();
    let (_, pattern, _) = daily_pattern(&target, "ilm");
    let template = target.template_name("ilm");
    let options = TemplateOptions {
        ilm_policy: Some("sluice-test-7-days".to_owned()),
        data_stream: false,
    };
    writer
        .install_index_template(&template, &[pattern.wildcard()], &options)
        .await
        .expect("template installed");

    let (status, answer) = target
        .request(
            reqwest::Method::GET,
            &format!("_index_template/{template}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let settings = &answer["index_templates"][0]["index_template"]["template"]["settings"];
    // Elasticsearch answers settings nested; the fake, as they were put.
    let policy = settings
        .pointer("/index/lifecycle/name")
        .or_else(|| settings.get("index.lifecycle.name"));
    assert_eq!(policy, Some(&json!("sluice-test-7-days")), "{answer}");

    let error = writer
        .install_index_template(
            &template,
            &[pattern.wildcard()],
            &TemplateOptions {
                ilm_policy: Some(String::new()),
                data_stream: false,
            },
        )
        .await
        .expect_err("an empty policy name");
    assert!(error.to_string().contains("ILM policy"), "{error}");
}

#[tokio::test]
async fn with_data_stream_the_documents_go_into_the_stream_named_by_the_fixed_index() {
    let target = Target::start().await;
    let writer = target.writer();
    let stream = target.data_stream("events");
    let pattern = IndexPattern::parse(&stream).expect("a fixed name");
    assert!(pattern.is_fixed());
    let template = target.template_name("stream");
    let options = TemplateOptions {
        ilm_policy: None,
        data_stream: true,
    };
    writer
        .install_index_template(&template, &[pattern.wildcard()], &options)
        .await
        .expect("template installed");

    let documents = [
        document(
            &stream,
            "iso",
            &manager_event("2016-06-15T10:13:20.123Z", Value::Null, Value::Null),
        ),
        document(
            &stream,
            "3x",
            &manager_event("2016-06-15 10:13:21.456+0000", Value::Null, Value::Null),
        ),
    ];
    assert_all_delivered(&write(&writer, &documents).await, 2);
    // Written again (a redelivery): 409 in the backing index, delivered, nothing stored twice.
    assert_all_delivered(&write(&writer, &documents).await, 2);
    assert_eq!(target.count(&stream).await, 2);

    let (status, answer) = target
        .request(
            reqwest::Method::GET,
            &format!("_data_stream/{stream}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let backing = answer["data_streams"][0]["indices"][0]["index_name"]
        .as_str()
        .expect("a backing index");
    assert!(
        backing.starts_with(&format!(".ds-{stream}-")) && backing.ends_with("-000001"),
        "{answer}"
    );
    let mapping = target.mapping(backing).await;
    assert_eq!(
        mapping["properties"]["timestamp"]["type"], "keyword",
        "the template's mappings shape the backing index: {mapping}"
    );
    let hits = target
        .search_ids(
            &stream,
            json!({"query": {"term": {"timestamp": "2016-06-15T10:13:20.123Z"}}}),
        )
        .await;
    assert_eq!(hits, ["iso"]);

    // Only `create` writes into a data stream, which is what the writer always sends.
    let (status, answer) = target
        .bulk_raw(&format!(
            "{{\"index\":{{\"_index\":\"{stream}\",\"_id\":\"x\"}}}}\n{}\n",
            manager_event("2016-06-15T10:13:22.000Z", Value::Null, Value::Null)
        ))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["items"][0]["index"]["status"], 400, "{answer}");
}
