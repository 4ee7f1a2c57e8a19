//! The writer against Elasticsearch: the fake by default, a real Elasticsearch or OpenSearch
//! when `ES_URL` is set (see `support/target.rs`). The same assertions hold for both; each test
//! writes to indices of its own and reads back through the REST API.

#[path = "support/target.rs"]
mod target;

use serde_json::{Value, json};
use sluice_core::outcome::ItemOutcome;
use sluice_core::rejection::Reason;
use sluice_elasticsearch::{EsWriter, TemplateOptions};

use target::{Target, assert_all_delivered, document, event, write};

#[tokio::test]
async fn written_documents_are_stored_and_found_exactly() {
    let target = Target::start().await;
    let index = target.index("stored");
    let writer = target.writer();
    let documents: Vec<_> = (0..50).map(|number| event(&index, number)).collect();

    assert_all_delivered(&write(&writer, &documents).await, 50);

    assert_eq!(target.count(&index).await, 50);
    let (status, stored) = target.get(&index, "event-0007").await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["_version"], 1);
    let written: Value = serde_json::from_slice(&documents[7].source).expect("json");
    assert_eq!(stored["_source"], written);

    // Found by what the manager queries on: the execution id, and the id itself.
    let hits = target
        .search_ids(
            &index,
            json!({
                "query": {"bool": {"filter": [
                    {"term": {"context.execution_id.keyword": "exec-1"}},
                    {"term": {"event_type.keyword": "task_started"}}
                ]}},
                "sort": [{"sequence": "asc"}],
                "size": 100
            }),
        )
        .await;
    let expected: Vec<String> = (0..50)
        .filter(|number| number % 3 == 1 && number % 2 == 1)
        .map(|number| format!("event-{number:04}"))
        .collect();
    assert_eq!(hits, expected);
    let by_id = target
        .search_ids(&index, json!({"query": {"term": {"_id": "event-0042"}}}))
        .await;
    assert_eq!(by_id, ["event-0042"]);
}

#[tokio::test]
async fn writing_the_same_documents_again_is_delivered_through_409_and_stores_nothing_twice() {
    let target = Target::start().await;
    let index = target.index("again");
    let writer = target.writer();
    let documents: Vec<_> = (0..20).map(|number| event(&index, number)).collect();
    assert_all_delivered(&write(&writer, &documents).await, 20);

    // A redelivery: the same ids, create answers 409 for each, which counts as delivered.
    assert_all_delivered(&write(&writer, &documents).await, 20);
    // And a batch mixing redelivered and new documents.
    let mixed: Vec<_> = (10..30).map(|number| event(&index, number)).collect();
    assert_all_delivered(&write(&writer, &mixed).await, 20);

    assert_eq!(target.count(&index).await, 30);
    let (_, stored) = target.get(&index, "event-0015").await;
    assert_eq!(stored["_version"], 1, "never overwritten: {stored}");
}

#[tokio::test]
async fn a_mapping_conflict_rejects_only_that_document() {
    let target = Target::start().await;
    let index = target.index("conflict");
    let writer = target.writer();
    let documents = [
        document(&index, "a", r#"{"count":1,"name":"first"}"#),
        document(&index, "b", r#"{"count":"not a number","name":"second"}"#),
        document(&index, "c", r#"{"count":3,"name":"third"}"#),
    ];

    let outcomes = write(&writer, &documents).await;

    assert_eq!(outcomes[0], ItemOutcome::Delivered);
    assert_eq!(outcomes[2], ItemOutcome::Delivered);
    let ItemOutcome::Reject { reason, detail } = &outcomes[1] else {
        panic!("{outcomes:?}");
    };
    assert_eq!(*reason, "mapping_conflict");
    // Elasticsearch 8 says document_parsing_exception, 7 and OpenSearch mapper_parsing_exception.
    assert!(
        detail.starts_with("document_parsing_exception: ")
            || detail.starts_with("mapper_parsing_exception: "),
        "{detail}"
    );
    assert!(
        detail.contains("failed to parse field [count] of type [long] in document with id 'b'"),
        "{detail}"
    );
    assert_eq!(target.count(&index).await, 2);
    let (status, _) = target.get(&index, "b").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn documents_that_would_spoil_the_request_are_rejected_unsent_and_the_rest_delivered() {
    let target = Target::start().await;
    let index = target.index("invalid");
    let writer = target.writer();
    let documents = [
        document(&index, "good-1", r#"{"n":1}"#),
        document(&index, "newline", "{\"n\":\n2}"),
        document(&index, "array", "[1,2]"),
        document(&index, "truncated", r#"{"n":"#),
        document(&index, "", r#"{"n":3}"#),
        document(&index, &"x".repeat(513), r#"{"n":4}"#),
        document(&index, "good-2", r#"{"n":5}"#),
    ];

    let outcomes = write(&writer, &documents).await;

    assert_eq!(outcomes[0], ItemOutcome::Delivered);
    assert_eq!(outcomes[6], ItemOutcome::Delivered);
    for (position, outcome) in outcomes.iter().enumerate().take(6).skip(1) {
        assert!(
            matches!(
                outcome,
                ItemOutcome::Reject {
                    reason: Reason::InvalidDocument,
                    ..
                }
            ),
            "item {position}: {outcome:?}"
        );
    }
    assert_eq!(target.count(&index).await, 2);
}

#[tokio::test]
async fn gzipped_and_plain_requests_store_the_same_documents() {
    let target = Target::start().await;
    for gzip in [true, false] {
        let index = target.index(if gzip { "gzip" } else { "plain" });
        let mut settings = target.settings();
        settings.gzip = gzip;
        let writer = EsWriter::new(settings).expect("valid settings");
        let documents: Vec<_> = (0..30).map(|number| event(&index, number)).collect();
        assert_all_delivered(&write(&writer, &documents).await, 30);
        assert_eq!(target.count(&index).await, 30, "gzip {gzip}");
    }
}

#[tokio::test]
async fn unicode_and_escapes_in_ids_and_sources_survive() {
    let target = Target::start().await;
    let index = target.index("unicode");
    let writer = target.writer();
    let id = "ünï \"quoted\" \\ / 中文 😀";
    let source = json!({"text": "line\nbreak \"q\" \\ \u{1} ünï 😀", "n": -1.25});
    let documents = [document(&index, id, &source.to_string())];

    assert_all_delivered(&write(&writer, &documents).await, 1);

    let hits = target
        .search(&index, json!({"query": {"ids": {"values": [id]}}}))
        .await;
    assert_eq!(hits["hits"]["hits"][0]["_id"], id);
    assert_eq!(hits["hits"]["hits"][0]["_source"], source);
}

#[tokio::test]
async fn the_cluster_answers_ping_and_the_index_template_shapes_new_indices() {
    let target = Target::start().await;
    let writer = target.writer();
    writer.ping().await.expect("ping");

    let index = target.index("templated");
    let template = target.template_name("template");
    let patterns = [format!("{index}*")];
    writer
        .install_index_template(&template, &patterns, &TemplateOptions::default())
        .await
        .expect("template installed");
    // Idempotent: putting it again changes nothing.
    writer
        .install_index_template(&template, &patterns, &TemplateOptions::default())
        .await
        .expect("template installed again");

    let documents = [document(
        &index,
        "1",
        r#"{"@timestamp":"2016-06-15T10:13:20.123Z","type":"cloudify_event","context":{"execution_id":"5e1c0d2a"},"message":{"text":"Task succeeded"}}"#,
    )];
    assert_all_delivered(&write(&writer, &documents).await, 1);

    let mapping = target.mapping(&index).await;
    let properties = &mapping["properties"];
    assert_eq!(properties["@timestamp"]["type"], "date", "{mapping}");
    let keyword = json!({"keyword": {"type": "keyword", "ignore_above": 256}});
    assert_eq!(properties["type"]["type"], "text", "{mapping}");
    assert_eq!(properties["type"]["fields"], keyword, "{mapping}");
    let execution = &properties["context"]["properties"]["execution_id"];
    assert_eq!(execution["type"], "text", "{mapping}");
    assert_eq!(execution["fields"], keyword, "{mapping}");

    let hits = target
        .search_ids(
            &index,
            json!({"query": {"term": {"context.execution_id.keyword": "5e1c0d2a"}}}),
        )
        .await;
    assert_eq!(hits, ["1"]);
    let hits = target
        .search_ids(
            &index,
            json!({"query": {"match": {"message.text": "SUCCEEDED"}}}),
        )
        .await;
    assert_eq!(hits, ["1"]);
}

#[tokio::test]
async fn an_invalid_template_is_refused_as_not_retryable() {
    let target = Target::start().await;
    let writer = target.writer();
    let template = target.template_name("bad");
    let error = writer
        .install_index_template(
            &template,
            &["bad pattern-*".to_owned()],
            &TemplateOptions::default(),
        )
        .await
        .expect_err("a pattern with a space is refused");
    assert!(!error.is_retryable(), "{error}");
    let error = writer
        .install_index_template("", &["x-*".to_owned()], &TemplateOptions::default())
        .await
        .expect_err("an empty name");
    assert!(error.to_string().contains("name is empty"), "{error}");
}
