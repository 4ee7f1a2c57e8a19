//! What every intake suite needs: a confirmed publisher on a queue of its own (on the real
//! RabbitMQ), a way to read back what reached that queue, and an input served on port 0.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeleteOptions, QueuePurgeOptions};
use sluice_amqp::BrokerUrl;
use sluice_amqp::confirmed::{BoundQueue, ConfirmedPublisher, ConfirmedPublisherSettings};
use sluice_amqp::topology::{ExchangeSpec, ExchangeType, Overflow, QueueSpec};
use sluice_core::retry::RetryPolicy;
use sluice_testing::names::unique;
use sluice_testing::services::amqp_url;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const ROUTING_KEY: &str = "intake.test";

/// A message taken from the queue.
#[derive(Debug)]
pub struct Taken {
    pub body: String,
    pub content_type: Option<String>,
}

pub struct Broker {
    pub publisher: ConfirmedPublisher,
    pub queue: String,
    channel: lapin::Channel,
    _connection: lapin::Connection,
}

impl Broker {
    /// A publisher on a fresh exchange and queue; with `max_length`, a queue that refuses
    /// publishes past that length (`reject-publish`).
    pub async fn start(max_length: Option<u32>) -> Self {
        let queue = unique("intake_queue");
        let settings = ConfirmedPublisherSettings {
            url: BrokerUrl::parse(&amqp_url()).expect("a valid AMQP_URL"),
            name: unique("intake-test"),
            exchange: ExchangeSpec {
                name: unique("intake_exchange"),
                kind: ExchangeType::Topic,
                durable: false,
                auto_delete: true,
            },
            queue: Some(BoundQueue {
                queue: QueueSpec {
                    name: queue.clone(),
                    durable: false,
                    auto_delete: false,
                    message_ttl: Some(Duration::from_secs(600)),
                    max_length,
                    overflow: Overflow::RejectPublish,
                },
                binding_keys: vec!["#".to_owned()],
            }),
            max_in_flight: NonZeroUsize::new(64).expect("non-zero"),
            max_in_flight_bytes: NonZeroUsize::new(64 << 20).expect("non-zero"),
            confirm_timeout: Duration::from_secs(5),
            reconnect: RetryPolicy {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(500),
            },
        };
        let publisher = ConfirmedPublisher::start(settings);
        tokio::time::timeout(Duration::from_secs(10), publisher.connected())
            .await
            .expect("the publisher connects to RabbitMQ: is it running? (deploy/services.sh)");
        let connection =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
                .await
                .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        Self {
            publisher,
            queue,
            channel,
            _connection: connection,
        }
    }

    /// The next message in the queue, if any (taken, acked).
    pub async fn take(&self) -> Option<Taken> {
        let message = self
            .channel
            .basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")?;
        Some(Taken {
            body: String::from_utf8(message.delivery.data.clone()).expect("utf-8 body"),
            content_type: message
                .delivery
                .properties
                .content_type()
                .as_ref()
                .map(|kind| kind.to_string()),
        })
    }

    /// Every message in the queue's bodies, concatenated.
    pub async fn take_all(&self) -> String {
        let mut all = String::new();
        while let Some(taken) = self.take().await {
            all.push_str(&taken.body);
        }
        all
    }

    pub async fn purge(&self) {
        self.channel
            .queue_purge(self.queue.as_str().into(), QueuePurgeOptions::default())
            .await
            .expect("purge");
    }

    pub async fn delete(self) {
        let _ = self
            .channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}

/// Serves `router` on a loopback port until the returned token is cancelled.
pub async fn serve(router: axum::Router) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    tokio::spawn(sluice_intake::serve_listener(
        listener,
        router,
        shutdown.clone(),
    ));
    (address, shutdown)
}

/// Replaces every run of digits of a timestamp at the end of each line with `<now>` when it
/// lies within the test's run (`from..=to`), so lines stamped with the receive time compare.
pub fn mask_now(lines: &str, from: i64, to: i64) -> String {
    lines
        .lines()
        .map(|line| match line.rsplit_once(' ') {
            Some((before, timestamp))
                if timestamp
                    .parse::<i64>()
                    .is_ok_and(|time| (from..=to).contains(&time)) =>
            {
                format!("{before} <now>\n")
            }
            _ => format!("{line}\n"),
        })
        .collect()
}

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as i64)
        .unwrap_or(0)
}
