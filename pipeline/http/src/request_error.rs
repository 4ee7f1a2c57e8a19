//! [`RequestError`]: the error of a store client's calls that answer one result (a ping, an
//! index template, a database), as opposed to its writes, which answer per-item outcomes. The
//! InfluxDB and Elasticsearch clients fail these calls in the same ways and say so in the same
//! words, naming their store; a [`Store`] supplies the name and what only that store answers.
//!
//! No variant holds a password, key or token, and transport details are taken from `reqwest`
//! with the URL stripped, so printing an error (`Display` or `Debug`) cannot leak a secret.

use std::fmt;
use std::time::Duration;

use reqwest::Response;
use url::Url;

use crate::{endpoint_name, error_chain, is_transient, read_capped, retry_after, truncate_detail};

/// The store a [`RequestError`] is about.
pub trait Store: fmt::Debug {
    /// The store as the error texts name it: `elasticsearch`, `influxdb`.
    const NAME: &'static str;
    /// What only this store refuses (InfluxDB: a query); [`std::convert::Infallible`] when
    /// nothing. Like bad settings, such a refusal needs an operator and is not retried.
    type Refusal: std::error::Error + Send + Sync + 'static;
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError<S: Store> {
    /// The settings cannot work; the message names the setting.
    #[error("invalid {store} settings: {0}", store = S::NAME)]
    Settings(String),
    /// No answer: connection refused or reset, DNS, TLS, timeout.
    #[error("could not reach {store} at {endpoint}: {detail}", store = S::NAME)]
    Transport {
        /// The URL called, without its query.
        endpoint: String,
        detail: String,
        timed_out: bool,
    },
    /// 401 or 403: the credentials are wrong or lack a privilege.
    #[error("authentication failed (status {status})")]
    Authentication { status: u16 },
    /// Any other unexpected status, with the server's error text.
    #[error("{store} answered {status}: {message}", store = S::NAME)]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error(transparent)]
    Refused(S::Refusal),
}

impl<S: Store> RequestError<S> {
    /// A call to `endpoint` that got no answer.
    pub fn transport(endpoint: &Url, error: reqwest::Error) -> Self {
        RequestError::Transport {
            endpoint: endpoint_name(endpoint),
            timed_out: error.is_timeout(),
            detail: truncate_detail(error_chain(&error.without_url())),
        }
    }

    /// The error an answer that is not a 2xx stands for; `error_message` reads the store's
    /// error text from the (capped) body. A 401 or 403 is not read further.
    pub async fn answered(response: Response, error_message: impl FnOnce(&[u8]) -> String) -> Self {
        let status = response.status().as_u16();
        if matches!(status, 401 | 403) {
            return RequestError::Authentication { status };
        }
        let retry_after = retry_after(response.headers());
        let body = read_capped(response).await;
        RequestError::Status {
            status,
            message: truncate_detail(error_message(&body)),
            retry_after,
        }
    }

    /// True when the same call may succeed later without anyone changing anything: the server
    /// was unreachable, overloaded (429) or failing (5xx). Bad settings, refused credentials
    /// and refused requests need an operator, so they are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            RequestError::Transport { .. } => true,
            RequestError::Status { status, .. } => is_transient(*status),
            RequestError::Settings(_)
            | RequestError::Authentication { .. }
            | RequestError::Refused(_) => false,
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RequestError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    enum TestStore {}

    impl Store for TestStore {
        const NAME: &'static str = "teststore";
        type Refusal = std::convert::Infallible;
    }

    type TestError = RequestError<TestStore>;

    #[test]
    fn only_passing_failures_are_retryable() {
        let status = |status| TestError::Status {
            status,
            message: String::new(),
            retry_after: None,
        };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(status(408).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(
            TestError::Transport {
                endpoint: "http://127.0.0.1:1/".into(),
                detail: "connection refused".into(),
                timed_out: false,
            }
            .is_retryable()
        );
        assert!(!TestError::Authentication { status: 401 }.is_retryable());
        assert!(!TestError::Settings("url: x".into()).is_retryable());
        assert_eq!(
            TestError::Authentication { status: 403 }.to_string(),
            "authentication failed (status 403)"
        );
        let with_retry_after = TestError::Status {
            status: 429,
            message: "queue full".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(with_retry_after.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            with_retry_after.to_string(),
            "teststore answered 429: queue full"
        );
    }
}
