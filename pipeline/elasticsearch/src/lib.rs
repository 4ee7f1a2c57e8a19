//! The Elasticsearch sink: batches of [`Document`](sluice_core::document::Document)s become one
//! NDJSON `_bulk` request, and every document gets its own outcome.
//!
//! In the path (`sluice_core::path`: decode and encode -> batch -> sink -> outcomes -> ack)
//! this crate is the sink of events and logs, and it owns its wire form: [`EsWriter`] is a
//! [`Sink`](sluice_core::path::Sink) that turns each document into its bulk action and source
//! lines in the encode stage, and whose writes answer one
//! [`ItemOutcome`](sluice_core::outcome::ItemOutcome) per document, which decides what is
//! acked, retried or dead-lettered.
//!
//! Modules:
//!
//! - [`api`]: where and how to write: [`EsSettings`] and [`EsAuth`] (none, basic, API key).
//!   Passwords and keys are [`secrecy::SecretString`]s and never printed.
//! - [`encode`]: one document to its action and source lines ([`encode_document`]), and
//!   [`validate_document`], which keeps out what would spoil the request for the others.
//! - `response` (private): a bulk answer read item by item into outcomes.
//! - [`writer`]: [`EsWriter`] and its [`BulkItem`]s: the HTTP requests, what each whole-request
//!   answer means (the split of requests that are too large is `sluice_http::write_batch`'s),
//!   `ping`, `install_index_template` (the Logstash-like template, with [`TemplateOptions`]
//!   for an ILM policy and data streams) and `with_index_template`, which makes the template a
//!   precondition of every write.
//! - [`error`]: [`EsError`], for the calls that answer one result, with
//!   [`EsError::is_retryable`].
//! - `telemetry` (private): the one place that both logs and counts what happens to requests.
//! - `answers` (hidden): the readers of Elasticsearch's answers, for the fuzz targets.
//!
//! # Why at-least-once stores exactly once
//!
//! A broker delivery is acked only after its document is delivered, so after a crash, a lost
//! connection or a retried request the same document can be written again ([invariant 4](sluice_core#invariants)).
//! Three things make that harmless:
//!
//! 1. Every document carries a deterministic `_id`, a hash of the message's content and
//!    routing made by the decoder, so a redelivered message names the same document.
//! 2. Every action is `create` (`op_type=create`), which stores a document only when no
//!    document with its `_id` exists in its index; it never overwrites.
//! 3. `create`'s refusal of an existing id, 409 `version_conflict_engine_exception`, counts as
//!    `Delivered`: the document is there, written by an earlier attempt.
//!
//! So a retry of a request whose answer was lost, a retry of the failed subset of a bulk, or a
//! redelivery after a restart each find the documents already written and store nothing twice.
//! (`index` would overwrite instead, bumping versions and racing with other writers; an id
//! chosen by Elasticsearch would store a duplicate every time.)

pub mod api;
pub mod encode;
pub mod error;
mod response;
mod telemetry;
pub mod writer;

/// The readers of Elasticsearch's answers, public only for the fuzz targets
/// (`benches/fuzz-targets`), which feed them arbitrary bodies; everything else reads answers
/// through [`EsWriter`].
#[doc(hidden)]
pub mod answers {
    pub use crate::response::{ItemOutcomes, UnreadableResponse, read_bulk_response};

    /// The server's error text: `<type>: <reason>` from Elasticsearch's
    /// `{"error":{"type":..,"reason":..},"status":..}`, the string of `{"error":".."}`, or the
    /// body.
    pub fn error_message(body: &[u8]) -> String {
        crate::writer::error_message(body)
    }
}

pub use api::{EsAuth, EsSettings};
pub use encode::{InvalidDocument, encode_document, validate_document};
pub use error::EsError;
pub use writer::{BulkItem, EsWriter, TemplateOptions};
