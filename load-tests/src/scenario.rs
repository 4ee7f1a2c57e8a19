//! Scenario files (`load-tests/scenarios/*.toml`): what to measure, with which fixed sluice
//! settings, and which one setting to sweep over which values.
//!
//! ```toml
//! name = "batch size"
//! timeout = "5m"                       # per measurement
//!
//! [sweep]                              # for `sluice-load sweep`
//! setting = "SLUICE_INFLUX__BATCH_MAX_POINTS"
//! values = [100, 500, 1000, 5000]
//!
//! [drain]                              # pre-load N, time sluice's drain and the null consumer's
//! count = 100000
//! bad_every = 100
//!
//! [open_loop]                          # a fixed rate, for latency
//! rate = 5000                          # or `interval = "10s"`: hosts x collectors per interval
//! duration = "30s"
//! hosts = 200
//! collectors = 10
//!
//! [push]                               # for `sluice-load push-compare`: line protocol to
//! batch = 100                          # InfluxDB directly and through sluice's influxdb_write
//! rate = 50                            # requests/s, open loop, for `duration`
//! duration = "30s"
//! max_rate_requests = 2000             # then as fast as `concurrency` senders go (0: skip)
//! concurrency = 4
//! sink = { batch_linger = "20ms" }     # extra keys of sluice's [sinks.influx]
//!
//! [env]                                # fixed overrides for every sluice started
//! SLUICE_INFLUX__BATCH_LINGER = "20ms"
//! ```
//!
//! Setting values are written into sluice's environment as sluice reads them (as TOML): a string
//! as it is (`"20ms"`), anything else in TOML syntax (`500`, `["#"]`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::open_loop::Traffic;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Longest wait for any one step of a measurement (a drain, sluice's start).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    pub sweep: Option<SweepSpec>,
    pub drain: Option<DrainSpec>,
    pub open_loop: Option<OpenLoopSpec>,
    pub push: Option<PushSpec>,
    #[serde(default)]
    pub env: BTreeMap<String, toml::Value>,
}

/// The push-input comparison (`crate::push_compare`): the same lines POSTed to InfluxDB's
/// `/write` and to sluice's `influxdb_write` source, open loop and then at the fastest pace.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PushSpec {
    /// Lines per request.
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default = "default_hosts")]
    pub hosts: usize,
    #[serde(default = "default_collectors")]
    pub collectors: usize,
    /// Open loop: requests per second.
    pub rate: f64,
    /// Open loop: how long.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Open loop: requests unanswered at most (later ones are sent late, and counted late).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Closed loop (the drain throughput): this many requests as fast as `concurrency`
    /// senders go; 0 skips it.
    #[serde(default)]
    pub max_rate_requests: u64,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// A request unanswered by then counts as failed.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Keys of sluice's `[sinks.influx]` besides `url` and `database`, e.g. `batch_linger`.
    #[serde(default)]
    pub sink: BTreeMap<String, toml::Value>,
}

impl PushSpec {
    /// Open-loop requests: the rate times the duration.
    pub fn open_loop_requests(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).round() as u64
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 100_000.0) {
            bail!(
                "push.rate must be between 0 and 100,000 requests/s, not {}",
                self.rate
            );
        }
        if self.batch == 0 || self.hosts == 0 || self.collectors == 0 {
            bail!("push: batch, hosts and collectors must be at least 1");
        }
        if self.max_in_flight == 0 || self.concurrency == 0 {
            bail!("push: max_in_flight and concurrency must be at least 1");
        }
        if self.open_loop_requests() == 0 {
            bail!("push: rate x duration is no request at all");
        }
        for key in ["url", "database", "type", "inputs"] {
            if self.sink.contains_key(key) {
                bail!("push.sink.{key} is the harness's to set");
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// The environment variable of the setting, e.g. `SLUICE_INFLUX__BATCH_MAX_POINTS`.
    pub setting: String,
    pub values: Vec<toml::Value>,
    /// How many times to measure every value (default 1). The table and the best value use
    /// each value's median round, and show how far its drain ratio spread.
    #[serde(default = "one_round")]
    pub rounds: u32,
}

fn one_round() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DrainSpec {
    pub count: u64,
    #[serde(default = "default_bad_every")]
    pub bad_every: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OpenLoopSpec {
    /// Messages per second; or give `interval`.
    pub rate: Option<f64>,
    /// Each host reports each collector once per interval: rate = hosts x collectors / interval.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    #[serde(default = "default_hosts")]
    pub hosts: usize,
    #[serde(default = "default_collectors")]
    pub collectors: usize,
    #[serde(default = "default_bad_every")]
    pub bad_every: u64,
    /// Publishes awaiting their confirm at most.
    #[serde(default = "default_confirm_window")]
    pub confirm_window: usize,
    /// How long after the last send to wait for the last point.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_bad_every() -> u64 {
    100
}
fn default_hosts() -> usize {
    200
}
fn default_collectors() -> usize {
    10
}
fn default_confirm_window() -> usize {
    2_000
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_batch() -> usize {
    100
}
fn default_max_in_flight() -> usize {
    256
}
fn default_concurrency() -> usize {
    4
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

impl OpenLoopSpec {
    /// The spec for a plain `--rate` run.
    pub fn at_rate(rate: f64, duration: Duration) -> Self {
        Self {
            rate: Some(rate),
            interval: None,
            duration,
            hosts: default_hosts(),
            collectors: default_collectors(),
            bad_every: default_bad_every(),
            confirm_window: default_confirm_window(),
            drain_timeout: default_drain_timeout(),
        }
    }

    /// Messages per second, from `rate` or from hosts x collectors per `interval`.
    pub fn messages_per_second(&self) -> anyhow::Result<f64> {
        match (self.rate, self.interval) {
            (Some(rate), None) => Ok(rate),
            (None, Some(interval)) if !interval.is_zero() => {
                Ok((self.hosts * self.collectors) as f64 / interval.as_secs_f64())
            }
            (None, Some(_)) => bail!("open_loop.interval must be longer than zero"),
            (Some(_), Some(_)) => bail!("open_loop: give `rate` or `interval`, not both"),
            (None, None) => bail!("open_loop: give `rate` (messages/s) or `interval`"),
        }
    }

    /// Messages in the whole run: the rate times the duration.
    pub fn count(&self) -> anyhow::Result<u64> {
        Ok((self.messages_per_second()? * self.duration.as_secs_f64()).round() as u64)
    }

    pub fn traffic(&self) -> Traffic {
        Traffic {
            hosts: self.hosts,
            collectors: self.collectors,
            bad_every: self.bad_every,
        }
    }
}

impl Scenario {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the scenario {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the scenario {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let scenario: Scenario = toml::from_str(text).context("not a valid scenario")?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks what serde cannot: the cross-field rules.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.drain.is_none() && self.open_loop.is_none() && self.push.is_none() {
            bail!("a scenario measures something: give [drain], [open_loop] or [push]");
        }
        if let Some(push) = &self.push {
            push.validate()?;
        }
        if let Some(drain) = &self.drain
            && drain.count == 0
        {
            bail!("drain.count must be at least 1");
        }
        if let Some(open_loop) = &self.open_loop {
            let rate = open_loop.messages_per_second()?;
            if !(rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0) {
                bail!("open_loop: the rate must be between 0 and 1,000,000 messages/s, not {rate}");
            }
            if open_loop.hosts == 0 || open_loop.collectors == 0 {
                bail!("open_loop: hosts and collectors must be at least 1");
            }
            if open_loop.confirm_window == 0 {
                bail!("open_loop.confirm_window must be at least 1");
            }
            if open_loop.count()? == 0 {
                bail!("open_loop: rate x duration is no message at all");
            }
        }
        for key in self.env.keys() {
            check_setting_name(key).with_context(|| format!("in [env]: {key}"))?;
        }
        if let Some(sweep) = &self.sweep {
            check_setting_name(&sweep.setting).context("in [sweep] setting")?;
            if sweep.values.is_empty() {
                bail!("[sweep] values is empty: give at least one value");
            }
            if !(1..=MAX_ROUNDS).contains(&sweep.rounds) {
                bail!(
                    "[sweep] rounds must be between 1 and {MAX_ROUNDS}, not {}",
                    sweep.rounds
                );
            }
            for value in &sweep.values {
                if matches!(value, toml::Value::Table(_)) {
                    bail!("[sweep] values: {value} is a table; give numbers, strings or arrays");
                }
            }
        }
        Ok(())
    }

    /// The fixed overrides, as environment variables.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(key, value)| (key.clone(), env_value(value)))
            .collect()
    }
}

/// Environment variables sluice's process reads besides its own settings: the async runtime's.
const RUNTIME_VARIABLES: [&str; 1] = ["TOKIO_WORKER_THREADS"];

/// Rounds per value at most: each round of a drain takes a minute or more.
const MAX_ROUNDS: u32 = 20;

/// sluice's settings are `SLUICE_<SECTION>__<KEY>`: anything else would be ignored silently
/// (or, for a misspelt key, refused by sluice at start). The runtime's own variables
/// ([`RUNTIME_VARIABLES`]) are accepted too.
fn check_setting_name(name: &str) -> anyhow::Result<()> {
    if RUNTIME_VARIABLES.contains(&name) {
        return Ok(());
    }
    let Some(rest) = name.strip_prefix("SLUICE_") else {
        bail!("{name:?} is not a sluice setting: they are SLUICE_<SECTION>__<KEY>");
    };
    if !rest.contains("__") {
        bail!("{name:?} is not a sluice setting: they are SLUICE_<SECTION>__<KEY>");
    }
    Ok(())
}

/// A value as sluice reads it from its environment: strings bare, anything else as TOML.
pub fn env_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// `SLUICE_INFLUX__BATCH_MAX_POINTS` -> `influx.batch_max_points`, the key in sluice's file.
pub fn setting_key(env_name: &str) -> String {
    env_name
        .strip_prefix("SLUICE_")
        .unwrap_or(env_name)
        .to_lowercase()
        .replace("__", ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
name = "batch size"
timeout = "2m"
[sweep]
setting = "SLUICE_INFLUX__BATCH_MAX_POINTS"
values = [100, 500, 1000]
[drain]
count = 100000
[open_loop]
interval = "1s"
hosts = 100
collectors = 10
duration = "30s"
[env]
SLUICE_INFLUX__BATCH_LINGER = "20ms"
SLUICE_AMQP__PREFETCH = 10000
"#;

    #[test]
    fn parses_a_full_scenario() {
        let scenario = Scenario::parse(FULL).expect("valid");
        assert_eq!(scenario.name, "batch size");
        assert_eq!(scenario.timeout, Duration::from_secs(120));
        let sweep = scenario.sweep.as_ref().expect("sweep");
        assert_eq!(
            sweep.values.iter().map(env_value).collect::<Vec<_>>(),
            ["100", "500", "1000"]
        );
        assert_eq!(scenario.drain.as_ref().expect("drain").bad_every, 100);
        let open_loop = scenario.open_loop.as_ref().expect("open loop");
        // 100 hosts x 10 collectors once a second, for 30 s.
        assert_eq!(open_loop.messages_per_second().expect("rate"), 1000.0);
        assert_eq!(open_loop.count().expect("count"), 30_000);
        assert_eq!(open_loop.confirm_window, 2_000);
        assert_eq!(
            scenario.env_vars(),
            vec![
                ("SLUICE_AMQP__PREFETCH".to_owned(), "10000".to_owned()),
                ("SLUICE_INFLUX__BATCH_LINGER".to_owned(), "20ms".to_owned()),
            ]
        );
    }

    #[test]
    fn env_values_are_written_as_sluice_reads_them() {
        assert_eq!(env_value(&toml::Value::String("20ms".into())), "20ms");
        assert_eq!(env_value(&toml::Value::Integer(5)), "5");
        assert_eq!(env_value(&toml::Value::Boolean(false)), "false");
        let keys = toml::Value::Array(vec![toml::Value::String("#".into())]);
        assert_eq!(env_value(&keys), "[\"#\"]");
    }

    #[test]
    fn setting_keys_read_like_the_config_file() {
        assert_eq!(
            setting_key("SLUICE_INFLUX__BATCH_MAX_POINTS"),
            "influx.batch_max_points"
        );
        assert_eq!(
            setting_key("SLUICE_METRICS__CONSUMERS"),
            "metrics.consumers"
        );
    }

    #[test]
    fn a_sweep_measures_each_value_once_unless_it_asks_for_rounds() {
        let sweep = "name = \"x\"\n[drain]\ncount = 1\n[sweep]\nsetting = \"SLUICE_AMQP__PREFETCH\"\nvalues = [1]";
        let once = Scenario::parse(sweep).expect("valid");
        assert_eq!(once.sweep.expect("a sweep").rounds, 1);
        let thrice = Scenario::parse(&format!("{sweep}\nrounds = 3")).expect("valid");
        assert_eq!(thrice.sweep.expect("a sweep").rounds, 3);
        assert!(error_of(&format!("{sweep}\nrounds = 0")).contains("between 1 and 20"));
        assert!(error_of(&format!("{sweep}\nrounds = 21")).contains("between 1 and 20"));
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", Scenario::parse(text).expect_err("invalid"))
    }

    #[test]
    fn bad_scenarios_say_what_is_wrong() {
        assert!(error_of("name = \"x\"").contains("give [drain], [open_loop] or [push]"));
        assert!(
            error_of("name = \"x\"\n[drain]\ncount = 10\nbad = 1").contains("unknown field `bad`")
        );
        assert!(error_of("[drain]\ncount = 10").contains("missing field `name`"));
        assert!(error_of("name = \"x\"\n[open_loop]\nduration = \"10s\"").contains("give `rate`"));
        assert!(
            error_of("name = \"x\"\n[open_loop]\nrate = 5\ninterval = \"1s\"\nduration = \"1s\"")
                .contains("not both")
        );
        assert!(
            error_of("name = \"x\"\n[open_loop]\nrate = 5\nduration = \"soon\"").contains("soon")
        );
        assert!(
            error_of("name = \"x\"\n[drain]\ncount = 1\n[env]\nINFLUX_URL = \"x\"")
                .contains("not a sluice setting")
        );
        let runtime = "name = \"x\"\n[drain]\ncount = 1\n[sweep]\nsetting = \"TOKIO_WORKER_THREADS\"\nvalues = [1]";
        assert!(
            Scenario::parse(runtime).is_ok(),
            "the runtime's worker threads can be swept"
        );
        assert!(
            error_of("name = \"x\"\n[drain]\ncount = 1\n[sweep]\nsetting = \"SLUICE_AMQP__PREFETCH\"\nvalues = []")
                .contains("values is empty")
        );
        assert!(error_of("name = ").contains("not a valid scenario"));
    }

    #[test]
    fn a_missing_file_names_itself() {
        let error = Scenario::load(Path::new("/nonexistent/sweep.toml")).expect_err("missing");
        assert!(format!("{error:#}").contains("/nonexistent/sweep.toml"));
    }

    #[test]
    fn every_shipped_scenario_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut parsed = 0;
        for entry in std::fs::read_dir(&dir).expect("scenarios dir") {
            let path = entry.expect("entry").path();
            if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                // `chaos-*.toml` are the chaos mode's own shape (`sluice-load chaos`).
                let chaos = path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("chaos-"));
                let loaded = if chaos {
                    crate::chaos::ChaosScenario::load(&path).map(drop)
                } else {
                    Scenario::load(&path).map(drop)
                };
                loaded.unwrap_or_else(|error| panic!("{error:#}"));
                parsed += 1;
            }
        }
        assert!(parsed >= 5, "only {parsed} scenarios in {}", dir.display());
    }
}
