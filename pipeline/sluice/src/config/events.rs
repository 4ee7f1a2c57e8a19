//! `[events]`: which of the manager's event and log streams are consumed, and into which index;
//! with the `[elasticsearch]` sink they are written to, it makes the events path's settings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_amqp::source::SourceSettings;
use sluice_amqp::topology::{ExchangeSpec, QueueSpec, SourceTopology};
use sluice_core::path::PathLimits;
use sluice_elasticsearch::{EsSettings, TemplateOptions};
use sluice_normalise::IndexPattern;

use super::amqp::{BrokerConnection, RawExchangeType};
use super::elasticsearch::{ElasticsearchSink, RawElasticsearch};

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
pub enum RawManager {
    /// Cloudify 4.x: sluice's own durable queues bound to the durable fanout exchanges.
    #[serde(rename = "4.x")]
    V4,
    /// Cloudify 3.x: the manager's own queues (durable, auto-delete), fed through the default
    /// exchange.
    #[serde(rename = "3.x")]
    V3,
    /// Any exchanges: sluice's own durable queues bound with `binding_keys`.
    #[serde(rename = "generic")]
    Generic,
}

/// The events and logs path: the manager's event and log streams into Elasticsearch.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawEvents {
    /// On by default, unless the file configures pipelines (`[sources]`): then off unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    pub manager: RawManager,
    /// 4.x and generic: the exchanges to consume (one queue of sluice's own per exchange).
    pub exchanges: Vec<String>,
    /// generic: the exchanges' type (4.x: always fanout).
    pub exchange_type: RawExchangeType,
    /// generic: binding keys (fanout exchanges ignore them).
    pub binding_keys: Vec<String>,
    /// 4.x and generic: sluice's own queue for each exchange, in the same order. 3.x: the
    /// manager's queues to consume. Unset: `sluice.events`/`sluice.logs` (4.x), or
    /// `cloudify-events`/`cloudify-logs` (3.x).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<String>>,
    /// The index each document goes to, named from its own `@timestamp` (Logstash date syntax),
    /// or a fixed name such as `cloudify_events`.
    pub index: String,
    /// Install (or update) at each start the index template `sluice-events` for the index
    /// pattern: strings as text with a keyword sub-field, as Logstash leaves them, and the
    /// manager's fields whose shape varies between its versions mapped so that no daily index
    /// refuses either shape (`timestamp` as a keyword; the free-form arguments kept, not
    /// indexed). On by default, as Logstash manages its template; turn it off when the indices'
    /// templates are managed elsewhere.
    pub install_index_template: bool,
    /// The ILM policy sluice's template puts its indices under (`index.lifecycle.name`), such
    /// as one that deletes them after 7 days, the manager's retention. The policy itself is
    /// defined in Elasticsearch. Needs `install_index_template`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ilm_policy: Option<String>,
    /// Write into a data stream instead of indices named by date: the template makes
    /// `events.index` a data stream, which must then be a fixed name (the stream's), and
    /// Elasticsearch creates and rolls over its backing indices (with `ilm_policy`, by the
    /// policy's rollover). Name it so that the manager's readers still find it, such as
    /// `logstash-cloudify` for their `logstash-*`. Needs `install_index_template`.
    pub data_stream: bool,
}

impl Default for RawEvents {
    fn default() -> Self {
        Self {
            enabled: None,
            manager: RawManager::V4,
            exchanges: vec!["cloudify-events".into(), "cloudify-logs".into()],
            exchange_type: RawExchangeType::Fanout,
            binding_keys: vec!["#".into()],
            queues: None,
            index: "logstash-%{+YYYY.MM.dd}".into(),
            install_index_template: true,
            ilm_policy: None,
            data_stream: false,
        }
    }
}

/// The events path's settings: its sources, index and Elasticsearch sink.
pub struct EventsPathSettings {
    /// One source per consumed queue; they feed one decoder.
    pub sources: Vec<SourceSettings>,
    pub index: IndexPattern,
    pub install_index_template: bool,
    pub template_options: TemplateOptions,
    pub elasticsearch: EsSettings,
    pub limits: PathLimits,
}

impl RawEvents {
    /// Checks the section and the `[elasticsearch]` sink it writes to, reporting each error to
    /// `fail`; answers the path's settings when they are complete (also when the path is
    /// disabled, so a disabled section is still checked).
    pub(super) fn validate(
        &self,
        elasticsearch: &RawElasticsearch,
        amqp: &BrokerConnection<'_>,
        fail: &mut impl FnMut(&str, String),
    ) -> Option<EventsPathSettings> {
        let index = IndexPattern::parse(&self.index)
            .map_err(|error| fail("events.index", error.to_string()))
            .ok();
        if self.ilm_policy.as_deref() == Some("") {
            fail(
                "events.ilm_policy",
                "is empty: name a policy, or leave it unset".into(),
            );
        }
        for (field, set) in [
            ("events.ilm_policy", self.ilm_policy.is_some()),
            ("events.data_stream", self.data_stream),
        ] {
            if set && !self.install_index_template {
                fail(
                    field,
                    "is a setting of the template sluice installs: needs \
                     events.install_index_template = true"
                        .into(),
                );
            }
        }
        if self.data_stream
            && let Some(pattern) = &index
            && !pattern.is_fixed()
        {
            fail(
                "events.index",
                format!(
                    "{:?} names an index per date, but with events.data_stream it names the \
                     data stream: use a fixed name such as \"logstash-cloudify\" (Elasticsearch \
                     rolls the stream's backing indices over)",
                    pattern.as_str()
                ),
            );
        }
        let queues = match (&self.manager, &self.queues) {
            (_, Some(queues)) => queues.clone(),
            (RawManager::V3, None) => vec!["cloudify-events".into(), "cloudify-logs".into()],
            (_, None) => self
                .exchanges
                .iter()
                .map(|exchange| {
                    format!(
                        "sluice.{}",
                        exchange.strip_prefix("cloudify-").unwrap_or(exchange)
                    )
                })
                .collect(),
        };
        if queues.is_empty() || queues.iter().any(String::is_empty) {
            fail(
                "events.queues",
                "needs at least one queue, and no empty names".into(),
            );
        }
        if self.manager != RawManager::V3 {
            if self.exchanges.is_empty() || self.exchanges.iter().any(String::is_empty) {
                fail(
                    "events.exchanges",
                    "needs at least one exchange, and no empty names".into(),
                );
            }
            if queues.len() != self.exchanges.len() {
                fail(
                    "events.queues",
                    format!(
                        "names {} queues for {} exchanges: one queue per exchange",
                        queues.len(),
                        self.exchanges.len()
                    ),
                );
            }
        }
        let sources: Vec<SourceSettings> = self
            .topologies(&queues)
            .into_iter()
            .filter_map(|topology| amqp.source(topology.queue.name.clone(), topology))
            .collect();

        let ElasticsearchSink {
            settings: elasticsearch,
            limits,
        } = elasticsearch.validate(fail)?;
        Some(EventsPathSettings {
            sources,
            index: index?,
            install_index_template: self.install_index_template,
            template_options: TemplateOptions {
                ilm_policy: self.ilm_policy.clone(),
                data_stream: self.data_stream,
            },
            elasticsearch,
            limits,
        })
    }

    /// What each of `queues` is declared and bound as, for the configured manager.
    fn topologies(&self, queues: &[String]) -> Vec<SourceTopology> {
        match self.manager {
            RawManager::V3 => queues
                .iter()
                .map(|queue| SourceTopology {
                    exchange: None,
                    // Declared exactly as the 3.x manager declares them.
                    queue: QueueSpec {
                        auto_delete: true,
                        ..QueueSpec::durable(queue.clone())
                    },
                    binding_keys: Vec::new(),
                })
                .collect(),
            RawManager::V4 | RawManager::Generic => self
                .exchanges
                .iter()
                .zip(queues)
                .map(|(exchange, queue)| {
                    let manager_exchange = ExchangeSpec::durable_fanout(exchange.clone());
                    let (exchange, binding_keys) = if self.manager == RawManager::V4 {
                        (manager_exchange, vec![String::new()])
                    } else {
                        // Durable like the manager's exchanges, of the configured type.
                        let exchange = ExchangeSpec {
                            kind: self.exchange_type.into(),
                            ..manager_exchange
                        };
                        (exchange, self.binding_keys.clone())
                    };
                    SourceTopology {
                        exchange: Some(exchange),
                        queue: QueueSpec::durable(queue.clone()),
                        binding_keys,
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    #[test]
    fn a_data_stream_needs_a_fixed_name_and_both_options_need_the_template() {
        let mut raw = RawConfig::default();
        raw.events.data_stream = true;
        let errors = raw
            .validate()
            .err()
            .expect("a dated index refused")
            .to_string();
        assert!(errors.contains("events.index"), "{errors}");
        assert!(errors.contains("fixed name"), "{errors}");

        raw.events.index = "logstash-cloudify".into();
        raw.events.ilm_policy = Some("cloudify-7-days".into());
        let events = raw.validate().expect("valid").events.expect("events");
        assert_eq!(
            events.template_options,
            TemplateOptions {
                ilm_policy: Some("cloudify-7-days".into()),
                data_stream: true,
            }
        );

        raw.events.install_index_template = false;
        let errors = raw.validate().err().expect("no template").to_string();
        assert!(errors.contains("events.ilm_policy"), "{errors}");
        assert!(errors.contains("events.data_stream"), "{errors}");

        raw.events.install_index_template = true;
        raw.events.ilm_policy = Some(String::new());
        let errors = raw.validate().err().expect("an empty policy").to_string();
        assert!(errors.contains("events.ilm_policy"), "{errors}");
    }

    #[test]
    fn manager_3x_consumes_the_managers_own_queues_as_it_declares_them() {
        let mut raw = RawConfig::default();
        raw.events.manager = RawManager::V3;
        let events = raw.validate().expect("valid").events.expect("events");
        let queues: Vec<&str> = events
            .sources
            .iter()
            .map(|source| {
                assert!(
                    source.topology.exchange.is_none(),
                    "fed through the default exchange"
                );
                assert!(source.topology.queue.durable && source.topology.queue.auto_delete);
                source.topology.queue.name.as_str()
            })
            .collect();
        assert_eq!(queues, vec!["cloudify-events", "cloudify-logs"]);
    }
}
