//! `sluice-load`: publishes manager-shaped Diamond traffic to RabbitMQ with publisher confirms,
//! then times how long sluice takes to land it in InfluxDB and dead-letter the bad share.
//!
//! This is the pre-load scenario; the open-loop mode, sweeps and plots are still to come (see
//! the benchmark-harness issue).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::stream::{FuturesUnordered, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// Publishes awaiting their confirm at once.
const MAX_UNCONFIRMED: usize = 1000;

#[derive(Parser)]
#[command(
    name = "sluice-load",
    about = "Publish Diamond metrics and time sluice's drain"
)]
struct Args {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    #[arg(long, default_value = "cloudify-monitoring")]
    exchange: String,
    /// Messages to publish.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// Every Nth message is malformed (0: none).
    #[arg(long, default_value_t = 100)]
    bad_every: usize,
    /// After publishing, wait until this InfluxDB database holds every good point.
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    influx_url: String,
    #[arg(long, default_value = "cloudify")]
    database: String,
    /// The dead-letter queue to count the bad messages in.
    #[arg(long, default_value = "sluice.dead-letter")]
    dead_letter_queue: String,
    /// Publish and exit without waiting: pre-load a queue while sluice is stopped.
    #[arg(long, conflicts_with = "drain_only")]
    publish_only: bool,
    /// Publish nothing: time how long sluice takes to drain what an earlier
    /// `--publish-only` run (with the same --count and --bad-every) left queued.
    #[arg(long)]
    drain_only: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let connection = Connection::connect(&args.amqp_url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let dead_before = queue_depth(&channel, &args.dead_letter_queue)
        .await
        .unwrap_or(0);

    let bad = args.count.checked_div(args.bad_every).unwrap_or(0);
    let good = args.count - bad;
    // Live runs are timed from the first publish; --drain-only runs from now.
    let started = Instant::now();
    if !args.drain_only {
        publish(&args, &channel).await?;
        if args.publish_only {
            return Ok(());
        }
    }

    let client = reqwest::Client::new();
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let (mut landed, mut dead) = (0u64, 0u32);
    while Instant::now() < deadline {
        landed = influx_points(&client, &args).await.unwrap_or(landed);
        dead = queue_depth(&channel, &args.dead_letter_queue)
            .await
            .unwrap_or(dead_before)
            .saturating_sub(dead_before);
        if landed >= good as u64 && dead as usize >= bad {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "drained in {:.2}s: {landed} points in InfluxDB, {dead} dead-lettered ({:.0} msg/s end to end)",
        elapsed.as_secs_f64(),
        args.count as f64 / elapsed.as_secs_f64()
    );
    if landed < good as u64 || (dead as usize) < bad {
        bail!("timed out: expected {good} points and {bad} dead letters");
    }
    Ok(())
}

/// Publishes `--count` bodies (every `--bad-every`th malformed), with confirms pipelined.
async fn publish(args: &Args, channel: &lapin::Channel) -> anyhow::Result<()> {
    // Distinct timestamps per message so every good one is its own InfluxDB point.
    let bodies = sluice_benches::diamond_bodies(args.count);
    let mut bad = 0usize;
    let started = Instant::now();
    let mut unconfirmed = FuturesUnordered::new();
    for (index, body) in bodies.iter().enumerate() {
        let body: &[u8] = if args.bad_every > 0 && index % args.bad_every == args.bad_every - 1 {
            bad += 1;
            b"{\"metric\": not json"
        } else {
            body
        };
        let routing_key = if index % 2 == 0 {
            "nodecellar"
        } else {
            "shop.prod.eu"
        };
        let confirm = channel
            .basic_publish(
                args.exchange.as_str().into(),
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
    let published_in = started.elapsed();
    println!(
        "published {} messages ({} good, {bad} bad) in {:.2}s ({:.0} msg/s)",
        args.count,
        args.count - bad,
        published_in.as_secs_f64(),
        args.count as f64 / published_in.as_secs_f64()
    );

    Ok(())
}

fn ensure_acked(confirmation: lapin::Result<lapin::Confirmation>) -> anyhow::Result<()> {
    if !confirmation?.is_ack() {
        bail!("the broker refused a publish");
    }
    Ok(())
}

async fn queue_depth(channel: &lapin::Channel, queue: &str) -> Option<u32> {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .ok()
        .map(|declared| declared.message_count())
}

/// Points across every measurement of the database.
async fn influx_points(client: &reqwest::Client, args: &Args) -> anyhow::Result<u64> {
    let response: serde_json::Value = client
        .get(format!("{}/query", args.influx_url))
        .query(&[
            ("db", args.database.as_str()),
            ("q", "SELECT count(\"value\") FROM /.*/"),
        ])
        .send()
        .await?
        .json()
        .await?;
    let series = response["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(series
        .iter()
        .filter_map(|serie| serie["values"][0][1].as_u64())
        .sum())
}
