//! The paths' decoders: [`DiamondDecoder`] for the metrics path, [`EventsDecoder`] for the events
//! path. Each owns the scratch buffers simd-json parses in: a body is copied once into them, and
//! the original stays intact for the document `_id` and for dead-lettering.

use std::convert::Infallible;
use std::future::Future;

use sluice_core::ack::SourceMessage;
use sluice_core::document::Document;
use sluice_core::path::{Decoded, Decoder};
use sluice_core::point::ValidPoint;
use sluice_core::rejection::{Refusal, Stage};

use crate::{ControlMessage, EventDecoder, MetricSample, NormalisedRef, Normaliser, Scratch};

/// What sees the metrics beside the path as they are decoded: the rule stage. It keeps what it
/// wants synchronously and hands it on when the path awaits [`MetricTap::hand_on`].
pub trait MetricTap: Send + 'static {
    /// The Diamond fields of a metric that became a valid point.
    fn sample(&mut self, sample: &MetricSample<'_>);
    /// The point the metric became.
    fn point(&mut self, point: &ValidPoint<'_>);
    /// Hands on what it kept; a full receiver holds the path.
    fn hand_on(&mut self) -> impl Future<Output = ()> + Send;
}

/// No tap: the metrics path without a rule stage.
impl MetricTap for () {
    fn sample(&mut self, _sample: &MetricSample<'_>) {}
    fn point(&mut self, _point: &ValidPoint<'_>) {}
    fn hand_on(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// Diamond bodies to points that borrow from the decoder's scratch, and the manager's
/// policy-engine control messages.
#[derive(Debug)]
pub struct DiamondDecoder<Tap = ()> {
    normaliser: Normaliser,
    scratch: Scratch,
    tap: Tap,
}

impl<Tap: MetricTap> DiamondDecoder<Tap> {
    pub fn new(normaliser: Normaliser, tap: Tap) -> Self {
        Self {
            normaliser,
            scratch: Scratch::default(),
            tap,
        }
    }
}

impl<Tap: MetricTap> Decoder for DiamondDecoder<Tap> {
    type Item<'a> = ValidPoint<'a>;
    type Control = ControlMessage;

    fn stage(&self) -> Stage {
        Stage::Normalise
    }

    fn decode<'a>(
        &'a mut self,
        message: &SourceMessage,
    ) -> Decoded<ValidPoint<'a>, ControlMessage> {
        let tap = &mut self.tap;
        let normalised =
            self.normaliser
                .normalise_borrowed(&message.body, &mut self.scratch, |sample| {
                    tap.sample(sample)
                });
        match normalised {
            Ok(NormalisedRef::Point(point)) => {
                self.tap.point(&point);
                Decoded::Item(point)
            }
            Ok(NormalisedRef::Control(control)) => Decoded::Control(control),
            Err(error) => Decoded::Refused(Refusal::of(&error)),
        }
    }

    fn tap_name(&self) -> &'static str {
        "points"
    }

    fn tap_record(point: &ValidPoint<'_>) -> serde_json::Value {
        serde_json::to_value(point.to_point()).unwrap_or_default()
    }

    fn hand_on(&mut self) -> impl Future<Output = ()> + Send {
        self.tap.hand_on()
    }
}

/// The manager's event and log bodies to documents.
#[derive(Debug)]
pub struct EventsDecoder {
    decoder: EventDecoder,
    scratch: Vec<u8>,
}

impl EventsDecoder {
    pub fn new(decoder: EventDecoder) -> Self {
        Self {
            decoder,
            scratch: Vec::new(),
        }
    }
}

impl Decoder for EventsDecoder {
    type Item<'a> = Document;
    type Control = Infallible;

    fn stage(&self) -> Stage {
        Stage::Events
    }

    fn decode(&mut self, message: &SourceMessage) -> Decoded<Document, Infallible> {
        self.scratch.clear();
        self.scratch.extend_from_slice(&message.body);
        match self.decoder.decode(&mut self.scratch, message) {
            Ok(document) => Decoded::Item(document),
            Err(error) => Decoded::Refused(Refusal::of(&error)),
        }
    }

    fn tap_name(&self) -> &'static str {
        "documents"
    }

    /// The document as it goes into the bulk body, with where it goes.
    fn tap_record(document: &Document) -> serde_json::Value {
        let source = serde_json::from_slice::<serde_json::Value>(&document.source)
            .unwrap_or_else(|_| String::from_utf8_lossy(&document.source).into());
        serde_json::json!({ "_index": document.index, "_id": document.id, "_source": source })
    }
}
