//! sluice's push inputs: what senders push to sluice, made durable by the broker.
//!
//! ```text
//!  InfluxDB clients ─POST /write, /api/v2/write─┐
//!  Prometheus ──────POST /api/v1/write──────────┼─► ConfirmedPublisher ─► exchange ─► queue ─► the ordinary AMQP path
//!  Graphite senders ─TCP, UDP plaintext─────────┘   (confirm awaited)                          (line-protocol / graphite decoders)
//! ```
//!
//! A push input has no durable buffer of its own: the broker is that buffer. Each input
//! publishes what it received to an exchange with publisher confirms
//! ([`sluice_amqp::confirmed::ConfirmedPublisher`]), and the HTTP inputs answer success only
//! after the broker confirmed, so a 204 means durable. When the broker or the pipeline behind
//! it is slow, they answer 429 or 503 with `Retry-After` at once; nothing waits in an
//! unbounded buffer here ([invariant 3](sluice_core#invariants)). Every published line carries
//! an explicit timestamp (the receive time when the sender gave none), so that a redelivery
//! overwrites its points instead of adding new ones ([invariant 4](sluice_core#invariants)).
//!
//! - [`influx_write`]: InfluxDB's 1.x and 2.x write APIs, with InfluxDB's own error answers.
//! - [`remote_write`]: Prometheus' `remote_write` receiver (snappy, protobuf).
//! - [`graphite`]: Graphite plaintext over TCP (with TCP backpressure) and UDP.
//! - [`serve`] and [`serve_listener`]: run an HTTP input's router until shutdown, letting
//!   in-flight requests finish (they still get their confirm and their answer).
//!
//! What is published: `text/plain; format=line-protocol; precision=ns` (the HTTP inputs) and
//! `text/plain; format=graphite` (Graphite). Metrics are listed in `telemetry`'s docs:
//! `sluice_intake_{received,refused,dropped,requests,published}_total`.

pub mod graphite;
mod http_body;
pub mod influx_write;
pub mod remote_write;
mod telemetry;

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use graphite::{GraphiteListeners, GraphiteSettings, run_graphite};
pub use influx_write::InfluxWriteSettings;
pub use remote_write::RemoteWriteSettings;

/// Binds `listen` and serves `router` until `shutdown`; see [`serve_listener`].
pub async fn serve(
    listen: SocketAddr,
    router: axum::Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the intake listener to {listen}"))?;
    serve_listener(listener, router, shutdown).await
}

/// Serves `router` on `listener` until `shutdown`: then it stops accepting and returns once
/// every request in flight has been answered (each still waits for its broker confirm).
pub async fn serve_listener(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let address = listener.local_addr().ok();
    tracing::info!(?address, "intake listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .with_context(|| format!("serving intake on {address:?}"))
}
