//! RabbitMQ chores shared by the pre-loads and the sweeps: declaring what sluice declares (with
//! sluice's own topology code), so a queue can be filled while sluice is stopped; deleting a
//! run's queues afterwards; waiting for the broker to go quiet before a measurement; and
//! `rabbitmqctl`, for the chaos faults.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lapin::options::{ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Channel, Connection, ConnectionProperties};
use sluice_amqp::topology::{ExchangeSpec, QueueSpec, SourceTopology, declare_source};

use crate::procfs::{self, Process, ProcessSample};

/// The broker counts as quiet below this share of one core...
const QUIET_BROKER_CPU_SHARE: f64 = 0.2;
/// ...measured over windows this long (25 clock ticks)...
const QUIET_BROKER_WINDOW: Duration = Duration::from_millis(250);
/// ...waiting no longer than this.
const QUIET_BROKER_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection to `amqp_url` and a channel on it with publisher confirms on, as every
/// publisher of the harness uses. The connection is returned so that it can be closed.
pub async fn confirming_channel(amqp_url: &str) -> anyhow::Result<(Connection, Channel)> {
    let connection = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .with_context(|| {
            format!(
                "connecting to RabbitMQ at {}: is it running (deploy/services.sh)?",
                redact(amqp_url)
            )
        })?;
    let channel = connection
        .create_channel()
        .await
        .context("opening a channel")?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("turning publisher confirms on")?;
    Ok((connection, channel))
}

/// An AMQP URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// sluice's default `metrics.binding_keys`: every routing key, deployment ids with dots too.
pub const METRICS_BINDING_KEY: &str = "#";

/// sluice's default metrics topology under a run's own names: the manager's monitoring exchange
/// and sluice's durable queue, bound with [`METRICS_BINDING_KEY`].
pub fn metrics_topology(exchange: &str, queue: &str) -> SourceTopology {
    SourceTopology {
        exchange: Some(ExchangeSpec::cloudify_monitoring(exchange)),
        queue: QueueSpec::durable(queue),
        binding_keys: vec![METRICS_BINDING_KEY.to_owned()],
    }
}

/// Declares [`metrics_topology`] as sluice will when it starts, so that what is published while
/// sluice is stopped waits for it in `queue`.
pub async fn declare_metrics_queue(
    channel: &Channel,
    exchange: &str,
    queue: &str,
) -> anyhow::Result<()> {
    declare_source(channel, &metrics_topology(exchange, queue))
        .await
        .map(|_queued| ())
        .with_context(|| format!("declaring sluice's metrics queue {queue} on {exchange}"))
}

/// Deletes a queue if it exists (with whatever it still holds).
pub async fn delete_queue(channel: &Channel, queue: &str) -> anyhow::Result<()> {
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .with_context(|| format!("deleting the queue {queue}"))?;
    Ok(())
}

/// Deletes an exchange if it exists.
pub async fn delete_exchange(channel: &Channel, exchange: &str) -> anyhow::Result<()> {
    channel
        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
        .await
        .with_context(|| format!("deleting the exchange {exchange}"))
}

/// Ready messages in `queue`, or `None` when it does not exist.
pub async fn queue_depth(channel: &Channel, queue: &str) -> Option<u32> {
    crate::baseline::passive_depth(channel, queue).await.ok()
}

fn sample_broker(pid: u32) -> anyhow::Result<ProcessSample> {
    procfs::sample(Process::Pid(pid)).with_context(|| format!("sampling RabbitMQ (pid {pid})"))
}

/// Waits, up to [`QUIET_BROKER_TIMEOUT`], until the broker (`beam.smp`, `pid`) uses less than
/// [`QUIET_BROKER_CPU_SHARE`] of a core over two windows of [`QUIET_BROKER_WINDOW`] in a row.
///
/// RabbitMQ keeps working for a few seconds after a large pre-load or drain (the broker's CPU per
/// message doubled for a drain started at once), which is not what a measurement should see.
/// Returns how long it waited and whether the broker did go quiet.
pub async fn wait_for_quiet_broker(pid: u32) -> anyhow::Result<(Duration, bool)> {
    let started = Instant::now();
    let mut quiet_windows = 0;
    let mut before = sample_broker(pid)?;
    while quiet_windows < 2 && started.elapsed() < QUIET_BROKER_TIMEOUT {
        tokio::time::sleep(QUIET_BROKER_WINDOW).await;
        let after = sample_broker(pid)?;
        let share =
            after.cpu.saturating_sub(before.cpu).as_secs_f64() / QUIET_BROKER_WINDOW.as_secs_f64();
        quiet_windows = if share < QUIET_BROKER_CPU_SHARE {
            quiet_windows + 1
        } else {
            0
        };
        before = after;
    }
    Ok((started.elapsed(), quiet_windows >= 2))
}

/// RabbitMQ's pid: the oldest `beam.smp` of the `rabbitmq` user, when there is one.
pub fn find_broker_pid() -> Option<u32> {
    let output = std::process::Command::new("pgrep")
        .args(["-o", "-u", "rabbitmq", "beam.smp"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// `rabbitmqctl -q <args>` on the local broker, which must succeed.
pub async fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let output = tokio::process::Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .await
        .context("running rabbitmqctl (is rabbitmq-server installed?)")?;
    if !output.status.success() {
        // The arguments may hold a password (add_user): only the command is named.
        bail!(
            "rabbitmqctl {} failed ({}): {}",
            args.first().copied().unwrap_or_default(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }
}
