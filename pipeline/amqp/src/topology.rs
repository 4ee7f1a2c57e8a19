//! Declaring what a source consumes from, exactly as configured.
//!
//! Declarations are idempotent in AMQP only when the arguments match: redeclaring an existing
//! exchange or queue with other flags fails with `PRECONDITION_FAILED`. That is why the sidecar
//! declares `cloudify-monitoring` exactly as the manager's agents do (topic, non-durable,
//! auto-delete), and why the error message names the object and its flags.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use crate::AmqpError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeType {
    Topic,
    Fanout,
    Direct,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSpec {
    pub name: String,
    pub kind: ExchangeType,
    pub durable: bool,
    pub auto_delete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    /// `x-message-ttl`: messages older than this are dropped by the broker.
    pub message_ttl: Option<Duration>,
    /// `x-max-length`: past this many messages the broker drops the oldest, or, with
    /// [`Overflow::RejectPublish`], refuses the new one.
    pub max_length: Option<u32>,
    /// What happens at `max_length`. Part of the queue's declaration: whoever declares it (the
    /// push input's publisher, the source consuming it) must say the same.
    pub overflow: Overflow,
}

impl ExchangeSpec {
    /// The shape the manager's agents declare `cloudify-monitoring` with: topic, not durable,
    /// auto-delete. Whoever declares that exchange (sluice by default, the load harness before it
    /// pre-loads a queue) must use exactly these flags, or the broker refuses the declaration
    /// with `PRECONDITION_FAILED` while the agents' exchange exists.
    pub fn cloudify_monitoring(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: ExchangeType::Topic,
            durable: false,
            auto_delete: true,
        }
    }

    /// The shape the 4.x manager declares `cloudify-events` and `cloudify-logs` with: fanout,
    /// durable, not auto-delete. As with [`ExchangeSpec::cloudify_monitoring`], any other flags
    /// fail with `PRECONDITION_FAILED` against the manager's own exchange.
    pub fn durable_fanout(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: ExchangeType::Fanout,
            durable: true,
            auto_delete: false,
        }
    }
}

impl QueueSpec {
    /// A queue of sluice's own that outlives sluice: durable, not auto-delete, without a ttl or
    /// a length limit, so that what is published while sluice is stopped waits for it. A queue
    /// declared elsewhere with other flags or arguments is refused with `PRECONDITION_FAILED`
    /// when sluice redeclares it.
    pub fn durable(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            durable: true,
            auto_delete: false,
            message_ttl: None,
            max_length: None,
            overflow: Overflow::DropHead,
        }
    }
}

/// A queue, and the exchange and binding keys that feed it. Without an exchange the queue is fed
/// by publishers through the default exchange (the 3.x manager's events and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTopology {
    pub exchange: Option<ExchangeSpec>,
    pub queue: QueueSpec,
    pub binding_keys: Vec<String>,
}

pub async fn declare_exchange(channel: &Channel, exchange: &ExchangeSpec) -> Result<(), AmqpError> {
    let kind = match exchange.kind {
        ExchangeType::Topic => ExchangeKind::Topic,
        ExchangeType::Fanout => ExchangeKind::Fanout,
        ExchangeType::Direct => ExchangeKind::Direct,
    };
    let options = ExchangeDeclareOptions {
        durable: exchange.durable,
        auto_delete: exchange.auto_delete,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            exchange.name.as_str().into(),
            kind,
            options,
            FieldTable::default(),
        )
        .await
        .map_err(AmqpError::broker(format!(
            "declaring exchange {:?} ({:?}, durable={}, auto_delete={})",
            exchange.name, exchange.kind, exchange.durable, exchange.auto_delete
        )))
}

/// What the broker does with a publish to a queue that holds its `x-max-length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop the oldest message to make room (RabbitMQ's default): the publisher never learns.
    #[default]
    DropHead,
    /// `x-overflow=reject-publish`: refuse the new message, which a publisher with confirms
    /// sees as a nack. This is how a push input learns that the pipeline behind it is slow.
    RejectPublish,
}

/// Declares `queue`. `Overflow::DropHead` declares no `x-overflow` argument, so it matches
/// queues declared without one.
pub async fn declare_queue(channel: &Channel, queue: &QueueSpec) -> Result<(), AmqpError> {
    declare_queue_counted(channel, queue).await.map(|_| ())
}

/// Declares the queue; answers its ready message count, as the broker reported it.
async fn declare_queue_counted(channel: &Channel, queue: &QueueSpec) -> Result<u32, AmqpError> {
    let overflow = queue.overflow;
    let mut arguments = FieldTable::default();
    if overflow == Overflow::RejectPublish {
        arguments.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
    }
    if let Some(ttl) = queue.message_ttl {
        let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(millis));
    }
    if let Some(max_length) = queue.max_length {
        arguments.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(i64::from(max_length)),
        );
    }
    let options = QueueDeclareOptions {
        durable: queue.durable,
        auto_delete: queue.auto_delete,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.name.as_str().into(), options, arguments)
        .await
        .map(|declared| declared.message_count())
        .map_err(AmqpError::broker(format!(
            "declaring queue {:?} (durable={}, auto_delete={}, ttl={:?}, max_length={:?}, \
             overflow={overflow:?}); an existing queue with other arguments must be deleted first",
            queue.name, queue.durable, queue.auto_delete, queue.message_ttl, queue.max_length
        )))
}

/// Declares the exchange (if any), the queue, and binds them with every binding key. Answers
/// the queue's ready message count at its declaration: what queued up before this consumer.
pub async fn declare_source(
    channel: &Channel,
    topology: &SourceTopology,
) -> Result<u32, AmqpError> {
    let queued = declare_queue_counted(channel, &topology.queue).await?;
    let Some(exchange) = &topology.exchange else {
        return Ok(queued);
    };
    declare_exchange(channel, exchange).await?;
    for key in &topology.binding_keys {
        channel
            .queue_bind(
                topology.queue.name.as_str().into(),
                exchange.name.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(AmqpError::broker(format!(
                "binding queue {:?} to {:?} with {key:?}",
                topology.queue.name, exchange.name
            )))?;
    }
    Ok(queued)
}
