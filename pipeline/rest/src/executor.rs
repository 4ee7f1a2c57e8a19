//! [`Executor`]: runs one [`Action`] against the manager (or a webhook) and answers its
//! [`Execution`]: the [`Outcome`] and the outcome events emitted on the way.
//!
//! # From answers to outcomes
//!
//! | answer                                              | outcome                         |
//! |-----------------------------------------------------|---------------------------------|
//! | 2xx (201 for executions)                            | `Succeeded { execution_id }`    |
//! | 400 `existing_running_execution_error`              | `AlreadyRunning`                |
//! | other 400 codes, other 4xx                          | `Failed { permanent: true }`    |
//! | 408, 429, 5xx, timeout, connection error            | retried until the deadline, then `Failed { permanent: false }` |
//!
//! The node-instance check is classified the same way (404 counting as "not started"), and
//! shares the action's retry deadline with the request it guards.
//!
//! A POST that timed out may still have created the execution; its retry then meets
//! `existing_running_execution_error` and answers `AlreadyRunning`, which is the truth.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_core::action::{Action, ActionOrigin, ExecuteWorkflow, Webhook};
use sluice_core::retry::RetryPolicy;
use sluice_http::{error_chain, read_capped, retry_after, truncate_detail};
use tokio::time::Instant;
use url::Url;

use crate::error::RestError;
use crate::events::{EventContext, EventType, outcome_event};
use crate::settings::{ManagerApi, ManagerSettings, Restraints};
use crate::telemetry;

/// The manager's error code when an execution of the deployment is already active.
const EXISTING_RUNNING: &str = "existing_running_execution_error";

/// HTTP clients kept, one per distinct connect timeout.
const MAX_CLIENTS: usize = 16;
/// Trigger records kept before expired ones are pruned (the threshold then doubles with the
/// live records, so pruning costs O(1) per trigger on average).
const TRIGGER_RECORDS_PRUNE_AT: usize = 1024;

/// One record of the interval restraint, as kept in checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerTime {
    pub deployment_id: String,
    pub node_id: Option<String>,
    /// When the trigger passed its restraints (the caller's clock, Unix ms).
    pub at_ms: i64,
    /// The interval it was checked with; the record restrains nothing once that has passed.
    pub interval_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct TriggerRecord {
    at_ms: i64,
    interval_ms: i64,
}

/// The last trigger per (deployment, node), forgetting records whose interval has passed.
#[derive(Debug)]
struct TriggerRecords {
    by_node: HashMap<(String, Option<String>), TriggerRecord>,
    prune_at: usize,
}

impl Default for TriggerRecords {
    fn default() -> Self {
        Self {
            by_node: HashMap::new(),
            prune_at: TRIGGER_RECORDS_PRUNE_AT,
        }
    }
}

impl TriggerRecords {
    fn record(&mut self, key: (String, Option<String>), at_ms: i64, interval_ms: i64) {
        self.by_node
            .insert(key, TriggerRecord { at_ms, interval_ms });
        if self.by_node.len() >= self.prune_at {
            // Expired against the newest time known: the records' own clock.
            self.by_node
                .retain(|_, record| at_ms.saturating_sub(record.at_ms) < record.interval_ms);
            self.prune_at = (self.by_node.len() * 2).max(TRIGGER_RECORDS_PRUNE_AT);
        }
    }
}

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

/// One action's outcome and the Cloudify event bodies (JSON) emitted on the way, in order:
/// `processing_trigger` before the request, then `trigger_succeeded` or `trigger_failed`.
/// Skipped actions emit none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub outcome: Outcome,
    pub events: Vec<String>,
}

/// The action executor. Cheap to share behind an `Arc`; the restraints' state (last trigger
/// times, actions in flight) lives here, so one executor should serve all of a manager's
/// policies.
pub struct Executor {
    api: ManagerApi,
    retry: RetryPolicy,
    retry_deadline: Duration,
    executions_url: Url,
    /// The base URL with an empty path segment popped, for building node-instance URLs.
    base_url: Url,
    /// V4's `API-Authentication-Token` (marked sensitive) and `Tenant` headers.
    auth_headers: HeaderMap,
    /// One HTTP client per connect timeout (reqwest sets that per client, actions per call).
    clients: Mutex<HashMap<Duration, reqwest::Client>>,
    /// Last trigger per (deployment, node), for the interval restraint.
    last_triggers: Mutex<TriggerRecords>,
    /// Actions in flight.
    pending: Mutex<HashSet<PendingKey>>,
}

impl fmt::Debug for Executor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Executor")
            .field("executions_url", &self.executions_url.as_str())
            .field("api", &self.api)
            .field("retry", &self.retry)
            .field("retry_deadline", &self.retry_deadline)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PendingKey {
    Workflow {
        deployment_id: String,
        workflow_id: String,
        /// The parameters re-serialised, so that key order does not matter.
        parameters: String,
    },
    Webhook {
        url: String,
        body: String,
    },
}

/// Removes its key from the pending set when the action ends (or its future is dropped).
struct PendingGuard<'a> {
    pending: &'a Mutex<HashSet<PendingKey>>,
    key: PendingKey,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.key);
    }
}

/// One attempt's result: done (either way), or worth another try.
enum Attempt<T> {
    Done(T),
    Transient {
        detail: String,
        retry_after: Option<Duration>,
    },
}

/// Why a call ended without the answer wanted.
struct CallFailure {
    permanent: bool,
    detail: String,
    attempts: u32,
}

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
    /// Checks the settings and prepares the headers; does no I/O.
    pub fn new(settings: ManagerSettings) -> Result<Self, RestError> {
        let url = settings.url;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(RestError::Settings(
                "url: must be an http or https URL".to_owned(),
            ));
        }
        let mut base_url = url.clone();
        base_url.set_query(None);
        base_url.set_fragment(None);
        if let Ok(mut segments) = base_url.path_segments_mut() {
            segments.pop_if_empty();
        }
        let executions_url = join_segments(&base_url, &settings.api, &["executions"])?;
        let mut auth_headers = HeaderMap::new();
        if let ManagerApi::V4 { token, tenant } = &settings.api {
            let mut token_value = HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                RestError::Settings(
                    "token: holds characters an HTTP header cannot carry".to_owned(),
                )
            })?;
            token_value.set_sensitive(true);
            let tenant_value = HeaderValue::from_str(tenant).map_err(|_| {
                RestError::Settings(
                    "tenant: holds characters an HTTP header cannot carry".to_owned(),
                )
            })?;
            auth_headers.insert("API-Authentication-Token", token_value);
            auth_headers.insert("Tenant", tenant_value);
        }
        Ok(Self {
            api: settings.api,
            retry: settings.retry,
            retry_deadline: settings.retry_deadline,
            executions_url,
            base_url,
            auth_headers,
            clients: Mutex::new(HashMap::new()),
            last_triggers: Mutex::new(TriggerRecords::default()),
            pending: Mutex::new(HashSet::new()),
        })
    }

    /// Applies restraints, executes, retries transient failures until the deadline; returns
    /// every outcome event emitted on the way. `now_ms` is the caller's clock (Unix ms): the
    /// interval restraint and the events' timestamps use it.
    pub async fn execute(
        &self,
        action: &Action,
        restraints: &Restraints,
        now_ms: i64,
    ) -> Execution {
        let (kind, target, execution) = match action {
            Action::ExecuteWorkflow(workflow) => (
                "execute_workflow",
                format!("{}/{}", workflow.deployment_id, workflow.workflow_id),
                self.execute_workflow(workflow, restraints, now_ms).await,
            ),
            Action::Webhook(webhook) => (
                "webhook",
                webhook_target(&webhook.url),
                self.execute_webhook(webhook, now_ms).await,
            ),
        };
        telemetry::action_finished(kind, &target, &execution.outcome);
        execution
    }

    async fn execute_workflow(
        &self,
        workflow: &ExecuteWorkflow,
        restraints: &Restraints,
        now_ms: i64,
    ) -> Execution {
        let started = Instant::now();
        let deadline = started + self.retry_deadline;
        let origin = &workflow.origin;
        let parameters = match parse_object(&workflow.parameters_json) {
            Ok(parameters) => parameters,
            Err(detail) => {
                let raw = Value::String(workflow.parameters_json.clone());
                let context = workflow_context(workflow, &raw);
                let detail = format!("parameters: {detail}");
                return failed(&context, detail, true, 0, now_ms);
            }
        };
        let context = workflow_context(workflow, &parameters);

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
        if !self.pass_interval(workflow, restraints.interval_between_workflows, now_ms) {
            return skipped(Outcome::SkippedInterval);
        }

        let mut events = vec![outcome_event(
            EventType::ProcessingTrigger,
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
            parameters: &parameters,
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
                    EventType::TriggerSucceeded,
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
                    EventType::TriggerSucceeded,
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

    async fn execute_webhook(&self, webhook: &Webhook, now_ms: i64) -> Execution {
        let started = Instant::now();
        let deadline = started + self.retry_deadline;
        let body_value = parse_object(&webhook.body_json)
            .unwrap_or_else(|_| Value::String(webhook.body_json.clone()));
        let context = webhook_context(&webhook.origin, &body_value);
        let Some(_pending) = self.claim(PendingKey::Webhook {
            url: webhook.url.clone(),
            body: webhook.body_json.clone(),
        }) else {
            return skipped(Outcome::SkippedDuplicatePending);
        };
        let request_parts = Url::parse(&webhook.url)
            .map_err(|error| format!("url: {error}"))
            .and_then(|url| webhook_headers(&webhook.headers).map(|headers| (url, headers)));
        let (url, headers) = match request_parts {
            Ok(parts) => parts,
            Err(detail) => return failed(&context, detail, true, 0, now_ms),
        };
        let target = webhook_target(&webhook.url);
        let mut events = vec![outcome_event(
            EventType::ProcessingTrigger,
            &context,
            &format!(
                "Processing trigger '{}' of policy '{}' in group '{}': webhook {target}",
                webhook.origin.trigger, webhook.origin.policy, webhook.origin.group
            ),
            json!({"webhook": target, "diagnose": webhook.origin.diagnose}),
            clock(now_ms, started),
        )];
        let client = self.client(webhook.timeout);
        let result = self
            .with_retries("webhook", &target, deadline, || {
                let request = client
                    .post(url.clone())
                    .headers(headers.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .timeout(webhook.timeout)
                    .body(webhook.body_json.clone());
                async move {
                    let response = match send(request).await {
                        Ok(response) => response,
                        Err(transient) => return transient,
                    };
                    let status = response.status();
                    let retry_after = retry_after(response.headers());
                    let body = read_capped(response).await;
                    match classify_status(status, retry_after, &body) {
                        Ok(answer) => Attempt::Done(answer),
                        Err(transient) => transient,
                    }
                }
            })
            .await;
        let time_ms = clock(now_ms, started);
        let outcome = match result.and_then(|(answer, attempts)| {
            answer.map(|()| attempts).map_err(|detail| CallFailure {
                permanent: true,
                detail,
                attempts,
            })
        }) {
            Ok(attempts) => {
                events.push(outcome_event(
                    EventType::TriggerSucceeded,
                    &context,
                    &format!("Webhook {target} called"),
                    json!({"webhook": target, "attempts": attempts}),
                    time_ms,
                ));
                Outcome::Succeeded {
                    execution_id: String::new(),
                }
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

    /// Claims `key` for the action in flight; `None` when another holds it.
    fn claim(&self, key: PendingKey) -> Option<PendingGuard<'_>> {
        // Not `then_some`: its eagerly built guard would be dropped (removing the key and
        // locking again) while the lock is held.
        let inserted = lock(&self.pending).insert(key.clone());
        if !inserted {
            return None;
        }
        Some(PendingGuard {
            pending: &self.pending,
            key,
        })
    }

    /// True (and the time recorded) when the (deployment, node) last triggered at least
    /// `interval` ago, or never, or the restraint is disabled.
    fn pass_interval(&self, workflow: &ExecuteWorkflow, interval: Duration, now_ms: i64) -> bool {
        let key = (
            workflow.deployment_id.clone(),
            workflow.origin.node_id.clone(),
        );
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        let mut records = lock(&self.last_triggers);
        if interval_ms > 0
            && let Some(last) = records.by_node.get(&key)
            && now_ms.saturating_sub(last.at_ms) < interval_ms
        {
            return false;
        }
        records.record(key, now_ms, interval_ms);
        true
    }

    /// The interval restraint's records (last trigger per deployment and node) that still
    /// restrain something, for a checkpoint: a restart must not re-trigger inside an interval.
    pub fn trigger_times(&self) -> Vec<TriggerTime> {
        lock(&self.last_triggers)
            .by_node
            .iter()
            .map(|((deployment_id, node_id), record)| TriggerTime {
                deployment_id: deployment_id.clone(),
                node_id: node_id.clone(),
                at_ms: record.at_ms,
                interval_ms: record.interval_ms,
            })
            .collect()
    }

    /// Puts back records from [`Executor::trigger_times`]; a newer record already here wins.
    pub fn restore_trigger_times(&self, times: Vec<TriggerTime>) {
        let mut records = lock(&self.last_triggers);
        for time in times {
            let key = (time.deployment_id, time.node_id);
            let newer_here = records
                .by_node
                .get(&key)
                .is_some_and(|existing| existing.at_ms >= time.at_ms);
            if !newer_here {
                records.record(key, time.at_ms, time.interval_ms);
            }
        }
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
                    let retry_after = retry_after(response.headers());
                    let body = read_capped(response).await;
                    if status == StatusCode::NOT_FOUND {
                        return Attempt::Done(Ok(NodeState::NotStarted));
                    }
                    match classify_status(status, retry_after, &body) {
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
                    let retry_after = retry_after(response.headers());
                    let body = read_capped(response).await;
                    let answer = serde_json::from_slice::<Value>(&body).unwrap_or_default();
                    if status == StatusCode::BAD_REQUEST
                        && answer.get("error_code").and_then(Value::as_str)
                            == Some(EXISTING_RUNNING)
                    {
                        return Attempt::Done(Ok(Created::AlreadyRunning));
                    }
                    match classify_status(status, retry_after, &body) {
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

    /// Runs `attempt` until it is done, retrying transient failures with backoff while the
    /// next try would still start before `deadline`. Answers the result and the attempts made.
    async fn with_retries<T, F, Fut>(
        &self,
        kind: &'static str,
        target: &str,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<(T, u32), CallFailure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut attempts = 0u32;
        loop {
            let result = attempt().await;
            attempts += 1;
            match result {
                Attempt::Done(value) => return Ok((value, attempts)),
                Attempt::Transient {
                    detail,
                    retry_after,
                } => {
                    let delay = self.retry.delay(attempts - 1, retry_after);
                    if Instant::now() + delay > deadline {
                        return Err(CallFailure {
                            permanent: false,
                            detail: format!("{detail} (gave up after {attempts} attempts)"),
                            attempts,
                        });
                    }
                    telemetry::action_retried(kind, target, attempts, &detail, delay.as_millis());
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn client(&self, connect_timeout: Duration) -> reqwest::Client {
        let mut clients = lock(&self.clients);
        // Each distinct `conn_timeout` in the loaded policies gets a client; policies come and
        // go with deployments, so the map is emptied rather than left to grow.
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&connect_timeout) {
            clients.clear();
        }
        clients
            .entry(connect_timeout)
            .or_insert_with(|| {
                reqwest::Client::builder()
                    .connect_timeout(connect_timeout)
                    .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
                    .build()
                    // Building fails only when the TLS backend cannot start; the default
                    // client then fails each call, which is reported as a transient failure.
                    .unwrap_or_default()
            })
            .clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `base` + `/api/v2|v3/` + `segments`, each segment percent-encoded.
fn join_segments(base: &Url, api: &ManagerApi, segments: &[&str]) -> Result<Url, RestError> {
    let mut url = base.clone();
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|()| RestError::Settings("url: cannot be a base URL".to_owned()))?;
        path.extend(api.prefix().trim_start_matches('/').split('/'));
        path.extend(segments);
    }
    Ok(url)
}

async fn send<T>(request: RequestBuilder) -> Result<Response, Attempt<T>> {
    request.send().await.map_err(|error| Attempt::Transient {
        detail: truncate_detail(error_chain(&error.without_url())),
        retry_after: None,
    })
}

/// 2xx: `Ok(Ok(()))`; 408, 429, 5xx: `Err(transient)`; any other status: `Ok(Err(detail))`,
/// a permanent refusal.
fn classify_status<T>(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Result<(), String>, Attempt<T>> {
    if status.is_success() {
        return Ok(Ok(()));
    }
    let detail = format!("answered {}: {}", status.as_u16(), error_text(body));
    if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        return Err(Attempt::Transient {
            detail,
            retry_after,
        });
    }
    Ok(Err(detail))
}

/// The manager's `error_code: message`, or the body's text.
fn error_text(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let code = value.get("error_code").and_then(Value::as_str);
        let message = value.get("message").and_then(Value::as_str);
        match (code, message) {
            (Some(code), Some(message)) => return truncate_detail(format!("{code}: {message}")),
            (Some(text), None) | (None, Some(text)) => return truncate_detail(text.to_owned()),
            (None, None) => {}
        }
    }
    truncate_detail(String::from_utf8_lossy(body).trim().to_owned())
}

fn parse_object(json: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(json) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("not a JSON object".to_owned()),
        Err(error) => Err(format!("not JSON: {error}")),
    }
}

/// Webhook headers; values are marked sensitive (they often carry credentials).
fn webhook_headers(
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("headers: '{name}' is not a header name"))?;
        let mut header_value = HeaderValue::from_str(value)
            .map_err(|_| format!("headers: the value of '{name}' cannot be sent"))?;
        header_value.set_sensitive(true);
        map.insert(header_name, header_value);
    }
    Ok(map)
}

/// A webhook URL fit for logs and events: scheme, host, port and path; no user
/// information, query or fragment (where credentials hide).
fn webhook_target(url: &str) -> String {
    match Url::parse(url) {
        Ok(url) => {
            format!(
                "{}://{}{}",
                url.scheme(),
                url.host_str().unwrap_or_default(),
                url.port()
                    .map(|port| format!(":{port}"))
                    .unwrap_or_default()
            ) + url.path()
        }
        Err(_) => "<invalid url>".to_owned(),
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

fn webhook_context<'a>(origin: &'a ActionOrigin, body: &'a Value) -> EventContext<'a> {
    EventContext {
        deployment_id: None,
        workflow_id: None,
        trigger_parameters: body,
        origin,
    }
}

fn clock(now_ms: i64, started: Instant) -> i64 {
    now_ms.saturating_add(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX))
}

fn skipped(outcome: Outcome) -> Execution {
    Execution {
        outcome,
        events: Vec::new(),
    }
}

/// A failed action with its `trigger_failed` event.
fn failed(
    context: &EventContext<'_>,
    detail: String,
    permanent: bool,
    attempts: u32,
    time_ms: i64,
) -> Execution {
    let event = outcome_event(
        EventType::TriggerFailed,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_done_transient_or_permanent() {
        let classify = |status: u16, body: &str| {
            classify_status::<()>(
                StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
                None,
                body.as_bytes(),
            )
        };
        assert!(matches!(classify(201, "{}"), Ok(Ok(()))));
        for transient in [408, 429, 500, 503] {
            assert!(matches!(
                classify(transient, ""),
                Err(Attempt::Transient { .. })
            ));
        }
        let Ok(Err(detail)) = classify(
            400,
            r#"{"error_code":"illegal_execution_parameters_error","message":"bad"}"#,
        ) else {
            panic!("400 is permanent");
        };
        assert_eq!(
            detail,
            "answered 400: illegal_execution_parameters_error: bad"
        );
        assert!(matches!(classify(404, "nope"), Ok(Err(_))));
    }

    #[test]
    fn webhook_targets_drop_credentials_and_queries() {
        assert_eq!(
            webhook_target("https://user:pass@hooks.example:8443/a/b?token=x#f"),
            "https://hooks.example:8443/a/b"
        );
        assert_eq!(webhook_target("not a url"), "<invalid url>");
    }

    #[test]
    fn urls_keep_a_base_path_and_encode_node_ids() {
        let executor = Executor::new(ManagerSettings {
            url: Url::parse("http://manager.example/prefix/").unwrap_or_else(|_| unreachable!()),
            ..ManagerSettings::default()
        })
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            executor.executions_url.as_str(),
            "http://manager.example/prefix/api/v2/executions"
        );
        let node = join_segments(
            &executor.base_url,
            &executor.api,
            &["node-instances", "a/b c"],
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            node.as_str(),
            "http://manager.example/prefix/api/v2/node-instances/a%2Fb%20c"
        );
    }

    #[test]
    fn settings_refuse_non_http_urls() {
        let result = Executor::new(ManagerSettings {
            url: Url::parse("ftp://manager.example").unwrap_or_else(|_| unreachable!()),
            ..ManagerSettings::default()
        });
        assert!(matches!(result, Err(RestError::Settings(_))));
    }
}
