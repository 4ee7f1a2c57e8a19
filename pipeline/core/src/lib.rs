//! The types every stage of sluice shares, and nothing that does I/O.
//!
//! The flow is `source -> decode -> normalise -> batch -> sink -> outcome -> ack`:
//!
//! - [`action`]: what a rule asks for when it fires (a workflow to execute, a webhook to call).
//! - [`point`]: the normalised metric point, its JSON form and its validation (the guard that
//!   keeps line-protocol injection out of every sink).
//! - [`ack`]: the [`AckToken`](ack::AckToken) each item carries back to its broker delivery, and
//!   the [`AckRangeTracker`](ack::AckRangeTracker) that turns finished deliveries into cumulative
//!   acks.
//! - [`batch`]: the one reusable batching stage, bounded by items, bytes and linger time.
//! - [`outcome`]: per-item sink outcomes, and the driver that retries only what failed and
//!   dead-letters what was rejected.
//! - [`document`]: the normalised event or log document, with its index and idempotent `_id`.
//! - [`dead_letter`]: what a rejected item becomes on its way to the dead-letter exchange.
//! - [`retry`]: capped exponential backoff with jitter.

pub mod ack;
pub mod action;
pub mod batch;
pub mod dead_letter;
pub mod document;
pub mod outcome;
pub mod point;
pub mod retry;
