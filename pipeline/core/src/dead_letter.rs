//! What a rejected item becomes on its way to the dead-letter exchange.
//!
//! Any stage that refuses an item sends a [`DeadLetter`] into the bounded dead-letter channel. The
//! publisher at the other end (in `sluice-amqp`) publishes the original message body with headers
//! saying why, waits for the broker's confirm, and only then finishes the item's [`AckToken`]: so
//! the original delivery is acked only once its rejection is durably recorded.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::ack::{AckToken, SourceMessage};
use crate::rejection::{Reason, Refusal, Stage};
use crate::tap::Tap;

/// How much of a refused body `sluice tap dead-letters` shows; `sluice dead-letters show` has
/// the whole of it.
pub const TAPPED_BODY_BYTES: usize = 4096;

#[derive(Debug)]
pub struct DeadLetter {
    /// The stage that refused the item.
    pub stage: Stage,
    /// A short machine-readable label, also the counter label.
    pub reason: Reason,
    /// The error text for a human. Never contains secrets.
    pub detail: String,
    /// How many write attempts were made before the item was refused (0 for decode errors).
    pub attempts: u32,
    /// The refused part of a body carrying many items; `None` when the whole body was refused.
    part: Option<Bytes>,
    /// The claim on the original delivery, which also carries the original body and routing.
    /// Private: only [`DeadLetter::published`] finishes it.
    ack: AckToken,
}

impl DeadLetter {
    pub fn new(stage: Stage, refusal: Refusal, attempts: u32, ack: AckToken) -> Self {
        Self {
            stage,
            reason: refusal.reason,
            detail: refusal.detail,
            attempts,
            part: refusal.part,
            ack,
        }
    }

    /// The message that was refused, with its original body and routing.
    pub fn message(&self) -> &SourceMessage {
        self.ack.message()
    }

    /// What the letter carries: the refused part of the message's body when only a part of it
    /// was refused (one line of many), else the whole body.
    pub fn body(&self) -> &Bytes {
        self.part.as_ref().unwrap_or(&self.message().body)
    }

    /// True when [`body`](Self::body) is a part of the original body, not all of it.
    pub fn is_part(&self) -> bool {
        self.part.is_some()
    }

    pub fn delivery_tag(&self) -> u64 {
        self.ack.delivery_tag()
    }

    /// The broker confirmed this letter's publish: the original delivery may now be acked.
    /// Called by the dead-letter publisher alone.
    pub fn published(self) {
        self.ack.dead_lettered();
    }

    /// The letter as `sluice tap dead-letters` shows it: why, and the body as text (invalid
    /// UTF-8 replaced) up to [`TAPPED_BODY_BYTES`].
    fn tap_record(&self) -> serde_json::Value {
        let body = self.body();
        let shown = &body[..body.len().min(TAPPED_BODY_BYTES)];
        serde_json::json!({
            "stage": self.stage.as_str(),
            "reason": self.reason.as_str(),
            "detail": self.detail,
            "attempts": self.attempts,
            "exchange": self.message().exchange,
            "routing_key": self.message().routing_key,
            "body": String::from_utf8_lossy(shown),
            "body_bytes": body.len(),
            "part": self.is_part(),
        })
    }

    /// The routing key it is published with: `<stage>.<reason>`, so binding `#` sees every dead
    /// letter and `influx.#` only the sink's.
    pub fn routing_key(&self) -> String {
        format!("{}.{}", self.stage, self.reason)
    }
}

/// `sluice tap dead-letters`: every refusal as it is handed to the publisher.
static DEAD_LETTER_TAP: LazyLock<Arc<Tap>> = LazyLock::new(|| crate::tap::named("dead-letters"));

/// Opens the dead-letter tap, so that `sluice tap` finds it before the first refusal.
pub fn open_tap() {
    LazyLock::force(&DEAD_LETTER_TAP);
}

/// The sending side of the bounded dead-letter channel.
pub type DeadLetterSender = mpsc::Sender<DeadLetter>;
pub type DeadLetterReceiver = mpsc::Receiver<DeadLetter>;

/// Sends a dead letter, counting it. If the publisher is gone (shutting down), the letter's token
/// is dropped unfinished, so the original delivery goes back to the queue rather than being lost.
pub async fn send_dead_letter(dead_letters: &DeadLetterSender, letter: DeadLetter) {
    DEAD_LETTER_TAP.offer(|| letter.tap_record());
    metrics::counter!(
        "sluice_rejected_total",
        "stage" => letter.stage,
        "reason" => letter.reason
    )
    .increment(1);
    tracing::debug!(
        stage = %letter.stage,
        reason = %letter.reason,
        detail = %letter.detail,
        "item rejected"
    );
    if let Err(mpsc::error::SendError(letter)) = dead_letters.send(letter).await {
        tracing::warn!(
            stage = %letter.stage,
            reason = %letter.reason,
            "dead-letter publisher is gone; the delivery returns to its queue"
        );
    }
}
