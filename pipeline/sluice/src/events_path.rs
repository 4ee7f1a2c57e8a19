//! The events path, wired: the manager's event and log queues -> documents -> Elasticsearch
//! `_bulk`, acks after per-item outcomes.
//!
//! ```text
//! source (events) ─┐
//!                  ├─AckToken─► encode stage ─────────────► batcher ─► sink driver ─► Elasticsearch
//! source (logs)  ──┘            EventsDecoder: body -> document │ bad input   │ rejected items
//!                               EsWriter: document -> bulk lines ▼             ▼
//!                                                 dead-letter publisher (confirms)
//! ```
//!
//! The shape is `sluice_core::path`'s. Every source hands on into one bounded channel; the encode
//! stage ends when all of them have stopped. The `_id` of each document is a hash of its
//! message, and every bulk action is a `create`, so a redelivered message meets a 409 and is
//! counted delivered: at-least-once delivery stores each event exactly once.

use std::sync::Arc;

use anyhow::Context;
use sluice_amqp::source::SourceStatus;
use sluice_core::dead_letter::DeadLetterSender;
use sluice_core::path::{NoControl, run_path};
use sluice_elasticsearch::EsWriter;
use sluice_normalise::{EventDecoder, EventsDecoder};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::EventsPathSettings;
use crate::{sources, store_check};

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
    let mut writer =
        EsWriter::new(settings.elasticsearch).context("setting up the Elasticsearch writer")?;
    if settings.install_index_template {
        // A precondition of every write, so that no index is made before the template.
        writer = writer.with_index_template(
            INDEX_TEMPLATE_NAME,
            vec![settings.index.wildcard()],
            settings.template_options,
        );
    }
    let elasticsearch = Arc::new(writer);
    let answered = store_check::first_contact(
        &store_check::Store {
            name: "Elasticsearch",
            url_setting: "elasticsearch.url",
            path_switch: Some("events.enabled"),
        },
        elasticsearch.ping(),
    )
    .await;
    // Put at each start when Elasticsearch answers, so that a refused template shows at once;
    // otherwise (or when it fails) the first write puts it.
    if answered && let Err(error) = elasticsearch.ensure_index_template().await {
        tracing::warn!(%error, "could not install the index template yet; the first write tries again");
    }

    let (deliveries, statuses) = sources::start(settings.sources, &shutdown, tasks, None);
    let decoder = EventsDecoder::new(EventDecoder::new(settings.index));
    let sink = Arc::clone(&elasticsearch);
    let limits = settings.limits;
    tasks.spawn(async move {
        run_path(deliveries, decoder, sink, NoControl, limits, dead_letters).await;
        Ok(())
    });
    Ok(EventsPathHealth {
        sources: statuses,
        elasticsearch,
    })
}
