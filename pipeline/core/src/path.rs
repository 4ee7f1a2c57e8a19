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

    /// Calls `each` with everything `message` carries, in order. The encode stage calls this,
    /// not [`decode`](Self::decode): a body may carry many items (the lines of a Graphite or
    /// line-protocol body), each finished on its own, and the delivery is acked once all of
    /// them are written or dead-lettered. A refused part carries itself
    /// ([`Refusal::of_part`]) so that only it is dead-lettered. By default a body is one item.
    #[expect(
        clippy::type_complexity,
        reason = "an alias cannot name the item's borrow, which is chosen per call"
    )]
    fn decode_each(
        &mut self,
        message: &SourceMessage,
        each: &mut dyn FnMut(Decoded<Self::Item<'_>, Self::Control>),
    ) {
        each(self.decode(message));
    }

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

/// Where the encode stage hands each decoded item: one sink ([`SinkInput`], the sidecar's
/// paths), or the routes of a configured pipeline, where one item may go through transforms to
/// several sinks. Each output an item becomes is finished on its own.
pub trait Outputs<Item: ?Sized>: Send + 'static {
    /// An item encoded for one of the outputs, owned, with whatever says which output it is.
    type Encoded: Send + 'static;

    /// Encodes `item` for every output it goes to (none, when a filter drops it), calling
    /// `each` with each encoded form or refusal.
    /// (A callback rather than a returned list, so that a fan-out allocates nothing per item.)
    fn encode(
        &mut self,
        item: &Item,
        each: &mut dyn FnMut(Result<Self::Encoded, (Stage, Refusal)>),
    );

    /// Hands one encoded output on with its claim on the delivery. False when the path is
    /// stopping.
    fn send(&mut self, encoded: Self::Encoded, ack: AckToken) -> impl Future<Output = bool> + Send;
}

/// A sink's input: its encoder, and the bounded channel to its batcher.
pub struct SinkInput<S: Sink> {
    sink: Arc<S>,
    encoder: S::Encoder,
    encoded: mpsc::Sender<Tracked<S::Encoded>>,
}

impl<S: Sink> SinkInput<S> {
    /// Starts the sink's batcher and driver, which run until every [`SinkInput`] cloned from
    /// this one is gone and what they sent has an outcome; awaiting the handle waits for that.
    /// Its metrics are labelled by its stage alone: a sidecar path has one sink of each kind.
    pub fn start(
        sink: Arc<S>,
        limits: PathLimits,
        dead_letters: DeadLetterSender,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        Self::start_labelled(sink, None, limits, dead_letters)
    }

    /// As [`start`](Self::start), for one of several sinks of a kind: `name` labels its write
    /// metrics as `sink_name`.
    pub fn start_named(
        sink: Arc<S>,
        name: &str,
        limits: PathLimits,
        dead_letters: DeadLetterSender,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        Self::start_labelled(sink, Some(Arc::from(name)), limits, dead_letters)
    }

    fn start_labelled(
        sink: Arc<S>,
        name: Option<Arc<str>>,
        limits: PathLimits,
        dead_letters: DeadLetterSender,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (encoded_tx, encoded_rx) = mpsc::channel(limits.batch.max_items.get());
        let (batches_tx, batches_rx) = mpsc::channel(limits.concurrency.get());
        let batcher = run_batcher(encoded_rx, batches_tx, limits.batch, sink.stage());
        let driver = run_sink(
            batches_rx,
            Arc::clone(&sink),
            name,
            limits.concurrency,
            limits.write_retry,
            dead_letters,
        );
        let stages = tokio::spawn(async move {
            let (batcher, driver) = tokio::join!(tokio::spawn(batcher), tokio::spawn(driver));
            for stage in [batcher, driver] {
                if let Err(error) = stage
                    && error.is_panic()
                {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        });
        let input = Self {
            encoder: sink.encoder(),
            sink,
            encoded: encoded_tx,
        };
        (input, stages)
    }

    /// Another input of the same sink, with its own encoder, for another source's path.
    pub fn another(&self) -> Self {
        Self {
            sink: Arc::clone(&self.sink),
            encoder: self.sink.encoder(),
            encoded: self.encoded.clone(),
        }
    }

    pub fn stage(&self) -> Stage {
        self.sink.stage()
    }

    /// Encodes one item in the sink's wire form.
    pub fn encode<Item: ?Sized>(&mut self, item: &Item) -> Result<S::Encoded, Refusal>
    where
        S: Encode<Item>,
    {
        self.sink.encode(&mut self.encoder, item)
    }

    /// Sends an encoded item to the batcher. False when the sink has stopped.
    pub async fn send(&mut self, encoded: S::Encoded, ack: AckToken) -> bool {
        self.encoded.send(Tracked::new(encoded, ack)).await.is_ok()
    }
}

impl<S, Item> Outputs<Item> for SinkInput<S>
where
    S: Encode<Item>,
    Item: ?Sized,
{
    type Encoded = S::Encoded;

    fn encode(&mut self, item: &Item, each: &mut dyn FnMut(Result<S::Encoded, (Stage, Refusal)>)) {
        let stage = self.stage();
        each(SinkInput::encode(self, item).map_err(|refusal| (stage, refusal)));
    }

    async fn send(&mut self, encoded: S::Encoded, ack: AckToken) -> bool {
        SinkInput::send(self, encoded, ack).await
    }
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
    let (input, sink_stages) = SinkInput::start(sink, limits, dead_letters.clone());
    let encode_stage = tokio::spawn(run_encode_stage(
        deliveries,
        decoder,
        input,
        controls,
        dead_letters,
    ));
    for stage in [encode_stage, sink_stages] {
        if let Err(error) = stage.await
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

/// Decodes each delivery and encodes what it carries for `outputs`. Refusals (the decoder's or
/// an output's encoder's) are dead-lettered with their reason; control messages go to
/// `controls`. Ends when `deliveries` closes, dropping `outputs`, which lets the sinks finish.
pub async fn run_encode_stage<D, O, H, Encoded>(
    mut deliveries: mpsc::Receiver<AckToken>,
    mut decoder: D,
    mut outputs: O,
    mut controls: H,
    dead_letters: DeadLetterSender,
) where
    D: Decoder,
    // `Encoded` is named apart so that it is seen not to borrow from the item.
    O: for<'a> Outputs<D::Item<'a>, Encoded = Encoded>,
    Encoded: Send + 'static,
    H: ControlHandler<D::Control>,
{
    let decode_stage = decoder.stage();
    let decoded_total = metrics::counter!("sluice_decoded_total", "stage" => decode_stage);
    let tap = crate::tap::named(decoder.tap_name());
    // Deliveries are taken off the channel in runs: one wake-up per run, not per message.
    let mut arrived = Vec::with_capacity(RECEIVE_AT_ONCE);
    // What one delivery became; kept across deliveries so that a body of one item allocates
    // nothing.
    let mut pending: Vec<Next<Encoded, D::Control>> = Vec::new();
    while deliveries.recv_many(&mut arrived, RECEIVE_AT_ONCE).await > 0 {
        for ack in arrived.drain(..) {
            // Each item borrows from the decoder, so it is encoded (or let go of) inside the
            // call: what crosses an `.await` is owned.
            decoder.decode_each(ack.message(), &mut |decoded| match decoded {
                Decoded::Item(item) => {
                    decoded_total.increment(1);
                    tap.offer(|| D::tap_record(&item));
                    outputs.encode(&item, &mut |encoded| {
                        pending.push(match encoded {
                            Ok(encoded) => Next::Encoded(encoded),
                            Err((stage, refusal)) => Next::Refused(stage, refusal),
                        });
                    });
                }
                Decoded::Control(control) => pending.push(Next::Control(control)),
                Decoded::Refused(refusal) => pending.push(Next::Refused(decode_stage, refusal)),
            });
            decoder.hand_on().await;
            let Some(last) = pending.pop() else {
                // A body with nothing to write (blank lines, or every item filtered out):
                // nothing to wait for.
                ack.nothing_to_do();
                continue;
            };
            // One token per output; the last output takes the delivery's own.
            for next in pending.drain(..) {
                let split = ack.split();
                if !hand_on(next, split, &mut outputs, &mut controls, &dead_letters).await {
                    return;
                }
            }
            if !hand_on(last, ack, &mut outputs, &mut controls, &dead_letters).await {
                return;
            }
        }
    }
}

/// Sends one output of a delivery where it goes. False when the path is stopping.
async fn hand_on<Item: ?Sized, O: Outputs<Item>, Control, H: ControlHandler<Control>>(
    next: Next<O::Encoded, Control>,
    ack: AckToken,
    outputs: &mut O,
    controls: &mut H,
    dead_letters: &DeadLetterSender,
) -> bool {
    match next {
        Next::Encoded(encoded) => outputs.send(encoded, ack).await,
        Next::Control(control) => controls.handle(control, ControlAck::new(ack)).await,
        Next::Refused(stage, refusal) => {
            send_dead_letter(dead_letters, DeadLetter::new(stage, refusal, 0, ack)).await;
            true
        }
    }
}

/// What one delivery became in the encode stage, owned.
enum Next<Encoded, Control> {
    Encoded(Encoded),
    Control(Control),
    Refused(Stage, Refusal),
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::ack::{FinishedDelivery, finished_channel};
    use crate::batch::BatchLimits;
    use crate::rejection::Reason;

    /// A body of lines, each a number; a line that is not one is refused on its own.
    struct Lines;

    impl Decoder for Lines {
        type Item<'a> = u64;
        type Control = Infallible;

        fn stage(&self) -> Stage {
            Stage::Normalise
        }

        fn decode(&mut self, _: &SourceMessage) -> Decoded<u64, Infallible> {
            unreachable!("the encode stage calls decode_each")
        }

        fn decode_each(
            &mut self,
            message: &SourceMessage,
            each: &mut dyn FnMut(Decoded<u64, Infallible>),
        ) {
            for line in message.body.split(|byte| *byte == b'\n') {
                if line.is_empty() {
                    continue;
                }
                match std::str::from_utf8(line)
                    .ok()
                    .and_then(|text| text.parse().ok())
                {
                    Some(number) => each(Decoded::Item(number)),
                    None => each(Decoded::Refused(
                        Refusal::new(Reason::BadLine, "not a number")
                            .of_part(Bytes::copy_from_slice(line)),
                    )),
                }
            }
        }

        fn tap_name(&self) -> &'static str {
            "points"
        }

        fn tap_record(item: &u64) -> serde_json::Value {
            serde_json::json!(item)
        }
    }

    /// Writes everything, remembering it.
    #[derive(Default)]
    struct Recording(Mutex<Vec<u64>>);

    impl Sink for Recording {
        type Encoded = u64;
        type Encoder = ();

        fn stage(&self) -> Stage {
            Stage::Influx
        }

        fn encoder(&self) {}

        async fn write(&self, items: &[&u64]) -> Vec<ItemOutcome> {
            let mut written = self.0.lock().expect("not poisoned");
            written.extend(items.iter().copied());
            vec![ItemOutcome::Delivered; items.len()]
        }
    }

    impl Encode<u64> for Recording {
        fn encode(&self, _: &mut (), item: &u64) -> Result<u64, Refusal> {
            Ok(*item)
        }
    }

    impl ByteSize for u64 {
        fn byte_size(&self) -> usize {
            8
        }
    }

    fn limits() -> PathLimits {
        PathLimits {
            batch: BatchLimits {
                max_items: NonZeroUsize::new(100).expect("non-zero"),
                max_bytes: NonZeroUsize::new(1 << 20).expect("non-zero"),
                linger: Duration::from_millis(5),
            },
            concurrency: NonZeroUsize::new(1).expect("non-zero"),
            write_retry: RetryPolicy::default(),
        }
    }

    fn delivery(tag: u64, body: &'static str, report: &crate::ack::FinishedSender) -> AckToken {
        let message = SourceMessage {
            body: Bytes::from_static(body.as_bytes()),
            ..SourceMessage::default()
        };
        AckToken::for_delivery(tag, message, report.clone())
    }

    #[tokio::test]
    async fn a_body_of_many_items_is_finished_once_every_item_is() {
        let (report, mut finished) = finished_channel();
        let (deliveries_tx, deliveries) = mpsc::channel(4);
        let (letters_tx, mut letters) = mpsc::channel(4);
        let sink = Arc::new(Recording::default());
        let path = tokio::spawn(run_path(
            deliveries,
            Lines,
            Arc::clone(&sink),
            NoControl,
            limits(),
            letters_tx,
        ));
        deliveries_tx
            .send(delivery(1, "1\n2\nnope\n3\n", &report))
            .await
            .expect("path running");
        deliveries_tx
            .send(delivery(2, "\n\n", &report))
            .await
            .expect("path running");
        drop(deliveries_tx);

        let letter = letters.recv().await.expect("the bad line is dead-lettered");
        assert_eq!(letter.body().as_ref(), b"nope", "only the bad line");
        assert!(letter.is_part());
        assert_eq!(letter.reason, Reason::BadLine);
        // The empty body had nothing to wait for; the other waits for its dead letter.
        assert_eq!(
            finished.recv().await,
            Some(FinishedDelivery {
                delivery_tag: 2,
                completed: true
            })
        );
        letter.published();
        path.await.expect("path ends");
        assert_eq!(
            finished.recv().await,
            Some(FinishedDelivery {
                delivery_tag: 1,
                completed: true
            })
        );
        assert_eq!(*sink.0.lock().expect("not poisoned"), vec![1, 2, 3]);
    }
}
