//! A small HTTP proxy between sluice and the real InfluxDB that notes when each point was written.
//!
//! sluice is started with `SLUICE_INFLUX__URL` pointing here. Every request (`/write`, `/query`,
//! `/ping`, ...) goes upstream unchanged, and its answer comes back unchanged. When a write
//! (`/write`, or v2's `/api/v2/write`) is answered 2xx, its line-protocol body (gunzipped if
//! sluice sent gzip) is parsed, and each line's `value` field is logged with the time of the
//! answer: the moment the point became durable in InfluxDB, as far as sluice can know.
//!
//! The open loop puts each message's intended send time in its `metric`, which becomes the
//! point's `value`, so "written minus value" is its latency. A pre-load drain just counts the
//! distinct values written. A value written twice (a redelivery, or a retried request whose first
//! answer was lost) counts once, at its first write: that is when it was first durable.
//!
//! An upstream that cannot be reached is answered 502, which sluice retries like InfluxDB's own
//! 5xx answers.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use influxdb_line_protocol::FieldValue;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::schedule::EpochClock;

/// The largest request body the proxy accepts (sluice's `influx.batch_max_bytes` tops out far
/// below this).
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// What the proxy saw written, shared between its handlers and the run that reads it.
#[derive(Debug, Clone)]
pub struct Recorder {
    log: Arc<Mutex<WriteLog>>,
    distinct: Arc<watch::Sender<u64>>,
}

#[derive(Debug, Default)]
struct WriteLog {
    /// Each distinct `value` (by its bits) and when it was first written, in epoch microseconds.
    first_written: HashMap<u64, u64>,
    stats: WriteStats,
}

/// Counts of what went through the proxy's write path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Write requests answered 2xx.
    pub writes_ok: u64,
    /// Write requests answered otherwise (InfluxDB's 4xx/5xx, or 502 from the proxy itself).
    pub writes_failed: u64,
    /// Lines of 2xx writes, in all.
    pub lines: u64,
    /// Lines whose value had been written before.
    pub duplicate_lines: u64,
    /// Lines with no numeric `value` field, or that did not parse.
    pub lines_without_value: u64,
}

impl Recorder {
    pub fn new() -> Self {
        let (distinct, _) = watch::channel(0);
        Self {
            log: Arc::default(),
            distinct: Arc::new(distinct),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriteLog> {
        // A handler that panicked mid-update leaves counts that are still worth reading.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs the lines of one write body that InfluxDB answered 2xx at `written_micros`.
    pub fn record_write(&self, body: &str, written_micros: u64) {
        let mut log = self.lock();
        log.stats.writes_ok += 1;
        for line in influxdb_line_protocol::parse_lines(body) {
            log.stats.lines += 1;
            let value = match line
                .as_ref()
                .ok()
                .and_then(|line| line.field_value("value"))
            {
                Some(FieldValue::F64(value)) => *value,
                Some(FieldValue::I64(value)) => *value as f64,
                Some(FieldValue::U64(value)) => *value as f64,
                _ => {
                    log.stats.lines_without_value += 1;
                    continue;
                }
            };
            match log.first_written.entry(value.to_bits()) {
                Entry::Occupied(_) => log.stats.duplicate_lines += 1,
                Entry::Vacant(entry) => {
                    entry.insert(written_micros);
                }
            }
        }
        let distinct = log.first_written.len() as u64;
        drop(log);
        self.distinct.send_replace(distinct);
    }

    fn record_failed_write(&self) {
        self.lock().stats.writes_failed += 1;
    }

    /// Distinct values written so far.
    pub fn distinct(&self) -> u64 {
        *self.distinct.borrow()
    }

    pub fn stats(&self) -> WriteStats {
        self.lock().stats
    }

    /// Every distinct value written, with when it was first written (epoch microseconds).
    pub fn entries(&self) -> Vec<(f64, u64)> {
        self.lock()
            .first_written
            .iter()
            .map(|(&bits, &written)| (f64::from_bits(bits), written))
            .collect()
    }

    /// Forgets everything, before the next measurement against the same sluice.
    pub fn reset(&self) {
        *self.lock() = WriteLog::default();
        self.distinct.send_replace(0);
    }

    /// Waits until at least `target` distinct values were written; false after `timeout`.
    pub async fn wait_for_distinct(&self, target: u64, timeout: Duration) -> bool {
        let mut changes = self.distinct.subscribe();
        let reached = changes.wait_for(|&distinct| distinct >= target);
        matches!(tokio::time::timeout(timeout, reached).await, Ok(Ok(_)))
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    recorder: Recorder,
    clock: EpochClock,
}

/// The running proxy; it stops when dropped.
#[derive(Debug)]
pub struct LatencyProxy {
    pub address: SocketAddr,
    pub recorder: Recorder,
    task: JoinHandle<()>,
}

impl LatencyProxy {
    /// Serves on `listener`, forwarding to `upstream` (e.g. `http://127.0.0.1:8086`), and logs
    /// writes with times read from `clock`.
    pub async fn start(
        listener: TcpListener,
        upstream: &str,
        clock: EpochClock,
    ) -> anyhow::Result<Self> {
        let address = listener.local_addr().context("the proxy's address")?;
        let recorder = Recorder::new();
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .build()
                .context("building the proxy's HTTP client")?,
            recorder: recorder.clone(),
            clock,
        };
        let app = Router::new().fallback(forward).with_state(state);
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("latency proxy stopped: {error}");
            }
        });
        Ok(Self {
            address,
            recorder,
            task,
        })
    }

    /// Binds a free loopback port and starts there.
    pub async fn start_on_free_port(upstream: &str, clock: EpochClock) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the latency proxy")?;
        Self::start(listener, upstream, clock).await
    }

    /// What to give sluice as `SLUICE_INFLUX__URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    match forward_request(&state, request).await {
        Ok(response) => response,
        Err(error) => {
            // Bad Gateway: sluice treats it as a transient failure and retries.
            (StatusCode::BAD_GATEWAY, format!("latency proxy: {error:#}")).into_response()
        }
    }
}

async fn forward_request(state: &ProxyState, request: Request) -> anyhow::Result<Response> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .context("reading the request body")?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str());
    let is_write = matches!(parts.uri.path(), "/write" | "/api/v2/write");
    let mut headers = parts.headers;
    strip_hop_headers(&mut headers);
    headers.remove(header::HOST);

    let sent = state
        .client
        .request(parts.method, format!("{}{path_and_query}", state.upstream))
        .headers(headers.clone())
        .body(body.clone())
        .send()
        .await;
    let upstream_response = match sent {
        Ok(response) => response,
        Err(error) => {
            if is_write {
                state.recorder.record_failed_write();
            }
            return Err(error).with_context(|| format!("forwarding to {}", state.upstream));
        }
    };
    let status = upstream_response.status();
    let written_micros = state.clock.now_micros();
    let mut response_headers = upstream_response.headers().clone();
    let response_body = upstream_response
        .bytes()
        .await
        .context("reading InfluxDB's answer")?;

    if is_write {
        if status.is_success() {
            match write_body_text(&headers, &body) {
                Ok(text) => state.recorder.record_write(&text, written_micros),
                Err(error) => eprintln!("latency proxy: cannot read a write body: {error:#}"),
            }
        } else {
            state.recorder.record_failed_write();
        }
    }

    strip_hop_headers(&mut response_headers);
    let mut response = Response::new(Body::from(response_body));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    Ok(response)
}

/// Headers that describe one connection or one encoding of the body in transit, which the
/// proxy's own client and server set again.
fn strip_hop_headers(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
}

/// The line-protocol text of a write body, gunzipped when it says it is gzip.
pub fn write_body_text(headers: &HeaderMap, body: &Bytes) -> anyhow::Result<String> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("gzip"));
    if !gzip {
        return String::from_utf8(body.to_vec()).context("the write body is not UTF-8");
    }
    let mut text = String::new();
    flate2::read::GzDecoder::new(body.as_ref())
        .read_to_string(&mut text)
        .context("gunzipping the write body")?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use std::sync::atomic::{AtomicU16, Ordering};

    use sluice_testing::recording_server::{RecordingServer, Reply};

    use super::*;

    /// A write as the stand-in InfluxDB received it: its query string and body.
    type ReceivedWrite = (String, Vec<u8>);

    /// A stand-in InfluxDB: answers `/ping`, echoes the query string of `/query`, and answers
    /// writes with the status of `write_status`.
    struct FakeInflux {
        server: RecordingServer,
        write_status: Arc<AtomicU16>,
    }

    impl FakeInflux {
        fn writes(&self) -> Vec<ReceivedWrite> {
            self.server
                .requests()
                .into_iter()
                .filter(|request| request.path == "/write")
                .map(|request| (request.raw_query, request.body.into_bytes()))
                .collect()
        }

        fn set_write_status(&self, status: u16) {
            self.write_status.store(status, Ordering::SeqCst);
        }
    }

    async fn fake_influx() -> (String, FakeInflux) {
        let write_status = Arc::new(AtomicU16::new(204));
        let status = Arc::clone(&write_status);
        let server = RecordingServer::start(move |request| match request.path.as_str() {
            "/ping" => Reply::status(204),
            "/query" => {
                Reply::status(200).with_body(&format!("{{\"echo\":\"{}\"}}", request.raw_query))
            }
            "/write" => Reply::status(status.load(Ordering::SeqCst)),
            _ => Reply::status(404),
        })
        .await;
        let url = server.url.as_str().trim_end_matches('/').to_owned();
        (
            url,
            FakeInflux {
                server,
                write_status,
            },
        )
    }

    const T0: u64 = 1_780_000_000_000_000;

    #[tokio::test]
    async fn records_the_latency_of_a_forwarded_write() {
        let (upstream, fake) = fake_influx().await;
        let clock = EpochClock::starting_at(T0 + 5_000);
        let proxy = LatencyProxy::start_on_free_port(&upstream, clock)
            .await
            .expect("proxy");
        let body = format!(
            "cpu.total.user,host=a value={T0} 1466000000000000000\nmemory.used,host=a value={} 1466000000000000000\n",
            T0 + 1_000
        );
        let response = reqwest::Client::new()
            .post(format!("{}/write?db=test&precision=ns", proxy.url()))
            .body(body.clone())
            .send()
            .await
            .expect("write through the proxy");
        assert_eq!(response.status().as_u16(), 204);

        // The body and query string reached InfluxDB unchanged.
        let writes = fake.writes();
        assert_eq!(
            writes,
            vec![("db=test&precision=ns".to_owned(), body.into_bytes())]
        );
        // Each line's latency is the proxy clock's reading minus its value: at least 5 ms and
        // 4 ms, since the clock started 5 ms after T0.
        let mut entries = proxy.recorder.entries();
        entries.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0, T0 as f64);
        assert!(entries[0].1 >= T0 + 5_000 && entries[0].1 < T0 + 5_000_000);
        assert!(entries[1].1 - (T0 + 1_000) >= 4_000);
        assert!(
            proxy
                .recorder
                .wait_for_distinct(2, Duration::from_secs(1))
                .await
        );
        assert_eq!(proxy.recorder.stats().writes_ok, 1);
    }

    #[tokio::test]
    async fn a_failed_write_records_nothing_and_a_repeat_counts_once() {
        let (upstream, fake) = fake_influx().await;
        let proxy = LatencyProxy::start_on_free_port(&upstream, EpochClock::starting_at(T0))
            .await
            .expect("proxy");
        let client = reqwest::Client::new();
        let write = |body: &'static str| {
            client
                .post(format!("{}/write?db=test", proxy.url()))
                .body(body)
                .send()
        };
        fake.set_write_status(500);
        let answer = write("m value=1 1\n").await.expect("write");
        assert_eq!(
            answer.status().as_u16(),
            500,
            "InfluxDB's status comes back unchanged"
        );
        assert_eq!(proxy.recorder.distinct(), 0);

        fake.set_write_status(204);
        write("m value=1 1\nm value=2 2\n").await.expect("write");
        write("m value=2 2\nm,unit=x text=\"no value\" 3\n")
            .await
            .expect("write");
        assert_eq!(proxy.recorder.distinct(), 2);
        let stats = proxy.recorder.stats();
        assert_eq!(stats.writes_ok, 2);
        assert_eq!(stats.writes_failed, 1);
        assert_eq!(stats.lines, 4);
        assert_eq!(stats.duplicate_lines, 1);
        assert_eq!(stats.lines_without_value, 1);

        proxy.recorder.reset();
        assert_eq!(proxy.recorder.distinct(), 0);
        assert!(proxy.recorder.entries().is_empty());
    }

    #[tokio::test]
    async fn other_requests_are_forwarded_unchanged() {
        let (upstream, _fake) = fake_influx().await;
        let proxy = LatencyProxy::start_on_free_port(&upstream, EpochClock::starting_at(T0))
            .await
            .expect("proxy");
        let client = reqwest::Client::new();
        let ping = client
            .get(format!("{}/ping", proxy.url()))
            .send()
            .await
            .expect("ping");
        assert_eq!(ping.status().as_u16(), 204);
        let query = client
            .post(format!("{}/query?q=CREATE%20DATABASE%20x", proxy.url()))
            .send()
            .await
            .expect("query");
        assert_eq!(query.status().as_u16(), 200);
        assert_eq!(
            query.text().await.expect("body"),
            "{\"echo\":\"q=CREATE%20DATABASE%20x\"}"
        );
        assert_eq!(proxy.recorder.stats(), WriteStats::default());
    }

    #[tokio::test]
    async fn an_unreachable_influxdb_is_a_bad_gateway() {
        // A port that was free a moment ago: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = format!("http://{}", listener.local_addr().expect("address"));
        drop(listener);
        let proxy = LatencyProxy::start_on_free_port(&dead, EpochClock::starting_at(T0))
            .await
            .expect("proxy");
        let answer = reqwest::Client::new()
            .post(format!("{}/write?db=x", proxy.url()))
            .body("m value=1 1\n")
            .send()
            .await
            .expect("the proxy answers");
        assert_eq!(answer.status().as_u16(), 502);
        assert_eq!(proxy.recorder.stats().writes_failed, 1);
    }

    #[test]
    fn gzip_bodies_are_gunzipped() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(b"m value=7 1\n").expect("gzip");
        let gzipped = Bytes::from(encoder.finish().expect("gzip"));
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, "gzip".parse().expect("header"));
        assert_eq!(
            write_body_text(&headers, &gzipped).expect("gunzip"),
            "m value=7 1\n"
        );
        let plain = Bytes::from_static(b"m value=7 1\n");
        assert_eq!(
            write_body_text(&HeaderMap::new(), &plain).expect("plain"),
            "m value=7 1\n"
        );
    }
}
