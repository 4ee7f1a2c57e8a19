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

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use sluice_core::ack::{AckRangeTracker, FinishedReceiver};

pub async fn run_acker(channel: Channel, mut finished: FinishedReceiver) {
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
        metrics::counter!("sluice_ack_frames_total").increment(1);
    }
}
