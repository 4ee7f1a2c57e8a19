//! The error of the calls that answer one result: [`InfluxWriter::new`], `ping` and
//! `ensure_database`. Writes never fail as a whole; they answer per-point outcomes.
//!
//! It is [`sluice_http::RequestError`], which the Elasticsearch client shares: the same failures
//! in the same words, naming InfluxDB, and a query InfluxDB refused. No variant holds a password
//! or token.
//!
//! [`InfluxWriter::new`]: crate::InfluxWriter::new

use sluice_http::{RequestError, Store};

/// InfluxDB, as [`InfluxError`] names it.
#[derive(Debug)]
pub enum InfluxDb {}

impl Store for InfluxDb {
    const NAME: &'static str = "influxdb";
    type Refusal = QueryRefused;
}

pub type InfluxError = RequestError<InfluxDb>;

/// The server ran the query and reported an error in its result.
#[derive(Debug, thiserror::Error)]
#[error("influxdb refused the query: {message}")]
pub struct QueryRefused {
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_name_influxdb_and_refused_queries_are_not_retryable() {
        assert_eq!(
            InfluxError::Authentication { status: 403 }.to_string(),
            "authentication failed (status 403)"
        );
        let refused = InfluxError::Refused(QueryRefused {
            message: "bad name".into(),
        });
        assert_eq!(refused.to_string(), "influxdb refused the query: bad name");
        assert!(!refused.is_retryable());
    }
}
