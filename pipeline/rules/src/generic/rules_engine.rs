//! [`GenericEngine`]: feeding points and sweeps to the rules, the transitions that fire, and
//! checkpoints (the state itself is in `key_state`, the rendering of a firing in `firing`).
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

use sluice_core::action::Action;
use sluice_core::point::{FieldValue, Point};

use super::config::{Comparison, Condition, Rule, RuleSet};
use super::duration_ms;
use super::firing::Firing;
use super::key_state::{
    AbsenceKey, ComparisonKey, GENERIC_STATE_FORMAT_VERSION, GenericRestoreError, GenericState,
    RestoreOutcome, RuleCheckpoint, RuleState, SavedPoint,
};
use super::window::Sample;
use crate::keyed::KeyedStates;

/// `diagnose` of a threshold rule's breach.
pub const DIAGNOSE_THRESHOLD: &str = "threshold";
/// `diagnose` of an absence (deadman) rule's firing.
pub const DIAGNOSE_ABSENCE: &str = "absence";
/// `diagnose` of a state_change rule going ok -> breached.
pub const DIAGNOSE_STATE_CHANGE_BREACHED: &str = "state_change:breached";
/// `diagnose` of a state_change rule going breached -> ok.
pub const DIAGNOSE_STATE_CHANGE_OK: &str = "state_change:ok";

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

pub(super) fn by_values<'a>(rule: &'a Rule, point: &'a Point) -> impl Iterator<Item = &'a str> {
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
fn event_ms(point: &Point) -> i64 {
    point.timestamp.div_euclid(1_000_000)
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
