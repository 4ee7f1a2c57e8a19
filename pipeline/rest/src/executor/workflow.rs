//! `execute_workflow`: the restraints in their order (see the crate docs), the node-instance
//! check, and the execution's creation.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use serde_json::{Value, json};
use sluice_core::action::{ExecuteWorkflow, Restraints};
use tokio::time::Instant;

use super::Executor;
use super::calls::{Attempt, CallFailure, call, join_segments};
use super::outcome::{Execution, Outcome, call_failed, clock, failed, skipped};
use super::restraints::PendingKey;
use crate::outcome_events::{EventContext, OutcomeEventKind, outcome_event};

/// The manager's error code when an execution of the deployment is already active.
const EXISTING_RUNNING: &str = "existing_running_execution_error";

enum NodeState {
    Started,
    NotStarted,
}

enum Created {
    Execution(String),
    AlreadyRunning,
}

#[derive(Serialize)]
struct ExecutionRequest<'a> {
    deployment_id: &'a str,
    workflow_id: &'a str,
    force: bool,
    allow_custom_parameters: bool,
    parameters: &'a Value,
}

impl Executor {
    pub(super) async fn execute_workflow(
        &self,
        workflow: &ExecuteWorkflow,
        restraints: &Restraints,
        now_ms: i64,
    ) -> Execution {
        let started = Instant::now();
        let deadline = started + self.retry_deadline;
        let origin = &workflow.origin;
        let parameters = &workflow.parameters;
        let context = workflow_context(workflow, parameters);
        if !parameters.is_object() {
            let detail = "parameters: not a JSON object".to_owned();
            return failed(&context, detail, true, 0, now_ms);
        }

        // 1. No second identical action while one is in flight (no I/O; see the crate docs).
        let Some(_pending) = self.claim(PendingKey::Workflow {
            deployment_id: workflow.deployment_id.clone(),
            workflow_id: workflow.workflow_id.clone(),
            parameters: parameters.to_string(),
        }) else {
            return skipped(Outcome::SkippedDuplicatePending);
        };

        // 2. The node instance must be started.
        if restraints.is_node_started_before_workflow
            && let Some(node_id) = &origin.node_id
        {
            match self
                .node_state(
                    node_id,
                    workflow.connect_timeout,
                    workflow.socket_timeout,
                    deadline,
                )
                .await
            {
                Ok(NodeState::Started) => {}
                Ok(NodeState::NotStarted) => return skipped(Outcome::SkippedNodeNotStarted),
                Err(failure) => {
                    let detail = format!("node instance {node_id}: {}", failure.detail);
                    let time_ms = clock(now_ms, started);
                    return failed(
                        &context,
                        detail,
                        failure.permanent,
                        failure.attempts,
                        time_ms,
                    );
                }
            }
        }

        // 3. The interval since the last trigger of this (deployment, node); recorded now.
        if !self.pass_interval(
            workflow,
            restraints
                .interval_between_workflows
                .unwrap_or(Duration::ZERO),
            now_ms,
        ) {
            return skipped(Outcome::SkippedInterval);
        }

        let mut events = vec![outcome_event(
            OutcomeEventKind::ProcessingTrigger,
            &context,
            &format!(
                "Processing trigger '{}' of policy '{}' in group '{}': workflow '{}' on deployment '{}'",
                origin.trigger,
                origin.policy,
                origin.group,
                workflow.workflow_id,
                workflow.deployment_id
            ),
            json!({"workflow": workflow.workflow_id, "diagnose": origin.diagnose}),
            clock(now_ms, started),
        )];
        let body = ExecutionRequest {
            deployment_id: &workflow.deployment_id,
            workflow_id: &workflow.workflow_id,
            force: workflow.force,
            allow_custom_parameters: workflow.allow_custom_parameters,
            parameters,
        };
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(error) => {
                let failure = CallFailure::permanent(error.to_string(), 0);
                return call_failed(&context, events, failure, now_ms);
            }
        };
        let result = self
            .create_execution(
                &body,
                workflow.connect_timeout,
                workflow.socket_timeout,
                deadline,
            )
            .await;
        let time_ms = clock(now_ms, started);
        let (created, attempts) = match result {
            Ok(created) => created,
            Err(failure) => return call_failed(&context, events, failure, time_ms),
        };
        let outcome = match created {
            Created::Execution(execution_id) => {
                events.push(outcome_event(
                    OutcomeEventKind::TriggerSucceeded,
                    &context,
                    &format!(
                        "Workflow '{}' started on deployment '{}' (execution {execution_id})",
                        workflow.workflow_id, workflow.deployment_id
                    ),
                    json!({"workflow": workflow.workflow_id, "execution_id": execution_id,
                           "attempts": attempts}),
                    time_ms,
                ));
                Outcome::Succeeded { execution_id }
            }
            Created::AlreadyRunning => {
                events.push(outcome_event(
                    OutcomeEventKind::TriggerSucceeded,
                    &context,
                    &format!(
                        "Workflow '{}' not started: an execution of deployment '{}' is already running",
                        workflow.workflow_id, workflow.deployment_id
                    ),
                    json!({"workflow": workflow.workflow_id, "already_running": true,
                           "attempts": attempts}),
                    time_ms,
                ));
                Outcome::AlreadyRunning
            }
        };
        Execution { outcome, events }
    }

    async fn node_state(
        &self,
        node_id: &str,
        connect_timeout: Duration,
        socket_timeout: Duration,
        deadline: Instant,
    ) -> Result<NodeState, CallFailure> {
        let url = join_segments(&self.base_url, &self.api, &["node-instances", node_id])
            .map_err(|error| CallFailure::permanent(error.to_string(), 0))?;
        let client = self.client(connect_timeout);
        let (answer, _attempts) = self
            .with_retries("execute_workflow", node_id, deadline, || {
                let request = client
                    .get(url.clone())
                    .headers(self.auth_headers.clone())
                    .timeout(socket_timeout);
                async move {
                    let answer = match call(request).await {
                        Ok(answer) => answer,
                        Err(transient) => return transient,
                    };
                    if answer.status == StatusCode::NOT_FOUND {
                        return Attempt::Done(Ok(NodeState::NotStarted));
                    }
                    match answer.classify() {
                        Err(transient) => transient,
                        Ok(Err(detail)) => Attempt::Done(Err(detail)),
                        Ok(Ok(())) => {
                            let state = serde_json::from_slice::<Value>(&answer.body)
                                .ok()
                                .and_then(|value| value.get("state").cloned());
                            Attempt::Done(Ok(match state {
                                Some(Value::String(state)) if state == "started" => {
                                    NodeState::Started
                                }
                                _ => NodeState::NotStarted,
                            }))
                        }
                    }
                }
            })
            .await?;
        answer.map_err(|detail| CallFailure::permanent(detail, 1))
    }

    async fn create_execution(
        &self,
        body: &[u8],
        connect_timeout: Duration,
        socket_timeout: Duration,
        deadline: Instant,
    ) -> Result<(Created, u32), CallFailure> {
        let client = self.client(connect_timeout);
        let target = self.executions_url.path().to_owned();
        let (answer, attempts) = self
            .with_retries("execute_workflow", &target, deadline, || {
                let request = client
                    .post(self.executions_url.clone())
                    .headers(self.auth_headers.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .timeout(socket_timeout)
                    .body(body.to_vec());
                async move {
                    let answer = match call(request).await {
                        Ok(answer) => answer,
                        Err(transient) => return transient,
                    };
                    let json = serde_json::from_slice::<Value>(&answer.body).unwrap_or_default();
                    if answer.status == StatusCode::BAD_REQUEST
                        && json.get("error_code").and_then(Value::as_str) == Some(EXISTING_RUNNING)
                    {
                        return Attempt::Done(Ok(Created::AlreadyRunning));
                    }
                    match answer.classify() {
                        Err(transient) => transient,
                        Ok(Err(detail)) => Attempt::Done(Err(detail)),
                        Ok(Ok(())) => {
                            let id = json.get("id").and_then(Value::as_str).unwrap_or_default();
                            Attempt::Done(Ok(Created::Execution(id.to_owned())))
                        }
                    }
                }
            })
            .await?;
        answer
            .map(|created| (created, attempts))
            .map_err(|detail| CallFailure::permanent(detail, attempts))
    }
}

fn workflow_context<'a>(workflow: &'a ExecuteWorkflow, parameters: &'a Value) -> EventContext<'a> {
    EventContext {
        deployment_id: Some(&workflow.deployment_id),
        workflow_id: Some(&workflow.workflow_id),
        trigger_parameters: parameters,
        origin: &workflow.origin,
    }
}
