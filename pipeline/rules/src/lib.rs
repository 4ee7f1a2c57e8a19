//! `sluice-rules`: the pure rule engine that replaces the Cloudify manager's Riemann policies.
//!
//! # Place in the flow
//!
//! ```text
//! normalise ──► rule stage (sluice-rest) ──RulePoint──► engines (this crate) ──► Action ──► executor
//!                 ▲ groups files (manager-riemann start/stop), clock ticks, checkpoints   (restraints, REST, outcomes)
//! ```
//!
//! The rule stage drives both engines through [`RuleEngine`]. Directly, the caller turns each Diamond metric into a [`MetricEvent`] and hands it to
//! [`Engine::on_metric`]; every 5 s it calls [`Engine::sweep`] (host-failure expiry, forgetting
//! idle keys). Both return [`sluice_core::action::Action`]s for the executor, which applies the
//! restraints (`is_node_started_before_workflow`, `interval_between_workflows`) exposed per
//! policy by [`Engine::policy`]; the engine does not apply them.
//!
//! # Purity contract
//!
//! No I/O, no clock, no randomness: every call takes `now_ms` (Unix ms) from the caller, and the
//! same calls in the same order give the same actions in the same order (all maps are ordered).
//! State survives restarts through [`Engine::checkpoint`] / [`Engine::restore`]
//! (serde-serialisable, carrying each deployment's groups file), so a restart neither re-fires a
//! trigger nor forgets a silent host.
//!
//! # Example
//!
//! ```
//! use sluice_rules::{Engine, EngineLimits, Groups, MetricEvent};
//!
//! let groups = Groups::parse(r#"{"web": {"members": ["vm"], "policies": {"down": {
//!     "type": "cloudify.policies.types.host_failure", "properties": {"service": ["cpu"]},
//!     "triggers": {"heal": {"type": "cloudify.policies.triggers.execute_workflow",
//!         "parameters": {"workflow": "heal",
//!             "workflow_parameters": {"node_instance_id": {"get_property": ["SELF", "node_id"]}}}}}}}}}"#)?;
//! let mut engine = Engine::new(EngineLimits::default());
//! engine.load_deployment("dep", groups);
//! let event = MetricEvent {
//!     deployment_id: "dep".into(), node_name: "vm".into(), node_id: "vm_1".into(), host: None,
//!     service: "dep.vm.vm_1.cpu.total.user".into(), metric: 3.2, time_ms: 0, ttl: None,
//! };
//! assert!(engine.on_metric(&event, 0).is_empty());
//! assert!(engine.sweep(60_000).is_empty()); // silent exactly the ttl: still alive
//! assert_eq!(engine.sweep(65_000).len(), 1); // the next sweep fires `heal`
//! # Ok::<(), sluice_rules::GroupsError>(())
//! ```
//!
//! # Modules
//!
//! - [`groups`]: the deployment's `groups` file, parsed and validated ([`Groups::parse`]).
//! - [`manager_policies`]: the [`Engine`] of the manager's policies, its per-key state, and the
//!   exact semantics chosen (see there).
//! - [`RuleEngine`] (module `rule_engine`): what the rule stage asks of both engines, fed one
//!   [`RulePoint`] per metric, with one checkpoint form, [`RuleStates`].
//! - [`generic`]: the standalone tier's [`GenericEngine`]: threshold, absence and state-change
//!   rules over moving windows, from a TOML [`RuleSet`] (its layout and semantics are there).

mod exact_float;
pub mod generic;
pub mod groups;
mod keyed;
pub mod manager_policies;
mod rule_engine;

pub use generic::{
    CompareOp, Comparison, Condition, GenericEngine, GenericLimits, GenericRestoreError,
    GenericState, RestoreOutcome, Rule, RuleAction, RuleConfigError, RuleSet, Sample, Stat,
    TagMatcher,
};
pub use groups::{
    Group, Groups, GroupsError, Policy, PolicyKind, Restraints, ThresholdSpec, Trigger,
};
pub use manager_policies::{
    DIAGNOSE_EWMA, DIAGNOSE_HOST_FAILURE, DIAGNOSE_THRESHOLD, Engine, EngineLimits, EngineState,
    MetricEvent, RestoreError,
};
pub use rule_engine::{RuleEngine, RulePoint, RuleRestoreError, RuleStates};
