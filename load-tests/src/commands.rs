//! The `open-loop` and `sweep` subcommands: each starts its own sluice (`--sluice-bin`) with
//! a unique queue and database, through the latency proxy (see `sluice_load::sweep`); and `demo`,
//! a live feed for a sluice that is already running (see `sluice_load::demo`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use sluice_load::broker;
use sluice_load::scenario::{OpenLoopSpec, Scenario};
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
    /// Publish what a small manager sends, live, until Ctrl-C: every host of two deployments
    /// reports the Diamond collectors' metrics each interval, with a task event and a log now and
    /// then. For watching a running sluice (`deploy/run.sh --demo` starts both).
    Demo(DemoArgs),
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
    }
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
            env: Default::default(),
        },
    };
    // This command measures the open loop only, whatever else the scenario holds.
    scenario.sweep = None;
    scenario.drain = None;
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
