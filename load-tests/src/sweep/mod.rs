//! One measurement of a spawned sluice ([`measure`]), and a sweep of one setting over a list of
//! values ([`run_sweep`]): a table, a JSON file, an SVG plot, and the best value.
//!
//! Each measurement is isolated: it has its own exchange, metrics queue, dead-letter exchange and
//! queue, baseline queue and InfluxDB database (all named `sluice-load.<run>...`), which are
//! deleted afterwards. sluice writes to InfluxDB through this process's
//! [`LatencyProxy`](crate::latency_proxy::LatencyProxy), which tells when each point was written.
//!
//! - **Drain** (`[drain]`): N Diamond bodies are pre-loaded into the metrics queue (declared and
//!   bound here exactly as sluice declares it) and into a baseline queue, with sluice stopped.
//!   sluice is then started, and its drain is timed from its spawn to the proxy seeing the last
//!   good point written (so it includes sluice's start, about 0.1 s). Then the null consumer
//!   drains the baseline queue with the same prefetch, acking once per batch size.
//! - **Open loop** (`[open_loop]`): messages at a fixed rate into the same (running, or newly
//!   started) sluice; latency from each message's intended send time to its write.
//!
//! sluice's Prometheus counters are scraped once a second during each phase.
//!
//! Its parts, all re-exported here:
//!
//! - `environment`: what every measurement shares (the services, the sluice binary, the progress
//!   shown) and what each has to itself (its broker and InfluxDB names).
//! - `measurement`: one measurement, from declaring its queues to removing them.
//! - `sweep_report`: the sweep's rounds reduced to one median round per value, the best value,
//!   and the table, JSON and plot made from them.

use anyhow::{Context, bail};

use crate::scenario::{Scenario, env_value, setting_key};

mod environment;
mod measurement;
mod sweep_report;

pub use environment::{Environment, Progress, RunNames};
pub use measurement::{DrainResult, OpenLoopResult, PointResult, drain_bodies, measure};
pub use sweep_report::{MedianPoint, P99_TARGET_MS, SweepReport};

/// Runs the scenario once per value of its `[sweep]`, with a progress bar.
pub async fn run_sweep(
    environment: &Environment,
    scenario: &Scenario,
) -> anyhow::Result<SweepReport> {
    let Some(sweep) = &scenario.sweep else {
        bail!(
            "the scenario {:?} has no [sweep] (setting and values)",
            scenario.name
        );
    };
    let progress = Progress::new(sweep.values.len() as u64 * u64::from(sweep.rounds));
    let key = setting_key(&sweep.setting);
    let mut points = Vec::new();
    // Round by round, every value in turn: a slow minute of the broker then falls on one
    // round of several values rather than on every round of one.
    for round in 1..=sweep.rounds {
        for value in &sweep.values {
            let value = env_value(value);
            if sweep.rounds > 1 {
                progress.log(&format!(
                    "{key} = {value} (round {round} of {})",
                    sweep.rounds
                ));
            } else {
                progress.log(&format!("{key} = {value}"));
            }
            let point = measure(
                environment,
                scenario,
                Some((&sweep.setting, value.clone())),
                round,
                &progress,
            )
            .await
            .with_context(|| format!("measuring {key} = {value} (round {round})"));
            let point = match point {
                Ok(point) => point,
                Err(error) => {
                    progress.finish();
                    return Err(error);
                }
            };
            for line in point.lines() {
                progress.log(&format!("  {line}"));
            }
            points.push(point);
            progress.step_done();
        }
    }
    progress.finish();
    Ok(SweepReport {
        scenario: scenario.name.clone(),
        setting: sweep.setting.clone(),
        rounds: sweep.rounds,
        points,
        commit: git_commit(),
    })
}

/// `git rev-parse --short HEAD` of the working directory, if it is a git tree.
pub fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
