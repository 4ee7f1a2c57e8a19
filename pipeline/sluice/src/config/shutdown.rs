//! `[shutdown]`: how long a SIGTERM waits for the pipeline to drain.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::above_zero;

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawShutdown {
    /// How long SIGTERM waits for the pipeline to drain, flush and ack before exiting anyway
    /// (what is unacked then is redelivered by the broker).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub deadline: Duration,
}

impl Default for RawShutdown {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(30),
        }
    }
}

impl RawShutdown {
    /// Checks the section, reporting each error to `fail`.
    pub(super) fn validate(&self, fail: &mut impl FnMut(&str, String)) {
        above_zero("shutdown.deadline", self.deadline, fail);
    }
}
