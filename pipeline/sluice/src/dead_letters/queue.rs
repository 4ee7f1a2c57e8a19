//! Reading the dead-letter queue without taking anything from it, and republishing with
//! confirms.
//!
//! Every letter is read with `basic.get` and left unacked on one reading channel, so while the
//! command runs the broker holds them for it, and if it dies they go back by themselves. A letter
//! is removed (acked) only once its republished copy is confirmed by the broker; at the end
//! everything else is returned with one `basic.nack(multiple, requeue)`. RabbitMQ puts requeued
//! messages back at their original positions, so the queue's order is kept (they are marked
//! `redelivered`, which nothing in sluice reads).
//!
//! Republishing uses a second channel with confirms: an exchange that does not exist makes the
//! broker close that channel, not the reading one, and the next letter gets a fresh one.

use std::time::Duration;

use anyhow::{Context, anyhow};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use sluice_amqp::BrokerUrl;

use super::letter::Letter;

/// How long a republished letter may wait for its confirm before it counts as not taken.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

pub struct DeadLetterQueue {
    connection: Connection,
    reader: Channel,
    publisher: Option<Channel>,
    queue: String,
}

/// What one pass over the head of the queue read.
pub struct Reading {
    pub letters: Vec<Letter>,
    /// Letters behind the last one read, which this command does not look at.
    pub unread: u32,
}

impl DeadLetterQueue {
    /// Connects and checks that `queue` exists.
    pub async fn open(url: &BrokerUrl, queue: &str) -> anyhow::Result<DeadLetterQueue> {
        let connection = sluice_amqp::connection::connect(url, "dead-letters").await?;
        let reader = connection
            .create_channel()
            .await
            .context("opening a channel")?;
        reader
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .with_context(|| {
                format!(
                    "the dead-letter queue {queue:?} does not exist on {url} (`sluice run` \
                     declares it when it starts); name the one sluice uses with --queue or \
                     dead_letter.queue"
                )
            })?;
        Ok(DeadLetterQueue {
            connection,
            reader,
            publisher: None,
            queue: queue.to_owned(),
        })
    }

    /// Reads up to `limit` letters from the head of the queue, oldest first, leaving each one
    /// unacked.
    pub async fn read(&self, limit: usize) -> anyhow::Result<Reading> {
        let mut letters = Vec::new();
        let mut unread = 0;
        while letters.len() < limit {
            let got = self
                .reader
                .basic_get(
                    self.queue.as_str().into(),
                    BasicGetOptions { no_ack: false },
                )
                .await
                .with_context(|| format!("reading the dead-letter queue {:?}", self.queue))?;
            let Some(message) = got else {
                unread = 0;
                break;
            };
            unread = message.message_count;
            letters.push(Letter::from_delivery(letters.len() + 1, message.delivery));
        }
        Ok(Reading { letters, unread })
    }

    /// Publishes `body` to `exchange` with `routing_key`, mandatory, and waits for the broker's
    /// confirm; an error says why the broker did not take it.
    pub async fn republish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        properties: BasicProperties,
        body: &[u8],
    ) -> anyhow::Result<()> {
        let channel = self.publisher().await?;
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await
            .context("publishing")?;
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| anyhow!("no confirm from the broker within {CONFIRM_TIMEOUT:?}"))?;
        match confirmation {
            Ok(Confirmation::Ack(None)) => Ok(()),
            Ok(Confirmation::Ack(Some(_returned))) => Err(anyhow!(
                "unroutable: no queue is bound to exchange {exchange:?} for routing key \
                 {routing_key:?}"
            )),
            Ok(Confirmation::Nack(_)) => Err(anyhow!("the broker refused it (nack)")),
            Ok(Confirmation::NotRequested) => Err(anyhow!("publisher confirms are off")),
            Err(error) => Err(anyhow!(
                "the broker did not take it (does exchange {exchange:?} exist?): {error}"
            )),
        }
    }

    /// Whether the letters read are still held by this command (the broker returns them all
    /// when it closes the reading channel, after an error on it).
    pub fn is_reading(&self) -> bool {
        self.reader.status().connected()
    }

    /// Removes a letter from the queue: only once its copy is confirmed.
    pub async fn remove(&self, letter: &Letter) -> anyhow::Result<()> {
        self.reader
            .basic_ack(letter.delivery_tag, BasicAckOptions::default())
            .await
            .context("acking it in the dead-letter queue")
    }

    /// Returns every letter not removed to its place in the queue, and disconnects.
    pub async fn close(self) -> anyhow::Result<()> {
        if let Some(publisher) = &self.publisher
            && publisher.status().connected()
        {
            let _ = publisher.close(200, "done".into()).await;
        }
        if !self.is_reading() {
            // The broker closed the channel (after an error it reported already), and that
            // returned every letter still unacked on it.
            let _ = self.connection.close(200, "done".into()).await;
            return Ok(());
        }
        // Tag 0 with `multiple`: every delivery still unacked on this channel.
        self.reader
            .basic_nack(
                0,
                BasicNackOptions {
                    multiple: true,
                    requeue: true,
                },
            )
            .await
            .context("returning the letters to the dead-letter queue")?;
        // Closing waits for the broker, so the letters are back before the command exits (and
        // had the nack been lost, closing the channel requeues them too).
        self.reader
            .close(200, "done".into())
            .await
            .context("closing the reading channel")?;
        let _ = self.connection.close(200, "done".into()).await;
        Ok(())
    }

    /// The publishing channel, opened again when the broker closed the last one.
    async fn publisher(&mut self) -> anyhow::Result<&Channel> {
        let usable = self
            .publisher
            .as_ref()
            .is_some_and(|channel| channel.status().connected());
        if !usable {
            let channel = self
                .connection
                .create_channel()
                .await
                .context("opening the publishing channel")?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .context("enabling publisher confirms")?;
            self.publisher = Some(channel);
        }
        self.publisher
            .as_ref()
            .ok_or_else(|| anyhow!("no publishing channel"))
    }
}
