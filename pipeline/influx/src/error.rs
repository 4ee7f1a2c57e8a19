//! The error of the calls that answer one result: [`InfluxWriter::new`], `ping` and
//! `ensure_database`. Writes never fail as a whole; they answer per-point outcomes.
//!
//! No variant holds a password or token, and the transport details are taken from `reqwest`
//! with the URL stripped, so printing an error (`Display` or `Debug`) cannot leak a secret.
//!
//! [`InfluxWriter::new`]: crate::InfluxWriter::new

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    /// The settings cannot work; the message names the setting.
    #[error("invalid influxdb settings: {0}")]
    Settings(String),
    /// No answer: connection refused or reset, DNS, TLS, timeout.
    #[error("could not reach influxdb at {endpoint}: {detail}")]
    Transport {
        /// The URL called, without its query.
        endpoint: String,
        detail: String,
        timed_out: bool,
    },
    /// 401 or 403: the credentials are wrong or lack a permission.
    #[error("authentication failed (status {status})")]
    Authentication { status: u16 },
    /// Any other unexpected status, with the server's error text.
    #[error("influxdb answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The server ran the query and reported an error in its result.
    #[error("influxdb refused the query: {message}")]
    Query { message: String },
}

impl InfluxError {
    /// True when the same call may succeed later without anyone changing anything: the server
    /// was unreachable, overloaded (429) or failing (5xx). Bad settings, refused credentials
    /// and refused queries need an operator, so they are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            InfluxError::Transport { .. } => true,
            InfluxError::Status { status, .. } => sluice_http::is_transient(*status),
            InfluxError::Settings(_)
            | InfluxError::Authentication { .. }
            | InfluxError::Query { .. } => false,
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            InfluxError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passing_failures_are_retryable() {
        let status = |status| InfluxError::Status {
            status,
            message: String::new(),
            retry_after: None,
        };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(
            InfluxError::Transport {
                endpoint: "http://127.0.0.1:1/ping".into(),
                detail: "connection refused".into(),
                timed_out: false,
            }
            .is_retryable()
        );
        assert!(!InfluxError::Authentication { status: 401 }.is_retryable());
        assert!(!InfluxError::Settings("url: x".into()).is_retryable());
        assert_eq!(
            InfluxError::Authentication { status: 403 }.to_string(),
            "authentication failed (status 403)"
        );
    }
}
