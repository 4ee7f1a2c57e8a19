//! Per-item sink outcomes, and the driver that acts on them ([invariant 2](crate#invariants)).
//!
//! A [`Sink`](crate::path::Sink) writes a batch and answers one [`ItemOutcome`] per item. [`deliver_batch`]
//! then finishes delivered items, dead-letters rejected ones, and retries only the retryable
//! subset with capped backoff, holding those items' deliveries unacked until they land. Retries do
//! not give up: a store that is down holds the pipeline (and, through prefetch, the broker's
//! queue) until it comes back, which is what "nothing lost" means.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::Label;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::ack::Tracked;
use crate::dead_letter::{DeadLetter, DeadLetterSender, send_dead_letter};
use crate::path::Sink;
use crate::rejection::{Reason, Refusal};
use crate::retry::RetryPolicy;

#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    /// Durably written (or already there: a duplicate of an idempotent write).
    Delivered,
    /// Not written for a reason that may pass: connection error, timeout, 5xx, 429.
    Retry {
        /// The server's `Retry-After`, if it gave one.
        after: Option<Duration>,
        detail: String,
    },
    /// The store refused this item and will refuse it again: it is dead-lettered.
    Reject { reason: Reason, detail: String },
}

impl ItemOutcome {
    /// A writer's outcomes, recorded item by item as its requests answered: every item gets one,
    /// and one that did not (a bug in the writer) is retried rather than lost or delivered.
    pub fn all_recorded(outcomes: Vec<Option<ItemOutcome>>) -> Vec<ItemOutcome> {
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| ItemOutcome::Retry {
                    after: None,
                    detail: "internal error: no outcome recorded".to_owned(),
                })
            })
            .collect()
    }
}

impl From<Refusal> for ItemOutcome {
    fn from(refusal: Refusal) -> Self {
        ItemOutcome::Reject {
            reason: refusal.reason,
            detail: refusal.detail,
        }
    }
}

/// Writes a batch until every item is delivered or dead-lettered. Its metrics carry the sink's
/// stage (`sink`) and, when it has one, its `name` (`sink_name`): a configured pipeline can
/// have several sinks of one kind, and the sidecar's series stay as dashboards know them.
pub async fn deliver_batch<W: Sink>(
    writer: &W,
    name: Option<&str>,
    batch: Vec<Tracked<W::Encoded>>,
    retry_policy: &RetryPolicy,
    dead_letters: &DeadLetterSender,
) {
    let stage = writer.stage();
    let mut labels = vec![Label::new("sink", stage.as_str())];
    if let Some(name) = name {
        labels.push(Label::new("sink_name", name.to_owned()));
    }
    // Items held by the sink driver until they are delivered or dead-lettered: it grows while a
    // store is down and the same items are retried, which the write rates alone do not show.
    let in_flight = metrics::gauge!("sluice_sink_in_flight", labels.clone());
    in_flight.increment(batch.len() as f64);
    let mut pending = batch;
    let mut attempt: u32 = 0;
    while !pending.is_empty() {
        let started = Instant::now();
        let outcomes = {
            let items: Vec<&W::Encoded> = pending.iter().map(|tracked| &tracked.item).collect();
            writer.write(&items).await
        };
        metrics::histogram!("sluice_sink_write_seconds", labels.clone())
            .record(started.elapsed().as_secs_f64());
        attempt += 1;

        if outcomes.len() != pending.len() {
            tracing::error!(
                sink = %stage,
                items = pending.len(),
                outcomes = outcomes.len(),
                "sink answered the wrong number of outcomes; retrying the whole batch"
            );
            tokio::time::sleep(retry_policy.delay(attempt - 1, None)).await;
            continue;
        }

        let outcomes_count = pending.len();
        let mut retry = Vec::new();
        let mut retry_after: Option<Duration> = None;
        let mut last_retry_detail = String::new();
        let mut delivered = 0u64;
        for (tracked, outcome) in pending.into_iter().zip(outcomes) {
            match outcome {
                ItemOutcome::Delivered => {
                    delivered += 1;
                    tracked.ack.delivered();
                }
                ItemOutcome::Reject { reason, detail } => {
                    let refusal = Refusal::new(reason, detail);
                    let letter = DeadLetter::new(stage, refusal, attempt, tracked.ack);
                    send_dead_letter(dead_letters, letter).await;
                }
                ItemOutcome::Retry { after, detail } => {
                    retry_after = retry_after.max(after);
                    last_retry_detail = detail;
                    retry.push(tracked);
                }
            }
        }
        metrics::counter!("sluice_written_total", labels.clone()).increment(delivered);
        in_flight.decrement((outcomes_count - retry.len()) as f64);
        if retry.is_empty() {
            return;
        }
        metrics::counter!("sluice_retried_total", labels.clone()).increment(retry.len() as u64);
        let delay = retry_policy.delay(attempt - 1, retry_after);
        tracing::warn!(
            sink = %stage,
            sink_name = name.unwrap_or_default(),
            items = retry.len(),
            attempt,
            delay_ms = delay.as_millis() as u64,
            error = %last_retry_detail,
            "write failed, retrying"
        );
        tokio::time::sleep(delay).await;
        pending = retry;
    }
}

/// The sink stage: takes batches and writes up to `concurrency` of them at once, each through
/// [`deliver_batch`]. Returns when `batches` closes and every write has finished: the last step of
/// a clean shutdown's drain. Taking a batch waits for a free slot, so a slow store stops the
/// batcher, and through it the source.
pub async fn run_sink<W: Sink>(
    mut batches: mpsc::Receiver<Vec<Tracked<W::Encoded>>>,
    writer: Arc<W>,
    name: Option<Arc<str>>,
    concurrency: NonZeroUsize,
    retry_policy: RetryPolicy,
    dead_letters: DeadLetterSender,
) {
    let slots = Arc::new(Semaphore::new(concurrency.get()));
    let mut writes = JoinSet::new();
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let Some(batch) = batches.recv().await else {
            break;
        };
        let writer = Arc::clone(&writer);
        let name = name.clone();
        let dead_letters = dead_letters.clone();
        writes.spawn(async move {
            deliver_batch(
                writer.as_ref(),
                name.as_deref(),
                batch,
                &retry_policy,
                &dead_letters,
            )
            .await;
            drop(slot);
        });
        while writes.try_join_next().is_some() {}
    }
    while writes.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{AckToken, FinishedDelivery, SourceMessage, finished_channel};
    use crate::batch::ByteSize;
    use crate::rejection::Stage;
    use std::sync::Mutex;
    use tokio::sync::mpsc;

    #[test]
    fn an_item_without_a_recorded_outcome_is_retried() {
        let outcomes = ItemOutcome::all_recorded(vec![Some(ItemOutcome::Delivered), None]);
        assert_eq!(outcomes[0], ItemOutcome::Delivered);
        assert!(
            matches!(&outcomes[1], ItemOutcome::Retry { after: None, detail } if detail.contains("no outcome")),
            "{:?}",
            outcomes[1]
        );
    }

    /// Answers from a script: each call pops the next outcome list, and records what it saw.
    struct ScriptedWriter {
        answers: Mutex<Vec<Vec<ItemOutcome>>>,
        calls: Mutex<Vec<Vec<u32>>>,
    }

    impl ByteSize for u32 {
        fn byte_size(&self) -> usize {
            4
        }
    }

    impl Sink for ScriptedWriter {
        type Encoded = u32;
        type Encoder = ();
        fn stage(&self) -> Stage {
            Stage::Influx
        }
        fn encoder(&self) {}
        async fn write(&self, items: &[&u32]) -> Vec<ItemOutcome> {
            self.calls
                .lock()
                .expect("lock")
                .push(items.iter().map(|item| **item).collect());
            self.answers.lock().expect("lock").remove(0)
        }
    }

    fn retry() -> ItemOutcome {
        ItemOutcome::Retry {
            after: None,
            detail: "503".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_retryable_items_are_retried_and_rejects_are_dead_lettered() {
        let writer = ScriptedWriter {
            answers: Mutex::new(vec![
                vec![
                    ItemOutcome::Delivered,
                    retry(),
                    ItemOutcome::Reject {
                        reason: Reason::BadLine,
                        detail: "bad".into(),
                    },
                    retry(),
                ],
                vec![retry(), ItemOutcome::Delivered],
                vec![ItemOutcome::Delivered],
            ]),
            calls: Mutex::new(Vec::new()),
        };
        let (finished_tx, mut finished_rx) = finished_channel();
        let batch: Vec<Tracked<u32>> = (1..=4)
            .map(|tag| {
                Tracked::new(
                    tag as u32,
                    AckToken::for_delivery(tag, SourceMessage::default(), finished_tx.clone()),
                )
            })
            .collect();
        let (dead_tx, mut dead_rx) = mpsc::channel(8);
        deliver_batch(&writer, None, batch, &RetryPolicy::default(), &dead_tx).await;

        assert_eq!(
            *writer.calls.lock().expect("lock"),
            vec![vec![1, 2, 3, 4], vec![2, 4], vec![2]]
        );
        let letter = dead_rx.try_recv().expect("item 3 is dead-lettered");
        assert_eq!(
            (letter.reason, letter.attempts, letter.delivery_tag()),
            (Reason::BadLine, 1, 3)
        );
        // Item 3's delivery finishes only when the dead-letter publisher finishes its token.
        letter.published();
        let mut finished: Vec<FinishedDelivery> = Vec::new();
        while let Ok(report) = finished_rx.try_recv() {
            finished.push(report);
        }
        finished.sort_by_key(|report| report.delivery_tag);
        assert_eq!(finished.len(), 4);
        assert!(finished.iter().all(|report| report.completed));
    }
}
