//! The one place where action outcomes are both logged and counted.
//!
//! Metrics: `sluice_actions_total{kind, outcome}`, `kind` being `execute_workflow` or
//! `webhook`, `outcome` one of `succeeded`, `already_running`, `skipped_node_not_started`,
//! `skipped_interval`, `skipped_duplicate_pending`, `failed_permanent`, `failed_transient`.
//! `sluice_action_retries_total{kind}` counts attempts after the first.

use crate::executor::Outcome;

/// An action finished with `outcome`. Logs never carry tokens or webhook headers.
pub(crate) fn action_finished(kind: &'static str, target: &str, outcome: &Outcome) {
    let label = outcome.label();
    metrics::counter!("sluice_actions_total", "kind" => kind, "outcome" => label).increment(1);
    match outcome {
        Outcome::Failed { permanent, detail } => {
            tracing::warn!(kind, target, permanent, error = %detail, "action failed");
        }
        Outcome::Succeeded { execution_id } => {
            tracing::info!(kind, target, execution_id, "action succeeded");
        }
        _ => tracing::info!(kind, target, outcome = label, "action not executed"),
    }
}

/// A transient failure is retried after `delay_ms`.
pub(crate) fn action_retried(
    kind: &'static str,
    target: &str,
    attempt: u32,
    detail: &str,
    delay_ms: u128,
) {
    metrics::counter!("sluice_action_retries_total", "kind" => kind).increment(1);
    tracing::debug!(
        kind,
        target,
        attempt,
        error = detail,
        delay_ms,
        "action retried"
    );
}
