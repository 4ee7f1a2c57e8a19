//! Publishing with the broker's confirm awaited by the caller: the durable buffer of sluice's
//! push inputs (and of the AMQP sink).
//!
//! A push input (an HTTP write endpoint, a Graphite listener) has nowhere durable of its own to
//! keep what it received, so the broker is that place: [`ConfirmedPublisher::publish`] returns
//! only once the broker confirmed the message (persistent, to a durable queue), and an HTTP
//! input answers success only then. Whatever goes wrong is told to the caller at once, as a
//! [`PublishError`] that says what to answer:
//!
//! | error         | cause                                                   | an HTTP input answers |
//! |---------------|---------------------------------------------------------|-----------------------|
//! | `Busy`        | the in-flight bound (messages or bytes) is reached      | 429, `Retry-After`    |
//! | `Unavailable` | no connection right now (or the broker blocked us)      | 503, `Retry-After`    |
//! | `Nacked`      | the broker refused it: a `reject-publish` queue is full | 503, `Retry-After`    |
//! | `Unroutable`  | no queue is bound for the routing key                   | 503, `Retry-After`    |
//! | `Timeout`     | no confirm within the configured time                   | 503, `Retry-After`    |
//!
//! Nothing is queued inside the publisher: the in-flight bound is checked *before* publishing,
//! so overload is answered at once instead of piling up in memory ([invariant
//! 3](sluice_core#invariants)). A `Timeout` or a connection lost while waiting leaves the
//! message's fate unknown: the sender retries, and the consumer's writes are idempotent
//! (line protocol with explicit timestamps overwrites), so a duplicate is harmless.
//!
//! One connection and one confirm-mode channel serve every clone of the handle. A background
//! task keeps them: it connects, declares the target topology (exchange, queue and binding; a
//! queue with `x-max-length` and [`Overflow::RejectPublish`] is how a slow pipeline shows, as
//! nacks), and reconnects with backoff when the connection fails. It ends, closing the
//! connection, once every handle is dropped.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use sluice_core::retry::RetryPolicy;
use tokio::sync::{Notify, watch};

use crate::AmqpError;
use crate::connection::{BrokerUrl, connect};
use crate::topology::{ExchangeSpec, QueueSpec, declare_exchange, declare_queue};

/// Where a [`ConfirmedPublisher`] publishes, and how it is bounded.
#[derive(Debug, Clone)]
pub struct ConfirmedPublisherSettings {
    pub url: BrokerUrl,
    /// Names the connection (`sluice <name> pid=..`) and labels the metrics of handles that were
    /// not given another input name with [`ConfirmedPublisher::for_input`].
    pub name: String,
    /// Declared on every (re)connect, unless it is the default exchange (`""`).
    pub exchange: ExchangeSpec,
    /// A queue declared and bound to the exchange on every (re)connect, so that what is
    /// published is kept even before a consumer starts. `None` when it is declared elsewhere.
    pub queue: Option<BoundQueue>,
    /// Publishes awaiting their confirm at once, over all clones of the handle.
    pub max_in_flight: NonZeroUsize,
    /// Bytes of bodies awaiting their confirm at once. One message larger than this is let
    /// through when nothing else is in flight, so that it is not refused forever.
    pub max_in_flight_bytes: NonZeroUsize,
    /// How long a publish waits for the broker's confirm before answering `Timeout`.
    pub confirm_timeout: Duration,
    pub reconnect: RetryPolicy,
}

impl ConfirmedPublisherSettings {
    /// The defaults: 256 publishes or 64 MiB in flight, a 10 s confirm timeout, and the
    /// standard reconnect backoff; no queue declared.
    pub fn new(url: BrokerUrl, name: impl Into<String>, exchange: ExchangeSpec) -> Self {
        Self {
            url,
            name: name.into(),
            exchange,
            queue: None,
            max_in_flight: NonZeroUsize::new(256).expect("non-zero"),
            max_in_flight_bytes: NonZeroUsize::new(64 << 20).expect("non-zero"),
            confirm_timeout: Duration::from_secs(10),
            reconnect: RetryPolicy::default(),
        }
    }
}

/// A queue fed by the publisher's exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundQueue {
    /// Its `overflow` should be `RejectPublish` with a `max_length`: a full queue then turns
    /// into nacks, which a push input answers with 503.
    pub queue: QueueSpec,
    pub binding_keys: Vec<String>,
}

/// Why a publish was not confirmed. Each variant says what the caller should answer (see the
/// module documentation); none of them is worth retrying inside the publisher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("no connection to the broker: {detail}")]
    Unavailable { detail: String },
    #[error("the broker refused the message (a queue at its length limit with reject-publish?)")]
    Nacked,
    #[error("no queue is bound to exchange {exchange:?} for routing key {routing_key:?}")]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
    #[error("too many publishes in flight ({messages} messages, {bytes} bytes awaiting confirms)")]
    Busy { messages: usize, bytes: usize },
    #[error("the broker did not confirm within {0:?}")]
    Timeout(Duration),
}

impl PublishError {
    /// The `result` label of `sluice_intake_published_total`.
    pub fn result_label(&self) -> &'static str {
        match self {
            PublishError::Unavailable { .. } => "unavailable",
            PublishError::Nacked => "nacked",
            PublishError::Unroutable { .. } => "unroutable",
            PublishError::Busy { .. } => "busy",
            PublishError::Timeout(_) => "timeout",
        }
    }
}

/// A cheap, cloneable handle on one confirm-mode channel (see the module documentation).
#[derive(Clone)]
pub struct ConfirmedPublisher {
    shared: Arc<Shared>,
    /// The `input` label of this handle's metrics.
    input: Arc<str>,
}

impl std::fmt::Debug for ConfirmedPublisher {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ConfirmedPublisher")
            .field("input", &self.input)
            .field("exchange", &self.shared.exchange)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

struct Shared {
    exchange: String,
    max_in_flight: usize,
    max_in_flight_bytes: usize,
    confirm_timeout: Duration,
    /// The open channel, `None` while (re)connecting.
    channel: watch::Receiver<Option<Channel>>,
    /// Set while the broker blocks the connection (a resource alarm): publishing would only
    /// wait, so it is answered `Unavailable` at once.
    blocked: Arc<AtomicBool>,
    /// Woken by a publish that saw the channel fail, so the connection is replaced at once.
    channel_failed: Arc<Notify>,
    in_flight: Mutex<InFlight>,
}

#[derive(Debug, Default)]
struct InFlight {
    messages: usize,
    bytes: usize,
}

/// A place among the publishes in flight, given back when dropped.
struct InFlightSlot<'a> {
    shared: &'a Shared,
    bytes: usize,
}

impl Drop for InFlightSlot<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        in_flight.messages -= 1;
        in_flight.bytes -= self.bytes;
    }
}

impl Shared {
    fn reserve(&self, bytes: usize) -> Result<InFlightSlot<'_>, PublishError> {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let too_many = in_flight.messages >= self.max_in_flight;
        let too_large = in_flight.messages > 0
            && in_flight.bytes.saturating_add(bytes) > self.max_in_flight_bytes;
        if too_many || too_large {
            return Err(PublishError::Busy {
                messages: in_flight.messages,
                bytes: in_flight.bytes,
            });
        }
        in_flight.messages += 1;
        in_flight.bytes += bytes;
        Ok(InFlightSlot {
            shared: self,
            bytes,
        })
    }
}

impl ConfirmedPublisher {
    /// Spawns the task that connects (and reconnects) and returns the handle at once: until the
    /// first connection is up, publishes answer `Unavailable` (see [`Self::connected`]). Must be
    /// called inside a Tokio runtime.
    pub fn start(settings: ConfirmedPublisherSettings) -> Self {
        let (channel_tx, channel_rx) = watch::channel(None);
        let blocked = Arc::new(AtomicBool::new(false));
        let channel_failed = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            exchange: settings.exchange.name.clone(),
            max_in_flight: settings.max_in_flight.get(),
            max_in_flight_bytes: settings.max_in_flight_bytes.get(),
            confirm_timeout: settings.confirm_timeout,
            channel: channel_rx,
            blocked: Arc::clone(&blocked),
            channel_failed: Arc::clone(&channel_failed),
            in_flight: Mutex::new(InFlight::default()),
        });
        let input = Arc::from(settings.name.as_str());
        tokio::spawn(keep_connected(
            settings,
            channel_tx,
            blocked,
            channel_failed,
        ));
        Self { shared, input }
    }

    /// A handle on the same channel whose metrics carry `input` as their `input` label.
    pub fn for_input(&self, input: &str) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            input: Arc::from(input),
        }
    }

    /// The `input` label of this handle's metrics.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Whether a channel is open now (for readiness and health endpoints).
    pub fn is_connected(&self) -> bool {
        self.shared
            .channel
            .borrow()
            .as_ref()
            .is_some_and(|channel| channel.status().connected())
    }

    /// Waits until a channel is open (at start, or after a reconnect).
    pub async fn connected(&self) {
        let mut channel = self.shared.channel.clone();
        // Fails only when the task is gone, which it is not while this handle lives.
        let _ = channel.wait_for(Option::is_some).await;
    }

    /// Publishes `body` persistently and `mandatory` to the exchange with `routing_key`, and
    /// returns once the broker confirmed it. Never waits for room: a full in-flight bound is
    /// `Busy` at once. Counted as `sluice_intake_published_total{input, result}`.
    pub async fn publish(
        &self,
        routing_key: &str,
        body: Bytes,
        content_type: &'static str,
    ) -> Result<(), PublishError> {
        let result = self
            .publish_confirmed(routing_key, &body, content_type)
            .await;
        let label = match &result {
            Ok(()) => "confirmed",
            Err(error) => error.result_label(),
        };
        metrics::counter!(
            "sluice_intake_published_total",
            "input" => self.input.to_string(),
            "result" => label
        )
        .increment(1);
        if let Err(error) = &result {
            tracing::debug!(input = %self.input, %error, "publish not confirmed");
        }
        result
    }

    async fn publish_confirmed(
        &self,
        routing_key: &str,
        body: &[u8],
        content_type: &'static str,
    ) -> Result<(), PublishError> {
        let _slot = self.shared.reserve(body.len())?;
        let channel = self.shared.channel.borrow().clone();
        let Some(channel) = channel else {
            return Err(PublishError::Unavailable {
                detail: "connecting".to_owned(),
            });
        };
        if self.shared.blocked.load(Ordering::Relaxed) {
            return Err(PublishError::Unavailable {
                detail: "the broker blocked publishing (a memory or disk alarm)".to_owned(),
            });
        }
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(content_type.into());
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirmed = async {
            let confirm = channel
                .basic_publish(
                    self.shared.exchange.as_str().into(),
                    routing_key.into(),
                    options,
                    body,
                    properties,
                )
                .await?;
            confirm.await
        };
        let confirmation = match tokio::time::timeout(self.shared.confirm_timeout, confirmed).await
        {
            Err(_elapsed) => return Err(PublishError::Timeout(self.shared.confirm_timeout)),
            Ok(Err(error)) => {
                self.shared.channel_failed.notify_one();
                return Err(PublishError::Unavailable {
                    detail: error.to_string(),
                });
            }
            Ok(Ok(confirmation)) => confirmation,
        };
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_returned)) => Err(PublishError::Unroutable {
                exchange: self.shared.exchange.clone(),
                routing_key: routing_key.to_owned(),
            }),
            Confirmation::Nack(_) => Err(PublishError::Nacked),
            // Cannot happen on a channel in confirm mode, which is the only kind we open.
            Confirmation::NotRequested => Err(PublishError::Unavailable {
                detail: "the channel is not in confirm mode".to_owned(),
            }),
        }
    }
}

/// The background task: connect, declare, hand the channel to the handles, and start over when
/// the connection fails; end once every handle is dropped.
async fn keep_connected(
    settings: ConfirmedPublisherSettings,
    channel_tx: watch::Sender<Option<Channel>>,
    blocked: Arc<AtomicBool>,
    channel_failed: Arc<Notify>,
) {
    let mut attempt: u32 = 0;
    loop {
        let opened = tokio::select! {
            opened = open_declared_channel(&settings) => opened,
            () = channel_tx.closed() => return,
        };
        let (connection, channel) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                let delay = settings.reconnect.delay(attempt, None);
                attempt = attempt.saturating_add(1);
                tracing::warn!(
                    %error,
                    publisher = %settings.name,
                    retry_in_ms = delay.as_millis() as u64,
                    "confirmed publisher cannot connect"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    () = channel_tx.closed() => return,
                }
            }
        };
        attempt = 0;
        tracing::info!(publisher = %settings.name, url = %settings.url, "confirmed publisher connected");
        let mut events = connection.events_listener();
        blocked.store(false, Ordering::Relaxed);
        channel_tx.send_replace(Some(channel.clone()));
        let handles_gone = loop {
            tokio::select! {
                () = channel_tx.closed() => break true,
                () = channel_failed.notified() => {
                    // A publish on an earlier channel may have woken us late: only a failed
                    // channel is replaced.
                    if !channel.status().connected() || !connection.status().connected() {
                        break false;
                    }
                }
                event = events.next() => match event {
                    Some(lapin::Event::Error(error)) => {
                        tracing::warn!(%error, publisher = %settings.name, "confirmed publisher lost its connection; reconnecting");
                        break false;
                    }
                    Some(lapin::Event::ConnectionBlocked(reason)) => {
                        tracing::warn!(%reason, publisher = %settings.name, "the broker blocked publishing");
                        blocked.store(true, Ordering::Relaxed);
                    }
                    Some(lapin::Event::ConnectionUnblocked) => {
                        tracing::info!(publisher = %settings.name, "the broker unblocked publishing");
                        blocked.store(false, Ordering::Relaxed);
                    }
                    Some(_) => {}
                    None => break false,
                },
            }
        };
        channel_tx.send_replace(None);
        let _ = channel.close(200, "sluice publisher closing".into()).await;
        let _ = connection
            .close(200, "sluice publisher closing".into())
            .await;
        if handles_gone {
            return;
        }
    }
}

async fn open_declared_channel(
    settings: &ConfirmedPublisherSettings,
) -> Result<(Connection, Channel), AmqpError> {
    let connection = connect(&settings.url, &settings.name).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(AmqpError::broker("opening the publisher channel"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(AmqpError::broker("enabling publisher confirms"))?;
    if !settings.exchange.name.is_empty() {
        declare_exchange(&channel, &settings.exchange).await?;
    }
    if let Some(bound) = &settings.queue {
        declare_queue(&channel, &bound.queue).await?;
        if !settings.exchange.name.is_empty() {
            for key in &bound.binding_keys {
                channel
                    .queue_bind(
                        bound.queue.name.as_str().into(),
                        settings.exchange.name.as_str().into(),
                        key.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(AmqpError::broker(format!(
                        "binding queue {:?} to {:?} with {key:?}",
                        bound.queue.name, settings.exchange.name
                    )))?;
            }
        }
    }
    Ok((connection, channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(max_in_flight: usize, max_in_flight_bytes: usize) -> Shared {
        let (_tx, channel) = watch::channel(None);
        Shared {
            exchange: String::new(),
            max_in_flight,
            max_in_flight_bytes,
            confirm_timeout: Duration::from_secs(1),
            channel,
            blocked: Arc::default(),
            channel_failed: Arc::default(),
            in_flight: Mutex::default(),
        }
    }

    #[test]
    fn the_in_flight_bound_counts_messages_and_bytes() {
        let shared = shared(2, 100);
        let first = shared.reserve(60).expect("room");
        assert!(matches!(
            shared.reserve(41),
            Err(PublishError::Busy {
                messages: 1,
                bytes: 60
            })
        ));
        let second = shared.reserve(40).expect("room for 40 more bytes");
        assert!(matches!(shared.reserve(0), Err(PublishError::Busy { .. })));
        drop(first);
        drop(second);
        assert!(shared.reserve(100).is_ok(), "slots are given back");
    }

    #[test]
    fn one_oversized_message_passes_alone() {
        let shared = shared(4, 10);
        let big = shared
            .reserve(1_000)
            .expect("alone, an oversized message passes");
        assert!(shared.reserve(1).is_err());
        drop(big);
    }
}
