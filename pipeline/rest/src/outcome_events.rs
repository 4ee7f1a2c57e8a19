//! The outcome events: typed [`OutcomeEvent`]s of an [`OutcomeEventKind`], published as Cloudify
//! event bodies (`type: "cloudify_event"`, [`OutcomeEvent::to_json`]) as the old policy
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

use serde::{Serialize, Serializer};
use serde_json::{Value, json};
use sluice_core::action::{Action, ActionOrigin};

/// The `event_type` of an outcome event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeEventKind {
    /// A policy (or generic rule) fired, before any restraint.
    Policy,
    /// A trigger passed its restraints; its request is about to be made.
    ProcessingTrigger,
    TriggerSucceeded,
    TriggerFailed,
}

impl OutcomeEventKind {
    /// The `event_type` text.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeEventKind::Policy => "policy",
            OutcomeEventKind::ProcessingTrigger => "processing_trigger",
            OutcomeEventKind::TriggerSucceeded => "trigger_succeeded",
            OutcomeEventKind::TriggerFailed => "trigger_failed",
        }
    }
}

/// One outcome event, typed. [`OutcomeEvent::to_json`] gives the body published on the events
/// path; nothing else about the event is turned into text on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeEvent {
    pub kind: OutcomeEventKind,
    /// When it happened (the caller's clock, Unix ms).
    pub time_ms: i64,
    /// `message.text`.
    pub text: String,
    /// `message.args`.
    pub args: Value,
    pub deployment_id: Option<String>,
    pub workflow_id: Option<String>,
    /// `context.trigger-parameters`: the workflow parameters, or the webhook body.
    pub trigger_parameters: Value,
    pub group: String,
    pub policy: String,
    pub trigger: String,
    pub node_id: Option<String>,
    pub node_name: Option<String>,
}

impl OutcomeEvent {
    /// The event in the manager's event shape.
    pub fn to_value(&self) -> Value {
        json!({
            "type": "cloudify_event",
            "event_type": self.kind.as_str(),
            "message_code": null,
            "timestamp": policy_engine_timestamp(self.time_ms),
            "message": {"text": self.text, "args": self.args},
            "context": {
                "blueprint_id": null,
                "deployment_id": self.deployment_id,
                // The execution these events belong to: none; the one created is in `args`, so
                // the manager's per-execution event queries do not pick these up.
                "execution_id": null,
                "workflow_id": self.workflow_id,
                "group": self.group,
                "policy": self.policy,
                "trigger": self.trigger,
                "trigger-parameters": self.trigger_parameters,
                "node_id": self.node_id,
                "node_name": self.node_name,
            },
        })
    }

    /// The JSON body published on the events path.
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }
}

impl Serialize for OutcomeEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

/// What the events of one action share.
pub(crate) struct EventContext<'a> {
    pub(crate) deployment_id: Option<&'a str>,
    pub(crate) workflow_id: Option<&'a str>,
    /// The workflow parameters (or the webhook body).
    pub(crate) trigger_parameters: &'a Value,
    pub(crate) origin: &'a ActionOrigin,
}

/// One outcome event of the action `context` describes.
pub(crate) fn outcome_event(
    kind: OutcomeEventKind,
    context: &EventContext<'_>,
    text: &str,
    args: Value,
    time_ms: i64,
) -> OutcomeEvent {
    let origin = context.origin;
    OutcomeEvent {
        kind,
        time_ms,
        text: text.to_owned(),
        args,
        deployment_id: context.deployment_id.map(str::to_owned),
        workflow_id: context.workflow_id.map(str::to_owned),
        trigger_parameters: context.trigger_parameters.clone(),
        group: origin.group.clone(),
        policy: origin.policy.clone(),
        trigger: origin.trigger.clone(),
        node_id: origin.node_id.clone(),
        node_name: origin.node_name.clone(),
    }
}

/// The `policy` event of an action the rules emitted: which policy fired, why, and on what
/// event. The caller emits it when the action is handed to the executor, so the events path
/// shows every firing, also those a restraint then skips.
pub fn policy_event(action: &Action, time_ms: i64) -> OutcomeEvent {
    let (origin, deployment_id, workflow_id, parameters) = match action {
        Action::ExecuteWorkflow(workflow) => (
            &workflow.origin,
            Some(workflow.deployment_id.as_str()),
            Some(workflow.workflow_id.as_str()),
            &workflow.parameters,
        ),
        Action::Webhook(webhook) => (&webhook.origin, None, None, &webhook.body),
    };
    let context = EventContext {
        deployment_id,
        workflow_id,
        trigger_parameters: parameters,
        origin,
    };
    let node = origin.node_id.as_deref().unwrap_or("(group)");
    let text = format!(
        "Policy '{}' of group '{}' fired for {node}: {}",
        origin.policy, origin.group, origin.diagnose
    );
    let args =
        json!({"diagnose": origin.diagnose, "trigger": origin.trigger, "event": origin.event});
    outcome_event(OutcomeEventKind::Policy, &context, &text, args, time_ms)
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
            parameters: json!({"node_instance_id": "vm_1"}),
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
                event: json!({"service": "cpu"}),
            },
        });
        let value: Value =
            serde_json::from_str(&policy_event(&action, 0).to_json()).unwrap_or_default();
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

    /// A `processing_trigger` event of a threshold policy's scale trigger.
    fn processing_trigger_event() -> OutcomeEvent {
        let origin = ActionOrigin {
            group: "web_tier".into(),
            policy: "cpu_high".into(),
            trigger: "scale".into(),
            node_id: Some("nodejs_x1".into()),
            node_name: Some("nodejs".into()),
            diagnose: "threshold-breached".into(),
            event_time_ms: 0,
            event: json!({}),
        };
        let parameters = json!({"node_id": "nodejs_x1"});
        let context = EventContext {
            deployment_id: Some("nodecellar"),
            workflow_id: Some("scale"),
            trigger_parameters: &parameters,
            origin: &origin,
        };
        outcome_event(
            OutcomeEventKind::ProcessingTrigger,
            &context,
            "processing trigger",
            json!({"workflow": "scale"}),
            1_465_985_600_123,
        )
    }

    #[test]
    fn events_carry_the_policy_engine_context() {
        let body = processing_trigger_event();
        let value: Value = serde_json::from_str(&body.to_json()).unwrap_or_default();
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

    #[test]
    fn the_published_body_has_the_keys_in_the_order_it_always_had() {
        let event = processing_trigger_event();
        assert_eq!(
            event.to_json(),
            concat!(
                r#"{"context":{"blueprint_id":null,"deployment_id":"nodecellar","#,
                r#""execution_id":null,"group":"web_tier","node_id":"nodejs_x1","#,
                r#""node_name":"nodejs","policy":"cpu_high","trigger":"scale","#,
                r#""trigger-parameters":{"node_id":"nodejs_x1"},"workflow_id":"scale"},"#,
                r#""event_type":"processing_trigger","#,
                r#""message":{"args":{"workflow":"scale"},"text":"processing trigger"},"#,
                r#""message_code":null,"timestamp":"2016-06-15 10:13:20.123","#,
                r#""type":"cloudify_event"}"#
            )
        );
        assert_eq!(
            serde_json::to_string(&event).unwrap_or_default(),
            event.to_json()
        );
    }
}
