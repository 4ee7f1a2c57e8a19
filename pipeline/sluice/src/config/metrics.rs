//! `[metrics]`: where Diamond metrics are consumed and how they are named; with the `[influx]`
//! sink they are written to, it makes the metrics path's settings.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_amqp::source::SourceSettings;
use sluice_amqp::topology::{ExchangeSpec, QueueSpec, SourceTopology};
use sluice_core::path::PathLimits;
use sluice_core::point::PointLimits;
use sluice_influx::InfluxSettings;
use sluice_normalise::{Naming, TemplateSet};

use super::amqp::{BrokerConnection, RawExchangeType};
use super::influx::{InfluxSink, RawInflux};

/// Enough to spread one queue over several connections; more only adds broker load.
const MAX_CONSUMERS: u16 = 16;

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum RawNaming {
    /// Graphite templates applied to the metric path (default `measurement*`).
    Templates,
    /// The old Cloudify consumer's series name as the measurement, with fields value, unit, type.
    CloudifyLegacy,
}

/// The metrics path: where Diamond metrics are consumed and how they are named.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// On by default, unless the file configures pipelines (`[sources]`): then off unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The exchange the agents publish to, declared exactly as the manager declares it.
    pub exchange: String,
    pub exchange_type: RawExchangeType,
    pub exchange_durable: bool,
    pub exchange_auto_delete: bool,
    /// sluice's own queue; it survives sluice restarts, so metrics wait meanwhile.
    pub queue: String,
    pub queue_durable: bool,
    /// Binding keys; `#` also matches deployment ids that contain dots.
    pub binding_keys: Vec<String>,
    /// Broker-side `x-message-ttl` of the queue, e.g. "10m". Unset: messages never expire.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub queue_message_ttl: Option<Duration>,
    /// Broker-side `x-max-length` of the queue. Unset: unbounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_max_length: Option<u32>,
    pub naming: RawNaming,
    /// Joins the measurement parts (and field parts) a template picks.
    pub separator: String,
    /// Graphite templates, `[filter] template [tag=value,...]`, most specific filter wins.
    pub templates: Vec<String>,
    /// Longest measurement, tag or field name accepted, in bytes.
    pub max_name_bytes: usize,
    /// Consumers of the metrics queue, each on its own connection and channel with its own
    /// prefetch. More than one helps when one connection's frame handling is the limit.
    pub consumers: u16,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            enabled: None,
            exchange: "cloudify-monitoring".into(),
            exchange_type: RawExchangeType::Topic,
            exchange_durable: false,
            exchange_auto_delete: true,
            queue: "sluice.metrics".into(),
            queue_durable: true,
            binding_keys: vec!["#".into()],
            queue_message_ttl: None,
            queue_max_length: None,
            naming: RawNaming::Templates,
            separator: ".".into(),
            templates: vec!["measurement*".into()],
            max_name_bytes: PointLimits::default().max_name_bytes,
            consumers: 1,
        }
    }
}

/// The metrics path's settings: its source, naming and InfluxDB sink.
pub struct MetricsPathSettings {
    pub source: SourceSettings,
    /// How many consumers of `source` run side by side.
    pub consumers: u16,
    pub naming: Naming,
    pub point_limits: PointLimits,
    pub influx: InfluxSettings,
    pub create_database: bool,
    pub limits: PathLimits,
}

impl RawMetrics {
    /// Checks the section and the `[influx]` sink it writes to, reporting each error to `fail`;
    /// answers the path's settings when they are complete (also when the path is disabled, so a
    /// disabled section is still checked).
    pub(super) fn validate(
        &self,
        influx: &RawInflux,
        amqp: &BrokerConnection<'_>,
        fail: &mut impl FnMut(&str, String),
    ) -> Option<MetricsPathSettings> {
        if !(1..=MAX_CONSUMERS).contains(&self.consumers) {
            fail(
                "metrics.consumers",
                format!("must be from 1 to {MAX_CONSUMERS}"),
            );
        }
        if self.queue.is_empty() {
            fail("metrics.queue", "must not be empty".into());
        }
        if self.exchange.is_empty() {
            fail("metrics.exchange", "must not be empty".into());
        }
        if self.binding_keys.is_empty() {
            fail(
                "metrics.binding_keys",
                "needs at least one key (\"#\" for all)".into(),
            );
        }
        if self.max_name_bytes == 0 {
            fail("metrics.max_name_bytes", "must be at least 1".into());
        }
        let naming = match self.naming {
            RawNaming::CloudifyLegacy => Some(Naming::CloudifyLegacy),
            RawNaming::Templates => TemplateSet::parse(&self.separator, &self.templates)
                .map(Naming::Templates)
                .map_err(|error| fail("metrics.templates", error.to_string()))
                .ok(),
        };
        let point_limits = PointLimits {
            max_name_bytes: self.max_name_bytes,
            ..PointLimits::default()
        };
        let InfluxSink {
            settings: influx,
            create_database,
            limits,
        } = influx.validate(point_limits, fail)?;

        let topology = SourceTopology {
            exchange: Some(ExchangeSpec {
                name: self.exchange.clone(),
                kind: self.exchange_type.into(),
                durable: self.exchange_durable,
                auto_delete: self.exchange_auto_delete,
            }),
            queue: QueueSpec {
                name: self.queue.clone(),
                durable: self.queue_durable,
                auto_delete: false,
                message_ttl: self.queue_message_ttl,
                max_length: self.queue_max_length,
            },
            binding_keys: self.binding_keys.clone(),
        };
        Some(MetricsPathSettings {
            source: amqp.source("metrics".to_owned(), topology)?,
            consumers: self.consumers,
            naming: naming?,
            point_limits,
            influx,
            create_database,
            limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    /// The load harness declares the metrics topology with these constructors before sluice runs;
    /// if the defaults drifted from them, sluice's own declaration would fail on the harness's.
    #[test]
    fn the_default_topology_is_the_manager_exchange_and_a_durable_queue() {
        let settings = RawConfig::default().validate().expect("defaults are valid");
        let metrics = settings.metrics.expect("metrics path on by default");
        assert_eq!(
            metrics.source.topology,
            SourceTopology {
                exchange: Some(ExchangeSpec::cloudify_monitoring("cloudify-monitoring")),
                queue: QueueSpec::durable("sluice.metrics"),
                binding_keys: vec!["#".to_owned()],
            }
        );
    }
}
