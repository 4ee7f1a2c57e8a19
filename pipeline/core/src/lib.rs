//! The types every stage of sluice shares, and nothing that does I/O.
//!
//! Every path has one shape ([`path`]): `sources -> encode stage (decode + encode) -> batch ->
//! sink -> outcomes -> ack`, with refusals going to the dead-letter exchange.
//!
//! - [`path`]: the [`Decoder`](path::Decoder), [`Sink`](path::Sink) (which owns its wire form)
//!   and [`ControlHandler`](path::ControlHandler) traits, and [`run_path`](path::run_path), which
//!   runs one path.
//! - [`ack`]: the [`AckToken`](ack::AckToken) each item carries back to its broker delivery, and
//!   the [`AckRangeTracker`](ack::AckRangeTracker) that turns finished deliveries into cumulative
//!   acks.
//! - [`batch`]: the one reusable batching stage, bounded by items, bytes and linger time.
//! - [`outcome`]: per-item sink outcomes, and the sink driver that retries only what failed and
//!   dead-letters what was rejected.
//! - [`rejection`]: the one vocabulary of refusals: [`Stage`](rejection::Stage),
//!   [`Reason`](rejection::Reason) and the [`Rejection`](rejection::Rejection) trait of every
//!   error that refuses an item.
//! - [`dead_letter`]: what a refused item becomes on its way to the dead-letter exchange.
//! - [`point`]: the normalised metric point, its JSON form and its validation (the guard that
//!   keeps line-protocol injection out of every sink).
//! - [`document`]: the normalised event or log document, with its index and idempotent `_id`.
//! - [`action`]: what a rule asks for when it fires (a workflow to execute, a webhook to call).
//! - [`retry`]: capped exponential backoff with jitter.
//! - [`tap`]: samples of what passes a stage, for `sluice tap`, nearly free while unread.
//!
//! # Invariants
//!
//! These hold everywhere; the code cites them by number.
//!
//! 1. **Ack follows outcome.** Every item derived from a broker delivery holds that delivery's
//!    [`AckToken`](ack::AckToken). The delivery is acked only when every token has been finished
//!    by the stage that owns its outcome: written by a sink, dead-lettered with the broker's
//!    confirm, or applied by a control handler. A token dropped unfinished returns its delivery to
//!    the queue. Acks go out cumulatively, one frame per contiguous range of finished tags.
//! 2. **Per-item outcomes.** A sink answers one outcome per item: delivered, retry (429, 5xx,
//!    timeouts, connection errors) or reject. Only retryable items are retried, with capped
//!    backoff and jitter, and retries do not give up: a store that is down holds the path.
//!    Rejected items are dead-lettered with their stage, reason, error text and attempts.
//! 3. **Bounded everything.** Channels, batches (items and bytes), requests in flight, prefetch.
//!    When a sink slows, the channels fill, the source stops taking deliveries, unacked
//!    deliveries reach the prefetch and the broker holds the rest: memory stays flat.
//! 4. **Idempotent writes.** Elasticsearch: a deterministic `_id` with `create`, and 409 counts
//!    as delivered. InfluxDB: the same series and timestamp overwrite. So redelivering or
//!    resending what was already written stores it once.
//! 5. **Rules are pure.** The rule engines consume metrics and emit actions; they do no I/O.
//!    The action executor applies restraints, retries and de-duplication, and reports each
//!    outcome as an event. Rule state is checkpointed, so a restart neither re-fires nor forgets.
//! 6. **Clean stops.** On SIGTERM the sources stop consuming, every stage drains into the next
//!    and flushes, the finished deliveries are acked and the connections close, within a
//!    deadline. On a lost connection the source reconnects; the unacked deliveries come back
//!    redelivered and invariant 4 makes them harmless.
//! 7. **Everything counted.** Each stage counts what it received, decoded, refused (by reason),
//!    wrote, retried, dead-lettered and acked, in the one place that also logs it.

pub mod ack;
pub mod action;
pub mod batch;
pub mod dead_letter;
pub mod document;
pub mod outcome;
pub mod path;
pub mod point;
pub mod rejection;
pub mod retry;
pub mod tap;
