//! A demo feed: what a small manager sends, live, for a newcomer to watch sluice work without a
//! manager. Each tick, every host of two deployments reports the Diamond collectors' metrics with
//! plausible values and the current time; now and then a task event and a log go to the
//! manager's event and log exchanges. Everything is published with confirms, so a count printed
//! is a count the broker took.

use std::f64::consts::TAU;
use std::time::Duration;

use anyhow::Context;
use lapin::Channel;
use serde_json::json;
use sluice_amqp::topology::{ExchangeSpec, declare_exchange};

use crate::open_loop::agent_body;
use crate::publish::publish_confirmed;

/// The deployments the feed reports for; the second has dots in its id, as real ones may.
pub const DEMO_DEPLOYMENTS: [&str; 2] = ["nodecellar", "shop.prod.eu"];
/// The collectors each host reports, as Diamond names them.
const PATHS: [&str; 10] = sluice_benches::DIAMOND_PATHS;
/// One event and one log every this many ticks.
const EVENTS_EVERY: u64 = 5;

#[derive(Debug, Clone)]
pub struct DemoSettings {
    pub amqp_url: String,
    /// The metrics exchange (the manager's `cloudify-monitoring`, declared as its agents do).
    pub exchange: String,
    /// Hosts per deployment.
    pub hosts: usize,
    pub interval: Duration,
    /// Stop after this many ticks; `None`: until interrupted.
    pub ticks: Option<u64>,
    /// The 4.x manager's event and log exchanges (durable fanout, declared as the manager
    /// does): `cloudify-events` and `cloudify-logs`; `None`: metrics only.
    pub events: Option<(String, String)>,
}

/// What the feed published, as the broker confirmed it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DemoCounts {
    pub metrics: u64,
    pub events: u64,
    pub logs: u64,
}

/// Runs the feed until `settings.ticks` or Ctrl-C; prints a line every ten ticks.
pub async fn run(settings: &DemoSettings) -> anyhow::Result<DemoCounts> {
    // Held for the whole feed: the channel lives on it.
    let (_connection, channel) = crate::broker::confirming_channel(&settings.amqp_url).await?;
    declare(&channel, settings).await?;
    let mut counts = DemoCounts::default();
    let mut clock = tokio::time::interval(settings.interval);
    let mut tick = 0;
    while settings.ticks.is_none_or(|ticks| tick < ticks) {
        tokio::select! {
            _ = clock.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let now = jiff::Timestamp::now();
        publish_tick(&channel, settings, tick, now, &mut counts).await?;
        tick += 1;
        if tick.is_multiple_of(10) {
            println!(
                "demo: {} metrics, {} events, {} logs published",
                counts.metrics, counts.events, counts.logs
            );
        }
    }
    Ok(counts)
}

async fn declare(channel: &Channel, settings: &DemoSettings) -> anyhow::Result<()> {
    let mut exchanges = vec![ExchangeSpec::cloudify_monitoring(
        settings.exchange.as_str(),
    )];
    if let Some((events, logs)) = &settings.events {
        exchanges.push(ExchangeSpec::durable_fanout(events.as_str()));
        exchanges.push(ExchangeSpec::durable_fanout(logs.as_str()));
    }
    for exchange in &exchanges {
        declare_exchange(channel, exchange)
            .await
            .with_context(|| format!("declaring the exchange {}", exchange.name))?;
    }
    Ok(())
}

async fn publish_tick(
    channel: &Channel,
    settings: &DemoSettings,
    tick: u64,
    now: jiff::Timestamp,
    counts: &mut DemoCounts,
) -> anyhow::Result<()> {
    let mut messages: Vec<(&str, &str, Vec<u8>)> = Vec::new();
    for deployment in DEMO_DEPLOYMENTS {
        for host in 0..settings.hosts {
            for path in PATHS {
                let body = metric_body(deployment, host, path, tick, now.as_second());
                messages.push((settings.exchange.as_str(), deployment, body));
            }
        }
    }
    let metrics = messages.len() as u64;
    let events = settings
        .events
        .as_ref()
        .filter(|_| tick.is_multiple_of(EVENTS_EVERY));
    if let Some((events, logs)) = events {
        messages.push((events.as_str(), "", event_body(tick, now)));
        messages.push((logs.as_str(), "", log_body(tick, now)));
    }
    publish_confirmed(
        channel,
        messages
            .iter()
            .map(|(exchange, key, body)| (*exchange, *key, body.as_slice())),
    )
    .await?;
    counts.metrics += metrics;
    if events.is_some() {
        counts.events += 1;
        counts.logs += 1;
    }
    Ok(())
}

/// A Diamond body for one host's collector at `tick`, as the agents publish it.
pub fn metric_body(deployment: &str, host: usize, path: &str, tick: u64, time: i64) -> Vec<u8> {
    agent_body(deployment, host, path, demo_value(path, host, tick), time)
}

/// A value that looks like the collector's: a slow wave per host around a level of its kind,
/// so that a graph of it moves and hosts differ.
pub fn demo_value(path: &str, host: usize, tick: u64) -> f64 {
    let phase = (tick as f64 / 60.0 + host as f64 / 3.0) * TAU;
    let wave = phase.sin();
    let level = |base: f64, swing: f64| (base + swing * wave).max(0.0);
    match path.split('.').next().unwrap_or_default() {
        "cpu" if path.ends_with("idle") => level(70.0, 15.0),
        "cpu" => level(12.0, 8.0),
        "memory" => level(2.0e9, 3.0e8),
        "loadavg" => level(0.8, 0.5),
        "diskspace" => level(4.0e10, 1.0e8),
        "network" => level(1.2e5, 8.0e4),
        _ => level(1.0, 0.5),
    }
}

/// A 4.x task event, its time as ISO 8601 with `Z`.
pub fn event_body(tick: u64, now: jiff::Timestamp) -> Vec<u8> {
    json!({
        "type": "cloudify_event",
        "event_type": "task_succeeded",
        "message_code": null,
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "context": context(tick),
        "message": {"text": format!("Task succeeded 'script_runner.tasks.run' ({tick})"), "arguments": null},
    })
    .to_string()
    .into_bytes()
}

/// An operation log, its time as the 3.x text with `+0000`.
pub fn log_body(tick: u64, now: jiff::Timestamp) -> Vec<u8> {
    json!({
        "type": "cloudify_log",
        "logger": "ctx.demo",
        "level": "info",
        "message_code": null,
        "timestamp": now.strftime("%Y-%m-%d %H:%M:%S%.3f+0000").to_string(),
        "context": context(tick),
        "message": {"text": format!("Starting nodejs on port {}", 8000 + tick % 1000)},
    })
    .to_string()
    .into_bytes()
}

fn context(tick: u64) -> serde_json::Value {
    json!({
        "blueprint_id": "nodecellar",
        "deployment_id": DEMO_DEPLOYMENTS[0],
        "execution_id": format!("demo-{}", tick / 100),
        "workflow_id": "install",
        "task_id": format!("task-{tick}"),
        "task_name": "script_runner.tasks.run",
        "operation": "cloudify.interfaces.lifecycle.start",
        "plugin": "script",
        "node_id": "nodejs_host_00000",
        "node_name": "nodejs_host",
        "task_current_retries": 0,
        "task_total_retries": -1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stay_in_their_collectors_ranges_and_move() {
        for host in 0..4 {
            let idle: Vec<f64> = (0..60)
                .map(|tick| demo_value("cpu.total.idle", host, tick))
                .collect();
            assert!(
                idle.iter().all(|value| (55.0..=85.0).contains(value)),
                "{idle:?}"
            );
            let low = idle.iter().copied().fold(f64::MAX, f64::min);
            let high = idle.iter().copied().fold(f64::MIN, f64::max);
            assert!(high - low > 10.0, "a flat line: {low}..{high}");
            for path in PATHS {
                assert!(demo_value(path, host, 7) >= 0.0, "{path}");
            }
        }
    }
}
