//! The broker sources of a path, started side by side into one bounded channel.

use std::sync::Arc;

use anyhow::Context;
use sluice_amqp::source::{SourceSettings, SourceStatus, run_source};
use sluice_core::ack::AckToken;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Starts one source per entry of `sources` onto `tasks`. The channel holds as many deliveries
/// as the sources' prefetch counts together allow; it closes when every source has stopped.
pub fn start(
    sources: Vec<SourceSettings>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> (mpsc::Receiver<AckToken>, Vec<Arc<SourceStatus>>) {
    let prefetch: usize = sources
        .iter()
        .map(|source| usize::from(source.prefetch))
        .sum();
    let (deliveries_tx, deliveries_rx) = mpsc::channel(prefetch.max(1));
    let mut statuses = Vec::with_capacity(sources.len());
    for source in sources {
        let status = Arc::new(SourceStatus::default());
        statuses.push(Arc::clone(&status));
        let (deliveries_tx, shutdown) = (deliveries_tx.clone(), shutdown.clone());
        tasks.spawn(async move {
            let name = source.name.clone();
            run_source(source, deliveries_tx, status, shutdown)
                .await
                .with_context(|| format!("{name} source"))
        });
    }
    (deliveries_rx, statuses)
}
