//! [`RuleEngine`]: what the rule stage asks of every engine, the manager's policies
//! ([`Engine`]) and the generic rules ([`GenericEngine`]) alike, and the one input they share,
//! [`RulePoint`].
//!
//! The stage feeds each metric to every engine, sweeps them all on one clock, asks each for the
//! [`Restraints`] of the actions it emitted, and saves and restores them all in one checkpoint
//! ([`RuleStates`]). The purity contract of the crate holds for the trait too: no I/O, no clock;
//! `now_ms` comes from the caller.

use std::collections::BTreeMap;

use sluice_core::action::{Action, Restraints};
use sluice_core::point::Point;

use crate::generic::{GenericEngine, GenericRestoreError, GenericState};
use crate::manager_policies::{Engine, EngineState, MetricEvent, RestoreError};

/// One metric as the rule engines see it. Each part is filled only when an engine that reads it
/// is loaded, so the hot path builds nothing nobody reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RulePoint {
    /// The Diamond metric's identity and value: what the manager's policies read. Filled when its
    /// deployment has policies loaded.
    pub metric: Option<MetricEvent>,
    /// The normalised point: what generic rules read. Filled when generic rules are loaded.
    pub point: Option<Point>,
}

impl RulePoint {
    /// True when no engine would read it.
    pub fn is_empty(&self) -> bool {
        self.metric.is_none() && self.point.is_none()
    }
}

/// Every engine's saved state, as the rule stage's checkpoint holds it. Each engine writes its
/// own part ([`RuleEngine::checkpoint`]) and takes it back ([`RuleEngine::restore`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleStates {
    /// The manager's policies (there is one such engine).
    pub manager_policies: Option<EngineState>,
    /// Generic rules' state, by rules file (group) name.
    pub generic: BTreeMap<String, GenericState>,
}

/// What of an engine's saved state was not restored; the rest was.
#[derive(Debug, thiserror::Error)]
pub enum RuleRestoreError {
    #[error("manager policies: {0}")]
    ManagerPolicies(#[from] RestoreError),
    #[error("generic rules `{group}`: {error}")]
    Generic {
        group: String,
        error: GenericRestoreError,
    },
    /// Not a failure of the checkpoint: these rules changed (or went) since it was written, and
    /// start clean.
    #[error(
        "generic rules `{group}`: rules changed since the checkpoint start clean: {discarded:?}"
    )]
    GenericRulesChanged {
        group: String,
        discarded: Vec<String>,
    },
}

/// A rule engine as the rule stage drives it.
pub trait RuleEngine: Send {
    /// Feeds one metric; answers the actions that fired, in the engine's order.
    fn on_point(&mut self, point: &RulePoint, now_ms: i64) -> Vec<Action>;

    /// The periodic sweep (absence and host-failure expiry, forgetting idle keys).
    fn sweep(&mut self, now_ms: i64) -> Vec<Action>;

    /// The restraints the executor applies to `action`, which this engine emitted.
    fn restraints(&self, action: &Action) -> Restraints;

    /// Writes this engine's state into `states`.
    fn checkpoint(&self, states: &mut RuleStates);

    /// Takes this engine's state out of `states` (nothing there: it stays as it is).
    fn restore(&mut self, states: &mut RuleStates) -> Result<(), RuleRestoreError>;
}

impl RuleEngine for Engine {
    fn on_point(&mut self, point: &RulePoint, now_ms: i64) -> Vec<Action> {
        match &point.metric {
            Some(metric) => self.on_metric(metric, now_ms),
            None => Vec::new(),
        }
    }

    fn sweep(&mut self, now_ms: i64) -> Vec<Action> {
        Engine::sweep(self, now_ms)
    }

    /// The firing policy's own; the manager's defaults when it is gone already.
    fn restraints(&self, action: &Action) -> Restraints {
        let Action::ExecuteWorkflow(workflow) = action else {
            return Restraints::default();
        };
        let origin = &workflow.origin;
        self.policy(&workflow.deployment_id, &origin.group, &origin.policy)
            .map_or_else(Restraints::default, |policy| policy.restraints)
    }

    fn checkpoint(&self, states: &mut RuleStates) {
        states.manager_policies = Some(Engine::checkpoint(self));
    }

    fn restore(&mut self, states: &mut RuleStates) -> Result<(), RuleRestoreError> {
        match states.manager_policies.take() {
            Some(state) => Ok(Engine::restore(self, state)?),
            None => Ok(()),
        }
    }
}

impl RuleEngine for GenericEngine {
    fn on_point(&mut self, point: &RulePoint, now_ms: i64) -> Vec<Action> {
        match &point.point {
            Some(point) => GenericEngine::on_point(self, point, now_ms),
            None => Vec::new(),
        }
    }

    fn sweep(&mut self, now_ms: i64) -> Vec<Action> {
        GenericEngine::sweep(self, now_ms)
    }

    /// None: generic rules have their own `min_interval`, applied in the engine.
    fn restraints(&self, _action: &Action) -> Restraints {
        Restraints::NONE
    }

    fn checkpoint(&self, states: &mut RuleStates) {
        states.generic.insert(
            self.rules().group_name().to_owned(),
            GenericEngine::checkpoint(self),
        );
    }

    fn restore(&mut self, states: &mut RuleStates) -> Result<(), RuleRestoreError> {
        let group = self.rules().group_name().to_owned();
        let Some(state) = states.generic.remove(&group) else {
            return Ok(());
        };
        match GenericEngine::restore(self, state) {
            Ok(outcome) if outcome.discarded_rules.is_empty() => Ok(()),
            Ok(outcome) => Err(RuleRestoreError::GenericRulesChanged {
                group,
                discarded: outcome.discarded_rules,
            }),
            Err(error) => Err(RuleRestoreError::Generic { group, error }),
        }
    }
}
