//! [`FakeElasticsearch`]: an in-process HTTP server that answers as Elasticsearch 8 does, for
//! integration tests (Elasticsearch cannot be installed on the development machines). It binds
//! `127.0.0.1:0`, keeps everything in memory, and can be told to fail.
//!
//! # What it reproduces
//!
//! - `POST /_bulk` and `POST /<index>/_bulk` with ES 8's bulk parser: an action line then a
//!   source line (none for `delete`); actions `index`, `create`, `update`, `delete`; `_index`
//!   required (or from the path); the body must end with a newline; a last action without its
//!   source line is dropped; unknown metadata (`_type` included, as in 8.x) refused. A
//!   malformed line refuses the whole request with 400 and ES's error texts and shapes
//!   (`illegal_argument_exception`, `x_content_parse_exception`,
//!   `action_request_validation_exception`, `{"error":{"root_cause":[..],..},"status":400}`).
//! - Per-item answers with ES's shapes: 201 `created` with `_version`, `_seq_no`,
//!   `_primary_term`, `_shards`; 200 `updated`/`deleted`/`noop`; 404 `not_found`; 409
//!   `version_conflict_engine_exception` (`[<id>]: version conflict, document already exists
//!   (current version [1])`) for a `create` of an existing id; 404 `document_missing_exception`
//!   for an update of a missing document; 400 `invalid_index_name_exception`; ids generated
//!   when none is given.
//! - Indices created on first write, with a dynamic mapping per index: the first value of a
//!   field fixes its type (`long`, `float`, `boolean`, `object`, `date` for strings in the
//!   default date formats, `text` with a `keyword` sub-field otherwise); later values are
//!   coerced as ES coerces them, or the document gets a 400 item `document_parsing_exception`
//!   (`[1:14] failed to parse field [x] of type [long] in document with id '2'. Preview of
//!   field's value: 'abc'`, with `caused_by`) and adds no field; the 1000-field limit
//!   (`illegal_argument_exception`); `dynamic: strict` and `false`, `date_detection`.
//! - `PUT`/`GET`/`DELETE /_index_template/<name>` (composable templates: `index_patterns`,
//!   `priority`, `template.mappings` applied to indices created later, the same-priority
//!   overlap refusal); data streams: the first `create` into a name whose template has
//!   `data_stream` makes the stream and its backing index `.ds-<name>-<yyyy.MM.dd>-000001`
//!   (hidden from patterns that do not start with `.`), other op types and documents without
//!   `@timestamp` refused as ES refuses them, the stream name resolving to its backing index
//!   for `_search`, `_count`, `_mapping`, and `GET`/`DELETE /_data_stream/<name>` (no
//!   rollover); `GET /` (cluster info, `version.number` `8.15.0`), `GET /<index>/_count`,
//!   `GET|POST /<index>/_search` (the `query` module says which queries), `POST /<index>/_refresh`,
//!   `GET /<index>/_mapping`, `GET /<index>/_doc/<id>`, `DELETE /<index>`, `HEAD /<index>`;
//!   index expressions with `,`, `*` and `_all`; `index_not_found_exception` for a missing
//!   concrete index; the 10 000 result window; `_source` returned byte for byte.
//! - `Content-Encoding: gzip` (and `deflate`) request bodies; `Content-Type` checked (406 for
//!   anything but JSON and NDJSON); `http.max_content_length` (413, see
//!   [`FakeElasticsearch::set_max_content_length`]; 100 MiB by default, as in ES); security
//!   (401 `security_exception` with `WWW-Authenticate`, see
//!   [`FakeElasticsearch::require_basic_auth`]); the `X-elastic-product: Elasticsearch` header.
//! - Faults: per-id 429 `es_rejected_execution_exception` items, whole-request statuses (503,
//!   413, 429, ...) with an optional `Retry-After`, slow answers, and stop/restart on the same
//!   port with the data kept (connections are refused while stopped).
//!
//! # What it does not
//!
//! Shards, replicas, routing and cluster state; near-real-time visibility (a document is
//! searchable as soon as it is written, `_refresh` is a no-op); optimistic concurrency
//! (`if_seq_no`, `version`) and update scripts; ingest pipelines, aliases, data stream rollover;
//! analysers beyond lower-cased words, relevance scores (every hit scores 1.0), aggregations,
//! `range` and most other queries; mapping types beyond those listed (others accept anything);
//! bare `yyyy` dates; positions in parse errors are close, not exact; smile/cbor/yaml bodies;
//! persistence beyond the value's lifetime.

mod bulk;
mod dates;
mod mapping;
mod query;
mod store;

use std::collections::{HashMap, VecDeque};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use url::Url;

use self::query::SearchRequest;
use self::store::{Store, index_not_found};
use crate::stoppable::{StoppableServer, bind_reusable};

/// Elasticsearch's default `http.max_content_length`.
const DEFAULT_MAX_CONTENT_LENGTH: usize = 100 * 1024 * 1024;
/// Bulk requests kept in [`FakeElasticsearch::bulk_log`]: the most recent ones.
const BULK_LOG_CAPACITY: usize = 1024;
/// The version `GET /` reports.
pub const VERSION: &str = "8.15.0";

/// An in-process Elasticsearch 8 for tests; see the [module documentation](self).
///
/// The data lives as long as this value, across [`stop`](Self::stop) and
/// [`restart`](Self::restart). Dropping it shuts the server down.
pub struct FakeElasticsearch {
    address: SocketAddr,
    shared: Arc<Shared>,
    server: Option<StoppableServer>,
}

/// One bulk request as the fake received it (decompressed), for assertions.
#[derive(Debug, Clone)]
pub struct BulkRecord {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// The body's size as sent (compressed when it was).
    pub wire_bytes: usize,
    /// The body decompressed, as text.
    pub body: String,
    /// The HTTP status the fake answered.
    pub status: u16,
}

impl BulkRecord {
    /// The action lines' documents: the number of `index`/`create`/`update`/`delete` actions.
    pub fn actions(&self) -> usize {
        bulk::parse_bulk(&self.body, Some("_")).map_or(0, |operations| operations.len())
    }
}

struct Shared {
    state: Mutex<FakeState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct FakeState {
    store: Store,
    /// Ids whose next writes answer 429, with how many times left.
    items_429: HashMap<String, usize>,
    /// The share of all item writes that answer 429, and how far the spread has got: a
    /// running sum that rejects an item each time it passes a whole number, so exactly that
    /// share is rejected, evenly, with no randomness to make a test flaky.
    share_429: f64,
    share_429_sum: f64,
    /// Items answered 429, by either of the above.
    items_rejected_429: usize,
    /// Statuses the next bulk requests answer as a whole.
    whole_request: VecDeque<u16>,
    retry_after: Option<Duration>,
    /// How long every answer waits before it is sent.
    response_delay: Duration,
    max_content_length: usize,
    /// `Authorization` values accepted; empty: security off.
    authorizations: Vec<String>,
    bulk_requests: usize,
    bulk_log: VecDeque<BulkRecord>,
}

/// An error answered as Elasticsearch shapes it:
/// `{"error":{"root_cause":[{"type":..,"reason":..}],"type":..,"reason":..},"status":..}`.
#[derive(Debug, Clone)]
struct Failure {
    status: u16,
    kind: &'static str,
    reason: String,
    extra: Map<String, Value>,
}

impl Failure {
    fn new(status: u16, kind: &'static str, reason: String) -> Failure {
        Failure {
            status,
            kind,
            reason,
            extra: Map::new(),
        }
    }

    fn illegal_argument(reason: impl Into<String>) -> Failure {
        Failure::new(400, "illegal_argument_exception", reason.into())
    }

    fn with(mut self, key: &str, value: Value) -> Failure {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// The `error` object of an item, or the cause of a whole-request error.
    fn error_json(&self) -> Value {
        let mut error = Map::new();
        error.insert("type".into(), json!(self.kind));
        error.insert("reason".into(), json!(self.reason));
        error.extend(self.extra.clone());
        Value::Object(error)
    }

    fn reply(&self) -> Reply {
        let cause = self.error_json();
        let mut error = cause.as_object().cloned().unwrap_or_default();
        error.insert("root_cause".into(), json!([cause]));
        Reply::json(self.status, &json!({"error": error, "status": self.status}))
    }
}

/// What the router answers, before it becomes an HTTP response.
struct Reply {
    status: u16,
    body: Vec<u8>,
    headers: Vec<(HeaderName, String)>,
}

impl Reply {
    fn json(status: u16, body: &impl Serialize) -> Reply {
        Reply {
            status,
            body: serde_json::to_vec(body).unwrap_or_default(),
            headers: vec![(
                HeaderName::from_static("content-type"),
                "application/json".to_owned(),
            )],
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: Vec::new(),
            headers: Vec::new(),
        }
    }

    fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((HeaderName::from_static(name), value));
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            HeaderName::from_static("x-elastic-product"),
            HeaderValue::from_static("Elasticsearch"),
        );
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.append(name, value);
            }
        }
        response
    }
}

impl FakeElasticsearch {
    /// Binds `127.0.0.1:0` and serves. Panics when it cannot bind (a test fixture).
    pub async fn start() -> FakeElasticsearch {
        Self::start_on("127.0.0.1:0".parse().expect("a socket address")).await
    }

    /// Binds `address` and serves: for a load run that points an unchanged `sluice` at its
    /// default `127.0.0.1:9200`. Panics when it cannot bind (a test fixture).
    pub async fn start_on(address: SocketAddr) -> FakeElasticsearch {
        let listener = bind_reusable(address)
            .unwrap_or_else(|error| panic!("FakeElasticsearch cannot bind {address}: {error}"));
        let address = listener
            .local_addr()
            .expect("FakeElasticsearch has a local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(FakeState {
                store: Store::default(),
                items_429: HashMap::new(),
                share_429: 0.0,
                share_429_sum: 0.0,
                items_rejected_429: 0,
                whole_request: VecDeque::new(),
                retry_after: None,
                response_delay: Duration::ZERO,
                max_content_length: DEFAULT_MAX_CONTENT_LENGTH,
                authorizations: Vec::new(),
                bulk_requests: 0,
                bulk_log: VecDeque::new(),
            }),
        });
        let server = serve(listener, Arc::clone(&shared));
        FakeElasticsearch {
            address,
            shared,
            server: Some(server),
        }
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}/", self.address)).expect("a valid url")
    }

    /// The next `times` writes (any action) of each of these `_id`s answer a 429
    /// `es_rejected_execution_exception` item, as a node whose write queue is full does.
    pub fn fail_items_with_429(&self, ids: impl IntoIterator<Item = String>, times: usize) {
        let mut state = self.shared.lock();
        for id in ids {
            state.items_429.insert(id, times);
        }
    }

    /// From now on, `share` (0 to 1) of all item writes answer a 429
    /// `es_rejected_execution_exception`, spread evenly, as a node under a sustained overload
    /// does; `0.0` ends it.
    pub fn reject_share_of_items_with_429(&self, share: f64) {
        let mut state = self.shared.lock();
        state.share_429 = share.clamp(0.0, 1.0);
        state.share_429_sum = 0.0;
    }

    /// The next `times` bulk requests are answered `status` as a whole, with the body ES (or,
    /// for 413, its HTTP layer) gives: 503 `cluster_block_exception`, 429
    /// `es_rejected_execution_exception`, 413 empty, 401 `security_exception`, ... Calls queue
    /// up: `respond_whole_request(503, 1)` then `respond_whole_request(413, 1)` answers 503 and
    /// then 413.
    pub fn respond_whole_request(&self, status: u16, times: usize) {
        let mut state = self.shared.lock();
        state
            .whole_request
            .extend(std::iter::repeat_n(status, times));
    }

    /// A `Retry-After` (in seconds) on injected 429 and 503 answers, as a proxy in front of
    /// Elasticsearch may send. ES itself sends none.
    pub fn set_retry_after(&self, retry_after: Option<Duration>) {
        self.shared.lock().retry_after = retry_after;
    }

    /// Every answer waits `delay` before it is sent, as an overloaded node's do (for client
    /// timeouts).
    pub fn delay_responses(&self, delay: Duration) {
        self.shared.lock().response_delay = delay;
    }

    /// `http.max_content_length`: bulk bodies (decompressed) over it are answered 413.
    pub fn set_max_content_length(&self, bytes: usize) {
        self.shared.lock().max_content_length = bytes;
    }

    /// Turns security on (if it was not) and accepts these basic-auth credentials.
    pub fn require_basic_auth(&self, username: &str, password: &str) {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        self.shared
            .lock()
            .authorizations
            .push(format!("Basic {encoded}"));
    }

    /// Turns security on (if it was not) and accepts this API key (`Authorization: ApiKey ..`).
    pub fn require_api_key(&self, encoded_key: &str) {
        self.shared
            .lock()
            .authorizations
            .push(format!("ApiKey {encoded_key}"));
    }

    /// Stops serving: connections are refused until [`restart`](Self::restart). Open
    /// keep-alive connections are closed; what is stored stays.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// Serves again on the same port, with the same data (stops first if running). Panics
    /// when the port was taken meanwhile.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener =
            bind_reusable(self.address).expect("FakeElasticsearch binds its port again on restart");
        self.server = Some(serve(listener, Arc::clone(&self.shared)));
    }

    /// The sources stored in the indices `index` names (a name, a `*` pattern, or a
    /// comma-separated list), in write order per index.
    pub fn documents(&self, index: &str) -> Vec<Value> {
        let state = self.shared.lock();
        let names = expression_names(&state.store, index);
        names
            .iter()
            .filter_map(|name| state.store.indices.get(name))
            .flat_map(|index| {
                index
                    .in_write_order()
                    .into_iter()
                    .map(|(_, document)| Value::Object(document.value.clone()))
            })
            .collect()
    }

    /// How many items were answered 429 (by [`fail_items_with_429`](Self::fail_items_with_429)
    /// or [`reject_share_of_items_with_429`](Self::reject_share_of_items_with_429)).
    pub fn items_rejected_429(&self) -> usize {
        self.shared.lock().items_rejected_429
    }

    /// How many bulk requests reached the server (refused ones included).
    pub fn bulk_requests(&self) -> usize {
        self.shared.lock().bulk_requests
    }

    /// The most recent bulk requests (up to 1024), oldest first.
    pub fn bulk_log(&self) -> Vec<BulkRecord> {
        self.shared.lock().bulk_log.iter().cloned().collect()
    }
}

/// The names an expression resolves to, without failing on missing concrete names.
fn expression_names(store: &Store, expression: &str) -> Vec<String> {
    expression
        .split(',')
        .flat_map(|part| store.resolve(part).unwrap_or_default())
        .collect()
}

fn serve(listener: TcpListener, shared: Arc<Shared>) -> StoppableServer {
    let app = Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(DEFAULT_MAX_CONTENT_LENGTH))
        .with_state(shared);
    StoppableServer::serve(listener, app)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = route(&shared, &method, &uri, &headers, &body);
    let delay = shared.lock().response_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if method == Method::HEAD {
        return Reply {
            body: Vec::new(),
            ..reply
        }
        .into_response();
    }
    reply.into_response()
}

fn route(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Reply {
    let mut state = shared.lock();
    let path = uri.path();
    if let Some(refusal) = authenticate(&state, headers, path) {
        return refusal;
    }
    let segments: Vec<String> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let is = |expected: &Method| method == expected;
    let reading = is(&Method::GET) || is(&Method::POST);

    let result = match segments.as_slice() {
        [] if is(&Method::GET) || is(&Method::HEAD) => Ok(cluster_info()),
        ["_bulk"] if is(&Method::POST) || is(&Method::PUT) => {
            return bulk(&mut state, None, headers, body);
        }
        [index, "_bulk"] if is(&Method::POST) || is(&Method::PUT) => {
            return bulk(&mut state, Some(index), headers, body);
        }
        ["_index_template", name] if is(&Method::PUT) || is(&Method::POST) => {
            put_template(&mut state, name, headers, body)
        }
        ["_index_template", name] if is(&Method::GET) => get_template(&state, name),
        ["_index_template", name] if is(&Method::DELETE) => {
            match state.store.templates.remove(*name) {
                Some(_) => Ok(Reply::json(200, &json!({"acknowledged": true}))),
                None => Err(template_not_found(name)),
            }
        }
        ["_data_stream", name] if is(&Method::GET) => get_data_stream(&state, name),
        ["_data_stream", name] if is(&Method::DELETE) => {
            match state.store.data_streams.remove(*name) {
                Some(stream) => {
                    for index in &stream.backing_indices {
                        state.store.indices.remove(index);
                    }
                    Ok(Reply::json(200, &json!({"acknowledged": true})))
                }
                None => Err(index_not_found(name)),
            }
        }
        ["_count"] if reading => count(&state, "_all", headers, body),
        [index, "_count"] if reading => count(&state, index, headers, body),
        ["_search"] if reading => search(&state, "_all", headers, body),
        [index, "_search"] if reading => search(&state, index, headers, body),
        ["_refresh"] if reading => refresh(&state, "_all"),
        [index, "_refresh"] if reading => refresh(&state, index),
        [index, "_mapping"] if is(&Method::GET) => get_mapping(&state, index),
        [index, "_doc", id] if is(&Method::GET) => get_document(&state, index, id),
        [index] if is(&Method::DELETE) => delete_index(&mut state, index),
        [index] if is(&Method::HEAD) => {
            Ok(Reply::empty(if state.store.indices.contains_key(*index) {
                200
            } else {
                404
            }))
        }
        _ => Ok(Reply::json(
            400,
            &json!({
                "error": format!("no handler found for uri [{uri}] and method [{method}]"),
                "status": 400,
            }),
        )),
    };
    result.unwrap_or_else(|failure| failure.reply())
}

/// With security on, a request without accepted credentials gets ES's 401.
fn authenticate(state: &FakeState, headers: &HeaderMap, path: &str) -> Option<Reply> {
    if state.authorizations.is_empty() {
        return None;
    }
    let given = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok());
    if given.is_some_and(|given| {
        state
            .authorizations
            .iter()
            .any(|accepted| accepted == given)
    }) {
        return None;
    }
    let reason = match given {
        None => format!("missing authentication credentials for REST request [{path}]"),
        Some(value) if value.starts_with("Basic ") => {
            let user = base64::engine::general_purpose::STANDARD
                .decode(value.trim_start_matches("Basic ").trim())
                .ok()
                .and_then(|decoded| String::from_utf8(decoded).ok())
                .and_then(|text| text.split_once(':').map(|(user, _)| user.to_owned()))
                .unwrap_or_default();
            format!("unable to authenticate user [{user}] for REST request [{path}]")
        }
        Some(_) => "unable to authenticate with provided credentials and anonymous access is not \
                    allowed for this request"
            .to_owned(),
    };
    let challenge = json!({"WWW-Authenticate": [
        "Basic realm=\"security\", charset=\"UTF-8\"",
        "ApiKey"
    ]});
    Some(
        Failure::new(401, "security_exception", reason)
            .with("header", challenge)
            .reply()
            .with_header(
                "www-authenticate",
                "Basic realm=\"security\", charset=\"UTF-8\"".to_owned(),
            )
            .with_header("www-authenticate", "ApiKey".to_owned()),
    )
}

fn cluster_info() -> Reply {
    Reply::json(
        200,
        &json!({
            "name": "fake-node-1",
            "cluster_name": "sluice-fake",
            "cluster_uuid": "c2x1aWNlLWZha2UtZXMtY2x1c3Rlcg",
            "version": {
                "number": VERSION,
                "build_flavor": "default",
                "build_type": "tar",
                "build_hash": "fake",
                "build_date": "2024-08-05T10:05:34.233336849Z",
                "build_snapshot": false,
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }),
    )
}

/// The body as text: decompressed per `Content-Encoding`, its `Content-Type` checked.
fn read_body(headers: &HeaderMap, body: &[u8], required: bool) -> Result<String, Reply> {
    if body.is_empty() && !required {
        return Ok(String::new());
    }
    let content_type = header_text(headers, "content-type");
    let media_type = content_type
        .as_deref()
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let accepted = [
        "application/json",
        "application/x-ndjson",
        "application/vnd.elasticsearch+json",
        "application/vnd.elasticsearch+x-ndjson",
    ];
    if content_type.is_none() {
        return Err(Reply::json(
            406,
            &json!({"error": "Content-Type header is missing", "status": 406}),
        ));
    }
    if !accepted.contains(&media_type.as_str()) {
        return Err(Reply::json(
            406,
            &json!({
                "error": format!(
                    "Content-Type header [{}] is not supported",
                    content_type.unwrap_or_default()
                ),
                "status": 406,
            }),
        ));
    }
    let decoded = match header_text(headers, "content-encoding").as_deref() {
        Some("gzip") => {
            let mut decoded = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut decoded)
                .map_err(|error| {
                    Failure::illegal_argument(format!("cannot decompress the body: {error}"))
                        .reply()
                })?;
            decoded
        }
        Some("deflate") => {
            let mut decoded = Vec::new();
            flate2::read::ZlibDecoder::new(body)
                .read_to_end(&mut decoded)
                .map_err(|error| {
                    Failure::illegal_argument(format!("cannot decompress the body: {error}"))
                        .reply()
                })?;
            decoded
        }
        _ => body.to_vec(),
    };
    String::from_utf8(decoded).map_err(|error| {
        Failure::new(
            400,
            "x_content_parse_exception",
            format!("Invalid UTF-8 in the body: {error}"),
        )
        .reply()
    })
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn bulk(state: &mut FakeState, path_index: Option<&str>, headers: &HeaderMap, raw: &[u8]) -> Reply {
    let started = Instant::now();
    state.bulk_requests += 1;
    let content_type = header_text(headers, "content-type");
    let content_encoding = header_text(headers, "content-encoding");
    let decoded = read_body(headers, raw, true);
    let body_text = match &decoded {
        Ok(text) => text.clone(),
        Err(_) => String::from_utf8_lossy(raw).into_owned(),
    };
    let reply = bulk_reply(state, path_index, decoded, started);
    if state.bulk_log.len() == BULK_LOG_CAPACITY {
        state.bulk_log.pop_front();
    }
    state.bulk_log.push_back(BulkRecord {
        content_type,
        content_encoding,
        wire_bytes: raw.len(),
        body: body_text,
        status: reply.status,
    });
    reply
}

impl FakeState {
    /// Whether the next item write is one of the share that
    /// [`FakeElasticsearch::reject_share_of_items_with_429`] set.
    fn take_share_429(&mut self) -> bool {
        if self.share_429 <= 0.0 {
            return false;
        }
        self.share_429_sum += self.share_429;
        let rejected = self.share_429_sum >= 1.0;
        if rejected {
            self.share_429_sum -= 1.0;
        }
        rejected
    }
}

fn bulk_reply(
    state: &mut FakeState,
    path_index: Option<&str>,
    decoded: Result<String, Reply>,
    started: Instant,
) -> Reply {
    if let Some(status) = state.whole_request.pop_front() {
        return injected_failure(status, state.retry_after);
    }
    let body = match decoded {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    if body.len() > state.max_content_length {
        // ES's HTTP layer refuses the body before any parsing, with no JSON.
        return Reply::empty(413);
    }
    let operations = match bulk::parse_bulk(&body, path_index) {
        Ok(operations) => operations,
        Err(failure) => return failure.reply(),
    };
    let mut errors = false;
    let mut items = Vec::with_capacity(operations.len());
    for operation in &operations {
        let throttled = match operation
            .id
            .as_ref()
            .and_then(|id| state.items_429.get_mut(id))
        {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => state.take_share_429(),
        };
        let item = if throttled {
            state.items_rejected_429 += 1;
            rejected_execution_item(operation, body.len())
        } else {
            state.store.execute(operation)
        };
        let status = item
            .as_object()
            .and_then(|object| object.values().next())
            .and_then(|result| result.get("status"))
            .and_then(Value::as_u64)
            .unwrap_or(500);
        // ES counts a 404 delete (`not_found`) as no error.
        if status >= 400
            && item
                .pointer(&format!("/{}/error", operation.op_type.name()))
                .is_some()
        {
            errors = true;
        }
        items.push(item);
    }
    let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Reply::json(
        200,
        &json!({"took": took, "errors": errors, "items": items}),
    )
}

fn rejected_execution_item(operation: &bulk::Operation<'_>, bytes: usize) -> Value {
    json!({ operation.op_type.name(): {
        "_index": operation.index,
        "_id": operation.id,
        "status": 429,
        "error": {
            "type": "es_rejected_execution_exception",
            "reason": format!(
                "rejected execution of primary operation [shard_detail=[{}][0][P], \
                 shard_max_coordinating_and_primary_bytes=0, shard_max_primary_bytes=0] OR \
                 [node_coordinating_and_primary_bytes=0, node_replica_bytes=0, \
                 node_all_bytes=0, node_operation_bytes={bytes}, \
                 node_max_coordinating_and_primary_bytes=107374182]",
                operation.index
            ),
        },
    }})
}

/// A whole-request answer injected by [`FakeElasticsearch::respond_whole_request`].
fn injected_failure(status: u16, retry_after: Option<Duration>) -> Reply {
    let failure = match status {
        413 => return Reply::empty(413),
        400 => Failure::illegal_argument("injected by FakeElasticsearch::respond_whole_request"),
        401 => Failure::new(
            401,
            "security_exception",
            "unable to authenticate user [sluice] for REST request [/_bulk]".to_owned(),
        ),
        403 => Failure::new(
            403,
            "security_exception",
            "action [indices:data/write/bulk] is unauthorized for user [sluice] with effective \
             roles [viewer]"
                .to_owned(),
        ),
        429 => Failure::new(
            429,
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, \
             replica_bytes=0, all_bytes=0, coordinating_operation_bytes=0, \
             max_coordinating_and_primary_bytes=107374182]"
                .to_owned(),
        ),
        503 => Failure::new(
            503,
            "cluster_block_exception",
            "blocked by: [SERVICE_UNAVAILABLE/2/no master];".to_owned(),
        ),
        other => Failure::new(
            other,
            "exception",
            "injected by FakeElasticsearch::respond_whole_request".to_owned(),
        ),
    };
    let reply = failure.reply();
    match retry_after {
        Some(after) if status == 429 || status == 503 => {
            reply.with_header("retry-after", after.as_secs().to_string())
        }
        _ => reply,
    }
}

fn parse_json_body(headers: &HeaderMap, body: &[u8]) -> Result<Option<Value>, Reply> {
    let text = read_body(headers, body, false)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&text).map(Some).map_err(|error| {
        Failure::new(
            400,
            "x_content_parse_exception",
            format!("[{}:{}] {error}", error.line(), error.column()),
        )
        .reply()
    })
}

fn put_template(
    state: &mut FakeState,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply, Failure> {
    let body = match parse_json_body(headers, body) {
        Ok(body) => body,
        Err(reply) => return Ok(reply),
    };
    let Some(body) = body else {
        return Err(Failure::new(
            400,
            "parse_exception",
            "request body is required".to_owned(),
        ));
    };
    state.store.put_template(name, body)?;
    Ok(Reply::json(200, &json!({"acknowledged": true})))
}

fn template_not_found(name: &str) -> Failure {
    Failure::new(
        404,
        "resource_not_found_exception",
        format!("index template matching [{name}] not found"),
    )
}

fn get_template(state: &FakeState, name: &str) -> Result<Reply, Failure> {
    let templates: Vec<Value> = state
        .store
        .templates
        .iter()
        .filter(|(candidate, _)| store::glob_matches(name, candidate))
        .map(|(name, template)| json!({"name": name, "index_template": template.body}))
        .collect();
    if templates.is_empty() {
        return Err(template_not_found(name));
    }
    Ok(Reply::json(200, &json!({"index_templates": templates})))
}

/// `GET /_data_stream/<name>`: the stream, its template and backing indices.
fn get_data_stream(state: &FakeState, name: &str) -> Result<Reply, Failure> {
    let streams: Vec<Value> = state
        .store
        .data_streams
        .iter()
        .filter(|(candidate, _)| store::glob_matches(name, candidate))
        .map(|(name, stream)| {
            let indices: Vec<Value> = stream
                .backing_indices
                .iter()
                .map(|index| {
                    let uuid = state
                        .store
                        .indices
                        .get(index)
                        .map(|index| index.uuid.clone());
                    json!({"index_name": index, "index_uuid": uuid})
                })
                .collect();
            json!({
                "name": name,
                "timestamp_field": {"name": "@timestamp"},
                "indices": indices,
                "generation": stream.backing_indices.len(),
                "status": "GREEN",
                "template": stream.template,
                "hidden": false,
            })
        })
        .collect();
    if streams.is_empty() && !name.contains('*') {
        return Err(index_not_found(name));
    }
    Ok(Reply::json(200, &json!({"data_streams": streams})))
}

fn count(
    state: &FakeState,
    expression: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply, Failure> {
    let body = match parse_json_body(headers, body) {
        Ok(body) => body,
        Err(reply) => return Ok(reply),
    };
    let query = match body.as_ref().and_then(|body| body.get("query")) {
        Some(query) => query::Query::parse(query)?,
        None => query::Query::MatchAll,
    };
    let names = state.store.resolve(expression)?;
    let mut count = 0usize;
    for name in &names {
        if let Some(index) = state.store.indices.get(name) {
            count += index
                .documents
                .iter()
                .filter(|(id, document)| query.matches(index, id, document))
                .count();
        }
    }
    Ok(Reply::json(
        200,
        &json!({
            "count": count,
            "_shards": {"total": names.len(), "successful": names.len(), "skipped": 0, "failed": 0},
        }),
    ))
}

#[derive(Serialize)]
struct SearchResponse {
    took: u64,
    timed_out: bool,
    #[serde(rename = "_shards")]
    shards: Value,
    hits: SearchHits,
}

#[derive(Serialize)]
struct SearchHits {
    total: Value,
    max_score: Option<f64>,
    hits: Vec<SearchHit>,
}

#[derive(Serialize)]
struct SearchHit {
    #[serde(rename = "_index")]
    index: String,
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "_score")]
    score: Option<f64>,
    #[serde(rename = "_source")]
    source: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sort: Option<Vec<Value>>,
}

fn search(
    state: &FakeState,
    expression: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply, Failure> {
    let body = match parse_json_body(headers, body) {
        Ok(body) => body,
        Err(reply) => return Ok(reply),
    };
    let request = SearchRequest::parse(body.as_ref())?;
    let names = state.store.resolve(expression)?;
    let indices: Vec<(&str, &store::Index)> = names
        .iter()
        .filter_map(|name| {
            state
                .store
                .indices
                .get(name)
                .map(|index| (name.as_str(), index))
        })
        .collect();
    let (hits, total) = query::search(&indices, &request)?;
    let max_score = if request.sort.is_empty() && !hits.is_empty() {
        Some(1.0)
    } else {
        None
    };
    let (total_value, relation) = if total > 10_000 {
        (10_000, "gte")
    } else {
        (total, "eq")
    };
    let response = SearchResponse {
        took: 1,
        timed_out: false,
        shards: json!({"total": names.len(), "successful": names.len(), "skipped": 0, "failed": 0}),
        hits: SearchHits {
            total: json!({"value": total_value, "relation": relation}),
            max_score,
            hits: hits
                .into_iter()
                .map(|hit| SearchHit {
                    index: hit.index,
                    id: hit.id,
                    score: hit.score,
                    source: RawValue::from_string(hit.source).ok(),
                    sort: hit.sort,
                })
                .collect(),
        },
    };
    Ok(Reply::json(200, &response))
}

fn refresh(state: &FakeState, expression: &str) -> Result<Reply, Failure> {
    let names = state.store.resolve(expression)?;
    Ok(Reply::json(
        200,
        &json!({"_shards": {"total": names.len() * 2, "successful": names.len(), "failed": 0}}),
    ))
}

fn get_mapping(state: &FakeState, expression: &str) -> Result<Reply, Failure> {
    let names = state.store.resolve(expression)?;
    let mut answer = Map::new();
    for name in names {
        if let Some(index) = state.store.indices.get(&name) {
            answer.insert(name, json!({"mappings": index.mapping.to_json()}));
        }
    }
    Ok(Reply::json(200, &Value::Object(answer)))
}

#[derive(Serialize)]
struct GetResponse<'a> {
    #[serde(rename = "_index")]
    index: &'a str,
    #[serde(rename = "_id")]
    id: &'a str,
    #[serde(rename = "_version")]
    version: u64,
    #[serde(rename = "_seq_no")]
    seq_no: u64,
    #[serde(rename = "_primary_term")]
    primary_term: u64,
    found: bool,
    #[serde(rename = "_source")]
    source: Option<Box<RawValue>>,
}

fn get_document(state: &FakeState, index_name: &str, id: &str) -> Result<Reply, Failure> {
    let index = state
        .store
        .indices
        .get(index_name)
        .ok_or_else(|| index_not_found(index_name))?;
    let Some(document) = index.documents.get(id) else {
        return Ok(Reply::json(
            404,
            &json!({"_index": index_name, "_id": id, "found": false}),
        ));
    };
    Ok(Reply::json(
        200,
        &GetResponse {
            index: index_name,
            id,
            version: document.version,
            seq_no: document.seq_no,
            primary_term: 1,
            found: true,
            source: RawValue::from_string(document.raw.clone()).ok(),
        },
    ))
}

fn delete_index(state: &mut FakeState, expression: &str) -> Result<Reply, Failure> {
    if expression.contains('*') || expression == "_all" {
        return Err(Failure::illegal_argument(
            "Wildcard expressions or all indices are not allowed",
        ));
    }
    let names = state.store.resolve(expression)?;
    for name in names {
        state.store.indices.remove(&name);
    }
    Ok(Reply::json(200, &json!({"acknowledged": true})))
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut position = 0;
    while position < bytes.len() {
        if bytes[position] == b'%'
            && let Some(hex) = segment.get(position + 1..position + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            decoded.push(byte);
            position += 3;
            continue;
        }
        decoded.push(bytes[position]);
        position += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
