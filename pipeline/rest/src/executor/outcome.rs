//! What became of an action: its [`Outcome`] and the [`Execution`] (outcome and events) the
//! executor answers, with the helpers that build them.

use serde_json::json;
use tokio::time::Instant;

use super::calls::CallFailure;
use crate::outcome_events::{EventContext, OutcomeEvent, OutcomeEventKind, outcome_event};

/// What became of one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The manager created the execution (for a webhook: the target answered 2xx, and
    /// `execution_id` is empty).
    Succeeded { execution_id: String },
    /// The manager refused because an execution of the deployment is active: the workflow is
    /// already running, which is not a failure of ours.
    AlreadyRunning,
    /// `is_node_started_before_workflow`: the node instance is not `started` (or unknown).
    SkippedNodeNotStarted,
    /// `interval_between_workflows`: the (deployment, node) triggered too recently.
    SkippedInterval,
    /// The same action (deployment, workflow, parameters) is in flight in this executor.
    SkippedDuplicatePending,
    /// `permanent`: the request was refused (4xx) or cannot be built; otherwise the manager
    /// stayed unreachable or failing until the retry deadline.
    Failed { permanent: bool, detail: String },
}

impl Outcome {
    /// The `outcome` label of `sluice_actions_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Succeeded { .. } => "succeeded",
            Outcome::AlreadyRunning => "already_running",
            Outcome::SkippedNodeNotStarted => "skipped_node_not_started",
            Outcome::SkippedInterval => "skipped_interval",
            Outcome::SkippedDuplicatePending => "skipped_duplicate_pending",
            Outcome::Failed {
                permanent: true, ..
            } => "failed_permanent",
            Outcome::Failed {
                permanent: false, ..
            } => "failed_transient",
        }
    }
}

/// One action's outcome and the outcome events emitted on the way, in order:
/// `processing_trigger` before the request, then `trigger_succeeded` or `trigger_failed`.
/// Skipped actions emit none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub outcome: Outcome,
    pub events: Vec<OutcomeEvent>,
}

pub(super) fn clock(now_ms: i64, started: Instant) -> i64 {
    now_ms.saturating_add(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX))
}

pub(super) fn skipped(outcome: Outcome) -> Execution {
    Execution {
        outcome,
        events: Vec::new(),
    }
}

/// A failed action with its `trigger_failed` event.
pub(super) fn failed(
    context: &EventContext<'_>,
    detail: String,
    permanent: bool,
    attempts: u32,
    time_ms: i64,
) -> Execution {
    let event = outcome_event(
        OutcomeEventKind::TriggerFailed,
        context,
        &format!("Trigger '{}' failed: {detail}", context.origin.trigger),
        json!({"error": detail, "permanent": permanent, "attempts": attempts}),
        time_ms,
    );
    Execution {
        outcome: Outcome::Failed { permanent, detail },
        events: vec![event],
    }
}

/// A call that failed after `events` were emitted: its `trigger_failed` event follows them.
pub(super) fn call_failed(
    context: &EventContext<'_>,
    mut events: Vec<OutcomeEvent>,
    failure: CallFailure,
    time_ms: i64,
) -> Execution {
    let mut execution = failed(
        context,
        failure.detail,
        failure.permanent,
        failure.attempts,
        time_ms,
    );
    events.append(&mut execution.events);
    Execution {
        outcome: execution.outcome,
        events,
    }
}
