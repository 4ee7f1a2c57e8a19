//! The real InfluxDB 1.x the tests write to: a database of each test's own on the shared
//! server ([`TestDatabase`], dropped when the test ends, also after a panic), and a private
//! `influxd` a test can stop and start ([`PrivateInflux`]). A server that does not answer fails
//! the test with what to run: a missing service is never a skip.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use url::Url;

use crate::names::{free_port, unique};
use crate::services::influx_url;
use crate::wait::eventually;

/// The shared server's URL, once it answers `/ping`.
pub async fn require_influx() -> Url {
    let text = influx_url();
    let url = Url::parse(&text)
        .unwrap_or_else(|error| panic!("INFLUX_URL {text:?} is not a URL: {error}"));
    require_server(&url).await;
    url
}

async fn require_server(url: &Url) {
    let ping = url.join("ping").expect("ping url");
    let answered = reqwest::Client::new()
        .get(ping)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .is_ok_and(|response| response.status().is_success());
    assert!(
        answered,
        "InfluxDB is not running at {url}: run deploy/services.sh"
    );
}

/// A database of this test's own, dropped when the value is.
pub struct TestDatabase {
    pub url: Url,
    pub name: String,
}

impl TestDatabase {
    /// A unique name on the shared server; the database is not created (see
    /// [`TestDatabase::create`]).
    pub async fn named(label: &str) -> Self {
        let url = require_influx().await;
        Self {
            url,
            name: unique(&format!("sluice_test_{label}")),
        }
    }

    /// A unique, created database; `duration` sets its default retention (at least `1h`).
    pub async fn create(label: &str, duration: Option<&str>) -> Self {
        let database = Self::named(label).await;
        let mut statement = format!("CREATE DATABASE \"{}\"", database.name);
        if let Some(duration) = duration {
            statement.push_str(&format!(" WITH DURATION {duration}"));
        }
        database.query(&statement).await;
        database
    }

    /// The database `name` on the server at `url` (which must answer), as whatever the test
    /// runs creates it.
    pub async fn on(url: &str, name: &str) -> Self {
        let url = Url::parse(url).unwrap_or_else(|error| panic!("{url:?} is not a URL: {error}"));
        require_server(&url).await;
        Self {
            url,
            name: name.to_owned(),
        }
    }

    /// Runs an InfluxQL statement in this database (`epoch=ns`), failing the test on any error.
    pub async fn query(&self, statement: &str) -> Value {
        self.try_query(statement)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Runs an InfluxQL statement in this database (`epoch=ns`): the answer, or what went wrong
    /// (the statement, the status and InfluxDB's error).
    pub async fn try_query(&self, statement: &str) -> Result<Value, String> {
        let mut url = self.url.join("query").expect("query url");
        url.query_pairs_mut()
            .append_pair("db", &self.name)
            .append_pair("epoch", "ns");
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", statement)
            .finish();
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|error| format!("{statement}: {error}"))?;
        let status = response.status();
        let value: Value = response
            .json()
            .await
            .map_err(|error| format!("{statement}: {status}, not JSON: {error}"))?;
        if !status.is_success() || value["results"][0].get("error").is_some() {
            return Err(format!("{statement}: {status} {value}"));
        }
        Ok(value)
    }

    /// The series of `SELECT * FROM "<measurement>" GROUP BY *`: one per tag set, with its
    /// `tags`, `columns` and `values`.
    pub async fn series(&self, measurement: &str) -> Vec<Value> {
        let statement = format!("SELECT * FROM {} GROUP BY *", quote_identifier(measurement));
        let answer = self.query(&statement).await;
        answer["results"][0]["series"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The rows of a query across its series, as maps column -> value.
    pub async fn rows(&self, statement: &str) -> Result<Vec<BTreeMap<String, Value>>, String> {
        let answer = self.try_query(statement).await?;
        let mut rows = Vec::new();
        for serie in answer["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let columns: Vec<String> = serie["columns"]
                .as_array()
                .ok_or_else(|| format!("{statement}: a series without columns: {serie}"))?
                .iter()
                .map(|column| column.as_str().unwrap_or_default().to_owned())
                .collect();
            for values in serie["values"].as_array().into_iter().flatten() {
                let values = values
                    .as_array()
                    .ok_or_else(|| format!("{statement}: a row that is not a list: {values}"))?;
                rows.push(
                    columns
                        .iter()
                        .cloned()
                        .zip(values.iter().cloned())
                        .collect(),
                );
            }
        }
        Ok(rows)
    }

    /// How many points a measurement holds (0 when it, or the database, does not exist yet).
    pub async fn count(&self, measurement: &str) -> u64 {
        let statement = format!(
            "SELECT count(\"value\") FROM {}",
            quote_identifier(measurement)
        );
        match self.rows(&statement).await {
            Ok(rows) => rows
                .first()
                .and_then(|row| row.get("count"))
                .and_then(Value::as_u64)
                .unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Writes raw line protocol (nanosecond timestamps), bypassing sluice, and answers the
    /// status and body.
    pub async fn write_raw(&self, lines: &str) -> (u16, String) {
        self.write_with_precision(lines, None).await
    }

    /// Writes line protocol with second timestamps, failing the test unless InfluxDB took it.
    pub async fn write_lines(&self, lines: &str) {
        let (status, body) = self.write_with_precision(lines, Some("s")).await;
        assert!((200..300).contains(&status), "seed write: {status} {body}");
    }

    async fn write_with_precision(&self, lines: &str, precision: Option<&str>) -> (u16, String) {
        let mut url = self.url.join("write").expect("write url");
        url.query_pairs_mut().append_pair("db", &self.name);
        if let Some(precision) = precision {
            url.query_pairs_mut().append_pair("precision", precision);
        }
        let response = reqwest::Client::new()
            .post(url)
            .body(lines.to_owned())
            .send()
            .await
            .expect("write request");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }
}

impl Drop for TestDatabase {
    /// Drops the database with a blocking request, so that it also happens when a test panics.
    /// (A database that was never created, or a server already stopped, drops without error.)
    fn drop(&mut self) {
        let (Some(host), Some(port)) = (self.url.host_str(), self.url.port_or_known_default())
        else {
            return;
        };
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "q",
                &format!("DROP DATABASE {}", quote_identifier(&self.name)),
            )
            .finish();
        let request = format!(
            "POST {}query HTTP/1.0\r\nHost: {host}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            path_prefix(&self.url),
            body.len()
        );
        if let Ok(mut stream) = TcpStream::connect((host, port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
            }
        }
    }
}

fn path_prefix(url: &Url) -> String {
    let path = url.path();
    if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    }
}

/// An InfluxQL double-quoted identifier.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A private InfluxDB 1.x server the test can stop and start: the real `influxd`, on free
/// loopback ports, with its data in a temporary directory.
pub struct PrivateInflux {
    pub http_port: u16,
    rpc_port: u16,
    data_dir: PathBuf,
    process: Option<Child>,
}

impl PrivateInflux {
    pub async fn start() -> PrivateInflux {
        let data_dir = std::env::temp_dir().join(unique("sluice-influxd"));
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let mut server = PrivateInflux {
            http_port: free_port(),
            rpc_port: free_port(),
            data_dir,
            process: None,
        };
        server.resume().await;
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Starts (again) on the same ports and data.
    pub async fn resume(&mut self) {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/influxdb.conf");
        let child = Command::new("influxd")
            .arg("-config")
            .arg(config)
            .env(
                "INFLUXDB_BIND_ADDRESS",
                format!("127.0.0.1:{}", self.rpc_port),
            )
            .env(
                "INFLUXDB_HTTP_BIND_ADDRESS",
                format!("127.0.0.1:{}", self.http_port),
            )
            .env("INFLUXDB_META_DIR", self.data_dir.join("meta"))
            .env("INFLUXDB_DATA_DIR", self.data_dir.join("data"))
            .env("INFLUXDB_DATA_WAL_DIR", self.data_dir.join("wal"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("influxd is not installed: run deploy/services.sh");
        self.process = Some(child);
        let client = reqwest::Client::new();
        let ping = format!("{}/ping", self.url());
        eventually(
            "the private influxd to answer /ping",
            Duration::from_secs(60),
            || {
                let request = client.get(&ping).send();
                async move {
                    request
                        .await
                        .ok()
                        .filter(|response| response.status().is_success())
                        .map(|_| ())
                }
            },
        )
        .await;
    }

    /// The running server's pid, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// SIGSTOP: the server stalls. The kernel still completes TCP handshakes into its listen
    /// backlog, so a client connects and sends, and nothing ever answers: the hung server a
    /// timeout exists for. [`PrivateInflux::thaw`] lets it go on where it stood.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT, after [`PrivateInflux::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the private influxd runs");
        // The `kill` command: signalling directly would need unsafe code or another crate.
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Kills the server, as a crash or an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateInflux {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
