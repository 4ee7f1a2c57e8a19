//! What a rule asks for when it fires, on its way from the (pure) rule engine to the action
//! executor, which applies restraints, calls the manager's REST API and reports each outcome.
//!
//! JSON payloads (workflow parameters, webhook bodies, the triggering event) are
//! [`serde_json::Value`]s, built once by the engine and read as they are by the executor. In a
//! serialised action (the rule stage's checkpoint) each is kept as the JSON *text* of the value,
//! under its `*_json` name, which is the layout checkpoints have always had.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The manager's `cloudify.policies.triggers.execute_workflow`, with its parameters resolved
/// (every `{get_property: [SELF, field]}` already filled from the triggering event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteWorkflow {
    pub deployment_id: String,
    pub workflow_id: String,
    /// The execution's `parameters`: an object (anything else fails the action permanently).
    #[serde(rename = "parameters_json", with = "json_text")]
    pub parameters: Value,
    pub force: bool,
    pub allow_custom_parameters: bool,
    /// `socket_timeout`: how long to wait for the manager's answer.
    pub socket_timeout: Duration,
    /// `conn_timeout`: how long to wait for the connection.
    pub connect_timeout: Duration,
    pub origin: ActionOrigin,
}

/// Where an action came from: for restraints, de-duplication and the outcome events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionOrigin {
    pub group: String,
    pub policy: String,
    pub trigger: String,
    /// The node instance the policy's state is kept for (None when it operates on the group).
    pub node_id: Option<String>,
    pub node_name: Option<String>,
    /// `threshold-breached`, `ewma-threshold-breached`, `heart-beat-failure`, ...
    pub diagnose: String,
    /// The triggering event's time, Unix milliseconds.
    pub event_time_ms: i64,
    /// The triggering event (metric, service, host, ...), an object.
    #[serde(rename = "event_json", with = "json_text")]
    pub event: Value,
}

/// A generic webhook: a templated JSON body POSTed with headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// Sent as its JSON text.
    #[serde(rename = "body_json", with = "json_text")]
    pub body: Value,
    pub timeout: Duration,
    pub origin: ActionOrigin,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action {
    ExecuteWorkflow(ExecuteWorkflow),
    Webhook(Webhook),
}

/// What the executor checks before it runs a workflow: a policy's
/// `is_node_started_before_workflow` and `interval_between_workflows` (wire formats section 4).
/// The manager's policies carry their own; generic rules run with [`Restraints::NONE`] (their
/// `min_interval` is applied in their engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restraints {
    /// Only trigger when the origin's node instance is `started` (default true).
    pub is_node_started_before_workflow: bool,
    /// The least time between two triggers for one (deployment, node) (default 300 s); `None`
    /// when it was <= 0 in the groups file: disabled (as is a zero interval).
    pub interval_between_workflows: Option<Duration>,
}

impl Restraints {
    /// No node check and no interval.
    pub const NONE: Restraints = Restraints {
        is_node_started_before_workflow: false,
        interval_between_workflows: None,
    };
}

impl Default for Restraints {
    /// The manager's defaults: the node check, and 300 s between workflows.
    fn default() -> Self {
        Self {
            is_node_started_before_workflow: true,
            interval_between_workflows: Some(Duration::from_secs(300)),
        }
    }
}

/// A [`Value`] serialised as its JSON text (a string), and read back from that text.
mod json_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    pub(super) fn serialize<S: Serializer>(
        value: &Value,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Value, D::Error> {
        let text = String::deserialize(deserializer)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_are_kept_as_their_text_in_serialised_actions() {
        let webhook = Webhook {
            url: "http://hooks.example/".into(),
            headers: BTreeMap::new(),
            body: serde_json::json!({"alert": "down", "value": 0.1}),
            timeout: Duration::from_secs(1),
            origin: ActionOrigin {
                group: "g".into(),
                policy: "p".into(),
                trigger: "t".into(),
                node_id: None,
                node_name: None,
                diagnose: "d".into(),
                event_time_ms: 0,
                event: serde_json::json!({}),
            },
        };
        let text = serde_json::to_string(&webhook).unwrap_or_default();
        assert!(
            text.contains(r#""body_json":"{\"alert\":\"down\",\"value\":0.1}""#),
            "{text}"
        );
        assert!(text.contains(r#""event_json":"{}""#), "{text}");
        let back: Webhook = serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(back, webhook);
    }
}
