//! The generic engine's per-rule, per-key state ([`RuleState`], what the windows and state
//! machines hold) and its checkpoint form ([`GenericState`]): what survives a restart, and how a
//! saved rule is matched to a (possibly changed) rule on restore.
//!
//! Floats are saved as their shortest round-trip text (see `crate::exact_float`), because JSON
//! has no NaN and serde_json's default float parser may be off by one ulp.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_core::point::{FieldValue, Point};

use super::config::{Comparison, Condition};
use super::duration_ms;
use super::rules_engine::GenericLimits;
use super::window::Window;
use crate::keyed::{KeyedStates, Stamped};

/// The version of [`GenericState`]'s layout.
pub const GENERIC_STATE_FORMAT_VERSION: u32 = 1;

/// One rule's live state: its keys, with their eviction order (derived from the keys, so rebuilt
/// on restore instead of saved). A checkpoint saves the plain maps ([`RuleKeys`]).
#[derive(Debug)]
pub(super) enum RuleState {
    Comparison(KeyedStates<ComparisonKey>),
    Absence(KeyedStates<AbsenceKey>),
}

impl RuleState {
    pub(super) fn fresh(condition: &Condition) -> RuleState {
        match condition {
            Condition::Threshold(_) | Condition::StateChange(_) => {
                RuleState::Comparison(KeyedStates::default())
            }
            Condition::Absence { .. } => RuleState::Absence(KeyedStates::default()),
        }
    }

    /// Saved keys with the limits applied: beyond the key limit the least recently seen keys go
    /// (those eviction would have taken first), and each window keeps its newest samples.
    pub(super) fn restored(keys: RuleKeys, limits: &GenericLimits) -> RuleState {
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
    pub(super) fn saved(&self) -> RuleKeys {
        match self {
            RuleState::Comparison(keys) => RuleKeys::Comparison {
                keys: keys.as_map().clone(),
            },
            RuleState::Absence(keys) => RuleKeys::Absence {
                keys: keys.as_map().clone(),
            },
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            RuleState::Comparison(keys) => keys.len(),
            RuleState::Absence(keys) => keys.len(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum RuleKeys {
    Comparison {
        keys: BTreeMap<String, ComparisonKey>,
    },
    Absence {
        keys: BTreeMap<String, AbsenceKey>,
    },
}

impl RuleKeys {
    /// True when these keys are of the kind `condition`'s rule keeps.
    pub(super) fn fits(&self, condition: &Condition) -> bool {
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
pub(super) struct ComparisonKey {
    pub(super) window: Window,
    /// The state the actions have been told about (every key starts ok).
    pub(super) breached: bool,
    /// The comparison's latest result and the event time it started holding at.
    pub(super) candidate_breached: bool,
    pub(super) candidate_since_ms: i64,
    /// Caller's clock at the last observation: eviction and idle forgetting.
    pub(super) last_seen_ms: i64,
    /// Caller's clock at the last firing: `min_interval`.
    pub(super) last_fired_ms: Option<i64>,
}

impl ComparisonKey {
    pub(super) fn new(event_ms: i64, now_ms: i64) -> ComparisonKey {
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
    pub(super) fn evaluate(
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
pub(super) struct AbsenceKey {
    /// Newest event time observed, Unix ms.
    pub(super) last_event_ms: i64,
    /// The point of that observation, for the templates.
    pub(super) last_point: SavedPoint,
    /// Fired for the current silence; cleared when it is alive again.
    pub(super) fired: bool,
    pub(super) last_seen_ms: i64,
    pub(super) last_fired_ms: Option<i64>,
}

/// A [`Point`] with its floats stored exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct SavedPoint {
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
    pub(super) fn update_from(&mut self, point: &Point) {
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

    pub(super) fn to_point(&self) -> Point {
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
    pub(super) rules: BTreeMap<String, RuleCheckpoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct RuleCheckpoint {
    /// The rule's condition, field and key, as text: state is only restored into the same rule.
    pub(super) fingerprint: String,
    pub(super) state: RuleKeys,
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
