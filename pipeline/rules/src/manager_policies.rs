//! The engine: per-deployment policies, their per-key state, and the actions they emit.
//!
//! # Semantics (and why)
//!
//! **Stability (threshold, ewma_stabilized).** The manager's Riemann policies are
//! `(by-node-or-group (stable stability_time breach? (changed :state {:init "ok"} ...)))`:
//! `stable` passes events on only once the breach/no-breach *value* has been the same for
//! `stability_time` seconds of event time, and `changed` lets the trigger run only on the
//! transition into `triggering_state`. This engine models that exactly with a two-level state per
//! key: a *candidate* value with the event time it started at (a change of value restarts the
//! clock), and a *reported* value that takes the candidate once it has held for
//! `stability_time`. A trigger fires when the reported value goes from ok to breached: once per
//! stable breach. The reported value goes back to ok the same way (a non-breach held for
//! `stability_time`; with the default of 0 s, at the first non-breaching event), and only then can
//! the next stable breach fire again. So a single non-breaching blip in a long breach neither fires
//! twice nor re-arms; it does restart the clock of a breach that has not fired yet.
//! Elapsed time is `event.time_ms - candidate_since_ms`; an out-of-order older event never makes a
//! breach stable early. Non-finite metrics, and an average that would overflow, are ignored by
//! these two policies, so a checkpoint only ever holds finite numbers (JSON has no NaN).
//!
//! **EWMA.** Riemann's `ewma-timeless r`: `ewma := r * metric + (1 - r) * ewma`, starting at 0, so
//! early values are biased low. The compared value (and the `metric` seen by `get_property`) is the
//! average, as in Riemann, which replaces the event's metric with it.
//!
//! **host_failure.** A series is `(node_id, service)` (the Diamond `service` embeds the node
//! instance id, so this is Riemann's `(host, service)` without the old agents' constant `host`).
//! It is last seen at the newest *event time* it reported (Riemann's index compares
//! `time + ttl` with its clock), with the ttl of that event (or the policy's, 60 s). `sweep(now)`
//! expires it when `now > last_event + ttl` (strictly, as Riemann's `expired?`) and fires once;
//! it fires again only after it was alive again: an event with `time + ttl >= now`.
//! `policy_operates_on_group` does not merge host series (each series expires on its own); it
//! only leaves `node_id` out of the action's origin, as for the other policies.
//! The action's `event_time_ms` is the sweep's `now` (Riemann stamps the expired event with the
//! time it expired); `origin.event` carries the last event's fields plus `last_seen_ms`.
//!
//! **Bounds.** Per policy at most `max_keys_per_policy` keys; a new key beyond that evicts the
//! least recently seen. `sweep` forgets threshold/EWMA keys not seen (caller's clock) for
//! `idle_forget_after`, and expired (already fired) host series older than that. A forgotten key
//! starts clean: a breach it was in can fire again, a host that never reports again stays
//! silent (it already fired). A host series first seen with an already stale event (a backlog)
//! fires at the next sweep (Riemann indexes it and its reaper expires it the same way).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sluice_core::action::{Action, ActionOrigin, ExecuteWorkflow};

use crate::groups::{Group, Groups, GroupsError, Policy, PolicyKind, ThresholdSpec};
use crate::keyed::{KeyedStates, Stamped};

/// `diagnose` of a threshold breach.
pub const DIAGNOSE_THRESHOLD: &str = "threshold-breached";
/// `diagnose` of an EWMA threshold breach.
pub const DIAGNOSE_EWMA: &str = "ewma-threshold-breached";
/// `diagnose` of an expired series.
pub const DIAGNOSE_HOST_FAILURE: &str = "heart-beat-failure";

/// The version of [`EngineState`]'s layout.
pub const STATE_FORMAT_VERSION: u32 = 1;

/// One metric as the rule stage sees it (built by the caller from a Diamond message).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricEvent {
    pub deployment_id: String,
    pub node_name: String,
    /// The node instance id.
    pub node_id: String,
    pub host: Option<String>,
    /// The Diamond `service`: `<deployment>.<node_name>.<node_id>.<collector>.<path>`.
    pub service: String,
    pub metric: f64,
    /// Event time, Unix milliseconds.
    pub time_ms: i64,
    /// The event's own ttl (host_failure), overriding the policy's.
    pub ttl: Option<Duration>,
}

/// Memory bounds of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimits {
    /// Keys (node ids, or host series) per policy; the least recently seen goes first. Min 1.
    pub max_keys_per_policy: usize,
    /// Threshold/EWMA keys unseen this long, and expired host series older than this, are
    /// forgotten by `sweep`.
    pub idle_forget_after: Duration,
}

impl Default for EngineLimits {
    /// 10 000 keys per policy, forgotten after 1 hour idle.
    fn default() -> Self {
        EngineLimits {
            max_keys_per_policy: 10_000,
            idle_forget_after: Duration::from_secs(3600),
        }
    }
}

/// The rule engine. Pure: no I/O, no clock; `now_ms` always comes from the caller.
#[derive(Debug, Default)]
pub struct Engine {
    limits: EngineLimits,
    deployments: BTreeMap<String, LoadedDeployment>,
}

#[derive(Debug)]
struct LoadedDeployment {
    groups: Groups,
    /// group -> policy -> state.
    state: PolicyStates,
}

type PolicyStates = BTreeMap<String, BTreeMap<String, PolicyState>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum PolicyState {
    Threshold {
        keys: KeyedStates<StabilityState>,
    },
    Ewma {
        keys: KeyedStates<EwmaState>,
    },
    HostFailure {
        /// Keyed by the JSON text of `[node_id, service]` (unambiguous, and a JSON map key).
        series: KeyedStates<Series>,
    },
}

impl PolicyState {
    fn fresh(kind: &PolicyKind) -> PolicyState {
        match kind {
            PolicyKind::Threshold(_) => PolicyState::Threshold {
                keys: KeyedStates::default(),
            },
            PolicyKind::EwmaStabilized { .. } => PolicyState::Ewma {
                keys: KeyedStates::default(),
            },
            PolicyKind::HostFailure { .. } => PolicyState::HostFailure {
                series: KeyedStates::default(),
            },
        }
    }

    fn same_kind(&self, other: &PolicyState) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    fn truncate(&mut self, max_keys: usize) {
        match self {
            PolicyState::Threshold { keys } => keys.truncate(max_keys),
            PolicyState::Ewma { keys } => keys.truncate(max_keys),
            PolicyState::HostFailure { series } => series.truncate(max_keys),
        }
    }
}

/// Riemann's `stable` + `changed :state` for one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StabilityState {
    /// The value that has held for `stability_time` (what `changed` sees).
    reported_breached: bool,
    /// The latest value and the event time it started at.
    candidate_breached: bool,
    candidate_since_ms: i64,
    /// Caller's clock at the last event, for idle forgetting and eviction.
    last_seen_ms: i64,
}

impl StabilityState {
    fn new(breached: bool, time_ms: i64, now_ms: i64) -> Self {
        StabilityState {
            reported_breached: false,
            candidate_breached: breached,
            candidate_since_ms: time_ms,
            last_seen_ms: now_ms,
        }
    }

    /// Feeds one observation; true when the reported value just went from ok to breached.
    fn observe(&mut self, breached: bool, time_ms: i64, stability_ms: i64, now_ms: i64) -> bool {
        self.last_seen_ms = now_ms;
        if breached != self.candidate_breached {
            self.candidate_breached = breached;
            self.candidate_since_ms = time_ms;
        }
        let held_ms = time_ms.saturating_sub(self.candidate_since_ms);
        if self.candidate_breached != self.reported_breached && held_ms >= stability_ms {
            self.reported_breached = self.candidate_breached;
            return self.reported_breached;
        }
        false
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EwmaState {
    #[serde(with = "crate::exact_float::exact_f64")]
    ewma: f64,
    stability: StabilityState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Series {
    node_id: String,
    node_name: String,
    host: Option<String>,
    service: String,
    /// The newest event's metric; None when it was not finite (JSON has no NaN).
    #[serde(with = "crate::exact_float::exact_optional_f64")]
    last_metric: Option<f64>,
    /// Newest event time seen, Unix ms.
    last_event_ms: i64,
    ttl_ms: i64,
    /// Fired for this expiry; cleared when it reports again.
    expired: bool,
}

/// The engine's state, serde-serialisable, for checkpoints. It carries each deployment's groups
/// file so [`Engine::restore`] rebuilds the policies too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    pub format_version: u32,
    deployments: BTreeMap<String, DeploymentCheckpoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DeploymentCheckpoint {
    groups_json: String,
    policies: PolicyStates,
}

/// Why (part of) a checkpoint was not restored. The deployments not listed were restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("checkpoint format version {found} is not {expected}; nothing restored")]
    Version { found: u32, expected: u32 },
    #[error("{} deployment(s) not restored: {}", .0.len(), describe(.0))]
    Deployments(Vec<(String, GroupsError)>),
}

fn describe(failures: &[(String, GroupsError)]) -> String {
    failures
        .iter()
        .map(|(deployment, error)| format!("`{deployment}`: {error}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Eviction order: threshold and EWMA keys by the caller's clock at their last event, host
/// series by their newest event time.
impl Stamped for StabilityState {
    fn stamp(&self) -> i64 {
        self.last_seen_ms
    }
}

impl Stamped for EwmaState {
    fn stamp(&self) -> i64 {
        self.stability.last_seen_ms
    }
}

impl Stamped for Series {
    fn stamp(&self) -> i64 {
        self.last_event_ms
    }
}

fn fresh_states(groups: &Groups) -> PolicyStates {
    groups
        .groups()
        .iter()
        .map(|group| {
            let policies = group
                .policies
                .iter()
                .map(|policy| (policy.name.clone(), PolicyState::fresh(&policy.kind)))
                .collect();
            (group.name.clone(), policies)
        })
        .collect()
}

/// Replaces every `{"get_property": ["SELF", field]}` inside `value` with the event's field
/// (null when the event has no such field).
fn substitute(value: &Value, fields: &Map<String, Value>) -> Value {
    match value {
        Value::Object(object) => {
            if let (1, Some(Value::Array(path))) = (object.len(), object.get("get_property"))
                && let [Value::String(target), Value::String(field)] = path.as_slice()
                && target == "SELF"
            {
                return fields.get(field).cloned().unwrap_or(Value::Null);
            }
            Value::Object(
                object
                    .iter()
                    .map(|(key, inner)| (key.clone(), substitute(inner, fields)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|inner| substitute(inner, fields))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What a firing knows about its triggering event.
struct Firing<'a> {
    deployment_id: &'a str,
    group: &'a Group,
    policy: &'a Policy,
    diagnose: &'static str,
    event_time_ms: i64,
    node_id: &'a str,
    node_name: &'a str,
    host: Option<&'a str>,
    service: &'a str,
    metric: f64,
    ttl: Option<Duration>,
    extra: Vec<(&'static str, Value)>,
}

impl Firing<'_> {
    fn actions(self) -> Vec<Action> {
        let mut fields = Map::new();
        let mut put = |key: &str, value: Value| {
            fields.insert(key.to_owned(), value);
        };
        put("deployment_id", Value::from(self.deployment_id));
        put("node_name", Value::from(self.node_name));
        put("node_id", Value::from(self.node_id));
        put("host", self.host.map_or(Value::Null, Value::from));
        put("service", Value::from(self.service));
        put(
            "metric",
            serde_json::Number::from_f64(self.metric).map_or(Value::Null, Value::Number),
        );
        put("time", Value::from(self.event_time_ms.div_euclid(1000)));
        put("time_ms", Value::from(self.event_time_ms));
        put(
            "ttl",
            self.ttl
                .and_then(|ttl| serde_json::Number::from_f64(ttl.as_secs_f64()))
                .map_or(Value::Null, Value::Number),
        );
        put("diagnose", Value::from(self.diagnose));
        put("state", Value::from("triggering_state"));
        put("group", Value::from(self.group.name.as_str()));
        put("policy", Value::from(self.policy.name.as_str()));
        for (key, value) in self.extra {
            put(key, value);
        }
        let event = Value::Object(fields.clone());
        let (origin_node_id, origin_node_name) = if self.policy.operates_on_group {
            (None, None)
        } else {
            (
                Some(self.node_id.to_owned()),
                Some(self.node_name.to_owned()),
            )
        };
        self.policy
            .triggers
            .iter()
            .map(|trigger| {
                let parameters =
                    substitute(&Value::Object(trigger.workflow_parameters.clone()), &fields);
                Action::ExecuteWorkflow(ExecuteWorkflow {
                    deployment_id: self.deployment_id.to_owned(),
                    workflow_id: trigger.workflow.clone(),
                    parameters,
                    force: trigger.force,
                    allow_custom_parameters: trigger.allow_custom_parameters,
                    socket_timeout: trigger.socket_timeout,
                    connect_timeout: trigger.connect_timeout,
                    origin: ActionOrigin {
                        group: self.group.name.clone(),
                        policy: self.policy.name.clone(),
                        trigger: trigger.name.clone(),
                        node_id: origin_node_id.clone(),
                        node_name: origin_node_name.clone(),
                        diagnose: self.diagnose.to_owned(),
                        event_time_ms: self.event_time_ms,
                        event: event.clone(),
                    },
                })
            })
            .collect()
    }
}

impl Engine {
    pub fn new(limits: EngineLimits) -> Self {
        Engine {
            limits: EngineLimits {
                max_keys_per_policy: limits.max_keys_per_policy.max(1),
                ..limits
            },
            deployments: BTreeMap::new(),
        }
    }

    /// Loads (or replaces) a deployment's policies with empty state: a re-created deployment
    /// never inherits the old one's state.
    pub fn load_deployment(&mut self, deployment_id: &str, groups: Groups) {
        let state = fresh_states(&groups);
        self.deployments
            .insert(deployment_id.to_owned(), LoadedDeployment { groups, state });
    }

    /// Drops a deployment's policies and state (the manager's `stop`).
    pub fn unload_deployment(&mut self, deployment_id: &str) {
        self.deployments.remove(deployment_id);
    }

    /// The loaded deployments' ids.
    pub fn deployment_ids(&self) -> impl Iterator<Item = &str> {
        self.deployments.keys().map(String::as_str)
    }

    /// The groups a loaded deployment's policies came from.
    pub fn deployment_groups(&self, deployment_id: &str) -> Option<&Groups> {
        Some(&self.deployments.get(deployment_id)?.groups)
    }

    /// A loaded policy: the caller reads its [`crate::Restraints`] to hand them to the executor.
    pub fn policy(&self, deployment_id: &str, group: &str, policy: &str) -> Option<&Policy> {
        self.deployments
            .get(deployment_id)?
            .groups
            .find_policy(group, policy)
    }

    /// Feeds one metric; returns the actions of the threshold/EWMA policies that fired.
    /// Host-failure series are refreshed here and fire only from [`Engine::sweep`].
    pub fn on_metric(&mut self, event: &MetricEvent, now_ms: i64) -> Vec<Action> {
        let Some(deployment) = self.deployments.get_mut(&event.deployment_id) else {
            return Vec::new();
        };
        let max_keys = self.limits.max_keys_per_policy;
        let mut actions = Vec::new();
        for group in deployment.groups.groups() {
            if !group.members.contains(&event.node_name) {
                continue;
            }
            let Some(group_state) = deployment.state.get_mut(&group.name) else {
                continue;
            };
            for policy in &group.policies {
                let Some(state) = group_state.get_mut(&policy.name) else {
                    continue;
                };
                // Threshold/EWMA state key: the node instance, or one key for the whole group.
                let state_key: &str = if policy.operates_on_group {
                    ""
                } else {
                    &event.node_id
                };
                let firing = |diagnose, metric, extra| Firing {
                    deployment_id: &event.deployment_id,
                    group,
                    policy,
                    diagnose,
                    event_time_ms: event.time_ms,
                    node_id: &event.node_id,
                    node_name: &event.node_name,
                    host: event.host.as_deref(),
                    service: &event.service,
                    metric,
                    ttl: event.ttl,
                    extra,
                };
                match (&policy.kind, state) {
                    (PolicyKind::Threshold(spec), PolicyState::Threshold { keys }) => {
                        if !spec.service.is_match(&event.service) || !event.metric.is_finite() {
                            continue;
                        }
                        if observe_threshold(
                            spec,
                            keys,
                            state_key,
                            event,
                            event.metric,
                            now_ms,
                            max_keys,
                        ) {
                            actions
                                .extend(firing(DIAGNOSE_THRESHOLD, event.metric, vec![]).actions());
                        }
                    }
                    (PolicyKind::EwmaStabilized { threshold, r }, PolicyState::Ewma { keys }) => {
                        if !threshold.service.is_match(&event.service) || !event.metric.is_finite()
                        {
                            continue;
                        }
                        let stability_ms = duration_ms(threshold.stability_time);
                        let fired_with = keys.update(
                            state_key,
                            max_keys,
                            || EwmaState {
                                ewma: 0.0,
                                stability: StabilityState::new(false, event.time_ms, now_ms),
                            },
                            |entry| {
                                let ewma = r * event.metric + (1.0 - r) * entry.ewma;
                                if !ewma.is_finite() {
                                    // Overflow: keep the last finite average (checkpoints hold
                                    // no NaN).
                                    return None;
                                }
                                entry.ewma = ewma;
                                let fired = entry.stability.observe(
                                    threshold.breaches(ewma),
                                    event.time_ms,
                                    stability_ms,
                                    now_ms,
                                );
                                fired.then_some(ewma)
                            },
                        );
                        if let Some(ewma) = fired_with {
                            let extra = vec![("raw_metric", Value::from(event.metric))];
                            actions.extend(firing(DIAGNOSE_EWMA, ewma, extra).actions());
                        }
                    }
                    (
                        PolicyKind::HostFailure {
                            services,
                            default_ttl,
                        },
                        PolicyState::HostFailure { series },
                    ) => {
                        if !services.iter().any(|regex| regex.is_match(&event.service)) {
                            continue;
                        }
                        let ttl = event.ttl.unwrap_or(*default_ttl);
                        observe_series(series, event, duration_ms(ttl), now_ms, max_keys);
                    }
                    // Unreachable by construction (state built from the same policies); skip.
                    _ => {}
                }
            }
        }
        actions
    }

    /// The expiry sweep (the manager's runs every 5 s): host_failure fires once for each series
    /// silent past its ttl; idle keys are forgotten.
    pub fn sweep(&mut self, now_ms: i64) -> Vec<Action> {
        let idle_ms = duration_ms(self.limits.idle_forget_after);
        let mut actions = Vec::new();
        for (deployment_id, deployment) in &mut self.deployments {
            for group in deployment.groups.groups() {
                let Some(group_state) = deployment.state.get_mut(&group.name) else {
                    continue;
                };
                for policy in &group.policies {
                    let Some(state) = group_state.get_mut(&policy.name) else {
                        continue;
                    };
                    match state {
                        // Their stamp is `last_seen_ms`, so the idle keys are the front of the
                        // index. Host series are kept by more than their stamp: a full retain.
                        PolicyState::Threshold { keys } => {
                            keys.forget_oldest_while(|last_seen_ms| {
                                now_ms.saturating_sub(last_seen_ms) > idle_ms
                            })
                        }
                        PolicyState::Ewma { keys } => keys.forget_oldest_while(|last_seen_ms| {
                            now_ms.saturating_sub(last_seen_ms) > idle_ms
                        }),
                        PolicyState::HostFailure { series } => {
                            for one in series.values_mut() {
                                let deadline = one.last_event_ms.saturating_add(one.ttl_ms);
                                if one.expired || now_ms <= deadline {
                                    continue;
                                }
                                one.expired = true;
                                let firing = Firing {
                                    deployment_id,
                                    group,
                                    policy,
                                    diagnose: DIAGNOSE_HOST_FAILURE,
                                    event_time_ms: now_ms,
                                    node_id: &one.node_id,
                                    node_name: &one.node_name,
                                    host: one.host.as_deref(),
                                    service: &one.service,
                                    metric: one.last_metric.unwrap_or(f64::NAN),
                                    ttl: u64::try_from(one.ttl_ms).ok().map(Duration::from_millis),
                                    extra: vec![
                                        ("last_seen_ms", Value::from(one.last_event_ms)),
                                        ("state", Value::from("expired")),
                                    ],
                                };
                                actions.extend(firing.actions());
                            }
                            series.retain(|one| {
                                !(one.expired && now_ms.saturating_sub(one.last_event_ms) > idle_ms)
                            });
                        }
                    }
                }
            }
        }
        actions
    }

    /// A serialisable copy of all state (and the groups files it belongs to).
    pub fn checkpoint(&self) -> EngineState {
        EngineState {
            format_version: STATE_FORMAT_VERSION,
            deployments: self
                .deployments
                .iter()
                .map(|(deployment_id, deployment)| {
                    (
                        deployment_id.clone(),
                        DeploymentCheckpoint {
                            groups_json: deployment.groups.source_json().to_owned(),
                            policies: deployment.state.clone(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Replaces everything with a checkpoint: the deployments it holds, with their state. State of
    /// a policy that no longer matches (renamed, other type) starts clean. A deployment whose
    /// groups file no longer parses is skipped and reported; the others are restored.
    pub fn restore(&mut self, state: EngineState) -> Result<(), RestoreError> {
        if state.format_version != STATE_FORMAT_VERSION {
            return Err(RestoreError::Version {
                found: state.format_version,
                expected: STATE_FORMAT_VERSION,
            });
        }
        self.deployments.clear();
        let mut failures = Vec::new();
        for (deployment_id, checkpoint) in state.deployments {
            let groups = match Groups::parse(&checkpoint.groups_json) {
                Ok(groups) => groups,
                Err(error) => {
                    failures.push((deployment_id, error));
                    continue;
                }
            };
            let mut fresh = fresh_states(&groups);
            for (group_name, policies) in checkpoint.policies {
                let Some(fresh_group) = fresh.get_mut(&group_name) else {
                    continue;
                };
                for (policy_name, mut saved) in policies {
                    if let Some(slot) = fresh_group.get_mut(&policy_name)
                        && slot.same_kind(&saved)
                    {
                        saved.truncate(self.limits.max_keys_per_policy);
                        *slot = saved;
                    }
                }
            }
            self.deployments.insert(
                deployment_id,
                LoadedDeployment {
                    groups,
                    state: fresh,
                },
            );
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(RestoreError::Deployments(failures))
        }
    }
}

fn observe_threshold(
    spec: &ThresholdSpec,
    keys: &mut KeyedStates<StabilityState>,
    key: &str,
    event: &MetricEvent,
    value: f64,
    now_ms: i64,
    max_keys: usize,
) -> bool {
    let breached = spec.breaches(value);
    keys.update(
        key,
        max_keys,
        || StabilityState::new(breached, event.time_ms, now_ms),
        |state| {
            state.observe(
                breached,
                event.time_ms,
                duration_ms(spec.stability_time),
                now_ms,
            )
        },
    )
}

fn observe_series(
    series: &mut KeyedStates<Series>,
    event: &MetricEvent,
    ttl_ms: i64,
    now_ms: i64,
    max_keys: usize,
) {
    // Serialising two strings cannot fail.
    let key = serde_json::to_string(&(&event.node_id, &event.service)).unwrap_or_default();
    let new_series = || Series {
        node_id: event.node_id.clone(),
        node_name: event.node_name.clone(),
        host: event.host.clone(),
        service: event.service.clone(),
        last_metric: finite(event.metric),
        last_event_ms: event.time_ms,
        ttl_ms,
        expired: false,
    };
    series.update(&key, max_keys, new_series, |one| {
        if event.time_ms >= one.last_event_ms {
            one.last_event_ms = event.time_ms;
            one.ttl_ms = ttl_ms;
            one.last_metric = finite(event.metric);
            one.host.clone_from(&event.host);
        }
        // Alive again only on an event that is itself not already stale.
        if one.expired && event.time_ms.saturating_add(ttl_ms) >= now_ms {
            one.expired = false;
        }
    });
}
