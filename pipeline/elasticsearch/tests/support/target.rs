//! The Elasticsearch a test talks to: a real one when `ES_URL` is set (an Elasticsearch 7/8
//! or OpenSearch; credentials from `ES_USERNAME` and `ES_PASSWORD`, or `ES_API_KEY`), else a
//! [`FakeElasticsearch`] of the test's own. A real server that does not answer fails the test
//! with what to do; it never skips.
//!
//! Every index a test writes to comes from [`Target::index`]: unique, and deleted (with the
//! templates of [`Target::template_name`]) when the target is dropped, even after a panic.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the helper"
)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sluice_core::document::Document;
use sluice_core::outcome::ItemOutcome;
use sluice_elasticsearch::{EsAuth, EsSettings, EsWriter};
use sluice_testing::elasticsearch::FakeElasticsearch;
use sluice_testing::names::unique;
use sluice_testing::sink::encode_and_write;
use url::Url;

pub(crate) struct Target {
    fake: Option<FakeElasticsearch>,
    url: Url,
    auth: EsAuth,
    client: reqwest::Client,
    indices: Mutex<Vec<String>>,
    templates: Mutex<Vec<String>>,
    data_streams: Mutex<Vec<String>>,
}

impl Target {
    /// The real server of `ES_URL`, or a fresh fake.
    pub(crate) async fn start() -> Target {
        match std::env::var("ES_URL") {
            Ok(text) if !text.is_empty() => Target::real(&text).await,
            _ => Target::fake().await,
        }
    }

    /// Always a fake: for tests that inject faults or stop the server, which a real
    /// Elasticsearch cannot be told to do.
    pub(crate) async fn fake() -> Target {
        let fake = FakeElasticsearch::start().await;
        Target {
            url: fake.url(),
            fake: Some(fake),
            auth: EsAuth::None,
            client: reqwest::Client::new(),
            indices: Mutex::new(Vec::new()),
            templates: Mutex::new(Vec::new()),
            data_streams: Mutex::new(Vec::new()),
        }
    }

    async fn real(text: &str) -> Target {
        let url = Url::parse(text)
            .unwrap_or_else(|error| panic!("ES_URL {text:?} is not a URL: {error}"));
        let auth = match (
            std::env::var("ES_API_KEY"),
            std::env::var("ES_USERNAME"),
            std::env::var("ES_PASSWORD"),
        ) {
            (Ok(key), _, _) => EsAuth::ApiKey(SecretString::from(key)),
            (_, Ok(username), password) => EsAuth::Basic {
                username,
                password: SecretString::from(password.unwrap_or_default()),
            },
            _ => EsAuth::None,
        };
        let target = Target {
            fake: None,
            url,
            auth,
            client: reqwest::Client::new(),
            indices: Mutex::new(Vec::new()),
            templates: Mutex::new(Vec::new()),
            data_streams: Mutex::new(Vec::new()),
        };
        let answer = target
            .client
            .get(target.url.clone())
            .header("authorization", target.authorization().unwrap_or_default())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => target,
            Ok(response) => panic!(
                "Elasticsearch at {} answered {} to GET /: check ES_USERNAME/ES_PASSWORD or \
                 ES_API_KEY, or unset ES_URL to test against the fake",
                target.url,
                response.status()
            ),
            Err(error) => panic!(
                "Elasticsearch is not answering at {} ({error}): start it, or unset ES_URL to \
                 test against the fake",
                target.url
            ),
        }
    }

    pub(crate) fn is_real(&self) -> bool {
        self.fake.is_none()
    }

    /// The fake, for tests that only run against it.
    pub(crate) fn fake_server(&mut self) -> &mut FakeElasticsearch {
        self.fake
            .as_mut()
            .expect("this test runs against the fake only")
    }

    pub(crate) fn url(&self) -> Url {
        self.url.clone()
    }

    pub(crate) fn settings(&self) -> EsSettings {
        let mut settings = EsSettings::new(self.url.clone());
        settings.auth = self.auth.clone();
        settings.request_timeout = Duration::from_secs(30);
        settings
    }

    pub(crate) fn writer(&self) -> EsWriter {
        EsWriter::new(self.settings()).expect("valid settings")
    }

    /// A unique index name starting with `sluice-test-<label>-`, deleted at the end.
    pub(crate) fn index(&self, label: &str) -> String {
        let name = format!("{}-{label}", unique_prefix());
        self.indices.lock().expect("lock").push(name.clone());
        name
    }

    /// `name` (a variation of a name from [`Target::index`]), deleted at the end.
    pub(crate) fn also_delete(&self, name: String) -> String {
        self.indices.lock().expect("lock").push(name.clone());
        name
    }

    /// A unique data stream name, deleted (with its backing indices) at the end.
    pub(crate) fn data_stream(&self, label: &str) -> String {
        let name = format!("{}-{label}", unique_prefix());
        self.data_streams.lock().expect("lock").push(name.clone());
        name
    }

    /// A unique template name, deleted at the end.
    pub(crate) fn template_name(&self, label: &str) -> String {
        let name = format!("{}-{label}", unique_prefix());
        self.templates.lock().expect("lock").push(name.clone());
        name
    }

    fn authorization(&self) -> Option<String> {
        match &self.auth {
            EsAuth::None => None,
            EsAuth::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose_secret()))
            )),
            EsAuth::ApiKey(key) => Some(format!("ApiKey {}", key.expose_secret())),
        }
    }

    /// Any request, bypassing the writer: the status and the JSON answer (`null` when the
    /// body is empty or not JSON).
    pub(crate) async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let url = self.url.join(path).expect("a path");
        let mut request = self.client.request(method, url);
        if let Some(authorization) = self.authorization() {
            request = request.header("authorization", authorization);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("elasticsearch answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A raw NDJSON bulk body, bypassing the writer.
    pub(crate) async fn bulk_raw(&self, body: &str) -> (u16, Value) {
        let mut request = self
            .client
            .post(self.url.join("_bulk").expect("bulk url"))
            .header("content-type", "application/x-ndjson")
            .body(body.to_owned());
        if let Some(authorization) = self.authorization() {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.expect("elasticsearch answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Makes what was written searchable (a real cluster refreshes every second).
    pub(crate) async fn refresh(&self, index: &str) {
        let (status, answer) = self
            .request(reqwest::Method::POST, &format!("{index}/_refresh"), None)
            .await;
        assert_eq!(status, 200, "refresh {index}: {answer}");
    }

    /// The number of documents in `index` (after a refresh).
    pub(crate) async fn count(&self, index: &str) -> u64 {
        self.refresh(index).await;
        let (status, answer) = self
            .request(reqwest::Method::GET, &format!("{index}/_count"), None)
            .await;
        assert_eq!(status, 200, "count {index}: {answer}");
        answer["count"].as_u64().expect("a count")
    }

    /// `GET /<index>/_doc/<id>`: the whole answer.
    pub(crate) async fn get(&self, index: &str, id: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, &format!("{index}/_doc/{id}"), None)
            .await
    }

    /// A search (after a refresh): the whole answer.
    pub(crate) async fn search(&self, index: &str, body: Value) -> Value {
        self.refresh(index).await;
        let (status, answer) = self
            .request(
                reqwest::Method::POST,
                &format!("{index}/_search"),
                Some(&body),
            )
            .await;
        assert_eq!(status, 200, "search {index} {body}: {answer}");
        answer
    }

    /// The `_id`s of a search's hits, in order.
    pub(crate) async fn search_ids(&self, index: &str, body: Value) -> Vec<String> {
        let answer = self.search(index, body).await;
        answer["hits"]["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|hit| hit["_id"].as_str().expect("an id").to_owned())
            .collect()
    }

    /// The mapping of one index, as `GET /<index>/_mapping` answers it.
    pub(crate) async fn mapping(&self, index: &str) -> Value {
        let (status, answer) = self
            .request(reqwest::Method::GET, &format!("{index}/_mapping"), None)
            .await;
        assert_eq!(status, 200, "mapping {index}: {answer}");
        answer[index]["mappings"].clone()
    }
}

impl Drop for Target {
    /// Deletes the test's indices, data streams and templates with blocking requests, so that it also
    /// happens when a test panics. Only a real server needs it (and only over plain http).
    fn drop(&mut self) {
        if self.fake.is_some() || self.url.scheme() != "http" {
            return;
        }
        let indices = self
            .indices
            .lock()
            .map(|names| names.clone())
            .unwrap_or_default();
        let templates = self
            .templates
            .lock()
            .map(|names| names.clone())
            .unwrap_or_default();
        let data_streams = self
            .data_streams
            .lock()
            .map(|names| names.clone())
            .unwrap_or_default();
        for index in indices {
            self.blocking_delete(&index);
        }
        // Before the templates: a template that a data stream uses cannot be deleted.
        for data_stream in data_streams {
            self.blocking_delete(&format!("_data_stream/{data_stream}"));
        }
        for template in templates {
            self.blocking_delete(&format!("_index_template/{template}"));
        }
    }
}

impl Target {
    fn blocking_delete(&self, path: &str) {
        let (Some(host), Some(port)) = (self.url.host_str(), self.url.port_or_known_default())
        else {
            return;
        };
        let prefix = self.url.path().trim_end_matches('/');
        let authorization = self
            .authorization()
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        let request =
            format!("DELETE {prefix}/{path} HTTP/1.0\r\nHost: {host}\r\n{authorization}\r\n");
        if let Ok(mut stream) = TcpStream::connect((host, port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
            }
        }
    }
}

/// `sluice-test-` and what makes it this test's own (lower case, as index names must be).
fn unique_prefix() -> String {
    unique("sluice-test")
}

/// A Cloudify-like event document with a deterministic id.
pub(crate) fn event(index: &str, number: usize) -> Document {
    let source = json!({
        "@timestamp": format!("2016-06-15T10:13:{:02}.{:03}Z", number % 60, number % 1000),
        "type": "cloudify_event",
        "event_type": if number.is_multiple_of(2) { "task_succeeded" } else { "task_started" },
        "message_code": null,
        "message": {"text": format!("Task succeeded 'script_runner.tasks.run' #{number}"), "arguments": null},
        "context": {
            "blueprint_id": "nodecellar",
            "deployment_id": "nodecellar",
            "execution_id": format!("exec-{}", number % 3),
            "workflow_id": "install",
            "task_current_retries": 0,
            "task_total_retries": -1,
            "node_id": format!("nodejs_{number}"),
        },
        "sequence": number,
    });
    document(index, &format!("event-{number:04}"), &source.to_string())
}

pub(crate) fn document(index: &str, id: &str, source: &str) -> Document {
    Document {
        index: index.to_owned(),
        id: id.to_owned(),
        source: Bytes::copy_from_slice(source.as_bytes()),
    }
}

/// Writes documents as the events path does: each is encoded by the sink in turn (a refusal
/// is that document's outcome), then the encoded ones are written in one batch.
pub(crate) async fn write(writer: &EsWriter, documents: &[Document]) -> Vec<ItemOutcome> {
    encode_and_write::<_, Document, _>(writer, documents.iter().map(Ok)).await
}

pub(crate) fn assert_all_delivered(outcomes: &[ItemOutcome], count: usize) {
    assert_eq!(outcomes.len(), count);
    for (position, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome, &ItemOutcome::Delivered, "item {position}");
    }
}
