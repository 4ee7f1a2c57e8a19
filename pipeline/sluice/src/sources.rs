//! The broker sources of a path, started side by side into one bounded channel.

use std::sync::Arc;

use anyhow::Context;
use sluice_amqp::backlog::Backlog;
use sluice_amqp::source::{SourceSettings, SourceStatus, run_source};
use sluice_core::ack::AckToken;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Starts one source per entry of `sources` onto `tasks`. The channel holds as many deliveries
/// as the sources' prefetch counts together allow; it closes when every source has stopped.
/// `backlog`, when given, is shared by all of them (they consume one queue).
pub fn start(
    sources: Vec<SourceSettings>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    backlog: Option<&Arc<Backlog>>,
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
        let backlog = backlog.cloned();
        tasks.spawn(async move {
            let name = source.name.clone();
            run_source(source, deliveries_tx, status, shutdown, backlog)
                .await
                .with_context(|| format!("{name} source"))
        });
    }
    (deliveries_rx, statuses)
}
