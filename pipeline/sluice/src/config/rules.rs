//! `[rules]`: the rule stage, which evaluates the manager's policies and the generic rules on
//! the metrics stream; with the `[manager]` REST API its actions call, it makes the rule stage's
//! settings.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_amqp::publisher::EventPublisherSettings;
use sluice_amqp::topology::ExchangeSpec;
use sluice_rest::stage::RuleStageSettings;
use sluice_rules::{EngineLimits, GenericLimits};

use super::amqp::BrokerConnection;
use super::events::RawManager;
use super::manager::RawManagerRest;
use super::{above_zero, at_least_one};

/// The rule stage: the manager's policies (loaded by its `manager-riemann` control messages),
/// evaluated on the metrics stream, triggering workflows through the manager's REST API.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawRules {
    /// Needs the metrics path, which carries both the metrics and the control messages.
    pub enabled: bool,
    /// Generic rule files (TOML) for the standalone tier, evaluated on every point of the
    /// metrics path; each file's name (without `.toml`) is its rules' `group`. The manager's
    /// policies need none: they come with its control messages.
    pub files: Vec<String>,
    /// Where rule state is checkpointed (`rules.json`), so a restart neither re-fires nor
    /// forgets a silent host. Created at start.
    pub state_dir: String,
    /// How often silent hosts are looked for (the manager's Riemann: every 5 s).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub sweep_interval: Duration,
    /// How often changed state is written to `state_dir`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub checkpoint_interval: Duration,
    /// After a start, the sweeps for silent hosts wait until the metrics that queued up while
    /// sluice was down have arrived (the queue's message count at the start tells how many),
    /// and at most this long. With nothing queued they start at once.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub startup_grace: Duration,
    /// Keys (node instances, or host series) kept per policy or rule; the least recently seen
    /// goes.
    pub max_keys_per_policy: usize,
    /// Samples kept per key in a generic rule's window; the oldest go first.
    pub max_samples_per_window: usize,
    /// Keys not seen for this long are forgotten.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idle_forget_after: Duration,
    /// Actions (REST calls with their retries) running at once.
    pub max_actions_in_flight: usize,
    /// Actions waiting for a place; beyond this an action fails at once with a `trigger_failed`
    /// event saying so.
    pub max_actions_queued: usize,
    /// Where the rule stage's events go. Unset: the manager's events path, `cloudify-events`
    /// (the 4.x fanout exchange, or with `events.manager = "3.x"` the default exchange).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_exchange: Option<String>,
    /// Unset: `""` for an exchange, `cloudify-events` for the default exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_routing_key: Option<String>,
}

impl Default for RawRules {
    fn default() -> Self {
        Self {
            enabled: true,
            files: Vec::new(),
            state_dir: "/var/lib/sluice/rules".into(),
            sweep_interval: Duration::from_secs(5),
            checkpoint_interval: Duration::from_secs(5),
            startup_grace: Duration::from_secs(60),
            max_keys_per_policy: EngineLimits::default().max_keys_per_policy,
            max_samples_per_window: GenericLimits::default().max_samples_per_window,
            idle_forget_after: EngineLimits::default().idle_forget_after,
            max_actions_in_flight: 16,
            max_actions_queued: 1000,
            events_exchange: None,
            events_routing_key: None,
        }
    }
}

/// The rule stage's settings, and where its events are published.
pub struct RulesSettings {
    pub stage: RuleStageSettings,
    /// Where the policy and trigger events are published.
    pub events: EventPublisherSettings,
}

impl RawRules {
    /// Checks the section and the `[manager]` API its actions call, reporting each error to
    /// `fail`, and converts them into what the rule stage is handed; `events_manager` decides
    /// where its events go by default. `None` when something is invalid; checked also when the
    /// stage is disabled.
    pub(super) fn validate(
        &self,
        manager: &RawManagerRest,
        events_manager: RawManager,
        amqp: &BrokerConnection<'_>,
        fail: &mut impl FnMut(&str, String),
    ) -> Option<RulesSettings> {
        if self.state_dir.is_empty() {
            fail("rules.state_dir", "must not be empty".into());
        }
        above_zero("rules.sweep_interval", self.sweep_interval, fail);
        above_zero("rules.checkpoint_interval", self.checkpoint_interval, fail);
        let max_keys = at_least_one("rules.max_keys_per_policy", self.max_keys_per_policy, fail);
        let max_samples = at_least_one(
            "rules.max_samples_per_window",
            self.max_samples_per_window,
            fail,
        );
        if self.files.iter().any(String::is_empty) {
            fail("rules.files", "a file name is empty".into());
        }
        let in_flight = at_least_one(
            "rules.max_actions_in_flight",
            self.max_actions_in_flight,
            fail,
        );
        let queued = at_least_one("rules.max_actions_queued", self.max_actions_queued, fail);
        let manager = manager.validate(fail);

        // The manager's events path: 3.x's queue through the default exchange, or 4.x's
        // fanout exchange, declared as the manager declares it.
        let (default_exchange, default_routing_key) = match events_manager {
            RawManager::V3 => ("", "cloudify-events"),
            RawManager::V4 | RawManager::Generic => ("cloudify-events", ""),
        };
        let exchange = self
            .events_exchange
            .clone()
            .unwrap_or_else(|| default_exchange.to_owned());
        let routing_key = self.events_routing_key.clone().unwrap_or_else(|| {
            if exchange.is_empty() {
                "cloudify-events".to_owned()
            } else {
                default_routing_key.to_owned()
            }
        });
        let declare = (self.events_exchange.is_none() && !exchange.is_empty())
            .then(|| ExchangeSpec::durable_fanout(exchange.clone()));
        let max_keys = max_keys?.get();
        let stage = RuleStageSettings {
            rule_files: self.files.iter().map(PathBuf::from).collect(),
            state_dir: PathBuf::from(&self.state_dir),
            sweep_interval: self.sweep_interval,
            checkpoint_interval: self.checkpoint_interval,
            startup_grace: self.startup_grace,
            engine_limits: EngineLimits {
                max_keys_per_policy: max_keys,
                idle_forget_after: self.idle_forget_after,
            },
            generic_limits: GenericLimits {
                max_keys_per_rule: max_keys,
                max_samples_per_window: max_samples?.get(),
                idle_forget_after: self.idle_forget_after,
            },
            max_actions_in_flight: in_flight?,
            max_actions_queued: queued?,
            manager: manager?,
        };
        Some(RulesSettings {
            stage,
            events: EventPublisherSettings {
                url: amqp.broker.clone()?,
                exchange,
                declare,
                routing_key,
                reconnect: amqp.reconnect,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use sluice_amqp::topology::ExchangeType;
    use sluice_rest::ManagerApi;

    use super::*;
    use crate::config::RawConfig;
    use crate::config::manager::RawManagerRestApi;

    #[test]
    fn the_rule_stage_defaults_to_the_3x_manager_and_the_4x_events_exchange() {
        let rules = RawConfig::default()
            .validate()
            .expect("valid")
            .rules
            .expect("the rule stage is on by default");
        assert_eq!(rules.stage.manager.url.as_str(), "http://127.0.0.1:8101/");
        assert!(matches!(rules.stage.manager.api, ManagerApi::V3));
        assert_eq!(rules.stage.sweep_interval, Duration::from_secs(5));
        assert_eq!(rules.events.exchange, "cloudify-events");
        assert_eq!(rules.events.routing_key, "");
        let declared = rules
            .events
            .declare
            .expect("declared as the 4.x manager does");
        assert_eq!(declared.kind, ExchangeType::Fanout);
        assert!(declared.durable && !declared.auto_delete);

        // 3.x: the manager's queue through the default exchange, nothing declared.
        let mut raw = RawConfig::default();
        raw.events.manager = RawManager::V3;
        let rules = raw.validate().expect("valid").rules.expect("rules");
        assert_eq!(rules.events.exchange, "");
        assert_eq!(rules.events.routing_key, "cloudify-events");
        assert!(rules.events.declare.is_none());
    }

    #[test]
    fn the_4x_api_needs_a_token_and_the_rule_stage_needs_the_metrics_path() {
        let mut raw = RawConfig::default();
        raw.manager.api = RawManagerRestApi::V4;
        raw.manager.url = "ftp://manager".into();
        raw.rules.sweep_interval = Duration::ZERO;
        let errors = raw.validate().err().expect("invalid").0;
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        for field in ["manager.token", "manager.url", "rules.sweep_interval"] {
            assert!(fields.contains(&field), "{field} missing from {fields:?}");
        }

        let mut raw = RawConfig::default();
        raw.manager.api = RawManagerRestApi::V4;
        raw.manager.token = Some(SecretString::from("s3cret-token"));
        raw.metrics.enabled = Some(false);
        let settings = raw.validate().expect("valid");
        assert!(settings.rules.is_none(), "no metrics path, no rule stage");
        assert!(
            settings
                .warnings
                .iter()
                .any(|warning| warning.contains("rules.enabled"))
        );
        let shown = serde_json::to_string(&raw).expect("serialisable");
        assert!(
            !shown.contains("s3cret-token"),
            "the token is redacted: {shown}"
        );
    }
}
