//! An in-process double of the manager's REST API, for tests: the manager cannot run here. It answers as a 3.x/4.x manager does for what the executor calls,
//! records every request, and fails or slows down on demand.
//!
//! - `POST /api/v2|v3/executions`: 201 with the execution (`status: "pending"`); 400
//!   `existing_running_execution_error` while an execution of the deployment is active;
//!   400 `nonexistent_workflow_error` for an unknown workflow.
//! - `GET /api/v2|v3/executions?deployment_id=`: `{"items": [...], "metadata": {"pagination"}}`.
//! - `GET /api/v2|v3/node-instances/<id>`: the instance with its configured state; 404 for
//!   unknown ids.
//! - On demand: the next N requests (or every request, until told otherwise) answer a 5xx,
//!   every answer is delayed, V4's headers are required (401 without them), or the double goes
//!   down (its port refuses connections) and comes back on the same port.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use url::Url;

use crate::stoppable::{StoppableServer, bind_reusable};
use crate::tls::{Issued, TestCa, TlsServer};

/// Workflows every deployment has, as on a real manager.
const BUILTIN_WORKFLOWS: [&str; 6] = [
    "install",
    "uninstall",
    "heal",
    "scale",
    "execute_operation",
    "update",
];
const ACTIVE_STATES: [&str; 4] = ["pending", "started", "cancelling", "force_cancelling"];

/// One request as the double received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// When the double received it: tests of timing compare it with event times.
    pub received_at: std::time::SystemTime,
}

#[derive(Debug, Default)]
struct FakeState {
    requests: Vec<RecordedRequest>,
    /// Executions in creation order.
    executions: Vec<Value>,
    node_states: HashMap<String, String>,
    extra_workflows: Vec<String>,
    failures: Vec<u16>,
    /// Every request answers this status while set.
    failing: Option<u16>,
    delay: Duration,
    required_auth: Option<(String, String)>,
}

/// A running double; stops when dropped.
pub struct FakeManager {
    address: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    server: Served,
}

/// How the double is served: plain HTTP (`None` while stopped), or HTTPS (which stops when
/// dropped).
enum Served {
    Http(Option<StoppableServer>),
    Https(TlsServer),
}

impl Drop for FakeManager {
    fn drop(&mut self) {
        if let Served::Http(Some(server)) = &self.server {
            server.abort();
        }
    }
}

/// The manager's REST endpoints the executor calls, over `state`.
fn routes(state: Arc<Mutex<FakeState>>) -> Router {
    Router::new()
        .route(
            "/api/{version}/executions",
            post(create_execution).get(list_executions),
        )
        .route("/api/{version}/node-instances/{id}", get(node_instance))
        .fallback(not_found)
        .with_state(state)
}

impl FakeManager {
    /// Binds 127.0.0.1:0 and serves in a task of the current runtime.
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = StoppableServer::serve(listener, routes(Arc::clone(&state)));
        Ok(Self {
            address,
            state,
            server: Served::Http(Some(server)),
        })
    }

    /// Goes down: open connections are closed and the port refuses new ones. Only for the
    /// plain HTTP double.
    pub async fn stop(&mut self) {
        if let Served::Http(server) = &mut self.server
            && let Some(server) = server.take()
        {
            server.stop().await;
        }
    }

    /// Serves again on the same port, with the same state (stops first if running). Panics
    /// when the port was taken meanwhile, or for the HTTPS double.
    pub async fn restart(&mut self) {
        self.stop().await;
        let Served::Http(server) = &mut self.server else {
            panic!("only the plain HTTP manager double restarts");
        };
        let listener = bind_reusable(self.address)
            .expect("the manager double binds its port again on restart");
        *server = Some(StoppableServer::serve(
            listener,
            routes(Arc::clone(&self.state)),
        ));
    }

    /// As [`start`](Self::start), over HTTPS with `identity` (issued for `localhost`); with
    /// `client_ca`, a client must present a certificate that authority issued.
    pub async fn start_tls(identity: &Issued, client_ca: Option<&TestCa>) -> Self {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let server = TlsServer::start(routes(Arc::clone(&state)), identity, client_ca).await;
        Self {
            address: server.address,
            state,
            server: Served::Https(server),
        }
    }

    /// The base URL to give the executor (`https://localhost:<port>` when served over TLS).
    pub fn url(&self) -> Url {
        match &self.server {
            Served::Http(_) => {
                let text = format!("http://{}", self.address);
                Url::parse(&text).unwrap_or_else(|_| unreachable!("a socket address makes a URL"))
            }
            Served::Https(server) => server.url("localhost"),
        }
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        lock(&self.state)
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// The `POST .../executions` requests received.
    pub fn execution_posts(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|request| request.method == "POST" && request.path.ends_with("/executions"))
            .collect()
    }

    /// Sets a node instance's state (`started`, `stopped`, `deleted`, ...).
    pub fn set_node_state(&self, node_id: &str, state: &str) {
        self.state()
            .node_states
            .insert(node_id.to_owned(), state.to_owned());
    }

    /// Adds a workflow (beyond install, uninstall, heal, scale, execute_operation, update).
    pub fn add_workflow(&self, workflow_id: &str) {
        self.state().extra_workflows.push(workflow_id.to_owned());
    }

    /// The next `count` requests (any route) answer `status` (500, 503, ...).
    pub fn fail_next(&self, count: usize, status: u16) {
        self.state()
            .failures
            .extend(std::iter::repeat_n(status, count));
    }

    /// While `status` is set, every request (any route) answers it, as a manager behind a
    /// proxy answering 503 does; `None` ends it.
    pub fn answer_every_request_with(&self, status: Option<u16>) {
        self.state().failing = status;
    }

    /// Every answer waits `delay` first.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Requires V4's `API-Authentication-Token` and `Tenant` headers; 401 otherwise.
    pub fn require_auth(&self, token: &str, tenant: &str) {
        self.state().required_auth = Some((token.to_owned(), tenant.to_owned()));
    }

    /// Sets an execution's status (`terminated`, `failed`, ...), ending it when not active.
    pub fn set_execution_status(&self, execution_id: &str, status: &str) {
        for execution in &mut self.state().executions {
            if execution["id"] == execution_id {
                execution["status"] = Value::from(status);
            }
        }
    }

    /// Ends every active execution (`terminated`).
    pub fn finish_all_executions(&self) {
        for execution in &mut self.state().executions {
            execution["status"] = Value::from("terminated");
        }
    }

    /// The executions created, in order.
    pub fn executions(&self) -> Vec<Value> {
        self.state().executions.clone()
    }
}

/// A deployment's `groups` file, as the manager writes it for the rule stage: `cpu_high`
/// scales a node whose `cpu.total.user` reaches 90, `host_down` heals a node whose `memory`
/// metrics stop for `ttl_seconds`; each at most once in 300 s per node.
pub fn scale_and_heal_groups(ttl_seconds: u64) -> String {
    json!({
        "web_tier": {
            "members": ["nodejs_host"],
            "policies": {
                "cpu_high": {
                    "type": "cloudify.policies.types.threshold",
                    "properties": {
                        "service": "cpu.total.user", "threshold": 90, "upper_bound": true,
                        "stability_time": 0, "policy_operates_on_group": false,
                        "is_node_started_before_workflow": true,
                        "interval_between_workflows": 300
                    },
                    "triggers": {"scale": {
                        "type": "cloudify.policies.triggers.execute_workflow",
                        "parameters": {
                            "workflow": "scale",
                            "workflow_parameters": {
                                "node_id": {"get_property": ["SELF", "node_id"]},
                                "delta": 1
                            },
                            "force": false, "allow_custom_parameters": false
                        }
                    }}
                },
                "host_down": {
                    "type": "cloudify.policies.types.host_failure",
                    "properties": {"service": ["memory"], "ttl": ttl_seconds,
                                   "interval_between_workflows": 300},
                    "triggers": {"heal": {
                        "type": "cloudify.policies.triggers.execute_workflow",
                        "parameters": {
                            "workflow": "heal",
                            "workflow_parameters": {
                                "node_instance_id": {"get_property": ["SELF", "node_id"]},
                                "diagnose_value": {"get_property": ["SELF", "diagnose"]}
                            }
                        }
                    }}
                }
            }
        }
    })
    .to_string()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

type Shared = State<Arc<Mutex<FakeState>>>;

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error_code": code, "message": message, "server_traceback": null})),
    )
        .into_response()
}

/// Records the request, waits the delay, and answers an injected failure or a missing
/// authentication when due.
async fn intake(
    state: &Arc<Mutex<FakeState>>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Response> {
    let delay = {
        let mut state = lock(state);
        state.requests.push(RecordedRequest {
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), ToString::to_string),
            headers: headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
            received_at: std::time::SystemTime::now(),
        });
        state.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut state = lock(state);
    let injected = if state.failures.is_empty() {
        state.failing
    } else {
        Some(state.failures.remove(0))
    };
    if let Some(status) = injected {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Some(error(status, "internal_server_error", "injected failure"));
    }
    if let Some((token, tenant)) = &state.required_auth {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        if header("api-authentication-token") != Some(token.as_str())
            || header("tenant") != Some(tenant.as_str())
        {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "unauthorized_error",
                "User unauthorized",
            ));
        }
    }
    None
}

async fn create_execution(
    State(state): Shared,
    Path(version): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(answer) = intake(&state, &method, &uri, &headers, &body).await {
        return answer;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_parameters_error",
            "request body is not JSON",
        );
    };
    let deployment_id = request["deployment_id"].as_str().unwrap_or_default();
    let workflow_id = request["workflow_id"].as_str().unwrap_or_default();
    let mut state = lock(&state);
    let known = BUILTIN_WORKFLOWS.contains(&workflow_id)
        || state
            .extra_workflows
            .iter()
            .any(|known| known == workflow_id);
    if !known {
        return error(
            StatusCode::BAD_REQUEST,
            "nonexistent_workflow_error",
            &format!("Workflow {workflow_id} does not exist in deployment {deployment_id}"),
        );
    }
    let active = state.executions.iter().any(|execution| {
        execution["deployment_id"] == deployment_id
            && ACTIVE_STATES.contains(&execution["status"].as_str().unwrap_or_default())
    });
    if active {
        return error(
            StatusCode::BAD_REQUEST,
            "existing_running_execution_error",
            &format!(
                "The following executions are currently running for this deployment: \
                 ['{deployment_id}']. To execute this workflow anyway, pass \"force=true\""
            ),
        );
    }
    let id = format!("exec-{version}-{}", state.executions.len() + 1);
    let execution = json!({
        "id": id,
        "workflow_id": workflow_id,
        "deployment_id": deployment_id,
        "blueprint_id": deployment_id,
        "status": "pending",
        "parameters": request["parameters"],
        "is_system_workflow": false,
        "error": "",
        "created_at": "2016-06-15 10:13:20.123456",
    });
    state.executions.push(execution.clone());
    (StatusCode::CREATED, axum::Json(execution)).into_response()
}

async fn list_executions(
    State(state): Shared,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(answer) = intake(&state, &method, &uri, &headers, &Bytes::new()).await {
        return answer;
    }
    let state = lock(&state);
    let items: Vec<Value> = state
        .executions
        .iter()
        .filter(|execution| {
            query
                .get("deployment_id")
                .is_none_or(|deployment| execution["deployment_id"] == deployment.as_str())
        })
        .cloned()
        .collect();
    let total = items.len();
    axum::Json(json!({
        "items": items,
        "metadata": {"pagination": {"total": total, "size": 1000, "offset": 0}},
    }))
    .into_response()
}

async fn node_instance(
    State(state): Shared,
    Path((_version, node_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(answer) = intake(&state, &method, &uri, &headers, &Bytes::new()).await {
        return answer;
    }
    let state = lock(&state);
    match state.node_states.get(&node_id) {
        Some(node_state) => axum::Json(json!({
            "id": node_id,
            "node_id": node_id.rsplit_once('_').map_or(node_id.as_str(), |(name, _)| name),
            "state": node_state,
            "runtime_properties": {},
            "version": 1,
        }))
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            &format!("Requested Node Instance with ID `{node_id}` was not found"),
        ),
    }
}

async fn not_found(
    State(state): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(answer) = intake(&state, &method, &uri, &headers, &body).await {
        return answer;
    }
    error(
        StatusCode::NOT_FOUND,
        "not_found_error",
        "Requested URL was not found",
    )
}
