//! The configured pipelines, wired: the standalone ingestion tier.
//!
//! ```text
//!  push inputs ─publish, confirmed─► sluice.intake ─► queue per source ─┐
//!  (graphite, influxdb_write, prometheus_remote_write)                  │
//!  amqp sources ─────────────────────────────────────► their queues ────┤
//!                                                                       ▼
//!        per source: encode stage: decoder ─► routes (transforms ─► sink input) ─┐
//!                                                                                ▼
//!        per sink: batcher ─► sink driver ─► InfluxDB 1/2/3, or RabbitMQ (shared by all sources)
//! ```
//!
//! Each source is an ordinary path (`sluice_core::path`) whose outputs are its routes
//! ([`routes`]): a point goes through each route's transforms to that route's sink, and its
//! delivery is acked when every sink it went to has written it. Each sink runs once, fed by
//! every source that routes to it. Stopping runs front to back as on every path: the sources
//! stop, each encode stage drains into the sinks' inputs and drops them, and each sink ends
//! once the last input is gone and what it holds has an outcome.

mod intake;
mod routes;

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Context;
use sluice_amqp::confirmed::ConfirmedPublisher;
use sluice_amqp::sink::AmqpSink;
use sluice_amqp::source::SourceStatus;
use sluice_core::ack::ControlAck;
use sluice_core::dead_letter::DeadLetterSender;
use sluice_core::path::{ControlHandler, Decoder, SinkInput, run_encode_stage};
use sluice_core::point::ValidPoint;
use sluice_influx::InfluxWriter;
use sluice_normalise::{
    ControlMessage, DiamondDecoder, GraphiteLinesDecoder, JsonDecoder, LineProtocolDecoder,
    Normaliser, TransformChain,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{ConsumeSpec, DecoderSpec, PipelinesSettings, SinkKind, SinkSpec};
use crate::{sources, store_check};
use routes::{Route, RouteSink, Routes};

/// What `/readyz` needs of the tier.
pub struct TierHealth {
    /// One per consumer of every source's queue.
    pub sources: Vec<Arc<SourceStatus>>,
    /// Each `influxdb` sink, by name.
    pub influx: Vec<(String, Arc<InfluxWriter>)>,
    /// Each `amqp` sink's publisher, by name.
    pub publishers: Vec<(String, ConfirmedPublisher)>,
}

/// Starts every sink, then every source's path, onto `tasks`.
pub async fn start(
    settings: PipelinesSettings,
    dead_letters: DeadLetterSender,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<TierHealth> {
    let mut health = TierHealth {
        sources: Vec::new(),
        influx: Vec::new(),
        publishers: Vec::new(),
    };
    let mut sinks = Vec::with_capacity(settings.sinks.len());
    for sink in settings.sinks {
        sinks.push(start_sink(sink, &dead_letters, tasks, &mut health).await?);
    }
    for source in settings.sources {
        if let Some(spec) = source.intake {
            intake::start(&source.name, spec, &shutdown, tasks).await?;
        }
        let Some(consume) = source.consume else {
            continue;
        };
        let routes = Routes(
            consume
                .routes
                .iter()
                .map(|route| Route {
                    transforms: TransformChain::new(route.transforms.clone(), consume.point_limits),
                    sink: sinks[route.sink].another(),
                })
                .collect(),
        );
        start_source(
            &source.name,
            consume,
            routes,
            &dead_letters,
            &shutdown,
            tasks,
            &mut health,
        )?;
    }
    // Only the routes hold the sinks' inputs now: when the last path ends, each sink drains.
    drop(sinks);
    Ok(health)
}

async fn start_sink(
    sink: SinkSpec,
    dead_letters: &DeadLetterSender,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    health: &mut TierHealth,
) -> anyhow::Result<RouteSink> {
    let (input, stages) = match sink.kind {
        SinkKind::Influx {
            settings,
            create_database,
        } => {
            let writer = Arc::new(
                InfluxWriter::new(settings)
                    .with_context(|| format!("setting up the sink {}", sink.name))?,
            );
            let url_setting = format!("sinks.{}.url", sink.name);
            let answered = store_check::first_contact(
                &store_check::Store {
                    name: "InfluxDB",
                    url_setting: &url_setting,
                    path_switch: None,
                },
                writer.ping(),
            )
            .await;
            if create_database && answered {
                // Not fatal: the writer creates the database on a 404.
                if let Err(error) = writer.ensure_database().await {
                    tracing::warn!(sink = %sink.name, %error, "could not create the database yet; writes will retry");
                }
            }
            health.influx.push((sink.name.clone(), Arc::clone(&writer)));
            let (input, stages) =
                SinkInput::start_named(writer, &sink.name, sink.limits, dead_letters.clone());
            (RouteSink::Influx(input), stages)
        }
        SinkKind::Amqp {
            publisher,
            sink: settings,
        } => {
            // Not awaited: until the broker answers, batches are retried like any write.
            let publisher = ConfirmedPublisher::start(publisher);
            health
                .publishers
                .push((sink.name.clone(), publisher.clone()));
            let amqp = Arc::new(AmqpSink::new(publisher, settings));
            let (input, stages) =
                SinkInput::start_named(amqp, &sink.name, sink.limits, dead_letters.clone());
            (RouteSink::Amqp(input), stages)
        }
    };
    tasks.spawn(async move {
        stages.await.context("a sink's stages")?;
        Ok(())
    });
    Ok(input)
}

fn start_source(
    name: &str,
    consume: ConsumeSpec,
    routes: Routes,
    dead_letters: &DeadLetterSender,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    health: &mut TierHealth,
) -> anyhow::Result<()> {
    let consumers = vec![consume.source; usize::from(consume.consumers)];
    let (deliveries, statuses) = sources::start(consumers, shutdown, tasks, None);
    health.sources.extend(statuses);
    let dead_letters = dead_letters.clone();
    let name = name.to_owned();
    match consume.decoder {
        DecoderSpec::Diamond(naming) => {
            let decoder = DiamondDecoder::new(Normaliser::new(naming, consume.point_limits), ());
            spawn_path(tasks, name, deliveries, decoder, routes, dead_letters);
        }
        DecoderSpec::Graphite(templates) => {
            let decoder = GraphiteLinesDecoder::new(templates, [], consume.point_limits);
            spawn_path(tasks, name, deliveries, decoder, routes, dead_letters);
        }
        DecoderSpec::LineProtocol(precision) => {
            let decoder = LineProtocolDecoder::new(precision, consume.point_limits);
            spawn_path(tasks, name, deliveries, decoder, routes, dead_letters);
        }
        DecoderSpec::Json(mapping) => {
            let decoder = JsonDecoder::new(mapping, consume.point_limits);
            spawn_path(tasks, name, deliveries, decoder, routes, dead_letters);
        }
    }
    Ok(())
}

/// Runs one source's path.
fn spawn_path<D>(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    name: String,
    deliveries: tokio::sync::mpsc::Receiver<sluice_core::ack::AckToken>,
    decoder: D,
    routes: Routes,
    dead_letters: DeadLetterSender,
) where
    D: for<'a> Decoder<Item<'a> = ValidPoint<'a>>,
    AckControls: ControlHandler<D::Control>,
{
    tasks.spawn(async move {
        run_encode_stage(deliveries, decoder, routes, AckControls, dead_letters).await;
        tracing::debug!(source = %name, "source path stopped");
        Ok(())
    });
}

/// Control messages on a tier's queue (a Diamond source carries the manager's policy-engine
/// messages): there is no rule stage to act on them, so they are counted and acked.
struct AckControls;

impl ControlHandler<ControlMessage> for AckControls {
    async fn handle(&mut self, _control: ControlMessage, ack: ControlAck) -> bool {
        metrics::counter!("sluice_control_messages_total").increment(1);
        ack.applied();
        true
    }
}

impl ControlHandler<Infallible> for AckControls {
    async fn handle(&mut self, control: Infallible, _ack: ControlAck) -> bool {
        match control {}
    }
}
