//! A tiny HTTP server on 127.0.0.1:0 that records every request and answers from a closure: the
//! double of an HTTP peer for what the real one cannot show here (InfluxDB 2's API, which
//! cannot be installed; 413, 429, 401 and slow answers, which InfluxDB 1.x does not give on
//! demand).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use url::Url;

/// One request as the server saw it; `body` is gunzipped when it came gzipped.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: Method,
    pub path: String,
    /// The query string as sent, without the `?`.
    pub raw_query: String,
    pub query: BTreeMap<String, String>,
    pub headers: HeaderMap,
    pub body: String,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn lines(&self) -> Vec<&str> {
        self.body.lines().collect()
    }
}

/// What to answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn with_body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Responder = Arc<dyn Fn(&Captured) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Shared {
    responder: Responder,
    captured: Arc<Mutex<Vec<Captured>>>,
}

pub struct RecordingServer {
    pub url: Url,
    captured: Arc<Mutex<Vec<Captured>>>,
    server: tokio::task::JoinHandle<()>,
}

impl RecordingServer {
    pub async fn start(responder: impl Fn(&Captured) -> Reply + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        let captured = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            responder: Arc::new(responder),
            captured: Arc::clone(&captured),
        };
        let app = Router::new().fallback(handle).with_state(shared);
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the recording server serves");
        });
        Self {
            url: format!("http://{address}/").parse().expect("url"),
            captured,
            server,
        }
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Captured> {
        self.captured.lock().expect("lock").clone()
    }
}

impl Drop for RecordingServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gzipped = headers
        .get("content-encoding")
        .is_some_and(|value| value == "gzip");
    let body = if gzipped {
        let mut decoded = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut decoded)
            .expect("body is valid gzip");
        decoded
    } else {
        String::from_utf8(body.to_vec()).expect("body is utf-8")
    };
    let captured = Captured {
        method,
        path: uri.path().to_owned(),
        raw_query: uri.query().unwrap_or_default().to_owned(),
        query: url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect(),
        headers,
        body,
    };
    let reply = (shared.responder)(&captured);
    shared.captured.lock().expect("lock").push(captured);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).expect("valid status");
    let mut response = (status, reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).expect("header value"),
        );
    }
    response
}
