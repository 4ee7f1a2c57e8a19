//! Prometheus `remote_write` (protocol 1.0): `POST /api/v1/write`, a snappy-compressed
//! (block format) protobuf `WriteRequest`, published as line protocol.
//!
//! Each sample becomes one line: measurement = the `__name__` label, tags = the other labels
//! (empty values dropped: Prometheus treats an empty label as absent), one float field `value`,
//! time = the sample's milliseconds as nanoseconds. Lines are built with the
//! `influxdb-line-protocol` builder, which escapes by construction.
//!
//! - A non-finite sample (NaN is also how Prometheus marks a series stale; line protocol has
//!   no NaN or infinity) is skipped and counted as `refused{reason="not_finite"}`.
//! - A series without `__name__` is skipped and counted as `refused{reason="missing_name"}`.
//! - An undecodable body (not snappy, not a `WriteRequest`) is answered 400: Prometheus drops
//!   a batch answered with a 4xx, which is right for a body that will never decode. A body
//!   over the limit is 413 (also dropped).
//! - When the broker or the pipeline cannot take it (any
//!   [`PublishError`](sluice_amqp::confirmed::PublishError), `Busy` included) the answer is
//!   503 with `Retry-After`: Prometheus retries 5xx with backoff. It does not retry 429 unless
//!   `queue_config.retry_on_http_429` (an experimental setting, off by default) is set, so a
//!   429 would lose the batch; hence 503 for overload too.
//!
//! 204 is answered once the broker confirmed every message of the request.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::{Bytes, BytesMut};
use influxdb_line_protocol::LineProtocolBuilder;
use prost::Message;
use sluice_amqp::confirmed::ConfirmedPublisher;

use crate::http_body::{BodyError, read_body, retry_after};
use crate::telemetry;

/// The `input` label of this input's metrics.
pub const INPUT: &str = "remote_write";
/// The content type of the published messages.
pub const CONTENT_TYPE: &str = "text/plain; format=line-protocol; precision=ns";

/// The messages of Prometheus' `prompb/remote.proto` and `prompb/types.proto` that protocol
/// 1.0 sends, with their field numbers. Fields not declared here (metadata = 3, exemplars,
/// native histograms) are skipped by the decoder, as protobuf skips unknown fields.
pub mod proto {
    /// `message WriteRequest { repeated TimeSeries timeseries = 1; reserved 2; repeated
    /// MetricMetadata metadata = 3; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// `message TimeSeries { repeated Label labels = 1; repeated Sample samples = 2; ..
    /// exemplars = 3; histograms = 4; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    /// `message Label { string name = 1; string value = 2; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `message Sample { double value = 1; int64 timestamp = 2; }`, the timestamp in
    /// milliseconds since the epoch.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

#[derive(Debug, Clone)]
pub struct RemoteWriteSettings {
    /// The routing key of every published message.
    pub routing_key: String,
    /// The largest body taken (compressed) and the largest it may decompress to.
    pub max_body_bytes: NonZeroUsize,
    /// A request's lines are published in messages of at most this many bytes.
    pub max_message_bytes: NonZeroUsize,
    /// The `Retry-After` of 503 answers.
    pub retry_after: Duration,
}

impl RemoteWriteSettings {
    /// The defaults: bodies of at most 32 MiB (Prometheus sends a few hundred KiB), messages
    /// of at most 4 MiB, `Retry-After: 1`.
    pub fn new(routing_key: impl Into<String>) -> Self {
        Self {
            routing_key: routing_key.into(),
            max_body_bytes: NonZeroUsize::new(32 << 20).expect("non-zero"),
            max_message_bytes: NonZeroUsize::new(4 << 20).expect("non-zero"),
            retry_after: Duration::from_secs(1),
        }
    }
}

struct RemoteWrite {
    settings: RemoteWriteSettings,
    publisher: ConfirmedPublisher,
}

/// The receiver's route, publishing through `publisher` (labelled `input="remote_write"`).
pub fn router(settings: RemoteWriteSettings, publisher: ConfirmedPublisher) -> Router {
    let state = Arc::new(RemoteWrite {
        settings,
        publisher: publisher.for_input(INPUT),
    });
    Router::new()
        .route("/api/v1/write", post(receive))
        .with_state(state)
}

/// Why a body was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not snappy's block format: {0}")]
    Snappy(#[from] snap::Error),
    #[error("decompresses to {length} bytes, more than the {limit} taken")]
    TooLarge { length: usize, limit: usize },
    #[error("not a remote-write WriteRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// What a request's samples became.
#[derive(Debug, Default, PartialEq)]
pub struct Converted {
    /// Newline-separated lines, each ending in a nanosecond timestamp.
    pub messages: Vec<Bytes>,
    pub samples: usize,
    pub not_finite: usize,
    pub missing_name: usize,
}

/// Decompresses and decodes a body, and turns its samples into lines.
pub fn convert(
    body: &[u8],
    max_decoded_bytes: usize,
    max_message_bytes: usize,
) -> Result<Converted, DecodeError> {
    let length = snap::raw::decompress_len(body)?;
    if length > max_decoded_bytes {
        return Err(DecodeError::TooLarge {
            length,
            limit: max_decoded_bytes,
        });
    }
    let decoded = snap::raw::Decoder::new().decompress_vec(body)?;
    let request = proto::WriteRequest::decode(decoded.as_slice())?;
    Ok(to_lines(&request, max_message_bytes))
}

fn to_lines(request: &proto::WriteRequest, max_message_bytes: usize) -> Converted {
    let mut converted = Converted::default();
    let mut message = BytesMut::new();
    let mut line = Vec::new();
    for series in &request.timeseries {
        let Some(name) = series
            .labels
            .iter()
            .find(|label| label.name == "__name__" && !label.value.is_empty())
        else {
            converted.missing_name += 1;
            continue;
        };
        for sample in &series.samples {
            if !sample.value.is_finite() {
                converted.not_finite += 1;
                continue;
            }
            let Some(nanos) = sample.timestamp.checked_mul(1_000_000) else {
                converted.not_finite += 1;
                continue;
            };
            line.clear();
            let mut builder =
                LineProtocolBuilder::new_with(std::mem::take(&mut line)).measurement(&name.value);
            for label in &series.labels {
                if label.name == "__name__" || label.name.is_empty() || label.value.is_empty() {
                    continue;
                }
                builder = builder.tag(&label.name, &label.value);
            }
            line = builder
                .field("value", sample.value)
                .timestamp(nanos)
                .close_line()
                .build();
            if !message.is_empty() && message.len() + line.len() > max_message_bytes {
                converted.messages.push(message.split().freeze());
            }
            message.extend_from_slice(&line);
            converted.samples += 1;
        }
    }
    if !message.is_empty() {
        converted.messages.push(message.freeze());
    }
    converted
}

async fn receive(State(state): State<Arc<RemoteWrite>>, body: Body) -> Response {
    let response = answer(&state, body).await;
    telemetry::answered(INPUT, response.status().as_u16());
    response
}

async fn answer(state: &RemoteWrite, body: Body) -> Response {
    let limit = state.settings.max_body_bytes.get();
    // Remote write sends `Content-Encoding: snappy`, which is the body's own framing: the
    // body is read as it came, never gunzipped.
    let body = match read_body(&HeaderMap::new(), body, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge { .. }) => {
            telemetry::refused(INPUT, "too_large", 1);
            return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
        }
        Err(error) => {
            telemetry::refused(INPUT, "unreadable", 1);
            return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response();
        }
    };
    let max_message_bytes = state.settings.max_message_bytes.get();
    let converted =
        match tokio::task::spawn_blocking(move || convert(&body, limit, max_message_bytes)).await {
            Ok(Ok(converted)) => converted,
            Ok(Err(error)) => {
                let reason = match error {
                    DecodeError::TooLarge { .. } => "too_large",
                    DecodeError::Snappy(_) | DecodeError::Protobuf(_) => "undecodable",
                };
                telemetry::refused(INPUT, reason, 1);
                let status = if reason == "too_large" {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                return (status, format!("{error}\n")).into_response();
            }
            Err(join_error) => {
                tracing::error!(error = %join_error, "decoding a remote-write request failed");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        };
    if converted.not_finite > 0 {
        telemetry::refused(INPUT, "not_finite", converted.not_finite);
    }
    if converted.missing_name > 0 {
        telemetry::refused(INPUT, "missing_name", converted.missing_name);
    }
    for message in converted.messages {
        if let Err(error) = state
            .publisher
            .publish(&state.settings.routing_key, message, CONTENT_TYPE)
            .await
        {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [retry_after(state.settings.retry_after)],
                format!("{error}\n"),
            )
                .into_response();
        }
    }
    telemetry::received(INPUT, converted.samples);
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::proto::{Label, Sample, TimeSeries, WriteRequest};
    use super::*;

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    fn body(request: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .expect("compresses")
    }

    #[test]
    fn samples_become_lines_with_labels_as_tags() {
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    label("__name__", "http requests"),
                    label("code", "200"),
                    label("empty", ""),
                    label("path", "/a,b=c"),
                ],
                samples: vec![
                    Sample {
                        value: 1.5,
                        timestamp: 1_700_000_000_123,
                    },
                    Sample {
                        value: f64::NAN,
                        timestamp: 1_700_000_000_124,
                    },
                ],
            }],
        };
        let converted = convert(&body(&request), 1 << 20, 1 << 20).expect("decodes");
        assert_eq!(converted.samples, 1);
        assert_eq!(converted.not_finite, 1);
        assert_eq!(
            String::from_utf8_lossy(&converted.messages[0]),
            "http\\ requests,code=200,path=/a\\,b\\=c value=1.5 1700000000123000000\n"
        );
    }

    #[test]
    fn a_series_without_a_name_is_skipped() {
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![label("job", "x")],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
            }],
        };
        let converted = convert(&body(&request), 1 << 20, 1 << 20).expect("decodes");
        assert_eq!(converted.missing_name, 1);
        assert!(converted.messages.is_empty());
    }

    #[test]
    fn garbage_and_oversized_bodies_are_errors() {
        assert!(matches!(
            convert(b"\xff\xff\xff\xff\xff garbage", 1 << 20, 1 << 20),
            Err(DecodeError::Snappy(_))
        ));
        let not_protobuf = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff")
            .expect("compresses");
        assert!(matches!(
            convert(&not_protobuf, 1 << 20, 1 << 20),
            Err(DecodeError::Protobuf(_))
        ));
        let big = snap::raw::Encoder::new()
            .compress_vec(&vec![0; 4096])
            .expect("compresses");
        assert!(matches!(
            convert(&big, 1024, 1 << 20),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
