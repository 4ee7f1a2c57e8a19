//! The one place where what happens to Elasticsearch requests is both logged and counted, so
//! the two never drift apart.
//!
//! Metrics:
//! - `sluice_elasticsearch_requests_total{status}`: bulk requests by answer, `status` being the
//!   HTTP status code or `error` when no answer came (connection refused, timeout).
//! - `sluice_elasticsearch_items_total{status}`: documents by the status of their item in a
//!   bulk answer (`201` created, `409` already there, `429`, `400`, ...).
//! - `sluice_elasticsearch_request_bytes`: histogram of bulk request bodies as sent (after gzip).
//! - `sluice_elasticsearch_splits_total`: requests answered 413 and split in halves.

use std::collections::BTreeMap;

use crate::encode::InvalidDocument;
use crate::error::EsError;

/// The writer's index template was put (once per writer, at start or before its first write).
pub(crate) fn index_template_installed(name: &str, index_patterns: &[String]) {
    tracing::info!(
        template = name,
        ?index_patterns,
        "elasticsearch index template installed"
    );
}

/// The writer's index template could not be put; the `documents` of the write wait (retried).
/// A refusal that will not pass by itself (a bad request, refused credentials) is an error:
/// writes stay held until it is fixed or the template is turned off.
pub(crate) fn index_template_failed(error: &EsError, documents: usize) {
    if error.is_retryable() {
        tracing::warn!(%error, documents, "could not install the elasticsearch index template yet; the documents wait");
    } else {
        tracing::error!(
            %error,
            documents,
            "elasticsearch refused the index template; writes are held until it is fixed, or \
             until events.install_index_template is turned off"
        );
    }
}

/// A bulk request is about to be sent with a body of `bytes` bytes.
pub(crate) fn bulk_request_sent(bytes: usize) {
    metrics::histogram!("sluice_elasticsearch_request_bytes").record(bytes as f64);
}

/// A bulk request was answered with `status`.
pub(crate) fn bulk_request_answered(status: u16) {
    metrics::counter!("sluice_elasticsearch_requests_total", "status" => status.to_string())
        .increment(1);
}

/// A bulk request got no (complete) answer.
pub(crate) fn bulk_request_failed(endpoint: &str, detail: &str) {
    metrics::counter!("sluice_elasticsearch_requests_total", "status" => "error").increment(1);
    tracing::debug!(
        endpoint,
        error = detail,
        "elasticsearch bulk request failed"
    );
}

/// The items of a bulk answer, by their own status.
pub(crate) fn items_answered(statuses: &[u16]) {
    let mut counts: BTreeMap<u16, u64> = BTreeMap::new();
    for status in statuses {
        *counts.entry(*status).or_default() += 1;
    }
    for (status, count) in counts {
        metrics::counter!("sluice_elasticsearch_items_total", "status" => status.to_string())
            .increment(count);
    }
}

/// The server refused the credentials. Logged at error level on every occurrence: it is
/// misconfiguration, and the deliveries stay held (retried, not dead-lettered) until it is fixed.
pub(crate) fn authentication_failed(endpoint: &str, status: u16) {
    tracing::error!(
        endpoint,
        status,
        "elasticsearch refused the credentials; writes are held until the username/password or \
         api key is fixed"
    );
}

/// Items of a bulk answer were refused for a missing privilege on their index; they are held.
pub(crate) fn item_authorization_failed(status: u16) {
    tracing::error!(
        status,
        "elasticsearch refused documents for a missing privilege; they are held until the \
         credentials may write to their index (create_doc)"
    );
}

/// The request as a whole was refused with a status that says nothing passing (400, 404, ...):
/// a wrong URL, a proxy, or a body this sink should never have built. Retried, and loud.
pub(crate) fn bulk_request_refused(status: u16, message: &str) {
    tracing::error!(
        status,
        error = message,
        "elasticsearch refused a whole bulk request; retrying it"
    );
}

/// A 2xx bulk answer could not be read item by item; every document of it is retried.
pub(crate) fn unreadable_bulk_response(detail: &str) {
    tracing::error!(
        error = detail,
        "could not match the bulk response to the documents sent; retrying them all"
    );
}

/// A request of `documents` documents was answered 413 and is split in halves.
pub(crate) fn too_large_request_split(documents: usize, message: &str) {
    metrics::counter!("sluice_elasticsearch_splits_total").increment(1);
    tracing::debug!(
        documents,
        error = message,
        "elasticsearch refused a request as too large, splitting it"
    );
}

/// A document was refused before it was sent.
pub(crate) fn invalid_document(index: &str, id: &str, error: &InvalidDocument) {
    tracing::debug!(index, id, error = %error, "document cannot be written, dead-lettering it");
}
