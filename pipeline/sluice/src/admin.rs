//! The admin HTTP endpoint: `/metrics` in Prometheus format, `/healthz` (the process answers) and
//! `/readyz` (consuming from the broker and InfluxDB reachable). Binds to loopback by default.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics_path::MetricsPathHealth;

/// How long `/readyz` waits for InfluxDB's `/ping`.
const READINESS_PING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct AdminState {
    prometheus: PrometheusHandle,
    metrics_path: Option<Arc<MetricsPathHealth>>,
}

pub async fn serve(
    listener: TcpListener,
    prometheus: PrometheusHandle,
    metrics_path: Option<Arc<MetricsPathHealth>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = AdminState {
        prometheus,
        metrics_path,
    };
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readiness))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn render_metrics(State(state): State<AdminState>) -> String {
    state.prometheus.render()
}

async fn readiness(State(state): State<AdminState>) -> (StatusCode, String) {
    let Some(path) = &state.metrics_path else {
        return (StatusCode::OK, "ready\n".into());
    };
    if !path.source.is_consuming() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not consuming from the broker\n".into(),
        );
    }
    match tokio::time::timeout(READINESS_PING_TIMEOUT, path.influx.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".into()),
        Ok(Err(error)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("influxdb: {error}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "influxdb: ping timed out\n".into(),
        ),
    }
}
