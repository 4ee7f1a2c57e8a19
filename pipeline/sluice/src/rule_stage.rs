//! The rule stage, wired: `sluice_rest::stage` (the engines, the executor, the checkpoint) with
//! its outcome events connected to an event publisher on the manager's events exchange.
//!
//! ```text
//! metrics path ─RuleFeed─► sluice_rest::stage ─JSON events─► run_event_publisher ─► cloudify-events
//! ```

use std::time::Duration;

use sluice_amqp::publisher::run_event_publisher;
use sluice_core::dead_letter::DeadLetterSender;
use sluice_rest::stage::{self, RuleFeed};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::RulesSettings;

/// Events waiting for the publisher; the rule stage waits when full.
const EVENTS_CHANNEL_CAPACITY: usize = 1024;

/// Restores the checkpoint, starts the rule stage and its event publisher onto `tasks`.
/// `drain_deadline` bounds how long a stop waits for running actions before checkpointing
/// them as pending.
pub async fn start(
    settings: RulesSettings,
    dead_letters: DeadLetterSender,
    drain_deadline: Duration,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<RuleFeed> {
    let (events_tx, events_rx) = mpsc::channel(EVENTS_CHANNEL_CAPACITY);
    let (feed, rule_stage) =
        stage::start(settings.stage, dead_letters, events_tx, drain_deadline).await?;
    tasks.spawn(async move {
        run_event_publisher(settings.events, events_rx).await;
        Ok(())
    });
    tasks.spawn(async move {
        rule_stage.run().await;
        Ok(())
    });
    Ok(feed)
}
