//! sluice's RabbitMQ boundary, built on lapin.
//!
//! - [`topology`]: declaring exchanges, queues and bindings exactly as configured (for the
//!   sidecar: exactly as the Cloudify manager declares its own).
//! - [`source`]: consuming a queue with a bounded prefetch, handing each delivery on with its
//!   [`AckToken`](sluice_core::ack::AckToken), and reconnecting with backoff when the connection
//!   drops.
//! - [`backlog`]: knowing from the broker when what queued up before the start is processed.
//! - [`acker`]: one task per channel that turns finished deliveries into cumulative
//!   `basic.ack(multiple=true)` frames, and returns failed ones to the queue.
//! - [`dead_letter`]: publishing rejected items to the dead-letter exchange with publisher
//!   confirms, finishing their tokens only once the broker confirmed.
//! - [`publisher`]: publishing sluice's own events (the rule stage's outcomes) onto the
//!   manager's events path, with confirms, resending what the broker did not confirm.
//! - [`confirmed`]: a publisher whose callers await the broker's confirm, bounded in flight:
//!   the durable buffer of the push inputs (`sluice-intake`) and of the AMQP sink.
//! - [`sink`]: the AMQP sink, publishing points as line protocol so one tier feeds another.
//! - [`connection`]: connecting, and the broker URL in a form that is safe to log.
//! - [`tls`]: `amqps://` with a private CA or a client certificate, read from PEM files.

pub mod acker;
pub mod backlog;
pub mod confirmed;
pub mod connection;
pub mod dead_letter;
pub mod publisher;
pub mod sink;
pub mod source;
pub mod tls;
pub mod topology;

pub use connection::{AmqpError, BrokerUrl};
pub use tls::BrokerTls;
