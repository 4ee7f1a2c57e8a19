//! The admin HTTP endpoint: `/metrics` in Prometheus format, `/healthz` (the process answers),
//! `/readyz` (every source consuming, InfluxDB and Elasticsearch reachable), `/tap`
//! (`tap_stream`), and the live status page: `/` (the page) and `/status` (its figures as JSON;
//! see `crate::status`). Binds to loopback by default.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::events_path::EventsPathHealth;
use crate::metrics_path::MetricsPathHealth;
use crate::status::{PAGE, Shape, StatusSources};
use crate::tier::TierHealth;
use sluice_rest::stage::RuleActivity;

/// The running paths, for readiness and the status page; `None` for a disabled path. A reload
/// that restarts a path sends the new one.
#[derive(Clone, Default)]
pub struct Health {
    pub metrics: Option<Arc<MetricsPathHealth>>,
    pub events: Option<Arc<EventsPathHealth>>,
    /// The configured pipelines, while they run.
    pub pipelines: Option<Arc<TierHealth>>,
    /// The rule stage's deployments and triggers, while it runs.
    pub rules: Option<Arc<RuleActivity>>,
    /// What the status page draws: the paths as configured.
    pub shape: Arc<Shape>,
}

/// The base URL of a running sluice's admin endpoint, for the commands that read it: a URL as
/// given, or `host:port` as `admin.listen` writes it.
pub fn base_url(admin: &str) -> String {
    let admin = admin.trim_end_matches('/');
    if admin.contains("://") {
        admin.to_owned()
    } else {
        format!("http://{admin}")
    }
}

/// How long `/readyz` waits for each store's ping.
const READINESS_PING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct AdminState {
    prometheus: PrometheusHandle,
    health: watch::Receiver<Health>,
    status: StatusSources,
}

pub async fn serve(
    listener: TcpListener,
    prometheus: PrometheusHandle,
    health: watch::Receiver<Health>,
    status: StatusSources,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = AdminState {
        prometheus,
        health,
        status,
    };
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/status", get(status_json))
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readiness))
        .merge(crate::tap_stream::routes())
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn render_metrics(State(state): State<AdminState>) -> String {
    state.prometheus.render()
}

/// The figures of the page; never cached, since each answer is a new sample.
async fn status_json(State(state): State<AdminState>) -> impl IntoResponse {
    let health = state.health.borrow().clone();
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(state.status.status(&health)),
    )
}

/// 200 when every source consumes and every store answers; otherwise 503 and the first reason.
async fn readiness(State(state): State<AdminState>) -> (StatusCode, String) {
    // Cloned out of the watch: no lock is held across the stores' pings.
    let health = state.health.borrow().clone();
    match first_unready(&health).await {
        None => (StatusCode::OK, "ready\n".into()),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

async fn first_unready(health: &Health) -> Option<String> {
    if let Some(metrics) = &health.metrics
        && metrics.sources.iter().any(|source| !source.is_consuming())
    {
        return Some("metrics: not consuming from the broker".into());
    }
    if let Some(events) = &health.events
        && events.sources.iter().any(|source| !source.is_consuming())
    {
        return Some("events: not consuming from the broker".into());
    }
    if let Some(pipelines) = &health.pipelines
        && pipelines
            .sources
            .iter()
            .any(|source| !source.is_consuming())
    {
        return Some("pipelines: a source is not consuming from the broker".into());
    }
    if let Some(pipelines) = &health.pipelines {
        if let Some((name, _)) = pipelines
            .publishers
            .iter()
            .find(|(_, publisher)| !publisher.is_connected())
        {
            return Some(format!(
                "pipelines: sink {name} is not connected to the broker"
            ));
        }
        for (name, writer) in &pipelines.influx {
            match tokio::time::timeout(READINESS_PING_TIMEOUT, writer.ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Some(format!("pipelines: sink {name}: {error}")),
                Err(_) => return Some(format!("pipelines: sink {name}: ping timed out")),
            }
        }
    }
    if let Some(metrics) = &health.metrics {
        match tokio::time::timeout(READINESS_PING_TIMEOUT, metrics.influx.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Some(format!("influxdb: {error}")),
            Err(_) => return Some("influxdb: ping timed out".into()),
        }
    }
    if let Some(events) = &health.events {
        match tokio::time::timeout(READINESS_PING_TIMEOUT, events.elasticsearch.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Some(format!("elasticsearch: {error}")),
            Err(_) => return Some("elasticsearch: ping timed out".into()),
        }
    }
    None
}
