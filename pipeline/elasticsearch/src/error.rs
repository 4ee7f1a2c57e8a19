//! The error of the calls that answer one result: [`EsWriter::new`], `ping` and
//! `install_index_template`. Writes never fail as a whole; they answer per-document outcomes.
//!
//! No variant holds a password or API key, and the transport details are taken from `reqwest`
//! with the URL stripped, so printing an error (`Display` or `Debug`) cannot leak a secret.
//!
//! [`EsWriter::new`]: crate::EsWriter::new

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum EsError {
    /// The settings cannot work; the message names the setting.
    #[error("invalid elasticsearch settings: {0}")]
    Settings(String),
    /// No answer: connection refused or reset, DNS, TLS, timeout.
    #[error("could not reach elasticsearch at {endpoint}: {detail}")]
    Transport {
        /// The URL called, without its query.
        endpoint: String,
        detail: String,
        timed_out: bool,
    },
    /// 401 or 403: the credentials are wrong or lack a privilege.
    #[error("authentication failed (status {status})")]
    Authentication { status: u16 },
    /// Any other unexpected status, with the server's error `type: reason` (or its body).
    #[error("elasticsearch answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
}

impl EsError {
    /// True when the same call may succeed later without anyone changing anything: the server
    /// was unreachable, overloaded (429) or failing (5xx). Bad settings, refused credentials
    /// and refused requests (a template Elasticsearch finds invalid) need an operator.
    pub fn is_retryable(&self) -> bool {
        match self {
            EsError::Transport { .. } => true,
            EsError::Status { status, .. } => sluice_http::is_transient(*status),
            EsError::Settings(_) | EsError::Authentication { .. } => false,
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EsError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passing_failures_are_retryable() {
        let status = |status| EsError::Status {
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
            EsError::Transport {
                endpoint: "http://127.0.0.1:1/".into(),
                detail: "connection refused".into(),
                timed_out: false,
            }
            .is_retryable()
        );
        assert!(!EsError::Authentication { status: 401 }.is_retryable());
        assert!(!EsError::Settings("url: x".into()).is_retryable());
        assert_eq!(
            EsError::Authentication { status: 403 }.to_string(),
            "authentication failed (status 403)"
        );
        let with_retry_after = EsError::Status {
            status: 429,
            message: "es_rejected_execution_exception: queue full".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(with_retry_after.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            with_retry_after.to_string(),
            "elasticsearch answered 429: es_rejected_execution_exception: queue full"
        );
    }
}
