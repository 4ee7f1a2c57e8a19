//! What a sweep's measurements run against and under: the services and the sluice binary they
//! share, the progress shown meanwhile, and the broker and InfluxDB names that keep each
//! measurement apart from the others and from a sluice running beside them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

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

    pub(super) fn step_done(&self) {
        self.bar.inc(1);
    }

    pub(super) fn finish(&self) {
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
