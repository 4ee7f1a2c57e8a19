//! Reloading the configuration of a running `sluice`, on the real RabbitMQ and InfluxDB: under
//! live load the changed path is swapped and every confirmed message lands exactly once; the
//! unchanged path goes on untouched; an invalid file changes nothing.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Broker, Sluice, TestNames, diamond, eventually, influx_url, unique};
use sluice_testing::elasticsearch::FakeElasticsearch;
use sluice_testing::influx::TestDatabase;

const WAIT: Duration = Duration::from_secs(60);
const BASE_TIME: i64 = 1_700_000_000;

/// Replaces `path`'s contents in one step, as editors and Kubernetes do, so that a watcher
/// never reads half a file.
fn write_atomically(path: &Path, contents: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, contents).expect("write the new configuration");
    std::fs::rename(&next, path).expect("move it into place");
}

/// Publishes `disk.io` metrics with confirms, one per second of agent time, until `stop`;
/// answers how many the broker confirmed.
fn publish_until(
    broker: Arc<Broker>,
    exchange: String,
    stop: Arc<AtomicBool>,
    confirmed: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let index = confirmed.load(Ordering::Relaxed) as i64;
            let body = diamond("nodecellar", "h", "disk.io", 1.0, BASE_TIME + index);
            broker.publish(&exchange, "nodecellar", &body).await;
            confirmed.fetch_add(1, Ordering::Relaxed);
            // Paced, so that the load spans the reload rather than finishing before it.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        confirmed.load(Ordering::Relaxed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_a_reload_swaps_only_the_changed_path_and_loses_nothing() {
    let names = TestNames::new("reload");
    let broker = Arc::new(Broker::connect().await);
    let influx = TestDatabase::on(&influx_url(), &names.database).await;
    let es = FakeElasticsearch::start().await;
    let es_url = es.url().to_string();
    let events_exchange = unique("reload.events");
    let events_queue = unique("reload.events");
    broker.declare_fanout_exchange(&events_exchange).await;
    let config_dir = tempfile::tempdir().expect("a temporary directory");
    let config = config_dir.path().join("sluice.toml");
    write_atomically(&config, "[metrics]\nseparator = \".\"\n");
    let exchanges = format!(r#"["{events_exchange}"]"#);
    let queues = format!(r#"["{events_queue}"]"#);
    let mut sluice = Sluice::start_with_args(
        &names,
        &influx_url(),
        &[
            ("SLUICE_EVENTS__ENABLED", "true"),
            ("SLUICE_EVENTS__EXCHANGES", &exchanges),
            ("SLUICE_EVENTS__QUEUES", &queues),
            ("SLUICE_ELASTICSEARCH__URL", &es_url),
        ],
        &["--config", &config.display().to_string()],
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let confirmed = Arc::new(AtomicU64::new(0));
    let publisher = publish_until(
        Arc::clone(&broker),
        names.exchange.clone(),
        Arc::clone(&stop),
        Arc::clone(&confirmed),
    );
    eventually("points under the first naming", WAIT, || async {
        (influx.count("disk.io").await > 0).then_some(())
    })
    .await;
    broker
        .publish(&events_exchange, "", &event_body("before"))
        .await;

    // The new naming joins the measurement's parts with `_`: `disk.io` becomes `disk_io`.
    write_atomically(&config, "[metrics]\nseparator = \"_\"\n");
    sluice.signal("HUP");
    reloads(&sluice, "applied", 1.0, "the reload applied").await;
    eventually("points under the new naming", WAIT, || async {
        (influx.count("disk_io").await > 0).then_some(())
    })
    .await;
    // The status page follows the restarted path: it is drawn, and consuming again.
    eventually(
        "the status page to show the new metrics path consuming",
        WAIT,
        || async {
            let (_, body) = sluice.get("/status").await;
            let status: serde_json::Value = serde_json::from_str(&body).ok()?;
            let paths = status["paths"].as_array()?;
            paths
                .iter()
                .any(|path| path["name"] == "metrics" && path["consuming"] == true)
                .then_some(())
        },
    )
    .await;
    broker
        .publish(&events_exchange, "", &event_body("after"))
        .await;
    stop.store(true, Ordering::Relaxed);
    let published = publisher.await.expect("the publisher");

    eventually("every confirmed point stored once", WAIT, || async {
        let stored = influx.count("disk.io").await + influx.count("disk_io").await;
        (stored >= published).then_some(())
    })
    .await;
    let (old_naming, new_naming) = (influx.count("disk.io").await, influx.count("disk_io").await);
    assert_eq!(
        old_naming + new_naming,
        published,
        "each of the {published} points under exactly one naming: none lost, none written again \
         after the swap ({old_naming} + {new_naming})"
    );
    assert!(old_naming > 0 && new_naming > 0);
    eventually("both events stored", WAIT, || async {
        (es.documents("*").len() == 2).then_some(())
    })
    .await;

    assert_eq!(
        sluice
            .counter_with("sluice_path_starts_total", r#"path="metrics""#)
            .await,
        2.0,
        "the metrics path, whose settings changed, restarted once"
    );
    assert_eq!(
        sluice
            .counter_with("sluice_path_starts_total", r#"path="events""#)
            .await,
        1.0,
        "the events path, whose settings did not change, was left running"
    );
    assert!(sluice.stop(), "clean stop");
    assert_eq!(
        broker.queue_counts(&names.queue).await,
        (0, 0),
        "nothing left or unacked"
    );
    assert_eq!(broker.queue_counts(&events_queue).await, (0, 0));
    broker.remove(&names).await;
    broker.delete_queue(&events_queue).await;
    broker.delete_exchange(&events_exchange).await;
}

/// Waits until `sluice_config_reloads_total{outcome}` reaches `count`.
async fn reloads(sluice: &Sluice, outcome: &str, count: f64, what: &str) {
    let labels = format!("outcome=\"{outcome}\"");
    eventually(what, WAIT, || async {
        (sluice
            .counter_with("sluice_config_reloads_total", &labels)
            .await
            == count)
            .then_some(())
    })
    .await;
}

fn event_body(id: &str) -> Vec<u8> {
    serde_json::json!({
        "type": "cloudify_event",
        "event_type": "task_started",
        "timestamp": "2026-12-03 12:00:00.000+0000",
        "context": {"deployment_id": "nodecellar", "execution_id": id},
        "message": {"text": format!("reload test {id}"), "arguments": null},
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_file_that_turns_invalid_changes_nothing_and_a_valid_one_applies() {
    let names = TestNames::new("reload-bad");
    let broker = Broker::connect().await;
    let influx = TestDatabase::on(&influx_url(), &names.database).await;
    let config_dir = tempfile::tempdir().expect("a temporary directory");
    let config = config_dir.path().join("sluice.toml");
    write_atomically(&config, "[metrics]\nseparator = \".\"\n");
    let mut sluice = Sluice::start_with_args(
        &names,
        &influx_url(),
        &[],
        &["--config", &config.display().to_string(), "--watch-config"],
    )
    .await;

    // Two kinds of bad file: a value no check passes, and a file that is not TOML.
    write_atomically(
        &config,
        "[metrics]\nseparator = \"_\"\n[influx]\nbatch_max_points = 0\n",
    );
    reloads(&sluice, "refused", 1.0, "the invalid values refused").await;
    write_atomically(&config, "[metrics\nseparator = ");
    reloads(&sluice, "refused", 2.0, "the broken file refused").await;
    // Still the first configuration: the old naming, nothing restarted.
    for index in 0..100i64 {
        let body = diamond("nodecellar", "h", "disk.io", 1.0, BASE_TIME + index);
        broker.publish(&names.exchange, "nodecellar", &body).await;
    }
    eventually("all 100 points under the old naming", WAIT, || async {
        (influx.count("disk.io").await == 100).then_some(())
    })
    .await;
    assert!(sluice.is_running());
    assert_eq!(
        sluice
            .counter_with("sluice_path_starts_total", r#"path="metrics""#)
            .await,
        1.0,
        "a refused reload restarts nothing"
    );

    write_atomically(&config, "[metrics]\nseparator = \"_\"\n");
    reloads(&sluice, "applied", 1.0, "the valid file applied").await;
    for index in 100..150i64 {
        let body = diamond("nodecellar", "h", "disk.io", 1.0, BASE_TIME + index);
        broker.publish(&names.exchange, "nodecellar", &body).await;
    }
    eventually("the next 50 under the new naming", WAIT, || async {
        (influx.count("disk_io").await == 50).then_some(())
    })
    .await;
    assert_eq!(influx.count("disk.io").await, 100);
    assert!(sluice.stop(), "clean stop");
    assert_eq!(broker.queue_counts(&names.queue).await, (0, 0));
    broker.remove(&names).await;
}
