//! Consuming one queue, with acknowledgements deferred to the deliveries' outcomes.
//!
//! [`run_source`] connects, declares the topology, sets the prefetch, consumes, and hands every
//! delivery on as an [`AckToken`] (which also carries the message) through a bounded channel. When the pipeline behind it is slow,
//! that channel fills, the source stops reading, unacked deliveries reach the prefetch count and
//! the broker keeps the rest queued: memory stays flat under any backlog.
//!
//! lapin's I/O thread wakes the consuming task for every delivery it queues, when that task is
//! waiting. A task that keeps up with the broker would wait, and be woken, once per delivery:
//! about one thread switch per message, which costs more CPU than sluice's work on it. So under
//! load (more than one delivery taken since the last wait) the source pauses for
//! [`SourceSettings::receive_pause`] once lapin's queue is empty, then takes what queued up
//! meanwhile in one run: one wake-up per run of deliveries. A lone delivery never waits.
//!
//! With a [`Backlog`], it also tells when the messages that were queued at its start have all
//! been processed (see [`crate::backlog`]).
//!
//! On a connection or channel failure it reconnects with capped backoff; deliveries that were in
//! flight are requeued by the broker and come back marked redelivered (sinks write idempotently).
//! On shutdown it cancels the consumer, forwards what the broker had already pushed, closes its
//! output (which lets the stages behind it drain and flush), waits until every delivery of the
//! channel has been acked, and closes the connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use sluice_core::ack::{AckToken, SourceMessage, finished_channel};
use sluice_core::retry::RetryPolicy;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::AmqpError;
use crate::acker::{SessionBacklog, UnackedDeliveries, run_acker};
use crate::backlog::Backlog;
use crate::connection::{BrokerUrl, connect};
use crate::topology::{SourceTopology, declare_source};

#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub url: BrokerUrl,
    /// A short name for logs, metrics and the connection name: `metrics`, `events`, ...
    pub name: String,
    pub topology: SourceTopology,
    /// Unacked deliveries the broker may push before waiting for acks.
    pub prefetch: u16,
    /// How long to let deliveries queue up in lapin before taking them, while they arrive in
    /// runs (see the module docs). Zero takes each one as it comes.
    pub receive_pause: Duration,
    pub reconnect: RetryPolicy,
}

/// Whether the source is connected and consuming; read by the readiness endpoint.
#[derive(Debug, Default)]
pub struct SourceStatus {
    consuming: AtomicBool,
}

impl SourceStatus {
    pub fn is_consuming(&self) -> bool {
        self.consuming.load(Ordering::Relaxed)
    }

    fn set_consuming(&self, consuming: bool) {
        self.consuming.store(consuming, Ordering::Relaxed);
    }
}

/// Asks the broker to stop delivering. The consumer stream ends once the broker confirms; what it
/// had already pushed still arrives first and is processed normally.
async fn cancel_consumer(
    channel: &lapin::Channel,
    consumer_tag: &str,
    status: &SourceStatus,
) -> Result<(), AmqpError> {
    status.set_consuming(false);
    channel
        .basic_cancel(consumer_tag.into(), BasicCancelOptions::default())
        .await
        .map_err(AmqpError::broker("cancelling the consumer"))
}

/// Decides when the source lets deliveries queue up in lapin instead of waiting for the next one
/// (see the module docs).
#[derive(Debug)]
struct ReceivePacing {
    pause: Duration,
    taken_since_wait: usize,
}

impl ReceivePacing {
    fn new(pause: Duration) -> Self {
        Self {
            pause,
            taken_since_wait: 0,
        }
    }

    fn took_one(&mut self) {
        self.taken_since_wait += 1;
    }

    /// Called when lapin's queue is empty: how long to pause before looking again, if at all.
    /// Only after a run: one delivery since the last wait means they come one at a time, and
    /// each should be taken the moment it arrives.
    fn pause_when_empty(&mut self) -> Option<Duration> {
        let in_runs = self.taken_since_wait > 1;
        self.taken_since_wait = 0;
        (in_runs && !self.pause.is_zero()).then_some(self.pause)
    }
}

/// A stopped session that still has deliveries in the pipeline.
struct Finishing {
    acker: tokio::task::JoinHandle<()>,
    channel: lapin::Channel,
    connection: lapin::Connection,
}

impl Finishing {
    /// Waits until the acker has acked everything, then closes channel and connection in order
    /// (dropping the last channel handle would start a close that races the connection's).
    async fn finish(self) {
        let _ = self.acker.await;
        if let Err(error) = self.channel.close(200, "sluice stopping".into()).await {
            tracing::debug!(%error, "closing the consuming channel");
        }
        if let Err(error) = self.connection.close(200, "sluice stopping".into()).await {
            tracing::debug!(%error, "closing the broker connection");
        }
    }
}

enum SessionEnd {
    /// Shutdown was asked for, or the pipeline closed its input. Holds what is needed to finish:
    /// the acker still acking the deliveries in the pipeline, and the connection to close after.
    Stopped(Option<Box<Finishing>>),
    /// The connection or channel failed; reconnect.
    Lost(AmqpError),
}

/// Consumes until `shutdown` is cancelled (or `output` closes), reconnecting as needed.
///
/// Returns an error only for a failure that reconnecting cannot mend at the first attempt (for
/// example a topology that conflicts with what the broker has); later failures are retried.
/// `backlog`, shared by every source of the queue, learns what was queued at the start and
/// when it has all been processed.
pub async fn run_source(
    settings: SourceSettings,
    output: mpsc::Sender<AckToken>,
    status: Arc<SourceStatus>,
    shutdown: CancellationToken,
    backlog: Option<Arc<Backlog>>,
) -> Result<(), AmqpError> {
    let mut attempt: u32 = 0;
    let mut ever_connected = false;
    loop {
        let mut consumed = false;
        let end = consume_session(
            &settings,
            &output,
            &status,
            &shutdown,
            backlog.as_ref(),
            &mut consumed,
        )
        .await;
        if consumed {
            // A session that got as far as consuming starts the backoff over.
            ever_connected = true;
            attempt = 0;
        }
        match end {
            SessionEnd::Stopped(finishing) => {
                // Closing the output lets the stages behind drain and flush; their tokens finish,
                // and the acker ends once the last one has been acked.
                drop(output);
                if let Some(finishing) = finishing {
                    finishing.finish().await;
                    tracing::info!(
                        source = %settings.name,
                        "source stopped; finished deliveries acked"
                    );
                }
                return Ok(());
            }
            SessionEnd::Lost(error) => {
                status.set_consuming(false);
                // The deliveries in flight come back after newer ones: the count is lost.
                if let Some(backlog) = &backlog {
                    backlog.give_up();
                }
                if !ever_connected && matches!(error, AmqpError::Broker { .. }) {
                    // The broker answered but refused our declarations: retrying will not help.
                    return Err(error);
                }
                metrics::counter!("sluice_amqp_reconnects_total", "source" => settings.name.clone())
                    .increment(1);
                let delay = settings.reconnect.delay(attempt, None);
                attempt = attempt.saturating_add(1);
                tracing::warn!(
                    source = %settings.name,
                    %error,
                    retry_in_ms = delay.as_millis() as u64,
                    "broker connection lost; reconnecting"
                );
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn consume_session(
    settings: &SourceSettings,
    output: &mpsc::Sender<AckToken>,
    status: &SourceStatus,
    shutdown: &CancellationToken,
    backlog: Option<&Arc<Backlog>>,
    consumed: &mut bool,
) -> SessionEnd {
    let connection = tokio::select! {
        () = shutdown.cancelled() => return SessionEnd::Stopped(None),
        connection = connect(&settings.url, &settings.name) => match connection {
            Ok(connection) => connection,
            Err(error) => return SessionEnd::Lost(error),
        },
    };
    let channel = match connection.create_channel().await {
        Ok(channel) => channel,
        Err(error) => return SessionEnd::Lost(AmqpError::broker("opening a channel")(error)),
    };
    match declare_source(&channel, &settings.topology).await {
        Ok(queued) => {
            if let Some(backlog) = backlog {
                backlog.measured(queued);
            }
        }
        Err(error) => return SessionEnd::Lost(error),
    }
    if let Err(error) = channel
        .basic_qos(settings.prefetch, BasicQosOptions { global: false })
        .await
    {
        return SessionEnd::Lost(AmqpError::broker("setting the prefetch")(error));
    }
    let queue = settings.topology.queue.name.as_str();
    // Unique per session, so several consumers of one queue in one process can be told apart.
    static SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let session = SESSIONS.fetch_add(1, Ordering::Relaxed);
    let consumer_tag = format!("sluice-{}-{}-{session}", settings.name, std::process::id());
    let mut consumer = match channel
        .basic_consume(
            queue.into(),
            consumer_tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    {
        Ok(consumer) => consumer,
        Err(error) => {
            return SessionEnd::Lost(AmqpError::broker(format!("consuming {queue:?}"))(error));
        }
    };
    *consumed = true;
    status.set_consuming(true);
    tracing::info!(source = %settings.name, queue, url = %settings.url, "consuming");

    let (finished_tx, finished_rx) = finished_channel();
    let unacked = Arc::new(UnackedDeliveries::new(&settings.name));
    let session_backlog = backlog.map(|backlog| Arc::new(SessionBacklog::new(Arc::clone(backlog))));
    let acker = tokio::spawn(run_acker(
        channel.clone(),
        finished_rx,
        Arc::clone(&unacked),
        session_backlog.clone(),
    ));

    let received = metrics::counter!("sluice_received_total", "source" => settings.name.clone());
    let mut cancelled = false;
    let mut pacing = ReceivePacing::new(settings.receive_pause);
    let end = loop {
        let next = match consumer.next().now_or_never() {
            Some(next) => next,
            None => {
                let pause = pacing.pause_when_empty();
                tokio::select! {
                    biased;
                    () = shutdown.cancelled(), if !cancelled => {
                        cancelled = true;
                        if let Err(error) = cancel_consumer(&channel, &consumer_tag, status).await {
                            break SessionEnd::Lost(error);
                        }
                        continue;
                    }
                    // Not polling the consumer meanwhile is the point: lapin queues without
                    // waking anyone.
                    () = tokio::time::sleep(pause.unwrap_or_default()), if pause.is_some() => {
                        continue;
                    }
                    next = consumer.next(), if pause.is_none() => next,
                }
            }
        };
        pacing.took_one();
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => break SessionEnd::Lost(AmqpError::broker("consuming")(error)),
            None if cancelled => break SessionEnd::Stopped(None),
            None => {
                break SessionEnd::Lost(AmqpError::ConsumerCancelled {
                    queue: queue.to_owned(),
                });
            }
        };
        received.increment(1);
        unacked.delivered();
        if let Some(session_backlog) = &session_backlog {
            session_backlog.delivered(delivery.delivery_tag);
        }
        let message = SourceMessage {
            body: Bytes::from(delivery.data),
            exchange: delivery.exchange.to_string(),
            routing_key: delivery.routing_key.to_string(),
            redelivered: delivery.redelivered,
        };
        let ack = AckToken::for_delivery(delivery.delivery_tag, message, finished_tx.clone());
        // A full pipeline (a store that is down) must not keep a stop waiting: if the stop comes
        // first, the delivery's token is dropped unfinished and it goes back to the queue.
        let handed_on = tokio::select! {
            biased;
            sent = output.send(ack) => sent.is_ok(),
            () = shutdown.cancelled(), if !cancelled => {
                cancelled = true;
                if let Err(error) = cancel_consumer(&channel, &consumer_tag, status).await {
                    break SessionEnd::Lost(error);
                }
                true
            }
        };
        if !handed_on {
            // The pipeline is gone; the token just dropped returns that delivery to the queue.
            break SessionEnd::Stopped(None);
        }
    };
    status.set_consuming(false);

    // Every token now in the pipeline holds a clone of `finished_tx`; the acker ends once they
    // have all reported. On a lost connection it ends at its first failed ack instead.
    drop(finished_tx);
    match end {
        SessionEnd::Stopped(_) => SessionEnd::Stopped(Some(Box::new(Finishing {
            acker,
            channel,
            connection,
        }))),
        lost => {
            acker.abort();
            lost
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAUSE: Duration = Duration::from_millis(1);

    #[test]
    fn pauses_only_after_a_run_of_deliveries() {
        let mut pacing = ReceivePacing::new(PAUSE);
        assert_eq!(pacing.pause_when_empty(), None, "nothing taken yet");
        pacing.took_one();
        assert_eq!(pacing.pause_when_empty(), None, "a lone delivery");
        pacing.took_one();
        pacing.took_one();
        assert_eq!(pacing.pause_when_empty(), Some(PAUSE), "a run of two");
    }

    #[test]
    fn each_wait_starts_the_count_over() {
        let mut pacing = ReceivePacing::new(PAUSE);
        for _ in 0..50 {
            pacing.took_one();
        }
        assert_eq!(pacing.pause_when_empty(), Some(PAUSE));
        // Nothing queued up during the pause: the rate has dropped, so wait for the next one.
        assert_eq!(pacing.pause_when_empty(), None);
        pacing.took_one();
        assert_eq!(pacing.pause_when_empty(), None);
    }

    #[test]
    fn a_zero_pause_never_pauses() {
        let mut pacing = ReceivePacing::new(Duration::ZERO);
        for _ in 0..50 {
            pacing.took_one();
        }
        assert_eq!(pacing.pause_when_empty(), None);
    }
}
