//! The live status page: `GET /` on the admin endpoint serves one page (`page.html`, built into
//! the binary: plain JS, inline SVG and CSS, nothing fetched from elsewhere) that reads
//! `GET /status` every second and draws the pipeline as a graph of its stages with their
//! figures. `sluice top` (`crate::top`) shows the same `/status` in a terminal.
//!
//! ```text
//! counter!/gauge!/histogram! ─► Fanout ─┬─► Prometheus recorder ─► GET /metrics
//!                                        └─► StatusRecorder ─► Board (samples every 1 s) ─┐
//! tracing WARN/ERROR ─► RecentLogs (ring) ───────────────────────────────────────────────┤
//! rule stage ─► RuleActivity (loaded deployments, last triggers) ────────────────────────┴─► GET /status
//! ```
//!
//! Modules: `board` (the second recorder and the sampler), `figures` (the JSON's types, shared
//! with `sluice top`), `recent` (bounded rings, the logging layer).

pub mod board;
pub mod figures;
pub mod recent;

use std::sync::Arc;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::layers::FanoutBuilder;
use sluice_amqp::source::SourceStatus;
use sluice_core::rejection::Stage;
use tokio::sync::watch;
use url::Url;

use crate::admin::Health;
use crate::config::{Settings, SinkKind};
pub use board::Shape;
use board::{Board, PathShape, SourceShape, StatusRecorder, StatusRegistry};
use figures::Status;
use recent::RecentLogs;

/// The page, built in.
pub const PAGE: &str = include_str!("page.html");

/// Installs the process's metrics recorder: Prometheus's (for `/metrics`) and the status page's
/// side by side. Answers the handle `/metrics` renders from and the status page's registry.
pub fn install_recorders() -> anyhow::Result<(PrometheusHandle, Arc<StatusRegistry>)> {
    let prometheus = PrometheusBuilder::new().build_recorder();
    let handle = prometheus.handle();
    let status = StatusRecorder::new();
    let registry = status.registry();
    let fanout = FanoutBuilder::default()
        .add_recorder(prometheus)
        .add_recorder(status)
        .build();
    metrics::set_global_recorder(fanout)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .context("installing the metrics recorder")?;
    Ok((handle, registry))
}

/// What runs, read off the configuration before the paths take their settings.
pub fn shape(settings: &Settings) -> Shape {
    let mut paths = Vec::new();
    if let Some(metrics) = &settings.metrics {
        paths.push(PathShape {
            name: "metrics",
            sources: vec![source_shape(&metrics.source)],
            decode_stage: Stage::Normalise,
            sink: Stage::Influx,
            sink_url: url_without_secrets(&metrics.influx.url),
        });
    }
    if let Some(events) = &settings.events {
        paths.push(PathShape {
            name: "events",
            sources: events.sources.iter().map(source_shape).collect(),
            decode_stage: Stage::Events,
            sink: Stage::Elasticsearch,
            sink_url: url_without_secrets(&events.elasticsearch.url),
        });
    }
    if let Some(pipelines) = &settings.pipelines {
        // One figure for the tier: every source it consumes, every sink it writes.
        let sink_urls: Vec<String> = pipelines
            .sinks
            .iter()
            .map(|sink| match &sink.kind {
                SinkKind::Influx { settings, .. } => {
                    format!("{}: {}", sink.name, url_without_secrets(&settings.url))
                }
                // BrokerUrl shows its password as `***`.
                SinkKind::Amqp { publisher, .. } => format!(
                    "{}: {} exchange {}",
                    sink.name, publisher.url, publisher.exchange.name
                ),
            })
            .collect();
        paths.push(PathShape {
            name: "pipelines",
            sources: pipelines
                .sources
                .iter()
                .filter_map(|source| source.consume.as_ref())
                .map(|consume| source_shape(&consume.source))
                .collect(),
            decode_stage: Stage::Normalise,
            sink: Stage::Influx,
            sink_url: sink_urls.join(", "),
        });
    }
    Shape {
        paths,
        dead_letter_exchange: settings.dead_letter.exchange.clone(),
        manager: settings
            .rules
            .as_ref()
            .map(|rules| url_without_secrets(&rules.stage.manager.url)),
    }
}

fn source_shape(source: &sluice_amqp::source::SourceSettings) -> SourceShape {
    SourceShape {
        name: source.name.clone(),
        queue: source.topology.queue.name.clone(),
        // BrokerUrl shows its password as `***`.
        broker: source.url.to_string(),
    }
}

/// A store's URL as shown: no user, no password, no query (tokens go there).
fn url_without_secrets(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.to_string()
}

/// Everything `/status` is made of but the running paths; cheap to clone into the admin
/// endpoint's state.
#[derive(Clone)]
pub struct StatusSources {
    board: Arc<Board>,
    logs: RecentLogs,
}

impl StatusSources {
    /// Starts sampling `registry` (a task that lives as long as the process), drawing the paths
    /// `running` says run.
    pub fn start(
        registry: Arc<StatusRegistry>,
        logs: RecentLogs,
        running: watch::Receiver<Health>,
    ) -> Self {
        let board = Arc::new(Board::default());
        let running_shape = move || Arc::clone(&running.borrow().shape);
        tokio::spawn(Arc::clone(&board).run(registry, running_shape));
        Self { board, logs }
    }

    /// The latest sample with the last log lines, whether each path consumes, and the rule
    /// stage's activity.
    pub fn status(&self, running: &Health) -> Status {
        let mut status = Status::clone(&self.board.latest());
        status.errors = self.logs.entries();
        if let (Some(rules), Some(activity)) = (&mut status.rules, &running.rules) {
            rules.activity = activity.snapshot();
        }
        let consuming = |sources: &[Arc<SourceStatus>]| {
            !sources.is_empty() && sources.iter().all(|source| source.is_consuming())
        };
        for path in &mut status.paths {
            path.consuming = match path.name.as_str() {
                "metrics" => running
                    .metrics
                    .as_ref()
                    .is_some_and(|metrics| consuming(&metrics.sources)),
                "events" => running
                    .events
                    .as_ref()
                    .is_some_and(|events| consuming(&events.sources)),
                _ => false,
            };
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_are_shown_without_credentials_or_query() {
        let url =
            Url::parse("http://admin:hunter2@influx.example:8086/prefix?u=a&p=b").expect("a URL");
        assert_eq!(
            url_without_secrets(&url),
            "http://influx.example:8086/prefix"
        );
    }

    #[test]
    fn the_page_asks_for_nothing_beyond_the_admin_endpoint() {
        // The SVG namespace is a name, not a place the browser goes.
        let page = PAGE.replace("\"http://www.w3.org/2000/svg\"", "");
        for outside in ["http://", "https://", "//cdn", "@import", "<script src"] {
            assert!(!page.contains(outside), "the page refers to {outside}");
        }
        assert!(PAGE.contains("fetch(\"status\""), "the page reads /status");
    }
}
