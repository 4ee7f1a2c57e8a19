//! The null consumer: what the broker alone delivers, as the yardstick for sluice's drain.
//!
//! It consumes a queue of the same kind as `sluice.metrics` (durable, no arguments), pre-loaded
//! from the same publishes (see [`preload_beside`]), with the same prefetch as sluice (5,000 by
//! default), and does nothing with the deliveries but ack them. Like sluice's acker it acks
//! cumulatively (`basic.ack multiple=true`), once per `ack_every` deliveries and once more for
//! the last, so the broker's per-ack cost is about the same as sluice's (about one ack frame per
//! 1,000 messages). Whatever sluice spends above this consumer's time and CPU is sluice's own work:
//! decoding, normalising, encoding, writing to InfluxDB.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
    QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};

use crate::procfs::{ConsumerSample, Process};
use crate::report::DrainFigures;

/// sluice's default `amqp.prefetch`.
pub const SLUICE_PREFETCH: u16 = 5000;
/// sluice's default `influx.batch_max_points`: it acks about once per batch.
pub const DEFAULT_ACK_EVERY: u32 = 1000;

/// Decides when the null consumer sends a cumulative ack.
///
/// `ack_every` must not exceed the prefetch: with more unacked deliveries than that the broker
/// stops delivering, and a consumer that waits for more before acking would wait forever.
#[derive(Debug)]
pub struct AckBatcher {
    ack_every: u32,
    unacked: u32,
}

impl AckBatcher {
    pub fn new(ack_every: u32, prefetch: u16) -> anyhow::Result<Self> {
        if ack_every == 0 || ack_every > u32::from(prefetch) {
            bail!(
                "--ack-every {ack_every} must be between 1 and the prefetch {prefetch}: \
                 the broker sends no more than the prefetch unacked"
            );
        }
        Ok(Self {
            ack_every,
            unacked: 0,
        })
    }

    /// Records one delivery; true when an ack up to and including it should be sent now.
    pub fn record(&mut self, is_last: bool) -> bool {
        self.unacked += 1;
        if self.unacked < self.ack_every && !is_last {
            return false;
        }
        self.unacked = 0;
        true
    }
}

#[derive(Debug, Clone)]
pub struct NullConsumerSettings {
    pub amqp_url: String,
    pub queue: String,
    /// How many deliveries make the drain: the queue is expected to hold exactly this many.
    pub count: u64,
    pub prefetch: u16,
    pub ack_every: u32,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct NullConsumerReport {
    /// Time and CPU from `basic.consume` to the last ack; the peak RSS is this process's.
    pub figures: DrainFigures,
    pub ack_frames: u64,
    /// Ready messages left in the queue after the drain (0 when it held exactly `count`).
    pub left_in_queue: u32,
}

/// Fills `queue` from the same publishes as sluice's queue: binds it to `exchange` beside
/// sluice's queue (with `#`, as sluice binds its own, declaring the exchange as sluice does),
/// runs `publish`, then unbinds it so that later live traffic does not pile up in it.
///
/// One publish routed to two queues is one message in the broker, so both queues hold the very
/// same messages. Publishing the bodies a second time, straight into the baseline queue, gave it
/// copies cut from other socket reads (the broker keeps a body as a slice of the read it came
/// in): 65,000 read buffers behind 300,000 messages against sluice's queue's 32,000, with a
/// different garbage-collection load in the queue process during the drain.
///
/// The queue is purged before `publish`, so that what an aborted run left behind cannot lengthen
/// this one's drain: the null consumer expects it to hold exactly what `publish` sends.
pub async fn preload_beside<F, Fut>(
    channel: &Channel,
    exchange: &str,
    queue: &str,
    publish: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    // Declared and bound as sluice's own queue is, then emptied of what an aborted run left.
    crate::broker::declare_metrics_queue(channel, exchange, queue).await?;
    channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await
        .with_context(|| format!("purging the queue {queue}"))?;
    let published = publish().await;
    let unbound = channel
        .queue_unbind(
            queue.into(),
            exchange.into(),
            crate::broker::METRICS_BINDING_KEY.into(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("unbinding the baseline queue {queue} from {exchange}"));
    // A failed publish is the error to report; the unbind then usually fails with it.
    published?;
    unbound?;
    Ok(())
}

/// Drains `settings.count` pre-loaded messages from `settings.queue`, doing no work on them.
pub async fn drain(settings: &NullConsumerSettings) -> anyhow::Result<NullConsumerReport> {
    let mut batcher = AckBatcher::new(settings.ack_every, settings.prefetch)?;
    let connection = Connection::connect(&settings.amqp_url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    let ready = passive_depth(&channel, &settings.queue)
        .await
        .with_context(|| {
            format!(
                "the baseline queue {} does not exist: pre-load it with \
                 `sluice-load --publish-only --baseline-queue {}`",
                settings.queue, settings.queue
            )
        })?;
    if u64::from(ready) < settings.count {
        bail!(
            "the baseline queue {} holds {ready} messages, fewer than --count {}",
            settings.queue,
            settings.count
        );
    }
    channel
        .basic_qos(settings.prefetch, BasicQosOptions { global: false })
        .await?;

    let before = ConsumerSample::now(Process::Own)?;
    let started = Instant::now();
    let consumer_tag = format!("sluice-load-null-{}", std::process::id());
    let mut consumer = channel
        .basic_consume(
            settings.queue.as_str().into(),
            consumer_tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut received = 0u64;
    let mut ack_frames = 0u64;
    let consume = async {
        while received < settings.count {
            let Some(delivery) = consumer.next().await else {
                bail!("the broker closed the consumer after {received} deliveries");
            };
            let delivery = delivery?;
            received += 1;
            if batcher.record(received == settings.count) {
                channel
                    .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                    .await?;
                ack_frames += 1;
            }
        }
        Ok(())
    };
    tokio::time::timeout(settings.timeout, consume)
        .await
        .with_context(|| {
            format!(
                "timed out after {received} of {} deliveries",
                settings.count
            )
        })??;
    let elapsed = started.elapsed();
    let used = before.until(&ConsumerSample::now(Process::Own)?);

    channel
        .basic_cancel(consumer_tag.as_str().into(), BasicCancelOptions::default())
        .await?;
    let left_in_queue = passive_depth(&channel, &settings.queue).await?;
    connection.close(200, "drained".into()).await?;
    Ok(NullConsumerReport {
        figures: DrainFigures::consumed(received, elapsed, Some(used)),
        ack_frames,
        left_in_queue,
    })
}

/// Ready messages in an existing queue; an error when there is no such queue.
pub async fn passive_depth(channel: &Channel, queue: &str) -> anyhow::Result<u32> {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let declared = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await?;
    Ok(declared.message_count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acks_over(deliveries: u32, ack_every: u32) -> Vec<u32> {
        let mut batcher =
            AckBatcher::new(ack_every, SLUICE_PREFETCH).expect("ack_every within the prefetch");
        (1..=deliveries)
            .filter(|&delivery| batcher.record(delivery == deliveries))
            .collect()
    }

    #[test]
    fn acks_once_per_batch_and_once_for_the_last() {
        assert_eq!(acks_over(2500, 1000), vec![1000, 2000, 2500]);
    }

    #[test]
    fn a_count_that_fills_the_last_batch_is_acked_once_at_the_end() {
        assert_eq!(acks_over(3000, 1000), vec![1000, 2000, 3000]);
    }

    #[test]
    fn ack_every_one_acks_every_delivery() {
        assert_eq!(acks_over(3, 1), vec![1, 2, 3]);
    }

    #[test]
    fn a_single_delivery_is_acked() {
        assert_eq!(acks_over(1, 1000), vec![1]);
    }

    #[test]
    fn ack_every_above_the_prefetch_would_stall_and_is_refused() {
        assert!(AckBatcher::new(5001, 5000).is_err());
        assert!(AckBatcher::new(0, 5000).is_err());
        assert!(AckBatcher::new(5000, 5000).is_ok());
    }
}
