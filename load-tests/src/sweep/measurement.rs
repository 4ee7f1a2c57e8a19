//! One measurement: a sluice spawned with its own names and settings, the pre-load drain beside
//! the null consumer's and the open loop against it, and the clean-up of what it declared.
//! [`PointResult`] is all a sweep keeps of it.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lapin::Channel;
use serde_json::json;

use super::environment::{Environment, Progress, RunNames};
use crate::baseline::{self, NullConsumerSettings};
use crate::broker;
use crate::latency_proxy::LatencyProxy;
use crate::open_loop::{self, BAD_BODY, OpenLoopReport, OpenLoopSettings};
use crate::plot::PlotPoint;
use crate::procfs::{ConsumerSample, Neighbours, Process};
use crate::publish::publish_confirmed;
use crate::report::{Comparison, DrainFigures};
use crate::scenario::Scenario;
use crate::schedule::EpochClock;
use crate::scrape::{self, Scraper, StageDeltas};
use crate::sluice_process::{SluiceProcess, free_loopback_address};

/// How often sluice's counters are scraped during a phase.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// How often to look again for the dead letters and acks that follow the last write.
const SETTLE_POLL: Duration = Duration::from_millis(50);

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
    pub(super) fn rank(&self) -> Option<f64> {
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

    pub(super) fn plot_point(&self) -> PlotPoint {
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
    let (connection, channel) = broker::confirming_channel(&environment.amqp_url).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
