//! The error of the calls that answer one result: [`EsWriter::new`], `ping` and
//! `install_index_template`. Writes never fail as a whole; they answer per-document outcomes.
//!
//! It is [`sluice_http::RequestError`], which the InfluxDB client shares: the same failures in
//! the same words, naming Elasticsearch. No variant holds a password or API key.
//!
//! [`EsWriter::new`]: crate::EsWriter::new

use std::convert::Infallible;

use sluice_http::{RequestError, Store};

/// Elasticsearch, as [`EsError`] names it. It refuses nothing of its own in these calls: a
/// template it finds invalid is a [`RequestError::Status`].
#[derive(Debug)]
pub enum Elasticsearch {}

impl Store for Elasticsearch {
    const NAME: &'static str = "elasticsearch";
    type Refusal = Infallible;
}

pub type EsError = RequestError<Elasticsearch>;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn texts_name_elasticsearch() {
        assert_eq!(
            EsError::Authentication { status: 403 }.to_string(),
            "authentication failed (status 403)"
        );
        let with_retry_after = EsError::Status {
            status: 429,
            message: "es_rejected_execution_exception: queue full".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(
            with_retry_after.to_string(),
            "elasticsearch answered 429: es_rejected_execution_exception: queue full"
        );
    }
}
