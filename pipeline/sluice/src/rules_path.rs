//! The rule stage, wired: the manager's policies on sluice's own metrics stream, triggering
//! workflows through the manager's REST API, with durable state.
//!
//! ```text
//! metrics normalise stage ─RuleInput─► rule stage ──Action──► executor (REST: restraints, retries)
//!   (metrics of loaded deployments,     │  Engine (pure)            │
//!    manager-riemann control messages)  │  sweep every 5 s          ▼
//!                                       │  checkpoint ─► state_dir/rules.json
//!                                       └── policy / trigger events ─► event publisher ─► cloudify-events
//! ```
//!
//! **Control.** A `start` control message reads `<config_path>/groups`, loads its policies with
//! fresh state, writes the checkpoint, then creates the empty `<config_path>/ok` the manager
//! waits for, and only then is acked. A groups file that cannot be read or parsed is
//! dead-lettered with its reason (the manager then fails the deployment's creation, as it would
//! with its own engine). `stop` unloads the deployment and drops its state.
//!
//! **Metrics.** The metrics path hands on only metrics of loaded deployments (it asks
//! [`RuleFeed::wants`]), so a manager with no policies pays nothing; with generic rule files
//! (`rules.files`, the standalone tier) it also hands on every point.
//! Generic rules' actions run without the manager's restraints (their own `min_interval`
//! applies in the engine), but with the executor's de-duplication and retries. A metric's delivery does not
//! wait for the rules: what the rules make of it is in the next checkpoint (every
//! `rules.checkpoint_interval`, and at a clean stop), so a crash loses at most that much of the
//! rules' view, never a trigger that was decided (see below).
//!
//! **Actions.** Each action the engine emits is announced with a `policy` event, then queued
//! (bounded) and run by the executor, at most `max_actions_in_flight` at once. An action stays in
//! the checkpoint from the moment it is decided until the executor reports its outcome, so a
//! crash in between resumes it at the next start. A resumed action skips the interval restraint
//! (its own record may already be in the restored interval state) but not the node check, and
//! the manager's `existing_running_execution_error` makes a repeat of a still-running workflow
//! harmless.
//!
//! **Restarts.** The checkpoint carries the engine's state (with each deployment's groups), the
//! executor's interval records and the pending actions. After a start, the first sweep waits
//! `startup_grace`: the metrics that queued up while sluice was down arrive first, so a host
//! that kept reporting is not taken for a failed one.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use sluice_amqp::publisher::run_event_publisher;
use sluice_core::ack::ControlAck;
use sluice_core::action::Action;
use sluice_core::dead_letter::{DeadLetter, DeadLetterSender, send_dead_letter};
use sluice_core::point::Point;
use sluice_core::rejection::{Reason, Refusal, Stage};
use sluice_normalise::{ControlMessage, ControlState, MetricSample};
use sluice_rest::{Execution, Executor, Restraints, TriggerTime, policy_event};
use sluice_rules::{
    Engine, EngineState, GenericEngine, GenericState, Groups, MetricEvent, RuleSet,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::RulesPathSettings;

/// Metrics and control messages waiting for the rule stage; the metrics path waits when full.
const INPUT_CHANNEL_CAPACITY: usize = 4096;
/// Events waiting for the publisher; the rule stage waits when full.
const EVENTS_CHANNEL_CAPACITY: usize = 1024;
const CHECKPOINT_FILE: &str = "rules.json";
const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// What the metrics path hands the rule stage.
pub enum RuleInput {
    /// A Diamond metric of a deployment with policies loaded.
    Metric(MetricEvent),
    /// Every point, when generic rules are loaded.
    Point(Point),
    /// Acked by the rule stage once the deployment's policies are loaded (or unloaded).
    Control {
        message: ControlMessage,
        ack: ControlAck,
    },
}

/// The metrics path's handle on the rule stage. Dropping every clone ends the stage.
#[derive(Clone)]
pub struct RuleFeed {
    inputs: mpsc::Sender<RuleInput>,
    loaded: Arc<RwLock<HashSet<String>>>,
    wants_points: bool,
}

impl RuleFeed {
    /// Whether the deployment has policies loaded, so its metrics are worth handing on.
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

    /// Waits for room; false when the rule stage is gone (a control message's token is then
    /// dropped unfinished, so the broker delivers it again).
    pub async fn send(&self, input: RuleInput) -> bool {
        self.inputs.send(input).await.is_ok()
    }
}

/// The rule stage's view of one Diamond metric.
pub fn metric_event(sample: &MetricSample<'_>) -> MetricEvent {
    MetricEvent {
        deployment_id: sample.deployment_id.to_owned(),
        node_name: sample.node_name.to_owned(),
        node_id: sample.node_id.to_owned(),
        host: sample.host.map(str::to_owned),
        service: sample.service.to_owned(),
        metric: sample.value,
        time_ms: sample.timestamp_ns / 1_000_000,
        ttl: None,
    }
}

/// Restores the checkpoint, starts the rule stage and its event publisher onto `tasks`.
/// `drain_deadline` bounds how long a stop waits for running actions before checkpointing
/// them as pending.
pub async fn start(
    settings: RulesPathSettings,
    dead_letters: DeadLetterSender,
    drain_deadline: Duration,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<RuleFeed> {
    tokio::fs::create_dir_all(&settings.state_dir)
        .await
        .with_context(|| {
            format!(
                "creating the rules state directory {}",
                settings.state_dir.display()
            )
        })?;
    let executor =
        Arc::new(Executor::new(settings.manager).context("setting up the manager's REST client")?);
    let rule_sets = load_rule_files(&settings.rule_files)?;
    let checkpoint_path = settings.state_dir.join(CHECKPOINT_FILE);
    let mut engine = Engine::new(settings.engine_limits);
    let mut generic: Vec<GenericEngine> = rule_sets
        .into_iter()
        .map(|rules| GenericEngine::new(rules, settings.generic_limits))
        .collect();
    let resumed = restore(&checkpoint_path, &mut engine, &mut generic, &executor).await;
    let wants_points = !generic.is_empty();
    let loaded = Arc::new(RwLock::new(
        engine.deployment_ids().map(str::to_owned).collect(),
    ));

    let (inputs_tx, inputs_rx) = mpsc::channel(INPUT_CHANNEL_CAPACITY);
    let (events_tx, events_rx) = mpsc::channel(EVENTS_CHANNEL_CAPACITY);
    tasks.spawn(async move {
        run_event_publisher(settings.events, events_rx).await;
        Ok(())
    });
    let mut stage = RuleStage {
        engine,
        generic,
        executor,
        loaded: Arc::clone(&loaded),
        events: events_tx,
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
    tasks.spawn(async move { stage.run(inputs_rx).await });
    Ok(RuleFeed {
        inputs: inputs_tx,
        loaded,
        wants_points,
    })
}

/// Reads and checks generic rule files; each file's stem is its rules' group name.
pub fn load_rule_files(paths: &[PathBuf]) -> anyhow::Result<Vec<RuleSet>> {
    let mut group_names = HashSet::new();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the rules file {}", path.display()))?;
            let group = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            anyhow::ensure!(
                group_names.insert(group.clone()),
                "rules file {}: another rules file has the same name `{group}`",
                path.display()
            );
            let rules =
                RuleSet::parse(&text).with_context(|| format!("rules file {}", path.display()))?;
            Ok(rules.with_group_name(group))
        })
        .collect()
}

/// What `rules.json` holds.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    format_version: u32,
    saved_at_ms: i64,
    engine: EngineState,
    trigger_times: Vec<TriggerTime>,
    pending_actions: Vec<PendingAction>,
    /// Generic rules' state, by rules file (group) name.
    #[serde(default)]
    generic: BTreeMap<String, GenericState>,
}

/// An action decided and not yet finished, with the restraints it runs under.
#[derive(Clone, Serialize, Deserialize)]
struct PendingAction {
    action: Action,
    is_node_started_before_workflow: bool,
    interval_between_workflows_ms: u64,
}

impl PendingAction {
    fn restraints(&self) -> Restraints {
        Restraints {
            is_node_started_before_workflow: self.is_node_started_before_workflow,
            interval_between_workflows: Duration::from_millis(self.interval_between_workflows_ms),
        }
    }
}

type RunningAction = BoxFuture<'static, (u64, Execution)>;

/// Which engine an action came from, for its restraints.
#[derive(Clone, Copy)]
enum RuleSource {
    /// The manager's policies: their own restraints.
    Manager,
    /// Generic rules: none (the engine applies `min_interval`).
    Generic,
}

/// Generic rules' restraints: no node check and no interval.
const GENERIC_RESTRAINTS: Restraints = Restraints {
    is_node_started_before_workflow: false,
    interval_between_workflows: Duration::ZERO,
};

struct RuleStage {
    engine: Engine,
    /// One engine per generic rules file.
    generic: Vec<GenericEngine>,
    executor: Arc<Executor>,
    loaded: Arc<RwLock<HashSet<String>>>,
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
    async fn run(mut self, mut inputs: mpsc::Receiver<RuleInput>) -> anyhow::Result<()> {
        let mut running: FuturesUnordered<RunningAction> = FuturesUnordered::new();
        let mut sweep = tokio::time::interval_at(
            Instant::now() + self.startup_grace.max(self.sweep_interval),
            self.sweep_interval,
        );
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
                input = inputs.recv(), if inputs_open => match input {
                    Some(RuleInput::Metric(event)) => {
                        let actions = self.engine.on_metric(&event, now_ms());
                        self.dirty = true;
                        self.fire(actions, RuleSource::Manager).await;
                    }
                    Some(RuleInput::Point(point)) => {
                        let now = now_ms();
                        let actions: Vec<Action> = self
                            .generic
                            .iter_mut()
                            .flat_map(|engine| engine.on_point(&point, now))
                            .collect();
                        self.dirty = true;
                        self.fire(actions, RuleSource::Generic).await;
                    }
                    Some(RuleInput::Control { message, ack }) => self.control(message, ack).await,
                    None => {
                        inputs_open = false;
                        drain_ends.as_mut().reset(Instant::now() + self.drain_deadline);
                    }
                },
                Some((id, execution)) = running.next() => self.finished(id, execution).await,
                _ = sweep.tick(), if inputs_open => {
                    let now = now_ms();
                    let actions = self.engine.sweep(now);
                    self.fire(actions, RuleSource::Manager).await;
                    let generic_actions: Vec<Action> = self
                        .generic
                        .iter_mut()
                        .flat_map(|engine| engine.sweep(now))
                        .collect();
                    self.fire(generic_actions, RuleSource::Generic).await;
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
        Ok(())
    }

    /// Announces each action with a `policy` event and queues it.
    async fn fire(&mut self, actions: Vec<Action>, source: RuleSource) {
        for action in actions {
            metrics::counter!("sluice_policies_fired_total").increment(1);
            self.publish_event(policy_event(&action, now_ms())).await;
            let restraints = match source {
                RuleSource::Manager => self.restraints_of(&action),
                RuleSource::Generic => GENERIC_RESTRAINTS,
            };
            self.enqueue(PendingAction {
                action,
                is_node_started_before_workflow: restraints.is_node_started_before_workflow,
                interval_between_workflows_ms: u64::try_from(
                    restraints.interval_between_workflows.as_millis(),
                )
                .unwrap_or(u64::MAX),
            });
        }
    }

    /// The firing policy's restraints (the manager's defaults when it is gone already).
    fn restraints_of(&self, action: &Action) -> Restraints {
        let Action::ExecuteWorkflow(workflow) = action else {
            return Restraints::default();
        };
        let origin = &workflow.origin;
        match self
            .engine
            .policy(&workflow.deployment_id, &origin.group, &origin.policy)
        {
            Some(policy) => Restraints {
                is_node_started_before_workflow: policy.restraints.is_node_started_before_workflow,
                interval_between_workflows: policy
                    .restraints
                    .interval_between_workflows
                    .unwrap_or(Duration::ZERO),
            },
            None => Restraints::default(),
        }
    }

    fn enqueue(&mut self, action: PendingAction) {
        if self.queued.len() >= self.max_queued {
            metrics::counter!("sluice_actions_total", "kind" => "any", "outcome" => "dropped_queue_full")
                .increment(1);
            tracing::error!(
                queued = self.queued.len(),
                "action dropped: the action queue is full (is the manager answering?)"
            );
            return;
        }
        let id = self.next_action_id;
        self.next_action_id += 1;
        self.pending.insert(id, action);
        self.queued.push_back(id);
        self.dirty = true;
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

    async fn finished(&mut self, id: u64, execution: Execution) {
        self.pending.remove(&id);
        self.dirty = true;
        for event in execution.events {
            self.publish_event(event).await;
        }
    }

    async fn publish_event(&self, body: String) {
        if self.events.send(body).await.is_err() {
            tracing::warn!("the event publisher is gone; a rule event was not published");
        }
    }

    async fn control(&mut self, message: ControlMessage, ack: ControlAck) {
        let deployment_id = message.deployment_id.clone();
        match message.state {
            ControlState::Start => {
                let config_path = Path::new(&message.config_path);
                let groups = match load_groups(config_path).await {
                    Ok(groups) => groups,
                    Err(refusal) => {
                        tracing::error!(%deployment_id, reason = %refusal.reason, detail = %refusal.detail, "policies not loaded");
                        self.dead_letter(refusal, ack).await;
                        return;
                    }
                };
                let policies: usize = groups
                    .groups()
                    .iter()
                    .map(|group| group.policies.len())
                    .sum();
                self.engine.load_deployment(&deployment_id, groups);
                self.set_loaded(&deployment_id, true);
                // Durable before the manager is told: a crash now restarts with the policies.
                self.write_checkpoint().await;
                let ok_file = config_path.join("ok");
                if let Err(error) = tokio::fs::write(&ok_file, b"").await {
                    let detail = format!("cannot create {}: {error}", ok_file.display());
                    tracing::error!(%deployment_id, %detail, "policies loaded but the manager is not told");
                    let refusal = Refusal::new(Reason::OkFileUnwritable, detail);
                    self.dead_letter(refusal, ack).await;
                    return;
                }
                metrics::counter!("sluice_rule_deployments_total", "state" => "start").increment(1);
                tracing::info!(%deployment_id, policies, "policies started");
            }
            ControlState::Stop => {
                self.engine.unload_deployment(&deployment_id);
                self.set_loaded(&deployment_id, false);
                self.write_checkpoint().await;
                metrics::counter!("sluice_rule_deployments_total", "state" => "stop").increment(1);
                tracing::info!(%deployment_id, "policies stopped");
            }
        }
        ack.applied();
    }

    fn set_loaded(&self, deployment_id: &str, loaded: bool) {
        let mut set = self.loaded.write().unwrap_or_else(PoisonError::into_inner);
        if loaded {
            set.insert(deployment_id.to_owned());
        } else {
            set.remove(deployment_id);
        }
    }

    async fn dead_letter(&self, refusal: Refusal, ack: ControlAck) {
        let letter = DeadLetter::new(Stage::Rules, refusal, 0, ack.into_token());
        send_dead_letter(&self.dead_letters, letter).await;
    }

    /// Writes the state to a temporary file, syncs it and renames it over the checkpoint, so
    /// the checkpoint on disk is always a whole one. A failure is logged and counted; the next
    /// tick tries again.
    async fn write_checkpoint(&mut self) {
        let checkpoint = Checkpoint {
            format_version: CHECKPOINT_FORMAT_VERSION,
            saved_at_ms: now_ms(),
            engine: self.engine.checkpoint(),
            trigger_times: self.executor.trigger_times(),
            pending_actions: self.pending.values().cloned().collect(),
            generic: self
                .generic
                .iter()
                .map(|engine| (engine.rules().group_name().to_owned(), engine.checkpoint()))
                .collect(),
        };
        let path = self.checkpoint_path.clone();
        let written = tokio::task::spawn_blocking(move || write_atomically(&path, &checkpoint))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|result| result);
        match written {
            Ok(()) => {
                self.dirty = false;
                metrics::counter!("sluice_rule_checkpoints_total", "result" => "written")
                    .increment(1);
            }
            Err(error) => {
                metrics::counter!("sluice_rule_checkpoints_total", "result" => "failed")
                    .increment(1);
                tracing::error!(path = %self.checkpoint_path.display(), "writing the rules checkpoint: {error:#}");
            }
        }
    }
}

fn write_atomically(path: &Path, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("json.tmp");
    // Owner only: pending webhook actions carry their headers, which may hold credentials.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    serde_json::to_writer(std::io::BufWriter::new(&mut file), checkpoint)
        .context("serialising the checkpoint")?;
    file.flush()?;
    file.sync_all().context("syncing the checkpoint")?;
    std::fs::rename(&temporary, path).with_context(|| format!("renaming to {}", path.display()))?;
    if let Some(directory) = path.parent() {
        // The rename is durable once the directory is synced.
        std::fs::File::open(directory)
            .and_then(|directory| directory.sync_all())
            .context("syncing the state directory")?;
    }
    Ok(())
}

/// Reads `<config_path>/groups`; the error is what the control message is dead-lettered with.
async fn load_groups(config_path: &Path) -> Result<Groups, Refusal> {
    let file = config_path.join("groups");
    let text = tokio::fs::read_to_string(&file).await.map_err(|error| {
        Refusal::new(
            Reason::GroupsUnreadable,
            format!("{}: {error}", file.display()),
        )
    })?;
    Groups::parse(&text).map_err(|error| {
        Refusal::new(
            Reason::InvalidGroups,
            format!("{}: {error}", file.display()),
        )
    })
}

/// Loads the checkpoint into `engine` and `executor`; answers the actions to resume. A missing
/// checkpoint is a first start; an unreadable one is kept aside and the stage starts clean.
async fn restore(
    path: &Path,
    engine: &mut Engine,
    generic: &mut [GenericEngine],
    executor: &Executor,
) -> Vec<PendingAction> {
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "cannot read the rules checkpoint; starting without it");
            return Vec::new();
        }
    };
    let mut checkpoint = match serde_json::from_slice::<Checkpoint>(&bytes) {
        Ok(checkpoint) if checkpoint.format_version == CHECKPOINT_FORMAT_VERSION => checkpoint,
        Ok(checkpoint) => {
            set_aside(
                path,
                &format!("format version {}", checkpoint.format_version),
            )
            .await;
            return Vec::new();
        }
        Err(error) => {
            set_aside(path, &error.to_string()).await;
            return Vec::new();
        }
    };
    if let Err(error) = engine.restore(checkpoint.engine) {
        tracing::error!(%error, "rules checkpoint restored in part");
    }
    executor.restore_trigger_times(checkpoint.trigger_times);
    for generic_engine in generic.iter_mut() {
        let group = generic_engine.rules().group_name().to_owned();
        let Some(state) = checkpoint.generic.remove(&group) else {
            continue;
        };
        match generic_engine.restore(state) {
            Ok(outcome) if !outcome.discarded_rules.is_empty() => tracing::warn!(
                %group,
                discarded = ?outcome.discarded_rules,
                "rules changed since the checkpoint start clean"
            ),
            Ok(_) => {}
            Err(error) => tracing::error!(%group, %error, "generic rules state not restored"),
        }
    }
    tracing::info!(
        deployments = engine.deployment_ids().count(),
        pending_actions = checkpoint.pending_actions.len(),
        saved_at_ms = checkpoint.saved_at_ms,
        "rules state restored"
    );
    checkpoint
        .pending_actions
        .into_iter()
        .map(|mut pending| {
            // Its interval may already be recorded in the restored state (see the module docs).
            pending.interval_between_workflows_ms = 0;
            pending
        })
        .collect()
}

async fn set_aside(path: &Path, why: &str) {
    let aside = path.with_extension(format!("json.unreadable-{}", now_ms()));
    let kept = tokio::fs::rename(path, &aside).await;
    metrics::counter!("sluice_rule_checkpoints_total", "result" => "unreadable").increment(1);
    tracing::error!(
        path = %path.display(),
        kept_as = %aside.display(),
        kept = kept.is_ok(),
        %why,
        "the rules checkpoint cannot be used; starting without it"
    );
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
