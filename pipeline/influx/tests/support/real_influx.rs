//! The real InfluxDB 1.x the integration tests write to: its URL, a loud failure when it is not
//! running, and a private database per test that is dropped when the test ends.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_influx::{InfluxApi, InfluxSettings};
use url::Url;

/// `INFLUX_URL`, or the local default of `deploy/services.sh`.
pub(crate) fn influx_url() -> Url {
    let text = std::env::var("INFLUX_URL").unwrap_or_else(|_| "http://127.0.0.1:8086".to_owned());
    Url::parse(&text).unwrap_or_else(|error| panic!("INFLUX_URL {text:?} is not a URL: {error}"))
}

/// Fails the test when InfluxDB does not answer `/ping`: a missing service is never a skip.
pub(crate) async fn require_influx() -> Url {
    let url = influx_url();
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
    url
}

/// A database of this test's own, dropped when the value is.
pub(crate) struct TestDatabase {
    pub(crate) url: Url,
    pub(crate) name: String,
}

impl TestDatabase {
    /// A unique name; the database is not created (see [`TestDatabase::create`]).
    pub(crate) async fn named(label: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let url = require_influx().await;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos();
        let name = format!(
            "sluice_test_{label}_{}_{nanos}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        Self { url, name }
    }

    /// A unique, created database; `duration` sets its default retention (at least `1h`).
    pub(crate) async fn create(label: &str, duration: Option<&str>) -> Self {
        let database = Self::named(label).await;
        let mut statement = format!("CREATE DATABASE \"{}\"", database.name);
        if let Some(duration) = duration {
            statement.push_str(&format!(" WITH DURATION {duration}"));
        }
        database.query(&statement).await;
        database
    }

    pub(crate) fn settings(&self) -> InfluxSettings {
        InfluxSettings::new(
            self.url.clone(),
            InfluxApi::V1 {
                database: self.name.clone(),
                retention_policy: None,
                username: None,
                password: None,
            },
        )
    }

    /// Runs an InfluxQL statement in this database (`epoch=ns`), failing on any error.
    pub(crate) async fn query(&self, statement: &str) -> serde_json::Value {
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
            .expect("query request");
        let status = response.status();
        let value: serde_json::Value = response.json().await.expect("query answer is json");
        assert!(status.is_success(), "{statement}: {status} {value}");
        assert!(
            value["results"][0].get("error").is_none(),
            "{statement}: {value}"
        );
        value
    }

    /// The series of `SELECT * FROM "<measurement>" GROUP BY *`: one per tag set, with its
    /// `tags`, `columns` and `values`.
    pub(crate) async fn series(&self, measurement: &str) -> Vec<serde_json::Value> {
        let statement = format!("SELECT * FROM {} GROUP BY *", quote_identifier(measurement));
        let answer = self.query(&statement).await;
        answer["results"][0]["series"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Writes raw line protocol, bypassing the writer, and answers the status and body.
    pub(crate) async fn write_raw(&self, lines: &str) -> (u16, String) {
        let mut url = self.url.join("write").expect("write url");
        url.query_pairs_mut().append_pair("db", &self.name);
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
    /// (A database that was never created drops without error.)
    fn drop(&mut self) {
        let (Some(host), Some(port)) = (self.url.host_str(), self.url.port_or_known_default())
        else {
            return;
        };
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &format!("DROP DATABASE \"{}\"", self.name))
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
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}
