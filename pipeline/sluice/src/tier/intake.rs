//! The listeners of the push inputs (`sluice_intake`), each publishing to its source's queue
//! with confirms: the broker is their durable buffer, and an HTTP write is answered 204 only
//! once the broker has confirmed it.

use sluice_amqp::confirmed::{BoundQueue, ConfirmedPublisher, ConfirmedPublisherSettings};
use sluice_intake::{GraphiteSettings, InfluxWriteSettings, RemoteWriteSettings};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{IntakeSpec, PublishTarget};

/// Starts the listener of the push input `name` onto `tasks`. It stops accepting at `shutdown`
/// and ends once what it took is confirmed and answered.
pub(super) async fn start(
    name: &str,
    intake: IntakeSpec,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let shutdown = shutdown.clone();
    match intake {
        IntakeSpec::Graphite { tcp, udp, target } => {
            let publisher = publisher(name, &target);
            let mut settings = GraphiteSettings::new(target.routing_key);
            settings.tcp = tcp;
            settings.udp = udp;
            // Bound now, so a port in use fails the start rather than a task later.
            let listeners = sluice_intake::GraphiteListeners::bind(&settings).await?;
            tasks.spawn(async move { listeners.run(settings, publisher, shutdown).await });
        }
        IntakeSpec::InfluxWrite {
            listen,
            token,
            max_body_bytes,
            target,
        } => {
            let publisher = publisher(name, &target);
            let mut settings = InfluxWriteSettings::new(target.routing_key);
            settings.token = token;
            settings.max_body_bytes = max_body_bytes;
            let router = sluice_intake::influx_write::router(settings, publisher);
            let listener = bind(name, listen).await?;
            tasks.spawn(sluice_intake::serve_listener(listener, router, shutdown));
        }
        IntakeSpec::RemoteWrite {
            listen,
            max_body_bytes,
            target,
        } => {
            let publisher = publisher(name, &target);
            let mut settings = RemoteWriteSettings::new(target.routing_key);
            settings.max_body_bytes = max_body_bytes;
            let router = sluice_intake::remote_write::router(settings, publisher);
            let listener = bind(name, listen).await?;
            tasks.spawn(sluice_intake::serve_listener(listener, router, shutdown));
        }
    }
    Ok(())
}

/// The input's publisher, which declares its exchange and queue on every (re)connect, so that
/// what it accepts is kept even before the consuming side starts.
fn publisher(name: &str, target: &PublishTarget) -> ConfirmedPublisher {
    let mut settings = ConfirmedPublisherSettings::new(
        target.url.clone(),
        format!("intake-{name}"),
        target.exchange.clone(),
    );
    settings.queue = Some(BoundQueue {
        queue: target.queue.clone(),
        binding_keys: vec![target.routing_key.clone()],
    });
    settings.reconnect = target.reconnect;
    ConfirmedPublisher::start(settings)
}

async fn bind(name: &str, listen: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context as _;
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("source {name}: binding its listener to {listen}"))
}
