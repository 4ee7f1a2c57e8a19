//! A `sluice run` child process with environment overrides: started, awaited until it consumes,
//! and stopped with SIGTERM as an operator would, so that it flushes and acks before it exits.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// How often to ask a starting sluice whether it is ready.
const READY_POLL: Duration = Duration::from_millis(50);
/// How long a SIGTERMed sluice gets to exit (its own `shutdown.deadline` is 30 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct SluiceProcess {
    child: Child,
    pid: u32,
    pub admin: SocketAddr,
    pub log: PathBuf,
    /// When the process was spawned.
    pub spawned: Instant,
}

/// A loopback address with a port that was free a moment ago (for sluice's admin endpoint).
pub fn free_loopback_address() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    listener.local_addr().context("finding a free port")
}

impl SluiceProcess {
    /// Spawns `binary run` with `env` (and `SLUICE_ADMIN__LISTEN` set to `admin`), its output in
    /// `log`. Returns at once; see [`SluiceProcess::wait_until_consuming`].
    pub fn spawn(
        binary: &Path,
        env: &[(String, String)],
        admin: SocketAddr,
        log: &Path,
    ) -> anyhow::Result<Self> {
        Self::spawn_with_args(binary, &[], env, admin, log)
    }

    /// [`SluiceProcess::spawn`], with `args` after `run` (e.g. `--config FILE`).
    pub fn spawn_with_args(
        binary: &Path,
        args: &[&str],
        env: &[(String, String)],
        admin: SocketAddr,
        log: &Path,
    ) -> anyhow::Result<Self> {
        if !binary.is_file() {
            bail!(
                "no sluice binary at {}: build it with `cargo build --release -p sluice`, or pass --sluice-bin",
                binary.display()
            );
        }
        let output = std::fs::File::create(log)
            .with_context(|| format!("creating sluice's log {}", log.display()))?;
        let errors = output.try_clone().context("sharing sluice's log")?;
        let mut command = Command::new(binary);
        command
            .arg("run")
            .args(args)
            .env("RUST_LOG", "warn")
            .env("SLUICE_ADMIN__LISTEN", admin.to_string())
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {} run", binary.display()))?;
        let pid = child.id().context("sluice exited at once")?;
        Ok(Self {
            child,
            pid,
            admin,
            log: log.to_owned(),
            spawned: Instant::now(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.admin)
    }

    /// Waits until sluice consumes its queues (`/readyz` answers 200, or 503 only because a
    /// store is not answering yet), failing with its log when it exits or `timeout` passes.
    pub async fn wait_until_consuming(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = format!("http://{}/readyz", self.admin);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("checking on sluice")? {
                bail!(
                    "sluice exited ({status}) before it was ready:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(response) = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                let ready = response.status().is_success();
                let body = response.text().await.unwrap_or_default();
                if ready || body.starts_with("influxdb") || body.starts_with("elasticsearch") {
                    return Ok(());
                }
            }
            if started.elapsed() > timeout {
                bail!(
                    "sluice was not consuming after {timeout:?} ({url}):\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// SIGTERM, then waits for the exit; an unclean exit is an error carrying sluice's log.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // `kill` the command: sending a signal directly would need unsafe code or another crate.
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {} failed: {status}", self.pid);
        }
        let exit = tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .with_context(|| format!("sluice did not exit within {STOP_TIMEOUT:?} of SIGTERM"))?
            .context("waiting for sluice")?;
        if !exit.success() {
            bail!("sluice exited with {exit}:\n{}", self.log_tail());
        }
        Ok(())
    }

    /// SIGKILL, as a crash or the OOM killer would: nothing is flushed or acked. Then reaps it.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("SIGKILL to sluice")
    }

    /// The last lines of sluice's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("--- {} (last lines) ---\n{tail}", self.log.display())
    }
}
