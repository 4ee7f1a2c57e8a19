//! The push-input comparison: the same generated lines written to InfluxDB's `/write` directly,
//! and to sluice's `influxdb_write` source, whose listener publishes each request to RabbitMQ
//! (answering 204 once the broker confirmed it) for sluice's consumer to write to the same
//! InfluxDB. Everything runs in one process, one after the other, so that both sides of each
//! ratio come from the same run on the same (noisy, shared) machine.
//!
//! Two phases, each first direct and then through sluice:
//!
//! 1. **Open loop** at `push.rate` requests/s: the intake latency of each path, from every
//!    request's intended send time to its answer ([`crate::push`]). Through sluice, the run also
//!    waits for the last line to be written, and reports how long after the last answer that was.
//! 2. **Closed loop** (`push.max_rate_requests`, `push.concurrency` senders): the throughput.
//!    Direct, InfluxDB has written the lines when it answers; through sluice, the drain is over
//!    when sluice has acked every accepted request (it acks a delivery only once its lines are
//!    written), which is when InfluxDB holds them and the queue is empty. Its end-to-end rate
//!    is the accepted lines over the time from the first request to that moment.
//!
//! After each phase the points are counted in InfluxDB once (a `count()` over the phase's
//! measurement), and a phase whose count falls short of the accepted lines is an error. Each
//! phase's lines have a measurement of their own, so the phases are counted apart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lapin::{Channel, Connection, ConnectionProperties};
use serde_json::json;

use crate::broker;
use crate::procfs::{self, Neighbours, Process};
use crate::push::{self, Lines, Pace, PushReport, PushSettings, Target};
use crate::scenario::{PushSpec, Scenario};
use crate::schedule::EpochClock;
use crate::scrape;
use crate::sluice_process::{SluiceProcess, free_loopback_address};
use crate::sweep::{Environment, Progress, RunNames};

/// How often to ask whether sluice's listener answers yet.
const LISTENER_POLL: Duration = Duration::from_millis(50);

/// CPU that the processes on the path spent over one path's phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PathCpu {
    pub sluice: Option<Duration>,
    pub broker: Option<Duration>,
    pub influxdb: Option<Duration>,
    /// This process: the load generator.
    pub harness: Option<Duration>,
}

impl PathCpu {
    fn to_json(self, points: u64) -> serde_json::Value {
        let micros =
            |cpu: Option<Duration>| cpu.map(|cpu| cpu.as_secs_f64() * 1e6 / points.max(1) as f64);
        json!({
            "sluice_cpu_micros_per_point": micros(self.sluice),
            "broker_cpu_micros_per_point": micros(self.broker),
            "influxdb_cpu_micros_per_point": micros(self.influxdb),
            "harness_cpu_micros_per_point": micros(self.harness),
        })
    }

    fn line(self, points: u64) -> String {
        let part = |name: &str, cpu: Option<Duration>| {
            cpu.map(|cpu| {
                format!(
                    "{name} {:.2}s ({:.2} µs/point)",
                    cpu.as_secs_f64(),
                    cpu.as_secs_f64() * 1e6 / points.max(1) as f64
                )
            })
        };
        [
            part("sluice", self.sluice),
            part("broker", self.broker),
            part("influxdb", self.influxdb),
            part("harness", self.harness),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// One path's phase: what the sender saw, and when the lines were all in InfluxDB.
#[derive(Debug, Clone)]
pub struct PathResult {
    pub intake: PushReport,
    /// From the first request (intended, in the open loop) until InfluxDB held every accepted
    /// line: the last answer, direct; sluice's last ack, through sluice.
    pub end_to_end: Duration,
    /// Points of the phase's measurement counted in InfluxDB afterwards.
    pub points_in_influxdb: u64,
    /// Messages left in sluice's queue after its drain (direct: none).
    pub left_in_queue: Option<u32>,
    pub cpu: PathCpu,
}

impl PathResult {
    /// Points per second into InfluxDB, end to end.
    pub fn end_to_end_points_per_second(&self) -> f64 {
        self.intake.accepted_lines() as f64 / self.end_to_end.as_secs_f64().max(1e-9)
    }

    /// How long after the last answer the last line was written.
    pub fn drain_after_last_answer(&self) -> Duration {
        self.end_to_end.saturating_sub(self.intake.elapsed())
    }

    fn lines(&self, name: &str) -> Vec<String> {
        let mut lines = vec![format!("{name}:")];
        lines.extend(
            self.intake
                .lines()
                .into_iter()
                .map(|line| format!("  {line}")),
        );
        lines.push(format!(
            "  end to end: {} points in InfluxDB {:.2}s after the first request ({:.0} points/s), \
             {:.2}s after the last answer{}",
            self.points_in_influxdb,
            self.end_to_end.as_secs_f64(),
            self.end_to_end_points_per_second(),
            self.drain_after_last_answer().as_secs_f64(),
            self.left_in_queue
                .map(|left| format!("; {left} left in the queue"))
                .unwrap_or_default()
        ));
        lines.push(format!(
            "  cpu: {}",
            self.cpu.line(self.intake.accepted_lines())
        ));
        lines
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "intake": self.intake.to_json(),
            "end_to_end_seconds": self.end_to_end.as_secs_f64(),
            "end_to_end_points_per_second": self.end_to_end_points_per_second(),
            "drain_after_last_answer_seconds": self.drain_after_last_answer().as_secs_f64(),
            "points_in_influxdb": self.points_in_influxdb,
            "left_in_queue": self.left_in_queue,
            "cpu": self.cpu.to_json(self.intake.accepted_lines()),
        })
    }
}

/// Both paths of one phase, and their ratios (sluice over direct).
#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub direct: PathResult,
    pub sluice: PathResult,
}

impl PhaseResult {
    /// sluice's intake latency over InfluxDB's, at each percentile.
    pub fn latency_ratios(&self) -> BTreeMap<&'static str, Option<f64>> {
        let (sluice, direct) = (&self.sluice.intake.latency, &self.direct.intake.latency);
        BTreeMap::from([
            ("p50", ratio(sluice.p50_ms, direct.p50_ms)),
            ("p90", ratio(sluice.p90_ms, direct.p90_ms)),
            ("p99", ratio(sluice.p99_ms, direct.p99_ms)),
            ("p99_9", ratio(sluice.p999_ms, direct.p999_ms)),
            ("max", ratio(sluice.max_ms, direct.max_ms)),
        ])
    }

    /// sluice's accepted lines per second over InfluxDB's (intake only).
    pub fn intake_rate_ratio(&self) -> Option<f64> {
        ratio(
            self.sluice.intake.accepted_lines_per_second(),
            self.direct.intake.accepted_lines_per_second(),
        )
    }

    /// sluice's points per second into InfluxDB, end to end, over InfluxDB's own.
    pub fn end_to_end_ratio(&self) -> Option<f64> {
        ratio(
            self.sluice.end_to_end_points_per_second(),
            self.direct.end_to_end_points_per_second(),
        )
    }

    fn lines(&self, title: &str) -> Vec<String> {
        let mut lines = vec![format!("== {title}")];
        lines.extend(self.direct.lines("direct to InfluxDB /write"));
        lines.extend(self.sluice.lines("through sluice's influxdb_write"));
        let latency = self
            .latency_ratios()
            .into_iter()
            .map(|(name, ratio)| format!("{name} {}", format_ratio(ratio)))
            .collect::<Vec<_>>()
            .join(", ");
        lines.push(format!("ratio sluice/direct, intake latency: {latency}"));
        lines.push(format!(
            "ratio sluice/direct, intake lines/s: {}; end-to-end points/s: {}",
            format_ratio(self.intake_rate_ratio()),
            format_ratio(self.end_to_end_ratio())
        ));
        lines
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "direct": self.direct.to_json(),
            "sluice": self.sluice.to_json(),
            "ratio_sluice_over_direct": {
                "intake_latency": self.latency_ratios(),
                "intake_lines_per_second": self.intake_rate_ratio(),
                "end_to_end_points_per_second": self.end_to_end_ratio(),
            },
        })
    }
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct PushComparison {
    pub open_loop: PhaseResult,
    pub max_rate: Option<PhaseResult>,
}

impl PushComparison {
    pub fn lines(&self) -> Vec<String> {
        let mut lines = self.open_loop.lines("open loop");
        if let Some(max_rate) = &self.max_rate {
            lines.extend(max_rate.lines("closed loop, as fast as it goes (the drain)"));
        }
        lines
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "open_loop": self.open_loop.to_json(),
            "max_rate": self.max_rate.as_ref().map(PhaseResult::to_json),
        })
    }
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0 && numerator.is_finite() && denominator.is_finite())
        .then(|| numerator / denominator)
}

fn format_ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |value| format!("{value:.2}"))
}

/// Runs the scenario's `[push]` comparison against a sluice it starts, and removes what the run
/// declared and wrote.
pub async fn run(
    environment: &Environment,
    scenario: &Scenario,
    progress: &Progress,
) -> anyhow::Result<PushComparison> {
    let Some(spec) = &scenario.push else {
        bail!("the scenario has no [push]");
    };
    let names = RunNames::new();
    let influx = Influx {
        client: reqwest::Client::new(),
        url: environment.influx_url.clone(),
        direct_db: format!("{}_direct", names.database),
        sluice_db: format!("{}_sluice", names.database),
    };
    influx.ping().await?;
    let connection = Connection::connect(&environment.amqp_url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ: is it running (deploy/services.sh)?")?;
    let channel = connection.create_channel().await?;
    let intake = IntakeNames {
        exchange: format!("sluice-load.{}.intake", names.tag),
        queue: format!("sluice-load.{}.intake", names.tag),
    };
    let config = environment
        .work_dir
        .join(format!("push-{}.toml", names.tag));
    let listen = free_loopback_address()?;
    std::fs::write(
        &config,
        sluice_config(
            environment,
            spec,
            &names,
            &intake,
            &influx.sluice_db,
            listen,
        )?,
    )
    .with_context(|| format!("writing {}", config.display()))?;

    let measured = async {
        influx
            .query(&format!("CREATE DATABASE \"{}\"", influx.direct_db))
            .await?;
        let admin = free_loopback_address()?;
        let log = environment
            .work_dir
            .join(format!("sluice-{}.log", names.tag));
        let config_arg = config.display().to_string();
        let mut sluice = SluiceProcess::spawn_with_args(
            &environment.sluice_bin,
            &["--config", &config_arg],
            &scenario.env_vars(),
            admin,
            &log,
        )?;
        progress.phase("starting sluice");
        sluice.wait_until_consuming(scenario.timeout).await?;
        wait_for_listener(listen, scenario.timeout).await?;
        let phases = Phases {
            environment,
            scenario,
            spec,
            influx: &influx,
            channel: &channel,
            queue: &intake.queue,
            sluice: &sluice,
            listen: format!("http://{listen}"),
            progress,
        };
        let result = phases.run_all().await;
        progress.phase("stopping sluice");
        let stopped = sluice.stop().await;
        let result = result?;
        stopped?;
        anyhow::Ok(result)
    }
    .await;

    for queue in [&intake.queue, &names.dead_letter_queue] {
        if let Err(error) = broker::delete_queue(&channel, queue).await {
            progress.log(&format!("cleaning up: {error:#}"));
        }
    }
    for exchange in [&intake.exchange, &names.dead_letter_exchange] {
        if let Err(error) = broker::delete_exchange(&channel, exchange).await {
            progress.log(&format!("cleaning up: {error:#}"));
        }
    }
    for database in [&influx.direct_db, &influx.sluice_db] {
        if let Err(error) = influx.query(&format!("DROP DATABASE \"{database}\"")).await {
            progress.log(&format!("cleaning up: {error:#}"));
        }
    }
    let _ = std::fs::remove_file(&config);
    let _ = connection.close(200, "measured".into()).await;
    measured
}

struct IntakeNames {
    exchange: String,
    queue: String,
}

/// sluice's configuration: one `influxdb_write` source on `listen`, through its own exchange and
/// queue, into one InfluxDB sink.
fn sluice_config(
    environment: &Environment,
    spec: &PushSpec,
    names: &RunNames,
    intake: &IntakeNames,
    database: &str,
    listen: std::net::SocketAddr,
) -> anyhow::Result<String> {
    let table = |pairs: Vec<(&str, toml::Value)>| {
        toml::Value::Table(
            pairs
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        )
    };
    let mut sink = toml::Table::new();
    sink.insert("type".into(), "influxdb".into());
    sink.insert("inputs".into(), toml::Value::Array(vec!["push".into()]));
    sink.insert("url".into(), environment.influx_url.clone().into());
    sink.insert("database".into(), database.into());
    sink.extend(spec.sink.clone());
    let source = table(vec![
        ("type", "influxdb_write".into()),
        ("listen", listen.to_string().into()),
        (
            "broker",
            table(vec![
                ("exchange", intake.exchange.clone().into()),
                ("queue", intake.queue.clone().into()),
            ]),
        ),
    ]);
    let config = table(vec![
        (
            "amqp",
            table(vec![("url", environment.amqp_url.clone().into())]),
        ),
        (
            "dead_letter",
            table(vec![
                ("exchange", names.dead_letter_exchange.clone().into()),
                ("queue", names.dead_letter_queue.clone().into()),
            ]),
        ),
        ("sources", table(vec![("push", source)])),
        ("sinks", table(vec![("influx", toml::Value::Table(sink))])),
    ]);
    toml::to_string(&config).context("writing sluice's configuration")
}

/// Waits until the listener answers its `/ping` (it binds as sluice starts, but `/readyz` says
/// nothing about it).
async fn wait_for_listener(listen: std::net::SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/ping");
    let deadline = Instant::now() + timeout;
    loop {
        let answer = client
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if answer.is_ok_and(|answer| answer.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("sluice's influxdb_write listener did not answer {url} within {timeout:?}");
        }
        tokio::time::sleep(LISTENER_POLL).await;
    }
}

/// InfluxDB, and the run's two databases.
struct Influx {
    client: reqwest::Client,
    url: String,
    direct_db: String,
    sluice_db: String,
}

impl Influx {
    async fn ping(&self) -> anyhow::Result<()> {
        let ping = self
            .client
            .get(format!("{}/ping", self.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match ping {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => bail!(
                "InfluxDB at {} answered its ping with {}",
                self.url,
                answer.status()
            ),
            Err(error) => bail!(
                "InfluxDB is not reachable at {} ({error}): run deploy/services.sh",
                self.url
            ),
        }
    }

    async fn query(&self, query: &str) -> anyhow::Result<serde_json::Value> {
        let answer = self
            .client
            .post(format!("{}/query", self.url))
            .query(&[("q", query)])
            .send()
            .await
            .with_context(|| format!("querying InfluxDB: {query}"))?;
        if !answer.status().is_success() {
            bail!("InfluxDB answered {query:?} with {}", answer.status());
        }
        answer.json().await.context("reading InfluxDB's answer")
    }

    /// Points of `measurement` in `database`.
    async fn count(&self, database: &str, measurement: &str) -> anyhow::Result<u64> {
        let answer: serde_json::Value = self
            .client
            .get(format!("{}/query", self.url))
            .query(&[
                ("db", database),
                (
                    "q",
                    &format!("SELECT count(\"value\") FROM \"{measurement}\""),
                ),
            ])
            .send()
            .await
            .context("counting points in InfluxDB")?
            .json()
            .await
            .context("reading InfluxDB's count")?;
        Ok(answer["results"][0]["series"][0]["values"][0][1]
            .as_u64()
            .unwrap_or(0))
    }

    fn write_url(&self, base: &str, database: &str) -> String {
        format!("{base}/write?db={database}&precision=s")
    }
}

/// The run's phases, against one sluice.
struct Phases<'a> {
    environment: &'a Environment,
    scenario: &'a Scenario,
    spec: &'a PushSpec,
    influx: &'a Influx,
    channel: &'a Channel,
    queue: &'a str,
    sluice: &'a SluiceProcess,
    /// sluice's listener, `http://host:port`.
    listen: String,
    progress: &'a Progress,
}

#[derive(Clone, Copy)]
enum Path {
    Direct,
    Sluice,
}

impl Phases<'_> {
    async fn run_all(&self) -> anyhow::Result<PushComparison> {
        let open = Pace::Open {
            rate: self.spec.rate,
            max_in_flight: self.spec.max_in_flight,
        };
        let requests = self.spec.open_loop_requests();
        let open_loop = self.phase("push_open", open, requests).await?;
        let max_rate = if self.spec.max_rate_requests > 0 {
            let closed = Pace::Closed {
                concurrency: self.spec.concurrency,
            };
            Some(
                self.phase("push_max", closed, self.spec.max_rate_requests)
                    .await?,
            )
        } else {
            None
        };
        Ok(PushComparison {
            open_loop,
            max_rate,
        })
    }

    async fn phase(
        &self,
        measurement: &str,
        pace: Pace,
        requests: u64,
    ) -> anyhow::Result<PhaseResult> {
        let direct = self.path(Path::Direct, measurement, pace, requests).await?;
        let sluice = self.path(Path::Sluice, measurement, pace, requests).await?;
        Ok(PhaseResult { direct, sluice })
    }

    async fn path(
        &self,
        path: Path,
        measurement: &str,
        pace: Pace,
        requests: u64,
    ) -> anyhow::Result<PathResult> {
        // Each path starts with the broker idle, so that neither inherits the other's backlog.
        if let Some(pid) = self.environment.broker_pid {
            self.progress.phase("waiting for the broker to go quiet");
            broker::wait_for_quiet_broker(pid).await?;
        }
        let (name, url, database) = match path {
            Path::Direct => (
                "direct",
                self.influx
                    .write_url(&self.influx.url, &self.influx.direct_db),
                &self.influx.direct_db,
            ),
            Path::Sluice => (
                "sluice",
                // sluice's listener takes any `db`: the sink's database is its own.
                self.influx.write_url(&self.listen, &self.influx.sluice_db),
                &self.influx.sluice_db,
            ),
        };
        let clock = EpochClock::new()?;
        let settings = PushSettings {
            target: Target::Http(url),
            lines: Lines {
                measurement: measurement.to_owned(),
                hosts: self.spec.hosts,
                collectors: self.spec.collectors,
                batch: self.spec.batch,
                // Whole seconds from now: both paths write the same lines, each into its own
                // database.
                base_seconds: clock.now_micros() / 1_000_000,
            },
            requests,
            pace,
            request_timeout: self.spec.request_timeout,
        };
        let metrics_url = self.sluice.metrics_url();
        let http = reqwest::Client::new();
        let acked_before = match path {
            Path::Direct => 0,
            Path::Sluice => scrape::acked(&http, &metrics_url).await?,
        };
        let neighbours = Neighbours::find();
        let neighbours_before = neighbours.sample();
        let sluice_before = procfs::sample(Process::Pid(self.sluice.pid()))?.cpu;
        let harness_before = procfs::sample(Process::Own)?.cpu;
        self.progress.phase(&format!(
            "{name}: {requests} requests of {} lines, {}",
            self.spec.batch,
            pace.describe()
        ));
        let intake = push::run(&settings, clock).await?;
        let accepted = intake.statuses.accepted();
        let (end_to_end, left_in_queue) = match path {
            Path::Direct => (intake.elapsed(), None),
            Path::Sluice => {
                self.progress
                    .phase(&format!("sluice: draining {accepted} requests"));
                // One message per request, acked once its lines are written.
                let deadline = Instant::now() + self.scenario.timeout;
                scrape::wait_for_acks(&http, &metrics_url, acked_before + accepted, deadline)
                    .await?;
                let drained =
                    Duration::from_micros(clock.now_micros().saturating_sub(intake.started_micros));
                let left = broker::queue_depth(self.channel, self.queue).await;
                (drained, left)
            }
        };
        let neighbours_used = neighbours_before.until(&neighbours.sample());
        let cpu = PathCpu {
            sluice: match path {
                Path::Direct => None,
                Path::Sluice => Some(
                    procfs::sample(Process::Pid(self.sluice.pid()))?
                        .cpu
                        .saturating_sub(sluice_before),
                ),
            },
            broker: neighbours_used.broker_cpu,
            influxdb: neighbours_used.store_cpu,
            harness: Some(
                procfs::sample(Process::Own)?
                    .cpu
                    .saturating_sub(harness_before),
            ),
        };
        let points_in_influxdb = self.influx.count(database, measurement).await?;
        let result = PathResult {
            intake,
            end_to_end,
            points_in_influxdb,
            left_in_queue,
            cpu,
        };
        for line in result.lines(name) {
            self.progress.log(&line);
        }
        if points_in_influxdb < result.intake.accepted_lines() {
            bail!(
                "{name}: InfluxDB holds {points_in_influxdb} of the {} lines accepted",
                result.intake.accepted_lines()
            );
        }
        Ok(result)
    }
}
