//! What a rule asks for when it fires, on its way from the (pure) rule engine to the action
//! executor, which applies restraints, calls the manager's REST API and reports each outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The manager's `cloudify.policies.triggers.execute_workflow`, with its parameters resolved
/// (every `{get_property: [SELF, field]}` already filled from the triggering event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteWorkflow {
    pub deployment_id: String,
    pub workflow_id: String,
    /// The execution's `parameters`, as JSON text of an object (core has no JSON value type).
    pub parameters_json: String,
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
    /// The triggering event (metric, service, host, ...), as JSON text of an object.
    pub event_json: String,
}

/// A generic webhook: a templated JSON body POSTed with headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body_json: String,
    pub timeout: Duration,
    pub origin: ActionOrigin,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action {
    ExecuteWorkflow(ExecuteWorkflow),
    Webhook(Webhook),
}
