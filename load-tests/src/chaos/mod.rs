//! Chaos rounds: a live, confirmed load into a real sluice (metrics into the real InfluxDB,
//! manager events into the Elasticsearch double), one fault at a seeded random moment, and an
//! exact account afterwards of what was published, stored, lost, duplicated, dead-lettered and
//! left behind in the queues.
//!
//! - [`load`]: the load, in which every message is individually identifiable, a seeded share
//!   of it malformed;
//! - [`fault`]: the faults ([`Fault`]), each a variant and its arm in `Fault::inject`;
//! - [`count`]: the account: ids in InfluxDB, queue depths, dead letters with their ids;
//! - [`rules`]: in the rounds of the faults that touch the rule stage, the manager's policies
//!   loaded and breached at known moments, and what reached the manager double;
//! - [`secrets`]: the secrets each sluice is given, searched for in what it printed;
//! - [`report`]: what a round saw, whether it passed, and the run's table.
//!
//! What can and cannot be seen: InfluxDB keys a point by (series, timestamp), and the timestamp
//! comes from the message, so a redelivery (after a kill or a severed channel) overwrites its
//! own point: that is the at-least-once design working, and it leaves no trace in the store.
//! Rows minus distinct ids (`duplicates`) therefore counts only copies written under another
//! key, e.g. a message stamped with its receive time instead of its own. Lost messages are
//! exact: confirmed ids with no point (`missing`), and confirmed malformed ids with no dead
//! letter (`malformed_missing`), and confirmed events with no document (`events_missing`).
//! Events are exact about copies too: a document's `_id` is a hash of the delivery, so a
//! redelivery is refused as a conflict, and a second document for one event
//! (`events_stored_twice`) is a real duplicate. A malformed message may be dead-lettered twice (sluice died
//! between the dead letter's confirm and the ack): that is counted in `dead_lettered` and is
//! not a loss.

mod count;
mod fault;
mod load;
mod report;
mod rules;
mod secrets;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use sluice_testing::elasticsearch::FakeElasticsearch;
use sluice_testing::influx::PrivateInflux;

pub use fault::Fault;
pub use load::BadKind;
pub use report::{FaultSummary, RoundReport, summarise, table};
pub use rules::{ProbeMode, RulesOutcome};

use crate::broker;
use crate::sluice_process::{SluiceProcess, free_loopback_address};
use count::{Influx, event_ids, queue_state, take_dead_letters};
use load::{LoadPlan, publish_load};
use rules::RulesProbe;
use secrets::Secrets;

/// How long a (re)started sluice gets to consume.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often InfluxDB is asked whether writes resumed, or the drain is done.
const POLL: Duration = Duration::from_millis(50);

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
    /// How long a restarted service (the broker, InfluxDB) stays down.
    #[serde(with = "humantime_serde", default = "default_outage")]
    pub outage: Duration,
    /// How long `influx_stall` holds InfluxDB.
    #[serde(with = "humantime_serde", default = "default_stall")]
    pub stall: Duration,
    /// The most sluice's peak RSS may be by the end of a stall, in MiB.
    #[serde(default = "default_max_stall_rss_mib")]
    pub max_stall_rss_mib: f64,
    /// How long `es_down` and `es_429` last.
    #[serde(with = "humantime_serde", default = "default_es_outage")]
    pub es_outage: Duration,
    /// The share of items the Elasticsearch double answers 429 during `es_429`.
    #[serde(default = "default_es_429_share")]
    pub es_429_share: f64,
    /// The share of the metric messages that are malformed (0 to 1).
    #[serde(default)]
    pub malformed_share: f64,
    /// sluice settings for every round.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_outage() -> Duration {
    Duration::from_secs(5)
}

fn default_stall() -> Duration {
    Duration::from_secs(60)
}

fn default_es_outage() -> Duration {
    Duration::from_secs(60)
}

fn default_es_429_share() -> f64 {
    0.3
}

fn default_max_stall_rss_mib() -> f64 {
    64.0
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

    /// A scenario with the given essentials and every optional setting at its default.
    pub fn new(name: &str, faults: Vec<Fault>, rounds: u32, messages: u64, rate: f64) -> Self {
        Self {
            name: name.to_owned(),
            description: String::new(),
            faults,
            rounds,
            messages,
            rate,
            fault_window: [0.2, 0.7],
            drain_timeout: Duration::from_secs(60),
            outage: default_outage(),
            stall: default_stall(),
            max_stall_rss_mib: default_max_stall_rss_mib(),
            es_outage: default_es_outage(),
            es_429_share: default_es_429_share(),
            malformed_share: 0.0,
            env: BTreeMap::new(),
        }
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
        if !(0.0..=1.0).contains(&self.es_429_share) {
            bail!(
                "es_429_share must be 0 <= share <= 1, not {}",
                self.es_429_share
            );
        }
        if !(0.0..1.0).contains(&self.malformed_share) {
            bail!(
                "malformed_share must be 0 <= share < 1, not {}",
                self.malformed_share
            );
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
    let secrets = Secrets::create(&environment.amqp_url, &environment.work_dir).await?;
    let mut reports = Vec::new();
    let mut outcome = Ok(());
    'faults: for &fault in &scenario.faults {
        for round in 0..scenario.rounds {
            let seed = round_seed(seed, round);
            match run_round(environment, scenario, &secrets, fault, round, seed).await {
                Ok(report) => {
                    on_round(&report);
                    reports.push(report);
                }
                Err(error) => {
                    outcome = Err(error.context(format!(
                        "{} round {round} (seed {seed}) could not run",
                        fault.name()
                    )));
                    break 'faults;
                }
            }
        }
    }
    // The run's broker user goes whatever happened.
    secrets.remove().await?;
    outcome.map(|()| reports)
}

/// The broker and InfluxDB names of one round, and how to start its sluice.
struct Launch {
    binary: PathBuf,
    env: Vec<(String, String)>,
    log_stem: PathBuf,
}

impl Launch {
    fn log(&self, which: &str) -> PathBuf {
        self.log_stem.with_extension(format!("{which}.log"))
    }

    fn spawn(&self, which: &str) -> anyhow::Result<SluiceProcess> {
        SluiceProcess::spawn(
            &self.binary,
            &self.env,
            free_loopback_address()?,
            &self.log(which),
        )
    }

    /// Every log a round's sluice may have written.
    fn logs(&self) -> Vec<PathBuf> {
        ["first", "restarted"]
            .into_iter()
            .map(|which| self.log(which))
            .collect()
    }
}

/// One round: a fresh sluice, the load with the fault in it, the drain, the count.
async fn run_round(
    environment: &ChaosEnvironment,
    scenario: &ChaosScenario,
    secrets: &Secrets,
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
    let exchange = format!("sluice-chaos.{tag}.monitoring");
    let queue = format!("sluice-chaos.{tag}.metrics");
    let dead_letter_exchange = format!("sluice-chaos.{tag}.dead-letter");
    let dead_letter_queue = format!("sluice-chaos.{tag}.dead-letter");
    let database = format!("sluice_chaos_{tag}");
    let events_exchange = format!("sluice-chaos.{tag}.events");
    let events_queue = format!("sluice-chaos.{tag}.events");
    let mut es = FakeElasticsearch::start().await;

    // A fault that kills or stalls InfluxDB gets one of its own, so the shared one stays up.
    let mut private_influx = if fault.needs_private_influx() {
        Some(PrivateInflux::start().await)
    } else {
        None
    };
    let influx_url = private_influx
        .as_ref()
        .map_or_else(|| environment.influx_url.clone(), PrivateInflux::url);

    let mut env: Vec<(String, String)> = [
        ("SLUICE_INFLUX__URL", influx_url.clone()),
        ("SLUICE_INFLUX__DATABASE", database.clone()),
        ("SLUICE_METRICS__EXCHANGE", exchange.clone()),
        ("SLUICE_METRICS__QUEUE", queue.clone()),
        ("SLUICE_DEAD_LETTER__EXCHANGE", dead_letter_exchange.clone()),
        ("SLUICE_DEAD_LETTER__QUEUE", dead_letter_queue.clone()),
        ("SLUICE_EVENTS__ENABLED", "true".to_owned()),
        ("SLUICE_EVENTS__MANAGER", "4.x".to_owned()),
        (
            "SLUICE_EVENTS__EXCHANGES",
            format!(r#"["{events_exchange}"]"#),
        ),
        ("SLUICE_EVENTS__QUEUES", format!(r#"["{events_queue}"]"#)),
        ("SLUICE_ELASTICSEARCH__URL", es.url().to_string()),
        ("SLUICE_RULES__ENABLED", "false".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    let mut rules = match fault.rules_probe() {
        Some(mode) => {
            let root = environment.work_dir.join(format!("chaos-{tag}-rules"));
            let probe =
                RulesProbe::prepare(mode, &environment.amqp_url, &exchange, &tag, root).await?;
            env.retain(|(key, _)| key != "SLUICE_RULES__ENABLED");
            env.extend(probe.env(scenario.outage));
            Some(probe)
        }
        None => None,
    };
    env.extend(secrets.env());
    env.extend(scenario.env.clone());
    let launch = Launch {
        binary: environment.sluice_bin.clone(),
        env,
        log_stem: environment.work_dir.join(format!("chaos-{tag}")),
    };

    let plan = LoadPlan {
        amqp_url: environment.amqp_url.clone(),
        exchange: exchange.clone(),
        queue: queue.clone(),
        events_exchange: events_exchange.clone(),
        messages: scenario.messages,
        rate: scenario.rate,
        base_seconds: now_seconds() - 2 * 86_400,
        malformed_share: scenario.malformed_share,
        seed: rng.random(),
    };
    {
        // Declared first, so that what is published while sluice is down (after the kill) is
        // queued, and so that sluice finds the events exchange to bind its queue to.
        let (connection, channel) = broker::confirming_channel(&environment.amqp_url).await?;
        load::declare_topology(&channel, &plan).await?;
        connection.close(200, "declared".into()).await?;
    }
    let influx = Influx::new(&influx_url, &database);

    let mut first = launch.spawn("first")?;
    first.wait_until_consuming(START_TIMEOUT).await?;
    let log = first.log.clone();
    let mut sluice = Some(first);
    if let Some(rules) = rules.as_mut() {
        rules.start().await?;
    }

    let (published_tx, mut published_rx) = tokio::sync::watch::channel(0_u64);
    let (fault_tx, fault_rx) = tokio::sync::watch::channel(None);
    let publisher = tokio::spawn(publish_load(plan, published_tx, fault_rx));

    published_rx
        .wait_for(|published| *published >= fault_after)
        .await
        .context("the publisher stopped before the fault")?;
    let effect = fault
        .inject(fault::Target {
            sluice: &mut sluice,
            launch: &launch,
            influx: private_influx.as_mut(),
            es: &mut es,
            rules: rules.as_mut(),
            published: &published_rx,
            durations: fault::FaultDurations {
                outage: scenario.outage,
                stall: scenario.stall,
                es_outage: scenario.es_outage,
                es_429_share: scenario.es_429_share,
            },
        })
        .await?;
    let first_after = effect.published_before;
    // Ids from `first_after` on were published after the fault was over: the first of them
    // stored, a point and a document, means both paths write again (and not just a batch
    // sluice held before the fault landing late). The publisher goes on until enough of them
    // are out, however long the fault took.
    fault_tx.send_replace(Some(first_after));
    let recovery_deadline = Instant::now() + START_TIMEOUT + scenario.drain_timeout;
    let recovery = loop {
        if influx.count_from(first_after).await? > 0
            && event_ids(&es).iter().any(|&id| id >= first_after)
        {
            break Some(effect.at.elapsed());
        }
        if Instant::now() > recovery_deadline {
            break None;
        }
        tokio::time::sleep(POLL).await;
    };

    let load = publisher.await.context("the publisher panicked")??;
    drop(fault_tx);
    // Before the drain, so that the probe's last metrics are drained too.
    let rules_outcome = match rules.as_mut() {
        Some(rules) => Some(rules.settle(sluice.as_ref(), &launch.logs()).await?),
        None => None,
    };
    // A new connection: the round's first may not have survived the fault.
    let (connection, channel) = broker::confirming_channel(&environment.amqp_url).await?;
    // The drain: every confirmed good id stored and nothing ready in the queue, or the bounded
    // wait is over (then they are missing, or left in the queue). Stored ids alone would not
    // do: after a broker restart the queue can hand out again what sluice wrote and acked just
    // before it, when the acks did not reach the disk.
    let drain_deadline = Instant::now() + scenario.drain_timeout;
    while Instant::now() < drain_deadline
        && (influx.count_from(0).await? < load.confirmed_good.len() as u64
            || event_ids(&es).len() < load.confirmed_events.len()
            || queue_state(&channel, &queue).await?.0 > 0
            || queue_state(&channel, &events_queue).await?.0 > 0)
    {
        tokio::time::sleep(POLL).await;
    }
    // SIGTERM: sluice flushes and acks what it holds, so what the queue still has afterwards
    // was neither written nor dead-lettered.
    if let Some(process) = sluice.take() {
        process.stop().await?;
    }

    let (left_in_queue, consumers_left) = queue_state(&channel, &queue).await?;
    let (events_left_in_queue, events_consumers_left) =
        queue_state(&channel, &events_queue).await?;
    // sluice declares its dead-letter queue when it starts, so it exists by now.
    let dead_letters = take_dead_letters(&channel, &dead_letter_queue).await?;
    let reasons: HashMap<u64, Vec<Option<&str>>> =
        dead_letters
            .iter()
            .fold(HashMap::new(), |mut reasons, letter| {
                if let Some(id) = letter.id {
                    reasons
                        .entry(id)
                        .or_default()
                        .push(letter.reason.as_deref());
                }
                reasons
            });
    let malformed_missing = load
        .confirmed_bad
        .iter()
        .filter(|(id, _)| !reasons.contains_key(id))
        .count() as u64;
    let wrong_reasons = load
        .confirmed_bad
        .iter()
        .filter_map(|(id, kind)| Some((reasons.get(id)?, kind.reason()?)))
        .map(|(seen, expected)| seen.iter().filter(|seen| **seen != Some(expected)).count())
        .sum::<usize>() as u64;
    let values = influx.all_ids().await?;
    let stored: HashSet<u64> = values.iter().copied().collect();
    let missing = load
        .confirmed_good
        .iter()
        .filter(|id| !stored.contains(id))
        .count() as u64;
    let documents = event_ids(&es);
    let mut copies: HashMap<u64, u64> = HashMap::new();
    for &id in &documents {
        *copies.entry(id).or_default() += 1;
    }
    let events_missing = load
        .confirmed_events
        .iter()
        .filter(|id| !copies.contains_key(id))
        .count() as u64;
    let stall = fault == Fault::InfluxStall;
    let report = RoundReport {
        fault,
        round,
        seed,
        fault_after,
        fault_effect_after: first_after,
        published: load.published,
        confirmed: (load.confirmed_good.len()
            + load.confirmed_bad.len()
            + load.confirmed_events.len()) as u64,
        malformed: load.confirmed_bad.len() as u64,
        stored: stored.len() as u64,
        missing,
        duplicates: (values.len() - stored.len()) as u64,
        dead_lettered: dead_letters.len() as u64,
        malformed_missing,
        wrong_reasons,
        events: load.confirmed_events.len() as u64,
        events_stored: copies.len() as u64,
        events_missing,
        events_stored_twice: copies.values().filter(|&&copies| copies > 1).count() as u64,
        es_items_rejected_429: es.items_rejected_429() as u64,
        left_in_queue: u64::from(left_in_queue) + u64::from(events_left_in_queue),
        consumers_left: consumers_left + events_consumers_left,
        recovery_seconds: recovery.map(|elapsed| elapsed.as_secs_f64()),
        peak_rss_mib: effect.peak_rss_kib.map(|kib| kib as f64 / 1024.0),
        max_rss_mib: stall.then_some(scenario.max_stall_rss_mib),
        secrets_leaked: secrets.leaks(&launch.logs())?,
        publisher_reconnects: load.reconnects,
        rules: rules_outcome,
        log,
    };
    // A failed round keeps its queues and database for a look; a passed one leaves nothing.
    if report.passed() {
        for queue in [&queue, &events_queue, &dead_letter_queue] {
            broker::delete_queue(&channel, queue).await?;
        }
        for exchange in [&exchange, &events_exchange, &dead_letter_exchange] {
            broker::delete_exchange(&channel, exchange).await?;
        }
        influx.drop_database().await?;
        if let Some(rules) = rules {
            rules.remove(&channel).await?;
        }
    }
    connection.close(200, "chaos round done".into()).await?;
    Ok(report)
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
