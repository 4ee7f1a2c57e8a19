//! The one HTTP batch writer of the sinks: encoded items are copied back to back into one pooled
//! request body, and a request refused for what some of its items hold is split until each
//! refused item stands alone ([invariant 2](sluice_core#invariants)).
//!
//! A store says what an answer means through [`BatchEndpoint::send`]; [`write_batch`] does the
//! rest the same way for every store:
//!
//! - [`BatchAnswer::Written`] or [`BatchAnswer::Items`]: the outcomes of the request's items;
//! - [`BatchAnswer::Split`]: InfluxDB's partial write (400/422), a 413. A request of several
//!   items is cut in halves and each half sent again; an item alone gets the store's refusal.
//!   InfluxDB does not say which lines it refused in a form we can rely on, and Elasticsearch's
//!   413 says nothing about which document is too large, so halving is how the refused items are
//!   found: isolating one bad item among `n` resends about `2n` items in `2 log2(n)` requests,
//!   and only when something was refused. Resending is safe because both stores write
//!   idempotently ([invariant 4](sluice_core#invariants));
//! - [`BatchAnswer::RefusedFor`]: refused whole for one item the store named, nothing written:
//!   that item is refused, the others sent again;
//! - [`BatchAnswer::Failed`]: not about these items (5xx, 429, no answer, bad credentials). The
//!   segments still waiting are not sent; they get the same `Retry`, because the next request
//!   would very likely fail the same way.
//!
//! Segments are written one after another from a stack: no recursion, no boxed futures, and a
//! split costs no re-encoding, since every segment is a slice of the one body.

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use sluice_core::outcome::ItemOutcome;
use sluice_core::rejection::Refusal;

use crate::BufferPool;

/// What one request came back with, before it becomes outcomes.
#[derive(Debug)]
pub enum BatchAnswer {
    /// Every item of the request was written.
    Written,
    /// One outcome per item of the request, in order (a bulk answer read item by item).
    Items(Vec<ItemOutcome>),
    /// Refused for something some of its items hold: split the request; an item alone is
    /// refused with `alone`.
    Split { alone: Refusal },
    /// Refused whole because of one item, which the answer named (its index in the request),
    /// and nothing of the request was written (InfluxDB 3 with `accept_partial=false`): that
    /// item gets `refusal`, and the items before and after it are sent again.
    RefusedFor { item: usize, refusal: Refusal },
    /// Nothing about these items in particular: they, and every segment still waiting, are
    /// retried.
    Failed {
        retry_after: Option<Duration>,
        detail: String,
    },
}

/// A store's write request, as [`write_batch`] sends it.
pub trait BatchEndpoint: Send + Sync {
    /// Sends `body`, which holds `items` encoded items back to back, and classifies the answer.
    /// A store that answers `Split` for several items logs that it splits.
    fn send(&self, body: &[u8], items: usize) -> impl Future<Output = BatchAnswer> + Send;
}

/// Writes `items`, each already in the store's wire form, and answers one outcome per item in
/// the same order.
pub async fn write_batch<E: BatchEndpoint>(
    endpoint: &E,
    buffers: &BufferPool,
    items: &[&[u8]],
) -> Vec<ItemOutcome> {
    let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; items.len()];
    let mut body = buffers.take();
    // Where each item's bytes start in `body`; one more entry marks the end of the last.
    let mut starts = Vec::with_capacity(items.len() + 1);
    for item in items {
        starts.push(body.len());
        body.extend_from_slice(item);
    }
    starts.push(body.len());

    let mut pending: Vec<Range<usize>> = Vec::with_capacity(16);
    pending.push(0..items.len());
    while let Some(segment) = pending.pop() {
        if segment.is_empty() {
            continue;
        }
        let bytes = &body[starts[segment.start]..starts[segment.end]];
        let retry = match endpoint.send(bytes, segment.len()).await {
            BatchAnswer::Written => {
                set_all(&mut outcomes, segment, &ItemOutcome::Delivered);
                continue;
            }
            BatchAnswer::Items(item_outcomes) => {
                for (slot, outcome) in outcomes[segment].iter_mut().zip(item_outcomes) {
                    *slot = Some(outcome);
                }
                continue;
            }
            BatchAnswer::RefusedFor { item, refusal } if item < segment.len() => {
                let refused = segment.start + item;
                outcomes[refused] = Some(ItemOutcome::from(refusal));
                pending.push(refused + 1..segment.end);
                pending.push(segment.start..refused);
                continue;
            }
            // An index outside the request names nothing: find the refused items by halving.
            BatchAnswer::Split { .. } | BatchAnswer::RefusedFor { .. } if segment.len() > 1 => {
                let middle = segment.start + segment.len() / 2;
                pending.push(middle..segment.end);
                pending.push(segment.start..middle);
                continue;
            }
            BatchAnswer::Split { alone } | BatchAnswer::RefusedFor { refusal: alone, .. } => {
                set_all(&mut outcomes, segment, &ItemOutcome::from(alone));
                continue;
            }
            BatchAnswer::Failed {
                retry_after,
                detail,
            } => ItemOutcome::Retry {
                after: retry_after,
                detail,
            },
        };
        set_all(&mut outcomes, segment, &retry);
        for waiting in pending.drain(..) {
            set_all(&mut outcomes, waiting, &retry);
        }
    }
    buffers.give_back(body);
    ItemOutcome::all_recorded(outcomes)
}

fn set_all(outcomes: &mut [Option<ItemOutcome>], segment: Range<usize>, outcome: &ItemOutcome) {
    for slot in &mut outcomes[segment] {
        *slot = Some(outcome.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use sluice_core::rejection::Reason;

    use super::*;

    /// Refuses every request holding a `!`, and records what it was sent.
    #[derive(Default)]
    struct RefusesBang {
        sent: Mutex<Vec<String>>,
    }

    impl BatchEndpoint for RefusesBang {
        async fn send(&self, body: &[u8], _items: usize) -> BatchAnswer {
            let body = String::from_utf8_lossy(body).into_owned();
            let refused = body.contains('!');
            self.sent.lock().expect("lock").push(body);
            if refused {
                BatchAnswer::Split {
                    alone: Refusal::new(Reason::BadLine, "bang"),
                }
            } else {
                BatchAnswer::Written
            }
        }
    }

    #[tokio::test]
    async fn a_refused_item_is_isolated_by_halving_and_the_rest_written() {
        let endpoint = RefusesBang::default();
        let items: [&[u8]; 4] = [b"a\n", b"b\n", b"!\n", b"d\n"];
        let outcomes = write_batch(&endpoint, &BufferPool::new(1), &items).await;
        assert_eq!(outcomes[0], ItemOutcome::Delivered);
        assert_eq!(outcomes[1], ItemOutcome::Delivered);
        assert_eq!(outcomes[2], Refusal::new(Reason::BadLine, "bang").into());
        assert_eq!(outcomes[3], ItemOutcome::Delivered);
        assert_eq!(
            *endpoint.sent.lock().expect("lock"),
            ["a\nb\n!\nd\n", "a\nb\n", "!\nd\n", "!\n", "d\n"]
        );
    }

    /// Refuses a whole request holding a `!`, naming the first one, as InfluxDB 3 does with
    /// `accept_partial=false`.
    #[derive(Default)]
    struct NamesTheBang {
        sent: Mutex<Vec<String>>,
    }

    impl BatchEndpoint for NamesTheBang {
        async fn send(&self, body: &[u8], _items: usize) -> BatchAnswer {
            let body = String::from_utf8_lossy(body).into_owned();
            let bang = body.lines().position(|line| line == "!");
            self.sent.lock().expect("lock").push(body);
            match bang {
                Some(item) => BatchAnswer::RefusedFor {
                    item,
                    refusal: Refusal::new(Reason::BadLine, "bang"),
                },
                None => BatchAnswer::Written,
            }
        }
    }

    #[tokio::test]
    async fn an_item_named_by_a_whole_refusal_is_refused_and_the_rest_sent_again() {
        let endpoint = NamesTheBang::default();
        let items: [&[u8]; 5] = [b"a\n", b"!\n", b"c\n", b"!\n", b"e\n"];
        let outcomes = write_batch(&endpoint, &BufferPool::new(1), &items).await;
        let refused: ItemOutcome = Refusal::new(Reason::BadLine, "bang").into();
        assert_eq!(
            outcomes,
            [
                ItemOutcome::Delivered,
                refused.clone(),
                ItemOutcome::Delivered,
                refused,
                ItemOutcome::Delivered
            ]
        );
        assert_eq!(
            *endpoint.sent.lock().expect("lock"),
            ["a\n!\nc\n!\ne\n", "a\n", "c\n!\ne\n", "c\n", "e\n"]
        );
    }

    /// Answers 503 to everything.
    struct Down;

    impl BatchEndpoint for Down {
        async fn send(&self, _body: &[u8], _items: usize) -> BatchAnswer {
            BatchAnswer::Failed {
                retry_after: Some(Duration::from_secs(1)),
                detail: "503".into(),
            }
        }
    }

    #[tokio::test]
    async fn a_failed_request_retries_every_item() {
        let items: [&[u8]; 3] = [b"a", b"b", b"c"];
        let outcomes = write_batch(&Down, &BufferPool::new(1), &items).await;
        let retry = ItemOutcome::Retry {
            after: Some(Duration::from_secs(1)),
            detail: "503".into(),
        };
        assert_eq!(outcomes, vec![retry; 3]);
    }
}
