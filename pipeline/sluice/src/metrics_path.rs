//! The metrics path, wired: RabbitMQ -> normalise -> batch -> InfluxDB, acks after outcomes.
//!
//! ```text
//! run_source ─Incoming─► normalise stage ─Tracked<Point>─► run_batcher ─Vec<..>─► run_sink ─► InfluxDB
//!     ▲                       │ bad input  │ metrics, control messages                   │ rejected lines
//!     │                       ▼            └──► rule stage (rules_path)                    ▼
//!   acker ◄── finished deliveries ◄── tokens ◄─────────── dead-letter publisher (confirms)
//! ```
//!
//! Every arrow is a bounded channel. Shutdown runs front to back: the source stops consuming and
//! closes its output, each stage ends when its input closes, having handed on what it held, and
//! the source's acker ends when the last token has reported.

use std::sync::Arc;

use anyhow::Context;
use sluice_amqp::source::{Incoming, SourceStatus, run_source};
use sluice_core::ack::Tracked;
use sluice_core::batch::run_batcher;
use sluice_core::dead_letter::{DeadLetter, DeadLetterSender, send_dead_letter};
use sluice_core::outcome::run_sink;
use sluice_core::point::Point;
use sluice_influx::InfluxWriter;
use sluice_normalise::{Normalised, Normaliser};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::MetricsPathSettings;
use crate::rules_path::{RuleFeed, RuleInput, metric_event};

/// What the admin endpoint needs to answer `/readyz` for this path.
pub struct MetricsPathHealth {
    pub source: Arc<SourceStatus>,
    pub influx: Arc<InfluxWriter>,
}

/// Starts every stage of the metrics path onto `tasks`.
/// `rules` is the rule stage's feed, when it runs.
pub async fn start(
    settings: MetricsPathSettings,
    dead_letters: DeadLetterSender,
    rules: Option<RuleFeed>,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<MetricsPathHealth> {
    let influx =
        Arc::new(InfluxWriter::new(settings.influx).context("setting up the InfluxDB writer")?);
    if settings.create_database {
        // Not fatal: InfluxDB may come up later, and the writer creates the database on a 404.
        if let Err(error) = influx.ensure_database().await {
            tracing::warn!(%error, "could not create the InfluxDB database yet; writes will retry");
        }
    }

    let source_status = Arc::new(SourceStatus::default());
    let (incoming_tx, incoming_rx) = mpsc::channel(usize::from(settings.source.prefetch));
    let (points_tx, points_rx) = mpsc::channel(settings.batch.max_items.get());
    let (batches_tx, batches_rx) = mpsc::channel(settings.concurrency.get());

    tasks.spawn({
        let status = Arc::clone(&source_status);
        async move {
            run_source(settings.source, incoming_tx, status, shutdown)
                .await
                .context("metrics source")
        }
    });
    let normaliser = Normaliser::new(settings.naming, settings.point_limits);
    tasks.spawn({
        let dead_letters = dead_letters.clone();
        async move {
            run_normalise_stage(incoming_rx, points_tx, normaliser, rules, dead_letters).await;
            Ok(())
        }
    });
    tasks.spawn(async move {
        run_batcher(points_rx, batches_tx, settings.batch).await;
        Ok(())
    });
    tasks.spawn({
        let influx = Arc::clone(&influx);
        async move {
            run_sink(
                batches_rx,
                influx,
                settings.concurrency,
                settings.write_retry,
                dead_letters,
            )
            .await;
            Ok(())
        }
    });
    Ok(MetricsPathHealth {
        source: source_status,
        influx,
    })
}

/// Decodes and normalises each delivery. Points go on to the batcher (and, for deployments
/// with policies, to the rule stage); bad input is dead-lettered with its reason; the manager's
/// policy-engine control messages go to the rule stage, which acks them once acted on (without
/// a rule stage they are acked here).
async fn run_normalise_stage(
    mut incoming: mpsc::Receiver<Incoming>,
    points: mpsc::Sender<Tracked<Point>>,
    normaliser: Normaliser,
    rules: Option<RuleFeed>,
    dead_letters: DeadLetterSender,
) {
    // simd-json parses in place, so each body is copied once into this reused scratch buffer;
    // the original stays intact for dead-lettering.
    let mut scratch = Vec::new();
    while let Some(Incoming { ack }) = incoming.recv().await {
        scratch.clear();
        scratch.extend_from_slice(&ack.message().body);
        let mut for_rules = None;
        let normalised = normaliser.normalise_observed(&mut scratch, |sample| {
            if let Some(feed) = &rules
                && feed.wants(sample.deployment_id)
            {
                for_rules = Some(metric_event(sample));
            }
        });
        match normalised {
            Ok(Normalised::Point(point)) => {
                metrics::counter!("sluice_decoded_total", "stage" => "normalise").increment(1);
                if let Some(feed) = &rules {
                    // A gone rule stage has logged its error and stops the pipeline.
                    if let Some(event) = for_rules {
                        let _ = feed.send(RuleInput::Metric(event)).await;
                    }
                    if feed.wants_points() {
                        let _ = feed.send(RuleInput::Point(point.clone())).await;
                    }
                }
                if points.send(Tracked::new(point, ack)).await.is_err() {
                    return;
                }
            }
            Ok(Normalised::Control(control)) => {
                metrics::counter!("sluice_control_messages_total").increment(1);
                tracing::info!(
                    deployment_id = %control.deployment_id,
                    state = ?control.state,
                    "policy-engine control message seen on the metrics exchange"
                );
                match &rules {
                    Some(feed) => {
                        let input = RuleInput::Control {
                            message: control,
                            ack,
                        };
                        if !feed.send(input).await {
                            return;
                        }
                    }
                    None => ack.delivered(),
                }
            }
            Err(error) => {
                let letter = DeadLetter {
                    stage: "normalise",
                    reason: error.reason(),
                    detail: error.to_string(),
                    attempts: 0,
                    ack,
                };
                send_dead_letter(&dead_letters, letter).await;
            }
        }
    }
}
