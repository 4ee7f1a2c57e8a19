//! The rule stage under a fault: the manager's own policies (`cpu_high` scales, `host_down`
//! heals) loaded into the round's sluice, a small stream of metrics that breach them at known
//! moments, and an exact account of what reached the manager double.
//!
//! Two deployments, because the manager refuses a second active execution of one deployment
//! (which would hide a repeated trigger): node `span` of the *scale* deployment, and nodes
//! `silent` and `alive` of the *heal* deployment. The probe publishes for each every
//! [`TICK`], and what it publishes follows the round's [`Phase`], which the fault moves:
//!
//! - [`ProbeMode::AcrossACrash`] (`kill9`, `checkpoint_unwritable`): `span` breaches from the
//!   start, and its scale is posted before the load begins; `silent` stops reporting when the
//!   fault begins. Expected: one scale for `span` (the breach spans the fault, so a second is a
//!   repeat), one heal for `silent` (a host that went silent before the crash is healed after
//!   it), none for `alive`, no `trigger_failed`. `checkpoint_unwritable` also expects failed
//!   checkpoints, counted on `/metrics` and logged, and the checkpoint written again once the
//!   directory is back.
//! - [`ProbeMode::ManagerOutage`] (`manager_down`, `manager_503`): `span` breaches once the
//!   manager is down; sluice retries until `manager.retry_deadline` (half the outage) and
//!   gives up. Expected: no scale execution, no scale request after the outage, exactly one
//!   `trigger_failed` for `span`; `silent` stops after the outage and is healed once, `alive`
//!   never.
//!
//! A repeat would come when the restarted (or recovered) stage first sees `span`'s breach,
//! which is seconds before `silent`'s ttl runs out; so once `silent`'s heal is in, any repeat
//! would be too.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};
use serde::Serialize;
use serde_json::{Value, json};
use sluice_testing::manager::{FakeManager, scale_and_heal_groups};
use tokio::sync::watch;

use crate::broker;
use crate::sluice_process::SluiceProcess;

/// How often the probe publishes each node's metric.
const TICK: Duration = Duration::from_millis(100);
/// `host_down`'s ttl: a node is healed this long after its last metric (plus a sweep).
const HOST_TTL_SECONDS: u64 = 4;
/// How long the probe waits for what it expects (policies loaded, the first scale, the heal).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(45);
/// `kill9` lets `silent` be silent this long before the kill: it went quiet before the crash.
pub(super) const SILENCE_BEFORE_CRASH: Duration = Duration::from_millis(300);
/// The manager's control messages travel on the metrics exchange under this routing key.
const CONTROL_ROUTING_KEY: &str = "manager-riemann";
/// `span` breaches `cpu_high` (threshold 90) with this, and is calm with the other.
const CPU_BREACH: f64 = 97.0;
const CPU_CALM: f64 = 10.0;

/// Which story the probe tells (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeMode {
    AcrossACrash,
    ManagerOutage,
}

/// Where the round is relative to its fault; the fault moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Before,
    During,
    After,
}

/// What the probe saw; [`RulesOutcome::passed`] holds it to the mode's expectations.
#[derive(Debug, Clone, Serialize)]
pub struct RulesOutcome {
    pub mode: ProbeMode,
    /// Scale requests the double received for `span`, refused ones included.
    pub scale_requests: u64,
    /// Scale executions the double created for `span`.
    pub scale_executions: u64,
    /// Scale requests for `span` received after the fault was over.
    pub scale_requests_after_fault: u64,
    /// Heal requests for `silent` and for `alive`.
    pub silent_heals: u64,
    pub alive_heals: u64,
    /// `trigger_failed` events for `span`, and for anything else.
    pub span_triggers_failed: u64,
    pub other_triggers_failed: u64,
    /// For `checkpoint_unwritable`: failed checkpoints on `/metrics`, the log lines that say
    /// so, and whether the checkpoint was written again after the directory came back.
    pub checkpoint_failures: Option<u64>,
    pub checkpoint_failures_logged: Option<u64>,
    pub checkpoint_rewritten: Option<bool>,
}

impl RulesOutcome {
    pub fn passed(&self) -> bool {
        let heals = self.silent_heals == 1 && self.alive_heals == 0;
        let triggers = match self.mode {
            ProbeMode::AcrossACrash => self.scale_requests == 1 && self.span_triggers_failed == 0,
            ProbeMode::ManagerOutage => {
                self.scale_executions == 0
                    && self.scale_requests_after_fault == 0
                    && self.span_triggers_failed == 1
            }
        };
        let checkpoint = match (
            self.checkpoint_failures,
            self.checkpoint_failures_logged,
            self.checkpoint_rewritten,
        ) {
            (None, None, None) => true,
            (Some(failures), Some(logged), Some(rewritten)) => {
                failures > 0 && logged > 0 && rewritten
            }
            _ => false,
        };
        heals && triggers && self.other_triggers_failed == 0 && checkpoint
    }

    pub fn summary(&self) -> String {
        let checkpoint = match (self.checkpoint_failures, self.checkpoint_rewritten) {
            (Some(failures), Some(rewritten)) => format!(
                ", checkpoint failures {failures} (logged {}), rewritten {rewritten}",
                self.checkpoint_failures_logged.unwrap_or(0)
            ),
            _ => String::new(),
        };
        format!(
            "rules: scale requests {} (executions {}, after the fault {}), trigger_failed {} (other {}), heals silent {} alive {}{checkpoint}",
            self.scale_requests,
            self.scale_executions,
            self.scale_requests_after_fault,
            self.span_triggers_failed,
            self.other_triggers_failed,
            self.silent_heals,
            self.alive_heals,
        )
    }
}

/// How the state directory was made unwritable, to undo it.
#[derive(Debug, Clone, Copy)]
enum Unwritable {
    /// `chattr +i`: nothing can be created in it, by root either (whom a chmod does not stop).
    Immutable,
    /// Where `chattr` cannot be used: the directory moved aside and a file put in its place.
    Replaced,
}

/// The round's manager double, the deployments' config directories, the rule state directory
/// and the exchange the rule stage's events go to; and the task that publishes the metrics.
pub(super) struct RulesProbe {
    mode: ProbeMode,
    manager: FakeManager,
    amqp_url: String,
    metrics_exchange: String,
    scale_deployment: String,
    heal_deployment: String,
    root: PathBuf,
    events_exchange: String,
    events_queue: String,
    phase: watch::Sender<Phase>,
    driver: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    fault_over_at: Option<SystemTime>,
    unwritable: Option<Unwritable>,
    restored_at: Option<SystemTime>,
}

impl RulesProbe {
    /// The double, the groups files and the events queue; `root` is the round's own directory.
    pub(super) async fn prepare(
        mode: ProbeMode,
        amqp_url: &str,
        metrics_exchange: &str,
        tag: &str,
        root: PathBuf,
    ) -> anyhow::Result<Self> {
        let manager = FakeManager::start()
            .await
            .context("starting the manager double")?;
        for node in ["span", "silent", "alive"] {
            manager.set_node_state(node, "started");
        }
        let probe = Self {
            mode,
            manager,
            amqp_url: amqp_url.to_owned(),
            metrics_exchange: metrics_exchange.to_owned(),
            scale_deployment: format!("chaos-scale-{tag}"),
            heal_deployment: format!("chaos-heal-{tag}"),
            root,
            events_exchange: format!("sluice-chaos.{tag}.rule-events"),
            events_queue: format!("sluice-chaos.{tag}.rule-events"),
            phase: watch::Sender::new(Phase::Before),
            driver: None,
            fault_over_at: None,
            unwritable: None,
            restored_at: None,
        };
        std::fs::create_dir_all(probe.state_dir())
            .with_context(|| format!("creating {}", probe.state_dir().display()))?;
        for deployment in [&probe.scale_deployment, &probe.heal_deployment] {
            let config_dir = probe.config_dir(deployment);
            std::fs::create_dir_all(&config_dir)
                .with_context(|| format!("creating {}", config_dir.display()))?;
            std::fs::write(
                config_dir.join("groups"),
                scale_and_heal_groups(HOST_TTL_SECONDS),
            )
            .context("writing a groups file")?;
        }
        let (connection, channel) = broker::confirming_channel(amqp_url).await?;
        channel
            .exchange_declare(
                probe.events_exchange.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("declaring the rule events exchange")?;
        channel
            .queue_declare(
                probe.events_queue.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("declaring the rule events queue")?;
        channel
            .queue_bind(
                probe.events_queue.as_str().into(),
                probe.events_exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("binding the rule events queue")?;
        connection.close(200, "declared".into()).await?;
        Ok(probe)
    }

    /// The rule stage's settings for the round's sluice.
    pub(super) fn env(&self, outage: Duration) -> Vec<(String, String)> {
        // Half the outage: the retries give up while the manager is still away.
        let retry_deadline = format!("{}ms", (outage.as_millis() / 2).max(1));
        [
            ("SLUICE_RULES__ENABLED", "true".to_owned()),
            (
                "SLUICE_RULES__STATE_DIR",
                self.state_dir().display().to_string(),
            ),
            ("SLUICE_RULES__SWEEP_INTERVAL", "500ms".to_owned()),
            ("SLUICE_RULES__CHECKPOINT_INTERVAL", "200ms".to_owned()),
            ("SLUICE_RULES__STARTUP_GRACE", "1s".to_owned()),
            (
                "SLUICE_RULES__EVENTS_EXCHANGE",
                self.events_exchange.clone(),
            ),
            ("SLUICE_RULES__EVENTS_ROUTING_KEY", String::new()),
            ("SLUICE_MANAGER__URL", self.manager.url().to_string()),
            ("SLUICE_MANAGER__RETRY_INITIAL_DELAY", "50ms".to_owned()),
            ("SLUICE_MANAGER__RETRY_DEADLINE", retry_deadline),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
    }

    fn state_dir(&self) -> PathBuf {
        self.root.join("rule-state")
    }

    fn config_dir(&self, deployment: &str) -> PathBuf {
        self.root.join(deployment)
    }

    /// Loads both deployments' policies (the manager's `start`, then its `ok` file), starts
    /// the metrics, and in [`ProbeMode::AcrossACrash`] waits for `span`'s scale, so that the
    /// breach is under way before anything else happens.
    pub(super) async fn start(&mut self) -> anyhow::Result<()> {
        let (connection, channel) = broker::confirming_channel(&self.amqp_url).await?;
        for deployment in [&self.scale_deployment, &self.heal_deployment] {
            let config_dir = self.config_dir(deployment);
            let control = json!({"service": "cloudify.configuration", "state": "start",
                                 "config_path": config_dir, "deployment_id": deployment,
                                 "time": now_seconds()});
            publish(
                &channel,
                &self.metrics_exchange,
                CONTROL_ROUTING_KEY,
                control.to_string().as_bytes(),
            )
            .await?;
            let ok_file = config_dir.join("ok");
            wait_until(&format!("{}", ok_file.display()), || ok_file.exists()).await?;
        }
        connection.close(200, "policies loaded".into()).await?;

        let driver = Driver {
            mode: self.mode,
            amqp_url: self.amqp_url.clone(),
            exchange: self.metrics_exchange.clone(),
            scale_deployment: self.scale_deployment.clone(),
            heal_deployment: self.heal_deployment.clone(),
            phase: self.phase.subscribe(),
        };
        self.driver = Some(tokio::spawn(driver.run()));
        if self.mode == ProbeMode::AcrossACrash {
            wait_until("span's scale request", || {
                self.requests_for("scale", "span", None) > 0
            })
            .await?;
        }
        Ok(())
    }

    /// Moves the probe to `phase`; [`Phase::After`] marks the fault's end.
    pub(super) fn enter(&mut self, phase: Phase) {
        if phase == Phase::After {
            self.fault_over_at = Some(SystemTime::now());
        }
        self.phase.send_replace(phase);
    }

    pub(super) fn manager(&mut self) -> &mut FakeManager {
        &mut self.manager
    }

    /// Makes the rule state directory unwritable (see [`Unwritable`]).
    pub(super) async fn make_state_dir_unwritable(&mut self) -> anyhow::Result<()> {
        let dir = self.state_dir();
        if chattr("+i", &dir).await {
            self.unwritable = Some(Unwritable::Immutable);
            return Ok(());
        }
        let aside = dir.with_extension("aside");
        std::fs::rename(&dir, &aside).with_context(|| format!("moving {} aside", dir.display()))?;
        std::fs::write(&dir, b"not a directory")
            .with_context(|| format!("putting a file at {}", dir.display()))?;
        self.unwritable = Some(Unwritable::Replaced);
        Ok(())
    }

    /// Undoes [`Self::make_state_dir_unwritable`].
    pub(super) async fn restore_state_dir(&mut self) -> anyhow::Result<()> {
        let dir = self.state_dir();
        match self
            .unwritable
            .context("the state directory was not made unwritable")?
        {
            Unwritable::Immutable => {
                if !chattr("-i", &dir).await {
                    bail!("chattr -i {} failed", dir.display());
                }
            }
            Unwritable::Replaced => {
                std::fs::remove_file(&dir)
                    .with_context(|| format!("removing the file at {}", dir.display()))?;
                std::fs::rename(dir.with_extension("aside"), &dir)
                    .with_context(|| format!("moving {} back", dir.display()))?;
            }
        }
        self.restored_at = Some(SystemTime::now());
        Ok(())
    }

    /// Waits, bounded, for what the mode expects to have happened (`silent`'s heal, and after
    /// an outage its `trigger_failed`), stops the metrics, and reads the account. `sluice` is
    /// the running process, whose `/metrics` and log tell about checkpoints.
    pub(super) async fn settle(
        &mut self,
        sluice: Option<&SluiceProcess>,
        logs: &[PathBuf],
    ) -> anyhow::Result<RulesOutcome> {
        let (connection, channel) = broker::confirming_channel(&self.amqp_url).await?;
        let mut events = Vec::new();
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            events.extend(take_events(&channel, &self.events_queue).await?);
            let healed = self.requests_for("heal", "silent", None) > 0;
            let failed_seen =
                self.mode != ProbeMode::ManagerOutage || failed_triggers(&events, Some("span")) > 0;
            let rewritten = self.restored_at.is_none() || self.checkpoint_rewritten();
            if (healed && failed_seen && rewritten) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(TICK).await;
        }
        if let Some(driver) = self.driver.take() {
            driver.abort();
            if let Ok(outcome) = driver.await {
                outcome.context("the rules probe's publisher")?;
            }
        }
        events.extend(take_events(&channel, &self.events_queue).await?);
        connection.close(200, "rules probe done".into()).await?;

        let checkpoint = match self.restored_at {
            None => (None, None, None),
            Some(_) => (
                Some(match sluice {
                    Some(sluice) => failed_checkpoints(sluice).await?,
                    None => 0,
                }),
                Some(checkpoint_failures_logged(logs)),
                Some(self.checkpoint_rewritten()),
            ),
        };
        let span_triggers_failed = failed_triggers(&events, Some("span"));
        Ok(RulesOutcome {
            mode: self.mode,
            scale_requests: self.requests_for("scale", "span", None),
            scale_executions: self
                .manager
                .executions()
                .iter()
                .filter(|execution| is_for(execution, "scale", "span"))
                .count() as u64,
            scale_requests_after_fault: self.requests_for("scale", "span", self.fault_over_at),
            silent_heals: self.requests_for("heal", "silent", None),
            alive_heals: self.requests_for("heal", "alive", None),
            span_triggers_failed,
            other_triggers_failed: failed_triggers(&events, None) - span_triggers_failed,
            checkpoint_failures: checkpoint.0,
            checkpoint_failures_logged: checkpoint.1,
            checkpoint_rewritten: checkpoint.2,
        })
    }

    /// The execution requests for `workflow` on `node`, received after `since` if given.
    fn requests_for(&self, workflow: &str, node: &str, since: Option<SystemTime>) -> u64 {
        self.manager
            .execution_posts()
            .iter()
            .filter(|request| since.is_none_or(|since| request.received_at >= since))
            .filter_map(|request| serde_json::from_str::<Value>(&request.body).ok())
            .filter(|body| is_for(body, workflow, node))
            .count() as u64
    }

    /// Whether `rules.json` was written after the state directory came back.
    fn checkpoint_rewritten(&self) -> bool {
        let Some(restored_at) = self.restored_at else {
            return false;
        };
        std::fs::metadata(self.state_dir().join("rules.json"))
            .and_then(|metadata| metadata.modified())
            .is_ok_and(|modified| modified >= restored_at)
    }

    /// Removes what the probe declared, and its directories (a failed round keeps them).
    pub(super) async fn remove(self, channel: &Channel) -> anyhow::Result<()> {
        broker::delete_queue(channel, &self.events_queue).await?;
        broker::delete_exchange(channel, &self.events_exchange).await?;
        std::fs::remove_dir_all(&self.root)
            .with_context(|| format!("removing {}", self.root.display()))
    }
}

/// Publishes every node's metric each [`TICK`], as the phase says.
struct Driver {
    mode: ProbeMode,
    amqp_url: String,
    exchange: String,
    scale_deployment: String,
    heal_deployment: String,
    phase: watch::Receiver<Phase>,
}

impl Driver {
    async fn run(self) -> anyhow::Result<()> {
        let (_connection, channel) = broker::confirming_channel(&self.amqp_url).await?;
        let mut ticks = tokio::time::interval(TICK);
        loop {
            ticks.tick().await;
            let phase = *self.phase.borrow();
            let (span_cpu, silent_reports) = match (self.mode, phase) {
                (ProbeMode::AcrossACrash, Phase::Before) => (CPU_BREACH, true),
                (ProbeMode::AcrossACrash, _) => (CPU_BREACH, false),
                (ProbeMode::ManagerOutage, Phase::Before) => (CPU_CALM, true),
                (ProbeMode::ManagerOutage, Phase::During) => (CPU_BREACH, true),
                (ProbeMode::ManagerOutage, Phase::After) => (CPU_BREACH, false),
            };
            let mut metrics = vec![
                (&self.scale_deployment, "span", "cpu.total.user", span_cpu),
                (&self.heal_deployment, "alive", "memory.used", 1.0),
            ];
            if silent_reports {
                metrics.push((&self.heal_deployment, "silent", "memory.used", 1.0));
            }
            for (deployment, node, path, value) in metrics {
                let body = diamond(deployment, node, path, value);
                publish(&channel, &self.exchange, deployment, &body).await?;
            }
        }
    }
}

/// A Diamond metric of `node` (of the groups file's `nodejs_host`), stamped now.
fn diamond(deployment: &str, node: &str, path: &str, value: f64) -> Vec<u8> {
    let (collector, rest) = path.split_once('.').unwrap_or((path, "value"));
    json!({
        "node_id": node, "node_name": "nodejs_host", "deployment_id": deployment,
        "name": collector, "path": rest.replace('.', "_"), "metric": value,
        "unit": "", "type": "GAUGE", "host": node,
        "service": format!("{deployment}.nodejs_host.{node}.{path}"),
        "time": now_seconds(),
    })
    .to_string()
    .into_bytes()
}

async fn publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .context("publishing a rules probe message")?
        .await
        .context("the broker's confirm of a rules probe message")?;
    if !confirmation.is_ack() {
        bail!("the broker refused a rules probe message");
    }
    Ok(())
}

/// Whether an execution (or its request body) is `workflow` on `node`.
fn is_for(execution: &Value, workflow: &str, node: &str) -> bool {
    execution["workflow_id"] == workflow
        && (execution["parameters"]["node_id"] == node
            || execution["parameters"]["node_instance_id"] == node)
}

/// Every rule event queued so far.
async fn take_events(channel: &Channel, queue: &str) -> anyhow::Result<Vec<Value>> {
    let mut events = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .with_context(|| format!("reading the rule events of {queue}"))?
    {
        events.push(serde_json::from_slice(&message.delivery.data).unwrap_or(Value::Null));
    }
    Ok(events)
}

/// `trigger_failed` events, for `node` or for any node.
fn failed_triggers(events: &[Value], node: Option<&str>) -> u64 {
    events
        .iter()
        .filter(|event| event["event_type"] == "trigger_failed")
        .filter(|event| node.is_none_or(|node| event["context"]["node_id"] == node))
        .count() as u64
}

/// `sluice_rule_checkpoints_total{result="failed"}` on sluice's `/metrics`.
async fn failed_checkpoints(sluice: &SluiceProcess) -> anyhow::Result<u64> {
    let text = reqwest::get(sluice.metrics_url())
        .await
        .context("scraping sluice's /metrics")?
        .text()
        .await
        .context("reading sluice's /metrics")?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(r#"sluice_rule_checkpoints_total{result="failed"} "#))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64))
}

/// The log lines in which the rule stage says a checkpoint could not be written.
fn checkpoint_failures_logged(logs: &[PathBuf]) -> u64 {
    logs.iter()
        .filter_map(|log| std::fs::read_to_string(log).ok())
        .map(|text| {
            text.lines()
                .filter(|line| line.contains("writing the rules checkpoint"))
                .count() as u64
        })
        .sum()
}

/// `chattr <flag> <path>`; whether it worked.
async fn chattr(flag: &str, path: &Path) -> bool {
    tokio::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}

/// Polls `done` every [`TICK`] for at most [`SETTLE_TIMEOUT`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while !done() {
        if Instant::now() > deadline {
            bail!("the rules probe waited {SETTLE_TIMEOUT:?} for {what}");
        }
        tokio::time::sleep(TICK).await;
    }
    Ok(())
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn across_a_crash() -> RulesOutcome {
        RulesOutcome {
            mode: ProbeMode::AcrossACrash,
            scale_requests: 1,
            scale_executions: 1,
            scale_requests_after_fault: 0,
            silent_heals: 1,
            alive_heals: 0,
            span_triggers_failed: 0,
            other_triggers_failed: 0,
            checkpoint_failures: None,
            checkpoint_failures_logged: None,
            checkpoint_rewritten: None,
        }
    }

    fn manager_outage() -> RulesOutcome {
        RulesOutcome {
            mode: ProbeMode::ManagerOutage,
            scale_requests: 3,
            scale_executions: 0,
            span_triggers_failed: 1,
            ..across_a_crash()
        }
    }

    #[test]
    fn a_trigger_lost_or_repeated_or_a_wrong_heal_fails_the_probe() {
        assert!(across_a_crash().passed());
        assert!(manager_outage().passed());
        let crash_failures: [fn(&mut RulesOutcome); 5] = [
            |rules| rules.scale_requests = 2,
            |rules| rules.scale_requests = 0,
            |rules| rules.silent_heals = 0,
            |rules| rules.alive_heals = 1,
            |rules| rules.other_triggers_failed = 1,
        ];
        for fail in crash_failures {
            let mut rules = across_a_crash();
            fail(&mut rules);
            assert!(!rules.passed(), "{rules:?}");
        }
        let outage_failures: [fn(&mut RulesOutcome); 4] = [
            |rules| rules.scale_executions = 1,
            |rules| rules.scale_requests_after_fault = 1,
            |rules| rules.span_triggers_failed = 0,
            |rules| rules.span_triggers_failed = 2,
        ];
        for fail in outage_failures {
            let mut rules = manager_outage();
            fail(&mut rules);
            assert!(!rules.passed(), "{rules:?}");
        }
    }

    #[test]
    fn an_unwritable_checkpoint_must_be_counted_logged_and_written_again() {
        let unwritable = RulesOutcome {
            checkpoint_failures: Some(3),
            checkpoint_failures_logged: Some(3),
            checkpoint_rewritten: Some(true),
            ..across_a_crash()
        };
        assert!(unwritable.passed());
        for (failures, logged, rewritten) in [(0, 3, true), (3, 0, true), (3, 3, false)] {
            let rules = RulesOutcome {
                checkpoint_failures: Some(failures),
                checkpoint_failures_logged: Some(logged),
                checkpoint_rewritten: Some(rewritten),
                ..across_a_crash()
            };
            assert!(!rules.passed(), "{rules:?}");
        }
    }
}
