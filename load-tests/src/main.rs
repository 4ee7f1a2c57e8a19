//! `sluice-load`: publishes manager-shaped traffic to RabbitMQ with publisher confirms, then
//! times how long sluice takes to write it and dead-letter the bad share.
//!
//! - `--stream metrics` (default): Diamond metrics to `cloudify-monitoring`, counted in InfluxDB.
//! - `--stream events`: Cloudify events and logs to the 4.x fanout exchanges, counted in the
//!   protocol-faithful fake Elasticsearch this tool serves itself on `--fake-elasticsearch`
//!   (sluice's default `127.0.0.1:9200`), since Elasticsearch cannot be installed here.
//!
//! A drain rate is only comparable across machines and sessions as a ratio to what the broker
//! alone delivers, so pre-loaded runs can carry a null-consumer baseline measured in the same run:
//!
//! - `--publish-only --baseline-queue Q` binds the queue `Q` beside sluice's for the pre-load, so
//!   that both get the same messages from the same publishes.
//! - `--drain-only --baseline-queue Q --sluice-pid PID` times sluice's drain with the CPU and peak
//!   RSS of its process, then drains `Q` with the null consumer (`sluice_load::baseline`) and
//!   prints both and their ratios (`--json FILE` writes them too). `--broker-pid` adds RabbitMQ's
//!   CPU over each drain, which shows when a slow drain was the broker's doing.
//! - `--null-consumer --baseline-queue Q` runs the null consumer alone.
//!
//! Two subcommands start their own sluice (`--sluice-bin`) for each measurement, with a unique
//! queue and database, writing to InfluxDB through a latency proxy in this process:
//!
//! - `open-loop --rate R --duration D`: a fixed rate, latency from each message's intended send
//!   time to its write (no coordinated omission), and sluice's counters scraped each second.
//! - `sweep --scenario FILE`: one setting over a list of values; a table, JSON and an SVG plot.
//! - `push-compare --scenario FILE`: a scenario's `[push]`, the same line protocol written to
//!   InfluxDB's `/write` directly and through a sluice with an `influxdb_write` source (its
//!   sink the real InfluxDB), open loop for the intake latency and closed loop for the drain
//!   throughput through the broker, with the ratios sluice/direct
//!   (`load-tests/scenarios/push-influx.toml`, BENCHMARKS.md "Push inputs").
//! - `chaos --scenario FILE [--seed N] [--rounds N]`: a confirmed live load of individually
//!   identifiable messages, one fault per round (`kill9`, `close_connection`) at a seeded random
//!   moment, and the count of what was lost, duplicated, dead-lettered or left queued, with the
//!   recovery time (`load-tests/scenarios/chaos-faults.toml`, RELIABILITY.md).
//!
//! `push` is the push inputs' load generator on its own, against any target:
//!
//! ```sh
//! # open loop: 50 requests/s of 100 lines for 30 s, latency from each intended send time
//! sluice-load push --url 'http://127.0.0.1:8186/write?db=load&precision=s' --rate 50 --duration 30s
//! # closed loop: 4 senders, 1,000 requests, as fast as the target answers
//! sluice-load push --url 'http://127.0.0.1:8086/write?db=load&precision=s' --concurrency 4 --requests 1000
//! # Graphite plaintext over TCP (no answers: a batch counts once the socket took it)
//! sluice-load push --graphite 127.0.0.1:2003 --rate 100 --duration 10s --batch 50
//! ```
//!
//! See `commands.rs` and the `sluice_load` library's modules.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

mod commands;
use sluice_amqp::topology::{ExchangeSpec, declare_exchange};
use sluice_load::baseline::{self, NullConsumerReport, NullConsumerSettings};
use sluice_load::broker;
use sluice_load::open_loop::BAD_BODY;
use sluice_load::procfs::{ConsumerSample, Neighbours, Process};
use sluice_load::publish::publish_confirmed;
use sluice_load::report::{Comparison, DrainFigures};
use sluice_load::scrape;
use sluice_testing::elasticsearch::FakeElasticsearch;

/// The deployments the metric bodies belong to (`sluice_benches::diamond_bodies`).
const DEPLOYMENTS: [&str; 2] = ["nodecellar", "shop.prod.eu"];
/// The 4.x manager's event and log exchanges.
const EVENTS_EXCHANGES: [&str; 2] = ["cloudify-events", "cloudify-logs"];

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stream {
    Metrics,
    Events,
}

#[derive(Parser)]
#[command(
    name = "sluice-load",
    about = "Publish manager traffic and time sluice's drain",
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// Without a subcommand: publish (live or pre-load) and time a running sluice's drain.
    #[command(subcommand)]
    command: Option<commands::Command>,
    #[arg(long, value_enum, default_value = "metrics")]
    stream: Stream,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// metrics: the exchange the Diamond agents publish to.
    #[arg(long, default_value = "cloudify-monitoring")]
    exchange: String,
    /// Messages to publish.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// Every Nth message is malformed (0: none).
    #[arg(long, default_value_t = 100)]
    bad_every: usize,
    /// metrics: wait until this InfluxDB database holds every good point.
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    influx_url: String,
    #[arg(long, default_value = "cloudify")]
    database: String,
    /// events: where to serve the fake Elasticsearch that sluice writes to.
    #[arg(long, default_value = "127.0.0.1:9200")]
    fake_elasticsearch: SocketAddr,
    /// The dead-letter queue to count the bad messages in.
    #[arg(long, default_value = "sluice.dead-letter")]
    dead_letter_queue: String,
    /// Publish and exit without waiting: pre-load a queue while sluice is stopped (metrics).
    #[arg(long, conflicts_with = "drain_only")]
    publish_only: bool,
    /// Publish nothing: time how long sluice takes to drain what an earlier
    /// `--publish-only` run (with the same --count and --bad-every) left queued (metrics).
    #[arg(long)]
    drain_only: bool,
    /// metrics: first start this groups file's policies for both deployments, with the
    /// manager's `manager-riemann` control messages, as a manager does when it creates them
    /// (e.g. `load-tests/scenarios/groups-20-policies.json`).
    #[arg(long)]
    groups: Option<PathBuf>,
    /// Where `--groups` writes each deployment's `config_path` (`<dir>/<deployment>/groups`).
    #[arg(long, default_value = "/tmp/sluice-load-policies")]
    policies_dir: PathBuf,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// The null consumer's queue: `--publish-only` pre-loads it from the same publishes, and
    /// `--drain-only` drains it with the null consumer after sluice's drain (metrics).
    #[arg(long)]
    baseline_queue: Option<String>,
    /// Only drain `--baseline-queue` with the null consumer, and report its rate and CPU.
    #[arg(long, requires = "baseline_queue", conflicts_with_all = ["publish_only", "drain_only"])]
    null_consumer: bool,
    /// The null consumer's prefetch (sluice's default `amqp.prefetch`).
    #[arg(long, default_value_t = baseline::SLUICE_PREFETCH)]
    prefetch: u16,
    /// The null consumer acks cumulatively once per this many deliveries (at most the prefetch).
    #[arg(long, default_value_t = baseline::DEFAULT_ACK_EVERY)]
    ack_every: u32,
    /// --drain-only: the running sluice's pid, to report its CPU and peak RSS over the drain.
    #[arg(long)]
    sluice_pid: Option<u32>,
    /// RabbitMQ's pid, to report the broker's CPU over each drain: when the null consumer is
    /// slow, it tells a busy broker from a busy consumer. Default: the oldest `beam.smp`.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// InfluxDB's pid, to report its CPU over sluice's drain. Default: the oldest `influxd`.
    #[arg(long)]
    influx_pid: Option<u32>,
    /// metrics: the running sluice's `/metrics`. The drain is timed to its `sluice_acked_total`
    /// reaching --count, and InfluxDB is counted once after: polling a `count()` over the whole
    /// database every 100 ms would cost InfluxDB more CPU than the writes do by the end of a
    /// long drain, and take it from the broker. Empty: poll InfluxDB anyway (a sluice without
    /// an admin endpoint).
    #[arg(long, default_value = "http://127.0.0.1:9598/metrics")]
    sluice_metrics_url: String,
    /// Also write the drain figures to this file as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if let Some(command) = args.command.take() {
        return commands::run(command).await;
    }
    if args.stream == Stream::Events
        && (args.publish_only || args.drain_only || args.baseline_queue.is_some())
    {
        bail!(
            "--publish-only, --drain-only and --baseline-queue are for --stream metrics: the fake Elasticsearch lives in this process"
        );
    }
    if args.null_consumer {
        let report = run_null_consumer(&args).await?;
        let json = serde_json::json!({
            "null_consumer": report.figures.to_json(),
            "null_consumer_run": null_consumer_run_json(&args, &report),
        });
        return write_json(&args, json);
    }
    let (_connection, channel) = broker::confirming_channel(&args.amqp_url).await?;
    let dead_before = broker::queue_depth(&channel, &args.dead_letter_queue)
        .await
        .unwrap_or(0);

    let bad = args.count.checked_div(args.bad_every).unwrap_or(0);
    let good = args.count - bad;
    let fake_elasticsearch = match args.stream {
        Stream::Events => {
            // Declared as the 4.x manager (and sluice) declare them, so that publishes are
            // routed even before sluice has declared its queues.
            for exchange in EVENTS_EXCHANGES {
                declare_exchange(&channel, &ExchangeSpec::durable_fanout(exchange))
                    .await
                    .with_context(|| format!("declaring the exchange {exchange}"))?;
            }
            Some(FakeElasticsearch::start_on(args.fake_elasticsearch).await)
        }
        Stream::Metrics => None,
    };

    // A sluice that is already running has acked what came before; one started for
    // --drain-only counts from zero, and may not be listening yet.
    let acked_before = if args.drain_only || args.sluice_metrics_url.is_empty() {
        0
    } else {
        let client = reqwest::Client::new();
        scrape::acked(&client, &args.sluice_metrics_url)
            .await
            .unwrap_or(0)
    };
    // Live runs are timed from the first publish; --drain-only runs from now.
    let started = Instant::now();
    if !args.drain_only {
        if let Some(groups) = &args.groups {
            start_policies(&args, &channel, groups).await?;
        }
        match (&args.baseline_queue, args.publish_only) {
            (Some(queue), true) => {
                baseline::preload_beside(&channel, &args.exchange, queue, || {
                    publish(&args, &channel)
                })
                .await?;
                println!("the baseline queue {queue} got the same messages");
            }
            _ => publish(&args, &channel).await?,
        }
        if args.publish_only {
            return Ok(());
        }
    }
    let sluice_before = args.sluice_pid.map(sample_sluice).transpose()?;
    let neighbours = neighbours(&args);
    let neighbours_before = neighbours.sample();

    let client = reqwest::Client::new();
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let watch_acks = fake_elasticsearch.is_none() && !args.sluice_metrics_url.is_empty();
    if watch_acks {
        scrape::wait_for_acks(
            &client,
            &args.sluice_metrics_url,
            acked_before + args.count as u64,
            deadline,
        )
        .await?;
    }
    let drained_at = Instant::now();
    let sluice_after = args.sluice_pid.map(sample_sluice).transpose()?;
    let neighbours_after = neighbours.sample();
    let (mut landed, mut dead) = (0u64, 0u32);
    while Instant::now() < deadline {
        landed = match &fake_elasticsearch {
            Some(es) => es.documents("*").len() as u64,
            None => influx_points(&client, &args).await.unwrap_or(landed),
        };
        dead = broker::queue_depth(&channel, &args.dead_letter_queue)
            .await
            .unwrap_or(dead_before)
            .saturating_sub(dead_before);
        if landed >= good as u64 && dead as usize >= bad {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Watching the acks, the drain ended at the last ack; otherwise when the store had it all.
    let elapsed = if watch_acks {
        drained_at - started
    } else {
        started.elapsed()
    };
    let (sluice_after, neighbours_after) = if watch_acks {
        (sluice_after, neighbours_after)
    } else {
        (
            args.sluice_pid.map(sample_sluice).transpose()?,
            neighbours.sample(),
        )
    };
    let neighbours_used = neighbours_before.until(&neighbours_after);
    let store = match args.stream {
        Stream::Metrics => "points in InfluxDB",
        Stream::Events => "documents in Elasticsearch",
    };
    println!(
        "drained in {:.2}s: {landed} {store}, {dead} dead-lettered ({:.0} msg/s end to end)",
        elapsed.as_secs_f64(),
        args.count as f64 / elapsed.as_secs_f64()
    );
    if landed < good as u64 || (dead as usize) < bad {
        bail!("timed out: expected {good} stored and {bad} dead letters");
    }
    let sluice_used = sluice_before
        .zip(sluice_after)
        .map(|(before, after)| before.until(&after));
    let sluice = DrainFigures {
        broker_cpu: neighbours_used.broker_cpu,
        store_cpu: neighbours_used.store_cpu,
        machine_busy: neighbours_used.machine_busy,
        ..DrainFigures::consumed(args.count as u64, elapsed, sluice_used)
    };
    if let (Some(before), Some(pid)) = (sluice_before, args.sluice_pid) {
        println!(
            "sluice (pid {pid}): {} (it had used {:.2}s of cpu before the drain was timed)",
            sluice.summary(),
            before.process.cpu.as_secs_f64()
        );
    }
    if args.baseline_queue.is_none() {
        return write_json(&args, serde_json::json!({ "sluice": sluice.to_json() }));
    }
    // After sluice's drain, not beside it: both would compete for the same two cores. And not
    // at once: RabbitMQ keeps working for a few seconds after 100,000 acks (the measured broker
    // CPU per message doubled for a null consumer started at once), which is not the baseline.
    if let Some(pid) = neighbours.broker {
        wait_for_quiet_broker(pid).await?;
    }
    let null_consumer = run_null_consumer(&args).await?;
    let comparison = Comparison {
        sluice,
        null_consumer: null_consumer.figures,
    };
    println!("{}", comparison.summary());
    let mut json = comparison.to_json();
    json["null_consumer_run"] = null_consumer_run_json(&args, &null_consumer);
    write_json(&args, json)
}

/// Reads the sluice process's CPU, peak RSS and context switches.
fn sample_sluice(pid: u32) -> anyhow::Result<ConsumerSample> {
    ConsumerSample::now(Process::Pid(pid))
        .with_context(|| format!("sampling sluice (--sluice-pid {pid})"))
}

/// The broker and InfluxDB whose CPU each drain reports: as given, or found by name.
fn neighbours(args: &Args) -> Neighbours {
    let found = Neighbours::find();
    Neighbours {
        broker: args.broker_pid.or(found.broker),
        store: args.influx_pid.or(found.store),
    }
}

/// Waits for the broker to go quiet, and says how long that took.
async fn wait_for_quiet_broker(pid: u32) -> anyhow::Result<()> {
    let (waited, quiet) = broker::wait_for_quiet_broker(pid).await?;
    println!(
        "waited {:.1}s for the broker to go quiet{}",
        waited.as_secs_f64(),
        if quiet { "" } else { " (it did not)" }
    );
    Ok(())
}

/// Drains `--baseline-queue` with the null consumer and prints its figures.
async fn run_null_consumer(args: &Args) -> anyhow::Result<NullConsumerReport> {
    let Some(queue) = &args.baseline_queue else {
        bail!("the null consumer needs --baseline-queue");
    };
    let settings = NullConsumerSettings {
        amqp_url: args.amqp_url.clone(),
        queue: queue.clone(),
        count: args.count as u64,
        prefetch: args.prefetch,
        ack_every: args.ack_every,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    let neighbours = neighbours(args);
    let before = neighbours.sample();
    let mut report = baseline::drain(&settings).await?;
    let used = before.until(&neighbours.sample());
    // The null consumer has no store: InfluxDB's CPU meanwhile is not part of its path.
    report.figures.broker_cpu = used.broker_cpu;
    report.figures.machine_busy = used.machine_busy;
    println!(
        "null consumer ({queue}, prefetch {}, ack every {}): {}, {} ack frames, {} left in the queue",
        args.prefetch,
        args.ack_every,
        report.figures.summary(),
        report.ack_frames,
        report.left_in_queue
    );
    Ok(report)
}

/// How the null consumer ran, beside its figures.
fn null_consumer_run_json(args: &Args, report: &NullConsumerReport) -> serde_json::Value {
    serde_json::json!({
        "queue": args.baseline_queue,
        "prefetch": args.prefetch,
        "ack_every": args.ack_every,
        "ack_frames": report.ack_frames,
        "left_in_queue": report.left_in_queue,
    })
}

fn write_json(args: &Args, json: serde_json::Value) -> anyhow::Result<()> {
    let Some(path) = &args.json else {
        return Ok(());
    };
    let text = serde_json::to_string_pretty(&json)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

fn is_bad(args: &Args, index: usize) -> bool {
    args.bad_every > 0 && index % args.bad_every == args.bad_every - 1
}

/// Publishes `--count` bodies (every `--bad-every`th malformed), with confirms pipelined.
async fn publish(args: &Args, channel: &lapin::Channel) -> anyhow::Result<()> {
    // Distinct bodies (and timestamps) so that every good one is stored on its own.
    let bodies = match args.stream {
        Stream::Metrics => sluice_benches::diamond_bodies(args.count),
        Stream::Events => sluice_benches::cloudify_event_bodies(args.count),
    };
    let bad = (0..args.count).filter(|&index| is_bad(args, index)).count();
    let started = Instant::now();
    let messages = bodies.iter().enumerate().map(|(index, body)| {
        let body: &[u8] = if is_bad(args, index) { BAD_BODY } else { body };
        let (exchange, routing_key) = match args.stream {
            Stream::Metrics if index % 2 == 0 => (args.exchange.as_str(), "nodecellar"),
            Stream::Metrics => (args.exchange.as_str(), "shop.prod.eu"),
            // The bodies alternate event, log: each goes to its own exchange.
            Stream::Events => (EVENTS_EXCHANGES[index % 2], ""),
        };
        (exchange, routing_key, body)
    });
    publish_confirmed(channel, messages).await?;
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

/// Writes each deployment's `groups` file and publishes its `start` control message, ahead of
/// the metrics in the same queue.
async fn start_policies(
    args: &Args,
    channel: &lapin::Channel,
    groups: &Path,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(groups).with_context(|| format!("reading {}", groups.display()))?;
    for deployment in DEPLOYMENTS {
        let config_path = args.policies_dir.join(deployment);
        std::fs::create_dir_all(&config_path)
            .with_context(|| format!("creating {}", config_path.display()))?;
        std::fs::write(config_path.join("groups"), &text)?;
        let _ = std::fs::remove_file(config_path.join("ok"));
        let control = serde_json::json!({
            "service": "cloudify.configuration", "state": "start",
            "config_path": config_path, "deployment_id": deployment, "time": 1_466_000_000,
        });
        let body = control.to_string();
        let message = (args.exchange.as_str(), "manager-riemann", body.as_bytes());
        publish_confirmed(channel, [message]).await?;
    }
    println!(
        "started the policies of {} for {} deployments",
        groups.display(),
        DEPLOYMENTS.len()
    );
    Ok(())
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
