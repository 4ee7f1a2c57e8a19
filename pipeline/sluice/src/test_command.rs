//! `sluice test RULES... --input EVENTS.jsonl`: runs rules against recorded input on a simulated
//! clock and prints the actions they would fire; `expect` lines in the input make it a unit test
//! of a user's rules (as `riemann test` and `vector test` are).
//!
//! RULES are the manager's `groups` files (JSON, loaded for every deployment the input names)
//! and generic rule files (`.toml`). Each input line is one JSON object:
//!
//! - a Diamond metric body, exactly as the agents publish it: normalised with the configured
//!   naming, then seen by the manager's policies and, as a point, by generic rules;
//! - a point in `sluice normalise`'s form (`measurement`, `tags`, `fields`, `timestamp` in ns):
//!   seen by generic rules;
//! - `{"advance": "30s"}`: the clock moves on (sweeps run on the way);
//! - `{"expect": {...}}`: checks the actions fired since the previous `expect` (see
//!   [`Expectation`]).
//!
//! Blank lines and lines starting with `#` are skipped. The clock starts at the first event's
//! time and follows event time: an event later than the clock moves it there first, running
//! every sweep (`--sweep-interval`, 5 s as the manager's) due on the way. The restraints the
//! executor applies (node started, `interval_between_workflows`) need the manager and are not
//! simulated: these are the actions the rules decide.
//!
//! Output: one JSON line per action, `{"line": N, "at_ms": T, "action": {...}}` (the input line
//! that made it fire, the simulated time, and the action as the expectations see it: `kind`,
//! `workflow`, `deployment_id`, `group`, `policy`, `node_id`, `diagnose`, `parameters` — for a
//! webhook its `url` and body), then a summary on stderr. Webhook header values are not
//! printed (they often carry credentials). Exit code 0 when every expectation held, 1 when one failed, 2 when the rules or the
//! input could not be read.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sluice_core::action::Action;
use sluice_core::point::Point;
use sluice_normalise::{NormalisedRef, Normaliser, Scratch};
use sluice_rules::{
    Engine, EngineLimits, GenericEngine, GenericLimits, Groups, RuleEngine, RulePoint,
};

use crate::config::RawConfig;
use sluice_rest::stage::{load_rule_files, metric_event};

pub fn run(
    config_file: Option<&Path>,
    rule_files: &[PathBuf],
    input: &Path,
    sweep_interval: Duration,
) -> ExitCode {
    match run_checked(config_file, rule_files, input, sweep_interval) {
        Ok(summary) => {
            eprintln!(
                "{} action(s) fired; expectations: {} passed, {} failed",
                summary.actions, summary.passed, summary.failed
            );
            if summary.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

struct Summary {
    actions: usize,
    passed: usize,
    failed: usize,
}

/// What an `expect` line checks: exactly `count` (default 1) of the actions fired since the
/// previous `expect` match every filter given. With no filter, `count` is the number of actions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    #[serde(default = "one")]
    count: usize,
    /// `execute_workflow` or `webhook`.
    kind: Option<String>,
    workflow: Option<String>,
    deployment_id: Option<String>,
    group: Option<String>,
    policy: Option<String>,
    node_id: Option<String>,
    diagnose: Option<String>,
    /// Every key given must be in the workflow's parameters (or the webhook's body) with that
    /// value.
    parameters: Option<Map<String, Value>>,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    #[serde(with = "humantime_serde")]
    advance: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    expect: Expectation,
}

/// The simulated world: the engines (fed through [`RuleEngine`], as the rule stage feeds them),
/// the clock and its sweeps.
struct Simulation {
    manager: Engine,
    groups: Vec<Groups>,
    deployments_loaded: HashSet<String>,
    generic: Vec<GenericEngine>,
    sweep_interval_ms: i64,
    clock_ms: Option<i64>,
    next_sweep_ms: i64,
    /// Fired since the last `expect`.
    recent: Vec<Action>,
}

impl Simulation {
    /// Moves the clock to `time_ms` (never back), running each sweep due on the way.
    fn advance_to(&mut self, time_ms: i64, out: &mut impl FnMut(i64, &Action)) {
        let Some(clock_ms) = self.clock_ms else {
            self.clock_ms = Some(time_ms);
            self.next_sweep_ms = time_ms.saturating_add(self.sweep_interval_ms);
            return;
        };
        while self.next_sweep_ms <= time_ms {
            let now = self.next_sweep_ms;
            let fired = self.feed_all(|engine| engine.sweep(now));
            self.record(now, fired, out);
            self.next_sweep_ms = now.saturating_add(self.sweep_interval_ms);
        }
        self.clock_ms = Some(clock_ms.max(time_ms));
    }

    fn now(&self) -> i64 {
        self.clock_ms.unwrap_or(0)
    }

    /// Runs `step` on every engine, the manager's policies first, as the rule stage does.
    fn feed_all(
        &mut self,
        mut step: impl FnMut(&mut dyn RuleEngine) -> Vec<Action>,
    ) -> Vec<Action> {
        let mut fired = step(&mut self.manager);
        for engine in &mut self.generic {
            fired.extend(step(engine));
        }
        fired
    }

    fn record(&mut self, at_ms: i64, fired: Vec<Action>, out: &mut impl FnMut(i64, &Action)) {
        for action in fired {
            out(at_ms, &action);
            self.recent.push(action);
        }
    }

    /// The manager's policies are loaded for every deployment the input names.
    fn load_groups_for(&mut self, deployment_id: &str) {
        if self.deployments_loaded.insert(deployment_id.to_owned()) {
            for groups in &self.groups {
                self.manager.load_deployment(deployment_id, groups.clone());
            }
        }
    }
}

fn run_checked(
    config_file: Option<&Path>,
    rule_files: &[PathBuf],
    input: &Path,
    sweep_interval: Duration,
) -> anyhow::Result<Summary> {
    let settings = RawConfig::load(config_file)
        .and_then(|raw| raw.validate())
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let Some(metrics) = settings.metrics else {
        bail!(
            "the metrics path is disabled (metrics.enabled = false): nothing would reach the rules"
        );
    };
    anyhow::ensure!(
        !sweep_interval.is_zero(),
        "--sweep-interval must be above zero"
    );
    let (toml_files, groups_files): (Vec<PathBuf>, Vec<PathBuf>) =
        rule_files.iter().cloned().partition(|path| {
            path.extension()
                .is_some_and(|extension| extension == "toml")
        });
    let groups = groups_files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Groups::parse(&text).with_context(|| format!("groups file {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // One groups file per deployment is what the manager writes; several would share one id.
    anyhow::ensure!(
        groups.len() <= 1,
        "give at most one groups file (the manager loads one per deployment)"
    );
    let generic = load_rule_files(&toml_files)?
        .into_iter()
        .map(|rules| GenericEngine::new(rules, GenericLimits::default()))
        .collect();
    let mut simulation = Simulation {
        manager: Engine::new(EngineLimits::default()),
        groups,
        deployments_loaded: HashSet::new(),
        generic,
        sweep_interval_ms: i64::try_from(sweep_interval.as_millis()).unwrap_or(i64::MAX),
        clock_ms: None,
        next_sweep_ms: 0,
        recent: Vec::new(),
    };
    let normaliser = Normaliser::new(metrics.naming, metrics.point_limits);
    let mut scratch = Scratch::default();

    let reader = BufReader::new(
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?,
    );
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let mut summary = Summary {
        actions: 0,
        passed: 0,
        failed: 0,
    };
    for (index, line) in reader.lines().enumerate() {
        let line_number = index + 1;
        let line = line.with_context(|| format!("reading {}", input.display()))?;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut print_action = |at_ms: i64, action: &Action| {
            summary.actions += 1;
            let _ = writeln!(
                stdout,
                "{}",
                json!({"line": line_number, "at_ms": at_ms, "action": describe(action)})
            );
        };
        let value: Value = serde_json::from_str(trimmed)
            .with_context(|| format!("line {line_number}: not JSON"))?;
        let is_object_with = |key: &str| value.get(key).is_some();
        if is_object_with("expect") {
            let Expect { expect } = serde_json::from_value(value)
                .with_context(|| format!("line {line_number}: bad expect"))?;
            let matching = simulation
                .recent
                .iter()
                .filter(|action| expect.matches(action))
                .count();
            if matching == expect.count {
                summary.passed += 1;
            } else {
                summary.failed += 1;
                let fired: Vec<Value> = simulation.recent.iter().map(describe).collect();
                eprintln!(
                    "FAIL line {line_number}: expected {} matching action(s), found {matching}; fired since the last expect: {}",
                    expect.count,
                    Value::from(fired)
                );
            }
            simulation.recent.clear();
        } else if is_object_with("advance") {
            let Advance { advance } = serde_json::from_value(value)
                .with_context(|| format!("line {line_number}: bad advance"))?;
            let target = simulation
                .now()
                .saturating_add(i64::try_from(advance.as_millis()).unwrap_or(i64::MAX));
            simulation.advance_to(target, &mut print_action);
        } else if is_object_with("measurement") {
            let point: Point = serde_json::from_value(value)
                .with_context(|| format!("line {line_number}: not a point"))?;
            simulation.advance_to(point.timestamp / 1_000_000, &mut print_action);
            let now = simulation.now();
            let input = RulePoint {
                metric: None,
                point: Some(point),
            };
            let fired = simulation.feed_all(|engine| engine.on_point(&input, now));
            simulation.record(now, fired, &mut print_action);
        } else {
            let mut event = None;
            let normalised =
                normaliser.normalise_borrowed(trimmed.as_bytes(), &mut scratch, |sample| {
                    event = Some(metric_event(sample))
                });
            let point = match normalised {
                Ok(NormalisedRef::Point(point)) => point.to_point(),
                // The test loads policies itself; control messages change nothing here.
                Ok(NormalisedRef::Control(_)) => continue,
                Err(error) => bail!("line {line_number}: {error}"),
            };
            let Some(event) = event else {
                bail!("line {line_number}: a metric without its Diamond fields");
            };
            simulation.advance_to(event.time_ms, &mut print_action);
            let now = simulation.now();
            simulation.load_groups_for(&event.deployment_id);
            let input = RulePoint {
                metric: Some(event),
                point: Some(point),
            };
            let fired = simulation.feed_all(|engine| engine.on_point(&input, now));
            simulation.record(now, fired, &mut print_action);
        }
    }
    Ok(summary)
}

impl Expectation {
    fn matches(&self, action: &Action) -> bool {
        let described = describe(action);
        let field_is = |name: &str, wanted: &Option<String>| {
            wanted
                .as_ref()
                .is_none_or(|wanted| described[name].as_str() == Some(wanted.as_str()))
        };
        field_is("kind", &self.kind)
            && field_is("workflow", &self.workflow)
            && field_is("deployment_id", &self.deployment_id)
            && field_is("group", &self.group)
            && field_is("policy", &self.policy)
            && field_is("node_id", &self.node_id)
            && field_is("diagnose", &self.diagnose)
            && self.parameters.as_ref().is_none_or(|wanted| {
                wanted
                    .iter()
                    .all(|(key, value)| described["parameters"].get(key) == Some(value))
            })
    }
}

/// An action as the expectations see it (and as a failure reports it).
fn describe(action: &Action) -> Value {
    match action {
        Action::ExecuteWorkflow(workflow) => json!({
            "kind": "execute_workflow",
            "workflow": workflow.workflow_id,
            "deployment_id": workflow.deployment_id,
            "group": workflow.origin.group,
            "policy": workflow.origin.policy,
            "node_id": workflow.origin.node_id,
            "diagnose": workflow.origin.diagnose,
            "parameters": workflow.parameters,
            "force": workflow.force,
            "allow_custom_parameters": workflow.allow_custom_parameters,
        }),
        Action::Webhook(webhook) => json!({
            "kind": "webhook",
            "url": webhook.url,
            "group": webhook.origin.group,
            "policy": webhook.origin.policy,
            "node_id": webhook.origin.node_id,
            "diagnose": webhook.origin.diagnose,
            "parameters": webhook.body,
        }),
    }
}
