//! `sluice dead-letters list | show | replay` on the real broker: reading leaves every letter
//! in place and in order, filters choose, a replay removes a letter only once its copy is
//! confirmed, and a field type conflict that was dead-lettered lands in InfluxDB once fixed and
//! replayed.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{Broker, Sluice, TestNames, diamond, eventually, influx_url, unique};
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, QueueBindOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::Value;
use sluice_amqp::topology::{
    ExchangeSpec, ExchangeType, QueueSpec, declare_exchange, declare_queue,
};
use sluice_testing::influx::TestDatabase;

const WAIT: Duration = Duration::from_secs(60);
const BASE_TIME: i64 = 1_700_000_000;

/// Runs `sluice dead-letters ARGS` against the test's dead-letter queue.
fn dead_letters(names: &TestNames, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SLUICE_") {
            command.env_remove(key);
        }
    }
    command
        .arg("dead-letters")
        .args(args)
        .env("SLUICE_AMQP__URL", common::amqp_url())
        .env("SLUICE_METRICS__EXCHANGE", &names.exchange)
        .env("SLUICE_DEAD_LETTER__EXCHANGE", &names.dead_letter_exchange)
        .env("SLUICE_DEAD_LETTER__QUEUE", &names.dead_letter_queue)
        .output()
        .expect("run sluice dead-letters")
}

/// The JSON lines on stdout, failing with stderr unless the command exited as `expected`.
fn json_lines(output: &Output, expected_success: bool) -> Vec<Value> {
    assert_eq!(
        output.status.success(),
        expected_success,
        "exit {:?}; stderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

fn field<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines.iter().map(|line| &line[name]).collect()
}

/// Declares the dead-letter exchange and queue exactly as `sluice run` does, so a test can
/// count the queue before sluice's dead-letter publisher has connected.
async fn declare_dead_letter_queue(broker: &Broker, names: &TestNames) {
    declare_exchange(
        &broker.channel,
        &ExchangeSpec {
            name: names.dead_letter_exchange.clone(),
            kind: ExchangeType::Topic,
            durable: true,
            auto_delete: false,
        },
    )
    .await
    .expect("declare the dead-letter exchange");
    declare_queue(
        &broker.channel,
        &QueueSpec::durable(names.dead_letter_queue.clone()),
    )
    .await
    .expect("declare the dead-letter queue");
    broker
        .channel
        .queue_bind(
            names.dead_letter_queue.as_str().into(),
            names.dead_letter_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind the dead-letter queue");
}

/// Publishes a letter with the headers sluice's dead-letter publisher gives one.
async fn publish_letter(
    broker: &Broker,
    names: &TestNames,
    (stage, reason): (&str, &str),
    original: (&str, &str),
    body: &[u8],
) {
    let text = |value: &str| AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()));
    let mut headers = FieldTable::default();
    headers.insert("x-sluice-stage".into(), text(stage));
    headers.insert("x-sluice-reason".into(), text(reason));
    headers.insert(
        "x-sluice-error".into(),
        text(&format!("{reason} in a test")),
    );
    headers.insert("x-sluice-attempts".into(), AMQPValue::LongLongInt(1));
    headers.insert(
        "x-sluice-rejected-at-ms".into(),
        AMQPValue::LongLongInt(BASE_TIME * 1000),
    );
    headers.insert("x-original-exchange".into(), text(original.0));
    headers.insert("x-original-routing-key".into(), text(original.1));
    let confirm = broker
        .channel
        .basic_publish(
            names.dead_letter_exchange.as_str().into(),
            format!("{stage}.{reason}").as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers),
        )
        .await
        .expect("publish a letter");
    let confirmation = confirm.await.expect("confirm");
    assert!(
        matches!(confirmation, lapin::Confirmation::Ack(None)),
        "{confirmation:?}"
    );
}

async fn ready(broker: &Broker, queue: &str) -> u32 {
    broker.queue_counts(queue).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_show_leave_every_letter_in_place_and_in_order_and_filters_choose() {
    let names = TestNames::new("dlq-read");
    let broker = Broker::connect().await;
    declare_dead_letter_queue(&broker, &names).await;
    let metric = diamond("nodecellar", "host_a", "disk.free", 1.5, BASE_TIME);
    let letters: Vec<((&str, &str), Vec<u8>)> = vec![
        (("influx", "field_type_conflict"), metric.clone()),
        (("normalise", "invalid_json"), b"this is not json".to_vec()),
        (
            ("influx", "field_type_conflict"),
            diamond("nodecellar", "host_b", "disk.free", 2.5, BASE_TIME),
        ),
        (
            ("normalise", "invalid_utf8"),
            b"{\"name\":\"\xff\xfe\"}".to_vec(),
        ),
        (("elasticsearch", "mapping_conflict"), b"{}".to_vec()),
    ];
    for (stage_reason, body) in &letters {
        publish_letter(
            &broker,
            &names,
            *stage_reason,
            ("monitoring", "nodecellar"),
            body,
        )
        .await;
    }
    assert_eq!(ready(&broker, &names.dead_letter_queue).await, 5);

    let listed = json_lines(&dead_letters(&names, &["list", "--json"]), true);
    assert_eq!(field(&listed, "position"), [1, 2, 3, 4, 5]);
    let reasons: Vec<&str> = listed
        .iter()
        .map(|line| line["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(
        reasons,
        [
            "field_type_conflict",
            "invalid_json",
            "field_type_conflict",
            "invalid_utf8",
            "mapping_conflict"
        ]
    );
    assert_eq!(listed[0]["stage"], "influx");
    assert_eq!(listed[0]["attempts"], 1);
    assert_eq!(listed[0]["rejected_at"], "2023-11-14T22:13:20Z");
    assert_eq!(listed[0]["original_exchange"], "monitoring");
    assert_eq!(listed[0]["original_routing_key"], "nodecellar");
    assert_eq!(listed[1]["error"], "invalid_json in a test");
    let ids: Vec<String> = listed
        .iter()
        .map(|line| line["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(
        ids.iter().collect::<std::collections::BTreeSet<_>>().len(),
        5
    );
    assert_eq!(
        ready(&broker, &names.dead_letter_queue).await,
        5,
        "list took letters"
    );

    // Read again: the same letters, in the same order, with the same ids.
    let again = json_lines(&dead_letters(&names, &["list", "--json"]), true);
    assert_eq!(field(&again, "id"), field(&listed, "id"));

    let influx_only = json_lines(
        &dead_letters(&names, &["list", "--json", "--stage", "influx"]),
        true,
    );
    assert_eq!(field(&influx_only, "position"), [1, 3]);
    let two_reasons = json_lines(
        &dead_letters(
            &names,
            &[
                "list",
                "--json",
                "--reason",
                "invalid_json",
                "--reason",
                "mapping_conflict",
            ],
        ),
        true,
    );
    assert_eq!(field(&two_reasons, "position"), [2, 5]);
    let both = json_lines(
        &dead_letters(
            &names,
            &[
                "list",
                "--json",
                "--stage",
                "normalise",
                "--reason",
                "field_type_conflict",
            ],
        ),
        true,
    );
    assert!(
        both.is_empty(),
        "stage and reason must both match: {both:?}"
    );

    // The text form: one line per letter, and a bounded read says what it did not read.
    let limited = dead_letters(&names, &["list", "--limit", "2"]);
    let text = String::from_utf8_lossy(&limited.stdout);
    assert!(limited.status.success());
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines().next().is_some_and(
            |line| line.contains(&ids[0]) && line.contains("influx.field_type_conflict")
        ),
        "{text}"
    );
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert!(stderr.contains("3 more"), "{stderr}");

    // show: the exact body (text, or hex when not UTF-8) and every header.
    let shown = json_lines(
        &dead_letters(&names, &["show", "--id", &ids[0], "--id", &ids[3]]),
        true,
    );
    assert_eq!(field(&shown, "position"), [1, 4]);
    assert_eq!(shown[0]["body_encoding"], "utf8");
    assert_eq!(
        shown[0]["body"].as_str().expect("body").as_bytes(),
        metric.as_slice()
    );
    assert_eq!(shown[0]["headers"]["x-sluice-stage"], "influx");
    assert_eq!(shown[0]["headers"]["x-sluice-attempts"], 1);
    assert_eq!(shown[0]["routing_key"], "influx.field_type_conflict");
    assert_eq!(shown[1]["body_encoding"], "hex");
    assert_eq!(shown[1]["body"], hex(&letters[3].1));

    // After all of that, the queue holds the five letters in the order they were published.
    assert_eq!(ready(&broker, &names.dead_letter_queue).await, 5);
    let taken = broker.take(&names.dead_letter_queue, 5, WAIT).await;
    let bodies: Vec<&[u8]> = taken.iter().map(|letter| letter.body.as_slice()).collect();
    let published: Vec<&[u8]> = letters.iter().map(|(_, body)| body.as_slice()).collect();
    assert_eq!(bodies, published);
    broker.remove(&names).await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_type_conflict_fixed_and_replayed_lands_and_leaves_the_queue() {
    let names = TestNames::new("dlq-round-trip");
    let broker = Broker::connect().await;
    let influx = TestDatabase::on(&influx_url(), &names.database).await;
    influx
        .try_query(&format!("CREATE DATABASE \"{}\"", names.database))
        .await
        .expect("create");
    // `disk.free` already holds a string `value`: the float one the agent sends conflicts.
    influx
        .write_lines(&format!("disk.free value=\"full\" {BASE_TIME}\n"))
        .await;
    declare_dead_letter_queue(&broker, &names).await;
    let sluice = Sluice::start(&names, &influx_url(), &[]).await;
    broker
        .publish(
            &names.exchange,
            "nodecellar",
            &diamond("nodecellar", "host_a", "disk.free", 12.5, BASE_TIME + 1),
        )
        .await;
    eventually("the conflict to be dead-lettered", WAIT, || async {
        (ready(&broker, &names.dead_letter_queue).await == 1).then_some(())
    })
    .await;

    // The user looks, sees the conflict, and fixes the name so the point gets its own series.
    let listed = json_lines(
        &dead_letters(
            &names,
            &["list", "--json", "--reason", "field_type_conflict"],
        ),
        true,
    );
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["stage"], "influx");
    assert_eq!(listed[0]["original_exchange"], names.exchange.as_str());
    let id = listed[0]["id"].as_str().expect("id");
    let fix = [
        "--id",
        id,
        "--set",
        "/service=\"nodecellar.nodejs_host.host_a.disk.free_bytes\"",
    ];
    // A dry run first: the point the fixed letter becomes, and nothing taken.
    let dry = json_lines(
        &dead_letters(&names, &[&["replay", "--dry-run"], &fix[..]].concat()),
        true,
    );
    assert_eq!(dry.len(), 1, "{dry:?}");
    assert_eq!(dry[0]["outcome"], "would_replay");
    assert_eq!(dry[0]["normalised"]["measurement"], "disk.free_bytes");
    assert_eq!(dry[0]["normalised"]["fields"]["value"], 12.5);
    assert_eq!(ready(&broker, &names.dead_letter_queue).await, 1);

    let replayed = json_lines(
        &dead_letters(&names, &[&["replay"], &fix[..]].concat()),
        true,
    );
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    assert_eq!(replayed[0]["outcome"], "replayed");
    assert_eq!(replayed[0]["exchange"], names.exchange.as_str());
    assert_eq!(replayed[0]["routing_key"], "nodecellar");
    assert_eq!(
        ready(&broker, &names.dead_letter_queue).await,
        0,
        "the replayed letter left the queue"
    );

    eventually("the fixed point to land", WAIT, || async {
        (influx.count("disk.free_bytes").await == 1).then_some(())
    })
    .await;
    let rows = influx
        .rows("SELECT \"value\" FROM \"disk.free_bytes\"")
        .await
        .expect("query");
    assert_eq!(rows[0]["value"], 12.5);
    assert_eq!(rows[0]["time"], BASE_TIME * 1_000_000_000 + 1_000_000_000);
    assert_eq!(ready(&broker, &names.dead_letter_queue).await, 0);
    drop(sluice);
    broker.remove(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_the_broker_does_not_take_stays_and_the_others_are_untouched() {
    let names = TestNames::new("dlq-refused");
    let broker = Broker::connect().await;
    declare_dead_letter_queue(&broker, &names).await;
    let first = diamond("d", "host_a", "cpu.total.user", 1.0, BASE_TIME);
    let second = diamond("d", "host_b", "cpu.total.user", 2.0, BASE_TIME);
    for body in [&first, &second] {
        publish_letter(
            &broker,
            &names,
            ("influx", "field_type_conflict"),
            ("monitoring", "d"),
            body,
        )
        .await;
    }
    let listed = json_lines(&dead_letters(&names, &["list", "--json"]), true);
    let ids: Vec<&str> = listed
        .iter()
        .map(|line| line["id"].as_str().expect("id"))
        .collect();

    // An exchange that does not exist: the broker refuses, the letter stays, exit 1.
    let missing = unique("dlq-no-such-exchange");
    let refused = json_lines(
        &dead_letters(&names, &["replay", "--id", ids[0], "--exchange", &missing]),
        false,
    );
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["outcome"], "failed");
    let error = refused[0]["error"].as_str().expect("error");
    assert!(
        error.contains("stays in the queue") && error.contains("NOT_FOUND"),
        "{error}"
    );

    // An exchange that exists but routes nowhere: unroutable, the letter stays, exit 1.
    let unbound = unique("dlq-unbound");
    broker.declare_fanout_exchange(&unbound).await;
    let unroutable = json_lines(
        &dead_letters(&names, &["replay", "--all", "--exchange", &unbound]),
        false,
    );
    assert_eq!(field(&unroutable, "outcome"), ["failed", "failed"]);
    assert!(
        unroutable[0]["error"]
            .as_str()
            .is_some_and(|error| error.contains("unroutable")),
        "{unroutable:?}"
    );
    assert_eq!(ready(&broker, &names.dead_letter_queue).await, 2);

    // A dry run with an edit shows the copy and takes nothing.
    let dry = json_lines(
        &dead_letters(
            &names,
            &["replay", "--all", "--dry-run", "--set", "/metric=7"],
        ),
        true,
    );
    assert_eq!(field(&dry, "outcome"), ["would_replay", "would_replay"]);
    assert_eq!(dry[0]["exchange"], "monitoring");
    let dry_body: Value =
        serde_json::from_str(dry[0]["body"].as_str().expect("body")).expect("JSON body");
    assert_eq!(dry_body["metric"], 7);
    assert_eq!(dry_body["node_id"], "host_a");
    assert!(
        dry[0].get("normalised").is_none(),
        "only copies to the metrics exchange are normalised: {dry:?}"
    );
    assert_eq!(ready(&broker, &names.dead_letter_queue).await, 2);

    // Only the chosen letter goes; the copy is fresh: no dead-letter headers, where it came from.
    let target = unique("dlq-target");
    broker.declare_fanout_exchange(&target).await;
    broker.bind_queue(&target, &target, "").await;
    let moved = json_lines(
        &dead_letters(&names, &["replay", "--id", ids[1], "--exchange", &target]),
        true,
    );
    assert_eq!(field(&moved, "outcome"), ["replayed"]);
    let copies = broker.take(&target, 1, WAIT).await;
    assert_eq!(copies[0].body, second);
    assert_eq!(copies[0].routing_key, "d");
    assert_eq!(
        copies[0].headers.keys().collect::<Vec<_>>(),
        ["x-sluice-replayed-from"]
    );
    assert_eq!(
        copies[0].headers["x-sluice-replayed-from"],
        "influx.field_type_conflict"
    );
    let left = json_lines(&dead_letters(&names, &["show"]), true);
    assert_eq!(field(&left, "id"), [ids[0]]);
    assert_eq!(left[0]["headers"]["x-sluice-stage"], "influx");
    assert_eq!(
        left[0]["body"].as_str().expect("body").as_bytes(),
        first.as_slice()
    );

    broker.delete_queue(&target).await;
    broker.delete_exchange(&target).await;
    broker.delete_exchange(&unbound).await;
    broker.remove(&names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_failed_and_never_show_the_password() {
    let names = TestNames::new("dlq-errors");
    let broker = Broker::connect().await;
    // The real broker with a wrong password, and a port nothing listens on.
    let real = url::Url::parse(&common::amqp_url()).expect("AMQP_URL");
    let mut wrong_password = real.clone();
    wrong_password
        .set_password(Some("not-the-password-7c1f"))
        .expect("a URL with a host");
    let mut nowhere = wrong_password.clone();
    nowhere
        .set_port(Some(common::free_port()))
        .expect("a URL with a host");
    for url in [&wrong_password, &nowhere] {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["dead-letters", "list"])
            .env("SLUICE_AMQP__URL", url.as_str())
            .env("SLUICE_DEAD_LETTER__QUEUE", &names.dead_letter_queue)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{url}: {stderr}");
        assert!(stderr.contains("cannot connect to"), "{stderr}");
        assert!(stderr.contains(":***@"), "{stderr}");
        assert!(!stderr.contains("not-the-password-7c1f"), "{stderr}");
    }

    // A queue that is not there says how to name the right one.
    let output = dead_letters(&names, &["list"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&names.dead_letter_queue) && stderr.contains("--queue"),
        "{stderr}"
    );
    // Replaying nothing in particular is refused before anything is read.
    declare_dead_letter_queue(&broker, &names).await;
    let output = dead_letters(&names, &["replay"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--all"), "{stderr}");
    // A bare word is not JSON: the usage error shows the quoting.
    let output = dead_letters(&names, &["replay", "--all", "--set", "/name=cpu"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(r#"--set '/name="cpu"'"#), "{stderr}");
    broker.remove(&names).await;
}
