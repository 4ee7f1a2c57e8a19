//! `sluice run`: starts the pipeline's parts, reloads the configuration on SIGHUP (and, with
//! `--watch-config`, when the file changes), and turns SIGTERM/Ctrl-C into a
//! drain-flush-ack-exit within the configured deadline.
//!
//! ```text
//!             ┌─ metrics part:   metrics path ─► rule stage ─► event publisher
//! run (here) ─┼─ events part:    events path
//!             ├─ pipelines part: the configured sources, transforms and sinks (`tier`)
//!             └─ dead-letter publisher, fed by every part          admin endpoint (health: watch)
//! ```
//!
//! **Reload.** The new configuration is loaded and validated in full, rule files included,
//! before anything is touched. An invalid one is refused with every error logged and counted,
//! and the pipeline goes on as it was. A valid one restarts only the parts whose settings
//! changed (`config::Fingerprints`): such a part is stopped exactly as at SIGTERM (its consumers
//! cancelled, what they had received written or dead-lettered, then acked), then started with
//! the new settings. What arrives meanwhile waits in the broker's durable queues, so nothing is
//! lost or acked early; the rule stage carries its state across in its checkpoint. The rule
//! stage restarts with the metrics path, which feeds it. `[admin]` changes wait for the next
//! start, since the endpoint is how a reload is watched.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use sluice_amqp::dead_letter::{DeadLetterSettings, run_dead_letter_publisher};
use sluice_core::dead_letter::DeadLetterSender;
use sluice_rest::stage::{RuleActivity, RuleFeed};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Health};
use crate::config::{
    ConfigErrors, EventsPathSettings, Fingerprints, MetricsPathSettings, PipelinesSettings,
    RawConfig, RulesSettings, Settings,
};
use crate::events_path::{self, EventsPathHealth};
use crate::metrics_path::{self, MetricsPathHealth};
use crate::rule_stage;
use crate::status::recent::RecentLogs;
use crate::status::{self, StatusSources};
use crate::tier::{self, TierHealth};

/// Dead letters waiting for the publisher; rejecting stages wait when it is full.
const DEAD_LETTER_CHANNEL_CAPACITY: usize = 1024;

/// How often `--watch-config` reads the file. Reading beats change notifications here: editors
/// save by renaming a new file into place and Kubernetes swaps a ConfigMap's symlink, both of
/// which notifications follow badly, and one small read a second costs nothing.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

pub async fn run(
    config_file: Option<PathBuf>,
    watch_config: bool,
    recent_logs: RecentLogs,
) -> anyhow::Result<()> {
    let (raw, settings) = load(config_file.as_deref()).map_err(|errors| anyhow!("{errors}"))?;
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    let (prometheus, status_registry) = status::install_recorders()?;
    tokio::spawn({
        let prometheus = prometheus.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                prometheus.run_upkeep();
            }
        }
    });

    // Listed by `sluice tap` from the start, not only after the first refusal.
    sluice_core::dead_letter::open_tap();
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signals(shutdown.clone()));
    // One waiting request is enough: a reload reads the file as it is when the reload runs.
    let (reload_tx, mut reload_rx) = mpsc::channel(1);
    tokio::spawn(reload_on_sighup(reload_tx.clone()));
    if watch_config {
        match &config_file {
            Some(file) => {
                tokio::spawn(reload_on_change(file.clone(), reload_tx));
            }
            None => tracing::warn!("--watch-config needs --config: there is no file to watch"),
        }
    }

    crate::store_check::first_broker_contact(&settings.dead_letter.url).await;
    let admin_listen = settings.admin_listen;
    let mut pipeline = Pipeline::start(raw, settings, &shutdown).await?;

    // The admin endpoint outlives the drain, so /metrics can be scraped while it runs.
    let admin_stop = CancellationToken::new();
    if let Some(address) = admin_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding the admin endpoint to {address}"))?;
        tracing::info!(%address, "admin endpoint: / (status page) /status /metrics /healthz /readyz /tap");
        let status =
            StatusSources::start(status_registry, recent_logs, pipeline.health.subscribe());
        tokio::spawn(admin::serve(
            listener,
            prometheus,
            pipeline.health.subscribe(),
            status,
            admin_stop.clone(),
        ));
    }

    let mut first_error = None;
    while !pipeline.is_empty() {
        tokio::select! {
            () = shutdown.cancelled() => break,
            (part, ended) = pipeline.next_part_end() => {
                if let Err(error) = ended {
                    tracing::error!(part, "{error:#}");
                    first_error = Some(error);
                    break;
                }
            }
            Some(()) = reload_rx.recv() => {
                if let Err(error) = pipeline.reload(config_file.as_deref(), &shutdown).await {
                    first_error = Some(error);
                    break;
                }
            }
        }
    }
    let deadline = pipeline.shutdown_deadline;
    tracing::info!(?deadline, "stopping: draining, flushing and acking");
    shutdown.cancel();
    let stopped = tokio::time::timeout(deadline, pipeline.stop())
        .await
        .unwrap_or_else(|_| {
            Err(anyhow!(
                "the shutdown deadline of {deadline:?} passed before everything was written; \
                 unacked deliveries will be redelivered by the broker"
            ))
        });
    admin_stop.cancel();
    first_error.map_or(stopped, Err)?;
    tracing::info!("stopped cleanly");
    Ok(())
}

fn load(file: Option<&Path>) -> Result<(RawConfig, Settings), ConfigErrors> {
    let raw = RawConfig::load(file)?;
    let settings = raw.validate()?;
    Ok((raw, settings))
}

/// The running parts and what they were started from.
struct Pipeline {
    /// The configuration last applied, for starting a part again when its new settings fail.
    raw: RawConfig,
    /// What each part runs; `admin` is what the endpoint was started with.
    running: Fingerprints,
    metrics: Option<Part>,
    events: Option<Part>,
    pipelines: Option<Part>,
    dead_letters: DeadLetterPublisher,
    health: watch::Sender<Health>,
    shutdown_deadline: Duration,
}

impl Pipeline {
    async fn start(
        raw: RawConfig,
        mut settings: Settings,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Pipeline> {
        let mut pipeline = Pipeline {
            running: raw.fingerprints(),
            raw,
            metrics: None,
            events: None,
            pipelines: None,
            dead_letters: DeadLetterPublisher::start(settings.dead_letter.clone()),
            health: watch::channel(Health {
                shape: Arc::new(status::shape(&settings)),
                ..Health::default()
            })
            .0,
            shutdown_deadline: settings.shutdown_deadline,
        };
        pipeline.start_metrics(&mut settings, shutdown).await?;
        pipeline.start_events(&mut settings, shutdown).await?;
        pipeline.start_pipelines(&mut settings, shutdown).await?;
        Ok(pipeline)
    }

    fn is_empty(&self) -> bool {
        self.metrics.is_none() && self.events.is_none() && self.pipelines.is_none()
    }

    /// Waits for a part to end by itself (a fatal error, or every source gone), and forgets it.
    async fn next_part_end(&mut self) -> (&'static str, anyhow::Result<()>) {
        tokio::select! {
            ended = Part::ended(&mut self.metrics) => ("metrics", ended),
            ended = Part::ended(&mut self.events) => ("events", ended),
            ended = Part::ended(&mut self.pipelines) => ("pipelines", ended),
        }
    }

    async fn start_metrics(
        &mut self,
        settings: &mut Settings,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let started = metrics_part(
            settings.metrics.take(),
            settings.rules.take(),
            &self.dead_letters.sender,
            shutdown,
            self.shutdown_deadline,
        )
        .await?;
        let (part, health, rules) = match started {
            Some((part, health, rules)) => (Some(part), Some(health), rules),
            None => (None, None, None),
        };
        self.metrics = part;
        self.health.send_modify(|running| {
            running.metrics = health;
            running.rules = rules;
        });
        Ok(())
    }

    async fn start_events(
        &mut self,
        settings: &mut Settings,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let started =
            events_part(settings.events.take(), &self.dead_letters.sender, shutdown).await?;
        let (part, health) = started.unzip();
        self.events = part;
        self.health.send_modify(|running| running.events = health);
        Ok(())
    }

    async fn start_pipelines(
        &mut self,
        settings: &mut Settings,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let started = pipelines_part(
            settings.pipelines.take(),
            &self.dead_letters.sender,
            shutdown,
        )
        .await?;
        let (part, health) = started.unzip();
        self.pipelines = part;
        self.health
            .send_modify(|running| running.pipelines = health);
        Ok(())
    }

    /// Applies the configuration `file` holds now. Answers an error only when a part can run
    /// neither its new settings nor its old ones, which stops sluice.
    async fn reload(
        &mut self,
        file: Option<&Path>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        tracing::info!("reloading the configuration");
        let (raw, mut settings) = match load(file).and_then(check_rule_files) {
            Ok(loaded) => loaded,
            Err(errors) => {
                for error in &errors.0 {
                    tracing::error!(field = %error.field, "reload refused: {}", error.message);
                }
                tracing::error!(
                    errors = errors.0.len(),
                    "the new configuration is invalid; sluice goes on with the one it runs"
                );
                counted_reload("refused");
                return Ok(());
            }
        };
        let wanted = raw.fingerprints();
        if wanted.admin != self.running.admin {
            tracing::warn!("[admin] changes take effect at the next start");
        }
        let new_publisher = wanted.dead_letter != self.running.dead_letter;
        let restart_metrics = new_publisher || wanted.metrics != self.running.metrics;
        let restart_events = new_publisher || wanted.events != self.running.events;
        let restart_pipelines = new_publisher || wanted.pipelines != self.running.pipelines;
        if !restart_metrics && !restart_events && !restart_pipelines {
            tracing::info!("no part's settings changed; nothing restarts");
            counted_reload("unchanged");
            return Ok(());
        }
        for warning in &settings.warnings {
            tracing::warn!("{warning}");
        }
        self.shutdown_deadline = settings.shutdown_deadline;
        let shape = Arc::new(status::shape(&settings));

        // Stopped before the publisher is replaced, so that what they reject while draining
        // still goes to the dead-letter exchange they were started with.
        if restart_metrics {
            stop_part("metrics", self.metrics.take(), self.shutdown_deadline).await;
        }
        if restart_events {
            stop_part("events", self.events.take(), self.shutdown_deadline).await;
        }
        if restart_pipelines {
            stop_part("pipelines", self.pipelines.take(), self.shutdown_deadline).await;
        }
        if new_publisher {
            let replaced = std::mem::replace(
                &mut self.dead_letters,
                DeadLetterPublisher::start(settings.dead_letter.clone()),
            );
            replaced.stop().await;
            self.running.dead_letter = wanted.dead_letter;
        }

        let previous = std::mem::replace(&mut self.raw, raw);
        let mut fell_back = false;
        if restart_metrics {
            match self.start_metrics(&mut settings, shutdown).await {
                Ok(()) => self.running.metrics = wanted.metrics,
                Err(error) => {
                    tracing::error!(
                        "{error:#}: the metrics path goes back to its previous settings"
                    );
                    fell_back = true;
                    let mut old = previous.validate().map_err(|errors| anyhow!("{errors}"))?;
                    self.start_metrics(&mut old, shutdown)
                        .await
                        .context("starting the metrics path again with its previous settings")?;
                }
            }
        }
        if restart_events {
            match self.start_events(&mut settings, shutdown).await {
                Ok(()) => self.running.events = wanted.events,
                Err(error) => {
                    tracing::error!(
                        "{error:#}: the events path goes back to its previous settings"
                    );
                    fell_back = true;
                    let mut old = previous.validate().map_err(|errors| anyhow!("{errors}"))?;
                    self.start_events(&mut old, shutdown)
                        .await
                        .context("starting the events path again with its previous settings")?;
                }
            }
        }
        if restart_pipelines {
            match self.start_pipelines(&mut settings, shutdown).await {
                Ok(()) => self.running.pipelines = wanted.pipelines,
                Err(error) => {
                    tracing::error!("{error:#}: the pipelines go back to their previous settings");
                    fell_back = true;
                    let mut old = previous.validate().map_err(|errors| anyhow!("{errors}"))?;
                    self.start_pipelines(&mut old, shutdown)
                        .await
                        .context("starting the pipelines again with their previous settings")?;
                }
            }
        }
        if fell_back {
            counted_reload("failed");
        } else {
            self.health.send_modify(|running| running.shape = shape);
            tracing::info!(
                metrics_restarted = restart_metrics,
                events_restarted = restart_events,
                pipelines_restarted = restart_pipelines,
                dead_letter_publisher_restarted = new_publisher,
                "configuration reloaded"
            );
            counted_reload("applied");
        }
        Ok(())
    }

    /// Drains every part, then the dead-letter publisher; answers the first error.
    async fn stop(self) -> anyhow::Result<()> {
        let mut first_error = None;
        for part in [self.metrics, self.events, self.pipelines]
            .into_iter()
            .flatten()
        {
            part.stop.cancel();
            if let Err(error) = part
                .done
                .await
                .map_err(anyhow::Error::from)
                .and_then(|ended| ended)
            {
                first_error.get_or_insert(error);
            }
        }
        self.dead_letters.stop().await;
        first_error.map_or(Ok(()), Err)
    }
}

/// Validates the rule files too: a reload must not stop the metrics path for files its new
/// rule stage would then refuse.
fn check_rule_files(
    (raw, settings): (RawConfig, Settings),
) -> Result<(RawConfig, Settings), ConfigErrors> {
    let files = settings
        .rules
        .as_ref()
        .map(|rules| rules.stage.rule_files.as_slice())
        .unwrap_or_default();
    match sluice_rest::stage::load_rule_files(files) {
        Ok(_) => Ok((raw, settings)),
        Err(error) => Err(ConfigErrors(vec![crate::config::ConfigError {
            field: "rules.files".into(),
            message: format!("{error:#}"),
        }])),
    }
}

fn counted_reload(outcome: &'static str) {
    metrics::counter!("sluice_config_reloads_total", "outcome" => outcome).increment(1);
}

/// A part of the pipeline: tasks that run, fail and stop together.
struct Part {
    stop: CancellationToken,
    /// Drives the part's tasks: answers the first error once every task has ended, having
    /// cancelled `stop` at that error so that the others drain.
    done: JoinHandle<anyhow::Result<()>>,
}

impl Part {
    fn spawn(
        name: &'static str,
        stop: CancellationToken,
        mut tasks: JoinSet<anyhow::Result<()>>,
    ) -> Part {
        metrics::counter!("sluice_path_starts_total", "path" => name).increment(1);
        tracing::info!(path = name, "started");
        let cancel_on_error = stop.clone();
        let done = tokio::spawn(async move {
            let mut first_error = None;
            while let Some(joined) = tasks.join_next().await {
                let ended = joined.map_err(anyhow::Error::from).and_then(|ended| ended);
                if let Err(error) = ended {
                    cancel_on_error.cancel();
                    match first_error {
                        None => first_error = Some(error),
                        Some(_) => tracing::error!(path = name, "{error:#}"),
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        });
        Part { stop, done }
    }

    /// What `part` ended with; pending while there is none or it runs.
    async fn ended(part: &mut Option<Part>) -> anyhow::Result<()> {
        let Some(running) = part.as_mut() else {
            return std::future::pending().await;
        };
        let ended = (&mut running.done).await;
        *part = None;
        ended.map_err(anyhow::Error::from).and_then(|ended| ended)
    }
}

/// Stops a part for a reload, as SIGTERM would stop it, within `deadline`.
async fn stop_part(name: &'static str, part: Option<Part>, deadline: Duration) {
    let Some(mut part) = part else {
        return;
    };
    part.stop.cancel();
    match tokio::time::timeout(deadline, &mut part.done).await {
        Ok(Ok(Ok(()))) => tracing::info!(path = name, "stopped for the reload"),
        Ok(Ok(Err(error))) => tracing::warn!(path = name, "stopped for the reload: {error:#}"),
        Ok(Err(error)) => tracing::warn!(path = name, %error, "stopped for the reload"),
        Err(_) => {
            // Dropping its tasks closes their channels: the broker takes back what they held.
            part.done.abort();
            tracing::warn!(
                path = name,
                ?deadline,
                "not drained within the shutdown deadline; its unacked deliveries go back to the broker"
            );
        }
    }
}

/// A started metrics part, what `/readyz` asks of it, and its rule stage's activity.
type MetricsPart = (Part, Arc<MetricsPathHealth>, Option<Arc<RuleActivity>>);

/// The metrics path with its rule stage (and the stage's activity, for the status page);
/// `None` when the metrics path is off.
async fn metrics_part(
    metrics: Option<MetricsPathSettings>,
    rules: Option<RulesSettings>,
    dead_letters: &DeadLetterSender,
    shutdown: &CancellationToken,
    shutdown_deadline: Duration,
) -> anyhow::Result<Option<MetricsPart>> {
    let Some(metrics) = metrics else {
        return Ok(None);
    };
    let stop = shutdown.child_token();
    let mut tasks = JoinSet::new();
    let rule_feed = match rules {
        Some(rules) => Some(
            rule_stage::start(
                rules,
                dead_letters.clone(),
                // Leaves time for the final checkpoint within the shutdown deadline.
                shutdown_deadline.mul_f64(0.75),
                &mut tasks,
            )
            .await?,
        ),
        None => None,
    };
    let rule_activity = rule_feed.as_ref().map(RuleFeed::activity);
    let health = metrics_path::start(
        metrics,
        dead_letters.clone(),
        rule_feed,
        stop.clone(),
        &mut tasks,
    )
    .await?;
    Ok(Some((
        Part::spawn("metrics", stop, tasks),
        Arc::new(health),
        rule_activity,
    )))
}

/// The events path; `None` when it is off.
async fn events_part(
    events: Option<EventsPathSettings>,
    dead_letters: &DeadLetterSender,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<(Part, Arc<EventsPathHealth>)>> {
    let Some(events) = events else {
        return Ok(None);
    };
    let stop = shutdown.child_token();
    let mut tasks = JoinSet::new();
    let health = events_path::start(events, dead_letters.clone(), stop.clone(), &mut tasks).await?;
    Ok(Some((Part::spawn("events", stop, tasks), Arc::new(health))))
}

/// The configured pipelines; `None` when there are none.
async fn pipelines_part(
    pipelines: Option<PipelinesSettings>,
    dead_letters: &DeadLetterSender,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<(Part, Arc<TierHealth>)>> {
    let Some(pipelines) = pipelines else {
        return Ok(None);
    };
    let stop = shutdown.child_token();
    let mut tasks = JoinSet::new();
    let health = tier::start(pipelines, dead_letters.clone(), stop.clone(), &mut tasks).await?;
    Ok(Some((
        Part::spawn("pipelines", stop, tasks),
        Arc::new(health),
    )))
}

struct DeadLetterPublisher {
    sender: DeadLetterSender,
    publisher: JoinHandle<()>,
}

impl DeadLetterPublisher {
    fn start(settings: DeadLetterSettings) -> DeadLetterPublisher {
        let (sender, letters) = mpsc::channel(DEAD_LETTER_CHANNEL_CAPACITY);
        DeadLetterPublisher {
            sender,
            publisher: tokio::spawn(run_dead_letter_publisher(settings, letters)),
        }
    }

    /// Waits for the publisher to settle what it holds; it ends once the stages that reject
    /// into it have ended and dropped their senders.
    async fn stop(self) {
        drop(self.sender);
        let _ = self.publisher.await;
    }
}

/// The first SIGTERM or Ctrl-C starts a clean stop; a second one exits at once.
async fn stop_on_signals(shutdown: CancellationToken) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                return;
            }
        };
    for signals_seen in 1.. {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        if signals_seen > 1 {
            tracing::warn!("second stop signal: exiting without draining");
            std::process::exit(130);
        }
        shutdown.cancel();
    }
}

async fn reload_on_sighup(requests: mpsc::Sender<()>) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGHUP: no reloads");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        // Full: a reload is already waiting, and it will read the file as it is then.
        let _ = requests.try_send(());
    }
}

/// Asks for a reload whenever the file's contents change.
async fn reload_on_change(file: PathBuf, requests: mpsc::Sender<()>) {
    let mut seen = tokio::fs::read(&file).await.ok();
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        // A file being replaced may be missing for a moment; that is no change to act on.
        let Ok(now) = tokio::fs::read(&file).await else {
            continue;
        };
        if seen.as_ref() != Some(&now) {
            tracing::info!(file = %file.display(), "the configuration file changed");
            seen = Some(now);
            if requests.send(()).await.is_err() {
                return;
            }
        }
    }
}
