//! The InfluxDB sink: points become line protocol written over HTTP, and every point gets its
//! own outcome.
//!
//! In the path (`sluice_core::path`: decode and encode -> batch -> sink -> outcomes -> ack)
//! this crate is the metrics sink, and it owns its wire form: [`InfluxWriter`] is a
//! [`Sink`](sluice_core::path::Sink) whose encoder ([`LineEncoder`]) turns each validated point
//! into its line in the encode stage, and whose writes answer one
//! [`ItemOutcome`](sluice_core::outcome::ItemOutcome) per line, which decides what is acked,
//! retried or dead-lettered.
//!
//! Modules:
//!
//! - [`api`]: where and how to write: [`InfluxSettings`], the v1 (`/write?db=`, basic auth),
//!   v2 (`/api/v2/write?org=&bucket=`, `Authorization: Token`) and v3
//!   (`/api/v3/write_lp?db=&accept_partial=`, `Authorization: Bearer`) APIs, [`Precision`].
//!   Passwords and tokens are [`secrecy::SecretString`]s and never printed.
//! - [`encode`]: one point to one line, through the `influxdb-line-protocol` builder, which
//!   escapes by construction; [`encode_point`] first refuses what the builder cannot carry
//!   (see [`EncodeError`]).
//! - [`writer`]: [`InfluxWriter`]: the HTTP requests and what each answer means for the lines
//!   (the isolation of refused lines is `sluice_http::write_batch`'s).
//! - `v3_answer` (private): which lines an InfluxDB 3 partial-write answer names, and why.
//! - [`error`]: [`InfluxError`], for the calls that answer one result (`ping`,
//!   `ensure_database`), with [`InfluxError::is_retryable`].
//! - `telemetry` (private): the one place that both logs and counts what happens to requests.
//! - `answers` (hidden): the readers of InfluxDB's answers, for the fuzz targets.
//!
//! # Why bisection is safe
//!
//! InfluxDB answers 400 (v2: 422) when it refused some lines of a request, but it still wrote
//! the others (a "partial write"), and it does not say which lines it refused in a form we can
//! rely on. So a refused request is split in halves and each half written again,
//! recursively, until each refused line stands alone and can be dead-lettered with the
//! server's reason, while every other line lands. Resending a line that was already written is
//! harmless: a point is identified by its series (measurement and tags) and timestamp, and
//! writing the same point again overwrites it with the same field values ([invariant 4](sluice_core#invariants)).
//! The cost is bounded: isolating one bad line among `n` resends about `2n` lines in
//! `2 log2(n)` requests, and only when something was refused.
//!
//! InfluxDB 3 does name the lines it refused, by number and text, so there one request
//! settles a partial write; halving remains for its answers that name no line (see
//! [`writer`]).

pub mod api;
pub mod encode;
pub mod error;
mod telemetry;
mod v3_answer;
pub mod writer;

/// The readers of InfluxDB's answers, public only for the fuzz targets (`benches/fuzz-targets`),
/// which feed them arbitrary bodies; everything else reads answers through [`InfluxWriter`].
#[doc(hidden)]
pub mod answers {
    pub use crate::v3_answer::{V3Refusal, read_refusal};

    /// The server's error text of a refused request: v1's `{"error": ".."}`, v2's
    /// `{"message": ".."}`, or the body.
    pub fn error_message(body: &[u8]) -> String {
        crate::writer::error_message(body)
    }
}

pub use api::{InfluxApi, InfluxSettings, Precision};
pub use encode::{EncodeError, Line, LineEncoder, encode_point};
pub use error::InfluxError;
pub use writer::InfluxWriter;
