//! End to end on real services: the manager's Diamond metrics through `sluice run` into
//! InfluxDB, bad input into the dead-letter exchange, acks only after outcomes.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Broker, Sluice, TestNames, diamond, eventually, influx_url};
use serde_json::Value;
use sluice_testing::influx::{PrivateInflux, TestDatabase};

const WAIT: Duration = Duration::from_secs(60);
const BASE_TIME: i64 = 1_700_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_metrics_land_exactly_and_bad_ones_are_dead_lettered_with_reasons() {
    let names = TestNames::new("e2e");
    let broker = Broker::connect().await;
    let influx = TestDatabase::on(&influx_url(), &names.database).await;
    let mut sluice = Sluice::start(&names, &influx_url(), &[]).await;

    // 150 good metrics from 3 hosts, one deployment id with dots (the old consumer missed those).
    let deployments = ["nodecellar", "shop.prod.eu"];
    let mut published = 0;
    for index in 0..150i64 {
        let deployment = deployments[(index % 2) as usize];
        let node_id = format!("host_{}", index % 3);
        let body = diamond(
            deployment,
            &node_id,
            "cpu.total.user",
            index as f64 + 0.5,
            BASE_TIME + index,
        );
        broker.publish(&names.exchange, deployment, &body).await;
        published += 1;
    }
    // An integral metric still becomes a float field.
    broker
        .publish(
            &names.exchange,
            "nodecellar",
            &diamond("nodecellar", "host_9", "memory.used", 42.0, BASE_TIME),
        )
        .await;

    // Bad input of every kind, and one control message that must not count as bad.
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("invalid_json", b"this is not json".to_vec()),
        ("invalid_utf8", b"{\"name\":\"\xff\xfe\"}".to_vec()),
        (
            "missing_field",
            br#"{"deployment_id":"d","node_name":"n","node_id":"i"}"#.to_vec(),
        ),
        (
            "wrong_type",
            String::from_utf8(diamond("d", "i", "cpu.x", 1.0, BASE_TIME))
                .expect("utf8")
                .replace("\"metric\":1.0", "\"metric\":\"high\"")
                .into_bytes(),
        ),
        (
            "not_finite",
            String::from_utf8(diamond("d", "i", "cpu.x", 1.0, BASE_TIME))
                .expect("utf8")
                .replace("\"metric\":1.0", "\"metric\":1e999")
                .into_bytes(),
        ),
        (
            "unsafe_name",
            diamond("d", "i", "cpu.inject\nevil value=1", 1.0, BASE_TIME),
        ),
        (
            "name_too_long",
            diamond(
                "d",
                "i",
                &format!("cpu.{}", "x".repeat(5000)),
                1.0,
                BASE_TIME,
            ),
        ),
    ];
    for (_, body) in &bad {
        broker.publish(&names.exchange, "d", body).await;
    }
    // A `stop` of a deployment with no policies: acked, never a bad metric. (A `start` would
    // read its groups file; the rules tests cover that.)
    let control = br#"{"service":"cloudify.configuration","state":"stop","config_path":"/tmp/x","deployment_id":"d","time":1700000000}"#;
    broker
        .publish(&names.exchange, "manager-riemann", control)
        .await;

    eventually("every good point in InfluxDB", WAIT, || async {
        (influx.count("cpu.total.user").await == published).then_some(())
    })
    .await;

    // One point checked field by field: measurement, tags, float field, the agent's own time.
    let rows = influx
        .rows(&format!(
            "SELECT * FROM \"cpu.total.user\" WHERE time = {}",
            (BASE_TIME + 7) * 1_000_000_000
        ))
        .await
        .expect("query");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["deployment_id"], Value::from("shop.prod.eu"));
    assert_eq!(row["node_name"], Value::from("nodejs_host"));
    assert_eq!(row["node_id"], Value::from("host_1"));
    assert_eq!(row["host"], Value::from("host_1"));
    assert_eq!(row["metric_type"], Value::from("GAUGE"));
    assert_eq!(row["value"].as_f64(), Some(7.5));
    let memory = influx
        .rows("SELECT \"value\" FROM \"memory.used\"")
        .await
        .expect("query");
    assert_eq!(memory.len(), 1);
    assert_eq!(memory[0]["value"].as_f64(), Some(42.0));
    let fields = influx
        .rows("SHOW FIELD KEYS FROM \"memory.used\"")
        .await
        .expect("query");
    assert_eq!(fields[0]["fieldType"], Value::from("float"));

    // Every bad message is in the dead-letter queue, with the original body and its reason.
    let letters = broker.take(&names.dead_letter_queue, bad.len(), WAIT).await;
    let reasons: BTreeSet<&str> = letters
        .iter()
        .map(|letter| letter.headers["x-sluice-reason"].as_str())
        .collect();
    let expected: BTreeSet<&str> = bad.iter().map(|(reason, _)| *reason).collect();
    assert_eq!(reasons, expected);
    for letter in &letters {
        let reason = letter.headers["x-sluice-reason"].as_str();
        let original = &bad
            .iter()
            .find(|(expected, _)| *expected == reason)
            .expect("known")
            .1;
        assert_eq!(
            &letter.body, original,
            "dead letter {reason} carries the original body"
        );
        assert_eq!(letter.routing_key, format!("normalise.{reason}"));
        assert_eq!(letter.headers["x-sluice-stage"], "normalise");
        assert_eq!(letter.headers["x-original-exchange"], names.exchange);
        assert!(!letter.headers["x-sluice-error"].is_empty());
    }

    assert_eq!(sluice.get("/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(sluice.get("/readyz").await, (200, "ready\n".to_owned()));
    let rejected = sluice.counter("sluice_rejected_total").await;
    assert_eq!(
        rejected,
        bad.len() as f64,
        "rejections are counted by reason"
    );
    assert_eq!(sluice.counter("sluice_control_messages_total").await, 1.0);

    // A clean stop leaves the queue empty: everything was acked, nothing waits or returns.
    assert!(sluice.stop(), "sluice exits cleanly on SIGTERM");
    let (ready, consumers) = broker.queue_counts(&names.queue).await;
    assert_eq!(
        (ready, consumers),
        (0, 0),
        "queue empty and nothing left unacked"
    );
    let (dead_left, _) = broker.queue_counts(&names.dead_letter_queue).await;
    assert_eq!(dead_left, 0, "the control message was not dead-lettered");

    broker.remove(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_type_conflict_dead_letters_only_the_conflicting_points() {
    let names = TestNames::new("conflict");
    let broker = Broker::connect().await;
    let influx = TestDatabase::on(&influx_url(), &names.database).await;
    influx
        .try_query(&format!("CREATE DATABASE \"{}\"", names.database))
        .await
        .expect("create");
    // `disk.free` already holds a string `value`: a float one conflicts.
    influx
        .write_lines(&format!("disk.free value=\"full\" {BASE_TIME}\n"))
        .await;
    let sluice = Sluice::start(
        &names,
        &influx_url(),
        &[("SLUICE_INFLUX__BATCH_MAX_POINTS", "50")],
    )
    .await;

    for index in 0..40i64 {
        let path = if index % 10 == 3 {
            "disk.free"
        } else {
            "cpu.total.system"
        };
        let body = diamond(
            "nodecellar",
            "host_a",
            path,
            index as f64,
            BASE_TIME + index,
        );
        broker.publish(&names.exchange, "nodecellar", &body).await;
    }

    eventually("the 36 good points", WAIT, || async {
        (influx.count("cpu.total.system").await == 36).then_some(())
    })
    .await;
    let letters = broker.take(&names.dead_letter_queue, 4, WAIT).await;
    for letter in &letters {
        assert_eq!(letter.headers["x-sluice-stage"], "influx");
        assert_eq!(letter.headers["x-sluice-reason"], "field_type_conflict");
        assert_eq!(letter.routing_key, "influx.field_type_conflict");
        let body: Value = serde_json::from_slice(&letter.body).expect("original body");
        assert_eq!(body["path"], "free");
    }
    drop(sluice);
    broker.remove(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_influxdb_is_down_nothing_is_acked_and_after_it_returns_nothing_is_lost() {
    let names = TestNames::new("outage");
    let broker = Broker::connect().await;
    let mut server = PrivateInflux::start().await;
    let influx = TestDatabase::on(&server.url(), &names.database).await;
    let mut sluice = Sluice::start(
        &names,
        &server.url(),
        &[
            ("SLUICE_INFLUX__RETRY_INITIAL_DELAY", "50ms"),
            ("SLUICE_INFLUX__RETRY_MAX_DELAY", "500ms"),
            ("SLUICE_INFLUX__REQUEST_TIMEOUT", "2s"),
        ],
    )
    .await;

    for index in 0..100i64 {
        broker
            .publish(
                &names.exchange,
                "nodecellar",
                &diamond("nodecellar", "h", "load.avg", 1.0, BASE_TIME + index),
            )
            .await;
    }
    eventually("the first 100 points", WAIT, || async {
        (influx.count("load.avg").await == 100).then_some(())
    })
    .await;
    eventually("the first 100 acks", WAIT, || async {
        (sluice.counter("sluice_acked_total").await == 100.0).then_some(())
    })
    .await;

    server.stop();
    for index in 100..200i64 {
        broker
            .publish(
                &names.exchange,
                "nodecellar",
                &diamond("nodecellar", "h", "load.avg", 2.0, BASE_TIME + index),
            )
            .await;
    }
    // sluice has all 200 and has failed to write the new ones at least twice...
    eventually("sluice to receive everything and retry", WAIT, || async {
        let received = sluice.counter("sluice_received_total").await;
        let retried = sluice.counter("sluice_retried_total").await;
        (received == 200.0 && retried >= 200.0).then_some(())
    })
    .await;
    // ...and has acked none of them: they are all unacked, held by sluice, none ready.
    assert_eq!(sluice.counter("sluice_acked_total").await, 100.0);
    assert_eq!(broker.queue_counts(&names.queue).await, (0, 1));

    let frames_before = sluice.counter("sluice_ack_frames_total").await;
    server.resume().await;
    eventually("all 200 points after the outage", WAIT, || async {
        (influx.count("load.avg").await == 200).then_some(())
    })
    .await;
    eventually("all 200 acks", WAIT, || async {
        (sluice.counter("sluice_acked_total").await == 200.0).then_some(())
    })
    .await;
    // The 100 held deliveries were acked cumulatively, a frame per batch, not one per message.
    let frames = sluice.counter("sluice_ack_frames_total").await - frames_before;
    assert!(
        (1.0..=5.0).contains(&frames),
        "{frames} ack frames for 100 deliveries"
    );
    assert!(sluice.stop(), "clean stop");
    assert_eq!(broker.queue_counts(&names.queue).await, (0, 0));
    broker.remove(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_broker_drops_the_connection_sluice_reconnects_and_loses_nothing() {
    let names = TestNames::new("reconnect");
    let broker = Broker::connect().await;
    let influx = TestDatabase::on(&influx_url(), &names.database).await;
    let mut sluice = Sluice::start(
        &names,
        &influx_url(),
        &[
            ("SLUICE_AMQP__RECONNECT_INITIAL_DELAY", "50ms"),
            ("SLUICE_AMQP__RECONNECT_MAX_DELAY", "500ms"),
        ],
    )
    .await;

    for index in 0..50i64 {
        broker
            .publish(
                &names.exchange,
                "nodecellar",
                &diamond("nodecellar", "h", "disk.io", 1.0, BASE_TIME + index),
            )
            .await;
    }
    eventually("the first 50 points", WAIT, || async {
        (influx.count("disk.io").await == 50).then_some(())
    })
    .await;

    assert_eq!(
        sluice.sever_broker_connection("metrics"),
        1,
        "one consuming connection"
    );
    eventually("a reconnect", WAIT, || async {
        (sluice.counter("sluice_amqp_reconnects_total").await >= 1.0).then_some(())
    })
    .await;
    // Consuming again: the queue has a consumer once more.
    eventually("a consumer on the queue again", WAIT, || async {
        (broker.queue_counts(&names.queue).await.1 == 1).then_some(())
    })
    .await;

    for index in 50..100i64 {
        broker
            .publish(
                &names.exchange,
                "nodecellar",
                &diamond("nodecellar", "h", "disk.io", 2.0, BASE_TIME + index),
            )
            .await;
    }
    eventually("all 100 points", WAIT, || async {
        (influx.count("disk.io").await == 100).then_some(())
    })
    .await;
    assert!(sluice.stop(), "clean stop after a reconnect");
    assert_eq!(broker.queue_counts(&names.queue).await, (0, 0));
    broker.remove(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_consumers_share_the_queue_and_survive_losing_their_connections() {
    let names = TestNames::new("consumers");
    let broker = Broker::connect().await;
    let influx = TestDatabase::on(&influx_url(), &names.database).await;
    let mut sluice = Sluice::start(
        &names,
        &influx_url(),
        &[
            ("SLUICE_METRICS__CONSUMERS", "3"),
            ("SLUICE_AMQP__RECONNECT_INITIAL_DELAY", "50ms"),
            ("SLUICE_AMQP__RECONNECT_MAX_DELAY", "500ms"),
        ],
    )
    .await;
    eventually("three consumers on the queue", WAIT, || async {
        (broker.queue_counts(&names.queue).await.1 == 3).then_some(())
    })
    .await;

    let publish_batch = |from: i64, value: f64| {
        let (broker, names) = (&broker, &names);
        async move {
            for index in from..from + 300 {
                let host = format!("h{}", index % 7);
                let body = diamond("nodecellar", &host, "disk.io", value, BASE_TIME + index);
                broker.publish(&names.exchange, "nodecellar", &body).await;
            }
        }
    };
    publish_batch(0, 1.0).await;
    eventually("the first 300 points", WAIT, || async {
        (influx.count("disk.io").await == 300).then_some(())
    })
    .await;

    assert_eq!(
        sluice.sever_broker_connection("metrics"),
        3,
        "one connection per consumer"
    );
    eventually("three consumers again", WAIT, || async {
        (broker.queue_counts(&names.queue).await.1 == 3).then_some(())
    })
    .await;
    publish_batch(300, 2.0).await;
    eventually("all 600 points", WAIT, || async {
        (influx.count("disk.io").await == 600).then_some(())
    })
    .await;
    assert!(sluice.stop(), "clean stop");
    assert_eq!(broker.queue_counts(&names.queue).await, (0, 0));
    broker.remove(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_influxdb_is_unreachable_keeps_its_deadline_and_returns_every_message() {
    let names = TestNames::new("deadline");
    let broker = Broker::connect().await;
    // Nothing listens on this port: InfluxDB is down for the whole test.
    let unreachable = format!("http://127.0.0.1:{}", common::free_port());
    let mut sluice = Sluice::start(
        &names,
        &unreachable,
        &[
            ("SLUICE_SHUTDOWN__DEADLINE", "2s"),
            ("SLUICE_INFLUX__RETRY_MAX_DELAY", "200ms"),
        ],
    )
    .await;
    for index in 0..30i64 {
        broker
            .publish(
                &names.exchange,
                "nodecellar",
                &diamond("nodecellar", "h", "cpu.idle", 1.0, BASE_TIME + index),
            )
            .await;
    }
    eventually("sluice to hold all 30 and retry them", WAIT, || async {
        let received = sluice.counter("sluice_received_total").await;
        let retried = sluice.counter("sluice_retried_total").await;
        (received == 30.0 && retried >= 30.0).then_some(())
    })
    .await;
    assert_eq!(sluice.counter("sluice_acked_total").await, 0.0);

    let stopping = std::time::Instant::now();
    let clean = sluice.stop();
    assert!(!clean, "a stop that could not flush reports failure");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "the 2 s deadline was kept"
    );
    // Nothing was acked, so the broker has every message back, ready for the next consumer.
    eventually("all 30 messages back in the queue", WAIT, || async {
        (broker.queue_counts(&names.queue).await == (30, 0)).then_some(())
    })
    .await;
    broker.remove(&names).await;
}
