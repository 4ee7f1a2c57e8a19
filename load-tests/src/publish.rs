//! Publishing with confirms pipelined: what the pre-loads and the live load share.

use anyhow::bail;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation};

/// Publishes awaiting their confirm at once.
const MAX_UNCONFIRMED: usize = 1000;

/// Publishes each `(exchange, routing key, body)` with no properties, as the manager's agents
/// do, keeping up to [`MAX_UNCONFIRMED`] confirms in flight; fails on the first nack.
pub async fn publish_confirmed<'a>(
    channel: &Channel,
    messages: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>,
) -> anyhow::Result<()> {
    let mut unconfirmed = FuturesUnordered::new();
    for (exchange, routing_key, body) in messages {
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await?;
        unconfirmed.push(confirm);
        if unconfirmed.len() >= MAX_UNCONFIRMED
            && let Some(confirmation) = unconfirmed.next().await
        {
            ensure_acked(confirmation)?;
        }
    }
    while let Some(confirmation) = unconfirmed.next().await {
        ensure_acked(confirmation)?;
    }
    Ok(())
}

/// The broker's confirm of one publish, as an error unless it acked.
pub fn ensure_acked(confirmation: lapin::Result<Confirmation>) -> anyhow::Result<()> {
    if !confirmation?.is_ack() {
        bail!("the broker refused a publish");
    }
    Ok(())
}
