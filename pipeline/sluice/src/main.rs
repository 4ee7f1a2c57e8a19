//! `sluice`: the binary. Parses the command line and runs the command. `run_command` loads the
//! configuration, wires the paths (`metrics_path`, `events_path`, and `rule_stage`, which the
//! metrics path feeds), serves the admin endpoint, reloads on SIGHUP, and turns SIGTERM/Ctrl-C
//! into a drain-flush-ack-exit within the configured deadline. `normalise_command` and
//! `test_command` show what bodies and rules do without running the pipeline; `dead_letters`
//! reads the dead-letter queue and replays what it holds. `status` is the live status page of the
//! admin endpoint, `top` shows its figures in a terminal, and `tap_command` prints samples of
//! what passes a stage (`tap_stream` serves them). The configuration (`config`) is the package's
//! library, `lib.rs`.

#![allow(
    unreachable_pub,
    reason = "a binary crate: `pub` marks each module's interface to main, nothing is exported"
)]

mod admin;
mod dead_letters;
mod events_path;
mod metrics_path;
mod normalise_command;
mod rule_stage;
mod run_command;
mod sources;
mod status;
mod store_check;
mod tap_command;
mod tap_stream;
mod test_command;
mod tier;
mod top;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use sluice::config;
use sluice::config::RawConfig;

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
        /// Reload when the configuration file changes, as on SIGHUP: an invalid file is
        /// refused and the running configuration kept.
        #[arg(long, env = "SLUICE_WATCH_CONFIG")]
        watch_config: bool,
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
    /// Print a sample of what passes a stage of a running sluice, as JSON lines: `points`
    /// (decoded metrics), `documents` (events and logs), `dead-letters`. Without NAME, list
    /// the taps. E.g. `sluice tap dead-letters --limit 5 | jq .reason`.
    Tap {
        name: Option<String>,
        /// The running sluice's admin endpoint: its `admin.listen` (`host:port`) or a URL.
        #[arg(long, default_value = "127.0.0.1:9598", env = "SLUICE_ADMIN__LISTEN")]
        admin: String,
        /// Samples a second, at most 100 (sluice samples no more than that, so tapping a busy
        /// path costs it next to nothing).
        #[arg(long, default_value_t = 10)]
        rate: u64,
        /// Stop after this many lines.
        #[arg(long)]
        limit: Option<u64>,
    },
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
        Command::Run {
            config,
            log_format,
            watch_config,
        } => {
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
            match runtime.block_on(run_command::run(config, watch_config, recent_logs)) {
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
        Command::Tap {
            name,
            admin,
            rate,
            limit,
        } => tap_command::run(&tap_command::TapRequest {
            admin,
            name,
            rate,
            limit,
        }),
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

/// Runs a command that only talks to a broker or an endpoint on a one-thread runtime.
fn on_one_thread(command: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(command),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::FAILURE
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
