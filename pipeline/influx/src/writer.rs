//! [`InfluxWriter`]: writes batches of points and answers one outcome per point; [`LineWriter`]
//! does the same for lines already encoded upstream (the metrics path).
//!
//! # From answers to outcomes
//!
//! | answer                              | outcome                                              |
//! |-------------------------------------|------------------------------------------------------|
//! | 2xx                                 | `Delivered`                                          |
//! | 400, 422 (v2), 413, several lines   | split in halves, each half written again             |
//! | 400, 422 on one line                | `Reject`: `field_type_conflict`, `beyond_retention`, `bad_line` or `rejected` |
//! | 413 on one line                     | `Reject { reason: "too_large" }`                     |
//! | 401, 403                            | `Retry`: misconfiguration holds deliveries, logged as an error |
//! | 404 `database not found` (v1)       | `CREATE DATABASE`, then `Retry`                      |
//! | 429, 5xx, anything else, no answer  | `Retry`, with the server's `Retry-After`             |
//!
//! A point that fails encoding is `Reject`ed with the encoder's reason and never sent.
//!
//! # Isolating refused lines
//!
//! All points of a call are encoded once, into one buffer that is pooled across calls; each
//! line's byte range is kept, so any run of consecutive lines is a slice of that buffer and
//! splitting a refused request costs no re-encoding. Segments are written one after another
//! from a stack (no recursion, no boxed futures). When a segment gets an answer that is not
//! about its lines (5xx, 429, no answer, bad credentials), the segments still waiting are not
//! sent: they get the same `Retry`, because the next request would very likely fail the same
//! way. Resending lines is safe because InfluxDB overwrites a point with the same series and
//! timestamp (see the crate documentation).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::ExposeSecret;
use sluice_core::outcome::{BatchWriter, ItemOutcome};
use sluice_core::point::{Point, PointLimits};
use url::Url;

use crate::api::{Endpoints, InfluxApi, InfluxSettings, Precision};
use crate::encode::{EncodeError, Line, encode_point};
use crate::error::InfluxError;
use crate::telemetry;
use sluice_http::{
    BufferPool, endpoint_name, error_chain, gzip, read_capped, retry_after, truncate_detail,
};

/// Encoding buffers kept for reuse: about the number of writes in flight at once.
const MAX_POOLED_BUFFERS: usize = 8;

/// The InfluxDB sink's write half. Cheap to share: one per sink, behind an `Arc` if several
/// tasks write concurrently.
pub struct InfluxWriter {
    client: reqwest::Client,
    api: InfluxApi,
    precision: Precision,
    gzip: bool,
    limits: PointLimits,
    endpoints: Endpoints,
    /// v2's `Token <token>`, marked sensitive so that it is never logged by the HTTP stack.
    token_header: Option<HeaderValue>,
    buffers: BufferPool,
}

impl fmt::Debug for InfluxWriter {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("InfluxWriter")
            .field("write", &self.endpoints.write.as_str())
            .field("api", &self.api)
            .field("precision", &self.precision)
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

/// What one write request came back with, before it becomes outcomes.
enum WriteAnswer {
    Written,
    /// 400 or 422: the server refused some of the lines.
    Refused {
        status: u16,
        message: String,
    },
    /// 413: the body is over the server's limit.
    TooLarge {
        message: String,
    },
    /// v1's 404 `database not found`.
    DatabaseNotFound {
        message: String,
    },
    /// 401 or 403.
    Unauthorized {
        status: u16,
    },
    /// Anything that may pass: no answer, 429, 5xx, other statuses.
    Transient {
        retry_after: Option<Duration>,
        detail: String,
    },
}

/// One encoded point: which item it is and where its line sits in the buffer.
struct EncodedLine {
    item: usize,
    bytes: Range<usize>,
}

impl InfluxWriter {
    /// Checks the settings and builds the HTTP client; does no I/O.
    pub fn new(settings: InfluxSettings) -> Result<Self, InfluxError> {
        let endpoints = Endpoints::from_settings(&settings).map_err(InfluxError::Settings)?;
        let token_header = match &settings.api {
            InfluxApi::V1 { .. } => None,
            InfluxApi::V2 { token, .. } => {
                let mut value = HeaderValue::from_str(&format!("Token {}", token.expose_secret()))
                    .map_err(|_| {
                        InfluxError::Settings(
                            "token: holds characters an HTTP header cannot carry".to_owned(),
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let client = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| {
                InfluxError::Settings(format!("cannot build the http client: {error}"))
            })?;
        Ok(Self {
            client,
            api: settings.api,
            precision: settings.precision,
            gzip: settings.gzip,
            limits: settings.max_point,
            endpoints,
            token_header,
            buffers: BufferPool::new(MAX_POOLED_BUFFERS),
        })
    }

    /// v1: `CREATE DATABASE` (idempotent in 1.x) via `POST /query`; v2: nothing, because
    /// buckets are made by administrators.
    pub async fn ensure_database(&self) -> Result<(), InfluxError> {
        let InfluxApi::V1 { database, .. } = &self.api else {
            return Ok(());
        };
        let statement = format!("CREATE DATABASE {}", quote_identifier(database));
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &statement)
            .finish();
        let request = self
            .client
            .post(self.endpoints.query.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        let response = self.send(request, &self.endpoints.query).await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            telemetry::authentication_failed(
                &endpoint_name(&self.endpoints.query),
                status.as_u16(),
            );
            return Err(InfluxError::Authentication {
                status: status.as_u16(),
            });
        }
        let retry_after = retry_after(response.headers());
        let body = read_capped(response).await;
        if status == StatusCode::BAD_REQUEST {
            return Err(InfluxError::Query {
                message: truncate_detail(error_message(&body)),
            });
        }
        if !status.is_success() {
            return Err(InfluxError::Status {
                status: status.as_u16(),
                message: truncate_detail(error_message(&body)),
                retry_after,
            });
        }
        // 1.x answers 200 and puts a failed statement's error inside its result.
        let results: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let statement_error = results
            .get("results")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|result| result.get("error").and_then(serde_json::Value::as_str));
        match statement_error {
            Some(message) => Err(InfluxError::Query {
                message: truncate_detail(message.to_owned()),
            }),
            None => Ok(()),
        }
    }

    /// `GET /ping`, for the readiness endpoint: Ok when the server answers 2xx.
    pub async fn ping(&self) -> Result<(), InfluxError> {
        let request = self.client.get(self.endpoints.ping.clone());
        let response = self.send(request, &self.endpoints.ping).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(InfluxError::Authentication {
                status: status.as_u16(),
            });
        }
        let retry_after = retry_after(response.headers());
        let body = read_capped(response).await;
        Err(InfluxError::Status {
            status: status.as_u16(),
            message: truncate_detail(error_message(&body)),
            retry_after,
        })
    }

    /// Adds the credentials and sends; a missing answer becomes [`InfluxError::Transport`].
    async fn send(&self, request: RequestBuilder, endpoint: &Url) -> Result<Response, InfluxError> {
        let request = match (&self.api, &self.token_header) {
            (
                InfluxApi::V1 {
                    username: Some(username),
                    password,
                    ..
                },
                _,
            ) => request.basic_auth(
                username,
                password.as_ref().map(|password| password.expose_secret()),
            ),
            (_, Some(token)) => request.header(AUTHORIZATION, token.clone()),
            _ => request,
        };
        request.send().await.map_err(|error| {
            let timed_out = error.is_timeout();
            InfluxError::Transport {
                endpoint: endpoint_name(endpoint),
                detail: truncate_detail(error_chain(&error.without_url())),
                timed_out,
            }
        })
    }

    /// Writes one run of lines and classifies the answer.
    async fn write_lines(&self, lines: &[u8]) -> WriteAnswer {
        let mut request = self
            .client
            .post(self.endpoints.write.clone())
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        let body = match self.gzip.then(|| gzip(lines)).transpose() {
            Ok(Some(compressed)) => {
                request = request.header(CONTENT_ENCODING, "gzip");
                compressed
            }
            // Compressing into memory does not fail in practice; if it did, send it plain.
            Ok(None) | Err(_) => lines.to_vec(),
        };
        telemetry::write_request_sent(body.len());
        let response = match self.send(request.body(body), &self.endpoints.write).await {
            Ok(response) => response,
            Err(error) => {
                let detail = error.to_string();
                telemetry::write_request_failed(&endpoint_name(&self.endpoints.write), &detail);
                return WriteAnswer::Transient {
                    retry_after: None,
                    detail,
                };
            }
        };

        let status = response.status();
        telemetry::write_request_answered(status.as_u16());
        if status.is_success() {
            return WriteAnswer::Written;
        }
        let retry_after = retry_after(response.headers());
        match status.as_u16() {
            status @ (401 | 403) => {
                telemetry::authentication_failed(&endpoint_name(&self.endpoints.write), status);
                WriteAnswer::Unauthorized { status }
            }
            status @ (400 | 422) => WriteAnswer::Refused {
                status,
                message: error_message(&read_capped(response).await),
            },
            413 => WriteAnswer::TooLarge {
                message: error_message(&read_capped(response).await),
            },
            404 => {
                let message = error_message(&read_capped(response).await);
                if matches!(self.api, InfluxApi::V1 { .. })
                    && message.contains("database not found")
                {
                    WriteAnswer::DatabaseNotFound { message }
                } else {
                    WriteAnswer::Transient {
                        retry_after,
                        detail: truncate_detail(format!("influxdb answered 404: {message}")),
                    }
                }
            }
            status => {
                let message = error_message(&read_capped(response).await);
                WriteAnswer::Transient {
                    retry_after,
                    detail: truncate_detail(format!("influxdb answered {status}: {message}")),
                }
            }
        }
    }

    /// Writes `lines` (consecutive runs of `buf`), splitting refused runs until each refused
    /// line stands alone; fills in the outcome of every line's item.
    async fn write_isolating(
        &self,
        buf: &[u8],
        lines: &[EncodedLine],
        outcomes: &mut [Option<ItemOutcome>],
    ) {
        let mut pending: Vec<&[EncodedLine]> = vec![lines];
        let mut created_database = false;
        while let Some(segment) = pending.pop() {
            let (Some(first), Some(last)) = (segment.first(), segment.last()) else {
                continue;
            };
            let answer = self
                .write_lines(&buf[first.bytes.start..last.bytes.end])
                .await;
            let retry = match answer {
                WriteAnswer::Written => {
                    set_all(outcomes, segment, &ItemOutcome::Delivered);
                    continue;
                }
                WriteAnswer::Refused { status, message } if segment.len() > 1 => {
                    telemetry::refused_request_bisected(segment.len(), status, &message);
                    let (front, back) = segment.split_at(segment.len() / 2);
                    pending.push(back);
                    pending.push(front);
                    continue;
                }
                WriteAnswer::TooLarge { message } if segment.len() > 1 => {
                    telemetry::refused_request_bisected(segment.len(), 413, &message);
                    let (front, back) = segment.split_at(segment.len() / 2);
                    pending.push(back);
                    pending.push(front);
                    continue;
                }
                WriteAnswer::Refused { status, message } => {
                    let reject = ItemOutcome::Reject {
                        reason: refusal_reason(&message),
                        detail: truncate_detail(format!("influxdb answered {status}: {message}")),
                    };
                    set_all(outcomes, segment, &reject);
                    continue;
                }
                WriteAnswer::TooLarge { message } => {
                    let reject = ItemOutcome::Reject {
                        reason: "too_large",
                        detail: truncate_detail(format!("influxdb answered 413: {message}")),
                    };
                    set_all(outcomes, segment, &reject);
                    continue;
                }
                WriteAnswer::DatabaseNotFound { message } => {
                    if !created_database {
                        created_database = true;
                        self.create_missing_database().await;
                    }
                    ItemOutcome::Retry {
                        after: None,
                        detail: truncate_detail(format!("influxdb answered 404: {message}")),
                    }
                }
                WriteAnswer::Unauthorized { status } => ItemOutcome::Retry {
                    after: None,
                    detail: format!("authentication failed (status {status})"),
                },
                WriteAnswer::Transient {
                    retry_after,
                    detail,
                } => ItemOutcome::Retry {
                    after: retry_after,
                    detail,
                },
            };
            // Not about these lines: the waiting segments would very likely fail the same way.
            set_all(outcomes, segment, &retry);
            for waiting in pending.drain(..) {
                set_all(outcomes, waiting, &retry);
            }
        }
    }

    /// One batch: each item is encoded into one request body (an item `encode` refuses is
    /// rejected with the reason), then what was encoded is written, isolating refused lines.
    async fn encode_and_write<T>(
        &self,
        items: &[&T],
        mut encode: impl FnMut(&mut Vec<u8>, &T) -> Result<(), EncodeError>,
    ) -> Vec<ItemOutcome> {
        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; items.len()];
        let mut buf = self.buffers.take();
        let mut lines = Vec::with_capacity(items.len());
        for (item, value) in items.iter().enumerate() {
            let start = buf.len();
            match encode(&mut buf, value) {
                Ok(()) => lines.push(EncodedLine {
                    item,
                    bytes: start..buf.len(),
                }),
                Err(error) => {
                    outcomes[item] = Some(ItemOutcome::Reject {
                        reason: error.reason(),
                        detail: error.to_string(),
                    });
                }
            }
        }
        if !lines.is_empty() {
            self.write_isolating(&buf, &lines, &mut outcomes).await;
        }
        self.buffers.give_back(buf);
        ItemOutcome::all_recorded(outcomes)
    }

    async fn create_missing_database(&self) {
        let InfluxApi::V1 { database, .. } = &self.api else {
            return;
        };
        telemetry::database_missing(database);
        if let Err(error) = self.ensure_database().await {
            telemetry::database_creation_failed(database, &error);
        }
    }
}

impl BatchWriter for InfluxWriter {
    type Item = Point;

    fn stage(&self) -> &'static str {
        "influx"
    }

    async fn write(&self, items: &[&Point]) -> Vec<ItemOutcome> {
        self.encode_and_write(items, |buf, point| {
            encode_point(buf, point, self.precision, &self.limits)
        })
        .await
    }
}

/// The metrics path's sink: lines encoded upstream, in the normalise stage, where each message
/// is still in the cache, so this only copies them into the request.
#[derive(Debug)]
pub struct LineWriter(pub Arc<InfluxWriter>);

impl BatchWriter for LineWriter {
    type Item = Line;

    fn stage(&self) -> &'static str {
        "influx"
    }

    async fn write(&self, items: &[&Line]) -> Vec<ItemOutcome> {
        self.0
            .encode_and_write(items, |buf, line| {
                buf.extend_from_slice(line.as_bytes());
                Ok(())
            })
            .await
    }
}

fn set_all(outcomes: &mut [Option<ItemOutcome>], lines: &[EncodedLine], outcome: &ItemOutcome) {
    for line in lines {
        outcomes[line.item] = Some(outcome.clone());
    }
}

/// The dead-letter reason for one line the server refused, from its error text.
fn refusal_reason(message: &str) -> &'static str {
    if message.contains("field type conflict") {
        "field_type_conflict"
    } else if message.contains("beyond retention") {
        "beyond_retention"
    } else if message.contains("unable to parse") {
        "bad_line"
    } else {
        "rejected"
    }
}

/// The server's error text: v1's `{"error": ".."}`, v2's `{"message": ".."}`, or the body.
fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["error", "message"] {
            if let Some(text) = value.get(key).and_then(serde_json::Value::as_str) {
                return text.to_owned();
            }
        }
    }
    String::from_utf8_lossy(body).trim().to_owned()
}

/// An InfluxQL double-quoted identifier.
fn quote_identifier(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_reasons_by_the_server_text() {
        let cases = [
            (
                r#"partial write: field type conflict: input field "value" on measurement "conflict" is type float, already exists as type string dropped=1"#,
                "field_type_conflict",
            ),
            (
                "partial write: points beyond retention policy dropped=1",
                "beyond_retention",
            ),
            ("unable to parse 'm f=': missing field value", "bad_line"),
            (
                r#"partial write: invalid field name: input field "time" on measurement "m" is invalid dropped=1"#,
                "rejected",
            ),
        ];
        for (message, reason) in cases {
            assert_eq!(refusal_reason(message), reason, "{message}");
        }
    }

    #[test]
    fn error_text_comes_from_v1_and_v2_bodies_or_the_raw_body() {
        assert_eq!(
            error_message(br#"{"error":"database not found: \"x\""}"#),
            r#"database not found: "x""#
        );
        assert_eq!(
            error_message(br#"{"code":"invalid","message":"unable to parse 'x'"}"#),
            "unable to parse 'x'"
        );
        assert_eq!(
            error_message(b"  <html>bad gateway</html>\n"),
            "<html>bad gateway</html>"
        );
    }

    #[test]
    fn identifiers_are_quoted_for_influxql() {
        assert_eq!(quote_identifier(r#"my "db"\x"#), r#""my \"db\"\\x""#);
    }
}
