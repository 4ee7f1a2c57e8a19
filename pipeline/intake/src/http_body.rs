//! Reading a request body without ever holding more than the configured maximum, and the
//! answers every HTTP input gives when publishing fails.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use bytes::Bytes;
use flate2::read::GzDecoder;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use sluice_amqp::confirmed::PublishError;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Gzip(std::io::Error),
    #[error("reading the body failed: {0}")]
    Unreadable(String),
}

/// The body, gunzipped when `Content-Encoding: gzip`; both the body as sent and the
/// decompressed one are held to `limit` bytes (a small gzip body can inflate enormously).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let raw = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(BodyError::TooLarge { limit });
        }
        Err(error) => return Err(BodyError::Unreadable(error.to_string())),
    };
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|encoding| encoding.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if !gzipped {
        return Ok(raw);
    }
    // Inflating is CPU work of up to `limit` bytes: off the runtime's threads.
    tokio::task::spawn_blocking(move || gunzip(&raw, limit))
        .await
        .map_err(|error| BodyError::Unreadable(error.to_string()))?
}

fn gunzip(compressed: &[u8], limit: usize) -> Result<Bytes, BodyError> {
    let mut inflated = Vec::new();
    GzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(BodyError::Gzip)?;
    if inflated.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(Bytes::from(inflated))
}

/// The status a failed publish is answered with: `Busy` is the sender going too fast (429);
/// everything else is the broker or the pipeline behind it not taking more now (503). Both
/// carry `Retry-After`.
pub(crate) fn publish_failure_status(error: &PublishError) -> StatusCode {
    match error {
        PublishError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
        PublishError::Unavailable { .. }
        | PublishError::Nacked
        | PublishError::Unroutable { .. }
        | PublishError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `Retry-After` in whole seconds, at least one.
pub(crate) fn retry_after(after: Duration) -> (header::HeaderName, HeaderValue) {
    let seconds = after.as_secs().max(1);
    (header::RETRY_AFTER, HeaderValue::from(seconds))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).expect("in memory");
        encoder.finish().expect("in memory")
    }

    #[test]
    fn a_gzip_body_is_inflated_within_the_limit() {
        let compressed = gzip(b"m v=1\n");
        assert_eq!(gunzip(&compressed, 6).expect("fits"), &b"m v=1\n"[..]);
        assert!(matches!(
            gunzip(&compressed, 5),
            Err(BodyError::TooLarge { limit: 5 })
        ));
    }

    #[test]
    fn a_small_gzip_bomb_is_stopped_at_the_limit() {
        let compressed = gzip(&vec![b'a'; 10 << 20]);
        assert!(compressed.len() < 64 << 10);
        assert!(matches!(
            gunzip(&compressed, 1 << 20),
            Err(BodyError::TooLarge { .. })
        ));
    }

    #[test]
    fn overload_is_429_and_broker_trouble_503() {
        let busy = PublishError::Busy {
            messages: 1,
            bytes: 1,
        };
        assert_eq!(publish_failure_status(&busy), StatusCode::TOO_MANY_REQUESTS);
        for error in [
            PublishError::Nacked,
            PublishError::Timeout(Duration::from_secs(1)),
            PublishError::Unavailable {
                detail: String::new(),
            },
        ] {
            assert_eq!(
                publish_failure_status(&error),
                StatusCode::SERVICE_UNAVAILABLE
            );
        }
        assert_eq!(retry_after(Duration::from_millis(10)).1, "1");
    }

    #[test]
    fn not_gzip_is_an_error() {
        assert!(matches!(gunzip(b"plain", 100), Err(BodyError::Gzip(_))));
    }
}
