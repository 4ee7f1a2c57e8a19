//! The fan-out of a configured pipeline's source: every point takes each of its routes, a chain
//! of transforms ending in a sink's input. Each sink's encoded point is an output of its own,
//! so the delivery is acked once every sink has written what it got (or dead-lettered it).

use sluice_amqp::sink::AmqpSink;
use sluice_core::ack::AckToken;
use sluice_core::path::{Outputs, SinkInput};
use sluice_core::point::ValidPoint;
use sluice_core::rejection::{Refusal, Stage};
use sluice_influx::{InfluxWriter, Line};
use sluice_normalise::TransformChain;

/// A sink a route ends in. Every sink of a pipeline takes line protocol.
pub(super) enum RouteSink {
    Influx(SinkInput<InfluxWriter>),
    Amqp(SinkInput<AmqpSink>),
}

impl RouteSink {
    pub(super) fn another(&self) -> Self {
        match self {
            RouteSink::Influx(input) => RouteSink::Influx(input.another()),
            RouteSink::Amqp(input) => RouteSink::Amqp(input.another()),
        }
    }

    fn stage(&self) -> Stage {
        match self {
            RouteSink::Influx(input) => input.stage(),
            RouteSink::Amqp(input) => input.stage(),
        }
    }

    fn encode(&mut self, point: &ValidPoint<'_>) -> Result<Line, Refusal> {
        match self {
            RouteSink::Influx(input) => input.encode(point),
            RouteSink::Amqp(input) => input.encode(point),
        }
    }

    async fn send(&mut self, line: Line, ack: AckToken) -> bool {
        match self {
            RouteSink::Influx(input) => input.send(line, ack).await,
            RouteSink::Amqp(input) => input.send(line, ack).await,
        }
    }
}

pub(super) struct Route {
    pub(super) transforms: TransformChain,
    pub(super) sink: RouteSink,
}

/// A source's routes, as the [`Outputs`] of its path.
pub(super) struct Routes(pub(super) Vec<Route>);

impl<'p> Outputs<ValidPoint<'p>> for Routes {
    /// The line, and the index of the route that carries it.
    type Encoded = (usize, Line);

    fn encode(
        &mut self,
        point: &ValidPoint<'p>,
        each: &mut dyn FnMut(Result<(usize, Line), (Stage, Refusal)>),
    ) {
        for (index, route) in self.0.iter_mut().enumerate() {
            let stage = route.sink.stage();
            if route.transforms.is_empty() {
                each(
                    route
                        .sink
                        .encode(point)
                        .map(|line| (index, line))
                        .map_err(|refusal| (stage, refusal)),
                );
                continue;
            }
            match route.transforms.apply(point) {
                Ok(Some(changed)) => each(
                    route
                        .sink
                        .encode(&changed)
                        .map(|line| (index, line))
                        .map_err(|refusal| (stage, refusal)),
                ),
                // Filtered out on this route: nothing to write, nothing to wait for.
                Ok(None) => {}
                // A transform made a point no sink can carry: refused where it happened.
                Err(refusal) => each(Err((Stage::Transform, refusal))),
            }
        }
    }

    async fn send(&mut self, (index, line): (usize, Line), ack: AckToken) -> bool {
        self.0[index].sink.send(line, ack).await
    }
}
