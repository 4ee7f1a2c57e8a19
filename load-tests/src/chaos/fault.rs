//! The faults a round injects: one variant each, and its arm in [`Fault::inject`].

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use sluice_testing::elasticsearch::FakeElasticsearch;
use sluice_testing::influx::PrivateInflux;
use tokio::sync::watch;

use super::rules::{Phase, ProbeMode, RulesProbe, SILENCE_BEFORE_CRASH};
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
    /// The Elasticsearch double stops for the scenario's `es_outage`: every connection is
    /// refused. The events path must hold its documents unacked and write them once it is back.
    EsDown,
    /// The Elasticsearch double answers 429 to the scenario's `es_429_share` of the items for
    /// `es_outage`, as a node whose write queue is full: sluice retries those items alone.
    #[serde(rename = "es_429")]
    Es429,
    /// The manager double goes down (its port refuses connections) for the scenario's `outage`
    /// while a trigger fires: the action is retried until `manager.retry_deadline`, then a
    /// `trigger_failed` event is published, and nothing fires twice.
    ManagerDown,
    /// As [`Fault::ManagerDown`], with the manager answering 503 to every request.
    #[serde(rename = "manager_503")]
    Manager503,
    /// The rule state directory cannot be written for the scenario's `outage`: the failed
    /// checkpoints are counted and logged, the pipeline goes on, and the checkpoint is written
    /// again once it can be.
    CheckpointUnwritable,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::Kill9,
        Fault::CloseConnection,
        Fault::BrokerRestart,
        Fault::InfluxRestart,
        Fault::InfluxStall,
        Fault::EsDown,
        Fault::Es429,
        Fault::ManagerDown,
        Fault::Manager503,
        Fault::CheckpointUnwritable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Kill9 => "kill9",
            Self::CloseConnection => "close_connection",
            Self::BrokerRestart => "broker_restart",
            Self::InfluxRestart => "influx_restart",
            Self::InfluxStall => "influx_stall",
            Self::EsDown => "es_down",
            Self::Es429 => "es_429",
            Self::ManagerDown => "manager_down",
            Self::Manager503 => "manager_503",
            Self::CheckpointUnwritable => "checkpoint_unwritable",
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

    /// Whether the round runs the rule stage with the [rules probe](super::rules), and how.
    pub fn rules_probe(self) -> Option<ProbeMode> {
        match self {
            Self::Kill9 | Self::CheckpointUnwritable => Some(ProbeMode::AcrossACrash),
            Self::ManagerDown | Self::Manager503 => Some(ProbeMode::ManagerOutage),
            _ => None,
        }
    }

    /// Injects the fault, leaving a sluice that is meant to recover (a new process for
    /// [`Fault::Kill9`]), and returns when the fault was over: the kill itself for
    /// [`Fault::Kill9`], since sluice's restart is part of its recovery; the broker's close;
    /// `start_app`'s return; InfluxDB answering `/ping` after its restart; the SIGCONT; the
    /// Elasticsearch double serving again, or answering every item again; the manager double
    /// answering again; the state directory writable again.
    pub(super) async fn inject(self, target: Target<'_>) -> anyhow::Result<Effect> {
        let Target {
            sluice,
            launch,
            influx,
            es,
            mut rules,
            published,
            durations,
        } = target;
        let mut peak_rss_kib = None;
        match self {
            Self::Kill9 => {
                let process = sluice.take().context("no sluice to kill")?;
                if let Some(rules) = rules.as_deref_mut() {
                    // A host that went silent before the crash must still be healed after it.
                    rules.enter(Phase::During);
                    tokio::time::sleep(SILENCE_BEFORE_CRASH).await;
                }
                process.kill().await?;
                let effect = Effect::now(published, None);
                let mut restarted = launch.spawn("restarted")?;
                restarted.wait_until_consuming(START_TIMEOUT).await?;
                *sluice = Some(restarted);
                if let Some(rules) = rules {
                    rules.enter(Phase::After);
                }
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
                tokio::time::sleep(durations.outage).await;
                rabbitmqctl(&["start_app"]).await?;
            }
            Self::InfluxRestart => {
                let influx = influx.context("influx_restart needs the round's own InfluxDB")?;
                influx.stop();
                tokio::time::sleep(durations.outage).await;
                influx.resume().await;
            }
            Self::InfluxStall => {
                let influx = influx.context("influx_stall needs the round's own InfluxDB")?;
                let pid = sluice.as_ref().context("no sluice to watch")?.pid();
                influx.freeze();
                tokio::time::sleep(durations.stall).await;
                // VmHWM: the peak over sluice's life, so the whole stall is in it.
                let sample = procfs::sample(Process::Pid(pid));
                influx.thaw();
                peak_rss_kib = Some(sample.context("sluice's peak RSS")?.peak_rss_kib);
            }
            Self::EsDown => {
                es.stop().await;
                tokio::time::sleep(durations.es_outage).await;
                es.restart().await;
            }
            Self::Es429 => {
                es.reject_share_of_items_with_429(durations.es_429_share);
                tokio::time::sleep(durations.es_outage).await;
                es.reject_share_of_items_with_429(0.0);
            }
            Self::ManagerDown | Self::Manager503 => {
                let rules = rules.context("a manager fault needs the rules probe")?;
                if self == Self::ManagerDown {
                    rules.manager().stop().await;
                } else {
                    rules.manager().answer_every_request_with(Some(503));
                }
                // Only now does the probe breach: the trigger fires into the outage.
                rules.enter(Phase::During);
                tokio::time::sleep(durations.outage).await;
                if self == Self::ManagerDown {
                    rules.manager().restart().await;
                } else {
                    rules.manager().answer_every_request_with(None);
                }
                rules.enter(Phase::After);
            }
            Self::CheckpointUnwritable => {
                let rules = rules.context("checkpoint_unwritable needs the rules probe")?;
                rules.make_state_dir_unwritable().await?;
                rules.enter(Phase::During);
                tokio::time::sleep(durations.outage).await;
                rules.restore_state_dir().await?;
                rules.enter(Phase::After);
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
    pub es: &'a mut FakeElasticsearch,
    /// The rules probe, in the rounds of the faults that [run one](Fault::rules_probe).
    pub rules: Option<&'a mut RulesProbe>,
    /// How many messages the load published so far.
    pub published: &'a watch::Receiver<u64>,
    pub durations: FaultDurations,
}

/// How long each fault lasts (from the scenario).
#[derive(Debug, Clone, Copy)]
pub(super) struct FaultDurations {
    /// How long a restarted service (the broker, InfluxDB, the manager) stays down, or the
    /// rule state directory unwritable.
    pub outage: Duration,
    /// How long a stalled InfluxDB stays stalled.
    pub stall: Duration,
    /// How long the Elasticsearch double refuses, or answers 429.
    pub es_outage: Duration,
    /// The share of items answered 429 meanwhile.
    pub es_429_share: f64,
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
