//! End to end on the real RabbitMQ: the manager's events and logs through `sluice run` into
//! Elasticsearch (the in-process, protocol-faithful fake from `sluice-elasticsearch`, since
//! Elasticsearch cannot be installed here), both manager generations, duplicates, per-item
//! failures and an outage.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{Broker, Sluice, TestNames, eventually, influx_url, unique};
use serde_json::Value;
use sluice_testing::elasticsearch::FakeElasticsearch;

const WAIT: Duration = Duration::from_secs(60);

/// The golden fixtures: (name, body, expected `_index`, expected `_source`).
fn fixtures() -> Vec<(String, Vec<u8>, String, Value)> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/fixtures/events");
    let mut cases = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&folder)
        .expect("fixtures")
        .flatten()
        .collect();
    entries.sort_by_key(|entry| entry.path());
    for entry in entries {
        let path = entry.path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.ends_with(".document.json") || !name.ends_with(".json") {
            continue;
        }
        let body = std::fs::read(&path).expect("body");
        let expected: Value = serde_json::from_slice(
            &std::fs::read(path.with_extension("document.json")).expect("expected document"),
        )
        .expect("json");
        let index = expected["_index"].as_str().expect("_index").to_owned();
        cases.push((name, body, index, expected["_source"].clone()));
    }
    assert!(cases.len() >= 5, "the event fixtures are there");
    cases
}

/// Stored documents by their manager `timestamp` (unique across the fixtures).
fn by_timestamp(documents: Vec<Value>) -> BTreeMap<String, Vec<Value>> {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for document in documents {
        let key = document["timestamp"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        map.entry(key).or_default().push(document);
    }
    map
}

fn events_overrides<'a>(
    es: &'a str,
    manager: &'a str,
    exchanges: &'a str,
    queues: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("SLUICE_METRICS__ENABLED", "false"),
        ("SLUICE_EVENTS__ENABLED", "true"),
        ("SLUICE_EVENTS__MANAGER", manager),
        ("SLUICE_EVENTS__EXCHANGES", exchanges),
        ("SLUICE_EVENTS__QUEUES", queues),
        ("SLUICE_ELASTICSEARCH__URL", es),
        ("SLUICE_ELASTICSEARCH__RETRY_INITIAL_DELAY", "50ms"),
        ("SLUICE_ELASTICSEARCH__RETRY_MAX_DELAY", "500ms"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_4x_events_and_logs_land_once_in_their_daily_index_with_utc_timestamps() {
    let names = TestNames::new("events4x");
    let broker = Broker::connect().await;
    let es = FakeElasticsearch::start().await;
    let es_url = es.url().to_string();
    let (events_exchange, logs_exchange) = (unique("cloudify-events"), unique("cloudify-logs"));
    let (events_queue, logs_queue) = (unique("sluice.events"), unique("sluice.logs"));
    let exchanges = format!(r#"["{events_exchange}","{logs_exchange}"]"#);
    let queues = format!(r#"["{events_queue}","{logs_queue}"]"#);
    let mut sluice = Sluice::start(
        &names,
        &influx_url(),
        &events_overrides(&es_url, "4.x", &exchanges, &queues),
    )
    .await;

    let cases = fixtures();
    for (_, body, _, expected) in &cases {
        let exchange = if expected["type"] == "cloudify_log" {
            &logs_exchange
        } else {
            &events_exchange
        };
        broker.publish(exchange, "", body).await;
        // A redelivery or a second publish of the same message must not make a second document.
        broker.publish(exchange, "", body).await;
    }
    let bad_timestamp = br#"{"type":"cloudify_event","event_type":"task_started","timestamp":"yesterday","context":{},"message":{"text":"x"}}"#;
    broker.publish(&events_exchange, "", bad_timestamp).await;
    broker.publish(&logs_exchange, "", b"{not json").await;

    let stored = eventually("every fixture stored", WAIT, || async {
        let documents = es.documents("*");
        (documents.len() >= cases.len()).then_some(documents)
    })
    .await;
    let stored = by_timestamp(stored);
    for (name, _, index, expected) in &cases {
        let key = expected["timestamp"].as_str().unwrap_or_default();
        let found = &stored[key];
        assert_eq!(
            found.len(),
            1,
            "{name}: exactly one document despite the duplicate"
        );
        assert_eq!(
            &found[0], expected,
            "{name}: the manager's shape plus @timestamp"
        );
        assert_eq!(
            es.documents(index)
                .iter()
                .filter(|document| document["timestamp"] == expected["timestamp"])
                .count(),
            1,
            "{name}: stored in {index}"
        );
    }

    let letters = broker.take(&names.dead_letter_queue, 2, WAIT).await;
    let mut reasons: Vec<String> = letters
        .iter()
        .map(|letter| letter.routing_key.clone())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "events.bad_timestamp".to_owned(),
            "events.invalid_json".to_owned()
        ]
    );

    assert!(sluice.stop(), "clean stop");
    for queue in [&events_queue, &logs_queue] {
        assert_eq!(
            broker.queue_counts(queue).await,
            (0, 0),
            "{queue} drained, nothing unacked"
        );
        broker.delete_queue(queue).await;
    }
    broker.delete_exchange(&events_exchange).await;
    broker.delete_exchange(&logs_exchange).await;
    broker.remove(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_3x_queues_are_consumed_as_the_manager_declares_them() {
    let names = TestNames::new("events3x");
    let broker = Broker::connect().await;
    let es = FakeElasticsearch::start().await;
    let es_url = es.url().to_string();
    let (events_queue, logs_queue) = (unique("cloudify-events"), unique("cloudify-logs"));
    let queues = format!(r#"["{events_queue}","{logs_queue}"]"#);
    let mut sluice = Sluice::start(
        &names,
        &influx_url(),
        &events_overrides(&es_url, "3.x", "[]", &queues),
    )
    .await;

    // 3.x publishers use the default exchange with the queue's name as routing key.
    let cases = fixtures();
    for (_, body, _, expected) in &cases {
        let queue = if expected["type"] == "cloudify_log" {
            &logs_queue
        } else {
            &events_queue
        };
        broker.publish("", queue, body).await;
    }
    eventually("every fixture stored", WAIT, || async {
        (es.documents("*").len() == cases.len()).then_some(())
    })
    .await;
    assert!(sluice.stop(), "clean stop");
    // The queues are auto-delete, as the manager declares them: gone with their last consumer.
    for queue in [&events_queue, &logs_queue] {
        broker.delete_queue(queue).await;
    }
    broker.remove(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_reply_mixing_201_409_429_and_400_retries_only_the_429_and_dead_letters_the_400() {
    let names = TestNames::new("eventsmix");
    let broker = Broker::connect().await;
    let es = FakeElasticsearch::start().await;
    let es_url = es.url().to_string();
    let exchange = unique("cloudify-events");
    let queue = unique("sluice.events");
    let exchanges = format!(r#"["{exchange}"]"#);
    let queues = format!(r#"["{queue}"]"#);
    let mut sluice = Sluice::start(
        &names,
        &influx_url(),
        &[
            events_overrides(&es_url, "4.x", &exchanges, &queues),
            vec![("SLUICE_ELASTICSEARCH__BATCH_LINGER", "300ms")],
        ]
        .concat(),
    )
    .await;

    let event = |n: u32, node: Value| {
        serde_json::json!({
            "type": "cloudify_event", "event_type": "task_started", "message_code": null,
            "timestamp": format!("2016-06-15 10:13:{n:02}.000+0000"),
            "message": {"text": format!("event {n}"), "arguments": null},
            "context": {"deployment_id": "d", "execution_id": "e", "workflow_id": "install", "node_id": node},
        })
        .to_string()
        .into_bytes()
    };
    // `context.node_id` is first mapped as text; a later object there is a mapping conflict.
    let first = event(0, Value::from("nodejs_1"));
    broker.publish(&exchange, "", &first).await;
    eventually("the first document", WAIT, || async {
        (es.documents("*").len() == 1).then_some(())
    })
    .await;

    let throttled = event(2, Value::from("nodejs_2"));
    let throttled_id = sluice_normalise::document_id(&exchange, "", &throttled);
    es.fail_items_with_429([throttled_id], 2);
    let conflicting = event(3, serde_json::json!({"nested": true}));
    let bodies = [
        first.clone(),
        event(1, Value::from("nodejs_1")),
        throttled,
        conflicting.clone(),
    ];
    for body in &bodies {
        broker.publish(&exchange, "", body).await;
    }

    eventually(
        "the 201, the 409 and the retried 429 stored",
        WAIT,
        || async { (es.documents("*").len() == 3).then_some(()) },
    )
    .await;
    let letters = broker.take(&names.dead_letter_queue, 1, WAIT).await;
    assert_eq!(letters[0].routing_key, "elasticsearch.mapping_conflict");
    assert_eq!(letters[0].body, conflicting);
    assert!(
        letters[0].headers["x-sluice-error"].contains("exception"),
        "{:?}",
        letters[0].headers
    );
    let retried = sluice.counter("sluice_retried_total").await;
    assert_eq!(retried, 2.0, "only the throttled item was retried, twice");
    eventually("every delivery acked", WAIT, || async {
        (sluice.counter("sluice_acked_total").await == 5.0).then_some(())
    })
    .await;
    assert!(sluice.stop(), "clean stop");
    assert_eq!(broker.queue_counts(&queue).await, (0, 0));
    broker.delete_queue(&queue).await;
    broker.delete_exchange(&exchange).await;
    broker.remove(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_elasticsearch_is_down_nothing_is_acked_and_after_it_returns_nothing_is_lost() {
    let names = TestNames::new("eventsdown");
    let broker = Broker::connect().await;
    let mut es = FakeElasticsearch::start().await;
    let es_url = es.url().to_string();
    let exchange = unique("cloudify-logs");
    let queue = unique("sluice.logs");
    let exchanges = format!(r#"["{exchange}"]"#);
    let queues = format!(r#"["{queue}"]"#);
    let mut sluice = Sluice::start(
        &names,
        &influx_url(),
        &events_overrides(&es_url, "4.x", &exchanges, &queues),
    )
    .await;

    let log = |n: u32| {
        serde_json::json!({
            "type": "cloudify_log", "logger": "ctx", "level": "info", "message_code": null,
            "timestamp": format!("2016-06-15 10:{:02}:{:02}.000+0000", n / 60, n % 60),
            "message": {"text": format!("line {n}")},
            "context": {"deployment_id": "d", "execution_id": "e", "workflow_id": "install"},
        })
        .to_string()
        .into_bytes()
    };
    es.stop().await;
    for n in 0..40 {
        broker.publish(&exchange, "", &log(n)).await;
    }
    eventually("sluice to hold all 40 and retry them", WAIT, || async {
        let received = sluice.counter("sluice_received_total").await;
        let retried = sluice.counter("sluice_retried_total").await;
        (received == 40.0 && retried >= 40.0).then_some(())
    })
    .await;
    assert_eq!(sluice.counter("sluice_acked_total").await, 0.0);
    assert_eq!(
        broker.queue_counts(&queue).await,
        (0, 1),
        "all held unacked by sluice"
    );

    es.restart().await;
    eventually("all 40 stored after the outage", WAIT, || async {
        (es.documents("*").len() == 40).then_some(())
    })
    .await;
    eventually("all 40 acked", WAIT, || async {
        (sluice.counter("sluice_acked_total").await == 40.0).then_some(())
    })
    .await;
    assert!(sluice.stop(), "clean stop");
    assert_eq!(broker.queue_counts(&queue).await, (0, 0));
    broker.delete_queue(&queue).await;
    broker.delete_exchange(&exchange).await;
    broker.remove(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_redelivered_after_a_crash_are_stored_once() {
    let names = TestNames::new("eventsredeliver");
    let broker = Broker::connect().await;
    let es = FakeElasticsearch::start().await;
    let es_url = es.url().to_string();
    let exchange = unique("cloudify-events");
    let queue = unique("sluice.events");
    let exchanges = format!(r#"["{exchange}"]"#);
    let queues = format!(r#"["{queue}"]"#);
    // Without the template: the delay below holds every answer, the template's put (a
    // precondition of writing) included, and this test is about the bulk writes.
    let overrides = [
        events_overrides(&es_url, "4.x", &exchanges, &queues),
        vec![("SLUICE_EVENTS__INSTALL_INDEX_TEMPLATE", "false")],
    ]
    .concat();

    // Elasticsearch stores every bulk but answers only after a minute: the first sluice never
    // learns that its writes landed, so it acks nothing before it is killed.
    es.delay_responses(Duration::from_secs(60));
    let first = Sluice::start(&names, &influx_url(), &overrides).await;
    let cases = fixtures();
    for (_, body, _, _) in &cases {
        broker.publish(&exchange, "", body).await;
    }
    eventually("the first sluice's writes stored", WAIT, || async {
        (es.documents("*").len() == cases.len()).then_some(())
    })
    .await;
    assert_eq!(first.counter("sluice_acked_total").await, 0.0);
    drop(first); // SIGKILL: the broker requeues every unacked delivery.

    es.delay_responses(Duration::ZERO);
    let mut second = Sluice::start(&names, &influx_url(), &overrides).await;
    eventually(
        "the redeliveries acked by the second sluice",
        WAIT,
        || async {
            (second.counter("sluice_acked_total").await == cases.len() as f64).then_some(())
        },
    )
    .await;
    assert_eq!(
        es.documents("*").len(),
        cases.len(),
        "a redelivery meets 409, never a duplicate"
    );
    assert!(second.stop(), "clean stop");
    assert_eq!(broker.queue_counts(&queue).await, (0, 0));
    broker.delete_queue(&queue).await;
    broker.delete_exchange(&exchange).await;
    broker.remove(&names).await;
}

/// Regression: a daily index that first saw the 3.5+ ISO `timestamp` took it for a date and
/// refused every 3.x `+0000` document of that day. The template sluice installs by default
/// maps `timestamp` as a keyword, so both shapes land in the same index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_timestamp_shapes_of_the_manager_land_in_one_daily_index_with_the_default_template() {
    let names = TestNames::new("eventsshapes");
    let broker = Broker::connect().await;
    let es = FakeElasticsearch::start().await;
    let es_url = es.url().to_string();
    let exchange = unique("cloudify-events");
    let queue = unique("sluice.events");
    let exchanges = format!(r#"["{exchange}"]"#);
    let queues = format!(r#"["{queue}"]"#);
    let mut sluice = Sluice::start(
        &names,
        &influx_url(),
        &events_overrides(&es_url, "4.x", &exchanges, &queues),
    )
    .await;

    let event = |timestamp: &str| {
        serde_json::json!({
            "type": "cloudify_event", "event_type": "task_succeeded", "message_code": null,
            "timestamp": timestamp,
            "message": {"text": format!("Task succeeded at {timestamp}"), "arguments": null},
            "context": {"deployment_id": "nodecellar", "execution_id": "5e1c0d2a", "workflow_id": "install"},
        })
        .to_string()
        .into_bytes()
    };
    // The ISO shape first: it is the one date detection would have fixed the index with.
    broker
        .publish(&exchange, "", &event("2016-06-15T10:13:20.123Z"))
        .await;
    eventually("the ISO 8601 event stored", WAIT, || async {
        (es.documents("logstash-2016.06.15").len() == 1).then_some(())
    })
    .await;
    broker
        .publish(&exchange, "", &event("2016-06-15 10:13:21.456+0000"))
        .await;
    let stored = eventually("the 3.x event stored beside it", WAIT, || async {
        let documents = es.documents("logstash-2016.06.15");
        (documents.len() == 2).then_some(documents)
    })
    .await;
    let mut timestamps: Vec<&str> = stored
        .iter()
        .filter_map(|document| document["timestamp"].as_str())
        .collect();
    timestamps.sort_unstable();
    assert_eq!(
        timestamps,
        ["2016-06-15 10:13:21.456+0000", "2016-06-15T10:13:20.123Z"]
    );

    let mapping: Value = reqwest::get(format!("{es_url}logstash-2016.06.15/_mapping"))
        .await
        .expect("the double answers")
        .json()
        .await
        .expect("a mapping");
    let properties = &mapping["logstash-2016.06.15"]["mappings"]["properties"];
    assert_eq!(properties["timestamp"]["type"], "keyword", "{mapping}");
    assert_eq!(properties["@timestamp"]["type"], "date", "{mapping}");

    eventually("both deliveries acked", WAIT, || async {
        (sluice.counter("sluice_acked_total").await == 2.0).then_some(())
    })
    .await;
    assert!(sluice.stop(), "clean stop");
    assert_eq!(broker.queue_counts(&queue).await, (0, 0));
    assert_eq!(
        broker.queue_counts(&names.dead_letter_queue).await.0,
        0,
        "nothing dead-lettered"
    );
    broker.delete_queue(&queue).await;
    broker.delete_exchange(&exchange).await;
    broker.remove(&names).await;
}

/// `events.data_stream` and `events.ilm_policy`: the template sluice installs makes the fixed
/// `events.index` a data stream under the policy, and both timestamp shapes land in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_data_stream_the_events_go_into_the_stream_named_by_the_index() {
    let names = TestNames::new("eventsstream");
    let broker = Broker::connect().await;
    let es = FakeElasticsearch::start().await;
    let es_url = es.url().to_string();
    let exchange = unique("cloudify-events");
    let queue = unique("sluice.events");
    let exchanges = format!(r#"["{exchange}"]"#);
    let queues = format!(r#"["{queue}"]"#);
    let mut sluice = Sluice::start(
        &names,
        &influx_url(),
        &[
            events_overrides(&es_url, "4.x", &exchanges, &queues),
            vec![
                ("SLUICE_EVENTS__INDEX", "logstash-cloudify"),
                ("SLUICE_EVENTS__DATA_STREAM", "true"),
                ("SLUICE_EVENTS__ILM_POLICY", "cloudify-7-days"),
            ],
        ]
        .concat(),
    )
    .await;

    for timestamp in ["2016-06-15T10:13:20.123Z", "2016-06-15 10:13:21.456+0000"] {
        let body = serde_json::json!({
            "type": "cloudify_log", "level": "info", "logger": "ctx", "message_code": null,
            "timestamp": timestamp, "message": {"text": format!("log at {timestamp}")},
            "context": {"deployment_id": "nodecellar", "execution_id": "5e1c0d2a"},
        });
        broker
            .publish(&exchange, "", body.to_string().as_bytes())
            .await;
    }
    eventually("both logs stored in the stream", WAIT, || async {
        (es.documents("logstash-cloudify").len() == 2).then_some(())
    })
    .await;

    let get = |path: String| async move {
        reqwest::get(path)
            .await
            .expect("the double answers")
            .json::<Value>()
            .await
            .expect("json")
    };
    let streams = get(format!("{es_url}_data_stream/logstash-cloudify")).await;
    assert_eq!(
        streams["data_streams"][0]["template"], "sluice-events",
        "{streams}"
    );
    let template = get(format!("{es_url}_index_template/sluice-events")).await;
    let body = &template["index_templates"][0]["index_template"];
    assert_eq!(
        body["index_patterns"],
        serde_json::json!(["logstash-cloudify"])
    );
    assert_eq!(
        body["template"]["settings"]["index.lifecycle.name"], "cloudify-7-days",
        "{template}"
    );

    eventually("both deliveries acked", WAIT, || async {
        (sluice.counter("sluice_acked_total").await == 2.0).then_some(())
    })
    .await;
    assert!(sluice.stop(), "clean stop");
    assert_eq!(broker.queue_counts(&queue).await, (0, 0));
    broker.delete_queue(&queue).await;
    broker.delete_exchange(&exchange).await;
    broker.remove(&names).await;
}
