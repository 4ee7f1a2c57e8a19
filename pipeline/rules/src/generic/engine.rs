//! [`GenericEngine`]: per-rule, per-key state, the transitions that fire, and checkpoints.
//!
//! The semantics are described once, in the module above (`generic`); this file is their
//! implementation. Keys are the JSON text of the `by` tag values (unambiguous whatever the values
//! contain), so the state maps stay ordered and serialisable.
//!
//! # Per-point cost
//!
//! `on_point` runs for every point and every rule, so it avoids work that does not depend on the
//! point being new:
//!
//! - The key text is written into one reused buffer and looked up borrowed; it is copied only
//!   when the key is new.
//! - Each rule keeps its keys in a [`KeyedStates`] stamped by `last_seen_ms` (the manager's
//!   policies use the same), so evicting the least recently seen key at the key limit is
//!   `O(log n)` instead of a scan of every key, and the sweep finds idle keys at the front of its
//!   index. The index is derived from the keys: checkpoints do not hold it, and restoring
//!   rebuilds it.
//! - An absence key's saved point is updated in place, reusing its allocations and skipping the
//!   tags when they did not change, instead of being cloned afresh.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_core::action::{Action, ActionOrigin, ExecuteWorkflow, Webhook};
use sluice_core::point::{FieldValue, Point};

use super::config::{ActionTemplate, Comparison, Condition, Rule, RuleSet};
use super::duration_ms;
use super::template::TemplateContext;
use super::window::{Sample, Stat, Window};
use crate::keyed::{KeyedStates, Stamped};

/// `diagnose` of a threshold rule's breach.
pub const DIAGNOSE_THRESHOLD: &str = "threshold";
/// `diagnose` of an absence (deadman) rule's firing.
pub const DIAGNOSE_ABSENCE: &str = "absence";
/// `diagnose` of a state_change rule going ok -> breached.
pub const DIAGNOSE_STATE_CHANGE_BREACHED: &str = "state_change:breached";
/// `diagnose` of a state_change rule going breached -> ok.
pub const DIAGNOSE_STATE_CHANGE_OK: &str = "state_change:ok";
/// The version of [`GenericState`]'s layout.
pub const GENERIC_STATE_FORMAT_VERSION: u32 = 1;

const STATE_BREACHED: &str = "breached";
const STATE_OK: &str = "ok";
const STATE_ABSENT: &str = "absent";

/// Memory bounds of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenericLimits {
    /// Keys per rule; a new key beyond this evicts the least recently seen. Min 1.
    pub max_keys_per_rule: usize,
    /// Samples per key's window; the oldest go first. Min 1.
    pub max_samples_per_window: usize,
    /// `sweep` forgets comparison keys unseen this long, and fired absence keys silent this long
    /// (caller's clock).
    pub idle_forget_after: Duration,
}

impl Default for GenericLimits {
    /// 10 000 keys per rule, 1 000 samples per window, forgotten after 1 hour idle.
    fn default() -> Self {
        GenericLimits {
            max_keys_per_rule: 10_000,
            max_samples_per_window: 1_000,
            idle_forget_after: Duration::from_secs(3600),
        }
    }
}

/// The generic rules engine. Pure: no I/O, no clock; `now_ms` always comes from the caller.
#[derive(Debug)]
pub struct GenericEngine {
    rules: RuleSet,
    limits: GenericLimits,
    /// One entry per rule, in the rule set's order.
    states: Vec<RuleState>,
    /// Where `on_point` writes each rule's key text, reused so a known key costs no allocation.
    key_buffer: Vec<u8>,
}

/// One rule's live state: its keys, with their eviction order (derived from the keys, so rebuilt
/// on restore instead of saved). A checkpoint saves the plain maps ([`RuleKeys`]).
#[derive(Debug)]
enum RuleState {
    Comparison(KeyedStates<ComparisonKey>),
    Absence(KeyedStates<AbsenceKey>),
}

impl RuleState {
    fn fresh(condition: &Condition) -> RuleState {
        match condition {
            Condition::Threshold(_) | Condition::StateChange(_) => {
                RuleState::Comparison(KeyedStates::default())
            }
            Condition::Absence { .. } => RuleState::Absence(KeyedStates::default()),
        }
    }

    /// Saved keys with the limits applied: beyond the key limit the least recently seen keys go
    /// (those eviction would have taken first), and each window keeps its newest samples.
    fn restored(keys: RuleKeys, limits: &GenericLimits) -> RuleState {
        match keys {
            RuleKeys::Comparison { keys } => {
                let mut keys = KeyedStates::from(keys);
                for key in keys.values_mut() {
                    key.window.truncate(limits.max_samples_per_window);
                }
                keys.truncate(limits.max_keys_per_rule);
                RuleState::Comparison(keys)
            }
            RuleKeys::Absence { keys } => {
                let mut keys = KeyedStates::from(keys);
                keys.truncate(limits.max_keys_per_rule);
                RuleState::Absence(keys)
            }
        }
    }

    /// What a checkpoint saves.
    fn saved(&self) -> RuleKeys {
        match self {
            RuleState::Comparison(keys) => RuleKeys::Comparison {
                keys: keys.as_map().clone(),
            },
            RuleState::Absence(keys) => RuleKeys::Absence {
                keys: keys.as_map().clone(),
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            RuleState::Comparison(keys) => keys.len(),
            RuleState::Absence(keys) => keys.len(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum RuleKeys {
    Comparison {
        keys: BTreeMap<String, ComparisonKey>,
    },
    Absence {
        keys: BTreeMap<String, AbsenceKey>,
    },
}

impl RuleKeys {
    /// True when these keys are of the kind `condition`'s rule keeps.
    fn fits(&self, condition: &Condition) -> bool {
        matches!(
            (self, condition),
            (
                RuleKeys::Comparison { .. },
                Condition::Threshold(_) | Condition::StateChange(_)
            ) | (RuleKeys::Absence { .. }, Condition::Absence { .. })
        )
    }
}

/// Keys are evicted and forgotten by the caller's clock at their last observation.
impl Stamped for ComparisonKey {
    fn stamp(&self) -> i64 {
        self.last_seen_ms
    }
}

impl Stamped for AbsenceKey {
    fn stamp(&self) -> i64 {
        self.last_seen_ms
    }
}

/// One key of a threshold or state_change rule: its window and its ok/breached state machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ComparisonKey {
    window: Window,
    /// The state the actions have been told about (every key starts ok).
    breached: bool,
    /// The comparison's latest result and the event time it started holding at.
    candidate_breached: bool,
    candidate_since_ms: i64,
    /// Caller's clock at the last observation: eviction and idle forgetting.
    last_seen_ms: i64,
    /// Caller's clock at the last firing: `min_interval`.
    last_fired_ms: Option<i64>,
}

impl ComparisonKey {
    fn new(event_ms: i64, now_ms: i64) -> ComparisonKey {
        ComparisonKey {
            window: Window::default(),
            breached: false,
            candidate_breached: false,
            candidate_since_ms: event_ms,
            last_seen_ms: now_ms,
            last_fired_ms: None,
        }
    }

    /// Feeds one evaluation at the key's event clock; the new state when it just changed.
    fn evaluate(
        &mut self,
        breached_now: bool,
        at_ms: i64,
        comparison: &Comparison,
    ) -> Option<bool> {
        if breached_now != self.candidate_breached {
            self.candidate_breached = breached_now;
            self.candidate_since_ms = at_ms;
        }
        let required = if self.candidate_breached {
            comparison.hold_for
        } else {
            comparison.recover_for
        };
        let held_ms = at_ms.saturating_sub(self.candidate_since_ms);
        if self.candidate_breached != self.breached && held_ms >= duration_ms(required) {
            self.breached = self.candidate_breached;
            return Some(self.breached);
        }
        None
    }
}

/// One key of an absence rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AbsenceKey {
    /// Newest event time observed, Unix ms.
    last_event_ms: i64,
    /// The point of that observation, for the templates.
    last_point: SavedPoint,
    /// Fired for the current silence; cleared when it is alive again.
    fired: bool,
    last_seen_ms: i64,
    last_fired_ms: Option<i64>,
}

/// A [`Point`] with its floats stored exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedPoint {
    measurement: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, SavedField>,
    timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
enum SavedField {
    Integer(i64),
    Float(#[serde(with = "crate::exact_float::exact_f64")] f64),
    Boolean(bool),
    String(String),
}

impl From<&FieldValue> for SavedField {
    fn from(value: &FieldValue) -> SavedField {
        match value {
            FieldValue::Integer(integer) => SavedField::Integer(*integer),
            FieldValue::Float(float) => SavedField::Float(*float),
            FieldValue::Boolean(boolean) => SavedField::Boolean(*boolean),
            FieldValue::String(text) => SavedField::String(text.clone()),
        }
    }
}

impl SavedField {
    /// Becomes a copy of `value`; a string into a string reuses the buffer.
    fn update_from(&mut self, value: &FieldValue) {
        if let (SavedField::String(saved), FieldValue::String(text)) = (&mut *self, value) {
            saved.clone_from(text);
            return;
        }
        *self = SavedField::from(value);
    }
}

impl From<&Point> for SavedPoint {
    fn from(point: &Point) -> SavedPoint {
        let fields = point
            .fields
            .iter()
            .map(|(name, value)| (name.clone(), SavedField::from(value)))
            .collect();
        SavedPoint {
            measurement: point.measurement.clone(),
            tags: point.tags.clone(),
            fields,
            timestamp: point.timestamp,
        }
    }
}

impl SavedPoint {
    /// Becomes a copy of `point`, reusing this copy's allocations: the measurement's and field
    /// names' buffers, and the tags when they are unchanged (a series' tags rarely change).
    fn update_from(&mut self, point: &Point) {
        self.measurement.clone_from(&point.measurement);
        if self.tags != point.tags {
            self.tags.clone_from(&point.tags);
        }
        let same_field_names = self.fields.len() == point.fields.len()
            && self
                .fields
                .keys()
                .zip(point.fields.keys())
                .all(|(saved, new)| saved == new);
        if same_field_names {
            for (saved, value) in self.fields.values_mut().zip(point.fields.values()) {
                saved.update_from(value);
            }
        } else {
            self.fields = SavedPoint::from(point).fields;
        }
        self.timestamp = point.timestamp;
    }

    fn to_point(&self) -> Point {
        let fields = self
            .fields
            .iter()
            .map(|(name, saved)| {
                let value = match saved {
                    SavedField::Integer(integer) => FieldValue::Integer(*integer),
                    SavedField::Float(float) => FieldValue::Float(*float),
                    SavedField::Boolean(boolean) => FieldValue::Boolean(*boolean),
                    SavedField::String(text) => FieldValue::String(text.clone()),
                };
                (name.clone(), value)
            })
            .collect();
        Point {
            measurement: self.measurement.clone(),
            tags: self.tags.clone(),
            fields,
            timestamp: self.timestamp,
        }
    }
}

/// The engine's state, serde-serialisable, for checkpoints. It holds state only: restore it into
/// an engine built from the same rules file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenericState {
    pub format_version: u32,
    rules: BTreeMap<String, RuleCheckpoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RuleCheckpoint {
    /// The rule's condition, field and key, as text: state is only restored into the same rule.
    fingerprint: String,
    state: RuleKeys,
}

/// Why a checkpoint was not restored at all.
#[derive(Debug, thiserror::Error)]
pub enum GenericRestoreError {
    #[error("checkpoint format version {found} is not {expected}; nothing restored")]
    Version { found: u32, expected: u32 },
}

/// Which rules of a checkpoint were restored. A rule of the engine not in `restored_rules` starts
/// clean; `discarded_rules` are in the checkpoint but no longer exist, or were changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOutcome {
    pub restored_rules: Vec<String>,
    pub discarded_rules: Vec<String>,
}

/// True when `min_interval` allows a firing now (and records it).
fn allow_firing(
    last_fired_ms: &mut Option<i64>,
    min_interval: Option<Duration>,
    now_ms: i64,
) -> bool {
    if let (Some(interval), Some(last)) = (min_interval, *last_fired_ms)
        && now_ms.saturating_sub(last) < duration_ms(interval)
    {
        return false;
    }
    *last_fired_ms = Some(now_ms);
    true
}

/// The rule's field in `point` when the point passes the rule's filters and the field is numeric
/// and finite: the point is then an observation of the rule.
fn observed_value(rule: &Rule, point: &Point) -> Option<f64> {
    if let Some(measurement) = &rule.measurement
        && !measurement.is_match(&point.measurement)
    {
        return None;
    }
    let tags_match = rule.tags.iter().all(|(tag, matcher)| {
        point
            .tags
            .get(tag)
            .is_some_and(|value| matcher.matches(value))
    });
    if !tags_match {
        return None;
    }
    let value = match point.fields.get(&rule.field)? {
        FieldValue::Integer(integer) => *integer as f64,
        FieldValue::Float(float) => *float,
        FieldValue::Boolean(_) | FieldValue::String(_) => return None,
    };
    value.is_finite().then_some(value)
}

fn by_values<'a>(rule: &'a Rule, point: &'a Point) -> impl Iterator<Item = &'a str> {
    rule.by
        .iter()
        .map(|tag| point.tags.get(tag).map_or("", String::as_str))
}

/// Writes the state map key into `buffer` and answers it: the JSON text of the `by` values
/// (`["a","b"]`), written by serde_json as `serde_json::Value::to_string` would, so checkpoints
/// keep their keys. The buffer is reused, so a known key costs no allocation.
fn write_state_key<'b>(rule: &Rule, point: &Point, buffer: &'b mut Vec<u8>) -> &'b str {
    buffer.clear();
    buffer.push(b'[');
    for (index, value) in by_values(rule, point).enumerate() {
        if index > 0 {
            buffer.push(b',');
        }
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buffer, value);
    }
    buffer.push(b']');
    // serde_json writes UTF-8, and so does the rest.
    std::str::from_utf8(buffer).unwrap_or_default()
}

/// `{{key}}`: `name=value,name=value` in `by` order.
fn key_display(rule: &Rule, point: &Point) -> String {
    rule.by
        .iter()
        .zip(by_values(rule, point))
        .map(|(tag, value)| format!("{tag}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn event_ms(point: &Point) -> i64 {
    point.timestamp.div_euclid(1_000_000)
}

/// Everything a firing renders its actions from.
struct Firing<'a> {
    group: &'a str,
    rule: &'a Rule,
    diagnose: &'static str,
    state: &'static str,
    stat: Option<Stat>,
    value: Option<f64>,
    point: &'a Point,
    event_time_ms: i64,
}

impl Firing<'_> {
    fn actions(&self) -> Vec<Action> {
        let key = key_display(self.rule, self.point);
        let context = TemplateContext {
            rule: &self.rule.name,
            key: &key,
            value: self.value,
            state: self.state,
            point: self.point,
            time_ms: self.event_time_ms,
        };
        let event_json = json!({
            "rule": self.rule.name,
            "key": key,
            "state": self.state,
            "stat": self.stat.map(|stat| stat.to_string()),
            "value": self.value,
            "point": serde_json::to_value(self.point).unwrap_or(Value::Null),
        })
        .to_string();
        let origin = |trigger: &str| ActionOrigin {
            group: self.group.to_owned(),
            policy: self.rule.name.clone(),
            trigger: trigger.to_owned(),
            node_id: self.point.tags.get("node_id").cloned(),
            node_name: self.point.tags.get("node_name").cloned(),
            diagnose: self.diagnose.to_owned(),
            event_time_ms: self.event_time_ms,
            event_json: event_json.clone(),
        };
        self.rule
            .actions
            .iter()
            .map(|action| match &action.template {
                ActionTemplate::ExecuteWorkflow {
                    deployment_id,
                    workflow,
                    parameters,
                    force,
                    allow_custom_parameters,
                    socket_timeout,
                    connect_timeout,
                } => Action::ExecuteWorkflow(ExecuteWorkflow {
                    deployment_id: deployment_id.render_text(&context),
                    workflow_id: workflow.render_text(&context),
                    parameters_json: parameters.render(&context).to_string(),
                    force: *force,
                    allow_custom_parameters: *allow_custom_parameters,
                    socket_timeout: *socket_timeout,
                    connect_timeout: *connect_timeout,
                    origin: origin(&action.trigger),
                }),
                ActionTemplate::Webhook {
                    url,
                    headers,
                    body,
                    timeout,
                } => Action::Webhook(Webhook {
                    url: url.render_text(&context),
                    headers: headers
                        .iter()
                        .map(|(name, value)| (name.clone(), value.render_text(&context)))
                        .collect(),
                    body_json: body.render(&context).to_string(),
                    timeout: *timeout,
                    origin: origin(&action.trigger),
                }),
            })
            .collect()
    }
}

impl GenericEngine {
    pub fn new(rules: RuleSet, limits: GenericLimits) -> GenericEngine {
        let states = rules
            .rules()
            .iter()
            .map(|rule| RuleState::fresh(&rule.condition))
            .collect();
        GenericEngine {
            rules,
            limits: GenericLimits {
                max_keys_per_rule: limits.max_keys_per_rule.max(1),
                max_samples_per_window: limits.max_samples_per_window.max(1),
                ..limits
            },
            states,
            key_buffer: Vec::new(),
        }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// How many keys `rule` holds state for (0 for an unknown rule).
    pub fn key_count(&self, rule: &str) -> usize {
        self.rules
            .rules()
            .iter()
            .zip(&self.states)
            .find(|(candidate, _)| candidate.name == rule)
            .map_or(0, |(_, state)| state.len())
    }

    /// Feeds one point to every rule; returns the actions of the threshold and state_change
    /// rules that fired, in rule order. Absence rules are refreshed here and fire only from
    /// [`GenericEngine::sweep`].
    pub fn on_point(&mut self, point: &Point, now_ms: i64) -> Vec<Action> {
        let limits = self.limits;
        let group = self.rules.group_name();
        let key_buffer = &mut self.key_buffer;
        let mut actions = Vec::new();
        for (rule, state) in self.rules.rules().iter().zip(self.states.iter_mut()) {
            let Some(value) = observed_value(rule, point) else {
                continue;
            };
            let key = write_state_key(rule, point, key_buffer);
            match (&rule.condition, state) {
                (
                    Condition::Threshold(comparison) | Condition::StateChange(comparison),
                    RuleState::Comparison(keys),
                ) => {
                    let observed = Observed {
                        key,
                        point,
                        value,
                        now_ms,
                    };
                    let Some((diagnose, state, stat_value, at_ms)) =
                        observe_comparison(rule, comparison, keys, observed, &limits)
                    else {
                        continue;
                    };
                    let firing = Firing {
                        group,
                        rule,
                        diagnose,
                        state,
                        stat: Some(comparison.stat),
                        value: Some(stat_value),
                        point,
                        event_time_ms: at_ms,
                    };
                    actions.extend(firing.actions());
                }
                (Condition::Absence { after }, RuleState::Absence(keys)) => {
                    let observed = Observed {
                        key,
                        point,
                        value,
                        now_ms,
                    };
                    observe_absence(keys, observed, duration_ms(*after), &limits);
                }
                // Unreachable by construction (states built from the same rules); skip.
                _ => {}
            }
        }
        actions
    }

    /// The periodic sweep: absence rules fire once for each key silent past `after`; idle keys
    /// are forgotten. Returns the actions in rule order, then key order.
    pub fn sweep(&mut self, now_ms: i64) -> Vec<Action> {
        let idle_ms = duration_ms(self.limits.idle_forget_after);
        let group = self.rules.group_name();
        let mut actions = Vec::new();
        for (rule, state) in self.rules.rules().iter().zip(self.states.iter_mut()) {
            match (&rule.condition, state) {
                (Condition::Absence { after }, RuleState::Absence(keys)) => {
                    let after_ms = duration_ms(*after);
                    for silent in keys.values_mut() {
                        let deadline_ms = silent.last_event_ms.saturating_add(after_ms);
                        if silent.fired || now_ms <= deadline_ms {
                            continue;
                        }
                        silent.fired = true;
                        if !allow_firing(&mut silent.last_fired_ms, rule.min_interval, now_ms) {
                            continue;
                        }
                        let point = silent.last_point.to_point();
                        let firing = Firing {
                            group,
                            rule,
                            diagnose: DIAGNOSE_ABSENCE,
                            state: STATE_ABSENT,
                            stat: None,
                            value: observed_value(rule, &point),
                            point: &point,
                            event_time_ms: now_ms,
                        };
                        actions.extend(firing.actions());
                    }
                    keys.retain(|state| {
                        !(state.fired && now_ms.saturating_sub(state.last_seen_ms) > idle_ms)
                    });
                }
                (_, RuleState::Comparison(keys)) => {
                    // The idle keys are the least recently seen: the front of the index.
                    keys.forget_oldest_while(|last_seen_ms| {
                        now_ms.saturating_sub(last_seen_ms) > idle_ms
                    });
                }
                // An absence state for a comparison rule: unreachable by construction.
                (_, RuleState::Absence(_)) => {}
            }
        }
        actions
    }

    /// A serialisable copy of all state.
    pub fn checkpoint(&self) -> GenericState {
        GenericState {
            format_version: GENERIC_STATE_FORMAT_VERSION,
            rules: self
                .rules
                .rules()
                .iter()
                .zip(&self.states)
                .map(|(rule, state)| {
                    let checkpoint = RuleCheckpoint {
                        fingerprint: rule.state_fingerprint(),
                        state: state.saved(),
                    };
                    (rule.name.clone(), checkpoint)
                })
                .collect(),
        }
    }

    /// Replaces all state with a checkpoint's. A rule's state is restored when the checkpoint has
    /// a rule of that name with the same condition, field and `by`; every other rule starts
    /// clean. The limits are applied to what is restored.
    pub fn restore(&mut self, state: GenericState) -> Result<RestoreOutcome, GenericRestoreError> {
        if state.format_version != GENERIC_STATE_FORMAT_VERSION {
            return Err(GenericRestoreError::Version {
                found: state.format_version,
                expected: GENERIC_STATE_FORMAT_VERSION,
            });
        }
        Ok(self.install(state.rules))
    }

    /// Swaps in a new rule set (a reloaded file), keeping the state of every unchanged rule.
    pub fn replace_rules(&mut self, rules: RuleSet) -> RestoreOutcome {
        let saved = self.checkpoint();
        self.rules = rules;
        self.install(saved.rules)
    }

    fn install(&mut self, mut saved: BTreeMap<String, RuleCheckpoint>) -> RestoreOutcome {
        let mut outcome = RestoreOutcome::default();
        self.states = Vec::with_capacity(self.rules.rules().len());
        for rule in self.rules.rules() {
            let mut state = RuleState::fresh(&rule.condition);
            if let Some(checkpoint) = saved.remove(&rule.name) {
                if checkpoint.fingerprint == rule.state_fingerprint()
                    && checkpoint.state.fits(&rule.condition)
                {
                    state = RuleState::restored(checkpoint.state, &self.limits);
                    outcome.restored_rules.push(rule.name.clone());
                } else {
                    outcome.discarded_rules.push(rule.name.clone());
                }
            }
            self.states.push(state);
        }
        outcome.discarded_rules.extend(saved.into_keys());
        outcome.discarded_rules.sort();
        outcome
    }
}

/// One observation of a rule: the point, its key text and the rule's field in it.
struct Observed<'a> {
    key: &'a str,
    point: &'a Point,
    value: f64,
    now_ms: i64,
}

/// Feeds one observation to a comparison rule's key; when the key changed state and may fire,
/// returns `(diagnose, state, stat value, event time)`.
fn observe_comparison(
    rule: &Rule,
    comparison: &Comparison,
    keys: &mut KeyedStates<ComparisonKey>,
    observed: Observed<'_>,
    limits: &GenericLimits,
) -> Option<(&'static str, &'static str, f64, i64)> {
    let Observed {
        key,
        point,
        value,
        now_ms,
    } = observed;
    let time_ms = event_ms(point);
    let new = || ComparisonKey::new(time_ms, now_ms);
    keys.update(key, limits.max_keys_per_rule, new, |entry| {
        entry.last_seen_ms = now_ms;
        let sample = Sample { time_ms, value };
        if !entry.window.insert(
            sample,
            duration_ms(comparison.window),
            limits.max_samples_per_window,
        ) {
            return None;
        }
        let at_ms = entry.window.newest_ms()?;
        let stat_value = entry.window.compute(comparison.stat)?;
        let breached = entry.evaluate(comparison.is_breached_by(stat_value), at_ms, comparison)?;
        let (diagnose, state) = match (&rule.condition, breached) {
            (Condition::Threshold(_), true) => (DIAGNOSE_THRESHOLD, STATE_BREACHED),
            (Condition::StateChange(_), true) => (DIAGNOSE_STATE_CHANGE_BREACHED, STATE_BREACHED),
            (Condition::StateChange(_), false) => (DIAGNOSE_STATE_CHANGE_OK, STATE_OK),
            // A threshold's recovery is silent; absence never gets here.
            _ => return None,
        };
        if !allow_firing(&mut entry.last_fired_ms, rule.min_interval, now_ms) {
            return None;
        }
        Some((diagnose, state, stat_value, at_ms))
    })
}

fn observe_absence(
    keys: &mut KeyedStates<AbsenceKey>,
    observed: Observed<'_>,
    after_ms: i64,
    limits: &GenericLimits,
) {
    let Observed {
        key, point, now_ms, ..
    } = observed;
    let time_ms = event_ms(point);
    let new = || AbsenceKey {
        last_event_ms: time_ms,
        last_point: SavedPoint::from(point),
        fired: false,
        last_seen_ms: now_ms,
        last_fired_ms: None,
    };
    keys.update(key, limits.max_keys_per_rule, new, |entry| {
        entry.last_seen_ms = now_ms;
        if time_ms >= entry.last_event_ms {
            entry.last_event_ms = time_ms;
            entry.last_point.update_from(point);
        }
        // Alive again only on an observation that is itself not already stale.
        if entry.fired && time_ms.saturating_add(after_ms) >= now_ms {
            entry.fired = false;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_in_step(engine: &GenericEngine) -> bool {
        engine.states.iter().all(|state| match state {
            RuleState::Comparison(keys) => keys.index_in_step(),
            RuleState::Absence(keys) => keys.index_in_step(),
        })
    }

    proptest::proptest! {
        /// The index stays in step with the keys through observations (some with the caller's
        /// clock going back), evictions, sweeps that forget and rule reloads.
        #[test]
        fn the_index_stays_in_step_with_the_keys(
            steps in proptest::collection::vec((0u8..6, -3i64..40, proptest::bool::ANY), 1..120),
            max_keys in 1usize..5,
        ) {
            let rules = r#"
                [[rule]]
                name = "high"
                by = ["node_id"]
                condition = { kind = "threshold", stat = "last", op = ">", value = 1.0 }
                [[rule]]
                name = "silent"
                by = ["node_id"]
                condition = { kind = "absence", after = "5s" }
            "#;
            let limits = GenericLimits {
                max_keys_per_rule: max_keys,
                max_samples_per_window: 3,
                idle_forget_after: Duration::from_secs(20),
            };
            let rule_set = RuleSet::parse(rules).map_err(|error| {
                proptest::test_runner::TestCaseError::fail(error.to_string())
            })?;
            let mut engine = GenericEngine::new(rule_set.clone(), limits);
            let mut now_ms = 1_000_000i64;
            for (step, (node, advance_s, sweep)) in steps.into_iter().enumerate() {
                now_ms += advance_s * 1000;
                if sweep {
                    engine.sweep(now_ms);
                } else {
                    let mut point = Point::with_value("cpu", f64::from(node), now_ms * 1_000_000);
                    point.set_tag("node_id", format!("n{node}"));
                    engine.on_point(&point, now_ms);
                }
                if step % 17 == 16 {
                    engine.replace_rules(rule_set.clone());
                }
                proptest::prop_assert!(engine_in_step(&engine));
            }
        }
    }
}
