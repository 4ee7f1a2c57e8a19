//! `sluice`: the binary. Parses the command line, loads and validates the configuration, wires
//! the paths (`metrics_path`, `events_path`, and `rule_stage`, which the metrics path feeds),
//! serves the admin endpoint, and turns SIGTERM/Ctrl-C into a drain-flush-ack-exit within the
//! configured deadline. `normalise_command` and `test_command` show what bodies and rules do
//! without running the pipeline; `dead_letters` reads the dead-letter queue and replays what it
//! holds. `status` is the live status page of the admin endpoint, and `top` shows its figures in
//! a terminal.

#![allow(
    unreachable_pub,
    reason = "a binary crate: `pub` marks each module's interface to main, nothing is exported"
)]

mod admin;
mod config;
mod dead_letters;
mod events_path;
mod metrics_path;
mod normalise_command;
mod rule_stage;
mod sources;
mod status;
mod store_check;
mod test_command;
mod top;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{CommandFactory, Parser, Subcommand};
use sluice_amqp::dead_letter::run_dead_letter_publisher;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::RawConfig;

/// Dead letters waiting for the publisher; rejecting stages wait when it is full.
const DEAD_LETTER_CHANNEL_CAPACITY: usize = 1024;

/// `sluice --version`: the version and the commit it was built from (see `build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SLUICE_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "sluice",
    version = VERSION,
    about = "A metrics and events pipeline: RabbitMQ to InfluxDB and Elasticsearch, acked after the write"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline. With no file, as a Cloudify manager sidecar on local services.
    Run {
        /// A TOML configuration file; SLUICE_<SECTION>__<KEY> variables override it.
        #[arg(long, short, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
        /// How logs are written to stderr: `auto` is coloured text on a terminal and plain text
        /// otherwise (a file, journald, a pipe); `json` is one JSON object per line.
        #[arg(long, value_enum, default_value_t = LogFormat::Auto, env = "SLUICE_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Check a configuration and report every error with the field it concerns.
    Validate {
        #[arg(long, short, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Show what message bodies become: reads FILES (one body each) or stdin (one body per
    /// line) and prints one JSON line per body: the point, the control message, or the error.
    Normalise {
        #[arg(long, short, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
        files: Vec<PathBuf>,
    },
    /// Run rules against recorded input on a simulated clock and print the actions they fire;
    /// `{"expect": ...}` lines in the input make it a unit test (exit 1 when one fails).
    Test {
        /// The manager's `groups` file (JSON) and/or generic rule files (`.toml`).
        #[arg(required = true)]
        rules: Vec<PathBuf>,
        /// JSON lines: Diamond metric bodies, points, `{"advance": "30s"}`, `{"expect": {...}}`.
        #[arg(long, short)]
        input: PathBuf,
        /// How often the simulated clock sweeps for silent hosts and absent keys.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        sweep_interval: Duration,
        /// For the metrics' naming (Graphite templates), as `sluice run` would use.
        #[arg(long, short, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Read the dead-letter queue without taking anything from it, and replay chosen letters
    /// (optionally fixed) to where they were first published.
    #[command(subcommand)]
    DeadLetters(dead_letters::DeadLettersCommand),
    /// Print the JSON Schema of the configuration file.
    ConfigSchema,
    /// Print a completion script for SHELL, e.g. `sluice completions bash >
    /// /etc/bash_completion.d/sluice`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `sluice man > /usr/share/man/man1/sluice.1`; with
    /// `--dir`, write it and one page per subcommand (`sluice-run.1`, ...) there instead.
    Man {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Watch a running sluice in the terminal: the figures of its status page (rates, unacked,
    /// batch sizes, write latency, dead letters, last errors, rule triggers), refreshed every
    /// second; q quits.
    Top(top::TopArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Auto,
    Plain,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, log_format } => {
            let recent_logs = init_logging(log_format);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("error: cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(config, recent_logs)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Validate { config } => {
            match RawConfig::load(config.as_deref()).and_then(|raw| raw.validate()) {
                Ok(settings) => {
                    for warning in &settings.warnings {
                        println!("warning: {warning}");
                    }
                    let rule_files = settings
                        .rules
                        .as_ref()
                        .map(|rules| rules.stage.rule_files.as_slice())
                        .unwrap_or_default();
                    if let Err(error) = sluice_rest::stage::load_rule_files(rule_files) {
                        eprintln!("{error:#}");
                        return ExitCode::FAILURE;
                    }
                    println!("configuration is valid");
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprint!("{errors}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Normalise { config, files } => normalise_command::run(config.as_deref(), &files),
        Command::Test {
            rules,
            input,
            sweep_interval,
            config,
        } => test_command::run(config.as_deref(), &rules, &input, sweep_interval),
        Command::DeadLetters(command) => dead_letters::run(command),
        Command::ConfigSchema => {
            let schema = config::json_schema();
            match serde_json::to_string_pretty(&schema) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sluice", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Top(args) => top::run(&args),
        Command::Man { dir } => {
            let written = match &dir {
                Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
                None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    let place = dir.map_or("stdout".to_owned(), |dir| dir.display().to_string());
                    eprintln!("error: cannot write the manual pages to {place}: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Logs to stderr as `RUST_LOG` says; every warning and error is also kept for the status page,
/// in the answered ring.
fn init_logging(format: LogFormat) -> status::recent::RecentLogs {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output = match format {
        LogFormat::Json => logs.json().boxed(),
        // Colour codes are noise in a file or a journal; only a person at a terminal wants them.
        LogFormat::Auto => logs.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Plain => logs.with_ansi(false).boxed(),
    };
    let recent = status::recent::RecentLogs::default();
    tracing_subscriber::registry()
        .with(output.with_filter(filter))
        // Its own level, so that `RUST_LOG=error` still keeps warnings for the page, and so that
        // debug and trace call sites stay disabled when the output does not want them.
        .with(recent.layer().with_filter(LevelFilter::WARN))
        .init();
    recent
}

async fn run(
    config_file: Option<PathBuf>,
    recent_logs: status::recent::RecentLogs,
) -> anyhow::Result<()> {
    let settings = RawConfig::load(config_file.as_deref())
        .and_then(|raw| raw.validate())
        .map_err(|errors| anyhow!("{errors}"))?;
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    let status_shape = status::shape(&settings);
    let (prometheus, status_registry) = status::install_recorders()?;
    tokio::spawn({
        let prometheus = prometheus.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                prometheus.run_upkeep();
            }
        }
    });

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signals(shutdown.clone()));

    let mut stages: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let (dead_letter_tx, dead_letter_rx) = mpsc::channel(DEAD_LETTER_CHANNEL_CAPACITY);
    let dead_letter_publisher = tokio::spawn(run_dead_letter_publisher(
        settings.dead_letter,
        dead_letter_rx,
    ));
    let rule_feed = match settings.rules {
        Some(rules_settings) => Some(
            rule_stage::start(
                rules_settings,
                dead_letter_tx.clone(),
                // Leaves time for the final checkpoint within the shutdown deadline.
                settings.shutdown_deadline.mul_f64(0.75),
                &mut stages,
            )
            .await?,
        ),
        None => None,
    };
    let rule_activity = rule_feed
        .as_ref()
        .map(sluice_rest::stage::RuleFeed::activity);
    let metrics_health = match settings.metrics {
        Some(metrics_settings) => Some(Arc::new(
            metrics_path::start(
                metrics_settings,
                dead_letter_tx.clone(),
                rule_feed,
                shutdown.clone(),
                &mut stages,
            )
            .await?,
        )),
        None => None,
    };
    let events_health = match settings.events {
        Some(events_settings) => Some(Arc::new(
            events_path::start(
                events_settings,
                dead_letter_tx.clone(),
                shutdown.clone(),
                &mut stages,
            )
            .await?,
        )),
        None => None,
    };
    // The publisher ends once every stage that may reject has ended and dropped its sender.
    drop(dead_letter_tx);

    // The admin endpoint outlives the drain, so /metrics can be scraped while it runs.
    let admin_stop = CancellationToken::new();
    if let Some(address) = settings.admin_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding the admin endpoint to {address}"))?;
        tracing::info!(%address, "admin endpoint: / (status page) /status /metrics /healthz /readyz");
        let health = admin::Health {
            metrics: metrics_health,
            events: events_health,
        };
        let status =
            status::StatusSources::start(status_shape, status_registry, recent_logs, rule_activity);
        tokio::spawn(admin::serve(
            listener,
            prometheus,
            health,
            status,
            admin_stop.clone(),
        ));
    }

    let drain = async {
        let mut first_error = None;
        while let Some(joined) = stages.join_next().await {
            let outcome = joined
                .map_err(anyhow::Error::from)
                .and_then(|result| result);
            if let Err(error) = outcome {
                tracing::error!("{error:#}");
                shutdown.cancel();
                first_error.get_or_insert(error);
            }
        }
        let _ = dead_letter_publisher.await;
        first_error
    };
    tokio::pin!(drain);
    let first_error = tokio::select! {
        first_error = &mut drain => first_error,
        () = shutdown.cancelled() => {
            tracing::info!(deadline = ?settings.shutdown_deadline, "stopping: draining, flushing and acking");
            match tokio::time::timeout(settings.shutdown_deadline, &mut drain).await {
                Ok(first_error) => first_error,
                Err(_) => Some(anyhow!(
                    "the shutdown deadline of {:?} passed before everything was written; \
                     unacked deliveries will be redelivered by the broker",
                    settings.shutdown_deadline
                )),
            }
        }
    };
    admin_stop.cancel();
    match first_error {
        None => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
        Some(error) => Err(error),
    }
}

/// The first SIGTERM or Ctrl-C starts a clean stop; a second one exits at once.
async fn stop_on_signals(shutdown: CancellationToken) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                return;
            }
        };
    for signals_seen in 1.. {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        if signals_seen > 1 {
            tracing::warn!("second stop signal: exiting without draining");
            std::process::exit(130);
        }
        shutdown.cancel();
    }
}
