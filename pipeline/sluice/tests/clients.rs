//! Real clients, none of them written here, sending to the standalone tier's push inputs: the
//! Prometheus server (`remote_write`), collectd (`write_graphite`) and the official InfluxDB
//! Python client (`/api/v2/write`). Each test then reads the real InfluxDB for exactly what the
//! client sent.
//!
//! The clients come from `deploy/clients.sh`; a missing one fails the test with that to run.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use common::{Broker, Sluice, TestNames, eventually, free_port, influx_url, unique};
use sluice_testing::influx::{TestDatabase, quote_identifier};

/// Prometheus' first scrape comes up to one interval after it starts, collectd and the broker
/// take their time on a loaded machine: generous, since a passing test never waits this long.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Prometheus

/// The exposition the test serves for Prometheus to scrape. Every sample carries its own
/// timestamp (`t` milliseconds, plus an offset), so the test knows each point's time exactly, and
/// repeated scrapes of the same sample are one sample to Prometheus (it drops a duplicate of
/// the same value at the same time before the WAL that `remote_write` reads).
fn exposition(t: i64) -> String {
    format!(
        "# HELP sluice_client_temperature_celsius A room's temperature.\n\
         # TYPE sluice_client_temperature_celsius gauge\n\
         sluice_client_temperature_celsius{{room=\"kitchen\",floor=\"1\"}} 21.5 {t}\n\
         sluice_client_temperature_celsius{{room=\"hall way, east\",floor=\"2\"}} -3.25 {}\n\
         # HELP sluice_client_jobs_total Jobs done.\n\
         # TYPE sluice_client_jobs_total counter\n\
         sluice_client_jobs_total{{queue=\"a=b\"}} 42 {}\n",
        t + 1,
        t + 250,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_write_lands_as_its_series() {
    let database = TestDatabase::named("clients-prometheus").await;
    let listen = format!("127.0.0.1:{}", free_port());
    let tier = Tier::start(
        "clients-prometheus",
        "prom",
        &format!("type = \"prometheus_remote_write\"\nlisten = \"{listen}\""),
        &database,
    )
    .await;
    wait_for_listener(&listen).await;

    let (target, first_scrape) = serve_exposition().await;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("prometheus.yml");
    let job = "sluice-clients";
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n\
             remote_write:\n  - url: http://{listen}/api/v1/write\n    queue_config:\n      \
             batch_send_deadline: 100ms\n      min_backoff: 50ms\n      max_backoff: 1s\n"
        ),
    )
    .expect("write prometheus.yml");
    let mut prometheus = Client::spawn(
        "prometheus",
        &dir.path().join("prometheus.log"),
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", free_port())),
    );

    // `up` is written at each scrape's own time; three of them mean the samples were scraped
    // (and deduplicated) at least three times before the test looks at them.
    let instance = target.to_string();
    let up = wait_for(
        Some(&mut prometheus),
        "three scrapes' `up` in InfluxDB",
        || async {
            let up = stored(&database, "up").await?;
            let points = up.values().map(Vec::len).sum::<usize>();
            if points >= 3 {
                Ok(up)
            } else {
                Err(format!("{points} points of `up`: {up:?}"))
            }
        },
    )
    .await;
    let t = *first_scrape.get().expect("scraped");
    let up_tags = tags(&[("instance", &instance), ("job", job)]);
    assert_eq!(
        up.keys().collect::<Vec<_>>(),
        [&up_tags],
        "`up`'s one series, its labels as tags; {}",
        prometheus.log()
    );
    for (time, fields) in &up[&up_tags] {
        assert_eq!(fields, &value(json!(1)), "the target was up at {time}");
        assert_eq!(
            time % 1_000_000,
            0,
            "Prometheus' milliseconds, as nanoseconds"
        );
    }

    let temperature = wait_for(
        Some(&mut prometheus),
        "the temperatures in InfluxDB",
        || async {
            tier.at_least(&database, "sluice_client_temperature_celsius", 2)
                .await
        },
    )
    .await;
    let kitchen = tags(&[
        ("floor", "1"),
        ("instance", &instance),
        ("job", job),
        ("room", "kitchen"),
    ]);
    let hall = tags(&[
        ("floor", "2"),
        ("instance", &instance),
        ("job", job),
        ("room", "hall way, east"),
    ]);
    assert_eq!(
        temperature,
        BTreeMap::from([
            (kitchen, vec![(t * 1_000_000, value(json!(21.5)))]),
            (hall, vec![((t + 1) * 1_000_000, value(json!(-3.25)))]),
        ]),
        "measurement = __name__, the other labels as tags, field `value`, the sample's time; \
         one point per series however often it was scraped"
    );
    let jobs = wait_for(Some(&mut prometheus), "the counter in InfluxDB", || async {
        tier.at_least(&database, "sluice_client_jobs_total", 1)
            .await
    })
    .await;
    assert_eq!(
        jobs,
        BTreeMap::from([(
            tags(&[("instance", &instance), ("job", job), ("queue", "a=b")]),
            vec![((t + 250) * 1_000_000, value(json!(42)))],
        )]),
    );
    drop(prometheus);
    tier.remove().await;
}

/// Serves [`exposition`] as `/metrics` on a free loopback port, for as long as the test runs,
/// its samples stamped with the time of the first scrape (in milliseconds, also answered).
/// Not earlier: `remote_write` sends only samples newer than its own start (hence also the
/// millisecond added, in case the first scrape comes within the millisecond it started).
async fn serve_exposition() -> (std::net::SocketAddr, Arc<OnceLock<i64>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the exposition's listener");
    let address = listener.local_addr().expect("its address");
    let first_scrape = Arc::new(OnceLock::new());
    let stamp = Arc::clone(&first_scrape);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = exposition(*stamp.get_or_init(|| now_millis() + 1));
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, first_scrape)
}

// ---------------------------------------------------------------------------------------------
// collectd

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectd_write_graphite_lands_as_its_values() {
    let database = TestDatabase::named("clients-collectd").await;
    let tcp = format!("127.0.0.1:{}", free_port());
    // write_graphite names a value `<Prefix><host>.<plugin>.<plugin instance>.<type>.<type
    // instance>` (SeparateInstances). The template skips the prefix's part and makes the
    // plugin the measurement, the host, plugin instance and type tags, the type instance the
    // field: the values of one plugin instance at one time are one point.
    let tier = Tier::start(
        "clients-collectd",
        "carbon",
        &format!(
            "type = \"graphite\"\ntcp = \"{tcp}\"\n\
             templates = [\"collectd.* .host.measurement.instance.type.field\"]"
        ),
        &database,
    )
    .await;
    // collectd must not start before the listener: write_graphite drops what it cannot send.
    wait_for_listener(&tcp).await;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let socket = dir.path().join("collectd.sock");
    let config = dir.path().join("collectd.conf");
    let (host, port) = tcp.rsplit_once(':').expect("host:port");
    std::fs::write(
        &config,
        format!(
            r#"
BaseDir "{dir}"
PIDFile "{dir}/collectd.pid"
TypesDB "/usr/share/collectd/types.db"
Hostname "collectd-test"
FQDNLookup false
Interval 1

LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File STDERR
</Plugin>

LoadPlugin unixsock
<Plugin unixsock>
  SocketFile "{socket}"
</Plugin>

LoadPlugin write_graphite
<Plugin write_graphite>
  <Node "sluice">
    Host "{host}"
    Port "{port}"
    Protocol "tcp"
    Prefix "collectd."
    SeparateInstances true
    AlwaysAppendDS false
    StoreRates false
    EscapeCharacter "_"
  </Node>
</Plugin>
"#,
            dir = dir.path().display(),
            socket = socket.display(),
        ),
    )
    .expect("write collectd.conf");
    let collectd_binary = if Path::new("/usr/sbin/collectd").exists() {
        "/usr/sbin/collectd"
    } else {
        "collectd"
    };
    let mut collectd = Client::spawn(
        "collectd",
        &dir.path().join("collectd.log"),
        Command::new(collectd_binary)
            .arg("-f")
            .arg("-C")
            .arg(&config),
    );
    let mut control = wait_for(Some(&mut collectd), "collectd's unix socket", || async {
        Unixsock::connect(&socket).await
    })
    .await;

    // Whole seconds: write_graphite sends `%u` seconds.
    let t = 1_700_000_000;
    let values = [
        ("sensor-1/sensors-room1/gauge-temperature", t, "21.5"),
        ("sensor-1/sensors-room1/gauge-humidity", t, "40.25"),
        ("sensor-1/sensors-room1/gauge-temperature", t + 10, "-3.125"),
        ("sensor-2/sensors-room2/gauge-temperature", t + 10, "1e-3"),
    ];
    for (identifier, time, value) in values {
        let answer = control
            .command(&format!(
                "PUTVAL \"{identifier}\" interval=1 {time}:{value}"
            ))
            .await;
        assert!(
            answer.starts_with("0 "),
            "PUTVAL {identifier}: {answer}; {}",
            collectd.log()
        );
    }

    // The values go through collectd's write queue to write_graphite's buffer, which sends
    // when full or flushed: flush until they are all in InfluxDB. A plain FLUSH, because
    // write_graphite's flush callback is named per node (`write_graphite/sluice`), and
    // `plugin=write_graphite` would match nothing yet answer "0 Done: 1 successful".
    drop(control);
    let sensors = wait_for(
        Some(&mut collectd),
        "collectd's values in InfluxDB",
        || async {
            // A connection each time: the check cannot hold one across its calls.
            let answer = Unixsock::connect(&socket).await?.command("FLUSH").await;
            if !answer.starts_with("0 ") {
                return Err(format!("FLUSH: {answer}"));
            }
            tier.at_least(&database, "sensors", 4).await
        },
    )
    .await;
    let instance =
        |host: &str, room: &str| tags(&[("host", host), ("instance", room), ("type", "gauge")]);
    let seconds = |time: i64| time * 1_000_000_000;
    assert_eq!(
        sensors,
        BTreeMap::from([
            (
                instance("sensor-1", "room1"),
                vec![
                    (
                        seconds(t),
                        fields(&[("humidity", json!(40.25)), ("temperature", json!(21.5))])
                    ),
                    (seconds(t + 10), fields(&[("temperature", json!(-3.125))])),
                ],
            ),
            (
                instance("sensor-2", "room2"),
                vec![(seconds(t + 10), fields(&[("temperature", json!(0.001))]))],
            ),
        ]),
        "named by the template, the values and times PUTVAL gave; {}",
        collectd.log()
    );
    assert_eq!(measurements(&database).await, ["sensors"], "nothing else");
    drop(collectd);
    tier.remove().await;
}

/// collectd's unixsock plugin: one command a line, one status line back (`0 ...` on success;
/// the commands used here answer a single line).
struct Unixsock {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Unixsock {
    async fn connect(path: &Path) -> Result<Unixsock, String> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|error| format!("{}: {error}", path.display()))?;
        let (reader, writer) = stream.into_split();
        Ok(Unixsock {
            reader: BufReader::new(reader),
            writer,
        })
    }

    async fn command(&mut self, line: &str) -> String {
        if let Err(error) = self.writer.write_all(format!("{line}\n").as_bytes()).await {
            return format!("(not sent: {error})");
        }
        let mut answer = String::new();
        match self.reader.read_line(&mut answer).await {
            Ok(0) => "(collectd closed the socket)".to_owned(),
            Ok(_) => answer.trim_end().to_owned(),
            Err(error) => format!("(no answer: {error})"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The InfluxDB Python client

/// Writes with the official client, `SYNCHRONOUS` (so it returns once sluice answered): a batch
/// at nanosecond precision, then one at second precision. Arguments: url, token, org, bucket.
const PYTHON_WRITER: &str = r#"
import sys
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

url, token, org, bucket = sys.argv[1:5]
with InfluxDBClient(url=url, token=token, org=org) as client:
    write_api = client.write_api(write_options=SYNCHRONOUS)
    write_api.write(bucket=bucket, record=[
        Point("weather station")
            .tag("site", "north, upper")
            .tag("sensor id", "a=1")
            .field("temperature", 21.5)
            .field("readings", 42)
            .field("status", 'ok, "fine" \\ really')
            .time(1700000000123456789, WritePrecision.NS),
        Point("weather station")
            .tag("site", "south")
            .tag("sensor id", "b")
            .field("temperature", -0.25)
            .field("readings", -7)
            .field("status", "")
            .time(1700000001000000001, WritePrecision.NS),
    ])
    write_api.write(bucket=bucket, write_precision=WritePrecision.S, record=
        Point("weather station")
            .tag("site", "south")
            .tag("sensor id", "b")
            .field("temperature", 3.0)
            .field("readings", 9007199254740993)
            .field("status", "second")
            .time(1700000002, WritePrecision.S))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_influxdb_python_client_lands_as_its_points() {
    let database = TestDatabase::named("clients-python").await;
    let listen = format!("127.0.0.1:{}", free_port());
    let token = unique("token");
    let tier = Tier::start(
        "clients-python",
        "lp",
        &format!("type = \"influxdb_write\"\nlisten = \"{listen}\"\ntoken = \"{token}\""),
        &database,
    )
    .await;
    wait_for_listener(&listen).await;
    let url = format!("http://{listen}");

    // The wrong token is refused, and the client says so: sluice checks what it is given.
    let refused = run_python(&url, "not-the-token").await;
    assert!(
        !refused.status.success() && refused.stderr.contains("401"),
        "a wrong token must be refused with 401: {refused:?}"
    );

    let written = run_python(&url, &token).await;
    assert!(written.status.success(), "the client's writes: {written:?}");

    let measurement = "weather station";
    let points = wait_for(None, "the client's points in InfluxDB", || async {
        tier.at_least(&database, measurement, 9).await
    })
    .await;
    assert_eq!(
        points,
        BTreeMap::from([
            (
                tags(&[("sensor id", "a=1"), ("site", "north, upper")]),
                vec![(
                    1_700_000_000_123_456_789,
                    fields(&[
                        ("readings", json!(42)),
                        ("status", json!("ok, \"fine\" \\ really")),
                        ("temperature", json!(21.5)),
                    ]),
                )],
            ),
            (
                tags(&[("sensor id", "b"), ("site", "south")]),
                vec![
                    (
                        1_700_000_001_000_000_001,
                        fields(&[
                            ("readings", json!(-7)),
                            ("status", json!("")),
                            ("temperature", json!(-0.25)),
                        ]),
                    ),
                    (
                        1_700_000_002_000_000_000,
                        fields(&[
                            // Beyond f64's exact integers: kept an integer all the way.
                            ("readings", json!(9_007_199_254_740_993_i64)),
                            ("status", json!("second")),
                            ("temperature", json!(3)),
                        ]),
                    ),
                ],
            ),
        ]),
        "the client's tags, fields and times, unescaped"
    );
    assert_eq!(measurements(&database).await, [measurement], "nothing else");
    let types = database
        .rows(&format!(
            "SHOW FIELD KEYS FROM {}",
            quote_identifier(measurement)
        ))
        .await
        .expect("SHOW FIELD KEYS");
    let types: BTreeMap<String, Value> = types
        .into_iter()
        .map(|row| {
            (
                row["fieldKey"].as_str().unwrap_or_default().to_owned(),
                row["fieldType"].clone(),
            )
        })
        .collect();
    assert_eq!(
        types,
        BTreeMap::from([
            ("readings".to_owned(), json!("integer")),
            ("status".to_owned(), json!("string")),
            ("temperature".to_owned(), json!("float")),
        ]),
        "each field's type as the client sent it"
    );
    tier.remove().await;
}

/// The finished `python3` run of [`PYTHON_WRITER`].
#[derive(Debug)]
#[allow(dead_code)] // Read by the failure messages' Debug.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

async fn run_python(url: &str, token: &str) -> Finished {
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(PYTHON_WRITER)
        .args([url, token, "sluice-org", "sluice-bucket"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|error| panic!("python3 does not run ({error}): run deploy/clients.sh"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the InfluxDB Python client is missing: run deploy/clients.sh\n{stderr}"
    );
    Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
    }
}

// ---------------------------------------------------------------------------------------------
// The tier, the clients and what InfluxDB holds

/// A sluice running one push source into one InfluxDB sink, on broker objects of its own: the
/// intake exchange and queue are unique too, so no other test's (or run's) source of the same
/// name shares its points.
struct Tier {
    sluice: Sluice,
    names: TestNames,
    exchange: String,
    queue: String,
    _dir: tempfile::TempDir,
}

impl Tier {
    /// `source` is the body of `[sources.<name>]` without its `broker`.
    async fn start(test: &str, name: &str, source: &str, database: &TestDatabase) -> Tier {
        let names = TestNames::new(test);
        let exchange = unique(&format!("{test}.intake"));
        let queue = unique(&format!("{test}.intake"));
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("sluice.toml");
        std::fs::write(
            &file,
            format!(
                r#"
[sources.{name}]
{source}
broker = {{ exchange = "{exchange}", queue = "{queue}" }}

[sinks.influx]
type = "influxdb"
inputs = ["{name}"]
url = "{influx}"
database = "{database}"
batch_linger = "50ms"
"#,
                influx = influx_url(),
                database = database.name,
            ),
        )
        .expect("write sluice.toml");
        let file = file.to_str().expect("a UTF-8 path");
        let sluice = Sluice::start_with_args(&names, &influx_url(), &[], &["--config", file]).await;
        Tier {
            sluice,
            names,
            exchange,
            queue,
            _dir: dir,
        }
    }

    /// [`at_least`], and when not yet, also what sluice counted (received, published,
    /// written, refused) and the measurements there are.
    async fn at_least(
        &self,
        database: &TestDatabase,
        measurement: &str,
        values: usize,
    ) -> Result<Stored, String> {
        let error = match at_least(database, measurement, values).await {
            Ok(stored) => return Ok(stored),
            Err(error) => error,
        };
        let counters = self.sluice.metrics_text().await.unwrap_or_default();
        let counters: Vec<&str> = counters
            .lines()
            .filter(|line| {
                !line.starts_with('#')
                    && ["intake", "written", "refused", "dead", "rejected"]
                        .iter()
                        .any(|word| line.contains(word))
            })
            .collect();
        let measurements = database
            .try_query("SHOW MEASUREMENTS")
            .await
            .map(|answer| answer["results"][0].to_string())
            .unwrap_or_else(|error| error);
        Err(format!(
            "{error}\nsluice's counters: {counters:#?}\nmeasurements: {measurements}"
        ))
    }

    /// Stops sluice cleanly and removes its broker objects.
    async fn remove(mut self) {
        assert!(self.sluice.stop(), "a clean stop");
        let broker = Broker::connect().await;
        broker.delete_queue(&self.queue).await;
        broker.delete_exchange(&self.exchange).await;
        broker.remove(&self.names).await;
    }
}

/// Until `address` accepts TCP connections: a client must not start before the push input
/// listens (collectd, for one, drops what it could not send).
async fn wait_for_listener(address: &str) {
    eventually(&format!("sluice's listener on {address}"), WAIT, || async {
        tokio::net::TcpStream::connect(address).await.ok()
    })
    .await;
}

/// A client process the test started: its stdout and stderr go to a log the failure messages
/// quote, and it is killed when the test ends, also on a panic.
struct Client {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Client {
    fn spawn(name: &'static str, log: &Path, command: &mut Command) -> Client {
        let file = File::create(log).expect("create the client's log");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("the log, again"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("{name} does not start ({error}): run deploy/clients.sh")
            });
        Client {
            name,
            child,
            log: log.to_owned(),
        }
    }

    /// The end of the client's log, for a failure message.
    fn log(&self) -> String {
        let text = std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|error| format!("(no log: {error})"));
        let start = text
            .char_indices()
            .rev()
            .nth(8_000)
            .map_or(0, |(index, _)| index);
        format!("{}'s log:\n{}", self.name, &text[start..])
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 50 ms until it answers `Ok`. Fails at once if `client` exits, and after
/// [`WAIT`] with the last answer; both with the client's log.
async fn wait_for<T, F, Fut>(mut client: Option<&mut Client>, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        if let Some(client) = client.as_deref_mut()
            && let Some(status) = client.exited()
        {
            panic!(
                "{} exited ({status}) before {what}; last: {last}\n{}",
                client.name,
                client.log()
            );
        }
        assert!(
            started.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {what}; last: {last}\n{}",
            client.as_deref().map(Client::log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type Tags = BTreeMap<String, String>;
type Fields = BTreeMap<String, Value>;
/// A measurement as InfluxDB holds it: per tag set, its points as (nanoseconds, fields), the
/// fields a point does not have left out.
type Stored = BTreeMap<Tags, Vec<(i64, Fields)>>;

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

fn fields(pairs: &[(&str, Value)]) -> Fields {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect()
}

/// The one field `value`, as the remote-write intake writes it.
fn value(number: Value) -> Fields {
    fields(&[("value", number)])
}

/// What InfluxDB holds in `measurement` (an error until the database exists).
async fn stored(database: &TestDatabase, measurement: &str) -> Result<Stored, String> {
    let statement = format!("SELECT * FROM {} GROUP BY *", quote_identifier(measurement));
    let answer = database.try_query(&statement).await?;
    let mut stored = Stored::new();
    for series in answer["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let tags: Tags = series["tags"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
            .collect();
        let columns: Vec<&str> = series["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|column| column.as_str().unwrap_or_default())
            .collect();
        let points = stored.entry(tags).or_default();
        for row in series["values"].as_array().into_iter().flatten() {
            let row = row.as_array().ok_or_else(|| format!("a row: {row}"))?;
            let mut time = None;
            let mut fields = Fields::new();
            for (column, cell) in columns.iter().zip(row) {
                match *column {
                    "time" => time = cell.as_i64(),
                    _ if cell.is_null() => {}
                    field => {
                        fields.insert(field.to_owned(), cell.clone());
                    }
                }
            }
            points.push((
                time.ok_or_else(|| format!("a row without a time: {row:?}"))?,
                fields,
            ));
        }
    }
    Ok(stored)
}

/// What InfluxDB holds in `measurement`, once it is at least `values` field values (not
/// points: a point whose fields came in two writes counts once it has both).
async fn at_least(
    database: &TestDatabase,
    measurement: &str,
    values: usize,
) -> Result<Stored, String> {
    let stored = stored(database, measurement).await?;
    let held = stored
        .values()
        .flatten()
        .map(|(_, fields)| fields.len())
        .sum::<usize>();
    if held >= values {
        Ok(stored)
    } else {
        Err(format!(
            "{held} of {values} values in {measurement:?}: {stored:?}"
        ))
    }
}

/// The names of the measurements in `database`.
async fn measurements(database: &TestDatabase) -> Vec<String> {
    database
        .rows("SHOW MEASUREMENTS")
        .await
        .expect("SHOW MEASUREMENTS")
        .into_iter()
        .map(|row| row["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn now_millis() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(elapsed.as_millis()).expect("milliseconds fit")
}
