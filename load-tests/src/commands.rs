//! The `open-loop` and `sweep` subcommands: each starts its own sluice (`--sluice-bin`) with
//! a unique queue and database, through the latency proxy (see `sluice_load::sweep`); and `demo`,
//! a live feed for a sluice that is already running (see `sluice_load::demo`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use sluice_load::broker;
use sluice_load::push::{Lines, Pace, PushSettings, Target};
use sluice_load::scenario::{OpenLoopSpec, Scenario};
use sluice_load::schedule::EpochClock;
use sluice_load::sweep::{self, Environment, Progress};

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Publish Diamond metrics at a fixed rate into a sluice started for the run, and report
    /// the latency from each message's intended send time to its write (p50, p99, p99.9, max),
    /// the points written per second, and sluice's counters.
    OpenLoop(OpenLoopArgs),
    /// Run a scenario once per value of its [sweep] setting, each against a fresh sluice: print a
    /// table, write JSON and an SVG plot, and name the best value.
    Sweep(SweepArgs),
    /// POST line protocol in batches to an InfluxDB write endpoint (sluice's `influxdb_write`
    /// or InfluxDB), or write Graphite lines to a TCP listener: open loop at --rate requests/s
    /// (latency from each request's intended send time), or closed loop with --concurrency
    /// senders. Reports latency percentiles, the achieved rate and the answers by status.
    Push(PushArgs),
    /// Run a scenario's [push] comparison: the same lines to InfluxDB's /write directly and
    /// through a sluice started with an influxdb_write source, open loop (intake latency) and
    /// closed loop (drain throughput through the broker), with the ratios sluice/direct.
    PushCompare(PushCompareArgs),
    /// Publish what a small manager sends, live, until Ctrl-C: every host of two deployments
    /// reports the Diamond collectors' metrics each interval, with a task event and a log now and
    /// then. For watching a running sluice (`deploy/run.sh --demo` starts both).
    Demo(DemoArgs),
    /// Chaos rounds: each starts a sluice, publishes a confirmed load of individually
    /// identifiable messages, injects one fault at a seeded random moment, then counts what was
    /// lost, duplicated, dead-lettered and left queued, and how long writes took to resume.
    Chaos(ChaosArgs),
}

#[derive(Args)]
pub(crate) struct ChaosArgs {
    #[command(flatten)]
    services: ServiceArgs,
    /// The scenario (e.g. load-tests/scenarios/chaos-faults.toml).
    #[arg(long)]
    scenario: PathBuf,
    /// The first round's seed; round r uses seed + r (default: random, printed). `--seed S
    /// --rounds 1 --faults F` replays the round that printed seed S.
    #[arg(long)]
    seed: Option<u64>,
    /// Rounds of each fault (instead of the scenario's).
    #[arg(long)]
    rounds: Option<u32>,
    /// Messages per round (instead of the scenario's).
    #[arg(long)]
    messages: Option<u64>,
    /// Only these faults, comma-separated (kill9, close_connection, broker_restart,
    /// influx_restart, influx_stall, es_down, es_429, manager_down, manager_503,
    /// checkpoint_unwritable).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Also write every round and the table to this file as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct DemoArgs {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    #[arg(long, default_value = "cloudify-monitoring")]
    exchange: String,
    /// Hosts per deployment.
    #[arg(long, default_value_t = 3)]
    hosts: usize,
    /// How often each host reports, e.g. `1s`.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Stop after this many intervals (default: until Ctrl-C).
    #[arg(long)]
    ticks: Option<u64>,
    /// The manager's event exchange (4.x).
    #[arg(long, default_value = "cloudify-events")]
    events_exchange: String,
    /// The manager's log exchange (4.x).
    #[arg(long, default_value = "cloudify-logs")]
    logs_exchange: String,
    /// Metrics only: no events or logs.
    #[arg(long)]
    no_events: bool,
}

/// Where sluice and the services are.
#[derive(Args)]
pub(crate) struct ServiceArgs {
    /// The sluice binary to start (`cargo build --release -p sluice`).
    #[arg(long, default_value = "target/release/sluice")]
    sluice_bin: PathBuf,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// The real InfluxDB, behind the latency proxy.
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    influx_url: String,
    /// RabbitMQ's pid, to wait for the broker to go quiet before each measurement (default: the
    /// oldest `beam.smp` of the `rabbitmq` user, when there is one).
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Do not wait for the broker to go quiet.
    #[arg(long, conflicts_with = "broker_pid")]
    no_quiet_wait: bool,
    /// Where sluice's logs go (one file per run).
    #[arg(long, default_value = "/tmp/sluice-load")]
    work_dir: PathBuf,
}

impl ServiceArgs {
    fn environment(&self) -> anyhow::Result<Environment> {
        std::fs::create_dir_all(&self.work_dir)
            .with_context(|| format!("creating --work-dir {}", self.work_dir.display()))?;
        let broker_pid = if self.no_quiet_wait {
            None
        } else {
            self.broker_pid.or_else(broker::find_broker_pid)
        };
        Ok(Environment {
            sluice_bin: self.sluice_bin.clone(),
            amqp_url: self.amqp_url.clone(),
            influx_url: self.influx_url.trim_end_matches('/').to_owned(),
            broker_pid,
            work_dir: self.work_dir.clone(),
        })
    }
}

#[derive(Args)]
pub(crate) struct OpenLoopArgs {
    #[command(flatten)]
    services: ServiceArgs,
    /// A scenario whose [open_loop] and [env] to use (e.g. load-tests/scenarios/open-loop.toml);
    /// the flags below override it.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Messages per second (default 5000 without a scenario).
    #[arg(long)]
    rate: Option<f64>,
    /// Each host reports each collector once per interval (instead of --rate), e.g. `1s`.
    #[arg(long, value_parser = parse_duration, conflicts_with = "rate")]
    interval: Option<Duration>,
    /// How long to publish, e.g. `30s` (default 30s without a scenario).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    #[arg(long)]
    hosts: Option<usize>,
    #[arg(long)]
    collectors: Option<usize>,
    /// Every Nth message is malformed (0: none).
    #[arg(long)]
    bad_every: Option<u64>,
    /// A sluice setting for this run, e.g. `--env SLUICE_INFLUX__BATCH_LINGER=20ms` (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Also write the results to this file as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct PushArgs {
    /// The write URL with its query, e.g.
    /// `http://127.0.0.1:8186/write?db=load&precision=s` (the lines' timestamps are seconds).
    #[arg(
        long,
        required_unless_present = "graphite",
        conflicts_with = "graphite"
    )]
    url: Option<String>,
    /// A Graphite plaintext TCP listener instead, e.g. `127.0.0.1:2003`.
    #[arg(long)]
    graphite: Option<std::net::SocketAddr>,
    /// Graphite: connections to spread the batches over.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Open loop: requests per second, on a fixed schedule.
    #[arg(long, required_unless_present = "concurrency")]
    rate: Option<f64>,
    /// Closed loop instead: this many senders, each waiting for its answer.
    #[arg(long, conflicts_with = "rate")]
    concurrency: Option<usize>,
    /// Open loop: how long, e.g. `30s` (the requests are rate x duration).
    #[arg(long, value_parser = parse_duration, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// How many requests (closed loop: required).
    #[arg(long)]
    requests: Option<u64>,
    /// Lines per request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    #[arg(long, default_value_t = 200)]
    hosts: usize,
    #[arg(long, default_value_t = 10)]
    collectors: usize,
    /// The lines' measurement (Graphite: their first path node).
    #[arg(long, default_value = "push")]
    measurement: String,
    /// Open loop: requests unanswered at most; later ones go out late, counted late.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// A request unanswered by then counts as failed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Also write the results to this file as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct PushCompareArgs {
    #[command(flatten)]
    services: ServiceArgs,
    /// The scenario, with a [push] section (e.g. load-tests/scenarios/push-influx.toml).
    #[arg(long)]
    scenario: PathBuf,
    /// Open loop: requests per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: how long, e.g. `30s`.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Lines per request.
    #[arg(long)]
    batch: Option<usize>,
    /// Closed loop: requests (0: skip the closed loop).
    #[arg(long)]
    max_rate_requests: Option<u64>,
    /// Closed loop: senders.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Also write the results to this file as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct SweepArgs {
    #[command(flatten)]
    services: ServiceArgs,
    /// The scenario, with a [sweep] section (e.g. load-tests/scenarios/sweep-batch.toml).
    #[arg(long)]
    scenario: PathBuf,
    /// Where to write `<name>.json` and `<name>.svg`.
    #[arg(long, default_value = "load-tests/results")]
    out_dir: PathBuf,
    /// The files' name (default: the scenario file's name).
    #[arg(long)]
    name: Option<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime_serde::re::humantime::parse_duration(text).map_err(|error| error.to_string())
}

pub(crate) async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::OpenLoop(args) => open_loop(args).await,
        Command::Sweep(args) => sweep(args).await,
        Command::Demo(args) => demo(args).await,
        Command::Push(args) => push(args).await,
        Command::PushCompare(args) => push_compare(args).await,
        Command::Chaos(args) => chaos(args).await,
    }
}

async fn chaos(args: ChaosArgs) -> anyhow::Result<()> {
    use sluice_load::chaos::{self, ChaosEnvironment, ChaosScenario, Fault};
    let mut scenario = ChaosScenario::load(&args.scenario)?;
    if let Some(rounds) = args.rounds {
        scenario.rounds = rounds;
    }
    if let Some(messages) = args.messages {
        scenario.messages = messages;
    }
    if !args.faults.is_empty() {
        scenario.faults = args
            .faults
            .iter()
            .map(|name| Fault::parse(name))
            .collect::<anyhow::Result<_>>()?;
    }
    scenario.validate()?;
    let environment = ChaosEnvironment {
        sluice_bin: args.services.sluice_bin.clone(),
        amqp_url: args.services.amqp_url.clone(),
        influx_url: args.services.influx_url.trim_end_matches('/').to_owned(),
        work_dir: args.services.work_dir.clone(),
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    println!(
        "chaos: {} ({} rounds of {} x {} messages at {}/s), seed {seed}",
        scenario.name,
        scenario.rounds,
        scenario
            .faults
            .iter()
            .map(|fault| fault.name())
            .collect::<Vec<_>>()
            .join(", "),
        scenario.messages,
        scenario.rate
    );
    let rounds = chaos::run(&environment, &scenario, seed, |round| {
        println!("{}", round.line());
    })
    .await?;
    let summaries = chaos::summarise(&rounds);
    print!("{}", chaos::table(&summaries));
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "commit": sweep::git_commit(),
            "scenario": args.scenario,
            "seed": seed,
            "messages_per_round": scenario.messages,
            "rate": scenario.rate,
            "summary": summaries,
            "rounds": rounds,
        });
        write_json(path, &json)?;
        println!("wrote {}", path.display());
    }
    let failed = rounds.iter().filter(|round| !round.passed()).count();
    if failed > 0 {
        bail!("{failed} of {} rounds failed", rounds.len());
    }
    Ok(())
}

async fn push(args: PushArgs) -> anyhow::Result<()> {
    let pace = match (args.rate, args.concurrency) {
        (Some(rate), _) => Pace::Open {
            rate,
            max_in_flight: args.max_in_flight,
        },
        (None, Some(concurrency)) => Pace::Closed { concurrency },
        (None, None) => bail!("give --rate (open loop) or --concurrency (closed loop)"),
    };
    let requests = match (args.requests, args.duration, pace) {
        (Some(requests), _, _) => requests,
        (None, Some(duration), Pace::Open { rate, .. }) => {
            (rate * duration.as_secs_f64()).round() as u64
        }
        _ => bail!("give --requests, or --duration with --rate"),
    };
    if requests == 0 {
        bail!("that is no request at all");
    }
    let target = match (args.url, args.graphite) {
        (Some(url), _) => Target::Http(url),
        (None, Some(address)) => Target::GraphiteTcp {
            address,
            connections: args.connections,
        },
        (None, None) => bail!("give --url or --graphite"),
    };
    let clock = EpochClock::new()?;
    let settings = PushSettings {
        target,
        lines: Lines {
            measurement: args.measurement,
            hosts: args.hosts,
            collectors: args.collectors,
            batch: args.batch,
            base_seconds: clock.now_micros() / 1_000_000,
        },
        requests,
        pace,
        request_timeout: args.request_timeout,
    };
    let report = sluice_load::push::run(&settings, clock).await?;
    for line in report.lines() {
        println!("{line}");
    }
    if let Some(path) = &args.json {
        let mut json = report.to_json();
        json["commit"] = serde_json::json!(sweep::git_commit());
        write_json(path, &json)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

async fn push_compare(args: PushCompareArgs) -> anyhow::Result<()> {
    let environment = args.services.environment()?;
    let mut scenario = Scenario::load(&args.scenario)?;
    let Some(spec) = scenario.push.as_mut() else {
        bail!("{} has no [push] section", args.scenario.display());
    };
    if let Some(rate) = args.rate {
        spec.rate = rate;
    }
    if let Some(duration) = args.duration {
        spec.duration = duration;
    }
    if let Some(batch) = args.batch {
        spec.batch = batch;
    }
    if let Some(requests) = args.max_rate_requests {
        spec.max_rate_requests = requests;
    }
    if let Some(concurrency) = args.concurrency {
        spec.concurrency = concurrency;
    }
    scenario.validate().context("the push settings")?;
    let progress = Progress::new(1);
    let comparison = sluice_load::push_compare::run(&environment, &scenario, &progress).await;
    drop(progress);
    let comparison = comparison?;
    for line in comparison.lines() {
        println!("{line}");
    }
    if let Some(path) = &args.json {
        let mut json = comparison.to_json();
        json["commit"] = serde_json::json!(sweep::git_commit());
        json["scenario"] = serde_json::json!(args.scenario);
        if let Some(spec) = &scenario.push {
            json["push"] = serde_json::json!({
                "batch": spec.batch,
                "hosts": spec.hosts,
                "collectors": spec.collectors,
                "rate": spec.rate,
                "duration_seconds": spec.duration.as_secs_f64(),
                "max_in_flight": spec.max_in_flight,
                "max_rate_requests": spec.max_rate_requests,
                "concurrency": spec.concurrency,
                "sink": spec.sink,
            });
        }
        write_json(path, &json)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

async fn open_loop(args: OpenLoopArgs) -> anyhow::Result<()> {
    let environment = args.services.environment()?;
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario {
            name: "open loop".to_owned(),
            description: String::new(),
            timeout: Duration::from_secs(300),
            sweep: None,
            drain: None,
            open_loop: None,
            push: None,
            env: Default::default(),
        },
    };
    // This command measures the open loop only, whatever else the scenario holds.
    scenario.sweep = None;
    scenario.drain = None;
    scenario.push = None;
    let mut spec = scenario
        .open_loop
        .take()
        .unwrap_or_else(|| OpenLoopSpec::at_rate(5_000.0, Duration::from_secs(30)));
    if let Some(rate) = args.rate {
        spec.rate = Some(rate);
        spec.interval = None;
    }
    if let Some(interval) = args.interval {
        spec.interval = Some(interval);
        spec.rate = None;
    }
    if let Some(duration) = args.duration {
        spec.duration = duration;
    }
    if let Some(hosts) = args.hosts {
        spec.hosts = hosts;
    }
    if let Some(collectors) = args.collectors {
        spec.collectors = collectors;
    }
    if let Some(bad_every) = args.bad_every {
        spec.bad_every = bad_every;
    }
    scenario.open_loop = Some(spec);
    for pair in &args.env {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--env {pair:?} is not KEY=VALUE");
        };
        scenario
            .env
            .insert(key.to_owned(), toml::Value::String(value.to_owned()));
    }
    scenario.validate().context("the open-loop settings")?;

    let progress = Progress::new(1);
    let point = sweep::measure(&environment, &scenario, None, 1, &progress).await;
    drop(progress);
    let point = point?;
    for line in point.lines() {
        println!("{line}");
    }
    if let Some(path) = &args.json {
        let mut json = point.to_json();
        json["commit"] = serde_json::json!(sweep::git_commit());
        json["env"] = serde_json::json!(scenario.env_vars());
        write_json(path, &json)?;
        println!("wrote {}", path.display());
    }
    if let Some(open_loop) = &point.open_loop
        && open_loop.report.missing() > 0
    {
        bail!(
            "{} good points were never written",
            open_loop.report.missing()
        );
    }
    Ok(())
}

async fn sweep(args: SweepArgs) -> anyhow::Result<()> {
    let environment = args.services.environment()?;
    let scenario = Scenario::load(&args.scenario)?;
    if scenario.drain.is_none() && scenario.open_loop.is_none() {
        bail!(
            "{} measures only [push]: run it with `sluice-load push-compare`",
            args.scenario.display()
        );
    }
    let name = match &args.name {
        Some(name) => name.clone(),
        None => file_stem(&args.scenario)?,
    };
    let report = sweep::run_sweep(&environment, &scenario).await?;
    println!("{}", report.table());
    if let Some((point, why)) = report.best() {
        println!(
            "best: {} = {} ({why})",
            sluice_load::scenario::setting_key(&report.setting),
            point.value.as_deref().unwrap_or("?")
        );
    }
    let (json, svg) = report.write_files(&args.out_dir, &name)?;
    println!("wrote {} and {}", json.display(), svg.display());
    Ok(())
}

fn file_stem(path: &Path) -> anyhow::Result<String> {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no file name", path.display()))
}

fn write_json(path: &Path, json: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(json)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let settings = sluice_load::demo::DemoSettings {
        amqp_url: args.amqp_url,
        exchange: args.exchange,
        hosts: args.hosts,
        interval: args.interval,
        ticks: args.ticks,
        events: (!args.no_events).then_some((args.events_exchange, args.logs_exchange)),
    };
    let counts = sluice_load::demo::run(&settings).await?;
    println!(
        "demo: stopped after {} metrics, {} events, {} logs",
        counts.metrics, counts.events, counts.logs
    );
    Ok(())
}
