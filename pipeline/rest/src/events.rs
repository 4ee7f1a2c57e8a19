//! The outcome events: Cloudify event bodies (`type: "cloudify_event"`) as the old policy
//! engine put them on the events path, so that they sit beside the manager's own events in
//! Elasticsearch and the manager's queries read them.
//!
//! Shape (section 3 of the wire formats): `event_type` is `policy` (a policy fired, from
//! [`policy_event`], before any restraint), `processing_trigger` (before the request),
//! `trigger_succeeded` or `trigger_failed`; `context` carries the manager's four
//! always-present fields (`blueprint_id`, `deployment_id`, `execution_id`, `workflow_id`) plus
//! the policy engine's `group`, `policy`, `trigger`, `trigger-parameters` (hyphen) and the
//! node's `node_id`, `node_name`; `message` is `{"text", "args"}` (the policy engine's `args`,
//! not `arguments`); `timestamp` is the policy engine's `2016-06-15 10:13:20.123` (UTC, no
//! zone); `message_code` is null.

use serde_json::{Value, json};
use sluice_core::action::{Action, ActionOrigin};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Policy,
    ProcessingTrigger,
    TriggerSucceeded,
    TriggerFailed,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Policy => "policy",
            EventType::ProcessingTrigger => "processing_trigger",
            EventType::TriggerSucceeded => "trigger_succeeded",
            EventType::TriggerFailed => "trigger_failed",
        }
    }
}

/// What the events of one action share.
pub(crate) struct EventContext<'a> {
    pub(crate) deployment_id: Option<&'a str>,
    pub(crate) workflow_id: Option<&'a str>,
    /// The workflow parameters (or the webhook body), as JSON.
    pub(crate) trigger_parameters: &'a Value,
    pub(crate) origin: &'a ActionOrigin,
}

/// One outcome event's JSON body.
pub(crate) fn outcome_event(
    event_type: EventType,
    context: &EventContext<'_>,
    text: &str,
    args: Value,
    time_ms: i64,
) -> String {
    let origin = context.origin;
    json!({
        "type": "cloudify_event",
        "event_type": event_type.as_str(),
        "message_code": null,
        "timestamp": policy_engine_timestamp(time_ms),
        "message": {"text": text, "args": args},
        "context": {
            "blueprint_id": null,
            "deployment_id": context.deployment_id,
            // The execution these events belong to: none; the one created is in `args`, so
            // the manager's per-execution event queries do not pick these up.
            "execution_id": null,
            "workflow_id": context.workflow_id,
            "group": origin.group,
            "policy": origin.policy,
            "trigger": origin.trigger,
            "trigger-parameters": context.trigger_parameters,
            "node_id": origin.node_id,
            "node_name": origin.node_name,
        },
    })
    .to_string()
}

/// The `policy` event of an action the rules emitted: which policy fired, why, and on what
/// event. The caller emits it when the action is handed to the executor, so the events path
/// shows every firing, also those a restraint then skips.
pub fn policy_event(action: &Action, time_ms: i64) -> String {
    let (origin, deployment_id, workflow_id, parameters) = match action {
        Action::ExecuteWorkflow(workflow) => (
            &workflow.origin,
            Some(workflow.deployment_id.as_str()),
            Some(workflow.workflow_id.as_str()),
            serde_json::from_str(&workflow.parameters_json).unwrap_or(Value::Null),
        ),
        Action::Webhook(webhook) => (
            &webhook.origin,
            None,
            None,
            serde_json::from_str(&webhook.body_json).unwrap_or(Value::Null),
        ),
    };
    let context = EventContext {
        deployment_id,
        workflow_id,
        trigger_parameters: &parameters,
        origin,
    };
    let node = origin.node_id.as_deref().unwrap_or("(group)");
    let text = format!(
        "Policy '{}' of group '{}' fired for {node}: {}",
        origin.policy, origin.group, origin.diagnose
    );
    let triggering_event = serde_json::from_str(&origin.event_json).unwrap_or(Value::Null);
    let args =
        json!({"diagnose": origin.diagnose, "trigger": origin.trigger, "event": triggering_event});
    outcome_event(EventType::Policy, &context, &text, args, time_ms)
}

/// Unix milliseconds as `YYYY-MM-DD hh:mm:ss.mmm`, UTC, without a zone: the policy engine's
/// shape. Outside what a calendar date can hold (years -9999 to 9999) it falls back to the epoch
/// milliseconds as text, so an event is still written.
pub(crate) fn policy_engine_timestamp(time_ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(time_ms) {
        Ok(timestamp) => timestamp.strftime("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        Err(_) => time_ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_the_policy_engine_shape() {
        assert_eq!(policy_engine_timestamp(0), "1970-01-01 00:00:00.000");
        assert_eq!(
            policy_engine_timestamp(1_465_985_600_123),
            "2016-06-15 10:13:20.123"
        );
        // A leap day and a time before the epoch.
        assert_eq!(
            policy_engine_timestamp(951_782_400_000),
            "2000-02-29 00:00:00.000"
        );
        assert_eq!(policy_engine_timestamp(-1), "1969-12-31 23:59:59.999");
    }

    #[test]
    fn a_policy_event_names_the_policy_the_diagnosis_and_the_triggering_event() {
        let action = Action::ExecuteWorkflow(sluice_core::action::ExecuteWorkflow {
            deployment_id: "nodecellar".into(),
            workflow_id: "heal".into(),
            parameters_json: r#"{"node_instance_id":"vm_1"}"#.into(),
            force: false,
            allow_custom_parameters: false,
            socket_timeout: std::time::Duration::from_secs(1),
            connect_timeout: std::time::Duration::from_secs(1),
            origin: ActionOrigin {
                group: "g".into(),
                policy: "down".into(),
                trigger: "heal".into(),
                node_id: Some("vm_1".into()),
                node_name: Some("vm".into()),
                diagnose: "heart-beat-failure".into(),
                event_time_ms: 0,
                event_json: r#"{"service":"cpu"}"#.into(),
            },
        });
        let value: Value = serde_json::from_str(&policy_event(&action, 0)).unwrap_or_default();
        assert_eq!(value["event_type"], "policy");
        assert_eq!(value["context"]["deployment_id"], "nodecellar");
        assert_eq!(value["context"]["policy"], "down");
        assert_eq!(
            value["context"]["trigger-parameters"]["node_instance_id"],
            "vm_1"
        );
        assert_eq!(value["message"]["args"]["diagnose"], "heart-beat-failure");
        assert_eq!(value["message"]["args"]["event"]["service"], "cpu");
        assert_eq!(
            value["message"]["text"],
            "Policy 'down' of group 'g' fired for vm_1: heart-beat-failure"
        );
    }

    #[test]
    fn events_carry_the_policy_engine_context() {
        let origin = ActionOrigin {
            group: "web_tier".into(),
            policy: "cpu_high".into(),
            trigger: "scale".into(),
            node_id: Some("nodejs_x1".into()),
            node_name: Some("nodejs".into()),
            diagnose: "threshold-breached".into(),
            event_time_ms: 0,
            event_json: "{}".into(),
        };
        let parameters = json!({"node_id": "nodejs_x1"});
        let context = EventContext {
            deployment_id: Some("nodecellar"),
            workflow_id: Some("scale"),
            trigger_parameters: &parameters,
            origin: &origin,
        };
        let body = outcome_event(
            EventType::ProcessingTrigger,
            &context,
            "processing trigger",
            json!({"workflow": "scale"}),
            1_465_985_600_123,
        );
        let value: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(
            value,
            json!({
                "type": "cloudify_event", "event_type": "processing_trigger",
                "message_code": null, "timestamp": "2016-06-15 10:13:20.123",
                "message": {"text": "processing trigger", "args": {"workflow": "scale"}},
                "context": {"blueprint_id": null, "deployment_id": "nodecellar",
                    "execution_id": null, "workflow_id": "scale", "group": "web_tier",
                    "policy": "cpu_high", "trigger": "scale",
                    "trigger-parameters": {"node_id": "nodejs_x1"},
                    "node_id": "nodejs_x1", "node_name": "nodejs"}
            })
        );
    }
}
