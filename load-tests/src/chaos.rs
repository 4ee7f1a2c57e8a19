//! Chaos rounds: a live, confirmed load into a real sluice, one fault at a seeded random moment,
//! and an exact account afterwards of what was published, stored, lost, duplicated,
//! dead-lettered and left behind in the queue.
//!
//! Every message is individually identifiable: message `i` carries `metric = i` and
//! `time = base + i` seconds, on one series. So each confirmed publish should become exactly one
//! point, whose value names the message.
//!
//! What can and cannot be seen: InfluxDB keys a point by (series, timestamp), and the timestamp
//! comes from the message, so a redelivery (after a kill or a severed channel) overwrites its
//! own point: that is the at-least-once design working, and it leaves no trace in the store.
//! Rows minus distinct ids (`duplicates`) therefore counts only copies written under another
//! key, e.g. a message stamped with its receive time instead of its own. Lost messages are
//! exact: confirmed ids with no point (`missing`).
//!
//! A fault is one [`Fault`] variant; a new one (broker restart, InfluxDB kill or stall) is a
//! variant and its arm in [`Fault::inject`].

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::broker;
use crate::sluice_process::{SluiceProcess, free_loopback_address};

/// How long a (re)started sluice gets to consume.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often InfluxDB is asked whether writes resumed, or the drain is done.
const POLL: Duration = Duration::from_millis(50);
/// The routing key of the load (sluice binds `#`).
const ROUTING_KEY: &str = "chaos";
/// The measurement the load's bodies become (`service` after `<deployment>.<node>.<node_id>.`,
/// with the default template `measurement*`).
const MEASUREMENT: &str = "chaos.id";

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
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill9 => "kill9",
            Self::CloseConnection => "close_connection",
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        match text {
            "kill9" => Ok(Self::Kill9),
            "close_connection" => Ok(Self::CloseConnection),
            other => bail!("unknown fault {other:?} (kill9, close_connection)"),
        }
    }

    /// Injects the fault into the running `sluice`, leaving a sluice that is meant to recover
    /// (a new process for [`Fault::Kill9`]).
    ///
    /// Returns when the fault took effect and how many messages had been published by then
    /// (read from `published`): the kill itself, not the restart after it, so that the
    /// recovery time includes sluice's start; the broker's close, not the listing before it.
    async fn inject(
        self,
        sluice: &mut Option<SluiceProcess>,
        launch: &Launch,
        published: &tokio::sync::watch::Receiver<u64>,
    ) -> anyhow::Result<(Instant, u64)> {
        let effect = match self {
            Self::Kill9 => {
                let process = sluice.take().context("no sluice to kill")?;
                process.kill().await?;
                let effect = (Instant::now(), *published.borrow());
                let mut restarted = launch.spawn("restarted")?;
                restarted.wait_until_consuming(START_TIMEOUT).await?;
                *sluice = Some(restarted);
                effect
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
                (Instant::now(), *published.borrow())
            }
        };
        Ok(effect)
    }
}

/// A chaos scenario file (`load-tests/scenarios/chaos-*.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosScenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub faults: Vec<Fault>,
    /// Rounds of each fault.
    pub rounds: u32,
    /// Messages published per round.
    pub messages: u64,
    /// Messages per second.
    pub rate: f64,
    /// The fault comes after a random share of the messages in this range, e.g. `[0.2, 0.7]`.
    pub fault_window: [f64; 2],
    /// How long the drain may take after the last publish.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// sluice settings for every round.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl ChaosScenario {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let scenario: Self =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let [low, high] = self.fault_window;
        if !(0.0..1.0).contains(&low) || !(low..1.0).contains(&high) {
            bail!(
                "fault_window must be 0 <= low <= high < 1, not {:?}",
                self.fault_window
            );
        }
        if self.messages < 10 || self.rate <= 0.0 || self.rounds == 0 || self.faults.is_empty() {
            bail!("a chaos scenario needs faults, rounds, at least 10 messages and a rate");
        }
        Ok(())
    }
}

/// The services and the sluice binary.
#[derive(Debug, Clone)]
pub struct ChaosEnvironment {
    pub sluice_bin: PathBuf,
    pub amqp_url: String,
    pub influx_url: String,
    pub work_dir: PathBuf,
}

/// What one round saw.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    pub fault: Fault,
    pub round: u32,
    pub seed: u64,
    /// The fault was injected after this many publishes...
    pub fault_after: u64,
    /// ...and took effect after this many (`rabbitmqctl` takes a second or two).
    pub fault_effect_after: u64,
    pub published: u64,
    /// Publishes the broker confirmed.
    pub confirmed: u64,
    /// Distinct ids in InfluxDB.
    pub stored: u64,
    /// Confirmed ids with no point.
    pub missing: u64,
    /// Rows beyond one per id (see the module's note on what this can see).
    pub duplicates: u64,
    pub dead_lettered: u64,
    /// Messages in sluice's queue once it stopped cleanly (ready; nothing can stay unacked
    /// without a consumer, which `consumers_left` checks).
    pub left_in_queue: u64,
    pub consumers_left: u32,
    /// From the fault to the first point of a message published after it, in seconds.
    pub recovery_seconds: Option<f64>,
    pub log: PathBuf,
}

impl RoundReport {
    pub fn passed(&self) -> bool {
        self.missing == 0
            && self.left_in_queue == 0
            && self.consumers_left == 0
            && self.recovery_seconds.is_some()
    }

    pub fn line(&self) -> String {
        let recovery = self
            .recovery_seconds
            .map_or_else(|| "never".to_owned(), |seconds| format!("{seconds:.2}s"));
        format!(
            "{} round {} seed {}: fault after {} (in effect after {})/{}, confirmed {}, stored {}, missing {}, duplicates {}, dead-lettered {}, left in queue {}, recovery {recovery}: {}",
            self.fault.name(),
            self.round,
            self.seed,
            self.fault_after,
            self.fault_effect_after,
            self.published,
            self.confirmed,
            self.stored,
            self.missing,
            self.duplicates,
            self.dead_lettered,
            self.left_in_queue,
            if self.passed() { "pass" } else { "FAIL" },
        )
    }
}

/// The rounds of one fault, summed.
#[derive(Debug, Clone, Serialize)]
pub struct FaultSummary {
    pub fault: Fault,
    pub rounds: usize,
    pub passed: usize,
    pub messages: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
    pub left_in_queue: u64,
    /// The worst recovery; `None` when a round never recovered.
    pub worst_recovery_seconds: Option<f64>,
}

pub fn summarise(rounds: &[RoundReport]) -> Vec<FaultSummary> {
    let mut faults: Vec<Fault> = rounds.iter().map(|round| round.fault).collect();
    faults.sort();
    faults.dedup();
    faults
        .into_iter()
        .map(|fault| {
            let of_fault: Vec<&RoundReport> =
                rounds.iter().filter(|round| round.fault == fault).collect();
            let never = of_fault
                .iter()
                .any(|round| round.recovery_seconds.is_none());
            FaultSummary {
                fault,
                rounds: of_fault.len(),
                passed: of_fault.iter().filter(|round| round.passed()).count(),
                messages: of_fault.iter().map(|round| round.confirmed).sum(),
                missing: of_fault.iter().map(|round| round.missing).sum(),
                duplicates: of_fault.iter().map(|round| round.duplicates).sum(),
                dead_lettered: of_fault.iter().map(|round| round.dead_lettered).sum(),
                left_in_queue: of_fault.iter().map(|round| round.left_in_queue).sum(),
                worst_recovery_seconds: (!never).then(|| {
                    of_fault
                        .iter()
                        .filter_map(|round| round.recovery_seconds)
                        .fold(0.0, f64::max)
                }),
            }
        })
        .collect()
}

/// The table printed after a run.
pub fn table(summaries: &[FaultSummary]) -> String {
    let mut text = format!(
        "{:<17} {:>6} {:>6} {:>9} {:>8} {:>10} {:>13} {:>8} {:>15}\n",
        "fault",
        "rounds",
        "passed",
        "messages",
        "missing",
        "duplicates",
        "dead-lettered",
        "in queue",
        "worst recovery"
    );
    for summary in summaries {
        let recovery = summary
            .worst_recovery_seconds
            .map_or_else(|| "never".to_owned(), |seconds| format!("{seconds:.2}s"));
        text.push_str(&format!(
            "{:<17} {:>6} {:>6} {:>9} {:>8} {:>10} {:>13} {:>8} {:>15}\n",
            summary.fault.name(),
            summary.rounds,
            summary.passed,
            summary.messages,
            summary.missing,
            summary.duplicates,
            summary.dead_lettered,
            summary.left_in_queue,
            recovery
        ));
    }
    text
}

/// The seed of round `round` (from 0) of a run seeded with `seed`: `--seed <it> --rounds 1`
/// replays that round alone.
pub fn round_seed(seed: u64, round: u32) -> u64 {
    seed.wrapping_add(u64::from(round))
}

/// Runs `rounds` rounds of each of `faults`, calling `on_round` after each.
pub async fn run(
    environment: &ChaosEnvironment,
    scenario: &ChaosScenario,
    seed: u64,
    mut on_round: impl FnMut(&RoundReport),
) -> anyhow::Result<Vec<RoundReport>> {
    let mut reports = Vec::new();
    for &fault in &scenario.faults {
        for round in 0..scenario.rounds {
            let report =
                run_round(environment, scenario, fault, round, round_seed(seed, round)).await?;
            on_round(&report);
            reports.push(report);
        }
    }
    Ok(reports)
}

/// The broker and InfluxDB names of one round, and how to start its sluice.
struct Launch {
    binary: PathBuf,
    env: Vec<(String, String)>,
    log_stem: PathBuf,
    exchange: String,
    queue: String,
    dead_letter_exchange: String,
    dead_letter_queue: String,
    database: String,
}

impl Launch {
    fn spawn(&self, which: &str) -> anyhow::Result<SluiceProcess> {
        let log = self.log_stem.with_extension(format!("{which}.log"));
        SluiceProcess::spawn(&self.binary, &self.env, free_loopback_address()?, &log)
    }
}

/// One round: a fresh sluice, the load with the fault in it, the drain, the count.
pub async fn run_round(
    environment: &ChaosEnvironment,
    scenario: &ChaosScenario,
    fault: Fault,
    round: u32,
    seed: u64,
) -> anyhow::Result<RoundReport> {
    let mut rng = StdRng::seed_from_u64(seed);
    let [low, high] = scenario.fault_window;
    let share = rng.random_range(low..=high);
    let fault_after = ((scenario.messages as f64 * share) as u64).max(1);

    std::fs::create_dir_all(&environment.work_dir)
        .with_context(|| format!("creating {}", environment.work_dir.display()))?;
    let tag = format!("{}_{}_{round}_{seed}", std::process::id(), fault.name());
    let launch = Launch {
        binary: environment.sluice_bin.clone(),
        env: Vec::new(),
        log_stem: environment.work_dir.join(format!("chaos-{tag}")),
        exchange: format!("sluice-chaos.{tag}.monitoring"),
        queue: format!("sluice-chaos.{tag}.metrics"),
        dead_letter_exchange: format!("sluice-chaos.{tag}.dead-letter"),
        dead_letter_queue: format!("sluice-chaos.{tag}.dead-letter"),
        database: format!("sluice_chaos_{tag}"),
    };
    let mut env: Vec<(String, String)> = [
        ("SLUICE_AMQP__URL", environment.amqp_url.clone()),
        ("SLUICE_INFLUX__URL", environment.influx_url.clone()),
        ("SLUICE_INFLUX__DATABASE", launch.database.clone()),
        ("SLUICE_METRICS__EXCHANGE", launch.exchange.clone()),
        ("SLUICE_METRICS__QUEUE", launch.queue.clone()),
        (
            "SLUICE_DEAD_LETTER__EXCHANGE",
            launch.dead_letter_exchange.clone(),
        ),
        (
            "SLUICE_DEAD_LETTER__QUEUE",
            launch.dead_letter_queue.clone(),
        ),
        // The metrics path alone: the events path would wait for an Elasticsearch.
        ("SLUICE_EVENTS__ENABLED", "false".to_owned()),
        ("SLUICE_RULES__ENABLED", "false".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    env.extend(scenario.env.clone());
    let launch = Launch { env, ..launch };

    let (connection, channel) = broker::confirming_channel(&environment.amqp_url).await?;
    // Declared first, so that what is published while sluice is down (after the kill) is queued.
    broker::declare_metrics_queue(&channel, &launch.exchange, &launch.queue).await?;
    let influx = Influx::new(&environment.influx_url, &launch.database);

    let mut first = launch.spawn("first")?;
    first.wait_until_consuming(START_TIMEOUT).await?;
    let log = first.log.clone();
    let mut sluice = Some(first);

    let base_seconds = now_seconds() - 2 * 86_400;
    let (published_tx, mut published_rx) = tokio::sync::watch::channel(0_u64);
    let (fault_tx, fault_rx) = tokio::sync::watch::channel(None);
    let publisher = tokio::spawn(publish_load(
        channel.clone(),
        launch.exchange.clone(),
        scenario.messages,
        scenario.rate,
        base_seconds,
        published_tx,
        fault_rx,
    ));

    published_rx
        .wait_for(|published| *published >= fault_after)
        .await
        .context("the publisher stopped before the fault")?;
    let started_fault = Instant::now();
    let (fault_at, first_after) = fault.inject(&mut sluice, &launch, &published_rx).await?;
    // Ids from `first_after` on were published after the fault took effect: the first of them
    // stored means writes resumed (and not just a batch sluice held before the fault landing
    // late). The publisher goes on until enough of them are out, however long the fault took.
    fault_tx.send_replace(Some(first_after));
    let recovery_deadline = started_fault + START_TIMEOUT + scenario.drain_timeout;
    let recovery = loop {
        if influx.count_from(first_after).await? > 0 {
            break Some(fault_at.elapsed());
        }
        if Instant::now() > recovery_deadline {
            break None;
        }
        tokio::time::sleep(POLL).await;
    };

    let (published, confirmed) = publisher.await.context("the publisher panicked")??;
    drop(fault_tx);
    // The drain: every confirmed id stored, or the bounded wait is over (then they are missing).
    let drain_deadline = Instant::now() + scenario.drain_timeout;
    while influx.count_from(0).await? < confirmed.len() as u64 && Instant::now() < drain_deadline {
        tokio::time::sleep(POLL).await;
    }
    // SIGTERM: sluice flushes and acks what it holds, so what the queue still has afterwards
    // was neither written nor dead-lettered.
    if let Some(process) = sluice.take() {
        process.stop().await?;
    }

    let (left_in_queue, consumers_left) = queue_state(&channel, &launch.queue).await?;
    // sluice declares its dead-letter queue when it starts, so it exists by now.
    let dead_lettered = u64::from(queue_state(&channel, &launch.dead_letter_queue).await?.0);
    let values = influx.all_ids().await?;
    let stored: HashSet<u64> = values.iter().copied().collect();
    let missing = confirmed.iter().filter(|id| !stored.contains(id)).count() as u64;
    let report = RoundReport {
        fault,
        round,
        seed,
        fault_after,
        fault_effect_after: first_after,
        published,
        confirmed: confirmed.len() as u64,
        stored: stored.len() as u64,
        missing,
        duplicates: (values.len() - stored.len()) as u64,
        dead_lettered,
        left_in_queue: u64::from(left_in_queue),
        consumers_left,
        recovery_seconds: recovery.map(|elapsed| elapsed.as_secs_f64()),
        log,
    };
    // A failed round keeps its queue and database for a look; a passed one leaves nothing.
    if report.passed() {
        for queue in [&launch.queue, &launch.dead_letter_queue] {
            broker::delete_queue(&channel, queue).await?;
        }
        for exchange in [&launch.exchange, &launch.dead_letter_exchange] {
            broker::delete_exchange(&channel, exchange).await?;
        }
        influx.drop_database().await?;
    }
    connection.close(200, "chaos round done".into()).await?;
    Ok(report)
}

/// Publishes messages `0, 1, ..` at `rate` per second with confirms pipelined, announcing each
/// publish on `published`: at least `messages`, and at least a tenth of that (20 at least) after
/// the id that `fault` names once the fault took effect, so that there is a load to recover. A
/// dropped `fault` sender (the round gave up) stops it. Returns how many it published and the
/// ids the broker confirmed.
async fn publish_load(
    channel: Channel,
    exchange: String,
    messages: u64,
    rate: f64,
    base_seconds: u64,
    published: tokio::sync::watch::Sender<u64>,
    fault: tokio::sync::watch::Receiver<Option<u64>>,
) -> anyhow::Result<(u64, Vec<u64>)> {
    let after_fault = (messages / 10).max(20);
    let more = |id: u64| {
        if fault.has_changed().is_err() {
            return false;
        }
        match *fault.borrow() {
            None => true,
            Some(first_after) => id < messages.max(first_after + after_fault),
        }
    };
    let started = tokio::time::Instant::now();
    let mut unconfirmed = FuturesUnordered::new();
    let mut confirmed = Vec::new();
    let mut id = 0;
    while more(id) {
        // The intended send time: a publisher that falls behind catches up rather than drifts.
        let due = started + Duration::from_secs_f64(id as f64 / rate);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(due) => break,
                Some((id, confirmation)) = unconfirmed.next(), if !unconfirmed.is_empty() => {
                    if acked(confirmation) {
                        confirmed.push(id);
                    }
                }
            }
        }
        let body = diamond_body(id, base_seconds);
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                ROUTING_KEY.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .context("publishing")?;
        unconfirmed.push(async move { (id, confirm.await) });
        id += 1;
        published.send_replace(id);
    }
    while let Some((id, confirmation)) = unconfirmed.next().await {
        if acked(confirmation) {
            confirmed.push(id);
        }
    }
    Ok((id, confirmed))
}

fn acked(confirmation: lapin::Result<lapin::Confirmation>) -> bool {
    confirmation.is_ok_and(|confirmation| confirmation.is_ack())
}

/// Message `id`: its value and its own timestamp name it.
pub fn diamond_body(id: u64, base_seconds: u64) -> String {
    serde_json::json!({
        "node_id": "chaos_host",
        "node_name": "chaos_host",
        "deployment_id": "chaos",
        "name": "id",
        "path": "",
        "metric": id,
        "unit": "",
        "type": "GAUGE",
        "host": "chaos_host",
        "service": "chaos.chaos_host.chaos_host.chaos.id",
        "time": base_seconds + id,
    })
    .to_string()
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Ready messages and consumers of `queue`.
async fn queue_state(channel: &Channel, queue: &str) -> anyhow::Result<(u32, u32)> {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let declared = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .with_context(|| format!("looking at the queue {queue}"))?;
    Ok((declared.message_count(), declared.consumer_count()))
}

/// The round's database, through InfluxDB's 1.x query API.
struct Influx {
    client: reqwest::Client,
    url: String,
    database: Arc<str>,
}

impl Influx {
    fn new(url: &str, database: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            url: format!("{}/query", url.trim_end_matches('/')),
            database: database.into(),
        }
    }

    async fn query(&self, statement: &str) -> anyhow::Result<serde_json::Value> {
        let response = self
            .client
            .post(&self.url)
            .query(&[("db", &*self.database), ("q", statement)])
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("asking InfluxDB {statement:?}"))?;
        let status = response.status();
        let json: serde_json::Value = response.json().await.context("InfluxDB's answer")?;
        if !status.is_success() || json["results"][0].get("error").is_some() {
            bail!("InfluxDB answered {status} to {statement:?}: {json}");
        }
        Ok(json)
    }

    /// Points whose id is at least `from` (0 while the database does not exist yet).
    async fn count_from(&self, from: u64) -> anyhow::Result<u64> {
        let statement = format!("SELECT count(value) FROM \"{MEASUREMENT}\" WHERE value >= {from}");
        match self.query(&statement).await {
            Ok(json) => Ok(json["results"][0]["series"][0]["values"][0][1]
                .as_u64()
                .unwrap_or(0)),
            Err(error) if error.to_string().contains("database not found") => Ok(0),
            Err(error) => Err(error),
        }
    }

    /// Every row's id, duplicates included.
    async fn all_ids(&self) -> anyhow::Result<Vec<u64>> {
        let json = self
            .query(&format!("SELECT value FROM \"{MEASUREMENT}\""))
            .await?;
        let Some(rows) = json["results"][0]["series"][0]["values"].as_array() else {
            return Ok(Vec::new());
        };
        rows.iter()
            .map(|row| {
                row[1]
                    .as_f64()
                    .map(|value| value as u64)
                    .with_context(|| format!("a row without a value: {row}"))
            })
            .collect()
    }

    async fn drop_database(&self) -> anyhow::Result<()> {
        self.query(&format!("DROP DATABASE \"{}\"", self.database))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_that_lost_a_message_fails() {
        let mut report = RoundReport {
            fault: Fault::Kill9,
            round: 0,
            seed: 1,
            fault_after: 5,
            fault_effect_after: 6,
            published: 10,
            confirmed: 10,
            stored: 10,
            missing: 0,
            duplicates: 0,
            dead_lettered: 0,
            left_in_queue: 0,
            consumers_left: 0,
            recovery_seconds: Some(1.0),
            log: PathBuf::new(),
        };
        assert!(report.passed());
        report.missing = 1;
        assert!(!report.passed());
        report.missing = 0;
        report.left_in_queue = 1;
        assert!(!report.passed());
        report.left_in_queue = 0;
        report.recovery_seconds = None;
        assert!(!report.passed());
        let summary = summarise(&[report]);
        assert_eq!(summary[0].worst_recovery_seconds, None);
    }

    #[test]
    fn faults_parse_as_the_scenario_names_them() {
        for fault in [Fault::Kill9, Fault::CloseConnection] {
            assert_eq!(Fault::parse(fault.name()).ok(), Some(fault));
        }
        assert!(Fault::parse("kill").is_err());
    }
}
