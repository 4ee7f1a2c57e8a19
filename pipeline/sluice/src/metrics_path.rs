//! The metrics path, wired: RabbitMQ -> Diamond decoder -> InfluxDB, acks after outcomes.
//!
//! ```text
//! sources ─AckToken─► encode stage ──────────────► batcher ─► sink driver ─► InfluxDB
//!  (metrics.consumers)  DiamondDecoder: body -> point  │ bad input            │ rejected lines
//!                       InfluxWriter: point -> line    ▼                      ▼
//!                       │ metrics, control messages   dead-letter publisher (confirms)
//!                       └──► rule stage (sluice_rest::stage)
//! ```
//!
//! The shape is `sluice_core::path`'s; this file only picks its parts: the Diamond decoder, whose
//! tap hands the rule stage the metrics of deployments with policies (and every point when
//! generic rules are loaded), the InfluxDB sink, and the manager's control messages handed to the
//! rule stage.

use std::sync::Arc;

use anyhow::Context;
use sluice_amqp::backlog::Backlog;
use sluice_amqp::source::SourceStatus;
use sluice_core::ack::ControlAck;
use sluice_core::dead_letter::DeadLetterSender;
use sluice_core::path::{ControlHandler, run_path};
use sluice_core::point::ValidPoint;
use sluice_influx::InfluxWriter;
use sluice_normalise::{ControlMessage, DiamondDecoder, MetricSample, MetricTap};
use sluice_rest::stage::{RuleFeed, RuleInput, metric_event};
use sluice_rules::{MetricEvent, RulePoint};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::MetricsPathSettings;
use crate::{sources, store_check};

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
    let influx =
        Arc::new(InfluxWriter::new(settings.influx).context("setting up the InfluxDB writer")?);
    let answered = store_check::first_contact(
        &store_check::Store {
            name: "InfluxDB",
            url_setting: "influx.url",
            path_switch: Some("metrics.enabled"),
        },
        influx.ping(),
    )
    .await;
    if settings.create_database && answered {
        // Not fatal: InfluxDB may come up later, and the writer creates the database on a 404.
        if let Err(error) = influx.ensure_database().await {
            tracing::warn!(%error, "could not create the InfluxDB database yet; writes will retry");
        }
    }

    let consumers = vec![settings.source; usize::from(settings.consumers)];
    // The rule stage holds its host sweeps until what queued up while sluice was down has
    // reached it: the sources tell when (from the queue's count at the start, see
    // `sluice_amqp::backlog`), and the notice goes through the rule stage's input, behind the
    // backlog itself.
    let backlog = rules.as_ref().map(|_| Arc::new(Backlog::default()));
    let (deliveries, statuses) = sources::start(consumers, &shutdown, tasks, backlog.as_ref());
    if let (Some(backlog), Some(feed)) = (backlog, rules.clone()) {
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            // A backlog never drained (see `Backlog::give_up`) leaves it to the grace; the feed
            // is let go of at a stop, since the rule stage ends when every feed is gone.
            tokio::select! {
                () = backlog.drained() => {
                    tracing::info!("the metrics queued before the start have reached the rules");
                    feed.send(RuleInput::BacklogDrained).await;
                }
                () = shutdown.cancelled() => {}
            }
            Ok(())
        });
    }
    let decoder = DiamondDecoder::new(
        sluice_normalise::Normaliser::new(settings.naming, settings.point_limits),
        RuleTap::new(rules.clone()),
    );
    let sink = Arc::clone(&influx);
    let limits = settings.limits;
    tasks.spawn(async move {
        let controls = ManagerControls { rules };
        run_path(deliveries, decoder, sink, controls, limits, dead_letters).await;
        Ok(())
    });
    Ok(MetricsPathHealth {
        sources: statuses,
        influx,
    })
}

/// Hands the rule stage what it wants of each decoded metric: the Diamond metric when its
/// deployment has policies loaded, the point when generic rules are loaded. A metric's delivery
/// does not wait for the rules (see `sluice_rest::stage`).
struct RuleTap {
    feed: Option<RuleFeed>,
    metric: Option<MetricEvent>,
    point: Option<sluice_core::point::Point>,
}

impl RuleTap {
    fn new(feed: Option<RuleFeed>) -> Self {
        Self {
            feed,
            metric: None,
            point: None,
        }
    }
}

impl MetricTap for RuleTap {
    fn sample(&mut self, sample: &MetricSample<'_>) {
        if let Some(feed) = &self.feed
            && feed.wants(sample.deployment_id)
        {
            self.metric = Some(metric_event(sample));
        }
    }

    fn point(&mut self, point: &ValidPoint<'_>) {
        if let Some(feed) = &self.feed
            && feed.wants_points()
        {
            self.point = Some(point.to_point());
        }
    }

    async fn hand_on(&mut self) {
        let Some(feed) = &self.feed else {
            return;
        };
        let point = RulePoint {
            metric: self.metric.take(),
            point: self.point.take(),
        };
        // A gone rule stage has logged its error and stops the pipeline.
        let _ = feed.send_point(point).await;
    }
}

/// The manager's policy-engine control messages: the rule stage acks each once acted on;
/// without a rule stage there is nothing to act on, and they are acked here.
struct ManagerControls {
    rules: Option<RuleFeed>,
}

impl ControlHandler<ControlMessage> for ManagerControls {
    async fn handle(&mut self, control: ControlMessage, ack: ControlAck) -> bool {
        metrics::counter!("sluice_control_messages_total").increment(1);
        tracing::info!(
            deployment_id = %control.deployment_id,
            state = ?control.state,
            "policy-engine control message seen on the metrics exchange"
        );
        match &self.rules {
            Some(feed) => {
                feed.send(RuleInput::Control {
                    message: control,
                    ack,
                })
                .await
            }
            None => {
                ack.applied();
                true
            }
        }
    }
}
