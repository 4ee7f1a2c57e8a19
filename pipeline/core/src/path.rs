//! The one shape every path has: deliveries are decoded and encoded in one stage, batched, and
//! written by a sink whose per-item outcomes finish each delivery.
//!
//! ```text
//!  sources ─AckToken─► encode stage ─Tracked<Encoded>─► batcher ─Vec<..>─► sink driver ─► store
//!                       │ Decoder::decode                                   │ per-item outcomes
//!                       │ Encode::encode        ┌──── refused items ────────┘
//!                       │ refusals ─────────────┴─► dead-letter channel
//!                       └─ control messages ─► ControlHandler (the rule stage)
//! ```
//!
//! A path is a [`Decoder`] (a body becomes an item, a control message, or a refusal), a [`Sink`]
//! (which owns its wire form: it encodes an item, then writes batches of encoded items and
//! answers one outcome per item) and a [`ControlHandler`]. [`run_path`] runs them. Decoding and
//! encoding happen together in the encode stage, while the body is still in the cache; the item
//! may borrow from the decoder's scratch buffers, so nothing is allocated per message on the way.
//! The batcher ([`crate::batch`]) and the sink driver ([`crate::outcome`]) are the same for every
//! path. Every arrow is a bounded channel, so a slow store holds the sources ([invariant
//! 3](crate#invariants)).
//!
//! Shutdown runs front to back: the sources stop and drop their senders, each stage ends when its
//! input closes, having handed on what it held, and every delivery is finished by whoever owns
//! its outcome (the sink driver, the dead-letter publisher, the control handler).

use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::ack::{AckToken, ControlAck, SourceMessage, Tracked};
use crate::batch::{BatchLimits, ByteSize, RECEIVE_AT_ONCE, run_batcher};
use crate::dead_letter::{DeadLetter, DeadLetterSender, send_dead_letter};
use crate::outcome::{ItemOutcome, run_sink};
use crate::rejection::{Refusal, Stage};
use crate::retry::RetryPolicy;

/// What a body became.
#[derive(Debug)]
pub enum Decoded<Item, Control> {
    /// An item for the sink.
    Item(Item),
    /// A message that steers the pipeline rather than carrying data (the manager's policy-engine
    /// start and stop): it goes to the path's [`ControlHandler`].
    Control(Control),
    /// Bad input: dead-lettered with its reason, never retried.
    Refused(Refusal),
}

/// The first half of a path's encode stage: one body at a time, no I/O.
pub trait Decoder: Send + 'static {
    /// The decoded item. It may borrow from the decoder (its scratch buffers), which is why a
    /// body is decoded, encoded and let go of before the next one is taken.
    type Item<'a>
    where
        Self: 'a;
    /// The path's control messages; [`Infallible`] for a path that has none.
    type Control: Send + 'static;

    /// The stage refusals are dead-lettered under.
    fn stage(&self) -> Stage;

    fn decode<'a>(&'a mut self, message: &SourceMessage) -> Decoded<Self::Item<'a>, Self::Control>;

    /// The [tap](crate::tap) `sluice tap` reads this path's decoded items from (`points`,
    /// `documents`).
    fn tap_name(&self) -> &'static str;

    /// An item as `sluice tap` shows it. Made only for a sampled item while someone listens.
    fn tap_record(item: &Self::Item<'_>) -> serde_json::Value
    where
        Self: Sized;

    /// Hands on what the last [`decode`](Self::decode) set aside for a stage beside the path
    /// (the metrics decoder's copies of metrics for the rule stage). Awaited before the item
    /// goes on, so a full side stage holds the path. Nothing, by default.
    fn hand_on(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// A store: it owns its wire form. The encode stage [`Encode`]s each item into
/// [`Sink::Encoded`]; the sink driver [`write`](Sink::write)s batches of them.
pub trait Sink: Send + Sync + 'static {
    /// An item in the sink's wire form (a line of line protocol, a bulk action and source).
    type Encoded: ByteSize + Send + Sync + 'static;
    /// What encoding keeps from one item to the next (caches, buffers). The encode stage holds
    /// one, made by [`encoder`](Sink::encoder).
    type Encoder: Send + 'static;

    /// The stage name in metrics and dead-letter routing keys.
    fn stage(&self) -> Stage;

    fn encoder(&self) -> Self::Encoder;

    /// Writes `items` and answers one outcome per item, in the same order. Must not fail as a
    /// whole: a request that failed becomes a `Retry` (or `Reject`) for each of its items.
    /// Retrying is the driver's: a `Retry` item comes back in a later call.
    fn write(&self, items: &[&Self::Encoded]) -> impl Future<Output = Vec<ItemOutcome>> + Send;
}

/// How a sink encodes one kind of item. A refusal is dead-lettered under the sink's stage.
pub trait Encode<Item: ?Sized>: Sink {
    fn encode(&self, encoder: &mut Self::Encoder, item: &Item) -> Result<Self::Encoded, Refusal>;
}

/// Where a path's control messages go. The handler owns their outcome: it finishes each
/// [`ControlAck`] once it acted on the message (or dead-letters it).
pub trait ControlHandler<Control>: Send + 'static {
    /// False when the handler is gone and the path should stop.
    fn handle(&mut self, control: Control, ack: ControlAck) -> impl Future<Output = bool> + Send;
}

/// The handler of a path without control messages.
#[derive(Debug, Default)]
pub struct NoControl;

impl ControlHandler<Infallible> for NoControl {
    async fn handle(&mut self, control: Infallible, _ack: ControlAck) -> bool {
        match control {}
    }
}

/// How a path is bounded and retried.
#[derive(Debug, Clone, Copy)]
pub struct PathLimits {
    pub batch: BatchLimits,
    /// Write requests in flight.
    pub concurrency: NonZeroUsize,
    pub write_retry: RetryPolicy,
}

/// Runs a path until `deliveries` closes and everything taken from it has an outcome: decode and
/// encode, batch, write. Each stage is a task of its own, so the path uses both cores.
pub async fn run_path<D, S, H>(
    deliveries: mpsc::Receiver<AckToken>,
    decoder: D,
    sink: Arc<S>,
    controls: H,
    limits: PathLimits,
    dead_letters: DeadLetterSender,
) where
    D: Decoder,
    S: for<'a> Encode<D::Item<'a>>,
    H: ControlHandler<D::Control>,
{
    let (encoded_tx, encoded_rx) = mpsc::channel(limits.batch.max_items.get());
    let (batches_tx, batches_rx) = mpsc::channel(limits.concurrency.get());
    let encode_stage = tokio::spawn(run_encode_stage(
        deliveries,
        encoded_tx,
        decoder,
        Arc::clone(&sink),
        controls,
        dead_letters.clone(),
    ));
    let batcher = tokio::spawn(run_batcher(
        encoded_rx,
        batches_tx,
        limits.batch,
        sink.stage(),
    ));
    let sink_driver = tokio::spawn(run_sink(
        batches_rx,
        sink,
        limits.concurrency,
        limits.write_retry,
        dead_letters,
    ));
    for stage in [encode_stage, batcher, sink_driver] {
        if let Err(error) = stage.await
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}
/// Decodes and encodes each delivery. Items go on to the batcher; refusals (the decoder's or the
/// sink's encoder's) are dead-lettered with their reason; control messages go to `controls`.
pub async fn run_encode_stage<D, S, H>(
    mut deliveries: mpsc::Receiver<AckToken>,
    encoded: mpsc::Sender<Tracked<S::Encoded>>,
    mut decoder: D,
    sink: Arc<S>,
    mut controls: H,
    dead_letters: DeadLetterSender,
) where
    D: Decoder,
    S: for<'a> Encode<D::Item<'a>>,
    H: ControlHandler<D::Control>,
{
    let mut encoder = sink.encoder();
    let decode_stage = decoder.stage();
    let decoded_total = metrics::counter!("sluice_decoded_total", "stage" => decode_stage);
    let tap = crate::tap::named(decoder.tap_name());
    // Deliveries are taken off the channel in runs: one wake-up per run, not per message.
    let mut arrived = Vec::with_capacity(RECEIVE_AT_ONCE);
    while deliveries.recv_many(&mut arrived, RECEIVE_AT_ONCE).await > 0 {
        for ack in arrived.drain(..) {
            // The item borrows from the decoder, so it is encoded (or let go of) before any
            // wait: what crosses an `.await` is owned.
            let next = match decoder.decode(ack.message()) {
                Decoded::Item(item) => {
                    decoded_total.increment(1);
                    tap.offer(|| D::tap_record(&item));
                    match sink.encode(&mut encoder, &item) {
                        Ok(item) => Next::Encoded(item),
                        Err(refusal) => Next::Refused(sink.stage(), refusal),
                    }
                }
                Decoded::Control(control) => Next::Control(control),
                Decoded::Refused(refusal) => Next::Refused(decode_stage, refusal),
            };
            decoder.hand_on().await;
            match next {
                Next::Encoded(item) => {
                    if encoded.send(Tracked::new(item, ack)).await.is_err() {
                        return;
                    }
                }
                Next::Control(control) => {
                    if !controls.handle(control, ControlAck::new(ack)).await {
                        return;
                    }
                }
                Next::Refused(stage, refusal) => {
                    send_dead_letter(&dead_letters, DeadLetter::new(stage, refusal, 0, ack)).await;
                }
            }
        }
    }
}

/// What one delivery became in the encode stage, owned.
enum Next<Encoded, Control> {
    Encoded(Encoded),
    Control(Control),
    Refused(Stage, Refusal),
}
