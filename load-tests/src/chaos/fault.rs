//! The faults a round injects: one variant each, and its arm in [`Fault::inject`].

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use sluice_testing::influx::PrivateInflux;
use tokio::sync::watch;

use super::{Launch, START_TIMEOUT};
use crate::broker::rabbitmqctl;
use crate::procfs::{self, Process};
use crate::sluice_process::SluiceProcess;

/// One fault of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// SIGKILL sluice mid-load, then start it again: what it had fetched but not acked must come
    /// back from the broker.
    Kill9,
    /// The broker closes sluice's connections (`rabbitmqctl close_connection`): sluice must
    /// reconnect by itself, and its unacked deliveries are redelivered.
    CloseConnection,
    /// `rabbitmqctl stop_app`, and `start_app` an outage later: every connection goes, and so
    /// do the manager's transient monitoring exchange and its bindings. sluice must reconnect
    /// and declare its topology again; what was persisted in its durable queue is still there.
    BrokerRestart,
    /// SIGKILL of InfluxDB (a private `influxd`), restarted an outage later: writes fail to
    /// connect, and sluice must hold its batches unacked until InfluxDB answers again.
    InfluxRestart,
    /// SIGSTOP of InfluxDB for the scenario's `stall`, then SIGCONT: connections are accepted
    /// and never answered. sluice's memory must stay bounded while the backlog waits in the
    /// broker.
    InfluxStall,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::Kill9,
        Fault::CloseConnection,
        Fault::BrokerRestart,
        Fault::InfluxRestart,
        Fault::InfluxStall,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Kill9 => "kill9",
            Self::CloseConnection => "close_connection",
            Self::BrokerRestart => "broker_restart",
            Self::InfluxRestart => "influx_restart",
            Self::InfluxStall => "influx_stall",
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|fault| fault.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|fault| fault.name()).collect();
                anyhow!("unknown fault {text:?} ({})", names.join(", "))
            })
    }

    /// Whether the round needs an InfluxDB of its own, to kill or stall without touching the
    /// shared one.
    pub fn needs_private_influx(self) -> bool {
        matches!(self, Self::InfluxRestart | Self::InfluxStall)
    }

    /// Injects the fault, leaving a sluice that is meant to recover (a new process for
    /// [`Fault::Kill9`]), and returns when the fault was over: the kill itself for
    /// [`Fault::Kill9`], since sluice's restart is part of its recovery; the broker's close;
    /// `start_app`'s return; InfluxDB answering `/ping` after its restart; the SIGCONT.
    pub(super) async fn inject(self, target: Target<'_>) -> anyhow::Result<Effect> {
        let Target {
            sluice,
            launch,
            influx,
            published,
            outage,
            stall,
        } = target;
        let mut peak_rss_kib = None;
        match self {
            Self::Kill9 => {
                let process = sluice.take().context("no sluice to kill")?;
                process.kill().await?;
                let effect = Effect::now(published, None);
                let mut restarted = launch.spawn("restarted")?;
                restarted.wait_until_consuming(START_TIMEOUT).await?;
                *sluice = Some(restarted);
                return Ok(effect);
            }
            Self::CloseConnection => {
                let pid = sluice.as_ref().context("no sluice to cut off")?.pid();
                // Every connection of sluice's is named `sluice <role> pid=<pid>`; the quote that
                // ends the name in rabbitmqctl's listing keeps pid 12 from matching pid 123.
                let marker = format!("pid={pid}\"");
                let closed = tokio::task::spawn_blocking(move || {
                    sluice_testing::services::close_broker_connections(&marker)
                })
                .await
                .context("rabbitmqctl close_connection")?;
                if closed == 0 {
                    bail!("the broker listed no connection of sluice pid {pid} to close");
                }
            }
            Self::BrokerRestart => {
                rabbitmqctl(&["stop_app"]).await?;
                tokio::time::sleep(outage).await;
                rabbitmqctl(&["start_app"]).await?;
            }
            Self::InfluxRestart => {
                let influx = influx.context("influx_restart needs the round's own InfluxDB")?;
                influx.stop();
                tokio::time::sleep(outage).await;
                influx.resume().await;
            }
            Self::InfluxStall => {
                let influx = influx.context("influx_stall needs the round's own InfluxDB")?;
                let pid = sluice.as_ref().context("no sluice to watch")?.pid();
                influx.freeze();
                tokio::time::sleep(stall).await;
                // VmHWM: the peak over sluice's life, so the whole stall is in it.
                let sample = procfs::sample(Process::Pid(pid));
                influx.thaw();
                peak_rss_kib = Some(sample.context("sluice's peak RSS")?.peak_rss_kib);
            }
        }
        Ok(Effect::now(published, peak_rss_kib))
    }
}

/// What a fault acts on, and for how long.
pub(super) struct Target<'a> {
    pub sluice: &'a mut Option<SluiceProcess>,
    pub launch: &'a Launch,
    /// The round's own InfluxDB, for the faults that [need one](Fault::needs_private_influx).
    pub influx: Option<&'a mut PrivateInflux>,
    /// How many messages the load published so far.
    pub published: &'a watch::Receiver<u64>,
    /// How long a restarted service stays down.
    pub outage: Duration,
    /// How long a stalled InfluxDB stays stalled.
    pub stall: Duration,
}

/// Where a fault ended.
pub(super) struct Effect {
    pub at: Instant,
    /// Messages published by then: the ones from here on were published after the fault.
    pub published_before: u64,
    /// For [`Fault::InfluxStall`]: sluice's peak RSS by the end of the stall, in KiB.
    pub peak_rss_kib: Option<u64>,
}

impl Effect {
    fn now(published: &watch::Receiver<u64>, peak_rss_kib: Option<u64>) -> Self {
        Self {
            at: Instant::now(),
            published_before: *published.borrow(),
            peak_rss_kib,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_as_the_scenario_names_them() {
        for fault in Fault::ALL {
            assert_eq!(Fault::parse(fault.name()).ok(), Some(fault));
            let json = serde_json::to_string(&fault).expect("serialises");
            assert_eq!(
                json,
                format!("\"{}\"", fault.name()),
                "serde and name agree"
            );
        }
        let unknown = Fault::parse("kill").expect_err("not a fault");
        assert!(unknown.to_string().contains("influx_stall"), "{unknown}");
    }
}
