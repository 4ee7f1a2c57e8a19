//! The rule stage and the action executor: runs the rule engines on the metrics stream, and
//! what they ask for against the Cloudify manager's REST API (or a webhook), reporting each
//! outcome as a Cloudify event.
//!
//! In the flow, the rule engines (pure, no I/O; design invariant 5) emit
//! [`Action`](sluice_core::action::Action)s; the [`stage`] (the rule stage) hands each to the
//! [`Executor`], which turns it into at most one request that succeeds, applying its
//! [`Restraints`], de-duplication and retries, and answers an [`Execution`]: the [`Outcome`]
//! (counted as `sluice_actions_total{kind, outcome}`) and the [`OutcomeEvent`]s
//! (`processing_trigger`, `trigger_succeeded`, `trigger_failed`) the old Riemann policy engine
//! put on the events path, for the stage to send to Elasticsearch beside the manager's events.
//!
//! Modules:
//!
//! - [`stage`]: the rule stage ([`stage::start`], [`stage::RuleFeed`]) and its checkpoint.
//! - `settings`: [`ManagerSettings`] (URL, [`ManagerApi`] V3 or V4 with its token as a
//!   [`secrecy::SecretString`], retry policy and deadline).
//! - `executor`: [`Executor`], the restraints, the requests and the answer-to-outcome table.
//! - `outcome_events`: the typed outcome events ([`OutcomeEvent`] of an [`OutcomeEventKind`]),
//!   their JSON bodies in the manager's event shape, and [`policy_event`], emitted when a policy
//!   fires.
//! - `error`: [`RestError`], for [`Executor::new`] only; executing never errors.
//! - `telemetry` (private): the one place that both logs and counts outcomes.
//!
//! # Restraint order, and why
//!
//! For `execute_workflow`, in this order, each before any request it would make useless:
//!
//! 1. **Duplicate pending**: no second identical action (deployment, workflow, parameters)
//!    while one is in flight in this executor -> [`Outcome::SkippedDuplicatePending`]. It is
//!    first because it needs no I/O, and the claim it makes covers the node check too, so two
//!    identical actions arriving together make one GET and one POST. A skipped duplicate does
//!    not touch the interval's record.
//! 2. **Node started** (`is_node_started_before_workflow`, when the origin has a `node_id`):
//!    `GET .../node-instances/<node_id>` must answer `state == "started"`; 404 or another
//!    state -> [`Outcome::SkippedNodeNotStarted`], no POST. As in the old engine, it comes
//!    before the interval, so a skip here does not use up the interval.
//! 3. **Interval** (`interval_between_workflows`, zero disables): per (deployment, node_id),
//!    the last trigger must be at least the interval older than `now_ms` (the caller's clock)
//!    -> else [`Outcome::SkippedInterval`]. The time is recorded when the check passes, even if
//!    the call then fails, so a failing manager is not hammered by every breach. The records
//!    are exported and restored ([`Executor::trigger_times`]) so a restart keeps them, and a
//!    record is forgotten once its interval has passed.
//!
//! Webhooks have only the duplicate-pending restraint (keyed by URL and body): they carry no
//! deployment, and the node check is about the manager.
//!
//! Skipped actions emit no events. Transient failures (408, 429, 5xx, timeouts, connection
//! errors) are retried with [`RetryPolicy`](sluice_core::retry::RetryPolicy)'s capped,
//! jittered backoff while the next attempt would start before `retry_deadline` (counted from
//! the action's start, shared by the node check and the POST).
//!
//! # Secrets
//!
//! The V4 token and webhook header values are sent as sensitive header values, and are never
//! part of `Debug`, errors, outcome details, events or logs; webhook URLs are logged and
//! reported without user information or query.

mod error;
mod executor;
mod outcome_events;
mod settings;
pub mod stage;
mod telemetry;

pub use error::RestError;
pub use executor::{Execution, Executor, Outcome, TriggerTime};
pub use outcome_events::{OutcomeEvent, OutcomeEventKind, policy_event};
pub use settings::{DEFAULT_MANAGER_URL, ManagerApi, ManagerSettings};
/// The restraints an action runs under: one type for the groups file, the rule stage and the
/// executor.
pub use sluice_core::action::Restraints;
