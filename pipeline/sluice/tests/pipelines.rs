//! Configured pipelines (the standalone tier) on the real RabbitMQ and InfluxDB: one source
//! fanned out through transforms to two sinks, every delivery acked only once both sinks wrote
//! what it became.

mod common;

use std::time::Duration;

use common::{Broker, Sluice, TestNames, diamond, eventually, influx_url, unique};
use sluice_testing::influx::TestDatabase;

const WAIT: Duration = Duration::from_secs(60);
const BASE_TIME: i64 = 1_700_000_000;

/// Writes `contents` to a configuration file that lives as long as the answer.
fn config_file(contents: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, contents).expect("write the configuration");
    let path = path.to_str().expect("a UTF-8 path").to_owned();
    (dir, path)
}

#[tokio::test]
async fn one_source_fans_out_through_transforms_to_two_sinks() {
    let names = TestNames::new("fanout");
    let everything = TestDatabase::named("fanout-all").await;
    let cpu_only = TestDatabase::named("fanout-cpu").await;
    let broker = Broker::connect().await;
    let queue = unique("fanout.agents");
    let (_dir, file) = config_file(&format!(
        r#"
        [sources.agents]
        type = "amqp"
        exchange = "{exchange}"
        queue = "{queue}"
        decoder = {{ format = "diamond" }}

        [transforms.tagged]
        type = "tags"
        inputs = ["agents"]
        add = {{ tier = "edge" }}
        drop = ["node_name"]

        [transforms.only_cpu]
        type = "filter"
        inputs = ["tagged"]
        measurement = "^cpu"

        [sinks.all]
        type = "influxdb"
        inputs = ["tagged"]
        url = "{influx}"
        database = "{all}"
        batch_linger = "50ms"

        [sinks.cpu]
        type = "influxdb"
        inputs = ["only_cpu"]
        url = "{influx}"
        database = "{cpu}"
        batch_linger = "50ms"
        "#,
        exchange = names.exchange,
        influx = influx_url(),
        all = everything.name,
        cpu = cpu_only.name,
    ));
    let mut sluice =
        Sluice::start_with_args(&names, &influx_url(), &[], &["--config", &file]).await;

    let per_metric = 40;
    for second in 0..per_metric {
        for path in ["cpu.total.user", "memory.used"] {
            let body = diamond("shop", "web_1", path, 1.5, BASE_TIME + second);
            broker.publish(&names.exchange, "shop", &body).await;
        }
    }

    eventually("both metrics in the first sink", WAIT, || async {
        (everything.count("cpu.total.user").await == per_metric as u64
            && everything.count("memory.used").await == per_metric as u64)
            .then_some(())
    })
    .await;
    eventually("only cpu in the second sink", WAIT, || async {
        (cpu_only.count("cpu.total.user").await == per_metric as u64).then_some(())
    })
    .await;
    assert_eq!(cpu_only.count("memory.used").await, 0, "filtered out");

    let tags = everything
        .query("SHOW TAG KEYS FROM \"cpu.total.user\"")
        .await
        .to_string();
    assert!(tags.contains("\"tier\""), "the added tag: {tags}");
    assert!(!tags.contains("\"node_name\""), "the dropped tag: {tags}");
    let values = everything
        .query("SHOW TAG VALUES FROM \"memory.used\" WITH KEY = \"tier\"")
        .await
        .to_string();
    assert!(values.contains("\"edge\""), "{values}");

    eventually("every delivery acked", WAIT, || async {
        (sluice.counter("sluice_acked_total").await == (2 * per_metric) as f64).then_some(())
    })
    .await;
    let written = |sink: &'static str| {
        let sluice = &sluice;
        async move {
            sluice
                .counter_with(
                    "sluice_written_total",
                    &format!("sink=\"influx\",sink_name=\"{sink}\""),
                )
                .await
        }
    };
    assert_eq!(
        (written("all").await, written("cpu").await),
        ((2 * per_metric) as f64, per_metric as f64),
        "each point written once per sink it was routed to, counted by the sink's name"
    );
    assert!(sluice.stop(), "a clean stop");
    // Stopped, sluice holds nothing: what it had not acked would be back in the queue.
    assert_eq!(
        broker.queue_counts(&queue).await,
        (0, 0),
        "(ready, consumers)"
    );
    broker.delete_queue(&queue).await;
    broker.remove(&names).await;
}

/// One tier feeding another through the `amqp` sink: an edge source's points are published as
/// line protocol with confirms, read back by a second source with the line-protocol decoder,
/// and written to InfluxDB. The sink's broker connection is cut halfway: its batches are sent
/// again, so every point arrives (a duplicate overwrites the same series and time).
#[tokio::test]
async fn an_amqp_sink_feeds_another_tier_and_survives_a_lost_connection() {
    let names = TestNames::new("tiers");
    let database = TestDatabase::named("tiers").await;
    let broker = Broker::connect().await;
    let edge_queue = unique("tiers.edge");
    let between_exchange = unique("tiers.between");
    let between_queue = unique("tiers.between");
    let (_dir, file) = config_file(&format!(
        r#"
        [sources.edge]
        type = "amqp"
        exchange = "{exchange}"
        queue = "{edge_queue}"
        decoder = {{ format = "diamond" }}

        [transforms.tagged]
        type = "tags"
        inputs = ["edge"]
        add = {{ tier = "edge" }}

        [sinks.next_tier]
        type = "amqp"
        inputs = ["tagged"]
        exchange = "{between_exchange}"
        queue = "{between_queue}"
        max_length = 100000
        batch_max_points = 10
        batch_linger = "20ms"
        retry_initial_delay = "50ms"
        retry_max_delay = "500ms"

        [sources.core]
        type = "amqp"
        exchange = "{between_exchange}"
        queue = "{between_queue}"
        max_length = 100000
        decoder = {{ format = "line_protocol" }}

        [sinks.influx]
        type = "influxdb"
        inputs = ["core"]
        url = "{influx}"
        database = "{database}"
        batch_linger = "50ms"
        "#,
        exchange = names.exchange,
        influx = influx_url(),
        database = database.name,
    ));
    let mut sluice =
        Sluice::start_with_args(&names, &influx_url(), &[], &["--config", &file]).await;

    let per_half = 60;
    let publish_half = |from: i64| {
        let broker = &broker;
        let exchange = names.exchange.clone();
        async move {
            for second in from..from + per_half {
                let body = diamond("shop", "web_1", "cpu.total.user", 1.5, BASE_TIME + second);
                broker.publish(&exchange, "shop", &body).await;
            }
        }
    };
    publish_half(0).await;
    eventually("the first half through the sink", WAIT, || async {
        (sluice
            .counter_with(
                "sluice_written_total",
                "sink=\"amqp\",sink_name=\"next_tier\"",
            )
            .await
            >= per_half as f64)
            .then_some(())
    })
    .await;
    assert_eq!(
        sluice.sever_broker_connection("sink-next_tier"),
        1,
        "the sink's own connection"
    );
    publish_half(per_half).await;

    eventually(
        "every point in InfluxDB, through both tiers",
        WAIT,
        || async { (database.count("cpu.total.user").await == 2 * per_half as u64).then_some(()) },
    )
    .await;
    let values = database
        .query("SHOW TAG VALUES FROM \"cpu.total.user\" WITH KEY = \"tier\"")
        .await
        .to_string();
    assert!(values.contains("\"edge\""), "the edge tier's tag: {values}");
    let rows = database
        .rows("SELECT value FROM \"cpu.total.user\" WHERE value <> 1.5")
        .await
        .expect("a query");
    assert!(rows.is_empty(), "every value as sent: {rows:?}");
    eventually("both queues drained and acked", WAIT, || async {
        (broker.queue_counts(&edge_queue).await.0 == 0
            && broker.queue_counts(&between_queue).await.0 == 0)
            .then_some(())
    })
    .await;
    assert!(sluice.stop(), "a clean stop");
    for queue in [&edge_queue, &between_queue] {
        assert_eq!(
            broker.queue_counts(queue).await,
            (0, 0),
            "{queue}: nothing left unacked (ready, consumers)"
        );
        broker.delete_queue(queue).await;
    }
    broker.delete_exchange(&between_exchange).await;
    broker.remove(&names).await;
}
