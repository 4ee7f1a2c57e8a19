//! [`InfluxWriter`]: the InfluxDB [`Sink`]. Its encoder turns each point into its line in the
//! path's encode stage; its writes send batches of lines and answer one outcome per line.
//!
//! # From answers to outcomes
//!
//! | answer                              | outcome                                              |
//! |-------------------------------------|------------------------------------------------------|
//! | 2xx                                 | `Delivered`                                          |
//! | 400, 422 (v2), 413, several lines   | split in halves, each half written again             |
//! | 400, 422 on one line                | `Reject`: `field_type_conflict`, `beyond_retention`, `bad_line` or `rejected` |
//! | 413 on one line                     | `Reject { reason: "too_large" }`                     |
//! | 400, 422 (v3) naming its lines      | see below                                            |
//! | 401, 403                            | `Retry`: misconfiguration holds deliveries, logged as an error |
//! | 404 `database not found` (v1, v3)   | create the database, then `Retry`                    |
//! | 500 `max request size` (v3)         | as 413: 3 Core answers an oversized body this way    |
//! | 429, 5xx, anything else, no answer  | `Retry`, with the server's `Retry-After`             |
//!
//! InfluxDB 3 names the lines it refused (see the private `v3_answer` module). A partial write
//! (`accept_partial=true`, the default) wrote every other line: the named ones get `Reject`
//! with the server's reason, the rest `Delivered`, in one request. With `accept_partial=false`
//! the first bad line fails the whole request and nothing is written: that line gets `Reject`
//! and the lines around it are sent again. When the answer names no line that can be trusted,
//! the request is halved as for 1.x.
//!
//! A point that fails encoding is refused with the encoder's reason and never sent. The statuses
//! are classed by [`sluice_http::classify`]; the splitting and the retry of what waits behind a
//! failed request are [`sluice_http::write_batch`]'s. Resending lines is safe because InfluxDB
//! overwrites a point with the same series and timestamp (see the crate documentation).

use std::fmt;

use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use sluice_core::outcome::ItemOutcome;
use sluice_core::path::{Encode, Sink};
use sluice_core::point::{PointLimits, ValidPoint};
use sluice_core::rejection::{Reason, Refusal, Stage};
use url::Url;

use crate::api::{Endpoints, InfluxApi, InfluxSettings, Precision};
use crate::encode::{Line, LineEncoder};
use crate::error::{InfluxError, QueryRefused};
use crate::telemetry;
use crate::v3_answer::{self, V3Refusal};
use sluice_http::{
    BatchAnswer, BatchEndpoint, BufferPool, Refusals, RetryClass, classify, endpoint_name, gzip,
    read_capped, store_client, truncate_detail, write_batch,
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
    /// v2's `Token <token>` or v3's `Bearer <token>`, marked sensitive so that it is never logged by the HTTP stack.
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

/// The statuses by which InfluxDB refuses lines (in part: a partial write).
const REFUSED_LINES: Refusals = Refusals::Only(&[400, 422]);

impl InfluxWriter {
    /// Checks the settings and builds the HTTP client; does no I/O.
    pub fn new(settings: InfluxSettings) -> Result<Self, InfluxError> {
        let endpoints = Endpoints::from_settings(&settings).map_err(InfluxError::Settings)?;
        let token_header = match &settings.api {
            InfluxApi::V1 { .. } | InfluxApi::V3 { token: None, .. } => None,
            InfluxApi::V2 { token, .. } => Some(authorization("Token", token)?),
            InfluxApi::V3 {
                token: Some(token), ..
            } => Some(authorization("Bearer", token)?),
        };
        let client = store_client(settings.request_timeout, &settings.tls)?;
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
    /// buckets are made by administrators; v3: `POST /api/v3/configure/database` (a database
    /// that exists already, `409`, is fine). 3 Core also creates a database on its first write,
    /// so this is needed only where the token may not create one by writing.
    pub async fn ensure_database(&self) -> Result<(), InfluxError> {
        let database = match &self.api {
            InfluxApi::V1 { database, .. } => database,
            InfluxApi::V2 { .. } => return Ok(()),
            InfluxApi::V3 { database, .. } => return self.configure_database(database).await,
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
        let response = self
            .send_authenticated(request, &self.endpoints.query)
            .await?;
        let status = response.status();
        if !status.is_success() && status != StatusCode::BAD_REQUEST {
            let error = InfluxError::answered(response, error_message).await;
            if let InfluxError::Authentication { status } = error {
                telemetry::authentication_failed(&endpoint_name(&self.endpoints.query), status);
            }
            return Err(error);
        }
        let body = read_capped(response).await;
        if status == StatusCode::BAD_REQUEST {
            return Err(InfluxError::Refused(QueryRefused {
                message: truncate_detail(error_message(&body)),
            }));
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
            Some(message) => Err(InfluxError::Refused(QueryRefused {
                message: truncate_detail(message.to_owned()),
            })),
            None => Ok(()),
        }
    }

    /// v3: creates `database`; `409` (it exists) is success.
    async fn configure_database(&self, database: &str) -> Result<(), InfluxError> {
        let endpoint = &self.endpoints.configure_database;
        let request = self
            .client
            .post(endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(serde_json::json!({ "db": database }).to_string());
        let response = self.send_authenticated(request, endpoint).await?;
        let status = response.status();
        if status.is_success() || status == StatusCode::CONFLICT {
            return Ok(());
        }
        let error = InfluxError::answered(response, error_message).await;
        if let InfluxError::Authentication { status } = error {
            telemetry::authentication_failed(&endpoint_name(endpoint), status);
        }
        Err(error)
    }

    /// `GET /ping`, for the readiness endpoint: Ok when the server answers 2xx.
    pub async fn ping(&self) -> Result<(), InfluxError> {
        let request = self.client.get(self.endpoints.ping.clone());
        let response = self
            .send_authenticated(request, &self.endpoints.ping)
            .await?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(InfluxError::answered(response, error_message).await)
    }

    /// Adds the credentials and sends; a missing answer becomes [`InfluxError::Transport`].
    async fn send_authenticated(
        &self,
        request: RequestBuilder,
        endpoint: &Url,
    ) -> Result<Response, InfluxError> {
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
        request
            .send()
            .await
            .map_err(|error| InfluxError::transport(endpoint, error))
    }

    async fn create_missing_database(&self) {
        let (InfluxApi::V1 { database, .. } | InfluxApi::V3 { database, .. }) = &self.api else {
            return;
        };
        telemetry::database_missing(database);
        if let Err(error) = self.ensure_database().await {
            telemetry::database_creation_failed(database, &error);
        }
    }
}

impl BatchEndpoint for InfluxWriter {
    /// Writes one run of lines and classifies the answer.
    async fn send(&self, lines: &[u8], line_count: usize) -> BatchAnswer {
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
        let response = match self
            .send_authenticated(request.body(body), &self.endpoints.write)
            .await
        {
            Ok(response) => response,
            Err(error) => {
                let detail = error.to_string();
                telemetry::write_request_failed(&endpoint_name(&self.endpoints.write), &detail);
                return BatchAnswer::Failed {
                    retry_after: None,
                    detail,
                };
            }
        };

        let status = response.status();
        telemetry::write_request_answered(status.as_u16());
        let Some(class) = classify(status, response.headers(), REFUSED_LINES) else {
            return BatchAnswer::Written;
        };
        let status = status.as_u16();
        match class {
            RetryClass::Hold => {
                telemetry::authentication_failed(&endpoint_name(&self.endpoints.write), status);
                BatchAnswer::Failed {
                    retry_after: None,
                    detail: format!("authentication failed (status {status})"),
                }
            }
            RetryClass::DeadLetter if self.is_v3() => {
                let body = read_capped(response).await;
                match v3_answer::read_refusal(status, &body, lines, line_count) {
                    V3Refusal::Partial(refused) => {
                        telemetry::partial_write(line_count, refused.len());
                        let mut outcomes = vec![ItemOutcome::Delivered; line_count];
                        for (line, refusal) in refused {
                            if let Some(outcome) = outcomes.get_mut(line) {
                                *outcome = refusal.into();
                            }
                        }
                        BatchAnswer::Items(outcomes)
                    }
                    V3Refusal::Whole { line, refusal } => {
                        telemetry::refused_whole(line_count, line);
                        BatchAnswer::RefusedFor {
                            item: line,
                            refusal,
                        }
                    }
                    V3Refusal::Unnamed => {
                        let message = error_message(&body);
                        if line_count > 1 {
                            telemetry::refused_request_bisected(line_count, status, &message);
                        }
                        let detail =
                            truncate_detail(format!("influxdb answered {status}: {message}"));
                        BatchAnswer::Split {
                            alone: Refusal::new(v3_answer::line_reason(&message), detail),
                        }
                    }
                }
            }
            RetryClass::DeadLetter | RetryClass::Split => {
                let message = error_message(&read_capped(response).await);
                if line_count > 1 {
                    telemetry::refused_request_bisected(line_count, status, &message);
                }
                let reason = if status == 413 {
                    Reason::TooLarge
                } else {
                    refusal_reason(&message)
                };
                let detail = truncate_detail(format!("influxdb answered {status}: {message}"));
                BatchAnswer::Split {
                    alone: Refusal::new(reason, detail),
                }
            }
            RetryClass::Retry { after } => {
                let message = error_message(&read_capped(response).await);
                if self.is_v3() && status == 500 && message.contains("max request size") {
                    // 3 Core answers a body over its `max-http-request-size` with a 500; it
                    // means 413, and would fail the same way however often it were retried.
                    if line_count > 1 {
                        telemetry::refused_request_bisected(line_count, status, &message);
                    }
                    return BatchAnswer::Split {
                        alone: Refusal::new(
                            Reason::TooLarge,
                            truncate_detail(format!("influxdb answered {status}: {message}")),
                        ),
                    };
                }
                let database_missing = match self.api {
                    InfluxApi::V1 { .. } => message.contains("database not found"),
                    InfluxApi::V3 { .. } => {
                        message.contains("database") && message.contains("not found")
                    }
                    InfluxApi::V2 { .. } => false,
                };
                if status == 404 && database_missing {
                    // Created once per batch: the answer ends the batch's attempt.
                    self.create_missing_database().await;
                    return BatchAnswer::Failed {
                        retry_after: None,
                        detail: truncate_detail(format!("influxdb answered 404: {message}")),
                    };
                }
                BatchAnswer::Failed {
                    retry_after: after,
                    detail: truncate_detail(format!("influxdb answered {status}: {message}")),
                }
            }
        }
    }
}

impl Sink for InfluxWriter {
    type Encoded = Line;
    type Encoder = LineEncoder;

    fn stage(&self) -> Stage {
        Stage::Influx
    }

    fn encoder(&self) -> LineEncoder {
        LineEncoder::new(self.precision, self.limits)
    }

    async fn write(&self, lines: &[&Line]) -> Vec<ItemOutcome> {
        let lines: Vec<&[u8]> = lines.iter().map(|line| line.as_bytes()).collect();
        write_batch(self, &self.buffers, &lines).await
    }
}

/// A point the normalise stage validated becomes its line here, while the message is still in
/// the cache. A name InfluxDB 1.x would not read back unchanged is refused (see
/// [`crate::encode`]).
impl<'p> Encode<ValidPoint<'p>> for InfluxWriter {
    fn encode(&self, encoder: &mut LineEncoder, point: &ValidPoint<'p>) -> Result<Line, Refusal> {
        encoder
            .encode_line(point)
            .map_err(|error| Refusal::of(&error))
    }
}

impl InfluxWriter {
    fn is_v3(&self) -> bool {
        matches!(self.api, InfluxApi::V3 { .. })
    }
}

/// An `Authorization` header of `scheme` and the token, marked sensitive so that the HTTP stack
/// never logs it.
fn authorization(scheme: &str, token: &SecretString) -> Result<HeaderValue, InfluxError> {
    let mut value =
        HeaderValue::from_str(&format!("{scheme} {}", token.expose_secret())).map_err(|_| {
            InfluxError::Settings("token: holds characters an HTTP header cannot carry".to_owned())
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The dead-letter reason for one line the server refused, from its error text.
fn refusal_reason(message: &str) -> Reason {
    if message.contains("field type conflict") {
        Reason::FieldTypeConflict
    } else if message.contains("beyond retention") {
        Reason::BeyondRetention
    } else if message.contains("unable to parse") {
        Reason::BadLine
    } else {
        Reason::Rejected
    }
}

/// The server's error text: v1's `{"error": ".."}`, v2's `{"message": ".."}`, or the body.
pub(crate) fn error_message(body: &[u8]) -> String {
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
