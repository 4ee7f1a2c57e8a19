//! `[manager]`: the manager's REST API, which the rule stage's triggers call.

use std::time::Duration;

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sluice_rest::{DEFAULT_MANAGER_URL, ManagerApi, ManagerSettings};

use super::secret::{SecretFile, secret};
use super::tls::RawTls;
use super::{above_zero, backoff, http_url, redacted_option};

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
pub enum RawManagerRestApi {
    /// Cloudify 3.x: `/api/v2`, no authentication (the internal port 8101).
    #[serde(rename = "3.x")]
    V3,
    /// Cloudify 4.x: `/api/v3`, with `token` and `tenant`.
    #[serde(rename = "4.x")]
    V4,
}

/// The manager's REST API, which the rule stage's `execute_workflow` triggers call.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawManagerRest {
    pub url: String,
    pub api: RawManagerRestApi,
    /// 4.x: the `API-Authentication-Token`; never logged.
    #[schemars(with = "Option<String>")]
    #[serde(
        serialize_with = "redacted_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<SecretString>,
    /// 4.x: a file holding the token, instead of `token`.
    #[schemars(with = "Option<String>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<SecretFile>,
    /// 4.x: the `Tenant` header.
    pub tenant: String,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_initial_delay: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_max_delay: Duration,
    /// How long one action is retried (5xx, timeouts, connection errors) before it fails.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_deadline: Duration,
    /// `https` with a private CA or a client certificate.
    pub tls: RawTls,
}

impl Default for RawManagerRest {
    fn default() -> Self {
        Self {
            url: DEFAULT_MANAGER_URL.into(),
            api: RawManagerRestApi::V3,
            token: None,
            token_file: None,
            tenant: "default_tenant".into(),
            retry_initial_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(10),
            retry_deadline: Duration::from_secs(60),
            tls: RawTls::default(),
        }
    }
}

impl RawManagerRest {
    /// Checks the section, reporting each error to `fail`; `None` when something is invalid.
    pub(super) fn validate(&self, fail: &mut impl FnMut(&str, String)) -> Option<ManagerSettings> {
        let url = http_url("manager.url", &self.url, fail);
        let token = secret(
            "manager.token",
            self.token.as_ref(),
            self.token_file.as_ref(),
            fail,
        );
        let api = match (self.api, token) {
            (RawManagerRestApi::V3, _) => Some(ManagerApi::V3),
            (RawManagerRestApi::V4, Ok(Some(token))) => Some(ManagerApi::V4 {
                token,
                tenant: self.tenant.clone(),
            }),
            // Reported already.
            (RawManagerRestApi::V4, Err(_)) => None,
            (RawManagerRestApi::V4, Ok(None)) => {
                fail("manager.token", "is required with api = \"4.x\"".into());
                None
            }
        };
        let retry = backoff(
            ("manager.retry_initial_delay", self.retry_initial_delay),
            ("manager.retry_max_delay", self.retry_max_delay),
            fail,
        );
        above_zero("manager.retry_deadline", self.retry_deadline, fail);
        let tls = self.tls.validate("manager", fail);
        Some(ManagerSettings {
            url: url?,
            api: api?,
            retry,
            retry_deadline: self.retry_deadline,
            tls: tls?,
        })
    }
}
