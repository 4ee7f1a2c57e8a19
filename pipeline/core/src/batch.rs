//! The one batching stage every sink uses: bounded by items, bytes and linger time.
//!
//! A batch is emitted when it holds `max_items`, when adding the next item would pass `max_bytes`,
//! or `linger` after its first item arrived, whichever comes first. When the input closes, what is
//! held is emitted and the stage ends, which is how a shutdown flushes. The output channel is
//! bounded, so a slow sink stops this stage, which stops the source: backpressure all the way to
//! the broker.

use std::num::NonZeroUsize;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ack::Tracked;
use crate::rejection::Stage;

/// How large an item is once encoded, close enough to bound a request body.
pub trait ByteSize {
    fn byte_size(&self) -> usize;
}

impl<T: ByteSize> ByteSize for Tracked<T> {
    fn byte_size(&self) -> usize {
        self.item.byte_size()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_items: NonZeroUsize,
    pub max_bytes: NonZeroUsize,
    pub linger: Duration,
}

/// How many waiting items a stage takes off its input at once (the batcher, the metrics
/// normalise stage): one wake-up and one lock of the channel for a run of items instead of one
/// each.
pub const RECEIVE_AT_ONCE: usize = 256;

/// Runs until `input` closes; returns when the last batch was handed on (or the sink is gone).
/// `sink` labels the batch-size histograms, so paths that batch differently are told apart.
pub async fn run_batcher<T: ByteSize>(
    mut input: mpsc::Receiver<T>,
    output: mpsc::Sender<Vec<T>>,
    limits: BatchLimits,
    sink: Stage,
) {
    let sizes = BatchSizes {
        items: metrics::histogram!("sluice_batch_items", "sink" => sink),
        bytes: metrics::histogram!("sluice_batch_bytes", "sink" => sink),
    };
    let mut batch: Vec<T> = Vec::with_capacity(limits.max_items.get());
    let mut batch_bytes = 0usize;
    let mut deadline: Option<Instant> = None;
    let mut arrived: Vec<T> = Vec::with_capacity(RECEIVE_AT_ONCE);

    loop {
        let received = match deadline {
            None => input.recv_many(&mut arrived, RECEIVE_AT_ONCE).await,
            Some(at) => {
                tokio::select! {
                    biased;
                    received = input.recv_many(&mut arrived, RECEIVE_AT_ONCE) => received,
                    () = tokio::time::sleep_until(at) => {
                        if !emit(&output, &mut batch, &mut batch_bytes, limits, &sizes).await {
                            return;
                        }
                        deadline = None;
                        continue;
                    }
                }
            }
        };
        if received == 0 {
            // The input is closed and empty.
            if !batch.is_empty() {
                emit(&output, &mut batch, &mut batch_bytes, limits, &sizes).await;
            }
            return;
        }

        for item in arrived.drain(..) {
            let item_bytes = item.byte_size();
            if !batch.is_empty() && batch_bytes + item_bytes > limits.max_bytes.get() {
                if !emit(&output, &mut batch, &mut batch_bytes, limits, &sizes).await {
                    return;
                }
                deadline = None;
            }
            if batch.is_empty() {
                deadline = Some(Instant::now() + limits.linger);
            }
            batch_bytes += item_bytes;
            batch.push(item);
            if batch.len() >= limits.max_items.get() || batch_bytes >= limits.max_bytes.get() {
                if !emit(&output, &mut batch, &mut batch_bytes, limits, &sizes).await {
                    return;
                }
                deadline = None;
            }
        }
    }
}

struct BatchSizes {
    items: metrics::Histogram,
    bytes: metrics::Histogram,
}

/// Hands the batch on; false when the sink is gone.
async fn emit<T>(
    output: &mpsc::Sender<Vec<T>>,
    batch: &mut Vec<T>,
    batch_bytes: &mut usize,
    limits: BatchLimits,
    sizes: &BatchSizes,
) -> bool {
    let full = std::mem::replace(batch, Vec::with_capacity(limits.max_items.get()));
    sizes.items.record(full.len() as f64);
    sizes.bytes.record(*batch_bytes as f64);
    *batch_bytes = 0;
    output.send(full).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Sized(usize);
    impl ByteSize for Sized {
        fn byte_size(&self) -> usize {
            self.0
        }
    }

    fn limits(items: usize, bytes: usize, linger_ms: u64) -> BatchLimits {
        BatchLimits {
            max_items: NonZeroUsize::new(items).expect("non-zero"),
            max_bytes: NonZeroUsize::new(bytes).expect("non-zero"),
            linger: Duration::from_millis(linger_ms),
        }
    }

    fn sizes(batch: &[Sized]) -> Vec<usize> {
        batch.iter().map(|s| s.0).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn full_batches_go_at_once_and_the_rest_after_linger() {
        let (in_tx, in_rx) = mpsc::channel(16);
        let (out_tx, mut out_rx) = mpsc::channel(16);
        tokio::spawn(run_batcher(
            in_rx,
            out_tx,
            limits(3, 1000, 50),
            Stage::Influx,
        ));
        for _ in 0..4 {
            in_tx.send(Sized(1)).await.expect("send");
        }
        let started = Instant::now();
        assert_eq!(sizes(&out_rx.recv().await.expect("batch")), vec![1, 1, 1]);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "a full batch does not wait"
        );
        assert_eq!(sizes(&out_rx.recv().await.expect("batch")), vec![1]);
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(50),
            "the rest waits the linger"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn byte_bound_splits_before_passing_the_limit() {
        let (in_tx, in_rx) = mpsc::channel(16);
        let (out_tx, mut out_rx) = mpsc::channel(16);
        tokio::spawn(run_batcher(
            in_rx,
            out_tx,
            limits(100, 10, 50),
            Stage::Influx,
        ));
        for size in [4, 4, 4, 20, 1] {
            in_tx.send(Sized(size)).await.expect("send");
        }
        drop(in_tx);
        assert_eq!(sizes(&out_rx.recv().await.expect("batch")), vec![4, 4]);
        assert_eq!(sizes(&out_rx.recv().await.expect("batch")), vec![4]);
        assert_eq!(
            sizes(&out_rx.recv().await.expect("batch")),
            vec![20],
            "an oversized item travels alone"
        );
        assert_eq!(sizes(&out_rx.recv().await.expect("batch")), vec![1]);
        assert!(out_rx.recv().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn closing_the_input_flushes_without_waiting_for_linger() {
        let (in_tx, in_rx) = mpsc::channel(16);
        let (out_tx, mut out_rx) = mpsc::channel(16);
        let batcher = tokio::spawn(run_batcher(
            in_rx,
            out_tx,
            limits(100, 1000, 60_000),
            Stage::Influx,
        ));
        in_tx.send(Sized(1)).await.expect("send");
        in_tx.send(Sized(2)).await.expect("send");
        let started = Instant::now();
        drop(in_tx);
        assert_eq!(sizes(&out_rx.recv().await.expect("batch")), vec![1, 2]);
        assert!(started.elapsed() < Duration::from_secs(1));
        batcher.await.expect("batcher ends");
    }

    #[tokio::test(start_paused = true)]
    async fn linger_is_counted_from_the_first_item_of_each_batch() {
        let (in_tx, in_rx) = mpsc::channel(16);
        let (out_tx, mut out_rx) = mpsc::channel(16);
        tokio::spawn(run_batcher(
            in_rx,
            out_tx,
            limits(100, 1000, 100),
            Stage::Influx,
        ));
        let started = Instant::now();
        in_tx.send(Sized(1)).await.expect("send");
        tokio::time::sleep(Duration::from_millis(60)).await;
        in_tx.send(Sized(2)).await.expect("send");
        assert_eq!(sizes(&out_rx.recv().await.expect("batch")), vec![1, 2]);
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }
}
