//! Where the manager is and how to call it: [`ManagerSettings`] and [`ManagerApi`].

use std::time::Duration;

use secrecy::SecretString;
use sluice_core::retry::RetryPolicy;
use sluice_http::TlsSettings;
use url::Url;

/// The manager's internal REST port on 3.x managers.
pub const DEFAULT_MANAGER_URL: &str = "http://127.0.0.1:8101";

/// Which REST API the manager speaks. `Debug` prints the token as `[REDACTED]`.
#[derive(Debug, Clone)]
pub enum ManagerApi {
    /// 3.x: `/api/v2/...`, no authentication.
    V3,
    /// 4.x: `/api/v3/...`, with the `API-Authentication-Token` and `Tenant` headers.
    V4 { token: SecretString, tenant: String },
}

impl ManagerApi {
    /// The path prefix of the API version: `/api/v2` or `/api/v3`.
    pub fn prefix(&self) -> &'static str {
        match self {
            ManagerApi::V3 => "/api/v2",
            ManagerApi::V4 { .. } => "/api/v3",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ManagerSettings {
    /// The manager's REST base URL; default [`DEFAULT_MANAGER_URL`].
    pub url: Url,
    pub api: ManagerApi,
    /// The backoff between attempts at a transient failure.
    pub retry: RetryPolicy,
    /// How long one action is retried for, from its first attempt, before it fails for good.
    pub retry_deadline: Duration,
    /// A private CA and a client certificate for `https`.
    pub tls: TlsSettings,
}

impl Default for ManagerSettings {
    fn default() -> Self {
        Self {
            // A constant that parses; the fallback is never taken.
            url: Url::parse(DEFAULT_MANAGER_URL).unwrap_or_else(|_| unreachable!()),
            api: ManagerApi::V3,
            retry: RetryPolicy::default(),
            retry_deadline: Duration::from_secs(60),
            tls: TlsSettings::default(),
        }
    }
}
