//! `[sources.*]`, `[transforms.*]` and `[sinks.*]`: configured pipelines, for the standalone
//! ingestion tier. Components are named, and each transform and sink names its `inputs`, as
//! Vector users know it:
//!
//! ```toml
//! [sources.carbon]
//! type = "graphite"
//! tcp = "127.0.0.1:2003"
//!
//! [transforms.tagged]
//! type = "tags"
//! inputs = ["carbon"]
//! add = { env = "prod" }
//!
//! [sinks.influx]
//! type = "influxdb"
//! inputs = ["tagged"]
//! database = "metrics"
//! ```
//!
//! A source is read from a RabbitMQ queue with a decoder ([`sources`]): an `amqp` source names
//! the exchange and the body format; a push input (`graphite`, `influxdb_write`,
//! `prometheus_remote_write`) also runs the listener that publishes what it receives to its
//! queue with confirms, so the broker is its durable buffer. The graph ([`graph`]) is checked
//! for unknown names, cycles and components nobody feeds or reads, each error naming its field,
//! and turned into routes: for each source, every chain of transforms that leads to a sink.
//!
//! With no `[sources]`, the file is the sidecar's: `[metrics]` and `[events]` are on by default.
//! With sources, they are off unless their `enabled` says otherwise, so a tier runs what its
//! file names and nothing else.

mod graph;
mod sinks;
mod sources;
mod transforms;

use std::collections::BTreeMap;

pub use sinks::{RawSink, RawSinkKind, SinkKind, SinkSpec};
pub use sources::{ConsumeSpec, DecoderSpec, IntakeSpec, PublishTarget, RawSource, SourceSpec};
pub use transforms::RawTransform;

use super::amqp::BrokerConnection;

/// The configured pipelines, as the file has them (`RawConfig`'s three sections).
#[derive(Clone, Copy)]
pub struct RawPipelines<'a> {
    pub sources: &'a BTreeMap<String, RawSource>,
    pub transforms: &'a BTreeMap<String, RawTransform>,
    pub sinks: &'a BTreeMap<String, RawSink>,
}

/// The checked pipelines: what the tier part runs.
pub struct PipelinesSettings {
    pub sources: Vec<SourceSpec>,
    /// Indexed by [`RouteSpec::sink`].
    pub sinks: Vec<SinkSpec>,
}

impl RawPipelines<'_> {
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.transforms.is_empty() && self.sinks.is_empty()
    }

    /// Checks every component and the graph, reporting each error to `fail`. `None` when there
    /// is nothing configured or something is invalid.
    pub(super) fn validate(
        &self,
        amqp: &BrokerConnection<'_>,
        fail: &mut impl FnMut(&str, String),
    ) -> Option<PipelinesSettings> {
        if self.is_empty() {
            return None;
        }
        let mut complete = true;
        let mut sinks = Vec::with_capacity(self.sinks.len());
        for (name, sink) in self.sinks {
            match sink.validate(name, amqp, fail) {
                Some(sink) => sinks.push(sink),
                None => complete = false,
            }
        }
        let mut transforms = BTreeMap::new();
        for (name, transform) in self.transforms {
            match transform.validate(name, fail) {
                Some(checked) => {
                    transforms.insert(name.as_str(), checked);
                }
                None => complete = false,
            }
        }
        let routes = graph::routes(*self, &transforms, fail);
        let mut sources = Vec::with_capacity(self.sources.len());
        for (name, source) in self.sources {
            let routes = routes.as_ref().map(|routes| routes.of(name));
            match source.validate(name, amqp, routes.unwrap_or_default(), fail) {
                Some(source) => sources.push(source),
                None => complete = false,
            }
        }
        (complete && routes.is_some()).then_some(PipelinesSettings { sources, sinks })
    }
}

/// `<section>.<name>.<key>`, the field an error names.
fn field(section: &str, name: &str, key: &str) -> String {
    format!("{section}.{name}.{key}")
}

#[cfg(test)]
mod tests {
    use crate::config::SinkKind;
    use crate::config::test_support::{AGENTS, errors, load};

    const TWO_SINKS: &str = r#"
        [sources.agents]
        type = "amqp"
        exchange = "agents"
        decoder = { format = "line_protocol" }

        [sources.carbon]
        type = "graphite"
        tcp = "127.0.0.1:2003"

        [transforms.tagged]
        type = "tags"
        inputs = ["agents", "carbon"]
        add = { env = "prod" }

        [transforms.cpu_only]
        type = "filter"
        inputs = ["tagged"]
        measurement = "^cpu"

        [sinks.everything]
        type = "influxdb"
        inputs = ["tagged"]
        database = "all"

        [sinks.cpu]
        type = "influxdb"
        inputs = ["cpu_only", "carbon"]
        database = "cpu"
    "#;

    #[test]
    fn pipelines_turn_the_sidecar_off_and_become_routes() {
        let settings = load(TWO_SINKS).expect("valid");
        assert!(
            settings.metrics.is_none() && settings.events.is_none(),
            "sidecar off"
        );
        let pipelines = settings.pipelines.expect("pipelines");
        let sink_names: Vec<&str> = pipelines
            .sinks
            .iter()
            .map(|sink| sink.name.as_str())
            .collect();
        assert_eq!(sink_names, ["cpu", "everything"]);
        let routes = |source: &str| {
            let spec = pipelines
                .sources
                .iter()
                .find(|spec| spec.name == source)
                .expect("the source");
            let consume = spec.consume.as_ref().expect("consumed here");
            let mut routes: Vec<(usize, usize)> = consume
                .routes
                .iter()
                .map(|route| (route.sink, route.transforms.len()))
                .collect();
            routes.sort_unstable();
            routes
        };
        // agents: tagged -> cpu_only -> cpu; tagged -> everything.
        assert_eq!(routes("agents"), [(0, 2), (1, 1)]);
        // carbon also goes straight to cpu, untouched.
        assert_eq!(routes("carbon"), [(0, 0), (0, 2), (1, 1)]);
        let carbon = pipelines
            .sources
            .iter()
            .find(|spec| spec.name == "carbon")
            .expect("carbon");
        assert!(carbon.intake.is_some(), "the listener runs here too");
        let queue = &carbon
            .consume
            .as_ref()
            .expect("consumed")
            .source
            .topology
            .queue;
        assert_eq!(queue.name, "sluice.intake.carbon");
        assert!(matches!(pipelines.sinks[0].kind, SinkKind::Influx { .. }));
    }

    #[test]
    fn the_sidecar_can_run_beside_pipelines_when_asked() {
        let settings = load(&format!("[metrics]\nenabled = true\n{TWO_SINKS}")).expect("valid");
        assert!(settings.metrics.is_some());
        assert!(settings.events.is_none());
    }

    #[test]
    fn unknown_names_unfed_sinks_unread_sources_and_cycles_name_their_fields() {
        let said = errors(
            r#"
            [sources.agents]
            type = "amqp"
            exchange = "agents"
            decoder = { format = "line_protocol" }

            [sources.lonely]
            type = "amqp"
            exchange = "lonely"
            decoder = { format = "line_protocol" }

            [transforms.a]
            type = "tags"
            inputs = ["agents", "b"]
            add = { x = "1" }

            [transforms.b]
            type = "tags"
            inputs = ["a"]
            add = { y = "1" }

            [sinks.out]
            type = "influxdb"
            inputs = ["a", "nowhere"]

            [sinks.empty]
            type = "influxdb"
            inputs = []
            "#,
        );
        let has = |needle: &str| said.iter().any(|line| line.contains(needle));
        assert!(
            has("sinks.out.inputs: `nowhere` is neither a source nor a transform"),
            "{said:?}"
        );
        assert!(has("sinks.empty.inputs: a sink nobody feeds"), "{said:?}");
        assert!(has("sources.lonely: a source nobody reads"), "{said:?}");
        assert!(
            has("transforms.a.inputs: the transforms form a cycle: a -> b -> a"),
            "{said:?}"
        );
    }

    #[test]
    fn a_bad_component_setting_names_its_field() {
        let said = errors(
            r#"
            [sources.carbon]
            type = "graphite"
            tcp = "not an address"

            [transforms.f]
            type = "filter"
            inputs = ["carbon"]
            measurement = "("

            [sinks.out]
            type = "influxdb"
            inputs = ["f"]
            url = "ftp://x"
            batch_max_points = 0
            "#,
        );
        let has = |needle: &str| said.iter().any(|line| line.starts_with(needle));
        assert!(has("sources.carbon.tcp:"), "{said:?}");
        assert!(
            has("transforms.f.measurement: not a regular expression"),
            "{said:?}"
        );
        assert!(has("sinks.out.url:"), "{said:?}");
        assert!(has("sinks.out.batch_max_points:"), "{said:?}");
    }

    #[test]
    fn a_misspelt_component_setting_is_refused() {
        let said = errors(
            r##"
            [sources.agents]
            type = "amqp"
            exchange = "agents"
            decoder = { format = "line_protocol" }
            bindings_keys = ["#"]

            [sinks.out]
            type = "influxdb"
            inputs = ["agents"]
            "##,
        );
        assert!(
            said.iter().any(|line| line.contains("bindings_keys")),
            "{said:?}"
        );
    }

    #[test]
    fn an_amqp_sink_declares_what_the_next_tier_reads() {
        let settings = load(&format!(
            r##"
            {AGENTS}

            [sinks.core]
            type = "amqp"
            inputs = ["agents"]
            exchange = "sluice.points"
            queue = "core.points"
            max_length = 5000
            confirm_timeout = "3s"
            "##
        ))
        .expect("valid");
        let pipelines = settings.pipelines.expect("pipelines");
        let SinkKind::Amqp { publisher, sink } = &pipelines.sinks[0].kind else {
            panic!("an amqp sink");
        };
        assert_eq!(sink.routing_key, "core", "the sink's name by default");
        assert_eq!(publisher.exchange.name, "sluice.points");
        assert!(publisher.exchange.durable);
        let bound = publisher.queue.as_ref().expect("the queue is declared");
        assert_eq!(bound.queue.name, "core.points");
        assert_eq!(bound.queue.max_length, Some(5000));
        assert_eq!(
            bound.queue.overflow,
            sluice_amqp::topology::Overflow::RejectPublish,
            "a full queue nacks rather than drops"
        );
        assert_eq!(bound.binding_keys, ["core"]);
        assert_eq!(publisher.confirm_timeout, std::time::Duration::from_secs(3));
    }

    #[test]
    fn an_amqp_sink_needs_an_exchange_and_a_queue_for_its_limit() {
        let said = errors(&format!(
            r##"
            {AGENTS}

            [sinks.core]
            type = "amqp"
            inputs = ["agents"]
            exchange = ""
            max_length = 10
            confirm_timeout = "0s"
            "##
        ));
        let has = |needle: &str| said.iter().any(|line| line.starts_with(needle));
        assert!(has("sinks.core.exchange: must not be empty"), "{said:?}");
        assert!(has("sinks.core.max_length:"), "{said:?}");
        assert!(has("sinks.core.confirm_timeout:"), "{said:?}");
    }

    #[test]
    fn no_sync_on_an_influxdb_3_sink_is_a_warning_naming_it() {
        let settings = load(&format!(
            r##"
            {AGENTS}

            [sinks.fast]
            type = "influxdb"
            inputs = ["agents"]
            api = "v3"
            database = "fast"
            no_sync = true

            [sinks.safe]
            type = "influxdb"
            inputs = ["agents"]
            api = "v3"
            database = "safe"
            "##
        ))
        .expect("valid: allowed, but said");
        assert_eq!(settings.warnings.len(), 1, "{:?}", settings.warnings);
        assert!(
            settings.warnings[0].starts_with("sinks.fast.no_sync = true"),
            "{:?}",
            settings.warnings
        );
    }
}
