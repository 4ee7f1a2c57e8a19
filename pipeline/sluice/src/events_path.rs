//! The events path, wired: the manager's event and log queues -> documents -> Elasticsearch
//! `_bulk`, acks after per-item outcomes.
//!
//! ```text
//! run_source (events) ─┐
//!                      ├─Incoming─► decode stage ─Tracked<Document>─► run_batcher ─► run_sink ─► Elasticsearch
//! run_source (logs)  ──┘                │ bad input                                    │ rejected items
//!                                       ▼                                               ▼
//!                               dead-letter publisher (confirms) ◄───────────────────────┘
//! ```
//!
//! Every source hands on into one bounded channel; the decoder ends when all of them have
//! stopped. The `_id` of each document is a hash of its message, and every bulk action is a
//! `create`, so a redelivered message meets a 409 and is counted delivered: at-least-once
//! delivery stores each event exactly once.

use std::sync::Arc;

use anyhow::Context;
use sluice_amqp::source::{Incoming, SourceStatus, run_source};
use sluice_core::ack::Tracked;
use sluice_core::batch::run_batcher;
use sluice_core::dead_letter::{DeadLetter, DeadLetterSender, send_dead_letter};
use sluice_core::document::Document;
use sluice_core::outcome::run_sink;
use sluice_elasticsearch::EsWriter;
use sluice_normalise::EventDecoder;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::EventsPathSettings;

/// The name of the index template installed when `events.install_index_template` is set.
const INDEX_TEMPLATE_NAME: &str = "sluice-events";

/// What the admin endpoint needs to answer `/readyz` for this path.
pub struct EventsPathHealth {
    pub sources: Vec<Arc<SourceStatus>>,
    pub elasticsearch: Arc<EsWriter>,
}

/// Starts every stage of the events path onto `tasks`.
pub async fn start(
    settings: EventsPathSettings,
    dead_letters: DeadLetterSender,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<EventsPathHealth> {
    let elasticsearch = Arc::new(
        EsWriter::new(settings.elasticsearch).context("setting up the Elasticsearch writer")?,
    );
    if settings.install_index_template {
        let pattern = settings.index.wildcard();
        // Not fatal: Elasticsearch may come up later; documents wait in the queue meanwhile.
        if let Err(error) = elasticsearch
            .install_index_template(INDEX_TEMPLATE_NAME, &[pattern])
            .await
        {
            tracing::warn!(%error, "could not install the index template yet");
        }
    }

    let prefetch: usize = settings
        .sources
        .iter()
        .map(|source| usize::from(source.prefetch))
        .sum();
    let (incoming_tx, incoming_rx) = mpsc::channel(prefetch.max(1));
    let (documents_tx, documents_rx) = mpsc::channel(settings.batch.max_items.get());
    let (batches_tx, batches_rx) = mpsc::channel(settings.concurrency.get());

    let mut statuses = Vec::new();
    for source in settings.sources {
        let status = Arc::new(SourceStatus::default());
        statuses.push(Arc::clone(&status));
        let incoming_tx = incoming_tx.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let name = source.name.clone();
            run_source(source, incoming_tx, status, shutdown)
                .await
                .with_context(|| format!("events source {name}"))
        });
    }
    drop(incoming_tx);

    let decoder = EventDecoder::new(settings.index);
    tasks.spawn({
        let dead_letters = dead_letters.clone();
        async move {
            run_decode_stage(incoming_rx, documents_tx, decoder, dead_letters).await;
            Ok(())
        }
    });
    tasks.spawn(async move {
        run_batcher(documents_rx, batches_tx, settings.batch).await;
        Ok(())
    });
    tasks.spawn({
        let elasticsearch = Arc::clone(&elasticsearch);
        async move {
            run_sink(
                batches_rx,
                elasticsearch,
                settings.concurrency,
                settings.write_retry,
                dead_letters,
            )
            .await;
            Ok(())
        }
    });
    Ok(EventsPathHealth {
        sources: statuses,
        elasticsearch,
    })
}

/// Decodes each delivery into its document; bad input is dead-lettered with its reason.
async fn run_decode_stage(
    mut incoming: mpsc::Receiver<Incoming>,
    documents: mpsc::Sender<Tracked<Document>>,
    decoder: EventDecoder,
    dead_letters: DeadLetterSender,
) {
    // simd-json parses in place: each body is copied once into this reused scratch buffer, and
    // the original stays intact for the `_id` and for dead-lettering.
    let mut scratch = Vec::new();
    while let Some(Incoming { ack }) = incoming.recv().await {
        scratch.clear();
        scratch.extend_from_slice(&ack.message().body);
        match decoder.decode(&mut scratch, ack.message()) {
            Ok(document) => {
                metrics::counter!("sluice_decoded_total", "stage" => "events").increment(1);
                if documents.send(Tracked::new(document, ack)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                let letter = DeadLetter {
                    stage: "events",
                    reason: error.reason(),
                    detail: error.to_string(),
                    attempts: 0,
                    ack,
                };
                send_dead_letter(&dead_letters, letter).await;
            }
        }
    }
}
