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
//! Statuses are classed by `sluice_http::classify` (one [`RetryClass`](sluice_http::RetryClass)
//! for every HTTP client of sluice): a retry is transient, any other class fails the action for
//! good. The node-instance check is classified the same way (404 counting as "not started"), and
//! shares the action's retry deadline with the request it guards.
//!
//! A POST that timed out may still have created the execution; its retry then meets
//! `existing_running_execution_error` and answers `AlreadyRunning`, which is the truth.
//!
//! # Modules
//!
//! - `outcome`: [`Outcome`] and [`Execution`].
//! - `restraints`: the interval records ([`TriggerTime`]) and the actions in flight.
//! - `workflow`: `execute_workflow`, its restraints, node check and POST.
//! - `webhook`: webhooks.
//! - `calls`: one request with its retries, and the status classification.

mod calls;
mod outcome;
mod restraints;
mod webhook;
mod workflow;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::ExposeSecret;
use sluice_core::action::{Action, Restraints};
use sluice_core::retry::RetryPolicy;
use sluice_http::TlsSettings;
use url::Url;

pub use outcome::{Execution, Outcome};
pub use restraints::TriggerTime;

use crate::error::RestError;
use crate::settings::{ManagerApi, ManagerSettings};
use crate::telemetry;
use calls::join_segments;
use restraints::{PendingKey, TriggerRecords};
use webhook::webhook_target;

/// HTTP clients kept, one per distinct connect timeout.
const MAX_CLIENTS: usize = 16;

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
    /// What each of those clients trusts and presents for `https`.
    tls: TlsSettings,
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

impl Executor {
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
            tls: settings.tls,
            last_triggers: Mutex::new(TriggerRecords::default()),
            pending: Mutex::new(HashSet::new()),
        })
    }

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
                self.tls
                    .apply(reqwest::Client::builder())
                    .connect_timeout(connect_timeout)
                    .user_agent(sluice_http::USER_AGENT)
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

#[cfg(test)]
mod tests {
    use super::*;

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
