//! One measurement of a spawned sluice ([`measure`]), and a sweep of one setting over a list of
//! values ([`run_sweep`]): a table, a JSON file, an SVG plot, and the best value.
//!
//! Each measurement is isolated: it has its own exchange, metrics queue, dead-letter exchange and
//! queue, baseline queue and InfluxDB database (all named `sluice-load.<run>...`), which are
//! deleted afterwards. sluice writes to InfluxDB through this process's [`LatencyProxy`], which
//! tells when each point was written.
//!
//! - **Drain** (`[drain]`): N Diamond bodies are pre-loaded into the metrics queue (declared and
//!   bound here exactly as sluice declares it) and into a baseline queue, with sluice stopped.
//!   sluice is then started, and its drain is timed from its spawn to the proxy seeing the last
//!   good point written (so it includes sluice's start, about 0.1 s). Then the null consumer
//!   drains the baseline queue with the same prefetch, acking once per batch size.
//! - **Open loop** (`[open_loop]`): messages at a fixed rate into the same (running, or newly
//!   started) sluice; latency from each message's intended send time to its write.
//!
//! sluice's Prometheus counters are scraped once a second during each phase.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use serde_json::json;

use crate::baseline::{self, NullConsumerSettings};
use crate::broker;
use crate::latency_proxy::LatencyProxy;
use crate::open_loop::{self, BAD_BODY, OpenLoopReport, OpenLoopSettings};
use crate::plot::{PlotPoint, plot_sweep};
use crate::procfs::{ConsumerSample, Neighbours, Process};
use crate::publish::publish_confirmed;
use crate::report::{Comparison, DrainFigures};
use crate::scenario::{Scenario, env_value, setting_key};
use crate::schedule::EpochClock;
use crate::scrape::{self, Scraper, StageDeltas};
use crate::sluice_process::{SluiceProcess, free_loopback_address};

/// How often sluice's counters are scraped during a phase.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// How often to look again for the dead letters and acks that follow the last write.
const SETTLE_POLL: Duration = Duration::from_millis(50);
/// The latency target: the best setting is the fastest whose p99 stays under it.
pub const P99_TARGET_MS: f64 = 50.0;

/// Where the services and the sluice binary are.
#[derive(Debug, Clone)]
pub struct Environment {
    pub sluice_bin: PathBuf,
    pub amqp_url: String,
    pub influx_url: String,
    /// RabbitMQ's pid: when known, each drain waits for the broker to go quiet first.
    pub broker_pid: Option<u32>,
    /// Where sluice's logs and rule state go.
    pub work_dir: PathBuf,
}

/// A progress bar, or plain lines on stderr when stderr is not a terminal.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(steps: u64) -> Self {
        let bar = ProgressBar::new(steps);
        let style = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(250));
        Self { bar }
    }

    /// What is happening now.
    pub fn phase(&self, text: &str) {
        self.bar.set_message(text.to_owned());
        if self.bar.is_hidden() {
            eprintln!("{text}");
        }
    }

    /// A line that stays, above the bar.
    pub fn log(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    fn step_done(&self) {
        self.bar.inc(1);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The broker and InfluxDB names of one measurement.
#[derive(Debug, Clone)]
pub struct RunNames {
    pub exchange: String,
    pub queue: String,
    pub baseline_queue: String,
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    pub database: String,
    pub tag: String,
}

impl RunNames {
    pub fn new() -> Self {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let tag = format!(
            "{}_{}_{seconds}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            exchange: format!("sluice-load.{tag}.monitoring"),
            queue: format!("sluice-load.{tag}.metrics"),
            baseline_queue: format!("sluice-load.{tag}.baseline"),
            dead_letter_exchange: format!("sluice-load.{tag}.dead-letter"),
            dead_letter_queue: format!("sluice-load.{tag}.dead-letter"),
            database: format!("sluice_load_{tag}"),
            tag,
        }
    }
}

impl Default for RunNames {
    fn default() -> Self {
        Self::new()
    }
}

/// sluice's pre-load drain beside the null consumer's.
#[derive(Debug, Clone)]
pub struct DrainResult {
    pub comparison: Comparison,
    /// Whether the null consumer drained its queue before sluice drained its own. The rounds
    /// alternate: the queue that waits longer is the likelier of the two to be drained in the
    /// broker's expensive garbage-collection state (BENCHMARKS.md).
    pub null_consumer_first: bool,
    pub good: u64,
    pub written: u64,
    pub dead_lettered: u32,
    pub stages: StageDeltas,
}

impl DrainResult {
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = self.comparison.to_json();
        json["null_consumer_first"] = json!(self.null_consumer_first);
        json["good"] = json!(self.good);
        json["written"] = json!(self.written);
        json["dead_lettered"] = json!(self.dead_lettered);
        json["sluice_counters"] = self.stages.to_json();
        json
    }
}

/// An open-loop run with what sluice's counters said about it.
#[derive(Debug, Clone)]
pub struct OpenLoopResult {
    pub report: OpenLoopReport,
    pub dead_lettered: u32,
    pub stages: StageDeltas,
}

/// Everything measured at one value of the swept setting.
#[derive(Debug, Clone)]
pub struct PointResult {
    /// The swept value, as written into sluice's environment (`None` outside a sweep).
    pub value: Option<String>,
    /// Which round of the sweep measured it, from 1.
    pub round: u32,
    pub drain: Option<DrainResult>,
    pub open_loop: Option<OpenLoopResult>,
}

impl PointResult {
    /// What ranks the rounds of one value: the drain rate, or the p99 without a drain.
    fn rank(&self) -> Option<f64> {
        self.drain
            .as_ref()
            .and_then(|drain| drain.comparison.sluice.messages_per_second())
            .or(self
                .open_loop
                .as_ref()
                .map(|open| open.report.latency.p99_ms))
    }

    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(drain) = &self.drain {
            lines.push(format!(
                "drain: sluice {}; {} of {} good points written, {} dead-lettered",
                drain.comparison.sluice.summary(),
                drain.written,
                drain.good,
                drain.dead_lettered
            ));
            lines.push(format!(
                "null consumer: {}",
                drain.comparison.null_consumer.summary()
            ));
            lines.push(drain.comparison.summary());
            lines.push("sluice's counters over the drain:".to_owned());
            lines.extend(drain.stages.lines());
        }
        if let Some(open_loop) = &self.open_loop {
            lines.extend(open_loop.report.lines());
            lines.push(format!("dead-lettered: {}", open_loop.dead_lettered));
            lines.push("sluice's counters over the open loop:".to_owned());
            lines.extend(open_loop.stages.lines());
        }
        lines
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "value": self.value,
            "round": self.round,
            "drain": self.drain.as_ref().map(DrainResult::to_json),
            "open_loop": self.open_loop.as_ref().map(|open_loop| {
                let mut json = open_loop.report.to_json();
                json["dead_lettered"] = json!(open_loop.dead_lettered);
                json["sluice_counters"] = open_loop.stages.to_json();
                json
            }),
        })
    }

    fn plot_point(&self) -> PlotPoint {
        PlotPoint {
            label: self.value.clone().unwrap_or_default(),
            drain_rate: self
                .drain
                .as_ref()
                .and_then(|drain| drain.comparison.sluice.messages_per_second()),
            null_consumer_rate: self
                .drain
                .as_ref()
                .and_then(|drain| drain.comparison.null_consumer.messages_per_second()),
            p99_ms: self
                .open_loop
                .as_ref()
                .map(|open_loop| open_loop.report.latency.p99_ms),
        }
    }
}

/// Runs the scenario's measurements once against a sluice spawned with the scenario's `[env]`
/// plus `setting` (the swept variable and its value), and removes what the run declared.
pub async fn measure(
    environment: &Environment,
    scenario: &Scenario,
    setting: Option<(&str, String)>,
    round: u32,
    progress: &Progress,
) -> anyhow::Result<PointResult> {
    let names = RunNames::new();
    check_influx(&environment.influx_url).await?;
    let connection = Connection::connect(&environment.amqp_url, ConnectionProperties::default())
        .await
        .with_context(|| {
            format!(
                "connecting to RabbitMQ at {}: is it running (deploy/services.sh)?",
                redact(&environment.amqp_url)
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
    let clock = EpochClock::new()?;
    let proxy = LatencyProxy::start_on_free_port(&environment.influx_url, clock).await?;
    let state_dir = environment.work_dir.join(format!("rules-{}", names.tag));
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;

    let mut env: Vec<(String, String)> = [
        ("SLUICE_AMQP__URL", environment.amqp_url.clone()),
        ("SLUICE_INFLUX__URL", proxy.url()),
        ("SLUICE_INFLUX__DATABASE", names.database.clone()),
        ("SLUICE_METRICS__EXCHANGE", names.exchange.clone()),
        ("SLUICE_METRICS__QUEUE", names.queue.clone()),
        (
            "SLUICE_DEAD_LETTER__EXCHANGE",
            names.dead_letter_exchange.clone(),
        ),
        ("SLUICE_DEAD_LETTER__QUEUE", names.dead_letter_queue.clone()),
        // The events path would wait for an Elasticsearch that is not part of this measurement.
        ("SLUICE_EVENTS__ENABLED", "false".to_owned()),
        ("SLUICE_RULES__STATE_DIR", state_dir.display().to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    env.extend(scenario.env_vars());
    let value = setting.as_ref().map(|(_, value)| value.clone());
    if let Some((key, value)) = setting {
        env.push((key.to_owned(), value));
    }

    let run = Run {
        environment,
        scenario,
        names: &names,
        channel: &channel,
        proxy: &proxy,
        clock,
        env: &env,
        progress,
        round,
    };
    let measured = run.measure_all().await;
    run.clean_up().await;
    let _ = std::fs::remove_dir_all(&state_dir);
    let _ = connection.close(200, "measured".into()).await;
    let (drain, open_loop) = measured?;
    Ok(PointResult {
        value,
        round,
        drain,
        open_loop,
    })
}

/// One measurement's context.
struct Run<'a> {
    environment: &'a Environment,
    scenario: &'a Scenario,
    names: &'a RunNames,
    channel: &'a Channel,
    proxy: &'a LatencyProxy,
    clock: EpochClock,
    env: &'a [(String, String)],
    progress: &'a Progress,
    /// Which round this is, from 1: even rounds drain the null consumer's queue first.
    round: u32,
}

impl Run<'_> {
    async fn measure_all(&self) -> anyhow::Result<(Option<DrainResult>, Option<OpenLoopResult>)> {
        let mut sluice = None;
        let mut drain_result = None;
        if self.scenario.drain.is_some() {
            let (result, running) = self.drain().await?;
            drain_result = Some(result);
            sluice = Some(running);
        }
        let mut open_loop_result = None;
        if let Some(spec) = &self.scenario.open_loop {
            let mut running = match sluice.take() {
                Some(running) => running,
                None => self.start_sluice().await?,
            };
            let result = self.open_loop(&mut running, spec).await;
            sluice = Some(running);
            open_loop_result = Some(result?);
        }
        if let Some(running) = sluice {
            self.progress.phase("stopping sluice");
            running.stop().await?;
        }
        Ok((drain_result, open_loop_result))
    }

    async fn start_sluice(&self) -> anyhow::Result<SluiceProcess> {
        let admin = free_loopback_address()?;
        let log = self
            .environment
            .work_dir
            .join(format!("sluice-{}.log", self.names.tag));
        let mut sluice = SluiceProcess::spawn(&self.environment.sluice_bin, self.env, admin, &log)?;
        sluice.wait_until_consuming(self.scenario.timeout).await?;
        Ok(sluice)
    }

    /// The value sluice will run with for `key`: the last override, or `default`.
    fn effective(&self, key: &str, default: u64) -> u64 {
        self.env
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(default)
    }

    async fn drain(&self) -> anyhow::Result<(DrainResult, SluiceProcess)> {
        let Some(spec) = &self.scenario.drain else {
            bail!("the scenario has no [drain]");
        };
        let timeout = self.scenario.timeout;
        self.progress
            .phase(&format!("pre-loading {} messages", spec.count));
        broker::declare_metrics_queue(self.channel, &self.names.exchange, &self.names.queue)
            .await?;
        let bodies = drain_bodies(spec.count, spec.bad_every);
        let bad = spec.count.checked_div(spec.bad_every).unwrap_or(0);
        let good = spec.count - bad;
        let publish = || async {
            publish_confirmed(
                self.channel,
                bodies.iter().enumerate().map(|(index, body)| {
                    let routing_key = if index % 2 == 0 {
                        "nodecellar"
                    } else {
                        "shop.prod.eu"
                    };
                    (self.names.exchange.as_str(), routing_key, body.as_slice())
                }),
            )
            .await
        };
        baseline::preload_beside(
            self.channel,
            &self.names.exchange,
            &self.names.baseline_queue,
            publish,
        )
        .await
        .context("pre-loading sluice's queue and the baseline queue")?;
        drop(bodies);
        self.wait_for_quiet_broker().await?;

        let neighbours = Neighbours::find();
        let null_consumer_first = self.round.is_multiple_of(2);
        let mut null_consumer = None;
        if null_consumer_first {
            null_consumer = Some(self.drain_null_consumer(spec.count, &neighbours).await?);
            self.wait_for_quiet_broker().await?;
        }

        self.progress
            .phase(&format!("sluice draining {} messages", spec.count));
        let neighbours_before = neighbours.sample();
        let sluice = self.start_sluice().await?;
        // A fresh process's counters start at zero, which is the first scrape's baseline.
        let scraper = Scraper::start_from_zero(&sluice.metrics_url(), SCRAPE_INTERVAL).await?;
        let written_all = self.proxy.recorder.wait_for_distinct(good, timeout).await;
        let elapsed = sluice.spawned.elapsed();
        let sample = ConsumerSample::now(Process::Pid(sluice.pid()))?;
        let neighbours_used = neighbours_before.until(&neighbours.sample());
        let written = self.proxy.recorder.distinct();
        if !written_all {
            let _ = scraper.finish().await;
            let log = sluice.log_tail();
            let _ = sluice.stop().await;
            bail!("sluice wrote {written} of {good} good points within {timeout:?}\n{log}");
        }
        let dead_lettered = self.wait_for_dead_letters(bad).await;
        self.wait_for_acks(&sluice.metrics_url(), spec.count).await;
        let stages = StageDeltas::between(&scraper.finish().await?);
        let sluice_figures = DrainFigures {
            messages: spec.count,
            elapsed,
            cpu: Some(sample.process.cpu),
            peak_rss_kib: Some(sample.process.peak_rss_kib),
            context_switches: Some(sample.context_switches),
            broker_cpu: neighbours_used.broker_cpu,
            store_cpu: neighbours_used.store_cpu,
            machine_busy: neighbours_used.machine_busy,
        };

        let null_consumer = match null_consumer {
            Some(figures) => figures,
            None => {
                self.wait_for_quiet_broker().await?;
                self.drain_null_consumer(spec.count, &neighbours).await?
            }
        };
        Ok((
            DrainResult {
                comparison: Comparison {
                    sluice: sluice_figures,
                    null_consumer,
                },
                null_consumer_first,
                good,
                written,
                dead_lettered,
                stages,
            },
            sluice,
        ))
    }

    /// Drains the baseline queue with the null consumer, with sluice's prefetch and about one
    /// ack per sluice batch.
    async fn drain_null_consumer(
        &self,
        count: u64,
        neighbours: &Neighbours,
    ) -> anyhow::Result<DrainFigures> {
        let prefetch =
            u16::try_from(self.effective("SLUICE_AMQP__PREFETCH", 5000)).unwrap_or(u16::MAX);
        let batch = self.effective("SLUICE_INFLUX__BATCH_MAX_POINTS", 1000);
        let settings = NullConsumerSettings {
            amqp_url: self.environment.amqp_url.clone(),
            queue: self.names.baseline_queue.clone(),
            count,
            prefetch,
            // As sluice acks: about once per batch, and never waiting for more than the prefetch.
            ack_every: u32::try_from(batch.min(u64::from(prefetch)))
                .unwrap_or(1)
                .max(1),
            timeout: self.scenario.timeout,
        };
        self.progress
            .phase(&format!("null consumer draining {count} messages"));
        let neighbours_before = neighbours.sample();
        let mut null_consumer = baseline::drain(&settings)
            .await
            .context("the null consumer's drain")?;
        let neighbours_used = neighbours_before.until(&neighbours.sample());
        // The null consumer has no store: InfluxDB's CPU meanwhile is not part of its path.
        null_consumer.figures.broker_cpu = neighbours_used.broker_cpu;
        null_consumer.figures.machine_busy = neighbours_used.machine_busy;
        Ok(null_consumer.figures)
    }

    async fn open_loop(
        &self,
        sluice: &mut SluiceProcess,
        spec: &crate::scenario::OpenLoopSpec,
    ) -> anyhow::Result<OpenLoopResult> {
        let rate = spec.messages_per_second()?;
        let settings = OpenLoopSettings {
            exchange: self.names.exchange.clone(),
            rate,
            count: spec.count()?,
            traffic: spec.traffic(),
            confirm_window: spec.confirm_window,
            drain_timeout: spec.drain_timeout,
        };
        self.wait_for_quiet_broker().await?;
        let dead_before = broker::queue_depth(self.channel, &self.names.dead_letter_queue)
            .await
            .unwrap_or(0);
        let scraper = Scraper::start(&sluice.metrics_url(), SCRAPE_INTERVAL).await?;
        self.progress.phase(&format!(
            "open loop: {} messages at {rate:.0} msg/s",
            settings.count
        ));
        let report =
            open_loop::run(self.channel, &settings, &self.proxy.recorder, self.clock).await;
        let bad = settings.traffic.bad_among(settings.count);
        let dead_lettered = self
            .wait_for_dead_letters(u64::from(dead_before) + bad)
            .await
            .saturating_sub(dead_before);
        let stages = StageDeltas::between(&scraper.finish().await?);
        Ok(OpenLoopResult {
            report: report?,
            dead_lettered,
            stages,
        })
    }

    async fn wait_for_quiet_broker(&self) -> anyhow::Result<()> {
        if let Some(pid) = self.environment.broker_pid {
            self.progress.phase("waiting for the broker to go quiet");
            let (waited, quiet) = broker::wait_for_quiet_broker(pid).await?;
            if !quiet {
                self.progress.log(&format!(
                    "the broker was still busy after {:.1}s; measuring anyway",
                    waited.as_secs_f64()
                ));
            }
        }
        Ok(())
    }

    /// Waits until the dead-letter queue holds `expected`; returns what it holds.
    async fn wait_for_dead_letters(&self, expected: u64) -> u32 {
        let deadline = Instant::now() + self.scenario.timeout.min(Duration::from_secs(30));
        loop {
            let depth = broker::queue_depth(self.channel, &self.names.dead_letter_queue)
                .await
                .unwrap_or(0);
            if u64::from(depth) >= expected || Instant::now() > deadline {
                return depth;
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }

    /// Waits until sluice has acked `expected` deliveries (the acks follow the last write). The
    /// counters scraped afterwards tell how far it got if it never does, so a timeout is no error.
    async fn wait_for_acks(&self, metrics_url: &str, expected: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        let _ = scrape::wait_for_acks(&client, metrics_url, expected, deadline).await;
    }

    /// Deletes the run's queues and exchanges and drops its database; failures are only noted.
    async fn clean_up(&self) {
        for queue in [
            &self.names.queue,
            &self.names.baseline_queue,
            &self.names.dead_letter_queue,
        ] {
            if let Err(error) = broker::delete_queue(self.channel, queue).await {
                self.progress.log(&format!("cleaning up: {error:#}"));
            }
        }
        for exchange in [&self.names.dead_letter_exchange, &self.names.exchange] {
            if let Err(error) = broker::delete_exchange(self.channel, exchange).await {
                self.progress.log(&format!("cleaning up: {error:#}"));
            }
        }
        let dropped = reqwest::Client::new()
            .post(format!("{}/query", self.environment.influx_url))
            .query(&[("q", format!("DROP DATABASE \"{}\"", self.names.database))])
            .send()
            .await;
        if let Err(error) = dropped {
            self.progress
                .log(&format!("cleaning up the database: {error}"));
        }
    }
}

/// Fails with what to run when InfluxDB does not answer its ping.
async fn check_influx(url: &str) -> anyhow::Result<()> {
    let ping = reqwest::Client::new()
        .get(format!("{url}/ping"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    match ping {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => bail!(
            "InfluxDB at {url} answered its ping with {}",
            response.status()
        ),
        Err(error) => bail!("InfluxDB is not reachable at {url} ({error}): run deploy/services.sh"),
    }
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

/// `count` distinct Diamond bodies (`sluice_benches::diamond_bodies`), every `bad_every`th
/// malformed.
pub fn drain_bodies(count: u64, bad_every: u64) -> Vec<Vec<u8>> {
    let mut bodies = sluice_benches::diamond_bodies(count as usize);
    if bad_every > 0 {
        for (index, body) in bodies.iter_mut().enumerate() {
            if index as u64 % bad_every == bad_every - 1 {
                *body = BAD_BODY.to_vec();
            }
        }
    }
    bodies
}

/// A whole sweep's results.
#[derive(Debug, Clone)]
pub struct SweepReport {
    pub scenario: String,
    /// The swept variable, e.g. `SLUICE_INFLUX__BATCH_MAX_POINTS`.
    pub setting: String,
    /// How many times each value was measured (`[sweep] rounds`).
    pub rounds: u32,
    /// Every measurement, round by round.
    pub points: Vec<PointResult>,
    pub commit: Option<String>,
}

/// The median round of one value, and how far the rounds of that value spread.
#[derive(Debug, Clone, Copy)]
pub struct MedianPoint<'a> {
    pub point: &'a PointResult,
    pub rounds: usize,
    /// The median, lowest and highest drain ratio over the value's rounds.
    pub ratio: Option<f64>,
    pub ratio_range: Option<(f64, f64)>,
    /// The median of the rounds' drain rates (the median round's own), and of their open-loop
    /// p99s, taken on its own: a round with a fast drain may have had a slow open loop.
    pub drain_rate: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The median of what was measured (the lower middle value for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len().checked_sub(1)? / 2).copied()
}

impl SweepReport {
    /// For each value, in the sweep's order, its median round: the broker's speed drifts from
    /// minute to minute, so one round of a value can say more about the broker than about the
    /// value. The median is a real round (the lower middle one for an even count), so its
    /// figures belong together.
    pub fn medians(&self) -> Vec<MedianPoint<'_>> {
        let mut values: Vec<&Option<String>> = Vec::new();
        for point in &self.points {
            if !values.contains(&&point.value) {
                values.push(&point.value);
            }
        }
        values
            .into_iter()
            .filter_map(|value| {
                let mut rounds: Vec<&PointResult> = self
                    .points
                    .iter()
                    .filter(|point| &point.value == value)
                    .collect();
                rounds.sort_by(|a, b| {
                    let rank = |point: &PointResult| point.rank().unwrap_or(f64::NAN);
                    rank(a).total_cmp(&rank(b))
                });
                let ratios: Vec<f64> = rounds
                    .iter()
                    .filter_map(|point| point.drain.as_ref()?.comparison.rate_ratio())
                    .collect();
                let ratio_range = ratios
                    .iter()
                    .copied()
                    .reduce(f64::min)
                    .zip(ratios.iter().copied().reduce(f64::max));
                let ratio = median(ratios);
                let p99_ms = median(
                    rounds
                        .iter()
                        .filter_map(|point| Some(point.open_loop.as_ref()?.report.latency.p99_ms))
                        .collect(),
                );
                let point = rounds.get((rounds.len().checked_sub(1)?) / 2)?;
                Some(MedianPoint {
                    point,
                    rounds: rounds.len(),
                    ratio,
                    ratio_range,
                    // The rounds are ranked by drain rate, so the median round has the median.
                    drain_rate: point
                        .drain
                        .as_ref()
                        .and_then(|drain| drain.comparison.sluice.messages_per_second()),
                    p99_ms,
                })
            })
            .collect()
    }

    /// The best value: the fastest drain among the values whose p99 (when measured) is under
    /// [`P99_TARGET_MS`] (or the fastest of all, when none is); without drains, the lowest p99.
    /// Each value is judged by the median of its rounds' drain rates and of their p99s.
    pub fn best(&self) -> Option<(&PointResult, String)> {
        let medians = self.medians();
        let (index, why) = best_of(&medians)?;
        Some((medians[index].point, why))
    }
}

/// [`SweepReport::best`] over the values' medians; returns the index of the best.
fn best_of(points: &[MedianPoint<'_>]) -> Option<(usize, String)> {
    let rate = |point: &MedianPoint<'_>| point.drain_rate;
    let p99 = |point: &MedianPoint<'_>| point.p99_ms;
    let fastest = |candidates: Vec<usize>| {
        candidates
            .into_iter()
            .filter_map(|index| Some((index, rate(&points[index])?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    };
    let all: Vec<usize> = (0..points.len()).collect();
    if points.iter().any(|point| rate(point).is_some()) {
        let within: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&index| p99(&points[index]).is_none_or(|p99| p99 <= P99_TARGET_MS))
            .collect();
        if let Some((index, rate)) = fastest(within) {
            let reason = if points.iter().any(|point| p99(point).is_some()) {
                format!("the fastest drain ({rate:.0} msgs/s) with p99 under {P99_TARGET_MS} ms")
            } else {
                format!("the fastest drain ({rate:.0} msgs/s)")
            };
            return Some((index, reason));
        }
        let (index, rate) = fastest(all)?;
        return Some((
            index,
            format!(
                "the fastest drain ({rate:.0} msgs/s); no value kept p99 under {P99_TARGET_MS} ms"
            ),
        ));
    }
    let (index, p99) = all
        .into_iter()
        .filter_map(|index| Some((index, p99(&points[index])?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    Some((index, format!("the lowest open-loop p99 ({p99:.1} ms)")))
}

impl SweepReport {
    /// The results as a Markdown table (it reads as plain text too): a row per value, from its
    /// median round; with more than one round, then a row per round.
    pub fn table(&self) -> String {
        let key = setting_key(&self.setting);
        let header = [
            format!(
                "| {key} | drain msgs/s | null consumer msgs/s | ratio | CPU-bound ratio | sluice CPU µs/msg | CPU ratio | sluice switches/msg | peak RSS MiB | open-loop msg/s | p50 ms | p99 ms | p99.9 ms | max ms | written | mean write ms |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".to_owned(),
        ];
        let mut lines = header.to_vec();
        for median in self.medians() {
            let value = median.point.value.as_deref().unwrap_or("–");
            let mut label = value.to_owned();
            if median.rounds > 1 {
                label.push_str(&format!(" (median of {}", median.rounds));
                if let (Some(ratio), Some((lowest, highest))) = (median.ratio, median.ratio_range) {
                    label.push_str(&format!(
                        "; median ratio {ratio:.2}, from {lowest:.2} to {highest:.2}"
                    ));
                }
                if let Some(p99) = median.p99_ms {
                    label.push_str(&format!("; median p99 {p99:.1} ms"));
                }
                label.push(')');
            }
            lines.push(table_row(median.point, label));
        }
        if self.rounds > 1 {
            lines.push(String::new());
            lines.push("Every round:".to_owned());
            lines.push(String::new());
            lines.extend(header);
            for point in &self.points {
                let value = point.value.as_deref().unwrap_or("–");
                let first = match &point.drain {
                    Some(drain) if drain.null_consumer_first => " (null consumer first)",
                    _ => "",
                };
                lines.push(table_row(point, format!("{value} #{}{first}", point.round)));
            }
        }
        lines.join("\n")
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "scenario": self.scenario,
            "setting": self.setting,
            "setting_key": setting_key(&self.setting),
            "commit": self.commit,
            "best": self.best().map(|(point, reason)| json!({
                "value": point.value,
                "why": reason,
            })),
            "rounds": self.rounds,
            "medians": self.medians().iter().map(|median| json!({
                "value": median.point.value,
                "median_round": median.point.round,
                "rounds": median.rounds,
                "drain_messages_per_second": median.drain_rate,
                "open_loop_p99_ms": median.p99_ms,
                "rate_ratio_median": median.ratio,
                "rate_ratio_min": median.ratio_range.map(|(lowest, _)| lowest),
                "rate_ratio_max": median.ratio_range.map(|(_, highest)| highest),
            })).collect::<Vec<_>>(),
            "points": self.points.iter().map(PointResult::to_json).collect::<Vec<_>>(),
        })
    }

    /// Writes `<stem>.json` and `<stem>.svg` into `dir`; returns their paths.
    pub fn write_files(&self, dir: &Path, stem: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json_path = dir.join(format!("{stem}.json"));
        let text = serde_json::to_string_pretty(&self.to_json())?;
        std::fs::write(&json_path, text + "\n")
            .with_context(|| format!("writing {}", json_path.display()))?;
        let svg_path = dir.join(format!("{stem}.svg"));
        let points: Vec<PlotPoint> = self
            .medians()
            .iter()
            .map(|median| median.point.plot_point())
            .collect();
        plot_sweep(
            &svg_path,
            &self.scenario,
            &setting_key(&self.setting),
            &points,
        )
        .with_context(|| format!("drawing {}", svg_path.display()))?;
        Ok((json_path, svg_path))
    }
}

/// One row of [`SweepReport::table`], with `label` in the first column.
fn table_row(point: &PointResult, label: String) -> String {
    let number = |value: Option<f64>, decimals: usize| match value {
        Some(value) => format!("{value:.decimals$}"),
        None => "–".to_owned(),
    };
    let drain = point.drain.as_ref();
    let open = point.open_loop.as_ref();
    let sluice = drain.map(|drain| drain.comparison.sluice);
    let write_mean = drain
        .map(|drain| &drain.stages)
        .or(open.map(|open| &open.stages))
        .and_then(|stages| {
            stages
                .means
                .iter()
                .find(|(key, _)| key.starts_with("sluice_sink_write_seconds"))
                .map(|(_, mean)| mean * 1000.0)
        });
    let written = match (drain, open) {
        (_, Some(open)) => format!("{}/{}", open.report.written, open.report.good),
        (Some(drain), None) => format!("{}/{}", drain.written, drain.good),
        (None, None) => "–".to_owned(),
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        label,
        number(sluice.and_then(|figures| figures.messages_per_second()), 0),
        number(
            drain.and_then(|drain| drain.comparison.null_consumer.messages_per_second()),
            0
        ),
        number(drain.and_then(|drain| drain.comparison.rate_ratio()), 2),
        number(
            drain.and_then(|drain| drain.comparison.cpu_bound_ratio()),
            2
        ),
        number(
            sluice.and_then(|figures| figures.cpu_micros_per_message()),
            1
        ),
        number(drain.and_then(|drain| drain.comparison.cpu_ratio()), 2),
        number(
            sluice.and_then(|figures| figures.context_switches_per_message()),
            2
        ),
        number(
            sluice
                .and_then(|figures| figures.peak_rss_kib)
                .map(|kib| kib as f64 / 1024.0),
            0
        ),
        number(open.map(|open| open.report.rate), 0),
        number(open.map(|open| open.report.latency.p50_ms), 1),
        number(open.map(|open| open.report.latency.p99_ms), 1),
        number(open.map(|open| open.report.latency.p999_ms), 1),
        number(open.map(|open| open.report.latency.max_ms), 1),
        written,
        number(write_mean, 1),
    )
}

/// Runs the scenario once per value of its `[sweep]`, with a progress bar.
pub async fn run_sweep(
    environment: &Environment,
    scenario: &Scenario,
) -> anyhow::Result<SweepReport> {
    let Some(sweep) = &scenario.sweep else {
        bail!(
            "the scenario {:?} has no [sweep] (setting and values)",
            scenario.name
        );
    };
    let progress = Progress::new(sweep.values.len() as u64 * u64::from(sweep.rounds));
    let key = setting_key(&sweep.setting);
    let mut points = Vec::new();
    // Round by round, every value in turn: a slow minute of the broker then falls on one
    // round of several values rather than on every round of one.
    for round in 1..=sweep.rounds {
        for value in &sweep.values {
            let value = env_value(value);
            if sweep.rounds > 1 {
                progress.log(&format!(
                    "{key} = {value} (round {round} of {})",
                    sweep.rounds
                ));
            } else {
                progress.log(&format!("{key} = {value}"));
            }
            let point = measure(
                environment,
                scenario,
                Some((&sweep.setting, value.clone())),
                round,
                &progress,
            )
            .await
            .with_context(|| format!("measuring {key} = {value} (round {round})"));
            let point = match point {
                Ok(point) => point,
                Err(error) => {
                    progress.finish();
                    return Err(error);
                }
            };
            for line in point.lines() {
                progress.log(&format!("  {line}"));
            }
            points.push(point);
            progress.step_done();
        }
    }
    progress.finish();
    Ok(SweepReport {
        scenario: scenario.name.clone(),
        setting: sweep.setting.clone(),
        rounds: sweep.rounds,
        points,
        commit: git_commit(),
    })
}

/// `git rev-parse --short HEAD` of the working directory, if it is a git tree.
pub fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::LatencySummary;
    use crate::latency_proxy::WriteStats;

    fn drain(rate: f64) -> DrainResult {
        let figures = |rate: f64| DrainFigures {
            messages: 100_000,
            elapsed: Duration::from_secs_f64(100_000.0 / rate),
            cpu: Some(Duration::from_secs(2)),
            peak_rss_kib: Some(40 * 1024),
            context_switches: None,
            broker_cpu: None,
            store_cpu: None,
            machine_busy: None,
        };
        DrainResult {
            comparison: Comparison {
                sluice: figures(rate),
                null_consumer: figures(rate * 2.0),
            },
            null_consumer_first: false,
            good: 99_000,
            written: 99_000,
            dead_lettered: 1_000,
            stages: StageDeltas::default(),
        }
    }

    fn open_loop(p99_ms: f64) -> OpenLoopResult {
        OpenLoopResult {
            report: OpenLoopReport {
                rate: 5_000.0,
                published: 1_000,
                good: 990,
                bad: 10,
                written: 990,
                latency: LatencySummary {
                    count: 990,
                    p50_ms: 3.0,
                    p99_ms,
                    p999_ms: p99_ms * 1.5,
                    max_ms: p99_ms * 2.0,
                    mean_ms: 4.0,
                },
                publish_lag: LatencySummary::default(),
                written_per_second: vec![990],
                published_in: Duration::from_millis(200),
                proxy: WriteStats::default(),
                harness_cpu: Duration::from_millis(100),
            },
            dead_lettered: 10,
            stages: StageDeltas::default(),
        }
    }

    fn report(points: Vec<(&str, Option<f64>, Option<f64>)>) -> SweepReport {
        SweepReport {
            scenario: "batch size".into(),
            setting: "SLUICE_INFLUX__BATCH_MAX_POINTS".into(),
            points: points
                .into_iter()
                .map(|(value, rate, p99)| PointResult {
                    value: Some(value.to_owned()),
                    round: 1,
                    drain: rate.map(drain),
                    open_loop: p99.map(open_loop),
                })
                .collect(),
            rounds: 1,
            commit: Some("abc1234".into()),
        }
    }

    #[test]
    fn the_best_value_is_the_fastest_within_the_latency_target() {
        let sweep = report(vec![
            ("100", Some(10_000.0), Some(20.0)),
            ("1000", Some(30_000.0), Some(45.0)),
            ("5000", Some(40_000.0), Some(300.0)),
        ]);
        let (point, why) = sweep.best().expect("a best value");
        assert_eq!(point.value.as_deref(), Some("1000"));
        assert!(why.contains("p99 under 50 ms"), "{why}");
    }

    #[test]
    fn without_a_value_within_the_target_the_fastest_wins_and_says_so() {
        let sweep = report(vec![
            ("1", Some(1.0), Some(90.0)),
            ("2", Some(2.0), Some(80.0)),
        ]);
        let (point, why) = sweep.best().expect("a best value");
        assert_eq!(point.value.as_deref(), Some("2"));
        assert!(why.contains("no value kept p99"));
    }

    #[test]
    fn an_open_loop_only_sweep_picks_the_lowest_p99() {
        let sweep = report(vec![("10ms", None, Some(30.0)), ("20ms", None, Some(12.0))]);
        assert_eq!(
            sweep.best().and_then(|(point, _)| point.value.as_deref()),
            Some("20ms")
        );
    }

    /// Rounds of values: (value, round, sluice's drain rate); the null consumer drains at
    /// twice the rate in every round, so each ratio is 0.5 unless `null_rate` says otherwise.
    fn rounds(points: Vec<(&str, u32, f64, f64)>, rounds: u32) -> SweepReport {
        let mut sweep = report(Vec::new());
        sweep.rounds = rounds;
        sweep.points = points
            .into_iter()
            .map(|(value, round, rate, null_rate)| {
                let mut drain = drain(rate);
                drain.comparison.null_consumer.elapsed =
                    Duration::from_secs_f64(100_000.0 / null_rate);
                PointResult {
                    value: Some(value.to_owned()),
                    round,
                    drain: Some(drain),
                    open_loop: None,
                }
            })
            .collect();
        sweep
    }

    #[test]
    fn each_value_is_its_median_round_with_the_spread_of_its_ratios() {
        let sweep = rounds(
            vec![
                ("1", 1, 30_000.0, 40_000.0),
                ("2", 1, 50_000.0, 50_000.0),
                ("1", 2, 10_000.0, 40_000.0),
                ("2", 2, 20_000.0, 40_000.0),
                ("1", 3, 20_000.0, 40_000.0),
                ("2", 3, 25_000.0, 50_000.0),
            ],
            3,
        );
        let medians = sweep.medians();
        assert_eq!(medians.len(), 2);
        assert_eq!(medians[0].point.value.as_deref(), Some("1"));
        assert_eq!(
            medians[0].point.round, 3,
            "20,000 is the middle of 10, 20 and 30 thousand"
        );
        assert_eq!(medians[0].rounds, 3);
        let close = |range: Option<(f64, f64)>, (lowest, highest): (f64, f64)| {
            range.is_some_and(|(low, high)| {
                (low - lowest).abs() < 1e-6 && (high - highest).abs() < 1e-6
            })
        };
        assert!(
            close(medians[0].ratio_range, (0.25, 0.75)),
            "{:?}",
            medians[0].ratio_range
        );
        assert!(
            medians[0]
                .ratio
                .is_some_and(|ratio| (ratio - 0.5).abs() < 1e-6)
        );
        assert_eq!(medians[1].point.round, 3);
        assert!(
            close(medians[1].ratio_range, (0.5, 1.0)),
            "{:?}",
            medians[1].ratio_range
        );
        // Value 2 has the one fastest round (50,000), and also the faster median (25,000).
        let (best, _) = sweep.best().expect("a best value");
        assert_eq!((best.value.as_deref(), best.round), (Some("2"), 3));
    }

    #[test]
    fn one_lucky_round_does_not_make_a_value_the_best() {
        let sweep = rounds(
            vec![
                ("1", 1, 90_000.0, 40_000.0),
                ("2", 1, 30_000.0, 40_000.0),
                ("1", 2, 10_000.0, 40_000.0),
                ("2", 2, 31_000.0, 40_000.0),
            ],
            2,
        );
        // With two rounds the median is the lower one: 10,000 for value 1, 30,000 for value 2.
        let (best, why) = sweep.best().expect("a best value");
        assert_eq!(best.value.as_deref(), Some("2"));
        assert!(why.contains("30000 msgs/s"), "{why}");
    }

    #[test]
    fn one_slow_open_loop_does_not_rule_a_value_out() {
        let mut sweep = rounds(
            vec![
                ("1", 1, 30_000.0, 40_000.0),
                ("2", 1, 20_000.0, 40_000.0),
                ("1", 2, 31_000.0, 40_000.0),
                ("2", 2, 21_000.0, 40_000.0),
                ("1", 3, 32_000.0, 40_000.0),
                ("2", 3, 22_000.0, 40_000.0),
            ],
            3,
        );
        // Value 1's median drain (round 2) met a busy moment in its open loop.
        for (point, p99) in sweep
            .points
            .iter_mut()
            .zip([20.0, 20.0, 120.0, 20.0, 25.0, 20.0])
        {
            point.open_loop = Some(open_loop(p99));
        }
        let medians = sweep.medians();
        assert_eq!(medians[0].point.round, 2);
        assert_eq!(medians[0].p99_ms, Some(25.0));
        let (best, why) = sweep.best().expect("a best value");
        assert_eq!(best.value.as_deref(), Some("1"), "{why}");
        assert!(
            sweep
                .table()
                .lines()
                .nth(2)
                .is_some_and(|row| row.contains("median p99 25.0 ms"))
        );
    }

    #[test]
    fn with_rounds_the_table_labels_medians_and_lists_every_round() {
        let mut sweep = rounds(
            vec![
                ("1", 1, 30_000.0, 40_000.0),
                ("1", 2, 10_000.0, 40_000.0),
                ("1", 3, 20_000.0, 40_000.0),
            ],
            3,
        );
        if let Some(drain) = sweep.points[1].drain.as_mut() {
            drain.null_consumer_first = true;
        }
        let table = sweep.table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[2].starts_with(
                "| 1 (median of 3; median ratio 0.50, from 0.25 to 0.75) | 20000 | 40000 | 0.50 |"
            ),
            "{}",
            lines[2]
        );
        assert_eq!(lines[4], "Every round:");
        assert!(lines[8].starts_with("| 1 #1 | 30000 |"), "{}", lines[8]);
        assert!(
            lines[9].starts_with("| 1 #2 (null consumer first) | 10000 |"),
            "{}",
            lines[9]
        );
        assert!(lines[10].starts_with("| 1 #3 | 20000 |"), "{}", lines[10]);
        assert_eq!(lines.len(), 11);
        let json = sweep.to_json();
        assert_eq!(json["rounds"], 3);
        assert_eq!(json["medians"][0]["median_round"], 3);
        assert_eq!(json["medians"][0]["rate_ratio_min"], 0.25);
        assert_eq!(json["points"][1]["round"], 2);
        assert_eq!(json["points"][1]["drain"]["null_consumer_first"], true);
        assert_eq!(json["points"][0]["drain"]["null_consumer_first"], false);
    }

    #[test]
    fn the_table_has_a_row_per_value_and_dashes_for_what_was_not_measured() {
        let sweep = report(vec![
            ("100", Some(20_000.0), None),
            ("500", None, Some(25.0)),
        ]);
        let table = sweep.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("| influx.batch_max_points | drain msgs/s"));
        assert!(
            lines[2].starts_with("| 100 | 20000 | 40000 | 0.50 | – | 20.0 | 1.00 | – | 40 | – |"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].starts_with(
                "| 500 | – | – | – | – | – | – | – | – | 5000 | 3.0 | 25.0 | 37.5 | 50.0 | 990/990 |"
            ),
            "{}",
            lines[3]
        );
    }

    #[test]
    fn writes_json_and_svg() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sweep = report(vec![
            ("100", Some(20_000.0), Some(30.0)),
            ("500", Some(25_000.0), Some(40.0)),
        ]);
        let (json_path, svg_path) = sweep
            .write_files(dir.path(), "sweep-batch")
            .expect("written");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(json_path).expect("json"))
                .expect("parses");
        assert_eq!(json["best"]["value"], "500");
        assert_eq!(json["points"][0]["drain"]["rate_ratio"], 0.5);
        assert_eq!(json["points"][1]["open_loop"]["latency"]["p99_ms"], 40.0);
        assert_eq!(json["commit"], "abc1234");
        let svg = std::fs::read_to_string(svg_path).expect("svg");
        assert!(svg.contains("sluice drain (msgs/s)") && svg.contains("open-loop p99 (ms)"));
    }

    #[test]
    fn drain_bodies_are_distinct_with_every_bad_every_th_malformed() {
        let bodies = drain_bodies(300, 100);
        assert_eq!(bodies.len(), 300);
        assert_eq!(
            bodies
                .iter()
                .filter(|body| body.as_slice() == BAD_BODY)
                .count(),
            3
        );
        assert_eq!(bodies[99], BAD_BODY);
        assert_eq!(
            drain_bodies(10, 0)
                .iter()
                .filter(|body| body.as_slice() == BAD_BODY)
                .count(),
            0
        );
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }
}
