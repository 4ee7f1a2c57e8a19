//! One task per consuming channel: finished deliveries in, cumulative acks out.
//!
//! Deliveries finish in any order (batches of different sinks, retries). The acker drains every
//! report that is waiting, feeds them to an [`AckRangeTracker`], and sends a single
//! `basic.ack(multiple=true)` for the highest contiguous finished tag, so a batch of 5,000 points
//! costs one ack frame. A delivery whose items were not all finished (see
//! [`AckToken`](sluice_core::ack::AckToken)) is returned with `basic.nack(requeue=true)` first; a
//! later cumulative ack never covers it, because a nacked delivery is no longer outstanding.
//!
//! The acker ends when every token of its channel is gone (the report channel closes) or when the
//! channel itself fails; in the latter case the broker has already requeued whatever was unacked.
//!
//! [`UnackedDeliveries`] keeps the `sluice_unacked{source}` gauge: deliveries the broker handed
//! this channel that no ack has covered yet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use sluice_core::ack::{AckRangeTracker, FinishedDelivery, FinishedReceiver};

use crate::backlog::Backlog;

/// The deliveries of one channel not yet covered by an ack, shared by its source (which counts
/// each delivery in) and its acker (which counts each acked range out). A nacked delivery counts
/// until the cumulative ack passes its tag, which is soon: it is finished, so it never holds the
/// range back. When the channel goes, so do its unacked deliveries (the broker requeues them):
/// dropping the last handle takes what is left off the gauge, so a lost connection does not leave
/// the figure high.
#[derive(Debug)]
pub(crate) struct UnackedDeliveries {
    gauge: metrics::Gauge,
    outstanding: AtomicU64,
}

impl UnackedDeliveries {
    pub(crate) fn new(source: &str) -> Self {
        Self {
            gauge: metrics::gauge!("sluice_unacked", "source" => source.to_owned()),
            outstanding: AtomicU64::new(0),
        }
    }

    pub(crate) fn delivered(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        self.gauge.increment(1.0);
    }

    fn acked(&self, deliveries: u64) {
        self.outstanding.fetch_sub(deliveries, Ordering::Relaxed);
        self.gauge.decrement(deliveries as f64);
    }
}

impl Drop for UnackedDeliveries {
    fn drop(&mut self) {
        self.gauge
            .decrement(self.outstanding.load(Ordering::Relaxed) as f64);
    }
}

/// One session's part of the queue's [`Backlog`]: a session's ticketed deliveries are its
/// first ones (tickets only run out), so a tag up to the last ticketed one is of the backlog.
#[derive(Debug)]
pub(crate) struct SessionBacklog {
    backlog: Arc<Backlog>,
    last_ticketed_tag: AtomicU64,
}

impl SessionBacklog {
    pub(crate) fn new(backlog: Arc<Backlog>) -> Self {
        Self {
            backlog,
            last_ticketed_tag: AtomicU64::new(0),
        }
    }

    /// Called before the delivery is handed on, so before its report can come back.
    pub(crate) fn delivered(&self, delivery_tag: u64) {
        if self.backlog.take_ticket() {
            self.last_ticketed_tag
                .store(delivery_tag, Ordering::Release);
        }
    }

    fn reported(&self, report: FinishedDelivery) {
        if report.delivery_tag <= self.last_ticketed_tag.load(Ordering::Acquire) {
            self.backlog.finished(report.completed);
        }
    }
}

pub(crate) async fn run_acker(
    channel: Channel,
    mut finished: FinishedReceiver,
    unacked: Arc<UnackedDeliveries>,
    backlog: Option<Arc<SessionBacklog>>,
) {
    let mut tracker = AckRangeTracker::new();
    while let Some(first) = finished.recv().await {
        let mut next = Some(first);
        while let Some(report) = next {
            if !report.completed {
                metrics::counter!("sluice_requeued_total").increment(1);
                tracing::warn!(
                    delivery_tag = report.delivery_tag,
                    "delivery not finished by every stage; returning it to the queue"
                );
                let nack = BasicNackOptions {
                    multiple: false,
                    requeue: true,
                };
                if let Err(error) = channel.basic_nack(report.delivery_tag, nack).await {
                    tracing::warn!(%error, "nack failed; the channel is gone and the broker requeues");
                    return;
                }
            }
            tracker.finish(report.delivery_tag);
            if let Some(backlog) = &backlog {
                backlog.reported(report);
            }
            next = finished.try_recv().ok();
        }

        let before = tracker.released_up_to();
        let Some(up_to) = tracker.release() else {
            continue;
        };
        if let Err(error) = channel
            .basic_ack(up_to, BasicAckOptions { multiple: true })
            .await
        {
            tracing::warn!(%error, "ack failed; the channel is gone and the broker requeues");
            return;
        }
        metrics::counter!("sluice_acked_total").increment(up_to - before);
        unacked.acked(up_to - before);
        metrics::counter!("sluice_ack_frames_total").increment(1);
    }
}
