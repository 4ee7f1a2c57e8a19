//! `[admin]`: where the admin HTTP endpoint listens.

use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The admin HTTP endpoint: `/metrics` (Prometheus), `/healthz`, `/readyz`.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Loopback unless configured otherwise; "" disables the endpoint.
    pub listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9598".into(),
        }
    }
}

impl RawAdmin {
    /// Checks the section, reporting each error to `fail`; answers the address to listen on,
    /// `None` when the endpoint is disabled (or the address invalid).
    pub(super) fn validate(&self, fail: &mut impl FnMut(&str, String)) -> Option<SocketAddr> {
        if self.listen.is_empty() {
            return None;
        }
        match self.listen.parse::<SocketAddr>() {
            Ok(address) => Some(address),
            Err(error) => {
                fail(
                    "admin.listen",
                    format!("{:?} is not an address:port: {error}", self.listen),
                );
                None
            }
        }
    }
}
