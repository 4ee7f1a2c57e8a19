//! The rule stage: the manager's policies and the generic rules on sluice's own metrics stream,
//! triggering workflows through the manager's REST API (the [`Executor`]), with durable state.
//!
//! ```text
//! metrics normalise stage ─RuleInput─► rule stage ──Action──► Executor (REST: restraints, retries)
//!   (RuleFeed: metrics of loaded        │  engines (RuleEngine, pure)   │
//!    deployments, every point with      │  sweep every 5 s              ▼
//!    generic rules, manager-riemann     │  checkpoint ─► state_dir/rules.json
//!    control messages)                  └── OutcomeEvents, as JSON ─► events channel (the binary's publisher)
//! ```
//!
//! **Engines.** The stage drives every engine through [`RuleEngine`]: the manager's policies
//! ([`Engine`], one) and one [`GenericEngine`] per generic rules file, in that order. Each
//! metric reaches them all as one [`RulePoint`]; each is swept on one clock, asked for the
//! [`Restraints`] of the actions it emitted (a policy's own; none for generic rules, whose own
//! `min_interval` applies in their engine), and saved into one checkpoint.
//!
//! **Control.** A `start` control message reads `<config_path>/groups`, loads its policies with
//! fresh state, writes the checkpoint, then creates the empty `<config_path>/ok` the manager
//! waits for, and only then is acked. A groups file that cannot be read or parsed is
//! dead-lettered with its reason (the manager then fails the deployment's creation, as it would
//! with its own engine). `stop` unloads the deployment and drops its state.
//!
//! **Metrics.** The metrics path hands on only metrics of loaded deployments (it asks
//! [`RuleFeed::wants`]), so a manager with no policies pays nothing; with generic rule files
//! (`rules.files`, the standalone tier) it also hands on every point
//! ([`RuleFeed::wants_points`]); [`RuleFeed::send_point`] hands on both parts of a metric in
//! one [`RulePoint`].
//! Generic rules' actions run without the manager's restraints, but with the executor's
//! de-duplication and retries. A metric's delivery does not wait for the rules: what the rules
//! make of it is in the next checkpoint (every `rules.checkpoint_interval`, and at a clean
//! stop), so a crash loses at most that much of the rules' view, never a trigger that was
//! decided (see below).
//!
//! **Actions.** Each action an engine emits is announced with a `policy` event, then queued
//! (bounded) and run by the executor, at most `max_actions_in_flight` at once. An action stays in
//! the checkpoint from the moment it is decided until the executor reports its outcome, so a
//! crash in between resumes it at the next start. Both moments write the checkpoint at once,
//! before the action starts and as soon as it ends, so the trigger's state that decided it is
//! on disk before the manager hears of it, and a restart neither fires the breach again nor
//! (but for a crash during the request itself) repeats a request that was answered. A resumed
//! action skips the interval restraint (its own record may already be in the restored interval
//! state) but not the node check, and the manager's `existing_running_execution_error` makes a
//! repeat of a still-running workflow harmless.
//!
//! **Events.** The `policy` events and the executor's outcome events ([`OutcomeEvent`]) are
//! handed, as their JSON bodies, to the `events` channel given to [`start`]; the binary connects
//! it to its event publisher (this crate does not speak AMQP).
//!
//! **Restarts.** The checkpoint (module `checkpoint`) carries every engine's state (with each
//! deployment's groups), the executor's interval records and the pending actions. After a start,
//! the host sweeps wait until the metrics that queued up while sluice was down have arrived
//! ([`RuleInput::BacklogDrained`]), so a host that kept reporting is not taken for a failed one,
//! and at most `startup_grace`. The queue hands out its backlog before anything sent after the
//! start, so until then every series the engines know is one restored from the checkpoint or
//! seen only in the backlog, which is what needs holding; once it has drained, every series is
//! judged by its own ttl. With nothing queued (a fresh start), the first sweep judges at once.
//!
//! **Activity.** The loaded deployments and the last decided actions with their outcomes are
//! kept in a [`RuleActivity`] ([`RuleFeed::activity`]) for the binary's status page.
//!
//! Modules: `settings` ([`RuleStageSettings`]), `rule_files` ([`load_rule_files`]), `control`
//! (the manager-riemann messages), `checkpoint`, `activity` ([`RuleActivity`]).

mod activity;
mod checkpoint;
mod control;
mod rule_files;
mod settings;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use sluice_core::ack::ControlAck;
use sluice_core::action::{Action, Restraints};
use sluice_core::dead_letter::DeadLetterSender;
use sluice_normalise::{ControlMessage, MetricSample};
use sluice_rules::{
    Engine, GenericEngine, MetricEvent, RuleEngine, RulePoint, RuleRestoreError, RuleStates,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

pub use activity::{
    LoadedDeployment, RECENT_TRIGGERS, RuleActivity, RuleActivitySnapshot, TriggerSeen,
};
pub use rule_files::{RuleFileError, load_rule_files};
pub use settings::RuleStageSettings;

use crate::error::RestError;
use crate::executor::{Execution, Executor};
use crate::outcome_events::{OutcomeEvent, policy_event};
use checkpoint::{CHECKPOINT_FILE, Checkpoint, PendingAction};

/// The `outcome` of an action dropped because the action queue was full.
const QUEUE_FULL_OUTCOME: &str = "dropped_queue_full";

/// Metrics and control messages waiting for the rule stage; the metrics path waits when full.
const INPUT_CHANNEL_CAPACITY: usize = 4096;

/// What the metrics path hands the rule stage.
pub enum RuleInput {
    /// A metric for the engines; [`RuleFeed::send_point`] builds it.
    Point(RulePoint),
    /// Acked by the rule stage once the deployment's policies are loaded (or unloaded).
    Control {
        message: ControlMessage,
        ack: ControlAck,
    },
    /// Every metric that was queued when sluice started consuming has been handed on before
    /// this (the broker's count, see `sluice_amqp::backlog`): the host sweeps need not wait any
    /// longer.
    BacklogDrained,
}

/// The metrics path's handle on the rule stage. Dropping every clone ends the stage.
#[derive(Clone)]
pub struct RuleFeed {
    inputs: mpsc::Sender<RuleInput>,
    loaded: Arc<RwLock<HashSet<String>>>,
    wants_points: bool,
    activity: Arc<RuleActivity>,
}

impl RuleFeed {
    /// The stage's loaded deployments and last triggers, as it updates them.
    pub fn activity(&self) -> Arc<RuleActivity> {
        Arc::clone(&self.activity)
    }

    /// Whether the deployment has policies loaded, so its metrics are worth handing on (as
    /// [`metric_event`]s).
    pub fn wants(&self, deployment_id: &str) -> bool {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(deployment_id)
    }

    /// Whether generic rules are loaded, so every point is worth handing on.
    pub fn wants_points(&self) -> bool {
        self.wants_points
    }

    /// Hands on one metric: its Diamond view ([`metric_event`], when [`RuleFeed::wants`] said
    /// so) and its point (when [`RuleFeed::wants_points`]), together. Sends nothing when neither
    /// part is filled. Waits for room; false when the rule stage is gone.
    pub async fn send_point(&self, point: RulePoint) -> bool {
        if point.is_empty() {
            return true;
        }
        self.send(RuleInput::Point(point)).await
    }

    /// Waits for room; false when the rule stage is gone (a control message's token is then
    /// dropped unfinished, so the broker delivers it again).
    pub async fn send(&self, input: RuleInput) -> bool {
        self.inputs.send(input).await.is_ok()
    }
}

/// The manager's policies' view of one Diamond metric.
pub fn metric_event(sample: &MetricSample<'_>) -> MetricEvent {
    MetricEvent {
        deployment_id: sample.deployment_id.to_owned(),
        node_name: sample.node_name.to_owned(),
        node_id: sample.node_id.to_owned(),
        host: sample.host.map(str::to_owned),
        service: sample.service.to_owned(),
        metric: sample.value,
        time_ms: sample.timestamp_ns / 1_000_000,
        ttl: sample.ttl,
    }
}

/// Why the rule stage cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("creating the rules state directory {}: {error}", path.display())]
    StateDirectory {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("setting up the manager's REST client: {0}")]
    Manager(#[from] RestError),
    #[error(transparent)]
    RuleFile(#[from] RuleFileError),
}

/// Restores the checkpoint and builds the rule stage: answers the feed for the metrics path and
/// the stage, to be run ([`RuleStage::run`]). Outcome events go to `events` as JSON bodies.
/// `drain_deadline` bounds how long a stop waits for running actions before checkpointing them
/// as pending.
pub async fn start(
    settings: RuleStageSettings,
    dead_letters: DeadLetterSender,
    events: mpsc::Sender<String>,
    drain_deadline: Duration,
) -> Result<(RuleFeed, RuleStage), StageError> {
    tokio::fs::create_dir_all(&settings.state_dir)
        .await
        .map_err(|error| StageError::StateDirectory {
            path: settings.state_dir.clone(),
            error,
        })?;
    let executor = Arc::new(Executor::new(settings.manager)?);
    let rule_sets = load_rule_files(&settings.rule_files)?;
    let checkpoint_path = settings.state_dir.join(CHECKPOINT_FILE);
    let mut engines = Engines {
        policies: Engine::new(settings.engine_limits),
        generic: rule_sets
            .into_iter()
            .map(|rules| GenericEngine::new(rules, settings.generic_limits))
            .collect(),
    };
    let resumed = match checkpoint::read(&checkpoint_path).await {
        Some(restored) => {
            engines.restore(restored.states);
            executor.restore_trigger_times(restored.trigger_times);
            tracing::info!(
                deployments = engines.policies.deployment_ids().count(),
                pending_actions = restored.pending_actions.len(),
                saved_at_ms = restored.saved_at_ms,
                "rules state restored"
            );
            restored.pending_actions
        }
        None => Vec::new(),
    };
    let wants_points = !engines.generic.is_empty();
    let loaded = Arc::new(RwLock::new(
        engines
            .policies
            .deployment_ids()
            .map(str::to_owned)
            .collect(),
    ));

    let activity = Arc::new(RuleActivity::default());
    activity.set_loaded(&engines.policies, engines.generic.len());
    let (inputs_tx, inputs_rx) = mpsc::channel(INPUT_CHANNEL_CAPACITY);
    let mut stage = RuleStage {
        activity: Arc::clone(&activity),
        engines,
        executor,
        inputs: inputs_rx,
        loaded: Arc::clone(&loaded),
        events,
        dead_letters,
        checkpoint_path,
        sweep_interval: settings.sweep_interval,
        checkpoint_interval: settings.checkpoint_interval,
        startup_grace: settings.startup_grace,
        drain_deadline,
        max_in_flight: settings.max_actions_in_flight.get(),
        max_queued: settings.max_actions_queued.get(),
        pending: BTreeMap::new(),
        queued: VecDeque::new(),
        next_action_id: 0,
        dirty: false,
    };
    for action in resumed {
        stage.enqueue(action);
    }
    let feed = RuleFeed {
        inputs: inputs_tx,
        loaded,
        wants_points,
        activity,
    };
    Ok((feed, stage))
}

/// The engines of the stage: the manager's policies (also loaded and unloaded by control
/// messages) and one generic engine per rules file. Everything else goes through
/// [`RuleEngine`], the policies first.
struct Engines {
    policies: Engine,
    generic: Vec<GenericEngine>,
}

impl Engines {
    fn all(&self) -> impl Iterator<Item = &dyn RuleEngine> {
        std::iter::once(&self.policies as &dyn RuleEngine)
            .chain(self.generic.iter().map(|engine| engine as &dyn RuleEngine))
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut dyn RuleEngine> {
        std::iter::once(&mut self.policies as &mut dyn RuleEngine).chain(
            self.generic
                .iter_mut()
                .map(|engine| engine as &mut dyn RuleEngine),
        )
    }

    /// Runs `step` on every engine; answers the actions fired, each with its restraints.
    fn fire(
        &mut self,
        mut step: impl FnMut(&mut dyn RuleEngine) -> Vec<Action>,
    ) -> Vec<(Action, Restraints)> {
        let mut fired = Vec::new();
        for engine in self.all_mut() {
            for action in step(&mut *engine) {
                let restraints = engine.restraints(&action);
                fired.push((action, restraints));
            }
        }
        fired
    }

    fn checkpoint(&self) -> RuleStates {
        let mut states = RuleStates::default();
        for engine in self.all() {
            engine.checkpoint(&mut states);
        }
        states
    }

    /// Each engine takes its part of `states`; what is not restored is logged.
    fn restore(&mut self, mut states: RuleStates) {
        for engine in self.all_mut() {
            match engine.restore(&mut states) {
                Ok(()) => {}
                Err(RuleRestoreError::GenericRulesChanged { group, discarded }) => tracing::warn!(
                    %group,
                    ?discarded,
                    "rules changed since the checkpoint start clean"
                ),
                Err(error) => tracing::error!(%error, "rules checkpoint restored in part"),
            }
        }
    }
}

type RunningAction = BoxFuture<'static, (u64, Execution)>;

/// The rule stage, built by [`start`]; [`RuleStage::run`] runs it.
pub struct RuleStage {
    engines: Engines,
    executor: Arc<Executor>,
    inputs: mpsc::Receiver<RuleInput>,
    loaded: Arc<RwLock<HashSet<String>>>,
    activity: Arc<RuleActivity>,
    events: mpsc::Sender<String>,
    dead_letters: DeadLetterSender,
    checkpoint_path: PathBuf,
    sweep_interval: Duration,
    checkpoint_interval: Duration,
    startup_grace: Duration,
    drain_deadline: Duration,
    max_in_flight: usize,
    max_queued: usize,
    /// Every action decided and not finished (queued or running), by id.
    pending: BTreeMap<u64, PendingAction>,
    /// Ids waiting for a place, oldest first.
    queued: VecDeque<u64>,
    next_action_id: u64,
    /// State changed since the last checkpoint.
    dirty: bool,
}

impl RuleStage {
    /// Runs until every [`RuleFeed`] is dropped and the running actions finished (or the drain
    /// deadline passed), then writes the last checkpoint.
    pub async fn run(mut self) {
        let mut running: FuturesUnordered<RunningAction> = FuturesUnordered::new();
        let started = Instant::now();
        let mut sweep =
            tokio::time::interval_at(started + self.sweep_interval, self.sweep_interval);
        // Sweeps are held until the backlog has reached the engines, or the grace has passed
        // (the backlog's end may never be known: see `sluice_amqp::backlog`).
        let grace_ends = started + self.startup_grace;
        let mut backlog_drained = false;
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut checkpoint = tokio::time::interval(self.checkpoint_interval);
        checkpoint.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut inputs_open = true;
        let drain_ends = tokio::time::sleep(Duration::MAX);
        tokio::pin!(drain_ends);
        loop {
            self.start_queued(&mut running);
            if !inputs_open && running.is_empty() && self.queued.is_empty() {
                break;
            }
            tokio::select! {
                input = self.inputs.recv(), if inputs_open => match input {
                    Some(RuleInput::Point(point)) => {
                        let now = now_ms();
                        let fired = self.engines.fire(|engine| engine.on_point(&point, now));
                        self.dirty = true;
                        self.announce_and_queue(fired).await;
                    }
                    Some(RuleInput::Control { message, ack }) => self.control(message, ack).await,
                    Some(RuleInput::BacklogDrained) => {
                        if !backlog_drained {
                            tracing::info!(
                                after_ms = started.elapsed().as_millis() as u64,
                                "backlog drained: host sweeps judge every series now"
                            );
                        }
                        backlog_drained = true;
                    }
                    None => {
                        inputs_open = false;
                        drain_ends.as_mut().reset(Instant::now() + self.drain_deadline);
                    }
                },
                Some((id, execution)) = running.next() => self.finished(id, execution).await,
                _ = sweep.tick(), if inputs_open => {
                    if !backlog_drained && Instant::now() < grace_ends {
                        metrics::counter!("sluice_rule_sweeps_total", "held" => "true").increment(1);
                        continue;
                    }
                    metrics::counter!("sluice_rule_sweeps_total", "held" => "false").increment(1);
                    let now = now_ms();
                    let fired = self.engines.fire(|engine| engine.sweep(now));
                    self.announce_and_queue(fired).await;
                    self.dirty = true;
                }
                _ = checkpoint.tick() => {
                    if self.dirty {
                        self.write_checkpoint().await;
                    }
                }
                () = &mut drain_ends => {
                    tracing::warn!(
                        pending = self.pending.len(),
                        "stopping with actions unfinished: they are checkpointed and resume at the next start"
                    );
                    break;
                }
            }
        }
        self.write_checkpoint().await;
    }

    /// Announces each action with a `policy` event and queues it, then checkpoints before any
    /// of them can start: a crash after the manager has the request must find the trigger's
    /// state (and the action, pending) on disk, or the restart would fire it again.
    async fn announce_and_queue(&mut self, fired: Vec<(Action, Restraints)>) {
        if fired.is_empty() {
            return;
        }
        for (action, restraints) in fired {
            metrics::counter!("sluice_policies_fired_total").increment(1);
            let now = now_ms();
            self.publish_event(policy_event(&action, now)).await;
            let seen = action.clone();
            match self.enqueue(PendingAction::new(action, restraints)) {
                Some(id) => self.activity.fired(&seen, Some(id), None, now),
                None => self
                    .activity
                    .fired(&seen, None, Some(QUEUE_FULL_OUTCOME), now),
            }
        }
        self.write_checkpoint().await;
    }

    /// Queues the action; `None` when the queue is full and it was dropped.
    fn enqueue(&mut self, action: PendingAction) -> Option<u64> {
        if self.queued.len() >= self.max_queued {
            metrics::counter!("sluice_actions_total", "kind" => "any", "outcome" => QUEUE_FULL_OUTCOME)
                .increment(1);
            tracing::error!(
                queued = self.queued.len(),
                "action dropped: the action queue is full (is the manager answering?)"
            );
            return None;
        }
        let id = self.next_action_id;
        self.next_action_id += 1;
        self.pending.insert(id, action);
        self.queued.push_back(id);
        self.dirty = true;
        Some(id)
    }

    fn start_queued(&mut self, running: &mut FuturesUnordered<RunningAction>) {
        while running.len() < self.max_in_flight {
            let Some(id) = self.queued.pop_front() else {
                return;
            };
            let Some(pending) = self.pending.get(&id) else {
                continue;
            };
            let executor = Arc::clone(&self.executor);
            let action = pending.action.clone();
            let restraints = pending.restraints();
            running.push(Box::pin(async move {
                let execution = executor.execute(&action, &restraints, now_ms()).await;
                (id, execution)
            }));
        }
    }

    /// Records an action's outcome, checkpointed at once: until the checkpoint no longer holds
    /// the action, a crash resumes it and the manager would be asked a second time.
    async fn finished(&mut self, id: u64, execution: Execution) {
        self.pending.remove(&id);
        self.activity.finished(id, execution.outcome.label());
        self.write_checkpoint().await;
        for event in execution.events {
            self.publish_event(event).await;
        }
    }

    async fn publish_event(&self, event: OutcomeEvent) {
        if self.events.send(event.to_json()).await.is_err() {
            tracing::warn!("the event publisher is gone; a rule event was not published");
        }
    }

    /// Writes every engine's state, the interval records and the pending actions (see the
    /// `checkpoint` module). A failure is logged and counted; the next tick tries again.
    async fn write_checkpoint(&mut self) {
        let checkpoint = Checkpoint::new(
            self.engines.checkpoint(),
            self.executor.trigger_times(),
            self.pending.values().cloned().collect(),
        );
        match checkpoint::write(&self.checkpoint_path, checkpoint).await {
            Ok(()) => {
                self.dirty = false;
                metrics::counter!("sluice_rule_checkpoints_total", "result" => "written")
                    .increment(1);
            }
            Err(error) => {
                metrics::counter!("sluice_rule_checkpoints_total", "result" => "failed")
                    .increment(1);
                tracing::error!(path = %self.checkpoint_path.display(), "writing the rules checkpoint: {error}");
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric() -> MetricEvent {
        MetricEvent {
            deployment_id: "dep".into(),
            node_name: "vm".into(),
            node_id: "vm_1".into(),
            host: None,
            service: "dep.vm.vm_1.cpu.total.user".into(),
            metric: 1.0,
            time_ms: 0,
            ttl: None,
        }
    }

    #[tokio::test]
    async fn a_metric_is_sent_once_and_only_when_an_engine_reads_it() {
        let (inputs, mut received) = mpsc::channel(4);
        let feed = RuleFeed {
            inputs,
            loaded: Arc::default(),
            wants_points: false,
            activity: Arc::default(),
        };
        assert!(feed.send_point(RulePoint::default()).await);
        let both = RulePoint {
            metric: Some(metric()),
            point: Some(sluice_core::point::Point::with_value("cpu", 1.0, 0)),
        };
        assert!(feed.send_point(both.clone()).await);
        drop(feed);
        let Some(RuleInput::Point(sent)) = received.recv().await else {
            panic!("the metric is handed on");
        };
        assert_eq!(sent, both);
        assert!(received.recv().await.is_none(), "nothing else was sent");
    }

    #[test]
    fn pending_actions_keep_their_restraints_and_a_disabled_interval_stays_disabled() {
        let action = Action::Webhook(sluice_core::action::Webhook {
            url: "http://hooks.example/".into(),
            headers: BTreeMap::new(),
            body: serde_json::json!({}),
            timeout: Duration::from_secs(1),
            origin: sluice_core::action::ActionOrigin {
                group: "g".into(),
                policy: "p".into(),
                trigger: "t".into(),
                node_id: None,
                node_name: None,
                diagnose: "d".into(),
                event_time_ms: 0,
                event: serde_json::json!({}),
            },
        });
        for restraints in [Restraints::default(), Restraints::NONE] {
            let pending = PendingAction::new(action.clone(), restraints);
            assert_eq!(pending.restraints(), restraints);
        }
    }
}
