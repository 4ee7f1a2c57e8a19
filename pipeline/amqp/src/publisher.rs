//! Publishing sluice's own events (the rule stage's `policy`, `processing_trigger`,
//! `trigger_succeeded` and `trigger_failed`) onto the manager's events path, with publisher
//! confirms, so they reach Elasticsearch through the same queue as the manager's own events.
//!
//! Where they go depends on the manager: 4.x has a durable fanout exchange `cloudify-events`
//! (declared here exactly as the manager declares it); 3.x publishes to the default exchange
//! with the queue name `cloudify-events` as routing key.
//!
//! An event stays in this publisher until the broker confirmed it: a nack or a lost connection
//! sends it again after reconnecting (at-least-once; the events path's `_id` is a hash of the
//! message, so a repeat is stored once). An event no queue takes (returned as unroutable) is
//! counted and logged as `sluice_events_published_total{result="unroutable"}` and dropped, since
//! there is nowhere to keep it: bind a queue to see them.

use std::collections::{HashMap, VecDeque};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation};
use sluice_core::retry::RetryPolicy;
use tokio::sync::mpsc;

use crate::AmqpError;
use crate::connection::{BrokerUrl, PublisherSession, publish_with_reconnects};
use crate::topology::{ExchangeSpec, declare_exchange};

/// Publishes awaiting their confirm at once.
const MAX_UNCONFIRMED: usize = 256;

#[derive(Debug, Clone)]
pub struct EventPublisherSettings {
    pub url: BrokerUrl,
    /// The exchange to publish to; `""` is the default exchange.
    pub exchange: String,
    /// Declared before publishing (4.x's fanout exchange); `None` for the default exchange.
    pub declare: Option<ExchangeSpec>,
    pub routing_key: String,
    pub reconnect: RetryPolicy,
}

/// Publishes event bodies (JSON) until every sender of `events` is gone and every publish is
/// confirmed.
pub async fn run_event_publisher(settings: EventPublisherSettings, events: mpsc::Receiver<String>) {
    let url = settings.url.clone();
    let reconnect = settings.reconnect;
    let mut session = EventSession {
        settings,
        events,
        unsent: VecDeque::new(),
    };
    publish_with_reconnects(&url, "events-publisher", reconnect, &mut session).await;
}

struct EventSession {
    settings: EventPublisherSettings,
    events: mpsc::Receiver<String>,
    /// Events not yet published, or published and not confirmed on a channel that failed.
    unsent: VecDeque<String>,
}

impl PublisherSession for EventSession {
    async fn prepare(&self, channel: &Channel) -> Result<(), AmqpError> {
        match &self.settings.declare {
            Some(exchange) => declare_exchange(channel, exchange).await,
            None => Ok(()),
        }
    }

    async fn run(&mut self, channel: &Channel) -> Result<(), AmqpError> {
        publish_until_closed(&self.settings, channel, &mut self.events, &mut self.unsent).await
    }
}

/// Publishes what is `unsent`, then what arrives, until the input is closed and everything is
/// confirmed. On a broker error, every event not yet confirmed is back in `unsent`.
async fn publish_until_closed(
    settings: &EventPublisherSettings,
    channel: &Channel,
    events: &mut mpsc::Receiver<String>,
    unsent: &mut VecDeque<String>,
) -> Result<(), AmqpError> {
    let mut in_flight: HashMap<u64, String> = HashMap::new();
    let mut confirms = FuturesUnordered::new();
    let mut next_id: u64 = 0;
    let mut input_open = true;
    let result = loop {
        if in_flight.len() < MAX_UNCONFIRMED
            && let Some(body) = unsent.pop_front()
        {
            match publish(settings, channel, &body).await {
                Ok(confirm) => {
                    let id = next_id;
                    next_id += 1;
                    in_flight.insert(id, body);
                    confirms.push(async move { (id, confirm.await) });
                    continue;
                }
                Err(error) => {
                    unsent.push_front(body);
                    break Err(error);
                }
            }
        }
        tokio::select! {
            body = events.recv(), if input_open && unsent.is_empty() && in_flight.len() < MAX_UNCONFIRMED => {
                match body {
                    Some(body) => unsent.push_back(body),
                    None => input_open = false,
                }
            }
            Some((id, confirmation)) = confirms.next() => {
                let Some(body) = in_flight.remove(&id) else { continue };
                match confirmation {
                    Ok(Confirmation::Ack(None)) => {
                        metrics::counter!("sluice_events_published_total", "result" => "confirmed").increment(1);
                    }
                    Ok(Confirmation::Ack(Some(_returned))) => {
                        tracing::warn!(
                            exchange = %settings.exchange,
                            routing_key = %settings.routing_key,
                            "an event was unroutable: no queue is bound to receive sluice's events"
                        );
                        metrics::counter!("sluice_events_published_total", "result" => "unroutable").increment(1);
                    }
                    Ok(_nack) => unsent.push_back(body),
                    Err(error) => {
                        unsent.push_back(body);
                        break Err(AmqpError::Broker {
                            operation: "awaiting an event's confirm".to_owned(),
                            source: error,
                        });
                    }
                }
            }
            else => {
                if unsent.is_empty() && !input_open {
                    break Ok(());
                }
            }
        }
    };
    // Whatever was not confirmed goes out again on the next channel.
    unsent.extend(in_flight.into_values());
    result
}

async fn publish(
    settings: &EventPublisherSettings,
    channel: &Channel,
    body: &str,
) -> Result<lapin::PublisherConfirm, AmqpError> {
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into());
    channel
        .basic_publish(
            settings.exchange.as_str().into(),
            settings.routing_key.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body.as_bytes(),
            properties,
        )
        .await
        .map_err(AmqpError::broker("publishing an event"))
}
