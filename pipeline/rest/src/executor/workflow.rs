//! `execute_workflow`: the restraints in their order (see the crate docs), the node-instance
//! check, and the execution's creation.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use serde_json::{Value, json};
use sluice_core::action::{ExecuteWorkflow, Restraints};
use sluice_http::read_capped;
use tokio::time::Instant;

use super::Executor;
use super::calls::{Attempt, CallFailure, answer_class, classify_status, join_segments, send};
use super::outcome::{Execution, Outcome, clock, failed, skipped};
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
                let mut execution = failed(&context, error.to_string(), true, 0, now_ms);
                events.append(&mut execution.events);
                return Execution {
                    outcome: execution.outcome,
                    events,
                };
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
        let outcome = match result {
            Ok((Created::Execution(execution_id), attempts)) => {
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
            Ok((Created::AlreadyRunning, attempts)) => {
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
            Err(failure) => {
                let mut execution = failed(
                    &context,
                    failure.detail,
                    failure.permanent,
                    failure.attempts,
                    time_ms,
                );
                events.append(&mut execution.events);
                execution.outcome
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
        let url = join_segments(&self.base_url, &self.api, &["node-instances", node_id]).map_err(
            |error| CallFailure {
                permanent: true,
                detail: error.to_string(),
                attempts: 0,
            },
        )?;
        let client = self.client(connect_timeout);
        let (answer, _attempts) = self
            .with_retries("execute_workflow", node_id, deadline, || {
                let request = client
                    .get(url.clone())
                    .headers(self.auth_headers.clone())
                    .timeout(socket_timeout);
                async move {
                    let response = match send(request).await {
                        Ok(response) => response,
                        Err(transient) => return transient,
                    };
                    let status = response.status();
                    let class = answer_class(&response);
                    let body = read_capped(response).await;
                    if status == StatusCode::NOT_FOUND {
                        return Attempt::Done(Ok(NodeState::NotStarted));
                    }
                    match classify_status(status, class, &body) {
                        Err(transient) => transient,
                        Ok(Err(detail)) => Attempt::Done(Err(detail)),
                        Ok(Ok(())) => {
                            let state = serde_json::from_slice::<Value>(&body)
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
        answer.map_err(|detail| CallFailure {
            permanent: true,
            detail,
            attempts: 1,
        })
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
                    let response = match send(request).await {
                        Ok(response) => response,
                        Err(transient) => return transient,
                    };
                    let status = response.status();
                    let class = answer_class(&response);
                    let body = read_capped(response).await;
                    let answer = serde_json::from_slice::<Value>(&body).unwrap_or_default();
                    if status == StatusCode::BAD_REQUEST
                        && answer.get("error_code").and_then(Value::as_str)
                            == Some(EXISTING_RUNNING)
                    {
                        return Attempt::Done(Ok(Created::AlreadyRunning));
                    }
                    match classify_status(status, class, &body) {
                        Err(transient) => transient,
                        Ok(Err(detail)) => Attempt::Done(Err(detail)),
                        Ok(Ok(())) => {
                            let id = answer.get("id").and_then(Value::as_str).unwrap_or_default();
                            Attempt::Done(Ok(Created::Execution(id.to_owned())))
                        }
                    }
                }
            })
            .await?;
        answer
            .map(|created| (created, attempts))
            .map_err(|detail| CallFailure {
                permanent: true,
                detail,
                attempts,
            })
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
