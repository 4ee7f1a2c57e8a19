//! HTTP plumbing shared by sluice's HTTP clients: the InfluxDB and Elasticsearch sinks and the
//! action executor. Each client keeps what is its own (endpoints, its store's error bodies);
//! what every one of them needs the same way lives here, once:
//!
//! - [`retry_class`]: what a status (and `Retry-After`) asks for: retry, split, dead-letter or
//!   hold;
//! - [`batch`]: the sinks' batch writer, with the split on 413 and the bisection of a partial
//!   failure;
//! - [`request_error`]: the error of the stores' calls that answer one result (ping, setup);
//! - [`tls`]: a private CA and client certificates for HTTPS;
//! - readable error texts that never carry a secret, a bounded read of error bodies,
//!   `Retry-After`, request-body compression and pooled request buffers.

pub mod batch;
pub mod request_error;
pub mod retry_class;
pub mod tls;

pub use batch::{BatchAnswer, BatchEndpoint, write_batch};
pub use request_error::{RequestError, Store};
pub use retry_class::{Refusals, RetryClass, classify, is_transient};
pub use tls::{TlsFileError, TlsSettings};

use std::io::Write;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::Response;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use url::Url;

/// How sluice's HTTP clients name themselves. The workspace's crates share one version: sluice's.
pub const USER_AGENT: &str = concat!("sluice/", env!("CARGO_PKG_VERSION"));

/// Longest error text kept in an outcome's detail (and so in a dead letter's header).
pub const MAX_DETAIL_BYTES: usize = 1024;
/// Most of an error response's body that is read; a misbehaving proxy cannot make us buffer more.
pub const MAX_ERROR_BODY_BYTES: usize = 8 * 1024;

/// Request-body buffers kept for reuse, so that a steady stream of batches allocates none: a
/// writer takes one per request and gives it back, cleared, when the request is done.
#[derive(Debug)]
pub struct BufferPool {
    buffers: Mutex<Vec<Vec<u8>>>,
    max_buffers: usize,
}

impl BufferPool {
    /// Keeps at most `max_buffers`: about the number of requests in flight at once.
    pub fn new(max_buffers: usize) -> Self {
        Self {
            buffers: Mutex::new(Vec::new()),
            max_buffers,
        }
    }

    /// A buffer, empty, with whatever capacity an earlier request left it.
    pub fn take(&self) -> Vec<u8> {
        self.buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    /// Returns a buffer to the pool (or drops it, when the pool is full).
    pub fn give_back(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        let mut buffers = self.buffers.lock().unwrap_or_else(PoisonError::into_inner);
        if buffers.len() < self.max_buffers {
            buffers.push(buffer);
        }
    }
}

/// Checks a store's base URL and the request timeout of its settings, and answers the URL as a
/// base that endpoints are joined to (its path ending in `/`). `credentials_instead` says which
/// settings carry the credentials that must not sit in the URL. The error names the setting.
pub fn base_url(
    url: &Url,
    request_timeout: Duration,
    credentials_instead: &str,
) -> Result<Url, String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "url: scheme {:?} is not http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none() {
        return Err("url: has no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "url: must not carry credentials; set {credentials_instead} instead"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("url: must not have a query or fragment".to_owned());
    }
    if request_timeout.is_zero() {
        return Err("request_timeout: must be more than zero".to_owned());
    }
    let mut base = url.clone();
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(base)
}

/// The HTTP client of a store's writer: `request_timeout` bounds each request, and connecting;
/// `tls` adds trust and a client certificate for HTTPS.
pub fn store_client<S: Store>(
    request_timeout: Duration,
    tls: &TlsSettings,
) -> Result<reqwest::Client, RequestError<S>> {
    tls.apply(reqwest::Client::builder())
        .timeout(request_timeout)
        .connect_timeout(request_timeout)
        .user_agent(USER_AGENT)
        .build()
        .map_err(|error| RequestError::Settings(format!("cannot build the http client: {error}")))
}

/// Compresses a request body at the fastest level: the bodies are repetitive and compress well
/// even so, and the CPU goes to the pipeline.
pub fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

/// `Retry-After` in seconds; the HTTP-date form is ignored (the stores and the proxies in front
/// of them send seconds).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Reads at most [`MAX_ERROR_BODY_BYTES`] of an (error) response body.
pub async fn read_capped(mut response: Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(MAX_ERROR_BODY_BYTES);
    body
}

/// Cuts `text` to about [`MAX_DETAIL_BYTES`], at a character boundary, marking the cut.
pub fn truncate_detail(mut text: String) -> String {
    if text.len() <= MAX_DETAIL_BYTES {
        return text;
    }
    let mut end = MAX_DETAIL_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// An error and its causes, `: `-separated (reqwest's own message says little alone).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The URL without its query (which may hold a token or a password), for messages.
pub fn endpoint_name(url: &Url) -> String {
    let mut name = url.clone();
    name.set_query(None);
    redacted_url(&name)
}

/// The URL without its password, for messages.
pub fn redacted_url(url: &Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut redacted = url.clone();
    // Only fails for URLs that cannot carry credentials, which then have no password either.
    let _ = redacted.set_password(Some("REDACTED"));
    redacted.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn details_are_cut_at_a_character_boundary_and_marked() {
        let long = "é".repeat(MAX_DETAIL_BYTES);
        let cut = truncate_detail(long);
        assert!(cut.len() <= MAX_DETAIL_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(truncate_detail("short".into()), "short");
    }

    #[test]
    fn pooled_buffers_come_back_empty_with_their_capacity_and_the_pool_is_bounded() {
        let pool = BufferPool::new(1);
        let mut first = pool.take();
        first.extend_from_slice(&[0; 4096]);
        let second = vec![0u8; 16];
        pool.give_back(first);
        pool.give_back(second);
        let reused = pool.take();
        assert!(reused.is_empty());
        assert!(reused.capacity() >= 4096, "the first buffer came back");
        assert_eq!(
            pool.take().capacity(),
            0,
            "the second was dropped: the pool holds one"
        );
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn urls_in_messages_carry_no_secret() {
        let url = Url::parse("http://user:s3cret@127.0.0.1:8086/write?db=x&p=s3cret").expect("url");
        // redacted_url hides the password; endpoint_name also drops the query.
        assert_eq!(
            redacted_url(&url),
            "http://user:REDACTED@127.0.0.1:8086/write?db=x&p=s3cret"
        );
        assert_eq!(
            endpoint_name(&url),
            "http://user:REDACTED@127.0.0.1:8086/write"
        );
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let body = b"cpu value=1 1\n".repeat(100);
        let compressed = gzip(&body).expect("gzip");
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice())
            .read_to_end(&mut decoded)
            .expect("gunzip");
        assert_eq!(decoded, body);
    }
}
