//! Publishing rejected items to the dead-letter exchange, with publisher confirms.
//!
//! Each [`DeadLetter`] is published with the original body, persistent, to a durable topic
//! exchange (default `sluice.dead-letter`) with routing key `<stage>.<reason>` and headers saying
//! why. Its token is finished only when the broker confirmed the publish, so the original delivery
//! is acked only once its rejection is stored. A letter the broker could not take (nack, returned
//! as unroutable, connection lost) keeps its token unfinished: the original delivery goes back to
//! its queue and comes round again, rather than disappearing.
//!
//! By default a durable queue of the same name is bound with `#`, so dead letters are kept even
//! before anyone looks at them; publishing is `mandatory`, so removing that queue without binding
//! another is noticed instead of silently dropping letters.

use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::options::{BasicPublishOptions, QueueBindOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use lapin::{Confirmation, PublisherConfirm};
use sluice_core::dead_letter::{DeadLetter, DeadLetterReceiver};
use sluice_core::retry::RetryPolicy;

use crate::AmqpError;
use crate::connection::{BrokerUrl, PublisherSession, publish_with_reconnects};
use crate::topology::{ExchangeSpec, ExchangeType, QueueSpec, declare_exchange, declare_queue};

/// Longest error text carried in a header; the rest is cut, marked with an ellipsis.
const MAX_ERROR_HEADER_BYTES: usize = 4096;
/// Publishes awaiting their confirm at once.
const MAX_UNCONFIRMED: usize = 256;

/// Header names, shared with whoever reads or replays the dead-letter queue.
pub mod headers {
    pub const STAGE: &str = "x-sluice-stage";
    pub const REASON: &str = "x-sluice-reason";
    pub const ERROR: &str = "x-sluice-error";
    pub const ATTEMPTS: &str = "x-sluice-attempts";
    pub const REJECTED_AT_MS: &str = "x-sluice-rejected-at-ms";
    pub const ORIGINAL_EXCHANGE: &str = "x-original-exchange";
    pub const ORIGINAL_ROUTING_KEY: &str = "x-original-routing-key";
    /// `true` when the body is the refused part (one line) of a body that carried many items.
    pub const PART: &str = "x-sluice-part";
}

#[derive(Debug, Clone)]
pub struct DeadLetterSettings {
    pub url: BrokerUrl,
    pub exchange: String,
    /// A durable queue bound with `#` to the exchange; `None` to declare none.
    pub queue: Option<String>,
    pub reconnect: RetryPolicy,
}

/// Publishes letters until every sender of `letters` is gone and every publish is settled.
pub async fn run_dead_letter_publisher(settings: DeadLetterSettings, letters: DeadLetterReceiver) {
    let url = settings.url.clone();
    let reconnect = settings.reconnect;
    let mut session = DeadLetterSession { settings, letters };
    publish_with_reconnects(&url, "dead-letter", reconnect, &mut session).await;
}

struct DeadLetterSession {
    settings: DeadLetterSettings,
    letters: DeadLetterReceiver,
}

impl PublisherSession for DeadLetterSession {
    async fn prepare(&self, channel: &Channel) -> Result<(), AmqpError> {
        declare_dead_letter_topology(&self.settings, channel).await
    }

    async fn run(&mut self, channel: &Channel) -> Result<(), AmqpError> {
        // A letter not confirmed keeps its token unfinished, so its delivery returns to its
        // queue: nothing needs keeping here across channels.
        publish_until_closed(&self.settings, channel, &mut self.letters).await
    }
}

async fn declare_dead_letter_topology(
    settings: &DeadLetterSettings,
    channel: &Channel,
) -> Result<(), AmqpError> {
    declare_exchange(
        channel,
        &ExchangeSpec {
            name: settings.exchange.clone(),
            kind: ExchangeType::Topic,
            durable: true,
            auto_delete: false,
        },
    )
    .await?;
    if let Some(queue) = &settings.queue {
        declare_queue(channel, &QueueSpec::durable(queue.clone())).await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                settings.exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(AmqpError::broker("binding the dead-letter queue"))?;
    }
    Ok(())
}

async fn publish_until_closed(
    settings: &DeadLetterSettings,
    channel: &Channel,
    letters: &mut DeadLetterReceiver,
) -> Result<(), AmqpError> {
    let mut unconfirmed = FuturesUnordered::new();
    let mut input_open = true;
    loop {
        tokio::select! {
            letter = letters.recv(), if input_open && unconfirmed.len() < MAX_UNCONFIRMED => {
                let Some(letter) = letter else {
                    input_open = false;
                    continue;
                };
                let confirm = publish(settings, channel, &letter).await?;
                unconfirmed.push(async move { (confirm.await, letter) });
            }
            Some((confirmation, letter)) = unconfirmed.next() => {
                settle(confirmation, letter);
            }
            else => return Ok(()),
        }
    }
}

async fn publish(
    settings: &DeadLetterSettings,
    channel: &Channel,
    letter: &DeadLetter,
) -> Result<PublisherConfirm, AmqpError> {
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(letter_headers(letter));
    channel
        .basic_publish(
            settings.exchange.as_str().into(),
            letter.routing_key().into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            letter.body(),
            properties,
        )
        .await
        .map_err(AmqpError::broker("publishing a dead letter"))
}

fn settle(confirmation: Result<Confirmation, lapin::Error>, letter: DeadLetter) {
    match confirmation {
        Ok(Confirmation::Ack(None)) => {
            metrics::counter!(
                "sluice_dead_lettered_total",
                "stage" => letter.stage,
                "reason" => letter.reason
            )
            .increment(1);
            letter.published();
        }
        Ok(Confirmation::Ack(Some(_returned))) => {
            tracing::error!(
                stage = %letter.stage,
                reason = %letter.reason,
                "dead letter was unroutable: bind a queue to the dead-letter exchange; \
                 the original delivery returns to its queue"
            );
            metrics::counter!("sluice_dead_letter_failures_total", "cause" => "unroutable")
                .increment(1);
        }
        Ok(other) => {
            tracing::warn!(
                ?other,
                "broker did not take a dead letter; the original returns to its queue"
            );
            metrics::counter!("sluice_dead_letter_failures_total", "cause" => "nack").increment(1);
        }
        Err(error) => {
            tracing::warn!(%error, "dead letter not confirmed; the original returns to its queue");
            metrics::counter!("sluice_dead_letter_failures_total", "cause" => "connection")
                .increment(1);
        }
    }
}

fn letter_headers(letter: &DeadLetter) -> FieldTable {
    let message = letter.message();
    let mut table = FieldTable::default();
    let text = |value: &str| AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()));
    table.insert(headers::STAGE.into(), text(letter.stage.as_str()));
    table.insert(headers::REASON.into(), text(letter.reason.as_str()));
    table.insert(
        headers::ERROR.into(),
        text(truncate(&letter.detail, MAX_ERROR_HEADER_BYTES)),
    );
    table.insert(
        headers::ATTEMPTS.into(),
        AMQPValue::LongLongInt(i64::from(letter.attempts)),
    );
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    table.insert(
        headers::REJECTED_AT_MS.into(),
        AMQPValue::LongLongInt(now_ms),
    );
    table.insert(headers::ORIGINAL_EXCHANGE.into(), text(&message.exchange));
    table.insert(
        headers::ORIGINAL_ROUTING_KEY.into(),
        text(&message.routing_key),
    );
    if letter.is_part() {
        table.insert(headers::PART.into(), AMQPValue::Boolean(true));
    }
    table
}

/// Cuts `text` to at most `limit` bytes on a character boundary.
fn truncate(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("short", 100), "short");
    }
}
