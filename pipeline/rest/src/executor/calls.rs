//! One request with its retries: an attempt's result ([`Attempt`]), the retry loop
//! ([`Executor::with_retries`]) and the answer-to-outcome classification of statuses.

use std::future::Future;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;
use sluice_http::{Refusals, RetryClass, classify, error_chain, read_capped, truncate_detail};
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

impl CallFailure {
    /// The call was refused, or cannot be made: trying again would not change that.
    pub(super) fn permanent(detail: String, attempts: u32) -> Self {
        Self {
            permanent: true,
            detail,
            attempts,
        }
    }
}

/// An answer, read whole: its status, its class (see [`answer_class`]) and its capped body.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) class: Option<RetryClass>,
    pub(super) body: Vec<u8>,
}

impl Answer {
    /// This answer as [`classify_status`] reads it.
    pub(super) fn classify<T>(&self) -> Result<Result<(), String>, Attempt<T>> {
        classify_status(self.status, self.class, &self.body)
    }
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

/// Sends one attempt of a call and reads its answer; no answer at all is worth another try.
pub(super) async fn call<T>(request: RequestBuilder) -> Result<Answer, Attempt<T>> {
    let response = request.send().await.map_err(|error| Attempt::Transient {
        detail: truncate_detail(error_chain(&error.without_url())),
        retry_after: None,
    })?;
    let status = response.status();
    let class = answer_class(&response);
    let body = read_capped(response).await;
    Ok(Answer {
        status,
        class,
        body,
    })
}

/// The executor's reading of an answer of `status` whose [`RetryClass`] is `class` (from
/// [`answer_class`]): 2xx: `Ok(Ok(()))`; a retry (408, 429, 5xx): `Err(transient)`; any other
/// class: `Ok(Err(detail))`, a permanent refusal. An action is one request that is reported,
/// so a split (413) or a hold (401, 403) fails it for good, as a refusal does.
pub(super) fn classify_status<T>(
    status: StatusCode,
    class: Option<RetryClass>,
    body: &[u8],
) -> Result<Result<(), String>, Attempt<T>> {
    let Some(class) = class else {
        return Ok(Ok(()));
    };
    let detail = format!("answered {}: {}", status.as_u16(), error_text(body));
    match class {
        RetryClass::Retry { after } => Err(Attempt::Transient {
            detail,
            retry_after: after,
        }),
        RetryClass::DeadLetter | RetryClass::Split | RetryClass::Hold => Ok(Err(detail)),
    }
}

/// The answer's class, as sluice's HTTP clients all decide it; the REST API's every refusal is
/// one (`Refusals::AnyOther`). Read before the body, which consumes the response.
fn answer_class(response: &Response) -> Option<RetryClass> {
    classify(response.status(), response.headers(), Refusals::AnyOther)
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
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
            let class = sluice_http::classify(
                status,
                &reqwest::header::HeaderMap::new(),
                Refusals::AnyOther,
            );
            classify_status::<()>(status, class, body.as_bytes())
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
