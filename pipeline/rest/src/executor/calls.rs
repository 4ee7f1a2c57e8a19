//! One request with its retries: an attempt's result ([`Attempt`]), the retry loop
//! ([`Executor::with_retries`]) and the answer-to-outcome classification of statuses.

use std::future::Future;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;
use sluice_http::{error_chain, truncate_detail};
use tokio::time::Instant;
use url::Url;

use super::Executor;
use crate::error::RestError;
use crate::settings::ManagerApi;
use crate::telemetry;

/// One attempt's result: done (either way), or worth another try.
pub(super) enum Attempt<T> {
    Done(T),
    Transient {
        detail: String,
        retry_after: Option<Duration>,
    },
}

/// Why a call ended without the answer wanted.
pub(super) struct CallFailure {
    pub(super) permanent: bool,
    pub(super) detail: String,
    pub(super) attempts: u32,
}

impl Executor {
    pub(super) async fn with_retries<T, F, Fut>(
        &self,
        kind: &'static str,
        target: &str,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<(T, u32), CallFailure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut attempts = 0u32;
        loop {
            let result = attempt().await;
            attempts += 1;
            match result {
                Attempt::Done(value) => return Ok((value, attempts)),
                Attempt::Transient {
                    detail,
                    retry_after,
                } => {
                    let delay = self.retry.delay(attempts - 1, retry_after);
                    if Instant::now() + delay > deadline {
                        return Err(CallFailure {
                            permanent: false,
                            detail: format!("{detail} (gave up after {attempts} attempts)"),
                            attempts,
                        });
                    }
                    telemetry::action_retried(kind, target, attempts, &detail, delay.as_millis());
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// `base` + `/api/v2|v3/` + `segments`, each segment percent-encoded.
pub(super) fn join_segments(
    base: &Url,
    api: &ManagerApi,
    segments: &[&str],
) -> Result<Url, RestError> {
    let mut url = base.clone();
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|()| RestError::Settings("url: cannot be a base URL".to_owned()))?;
        path.extend(api.prefix().trim_start_matches('/').split('/'));
        path.extend(segments);
    }
    Ok(url)
}

pub(super) async fn send<T>(request: RequestBuilder) -> Result<Response, Attempt<T>> {
    request.send().await.map_err(|error| Attempt::Transient {
        detail: truncate_detail(error_chain(&error.without_url())),
        retry_after: None,
    })
}

/// 2xx: `Ok(Ok(()))`; 408, 429, 5xx: `Err(transient)`; any other status: `Ok(Err(detail))`,
/// a permanent refusal.
pub(super) fn classify_status<T>(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Result<(), String>, Attempt<T>> {
    if status.is_success() {
        return Ok(Ok(()));
    }
    let detail = format!("answered {}: {}", status.as_u16(), error_text(body));
    if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        return Err(Attempt::Transient {
            detail,
            retry_after,
        });
    }
    Ok(Err(detail))
}

/// The manager's `error_code: message`, or the body's text.
pub(super) fn error_text(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let code = value.get("error_code").and_then(Value::as_str);
        let message = value.get("message").and_then(Value::as_str);
        match (code, message) {
            (Some(code), Some(message)) => return truncate_detail(format!("{code}: {message}")),
            (Some(text), None) | (None, Some(text)) => return truncate_detail(text.to_owned()),
            (None, None) => {}
        }
    }
    truncate_detail(String::from_utf8_lossy(body).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_done_transient_or_permanent() {
        let classify = |status: u16, body: &str| {
            classify_status::<()>(
                StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
                None,
                body.as_bytes(),
            )
        };
        assert!(matches!(classify(201, "{}"), Ok(Ok(()))));
        for transient in [408, 429, 500, 503] {
            assert!(matches!(
                classify(transient, ""),
                Err(Attempt::Transient { .. })
            ));
        }
        let Ok(Err(detail)) = classify(
            400,
            r#"{"error_code":"illegal_execution_parameters_error","message":"bad"}"#,
        ) else {
            panic!("400 is permanent");
        };
        assert_eq!(
            detail,
            "answered 400: illegal_execution_parameters_error: bad"
        );
        assert!(matches!(classify(404, "nope"), Ok(Err(_))));
    }
}
