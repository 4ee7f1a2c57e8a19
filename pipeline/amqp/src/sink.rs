//! [`AmqpSink`]: a [`Sink`] that publishes points as line protocol to an exchange, so that one
//! sluice tier feeds another (which reads them with its line-protocol decoder).
//!
//! Each point becomes one line with a nanosecond timestamp, encoded by the InfluxDB sink's own
//! [`LineEncoder`] (so escaping and the names refused are the same as on the way to InfluxDB).
//! A batch is published as one persistent message with the broker's confirm awaited
//! ([`ConfirmedPublisher`]): a confirm delivers every item of the batch; a nack, an unroutable
//! message, a lost connection, a timeout or a full in-flight bound retries every item (the
//! sink driver backs off and sends the batch again). A message whose confirm was lost may
//! arrive twice; the next tier's InfluxDB write overwrites the same series and timestamp, so
//! the duplicate is harmless ([invariant 4](sluice_core#invariants)).

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use sluice_core::outcome::ItemOutcome;
use sluice_core::path::{Encode, Sink};
use sluice_core::point::{PointLimits, ValidPoint};
use sluice_core::rejection::{Refusal, Stage};
use sluice_influx::api::Precision;
use sluice_influx::encode::{Line, LineEncoder};

use crate::confirmed::{ConfirmedPublisher, PublishError};

/// The content type of what [`AmqpSink`] publishes (and the push inputs publish).
pub const LINE_PROTOCOL_CONTENT_TYPE: &str = "text/plain; format=line-protocol; precision=ns";

#[derive(Debug, Clone)]
pub struct AmqpSinkSettings {
    /// The routing key every batch is published with (the exchange is the publisher's).
    pub routing_key: String,
    /// Points past these limits are refused before they are published.
    pub max_point: PointLimits,
    /// The `Retry-After` given to the sink driver when the publisher is `Busy`, the broker
    /// nacked (a full queue) or is unreachable.
    pub retry_after: Duration,
}

/// Publishes batches of lines with confirms. Cheap to share.
#[derive(Debug, Clone)]
pub struct AmqpSink {
    publisher: ConfirmedPublisher,
    settings: AmqpSinkSettings,
}

impl AmqpSink {
    pub fn new(publisher: ConfirmedPublisher, settings: AmqpSinkSettings) -> Self {
        Self {
            publisher,
            settings,
        }
    }
}

impl Sink for AmqpSink {
    type Encoded = Line;
    type Encoder = LineEncoder;

    fn stage(&self) -> Stage {
        Stage::Amqp
    }

    fn encoder(&self) -> LineEncoder {
        LineEncoder::new(Precision::Nanoseconds, self.settings.max_point)
    }

    async fn write(&self, lines: &[&Line]) -> Vec<ItemOutcome> {
        if lines.is_empty() {
            return Vec::new();
        }
        let size = lines.iter().map(|line| line.as_bytes().len()).sum();
        let mut body = BytesMut::with_capacity(size);
        for line in lines {
            body.put_slice(line.as_bytes());
        }
        let outcome = match self
            .publisher
            .publish(
                &self.settings.routing_key,
                body.freeze(),
                LINE_PROTOCOL_CONTENT_TYPE,
            )
            .await
        {
            Ok(()) => ItemOutcome::Delivered,
            Err(error) => {
                let after = match error {
                    // The confirm may still come: sending again at once would only add load.
                    PublishError::Timeout(_) | PublishError::Unroutable { .. } => None,
                    PublishError::Busy { .. }
                    | PublishError::Nacked
                    | PublishError::Unavailable { .. } => Some(self.settings.retry_after),
                };
                if matches!(error, PublishError::Unroutable { .. }) {
                    tracing::error!(%error, "amqp sink: bind a queue for the sink's routing key; the batch is retried");
                }
                ItemOutcome::Retry {
                    after,
                    detail: error.to_string(),
                }
            }
        };
        vec![outcome; lines.len()]
    }
}

/// A point the normalise stage validated becomes its line here, timestamp in nanoseconds.
impl<'p> Encode<ValidPoint<'p>> for AmqpSink {
    fn encode(&self, encoder: &mut LineEncoder, point: &ValidPoint<'p>) -> Result<Line, Refusal> {
        encoder
            .encode_line(point)
            .map_err(|error| Refusal::of(&error))
    }
}
