//! The README's example tier (`deploy/examples/tier.toml`) stays runnable: the real sluice runs
//! the file on the real RabbitMQ, writing to the real InfluxDB 1.x and to the InfluxDB 3 Core
//! double, and one point sent to each of its three inputs (a Graphite TCP line, an InfluxDB
//! line-protocol write, a Prometheus `remote_write` request) lands in both sinks with the tag
//! its transform adds.
//!
//! The file is loaded as TOML and only what must not be shared is changed, by key: the
//! listeners' ports, the broker objects the inputs publish to, and the sinks' URLs and
//! databases. Everything else (the graph, the transform, the sinks' APIs) is the example's own.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Broker, Sluice, TestNames, eventually, free_port, influx_url, unique};
use prost::Message as _;
use sluice_intake::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};
use sluice_testing::influx::{TestDatabase, quote_identifier};
use sluice_testing::influx3::{FakeInfluxDb3, Stored};
use tokio::io::AsyncWriteExt as _;
use toml::{Table, Value};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/examples/tier.toml"
);
const WAIT: Duration = Duration::from_secs(60);
/// 2023-11-14T22:13:20Z, in seconds.
const TIME_S: i64 = 1_700_000_000;

/// What one input sent, and where it must land.
struct Sent {
    measurement: &'static str,
    value: f64,
    time_ns: i64,
}

/// Where the rewritten example's inputs listen.
struct Listeners {
    graphite_tcp: SocketAddr,
    influx_write: SocketAddr,
    remote_write: SocketAddr,
}

/// The broker objects the rewritten inputs publish to, removed at the end.
struct IntakeObjects {
    exchange: String,
    queues: Vec<String>,
}

fn table<'a>(parent: &'a mut Table, key: &str) -> &'a mut Table {
    parent
        .get_mut(key)
        .and_then(Value::as_table_mut)
        .unwrap_or_else(|| panic!("the example has a [{key}] table"))
}

fn text<'a>(component: &'a Table, key: &str) -> &'a str {
    component
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("`{key}` is a string in {component:?}"))
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Rewrites the example in place for this test: free ports, a broker exchange and queues of
/// its own, and the sinks pointed at this test's databases. Fails if the example no longer has
/// the shape the README describes (three push inputs, one `tags` transform, v1 and v3 sinks).
fn rewrite(
    config: &mut Table,
    influx1: &TestDatabase,
    influx3: &FakeInfluxDb3,
    v3_database: &str,
) -> (Listeners, IntakeObjects) {
    let mut intake = IntakeObjects {
        exchange: unique("example-tier.intake"),
        queues: Vec::new(),
    };
    let listeners = Listeners {
        graphite_tcp: loopback(),
        influx_write: loopback(),
        remote_write: loopback(),
    };
    let mut types = Vec::new();
    for (name, source) in table(config, "sources").iter_mut() {
        let source = source.as_table_mut().expect("a source is a table");
        let kind = text(source, "type").to_owned();
        match kind.as_str() {
            "graphite" => {
                source.insert("tcp".into(), listeners.graphite_tcp.to_string().into());
                // The example also listens on UDP; this test sends over TCP only, but the UDP
                // socket must not collide with a running example either.
                if source.contains_key("udp") {
                    source.insert("udp".into(), loopback().to_string().into());
                }
            }
            "influxdb_write" => {
                source.insert("listen".into(), listeners.influx_write.to_string().into());
            }
            "prometheus_remote_write" => {
                source.insert("listen".into(), listeners.remote_write.to_string().into());
            }
            other => panic!("the example's source {name} is a {other}, not a push input"),
        }
        let queue = unique(&format!("example-tier.{name}"));
        let mut broker = Table::new();
        broker.insert("exchange".into(), intake.exchange.clone().into());
        broker.insert("queue".into(), queue.clone().into());
        source.insert("broker".into(), broker.into());
        intake.queues.push(queue);
        types.push(kind);
    }
    types.sort();
    assert_eq!(
        types,
        ["graphite", "influxdb_write", "prometheus_remote_write"],
        "the example's inputs"
    );

    let transforms = table(config, "transforms");
    assert_eq!(transforms.len(), 1, "the example has one transform");
    let (_, transform) = transforms.iter().next().expect("one transform");
    let transform = transform.as_table().expect("a transform is a table");
    assert_eq!(text(transform, "type"), "tags");
    assert_eq!(
        transform
            .get("add")
            .and_then(|add| add.get("tier"))
            .and_then(Value::as_str),
        Some("edge"),
        "the transform adds tier = \"edge\""
    );

    let mut apis = Vec::new();
    for (name, sink) in table(config, "sinks").iter_mut() {
        let sink = sink.as_table_mut().expect("a sink is a table");
        assert_eq!(text(sink, "type"), "influxdb", "sink {name}");
        let api = sink
            .get("api")
            .and_then(Value::as_str)
            .unwrap_or("v1")
            .to_owned();
        let (url, database) = match api.as_str() {
            "v1" => (influx1.url.to_string(), influx1.name.clone()),
            "v3" => (influx3.url.to_string(), v3_database.to_owned()),
            other => panic!("the example's sink {name} uses api {other}"),
        };
        sink.insert("url".into(), url.into());
        sink.insert("database".into(), database.into());
        // Not the example's 200 ms: the test waits for what lands, and need not wait long.
        sink.insert("batch_linger".into(), "50ms".into());
        apis.push(api);
    }
    apis.sort();
    assert_eq!(apis, ["v1", "v3"], "the example's sinks");
    (listeners, intake)
}

async fn send_graphite(address: SocketAddr, sent: &Sent) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the graphite listener");
    let line = format!("{} {} {}\n", sent.measurement, sent.value, TIME_S);
    stream
        .write_all(line.as_bytes())
        .await
        .expect("send a graphite line");
    // Closing is what makes the listener publish the connection's last batch at once.
    stream.shutdown().await.expect("close the connection");
}

async fn send_line_protocol(address: SocketAddr, sent: &Sent) {
    let response = reqwest::Client::new()
        .post(format!("http://{address}/write?db=anything"))
        .body(format!(
            "{},host=web_1 value={} {}",
            sent.measurement, sent.value, sent.time_ns
        ))
        .send()
        .await
        .expect("an answer from the influxdb_write listener");
    assert_eq!(response.status().as_u16(), 204, "confirmed by the broker");
}

async fn send_remote_write(address: SocketAddr, sent: &Sent) {
    let label = |name: &str, value: &str| Label {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    let request = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![label("__name__", sent.measurement), label("job", "node")],
            samples: vec![Sample {
                value: sent.value,
                timestamp: sent.time_ns / 1_000_000,
            }],
        }],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy compresses");
    let response = reqwest::Client::new()
        .post(format!("http://{address}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("an answer from the remote_write listener");
    assert_eq!(response.status().as_u16(), 204, "confirmed by the broker");
}

/// Waits for `sent` in InfluxDB 1.x, then checks its value and the transform's tag.
async fn landed_in_influx1(database: &TestDatabase, sent: &Sent) {
    let statement = format!("SELECT * FROM {}", quote_identifier(sent.measurement));
    let rows = eventually(
        &format!("{} in InfluxDB 1.x", sent.measurement),
        WAIT,
        || async {
            database
                .rows(&statement)
                .await
                .ok()
                .filter(|rows| !rows.is_empty())
        },
    )
    .await;
    assert_eq!(rows.len(), 1, "{}: {rows:?}", sent.measurement);
    let row = &rows[0];
    assert_eq!(row["tier"], "edge", "{}: {row:?}", sent.measurement);
    assert_eq!(row["value"], sent.value, "{}: {row:?}", sent.measurement);
    assert_eq!(row["time"], sent.time_ns, "{}: {row:?}", sent.measurement);
}

/// Waits for `sent` in the InfluxDB 3 double, then checks its value and the transform's tag,
/// and that the double's query endpoint (the README's way to look) shows it.
async fn landed_in_influx3(influx3: &FakeInfluxDb3, database: &str, sent: &Sent) {
    let rows = eventually(
        &format!("{} in InfluxDB 3", sent.measurement),
        WAIT,
        || async {
            let rows = influx3.rows(database, sent.measurement);
            (!rows.is_empty()).then_some(rows)
        },
    )
    .await;
    assert_eq!(rows.len(), 1, "{}: {rows:?}", sent.measurement);
    let row = &rows[0];
    assert_eq!(
        row.tags.get("tier").map(String::as_str),
        Some("edge"),
        "{}: {row:?}",
        sent.measurement
    );
    assert_eq!(
        row.fields.get("value"),
        Some(&Stored::Float(sent.value)),
        "{}: {row:?}",
        sent.measurement
    );
    assert_eq!(row.time, sent.time_ns, "{}: {row:?}", sent.measurement);

    let mut url = influx3.url.join("api/v3/query_sql").expect("a URL");
    url.query_pairs_mut()
        .append_pair("db", database)
        .append_pair("q", &format!("SELECT * FROM \"{}\"", sent.measurement));
    let answer: serde_json::Value = reqwest::get(url)
        .await
        .expect("the double answers a query")
        .json()
        .await
        .expect("JSON rows");
    assert_eq!(answer[0]["tier"], "edge", "{}: {answer}", sent.measurement);
    assert_eq!(
        answer[0]["value"], sent.value,
        "{}: {answer}",
        sent.measurement
    );
}

#[tokio::test]
async fn the_readme_example_carries_each_input_to_both_sinks_with_its_tag() {
    let example = std::fs::read_to_string(EXAMPLE).expect("deploy/examples/tier.toml");
    let mut config: Table = toml::from_str(&example).expect("the example is TOML");
    let influx1 = TestDatabase::named("example_tier").await;
    let influx3 = FakeInfluxDb3::start().await;
    let v3_database = unique("example_tier");
    let (listeners, intake) = rewrite(&mut config, &influx1, &influx3, &v3_database);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("tier.toml");
    std::fs::write(&file, toml::to_string(&config).expect("TOML")).expect("write the file");

    let names = TestNames::new("example-tier");
    let broker = Broker::connect().await;
    let mut sluice = Sluice::start_with_args(
        &names,
        &influx_url(),
        &[],
        &["--config", file.to_str().expect("a UTF-8 path")],
    )
    .await;

    let time_ns = TIME_S * 1_000_000_000;
    let graphite = Sent {
        measurement: "example.graphite.load",
        value: 1.5,
        time_ns,
    };
    let line_protocol = Sent {
        measurement: "example_line_protocol",
        value: 2.5,
        time_ns,
    };
    let remote_write = Sent {
        measurement: "example_remote_write",
        value: 3.5,
        time_ns,
    };
    send_graphite(listeners.graphite_tcp, &graphite).await;
    send_line_protocol(listeners.influx_write, &line_protocol).await;
    send_remote_write(listeners.remote_write, &remote_write).await;

    for sent in [&graphite, &line_protocol, &remote_write] {
        landed_in_influx1(&influx1, sent).await;
        landed_in_influx3(&influx3, &v3_database, sent).await;
    }

    // The Graphite batch, the write and the remote-write request: one message each, acked
    // once both sinks wrote what it became.
    eventually("every message acked", WAIT, || async {
        (sluice.counter("sluice_acked_total").await == 3.0).then_some(())
    })
    .await;
    assert!(sluice.stop(), "a clean stop");
    for queue in &intake.queues {
        assert_eq!(
            broker.queue_counts(queue).await,
            (0, 0),
            "{queue}: (ready, consumers)"
        );
        broker.delete_queue(queue).await;
    }
    broker.delete_exchange(&intake.exchange).await;
    broker.remove(&names).await;
}

/// The README shows the example as the file has it, so that what a reader copies is what this
/// test runs.
#[test]
fn the_readme_shows_the_example_file() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let after = readme
        .split_once("`deploy/examples/tier.toml`:\n\n```toml\n")
        .map(|(_, after)| after)
        .expect("the README introduces the example's TOML");
    let (shown, _) = after.split_once("\n```").expect("the block ends");
    let shown: Table = toml::from_str(shown).expect("the README's example is TOML");
    let file: Table = toml::from_str(&std::fs::read_to_string(EXAMPLE).expect("the example"))
        .expect("the example is TOML");
    assert_eq!(
        shown, file,
        "README.md's example and deploy/examples/tier.toml differ"
    );
}
