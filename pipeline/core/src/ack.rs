//! Tying every item back to the broker delivery it came from.
//!
//! A delivery is acknowledged only after everything it became has an outcome
//! ([invariant 1](crate#invariants)).
//! The mechanism has two halves:
//!
//! - Each item carries an [`AckToken`]. A token must be *finished*, and only the stage that owns
//!   the item's outcome can finish it: the sink driver ([`outcome`](crate::outcome)) when the
//!   item is durably written, the dead-letter publisher through [`DeadLetter::published`] when
//!   the broker confirmed its dead-letter publish, and the handler of a control message through
//!   [`ControlAck::applied`] once it acted on it. The token records which of these it was
//!   ([`Finish`]). A token dropped unfinished (a bug, a shutdown deadline, a task that panicked)
//!   marks its delivery as failed, and the delivery is returned to the queue instead of
//!   acknowledged: nothing is ever acked by accident.
//! - When the last token of a delivery goes away, the delivery reports a [`FinishedDelivery`] to
//!   its channel's acker, which feeds an [`AckRangeTracker`]. The tracker releases the highest tag
//!   below which every delivery has finished, and the acker sends one `basic.ack(multiple=true)`
//!   for that whole range: one frame per batch, never one per message.
//!
//! The report channel is unbounded on purpose: a report is sent from `Drop`, which cannot wait,
//! and the number of outstanding deliveries (hence of reports) is bounded by the prefetch count.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

#[cfg(doc)]
use crate::dead_letter::DeadLetter;

/// Where a message came from: kept with its items so that a rejection can be dead-lettered with
/// the original body and routing, and replayed later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMessage {
    /// The body exactly as the broker delivered it.
    pub body: Bytes,
    pub exchange: String,
    pub routing_key: String,
    pub redelivered: bool,
}

/// What the acker learns when the last token of a delivery is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinishedDelivery {
    pub delivery_tag: u64,
    /// True when every token was finished; false when one was dropped unfinished, in which case
    /// the delivery must be returned to the queue, not acknowledged.
    pub completed: bool,
}

/// The sending half that deliveries report to; one per broker channel.
pub type FinishedSender = mpsc::UnboundedSender<FinishedDelivery>;
/// The receiving half, owned by the channel's acker.
pub type FinishedReceiver = mpsc::UnboundedReceiver<FinishedDelivery>;

/// Creates the report channel of one broker channel.
pub fn finished_channel() -> (FinishedSender, FinishedReceiver) {
    mpsc::unbounded_channel()
}

#[derive(Debug)]
struct DeliveryState {
    delivery_tag: u64,
    message: SourceMessage,
    any_unfinished: AtomicBool,
    report_to: FinishedSender,
}

impl Drop for DeliveryState {
    fn drop(&mut self) {
        let finished = FinishedDelivery {
            delivery_tag: self.delivery_tag,
            completed: !self.any_unfinished.load(Ordering::Acquire),
        };
        // A closed receiver means the channel is gone; the broker requeues the delivery itself.
        let _ = self.report_to.send(finished);
    }
}

/// One item's claim on its broker delivery. Not `Clone`: use [`AckToken::split`] when a delivery
/// fans out to several items or outputs, so that each of them has to be finished.
/// How a token was finished: what its item became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Durably written by a sink.
    Written,
    /// Published to the dead-letter exchange, and the broker confirmed it.
    DeadLettered,
    /// A control message its handler acted on (the rule stage loaded or unloaded policies).
    Applied,
    /// A body that carried no items at all (blank lines): nothing to write.
    Empty,
}

#[derive(Debug)]
#[must_use = "an AckToken dropped unfinished returns its delivery to the queue"]
pub struct AckToken {
    delivery: Arc<DeliveryState>,
    finished: Option<Finish>,
}

impl AckToken {
    /// The first token of a broker delivery. More are made with [`AckToken::split`].
    pub fn for_delivery(
        delivery_tag: u64,
        message: SourceMessage,
        report_to: FinishedSender,
    ) -> Self {
        Self {
            delivery: Arc::new(DeliveryState {
                delivery_tag,
                message,
                any_unfinished: AtomicBool::new(false),
                report_to,
            }),
            finished: None,
        }
    }

    /// Another token on the same delivery; the delivery finishes when all of its tokens have.
    pub fn split(&self) -> AckToken {
        AckToken {
            delivery: Arc::clone(&self.delivery),
            finished: None,
        }
    }

    /// The message this token's delivery carried.
    pub fn message(&self) -> &SourceMessage {
        &self.delivery.message
    }

    pub fn delivery_tag(&self) -> u64 {
        self.delivery.delivery_tag
    }

    /// Finishes the token. Crate-private: the owners of outcomes reach it through the sink
    /// driver, [`DeadLetter::published`] and [`ControlAck::applied`].
    pub(crate) fn finish(mut self, how: Finish) {
        self.finished = Some(how);
    }

    /// The item was durably written.
    pub(crate) fn delivered(self) {
        self.finish(Finish::Written);
    }

    /// The item was published to the dead-letter exchange and the broker confirmed it.
    pub(crate) fn dead_lettered(self) {
        self.finish(Finish::DeadLettered);
    }

    /// The body carried no items: there is nothing to wait for.
    pub(crate) fn nothing_to_do(self) {
        self.finish(Finish::Empty);
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        if self.finished.is_none() {
            self.delivery.any_unfinished.store(true, Ordering::Release);
        }
    }
}

/// A control message's claim on its delivery, handed to the stage that acts on it (the rule
/// stage), which alone can finish it: [`ControlAck::applied`] once acted on, or dead-letter it.
#[derive(Debug)]
#[must_use = "a ControlAck dropped unfinished returns its delivery to the queue"]
pub struct ControlAck(AckToken);

impl ControlAck {
    /// Made by the path that decoded the control message.
    pub(crate) fn new(ack: AckToken) -> Self {
        Self(ack)
    }

    /// The message the control message came in.
    pub fn message(&self) -> &SourceMessage {
        self.0.message()
    }

    /// The handler acted on the control message: its delivery may be acked.
    pub fn applied(self) {
        self.0.finish(Finish::Applied);
    }

    /// The claim, for a dead letter of a control message that could not be acted on.
    pub fn into_token(self) -> AckToken {
        self.0
    }
}

/// An item travelling through the pipeline with the claim on its delivery.
#[derive(Debug)]
pub struct Tracked<T> {
    pub item: T,
    pub ack: AckToken,
}

impl<T> Tracked<T> {
    pub fn new(item: T, ack: AckToken) -> Self {
        Self { item, ack }
    }
}

/// Turns delivery tags finished in any order into the cumulative acks AMQP allows.
///
/// Tags of one channel start at 1 and increase by one per delivery. `ack(multiple=true, tag=N)`
/// acknowledges every outstanding delivery up to N, so N may only be released once every tag up to
/// it has finished. The tracker keeps one flag per tag above the last released one, so its size is
/// bounded by the prefetch count.
#[derive(Debug, Default)]
pub struct AckRangeTracker {
    released_up_to: u64,
    /// `pending[i]` says whether tag `released_up_to + 1 + i` has finished.
    pending: VecDeque<bool>,
}

impl AckRangeTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a finished tag. Tags at or below the released range are ignored (a duplicate report
    /// can never move the range).
    pub fn finish(&mut self, delivery_tag: u64) {
        if delivery_tag <= self.released_up_to {
            return;
        }
        let offset = usize::try_from(delivery_tag - self.released_up_to - 1)
            .expect("outstanding deliveries are bounded by the prefetch count");
        if self.pending.len() <= offset {
            self.pending.resize(offset + 1, false);
        }
        self.pending[offset] = true;
    }

    /// The highest tag whose whole range has finished and was not released before, if any.
    pub fn release(&mut self) -> Option<u64> {
        let mut advanced = 0u64;
        while self.pending.front() == Some(&true) {
            self.pending.pop_front();
            advanced += 1;
        }
        if advanced == 0 {
            return None;
        }
        self.released_up_to += advanced;
        Some(self.released_up_to)
    }

    /// The highest tag released so far (0 before the first release).
    pub fn released_up_to(&self) -> u64 {
        self.released_up_to
    }

    /// How many tags above the released range are being tracked (finished or not).
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn token(tag: u64, tx: &FinishedSender) -> AckToken {
        AckToken::for_delivery(tag, SourceMessage::default(), tx.clone())
    }

    #[test]
    fn delivery_reports_completed_when_every_split_token_is_finished() {
        let (tx, mut rx) = finished_channel();
        let first = token(7, &tx);
        let second = first.split();
        first.delivered();
        assert!(rx.try_recv().is_err(), "one token still holds the delivery");
        second.dead_lettered();
        assert_eq!(
            rx.try_recv().ok(),
            Some(FinishedDelivery {
                delivery_tag: 7,
                completed: true
            })
        );
    }

    #[test]
    fn token_dropped_unfinished_fails_its_delivery() {
        let (tx, mut rx) = finished_channel();
        let first = token(3, &tx);
        let second = first.split();
        first.delivered();
        drop(second);
        assert_eq!(
            rx.try_recv().ok(),
            Some(FinishedDelivery {
                delivery_tag: 3,
                completed: false
            })
        );
    }

    #[test]
    fn tracker_releases_only_contiguous_ranges() {
        let mut tracker = AckRangeTracker::new();
        tracker.finish(2);
        tracker.finish(3);
        assert_eq!(tracker.release(), None, "tag 1 is still outstanding");
        tracker.finish(1);
        assert_eq!(tracker.release(), Some(3));
        assert_eq!(tracker.release(), None, "nothing new finished");
        tracker.finish(5);
        assert_eq!(tracker.release(), None);
        tracker.finish(4);
        assert_eq!(tracker.release(), Some(5));
        tracker.finish(5);
        assert_eq!(
            tracker.release(),
            None,
            "a duplicate report never moves the range"
        );
    }

    proptest! {
        /// Whatever order tags finish in, a release never covers an unfinished tag, and once all
        /// have finished the whole range is released.
        #[test]
        fn release_never_passes_an_unfinished_tag(
            order in (1usize..200).prop_flat_map(|n| Just((1..=n as u64).collect::<Vec<_>>()).prop_shuffle()),
            release_every in 1usize..10,
        ) {
            let mut tracker = AckRangeTracker::new();
            let mut finished = std::collections::HashSet::new();
            for (i, tag) in order.iter().enumerate() {
                tracker.finish(*tag);
                finished.insert(*tag);
                if i % release_every == 0
                    && let Some(up_to) = tracker.release()
                {
                    for t in 1..=up_to {
                        prop_assert!(finished.contains(&t), "released {} before tag {} finished", up_to, t);
                    }
                }
            }
            tracker.release();
            prop_assert_eq!(tracker.released_up_to(), order.len() as u64);
            prop_assert_eq!(tracker.outstanding(), 0);
        }
    }
}
