//! `[dead_letter]`: the exchange (and queue) that rejected messages go to.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_amqp::BrokerUrl;
use sluice_amqp::dead_letter::DeadLetterSettings;
use sluice_core::retry::RetryPolicy;

/// Where rejected messages go, with headers saying why.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawDeadLetter {
    /// A durable topic exchange; routing key `<stage>.<reason>`.
    pub exchange: String,
    /// A durable queue bound with `#` so that dead letters are kept; "" to declare none (then
    /// bind your own, or unroutable dead letters send their originals back to their queue).
    pub queue: String,
}

impl Default for RawDeadLetter {
    fn default() -> Self {
        Self {
            exchange: "sluice.dead-letter".into(),
            queue: "sluice.dead-letter".into(),
        }
    }
}

impl RawDeadLetter {
    /// Checks the section, reporting each error to `fail`.
    pub(super) fn validate(&self, fail: &mut impl FnMut(&str, String)) {
        if self.exchange.is_empty() {
            fail("dead_letter.exchange", "must not be empty".into());
        }
    }

    /// The dead-letter publisher's settings on `broker`.
    pub(super) fn settings(&self, broker: BrokerUrl, reconnect: RetryPolicy) -> DeadLetterSettings {
        DeadLetterSettings {
            url: broker,
            exchange: self.exchange.clone(),
            queue: Some(self.queue.clone()).filter(|queue| !queue.is_empty()),
            reconnect,
        }
    }
}
