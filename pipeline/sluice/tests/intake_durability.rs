//! "A 204 from an HTTP input means durable", end to end on the real `sluice`, RabbitMQ and
//! InfluxDB: what the `influxdb_write` input answered 204 for survives a `kill -9` of the only
//! process that ever held it, and what it refused (a full queue) is answered so and never
//! counted as written.
//!
//! The points carry no timestamp, so the input stamps each with the time it was received. That
//! makes the duplicate check meaningful: were a point stamped again on its way out (at a
//! redelivery, say), InfluxDB would hold it twice, in the same series at two times.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Broker, Sluice, TestNames, eventually, free_port, influx_url, unique};
use sluice_testing::influx::TestDatabase;
use sluice_testing::recording_server::{RecordingServer, Reply};

const WAIT: Duration = Duration::from_secs(60);
const MEASUREMENT: &str = "durable";

/// A tier of one `influxdb_write` source, `lp`, and one InfluxDB sink.
struct TierConfig<'a> {
    listen: &'a str,
    /// The test's own, so that what it counts on the exchange is only its own (the routing
    /// key is the queue's name, which keeps tests apart on `sluice.intake` too).
    exchange: &'a str,
    queue: &'a str,
    max_length: Option<u32>,
    /// `both`, `intake` or `consume`.
    run: &'a str,
    sink_url: &'a str,
    database: &'a str,
}

impl TierConfig<'_> {
    /// Writes the file, which lives as long as the directory answered.
    fn write(&self) -> (tempfile::TempDir, String) {
        let max_length = self
            .max_length
            .map(|length| format!("max_length = {length}"))
            .unwrap_or_default();
        let contents = format!(
            r#"
            [sources.lp]
            type = "influxdb_write"
            listen = "{listen}"

            [sources.lp.broker]
            exchange = "{exchange}"
            queue = "{queue}"
            run = "{run}"
            {max_length}

            [sinks.influx]
            type = "influxdb"
            inputs = ["lp"]
            url = "{sink_url}"
            database = "{database}"
            batch_linger = "50ms"
            "#,
            listen = self.listen,
            exchange = self.exchange,
            queue = self.queue,
            run = self.run,
            sink_url = self.sink_url.trim_end_matches('/'),
            database = self.database,
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, contents).expect("write the configuration");
        let path = path.to_str().expect("a UTF-8 path").to_owned();
        (dir, path)
    }
}

/// Starts `sluice run --config FILE` and waits until its write input can publish: before its
/// publisher has a channel it answers 503, which is right but not what these tests are about.
async fn start(names: &TestNames, config: &TierConfig<'_>) -> (Sluice, tempfile::TempDir) {
    let (dir, file) = config.write();
    let sluice = Sluice::start_with_args(names, &influx_url(), &[], &["--config", &file]).await;
    if config.run != "consume" {
        let health = format!("http://{}/health", config.listen);
        let client = reqwest::Client::new();
        eventually("the write input to reach the broker", WAIT, || async {
            let response = client.get(&health).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }
    (sluice, dir)
}

/// The broker objects a test declares, deleted when the test ends, also when it fails.
struct Leftovers {
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Leftovers {
    /// The source's exchange and queue, and the dead-letter ones every sluice declares.
    fn of(names: &TestNames, exchange: &str, queue: &str) -> Leftovers {
        Leftovers {
            queues: vec![
                queue.to_owned(),
                names.queue.clone(),
                names.dead_letter_queue.clone(),
            ],
            exchanges: vec![exchange.to_owned(), names.dead_letter_exchange.clone()],
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut self.queues);
        let exchanges = std::mem::take(&mut self.exchanges);
        // Drop cannot await, and may run while the test's own runtime unwinds: a runtime of
        // its own, on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let broker = Broker::connect().await;
                for queue in &queues {
                    broker.delete_queue(queue).await;
                }
                for exchange in &exchanges {
                    broker.delete_exchange(exchange).await;
                }
            });
        })
        .join();
    }
}

/// One request's lines: a point per seq, each its own series (the `id` tag), so points stamped
/// with the same receive time do not overwrite each other.
fn lines(seqs: impl IntoIterator<Item = u32>) -> String {
    seqs.into_iter()
        .map(|seq| format!("{MEASUREMENT},id={seq} seq={seq}i\n"))
        .collect()
}

/// The input's answer to one write.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

/// POSTs `body` to the input's 1.x `/write`.
async fn post(client: &reqwest::Client, listen: &str, body: String) -> Answer {
    let response = client
        .post(format!("http://{listen}/write?db=intake"))
        .body(body)
        .send()
        .await
        .expect("the write input answers");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    Answer {
        status: response.status().as_u16(),
        retry_after,
        body: response.text().await.unwrap_or_default(),
    }
}

/// Every `seq` InfluxDB holds, one entry per row (so a point written twice shows twice).
async fn rows_seqs(database: &TestDatabase) -> Vec<u32> {
    let statement = format!("SELECT \"seq\" FROM \"{MEASUREMENT}\"");
    // Before the first write the database does not exist: nothing is there yet.
    let rows = database.rows(&statement).await.unwrap_or_default();
    rows.iter()
        .map(|row| {
            let seq = row.get("seq").and_then(serde_json::Value::as_u64);
            let seq = seq.unwrap_or_else(|| panic!("a row without an integer seq: {row:?}"));
            u32::try_from(seq).expect("a seq we sent")
        })
        .collect()
}

/// What InfluxDB holds against what was acknowledged.
struct Tally {
    rows: usize,
    distinct: usize,
    missing: Vec<u32>,
    duplicated: BTreeMap<u32, usize>,
    unexpected: Vec<u32>,
}

fn tally(rows: &[u32], acknowledged: &BTreeSet<u32>) -> Tally {
    let mut counts = BTreeMap::<u32, usize>::new();
    for seq in rows {
        *counts.entry(*seq).or_default() += 1;
    }
    Tally {
        rows: rows.len(),
        distinct: counts.len(),
        missing: acknowledged
            .iter()
            .filter(|seq| !counts.contains_key(seq))
            .copied()
            .collect(),
        duplicated: counts
            .iter()
            .filter(|(_, count)| **count > 1)
            .map(|(seq, count)| (*seq, *count))
            .collect(),
        unexpected: counts
            .keys()
            .filter(|seq| !acknowledged.contains(seq))
            .copied()
            .collect(),
    }
}

/// Waits until `sluice` has acked `messages` deliveries. sluice acks a delivery only once
/// InfluxDB took what it became, so from then on InfluxDB holds all it will ever get of them.
async fn wait_for_acks(sluice: &Sluice, messages: u32) {
    eventually(&format!("{messages} deliveries acked"), WAIT, || async {
        (sluice.counter("sluice_acked_total").await == f64::from(messages)).then_some(())
    })
    .await;
}

/// 500 points in 50 requests, every one answered 204; `kill -9` right after the last answer,
/// while the only sink can write nothing; a second sluice on the same queue writes them all,
/// each once, and leaves the queue empty.
#[tokio::test]
async fn every_point_answered_204_survives_a_kill_9() {
    const REQUESTS: u32 = 50;
    const PER_REQUEST: u32 = 10;
    let names = TestNames::new("durable");
    let broker = Broker::connect().await;
    let exchange = unique("durable.intake");
    let queue = unique("durable.lp");
    let _leftovers = Leftovers::of(&names, &exchange, &queue);
    let database = TestDatabase::named("durable").await;
    // The first run's InfluxDB: it takes the connection and refuses every request, so at the
    // kill nothing has been written and the points exist only in the broker.
    let refusing = RecordingServer::start(|_| Reply::status(503)).await;
    let first_listen = format!("127.0.0.1:{}", free_port());
    let (mut first, _first_config) = start(
        &names,
        &TierConfig {
            listen: &first_listen,
            exchange: &exchange,
            queue: &queue,
            max_length: None,
            run: "both",
            sink_url: refusing.url.as_str(),
            database: &database.name,
        },
    )
    .await;

    let client = reqwest::Client::new();
    let mut acknowledged = BTreeSet::new();
    for request in 0..REQUESTS {
        let seqs = request * PER_REQUEST..(request + 1) * PER_REQUEST;
        let answer = post(&client, &first_listen, lines(seqs.clone())).await;
        assert_eq!(
            answer.status, 204,
            "request {request} (seqs {seqs:?}): {}",
            answer.body
        );
        acknowledged.extend(seqs);
        if request == 0 {
            // From here on the sink holds deliveries it cannot write: the kill also catches
            // points that sluice took from the queue, not only ones still waiting there.
            eventually("the first sink to try a write", WAIT, || async {
                refusing
                    .requests()
                    .iter()
                    .any(|request| request.path == "/write")
                    .then_some(())
            })
            .await;
        }
    }
    first.kill();

    // The broker takes back what the dead consumer held unacked when its channel goes, in the
    // same step that removes the consumer.
    let (ready_after_kill, _) = eventually("the killed sluice's consumer to go", WAIT, || async {
        let counts = broker.queue_counts(&queue).await;
        (counts.1 == 0).then_some(counts)
    })
    .await;

    let second_listen = format!("127.0.0.1:{}", free_port());
    let (mut second, _second_config) = start(
        &names,
        &TierConfig {
            listen: &second_listen,
            exchange: &exchange,
            queue: &queue,
            max_length: None,
            run: "both",
            sink_url: &influx_url(),
            database: &database.name,
        },
    )
    .await;
    wait_for_acks(&second, ready_after_kill).await;
    let found = tally(&rows_seqs(&database).await, &acknowledged);
    assert!(
        found.missing.is_empty(),
        "{} of {} points answered 204 are not in InfluxDB: seqs {:?}",
        found.missing.len(),
        acknowledged.len(),
        found.missing
    );
    // One message per request, none acked by the first run: all of them were in the queue.
    assert_eq!(
        ready_after_kill, REQUESTS,
        "messages in the queue after the kill"
    );
    assert_eq!(
        second.counter("sluice_written_total").await,
        f64::from(REQUESTS * PER_REQUEST),
        "each point written once"
    );
    assert!(second.stop(), "a clean stop");
    // Stopped, sluice holds nothing: a message it had not acked would be ready again.
    assert_eq!(
        broker.queue_counts(&queue).await,
        (0, 0),
        "(ready, consumers) after the second run"
    );

    // Read again once nothing can still be writing, so a late second copy would show.
    let found = tally(&rows_seqs(&database).await, &acknowledged);
    assert_eq!(
        (found.rows, found.distinct),
        (acknowledged.len(), acknowledged.len()),
        "(rows, distinct seqs); duplicated (seq: rows): {:?}; unexpected: {:?}",
        found.duplicated,
        found.unexpected
    );
}

/// With the queue at its `max_length` (`reject-publish`), the input answers 503 with
/// `Retry-After`, not 204; once a consumer runs, InfluxDB holds exactly what was answered 204,
/// and a refused request sent again is taken.
#[tokio::test]
async fn a_full_queue_is_answered_503_and_what_it_refused_is_not_written() {
    const MAX_LENGTH: u32 = 5;
    const REFUSED: u32 = 3;
    const PER_REQUEST: u32 = 10;
    let names = TestNames::new("full");
    let broker = Broker::connect().await;
    let exchange = unique("full.intake");
    let queue = unique("full.lp");
    let _leftovers = Leftovers::of(&names, &exchange, &queue);
    let database = TestDatabase::named("full").await;
    let listen = format!("127.0.0.1:{}", free_port());
    let influx = influx_url();
    let config = |run| TierConfig {
        listen: &listen,
        exchange: &exchange,
        queue: &queue,
        max_length: Some(MAX_LENGTH),
        run,
        sink_url: &influx,
        database: &database.name,
    };
    // Only the listener: no consumer takes messages away, so the queue fills after exactly
    // MAX_LENGTH requests (one message each).
    let (mut intake, _intake_config) = start(&names, &config("intake")).await;

    let client = reqwest::Client::new();
    let mut acknowledged = BTreeSet::new();
    let mut refused = Vec::new();
    for request in 0..MAX_LENGTH + REFUSED {
        let seqs = request * PER_REQUEST..(request + 1) * PER_REQUEST;
        let answer = post(&client, &listen, lines(seqs.clone())).await;
        if request < MAX_LENGTH {
            assert_eq!(
                answer.status, 204,
                "request {request}, with room in the queue: {}",
                answer.body
            );
            acknowledged.extend(seqs);
        } else {
            assert_eq!(
                answer.status, 503,
                "request {request}, the queue full: {}",
                answer.body
            );
            assert_eq!(
                answer.retry_after.as_deref(),
                Some("1"),
                "request {request}"
            );
            refused.push(seqs);
        }
    }
    assert_eq!(
        broker.queue_counts(&queue).await,
        (MAX_LENGTH, 0),
        "(ready, consumers) with the queue full"
    );
    assert_eq!(
        intake
            .counter_with("sluice_intake_received_total", "input=\"influx_write\"")
            .await,
        f64::from(MAX_LENGTH * PER_REQUEST),
        "lines counted as received: only the accepted ones"
    );
    // Refused by the broker itself (a nack from the full queue), not by anything before it.
    assert_eq!(
        intake
            .counter_with(
                "sluice_intake_published_total",
                "input=\"influx_write\",result=\"nacked\""
            )
            .await,
        f64::from(REFUSED),
        "publishes the broker nacked"
    );
    assert!(intake.stop(), "a clean stop of the intake");

    // Both halves now: the consumer drains the queue into InfluxDB.
    let (mut both, _both_config) = start(&names, &config("both")).await;
    wait_for_acks(&both, MAX_LENGTH).await;
    let found = tally(&rows_seqs(&database).await, &acknowledged);
    assert!(
        found.missing.is_empty(),
        "points answered 204 missing from InfluxDB: seqs {:?}",
        found.missing
    );
    assert_eq!(
        (found.rows, found.distinct),
        (acknowledged.len(), acknowledged.len()),
        "(rows, distinct seqs) before any retry; refused yet written: {:?}",
        found.unexpected
    );
    assert_eq!(
        both.counter("sluice_written_total").await,
        f64::from(MAX_LENGTH * PER_REQUEST),
        "points counted as written: only the accepted ones"
    );

    // What Retry-After promised: with room again, the refused requests are taken. (A new
    // client: the old one's connections were to the stopped process.)
    let client = reqwest::Client::new();
    for seqs in refused {
        let answer = post(&client, &listen, lines(seqs.clone())).await;
        assert_eq!(
            answer.status, 204,
            "seqs {seqs:?} sent again: {}",
            answer.body
        );
        acknowledged.extend(seqs);
    }
    wait_for_acks(&both, MAX_LENGTH + REFUSED).await;
    let found = tally(&rows_seqs(&database).await, &acknowledged);
    assert!(
        found.missing.is_empty(),
        "points sent again and answered 204 missing from InfluxDB: seqs {:?}",
        found.missing
    );
    assert!(both.stop(), "a clean stop");
    assert_eq!(
        broker.queue_counts(&queue).await,
        (0, 0),
        "(ready, consumers) after the drain"
    );
    let found = tally(&rows_seqs(&database).await, &acknowledged);
    assert_eq!(
        (found.rows, found.distinct),
        (acknowledged.len(), acknowledged.len()),
        "(rows, distinct seqs) at the end; duplicated: {:?}",
        found.duplicated
    );
}
