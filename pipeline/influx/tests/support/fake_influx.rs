//! A tiny HTTP server on 127.0.0.1:0 that records every request and answers from a closure:
//! for what a real InfluxDB 1.x cannot show here (the v2 API, 413, 429, 401, slow answers).

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
pub(crate) struct Captured {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: BTreeMap<String, String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Captured {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub(crate) fn lines(&self) -> Vec<&str> {
        self.body.lines().collect()
    }
}

/// What to answer.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: String,
    pub(crate) delay: Duration,
}

impl Reply {
    pub(crate) fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub(crate) fn with_body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub(crate) fn after(mut self, delay: Duration) -> Self {
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

pub(crate) struct FakeInflux {
    pub(crate) url: Url,
    captured: Arc<Mutex<Vec<Captured>>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeInflux {
    pub(crate) async fn start(
        responder: impl Fn(&Captured) -> Reply + Send + Sync + 'static,
    ) -> Self {
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
                .expect("fake influx serves");
        });
        Self {
            url: format!("http://{address}/").parse().expect("url"),
            captured,
            server,
        }
    }

    /// Every request so far, in order.
    pub(crate) fn requests(&self) -> Vec<Captured> {
        self.captured.lock().expect("lock").clone()
    }
}

impl Drop for FakeInflux {
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
