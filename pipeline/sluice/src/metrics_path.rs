//! The metrics path, wired: RabbitMQ -> normalise -> batch -> InfluxDB, acks after outcomes.
//!
//! ```text
//! run_source ─Incoming─► normalise stage ─Tracked<Line>─► run_batcher ─Vec<..>─► run_sink ─► InfluxDB
//!     ▲                       │ bad input  │ metrics, control messages                   │ rejected lines
//!     │                       ▼            └──► rule stage (sluice_rest::stage)                    ▼
//!   acker ◄── finished deliveries ◄── tokens ◄─────────── dead-letter publisher (confirms)
//! ```
//!
//! The normalise stage decodes, normalises and encodes each body into its line of line protocol
//! (see `run_normalise_stage`); the sink only copies lines into requests. With
//! `metrics.consumers` above 1, several sources feed the one normalise stage. Every arrow is a
//! bounded channel. Shutdown runs front to back: the source stops consuming and
//! closes its output, each stage ends when its input closes, having handed on what it held, and
//! the source's acker ends when the last token has reported.

use std::sync::Arc;

use anyhow::Context;
use sluice_amqp::source::{Incoming, SourceStatus, run_source};
use sluice_core::ack::Tracked;
use sluice_core::batch::{RECEIVE_AT_ONCE, run_batcher};
use sluice_core::dead_letter::{DeadLetter, DeadLetterSender, send_dead_letter};
use sluice_core::outcome::run_sink;
use sluice_influx::{InfluxWriter, Line, LineEncoder, LineWriter};
use sluice_normalise::{NormalisedRef, Normaliser, Scratch};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::MetricsPathSettings;
use sluice_rest::stage::{RuleFeed, RuleInput, metric_event};

/// What the admin endpoint needs to answer `/readyz` for this path.
pub struct MetricsPathHealth {
    /// One per consumer of the metrics queue.
    pub sources: Vec<Arc<SourceStatus>>,
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
    let precision = settings.influx.precision;
    let influx =
        Arc::new(InfluxWriter::new(settings.influx).context("setting up the InfluxDB writer")?);
    if settings.create_database {
        // Not fatal: InfluxDB may come up later, and the writer creates the database on a 404.
        if let Err(error) = influx.ensure_database().await {
            tracing::warn!(%error, "could not create the InfluxDB database yet; writes will retry");
        }
    }

    let (incoming_tx, incoming_rx) = mpsc::channel(usize::from(settings.source.prefetch));
    let (lines_tx, lines_rx) = mpsc::channel(settings.batch.max_items.get());
    let (batches_tx, batches_rx) = mpsc::channel(settings.concurrency.get());

    let mut sources = Vec::new();
    for _ in 0..settings.consumers {
        let status = Arc::new(SourceStatus::default());
        sources.push(Arc::clone(&status));
        let (source, incoming_tx, shutdown) = (
            settings.source.clone(),
            incoming_tx.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            run_source(source, incoming_tx, status, shutdown)
                .await
                .context("metrics source")
        });
    }
    drop(incoming_tx);
    let normaliser = Normaliser::new(settings.naming, settings.point_limits);
    let encoder = LineEncoder::new(precision, settings.point_limits);
    tasks.spawn({
        let dead_letters = dead_letters.clone();
        async move {
            run_normalise_stage(
                incoming_rx,
                lines_tx,
                normaliser,
                encoder,
                rules,
                dead_letters,
            )
            .await;
            Ok(())
        }
    });
    tasks.spawn(async move {
        run_batcher(lines_rx, batches_tx, settings.batch).await;
        Ok(())
    });
    tasks.spawn({
        let influx = Arc::clone(&influx);
        async move {
            run_sink(
                batches_rx,
                Arc::new(LineWriter(influx)),
                settings.concurrency,
                settings.write_retry,
                dead_letters,
            )
            .await;
            Ok(())
        }
    });
    Ok(MetricsPathHealth { sources, influx })
}

/// Decodes, normalises and encodes each delivery. Lines go on to the batcher (and the points of
/// deployments with policies to the rule stage); bad input is dead-lettered with its reason; the
/// manager's policy-engine control messages go to the rule stage, which acks them once acted on
/// (without a rule stage they are acked here).
///
/// The point borrows from the decoded body and is encoded into line protocol here, while the
/// message is still in the cache, so nothing is allocated per message on the way.
async fn run_normalise_stage(
    mut incoming: mpsc::Receiver<Incoming>,
    lines: mpsc::Sender<Tracked<Line>>,
    normaliser: Normaliser,
    mut encoder: LineEncoder,
    rules: Option<RuleFeed>,
    dead_letters: DeadLetterSender,
) {
    let mut scratch = Scratch::default();
    let decoded = metrics::counter!("sluice_decoded_total", "stage" => "normalise");
    // Deliveries are taken off the channel in runs: one wake-up per run, not per message.
    let mut arrived = Vec::with_capacity(RECEIVE_AT_ONCE);
    while incoming.recv_many(&mut arrived, RECEIVE_AT_ONCE).await > 0 {
        for Incoming { ack } in arrived.drain(..) {
            let mut for_rules = None;
            let normalised =
                normaliser.normalise_borrowed(&ack.message().body, &mut scratch, |sample| {
                    if let Some(feed) = &rules
                        && feed.wants(sample.deployment_id)
                    {
                        for_rules = Some(metric_event(sample));
                    }
                });
            let rejected = match normalised {
                Ok(NormalisedRef::Point(point)) => {
                    decoded.increment(1);
                    if let Some(feed) = &rules {
                        // A gone rule stage has logged its error and stops the pipeline.
                        let _ = feed.send_point(for_rules, || point.to_point()).await;
                    }
                    match encoder.encode_line(&point) {
                        Ok(line) => {
                            if lines.send(Tracked::new(line, ack)).await.is_err() {
                                return;
                            }
                            None
                        }
                        // A name InfluxDB 1.x would not read back unchanged (see `sluice_influx::encode`).
                        Err(error) => Some(DeadLetter {
                            stage: "influx",
                            reason: error.reason(),
                            detail: error.to_string(),
                            attempts: 0,
                            ack,
                        }),
                    }
                }
                Ok(NormalisedRef::Control(control)) => {
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
                    None
                }
                Err(error) => Some(DeadLetter {
                    stage: "normalise",
                    reason: error.reason(),
                    detail: error.to_string(),
                    attempts: 0,
                    ack,
                }),
            };
            if let Some(letter) = rejected {
                send_dead_letter(&dead_letters, letter).await;
            }
        }
    }
}
