//! The admin HTTP endpoint: `/metrics` in Prometheus format, `/healthz` (the process answers),
//! `/readyz` (every source consuming, InfluxDB and Elasticsearch reachable) and `/tap`
//! (`tap_stream`). Binds to loopback by default.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::events_path::EventsPathHealth;
use crate::metrics_path::MetricsPathHealth;

/// The running paths, as far as readiness goes; `None` for a disabled path. A reload that
/// restarts a path sends the new one.
#[derive(Clone, Default)]
pub struct Health {
    pub metrics: Option<Arc<MetricsPathHealth>>,
    pub events: Option<Arc<EventsPathHealth>>,
}

/// How long `/readyz` waits for each store's ping.
const READINESS_PING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct AdminState {
    prometheus: PrometheusHandle,
    health: watch::Receiver<Health>,
}

pub async fn serve(
    listener: TcpListener,
    prometheus: PrometheusHandle,
    health: watch::Receiver<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = AdminState { prometheus, health };
    let app = Router::new()
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
