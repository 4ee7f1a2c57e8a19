//! InfluxDB's write API, as clients of InfluxDB 1.x and 2.x call it, in front of the broker.
//!
//! - `POST /write?db=..&rp=..&precision=..` (1.x; `u`/`p`, `Authorization: Token` or Basic)
//! - `POST /api/v2/write?org=..&bucket=..&precision=..` (2.x; `Authorization: Token ..`)
//! - `GET|HEAD /ping`: 204 with `X-Influxdb-Version`, which clients call first
//! - `GET /health`: 2.x's health document; `fail` (503) while the broker is unreachable
//!
//! Every line is parsed with the `influxdb-line-protocol` crate. What is published is the lines
//! as sent, each ending in a **nanosecond timestamp**: a line without one gets the time the
//! request was received, other precisions are converted. The consumer must never assign a
//! time itself, since a redelivered message would then write a second point instead of
//! overwriting the first. The output is cut from the original text (only the timestamp is
//! replaced), so the sender's escaping is kept byte for byte. One message per request, or one
//! per `max_message_bytes` of lines. 204 is answered only once the broker confirmed every
//! message of the request, so a 204 means durable.
//!
//! # Answers, as InfluxDB gives them
//!
//! | case                             | 1.x `/write`                                  | 2.x `/api/v2/write`                          |
//! |----------------------------------|-----------------------------------------------|----------------------------------------------|
//! | all lines good, confirmed        | 204                                           | 204                                          |
//! | some lines bad                   | the good ones are published, then 400 `{"error":"partial write: <errors> dropped=0"}` | nothing published, 400 `{"code":"invalid","message":"<errors>"}` |
//! | every line bad                   | 400 `{"error":"<errors>"}`                    | 400 `{"code":"invalid","message":"<errors>"}` |
//! | body over `max_body_bytes`       | 413 `{"error":"Request Entity Too Large"}`    | 413 `{"code":"request too large","message":"unable to read data: points batch is too large"}` |
//! | token configured, none given     | 401 `{"error":"unable to parse authentication credentials"}` | 401 `{"code":"unauthorized","message":"unauthorized access"}` |
//! | token wrong                      | 401 `{"error":"authorization failed"}`        | 401 `{"code":"unauthorized","message":"unauthorized access"}` |
//! | publisher `Busy`                 | 429, `Retry-After`                            | 429, `Retry-After`                           |
//! | broker unavailable, nack, timeout | 503, `Retry-After`                           | 503, `Retry-After`                           |
//!
//! Sources for the partial-write semantics: InfluxDB 1.x's `services/httpd/handler.go`
//! (`serveWrite`: when some points parsed, it writes them and answers 400 with
//! `tsdb.PartialWriteError{Reason: parseError}`, whose text is `partial write: <reason>
//! dropped=0`; when none parsed, 400 with the parse error), confirmed against InfluxDB 1.6.7
//! here (`{"error":"partial write: unable to parse 'bad line here': invalid field
//! format\nunable to parse 'm v==': invalid boolean dropped=0"}`); and InfluxDB 2.x's
//! `http/points/points_parser.go` (`parsePoints`: any parse error returns `EInvalid` before
//! anything is written, so 2.x writes nothing from a request with a bad line). Each error
//! reads `unable to parse '<line>': <reason>`, errors joined by newlines, as InfluxDB's
//! parser joins them; the reason is the Rust parser's wording, not Go's.
//!
//! Two deviations, both refusals InfluxDB would not make: a body that is not UTF-8 is
//! answered 400 (the parser reads text), and at most [`MAX_REPORTED_ERRORS`] line errors are
//! listed in one answer. An unknown 1.x `precision` is taken as nanoseconds, as 1.x does.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sluice_amqp::confirmed::{ConfirmedPublisher, PublishError};
use subtle::ConstantTimeEq;

use crate::http_body::{BodyError, publish_failure_status, read_body, retry_after};
use crate::telemetry;

/// The `input` label of this input's metrics.
pub const INPUT: &str = "influx_write";
/// The content type of the published messages.
pub const CONTENT_TYPE: &str = "text/plain; format=line-protocol; precision=ns";
/// Line errors listed in one answer at most; the rest are counted.
pub const MAX_REPORTED_ERRORS: usize = 100;

#[derive(Debug, Clone)]
pub struct InfluxWriteSettings {
    /// The routing key of every published message.
    pub routing_key: String,
    /// The largest body taken, as sent and after gunzip.
    pub max_body_bytes: NonZeroUsize,
    /// A request's lines are published in messages of at most this many bytes (a single longer
    /// line is a message of its own).
    pub max_message_bytes: NonZeroUsize,
    /// When set, writes need it: as 1.x's password (`p`, Basic, `Token user:password`) or
    /// 2.x's `Authorization: Token <token>`. `/ping` and `/health` never do.
    pub token: Option<SecretString>,
    /// The `Retry-After` of 429 and 503 answers.
    pub retry_after: Duration,
    /// The `X-Influxdb-Version` header every answer carries; clients read it from `/ping`.
    pub version: String,
}

impl InfluxWriteSettings {
    /// The defaults: InfluxDB 1.x's `max-body-size` (25 MB), messages of at most 4 MiB (well
    /// under RabbitMQ 4's 16 MiB `max_message_size`), no token, `Retry-After: 1`, and the
    /// version of the last 1.x release, which 1.x and 2.x clients both accept.
    pub fn new(routing_key: impl Into<String>) -> Self {
        Self {
            routing_key: routing_key.into(),
            max_body_bytes: NonZeroUsize::new(25_000_000).expect("non-zero"),
            max_message_bytes: NonZeroUsize::new(4 << 20).expect("non-zero"),
            token: None,
            retry_after: Duration::from_secs(1),
            version: "1.8.10".to_owned(),
        }
    }
}

struct InfluxWrite {
    settings: InfluxWriteSettings,
    publisher: ConfirmedPublisher,
}

/// The write API's routes, publishing through `publisher` (labelled `input="influx_write"`).
pub fn router(settings: InfluxWriteSettings, publisher: ConfirmedPublisher) -> Router {
    let state = Arc::new(InfluxWrite {
        settings,
        publisher: publisher.for_input(INPUT),
    });
    Router::new()
        .route("/write", post(write_v1))
        .route("/api/v2/write", post(write_v2))
        .route("/ping", get(ping).head(ping))
        .route("/health", get(health))
        .layer(axum::middleware::map_response_with_state(
            Arc::clone(&state),
            identify,
        ))
        .with_state(state)
}

/// Every answer says what it is, as InfluxDB's do.
async fn identify(State(state): State<Arc<InfluxWrite>>, mut response: Response) -> Response {
    let headers = response.headers_mut();
    if let Ok(version) = HeaderValue::from_str(&state.settings.version) {
        headers.insert(HeaderName::from_static("x-influxdb-version"), version);
    }
    headers.insert(
        HeaderName::from_static("x-influxdb-build"),
        HeaderValue::from_static("OSS"),
    );
    telemetry::answered(INPUT, response.status().as_u16());
    response
}

async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn health(State(state): State<Arc<InfluxWrite>>) -> Response {
    let connected = state.publisher.is_connected();
    let (status, check, message) = if connected {
        (StatusCode::OK, "pass", "ready for queries and writes")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "fail",
            "the broker is unreachable: writes are refused",
        )
    };
    let body = serde_json::json!({
        "name": "influxdb",
        "message": message,
        "status": check,
        "checks": [],
        "version": state.settings.version,
        "commit": "",
    });
    (status, axum::Json(body)).into_response()
}

/// Which API a request came through: it decides the error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    V1,
    V2,
}

/// An answer in the API's own error format: 1.x `{"error": ..}` with `X-Influxdb-Error`,
/// 2.x `{"code": .., "message": ..}` with `X-Platform-Error-Code`.
fn error_answer(api: Api, status: StatusCode, code: &'static str, message: &str) -> Response {
    match api {
        Api::V1 => {
            let mut response =
                (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
            if let Ok(value) = HeaderValue::from_str(message) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static("x-influxdb-error"), value);
            }
            response
        }
        Api::V2 => {
            let mut response = (
                status,
                axum::Json(serde_json::json!({ "code": code, "message": message })),
            )
                .into_response();
            response.headers_mut().insert(
                HeaderName::from_static("x-platform-error-code"),
                HeaderValue::from_static(code),
            );
            response
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct V1Params {
    db: Option<String>,
    precision: Option<String>,
    u: Option<String>,
    p: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct V2Params {
    precision: Option<String>,
}

/// 1.x's precisions: `n`/`ns` (and anything unknown, as 1.x takes it), `u`, `ms`, `s`, `m`,
/// `h`.
fn v1_nanos_per_unit(precision: Option<&str>) -> i64 {
    match precision {
        Some("u") => 1_000,
        Some("ms") => 1_000_000,
        Some("s") => 1_000_000_000,
        Some("m") => 60 * 1_000_000_000,
        Some("h") => 3_600 * 1_000_000_000,
        _ => 1,
    }
}

/// 2.x's precisions: `ns`, `us`, `ms`, `s`; anything else is refused.
fn v2_nanos_per_unit(precision: Option<&str>) -> Option<i64> {
    match precision {
        None | Some("") | Some("ns") => Some(1),
        Some("us") => Some(1_000),
        Some("ms") => Some(1_000_000),
        Some("s") => Some(1_000_000_000),
        Some(_) => None,
    }
}

async fn write_v1(
    State(state): State<Arc<InfluxWrite>>,
    Query(params): Query<V1Params>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(token) = &state.settings.token
        && let Err(refusal) = check_v1_credentials(token, &params, &headers)
    {
        telemetry::refused(INPUT, "unauthorized", 1);
        return error_answer(Api::V1, StatusCode::UNAUTHORIZED, "unauthorized", refusal);
    }
    if params.db.as_deref().is_none_or(str::is_empty) {
        return error_answer(
            Api::V1,
            StatusCode::BAD_REQUEST,
            "invalid",
            "database is required",
        );
    }
    let nanos_per_unit = v1_nanos_per_unit(params.precision.as_deref());
    write(&state, Api::V1, nanos_per_unit, &headers, body).await
}

async fn write_v2(
    State(state): State<Arc<InfluxWrite>>,
    Query(params): Query<V2Params>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(token) = &state.settings.token
        && !v2_token_matches(token, &headers)
    {
        telemetry::refused(INPUT, "unauthorized", 1);
        return error_answer(
            Api::V2,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unauthorized access",
        );
    }
    let Some(nanos_per_unit) = v2_nanos_per_unit(params.precision.as_deref()) else {
        return error_answer(
            Api::V2,
            StatusCode::BAD_REQUEST,
            "invalid",
            "invalid precision; valid precision units are ns, us, ms, and s",
        );
    };
    write(&state, Api::V2, nanos_per_unit, &headers, body).await
}

fn secret_matches(expected: &SecretString, given: &str) -> bool {
    expected
        .expose_secret()
        .as_bytes()
        .ct_eq(given.as_bytes())
        .into()
}

/// 1.x's credentials, in the order 1.x looks for them: `u`/`p`, then `Authorization: Token
/// user:password` (or a bare token), then Basic. The token is the password; the user name is
/// not checked.
fn check_v1_credentials(
    token: &SecretString,
    params: &V1Params,
    headers: &HeaderMap,
) -> Result<(), &'static str> {
    let query_credentials = params
        .u
        .as_deref()
        .zip(params.p.as_deref())
        .filter(|(user, password)| !user.is_empty() && !password.is_empty());
    let given = if let Some((_user, password)) = query_credentials {
        Some(password.to_owned())
    } else {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        match authorization.and_then(|value| value.split_once(' ')) {
            Some(("Token", credentials)) => Some(
                credentials
                    .split_once(':')
                    .map_or(credentials, |(_user, password)| password)
                    .to_owned(),
            ),
            Some(("Basic", encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|decoded| String::from_utf8(decoded).ok())
                .and_then(|decoded| {
                    decoded
                        .split_once(':')
                        .map(|(_user, password)| password.to_owned())
                }),
            _ => None,
        }
    };
    match given {
        None => Err("unable to parse authentication credentials"),
        Some(given) if secret_matches(token, &given) => Ok(()),
        Some(_) => Err("authorization failed"),
    }
}

fn v2_token_matches(token: &SecretString, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Token "))
        .is_some_and(|given| secret_matches(token, given.trim()))
}

/// Reads, restamps and publishes one request's lines, and answers as the API would.
async fn write(
    state: &InfluxWrite,
    api: Api,
    nanos_per_unit: i64,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let received_at = now_nanos();
    let limit = state.settings.max_body_bytes.get();
    let body = match read_body(headers, body, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge { .. }) => {
            telemetry::refused(INPUT, "too_large", 1);
            return match api {
                Api::V1 => error_answer(
                    api,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request too large",
                    "Request Entity Too Large",
                ),
                Api::V2 => error_answer(
                    api,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request too large",
                    "unable to read data: points batch is too large",
                ),
            };
        }
        Err(error) => {
            telemetry::refused(INPUT, "unreadable", 1);
            let message = match (api, &error) {
                (Api::V1, BodyError::Gzip(gzip)) => gzip.to_string(),
                (Api::V2, BodyError::Gzip(gzip)) => format!("unable to read data: {gzip}"),
                (_, other) => other.to_string(),
            };
            return error_answer(api, StatusCode::BAD_REQUEST, "invalid", &message);
        }
    };
    if api == Api::V2 && body.is_empty() {
        return error_answer(
            api,
            StatusCode::BAD_REQUEST,
            "invalid",
            "writing requires points",
        );
    }
    let max_message_bytes = state.settings.max_message_bytes.get();
    let restamped = match tokio::task::spawn_blocking(move || {
        std::str::from_utf8(&body)
            .map(|text| restamp(text, nanos_per_unit, received_at, max_message_bytes))
    })
    .await
    {
        Ok(Ok(restamped)) => restamped,
        Ok(Err(_not_utf8)) => {
            telemetry::refused(INPUT, "invalid_utf8", 1);
            return error_answer(
                api,
                StatusCode::BAD_REQUEST,
                "invalid",
                "unable to parse: the body is not valid UTF-8",
            );
        }
        Err(join_error) => {
            tracing::error!(error = %join_error, "restamping a write request failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if restamped.error_count > 0 {
        telemetry::refused(INPUT, "bad_line", restamped.error_count);
    }
    let errors = restamped.error_text();
    if api == Api::V2 && restamped.error_count > 0 {
        return error_answer(api, StatusCode::BAD_REQUEST, "invalid", &errors);
    }
    if restamped.line_count == 0 && restamped.error_count > 0 {
        return error_answer(api, StatusCode::BAD_REQUEST, "invalid", &errors);
    }
    if let Err(error) = publish_all(state, restamped.messages).await {
        return publish_failure(state, api, &error);
    }
    telemetry::received(INPUT, restamped.line_count);
    if restamped.error_count > 0 {
        return error_answer(
            api,
            StatusCode::BAD_REQUEST,
            "invalid",
            &format!("partial write: {errors} dropped=0"),
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Publishes the messages in turn; the first failure ends the request (the sender retries it
/// whole, and what was already confirmed is overwritten by the same points).
async fn publish_all(state: &InfluxWrite, messages: Vec<Bytes>) -> Result<(), PublishError> {
    for message in messages {
        state
            .publisher
            .publish(&state.settings.routing_key, message, CONTENT_TYPE)
            .await?;
    }
    Ok(())
}

fn publish_failure(state: &InfluxWrite, api: Api, error: &PublishError) -> Response {
    let status = publish_failure_status(error);
    let code = if status == StatusCode::TOO_MANY_REQUESTS {
        "too many requests"
    } else {
        "unavailable"
    };
    let mut response = error_answer(api, status, code, &error.to_string());
    let (name, value) = retry_after(state.settings.retry_after);
    response.headers_mut().insert(name, value);
    response
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A request's lines, restamped and cut into messages.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restamped {
    /// Newline-separated lines, each ending in a nanosecond timestamp.
    pub messages: Vec<Bytes>,
    pub line_count: usize,
    /// The first [`MAX_REPORTED_ERRORS`] line errors, as InfluxDB words them.
    pub errors: Vec<String>,
    pub error_count: usize,
}

impl Restamped {
    /// The errors as one answer's text: joined by newlines, as InfluxDB joins them.
    pub fn error_text(&self) -> String {
        let mut text = self.errors.join("\n");
        let unlisted = self.error_count - self.errors.len();
        if unlisted > 0 {
            text.push_str(&format!("\n({unlisted} more lines could not be parsed)"));
        }
        text
    }
}

/// Parses every line of `body` and writes it again with a nanosecond timestamp: the line's own
/// (in units of `nanos_per_unit` nanoseconds) converted, or `received_at` for a line without
/// one. Only the timestamp is replaced; the rest of the line is the sender's text. Comments
/// and blank lines are dropped; a line that does not parse is reported, not published.
pub fn restamp(
    body: &str,
    nanos_per_unit: i64,
    received_at: i64,
    max_message_bytes: usize,
) -> Restamped {
    let mut restamped = Restamped::default();
    let mut message = BytesMut::new();
    let mut timestamp_text = itoa::Buffer::new();
    for raw in influxdb_line_protocol::split_lines(body) {
        let line = raw.trim_start_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = match influxdb_line_protocol::parse_lines(line).next() {
            None => continue,
            Some(Err(error)) => {
                restamped.report(format!("unable to parse '{line}': {error}"));
                continue;
            }
            Some(Ok(parsed)) => parsed,
        };
        let without_spaces = line.trim_end_matches(' ');
        let (series_and_fields, timestamp) = match parsed.timestamp {
            None => (without_spaces, received_at),
            Some(timestamp) => {
                // The parser found a timestamp: it is the last space-separated token.
                let Some((before, _timestamp)) = without_spaces.rsplit_once(' ') else {
                    restamped.report(format!("unable to parse '{line}': no timestamp found"));
                    continue;
                };
                let Some(nanos) = timestamp.checked_mul(nanos_per_unit) else {
                    restamped.report(format!(
                        "unable to parse '{line}': time outside range {timestamp}"
                    ));
                    continue;
                };
                (before.trim_end_matches(' '), nanos)
            }
        };
        let timestamp = timestamp_text.format(timestamp);
        let length = series_and_fields.len() + 1 + timestamp.len() + 1;
        if !message.is_empty() && message.len() + length > max_message_bytes {
            restamped.messages.push(message.split().freeze());
        }
        message.extend_from_slice(series_and_fields.as_bytes());
        message.extend_from_slice(b" ");
        message.extend_from_slice(timestamp.as_bytes());
        message.extend_from_slice(b"\n");
        restamped.line_count += 1;
    }
    if !message.is_empty() {
        restamped.messages.push(message.freeze());
    }
    restamped
}

impl Restamped {
    fn report(&mut self, error: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(restamped: &Restamped) -> String {
        restamped
            .messages
            .iter()
            .map(|message| String::from_utf8_lossy(message).into_owned())
            .collect()
    }

    #[test]
    fn timestamps_are_converted_or_filled_in() {
        let restamped = restamp(
            "cpu v=1 17\n\n# comment\n  mem,h=a v=2i\n",
            1_000,
            99,
            1 << 20,
        );
        assert_eq!(lines(&restamped), "cpu v=1 17000\nmem,h=a v=2i 99\n");
        assert_eq!(restamped.line_count, 2);
        assert_eq!(restamped.error_count, 0);
    }

    #[test]
    fn escaping_and_quoted_spaces_are_kept_as_sent() {
        let body = "we\\ ird,t\\,ag=a\\ b s=\"x y 12\",v=1 5\nm s=\"a b\"\n";
        let restamped = restamp(body, 1, 7, 1 << 20);
        assert_eq!(
            lines(&restamped),
            "we\\ ird,t\\,ag=a\\ b s=\"x y 12\",v=1 5\nm s=\"a b\" 7\n"
        );
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_kept() {
        let restamped = restamp("m v=1 1\nbad\nm v=2 2\n", 1, 0, 1 << 20);
        assert_eq!(lines(&restamped), "m v=1 1\nm v=2 2\n");
        assert_eq!(restamped.error_count, 1);
        assert!(
            restamped.errors[0].starts_with("unable to parse 'bad': "),
            "{:?}",
            restamped.errors
        );
    }

    #[test]
    fn a_timestamp_that_overflows_nanoseconds_is_a_bad_line() {
        let restamped = restamp("m v=1 9223372036854775807\n", 1_000_000_000, 0, 1 << 20);
        assert_eq!(restamped.line_count, 0);
        assert_eq!(restamped.error_count, 1);
    }

    #[test]
    fn lines_are_cut_into_messages_at_the_size_limit() {
        let restamped = restamp("a v=1 1\nb v=1 1\nc v=1 1\n", 1, 0, 16);
        assert_eq!(restamped.messages.len(), 2, "{:?}", restamped.messages);
        assert_eq!(lines(&restamped), "a v=1 1\nb v=1 1\nc v=1 1\n");
    }

    #[test]
    fn error_text_says_how_many_were_not_listed() {
        let body = "bad\n".repeat(MAX_REPORTED_ERRORS + 3);
        let restamped = restamp(&body, 1, 0, 1 << 20);
        assert_eq!(restamped.errors.len(), MAX_REPORTED_ERRORS);
        assert!(
            restamped
                .error_text()
                .ends_with("(3 more lines could not be parsed)")
        );
    }

    #[test]
    fn precisions_of_both_apis() {
        assert_eq!(v1_nanos_per_unit(Some("h")), 3_600_000_000_000);
        assert_eq!(v1_nanos_per_unit(Some("u")), 1_000);
        assert_eq!(v1_nanos_per_unit(Some("bogus")), 1);
        assert_eq!(v2_nanos_per_unit(Some("us")), Some(1_000));
        assert_eq!(v2_nanos_per_unit(Some("u")), None);
    }
}
