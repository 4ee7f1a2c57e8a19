//! Open loop: Diamond metrics published at a fixed rate, whatever sluice does, with each
//! message's latency measured from when it was *meant* to be sent (see [`crate::schedule`]).
//!
//! Message `i` is due at `t0 + i / rate`. The publisher sleeps until a message is due, then sends
//! every message that is due by then (the timer's resolution is about a millisecond, so at tens
//! of thousands per second it sends small bursts). Publisher confirms are on and pipelined: up to
//! `confirm_window` publishes await their confirm at once, in a separate task, and the publishes
//! due at one moment are written together, so the rate is not bounded by one round trip per
//! message. When the window is full, publishing waits; the late
//! messages keep their intended times, so the wait shows in the latency instead of being hidden.
//!
//! The traffic is H hosts x C collectors, each message one (host, collector) reading, in the
//! shape of `sluice_benches::diamond_bodies`. Its `metric` is the intended send time in
//! microseconds since the Unix epoch (exact in an f64), and its `time` the same in whole seconds.
//! Every `bad_every`th message is malformed JSON, which sluice dead-letters.

use std::time::Duration;

use anyhow::{Context, bail};
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, PublisherConfirm};
use serde_json::json;
use tokio::sync::mpsc;

use crate::latency::{LatencyHistogram, LatencySummary, per_second_counts};
use crate::latency_proxy::{Recorder, WriteStats};
use crate::procfs::{self, Process};
use crate::publish::ensure_acked;
use crate::schedule::{EpochClock, Schedule, latency_micros};

/// What every `bad_every`th message carries instead of its body.
pub const BAD_BODY: &[u8] = b"{\"metric\": not json";
/// The collectors' paths, as in `sluice_benches::diamond_bodies`.
const PATHS: [&str; 10] = sluice_benches::DIAMOND_PATHS;
/// The two deployments, one with dots in its id; each is also the routing key.
const DEPLOYMENTS: [&str; 2] = ["nodecellar", "shop.prod.eu"];
/// Publishes started together at most, when many are due at once (see `run`).
const PUBLISH_BURST: u64 = 256;
/// The first message is due this long after the run starts, so that it is not late already.
const LEAD: Duration = Duration::from_millis(20);

/// The traffic: who reports what.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traffic {
    pub hosts: usize,
    pub collectors: usize,
    /// Every Nth message is malformed (0: none).
    pub bad_every: u64,
}

impl Traffic {
    pub fn is_bad(&self, index: u64) -> bool {
        self.bad_every > 0 && index % self.bad_every == self.bad_every - 1
    }

    /// How many of the first `count` messages are bad.
    pub fn bad_among(&self, count: u64) -> u64 {
        count.checked_div(self.bad_every).unwrap_or(0)
    }

    /// Message `index`'s routing key and body, for a message intended at `intended_micros`.
    pub fn message(&self, index: u64, intended_micros: u64) -> (&'static str, Vec<u8>) {
        let series = index as usize % (self.hosts * self.collectors).max(1);
        let host = series % self.hosts.max(1);
        let collector = series / self.hosts.max(1);
        let deployment = DEPLOYMENTS[host % DEPLOYMENTS.len()];
        if self.is_bad(index) {
            return (deployment, BAD_BODY.to_vec());
        }
        (
            deployment,
            diamond_body(deployment, host, collector, intended_micros),
        )
    }
}

/// A Diamond body as the manager's agents publish it, for `host`'s `collector`, carrying
/// `intended_micros` as its value.
pub fn diamond_body(
    deployment: &str,
    host: usize,
    collector: usize,
    intended_micros: u64,
) -> Vec<u8> {
    let mut path = PATHS[collector % PATHS.len()].to_owned();
    if collector >= PATHS.len() {
        // More collectors than paths: number the repeats, so each is a series of its own.
        path.push_str(&format!("_{}", collector / PATHS.len()));
    }
    agent_body(
        deployment,
        host,
        &path,
        intended_micros as f64,
        (intended_micros / 1_000_000) as i64,
    )
}

/// The body a Diamond agent on `host` publishes for the collector `path` (e.g.
/// `cpu.total.user`): `metric` at `time` (seconds).
pub fn agent_body(deployment: &str, host: usize, path: &str, metric: f64, time: i64) -> Vec<u8> {
    let node_id = format!("nodejs_host_{host:05x}");
    let (name, rest) = path.split_once('.').unwrap_or((path, ""));
    json!({
        "node_id": node_id,
        "node_name": "nodejs_host",
        "deployment_id": deployment,
        "name": name,
        "path": rest.replace('.', "_"),
        "metric": metric,
        "unit": "",
        "type": "GAUGE",
        "host": node_id,
        "service": format!("{deployment}.nodejs_host.{node_id}.{path}"),
        "time": time,
    })
    .to_string()
    .into_bytes()
}

#[derive(Debug, Clone)]
pub struct OpenLoopSettings {
    /// The exchange sluice's queue is bound to.
    pub exchange: String,
    pub rate: f64,
    pub count: u64,
    pub traffic: Traffic,
    /// Publishes awaiting their confirm at most.
    pub confirm_window: usize,
    /// How long to wait, after the last intended send, for the last good point to be written.
    pub drain_timeout: Duration,
}

/// What one open-loop run measured.
#[derive(Debug, Clone)]
pub struct OpenLoopReport {
    pub rate: f64,
    pub published: u64,
    pub good: u64,
    pub bad: u64,
    /// Good messages whose point the proxy saw written.
    pub written: u64,
    /// Intended send to written, of every written point.
    pub latency: LatencySummary,
    /// Intended send to actually published: how far the publisher itself fell behind.
    pub publish_lag: LatencySummary,
    /// Points written in each second after `t0`.
    pub written_per_second: Vec<u64>,
    /// From `t0` to the last publish's confirm.
    pub published_in: Duration,
    pub proxy: WriteStats,
    /// CPU this whole process (publisher and proxy) spent over the run: when the publisher falls
    /// behind, it tells a busy harness from a busy machine.
    pub harness_cpu: Duration,
}

impl OpenLoopReport {
    pub fn missing(&self) -> u64 {
        self.good.saturating_sub(self.written)
    }

    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "open loop at {:.0} msg/s: published {} ({} good, {} bad) in {:.2}s ({:.0} msg/s achieved)",
                self.rate,
                self.published,
                self.good,
                self.bad,
                self.published_in.as_secs_f64(),
                self.published as f64 / self.published_in.as_secs_f64().max(1e-9)
            ),
            format!(
                "written: {} of {} good points{}",
                self.written,
                self.good,
                if self.missing() > 0 {
                    format!(" ({} MISSING)", self.missing())
                } else {
                    String::new()
                }
            ),
            format!(
                "latency (intended send -> written): {}",
                self.latency.line()
            ),
            format!(
                "publisher lag behind its schedule: {} (sluice-load used {:.2}s of CPU, {:.1} µs/msg)",
                self.publish_lag.line(),
                self.harness_cpu.as_secs_f64(),
                self.harness_cpu.as_secs_f64() * 1e6 / self.published.max(1) as f64
            ),
            format!("written per second: {:?}", self.written_per_second),
        ];
        if self.proxy.writes_failed > 0 || self.proxy.duplicate_lines > 0 {
            lines.push(format!(
                "proxy: {} writes ok, {} failed, {} duplicate lines",
                self.proxy.writes_ok, self.proxy.writes_failed, self.proxy.duplicate_lines
            ));
        }
        lines
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "rate": self.rate,
            "published": self.published,
            "good": self.good,
            "bad": self.bad,
            "written": self.written,
            "missing": self.missing(),
            "latency": self.latency.to_json(),
            "publish_lag": self.publish_lag.to_json(),
            "written_per_second": self.written_per_second,
            "published_seconds": self.published_in.as_secs_f64(),
            "harness_cpu_seconds": self.harness_cpu.as_secs_f64(),
            "proxy": {
                "writes_ok": self.proxy.writes_ok,
                "writes_failed": self.proxy.writes_failed,
                "lines": self.proxy.lines,
                "duplicate_lines": self.proxy.duplicate_lines,
                "lines_without_value": self.proxy.lines_without_value,
            },
        })
    }
}

/// Runs the open loop on `channel` (which must have confirms selected) against a sluice that
/// writes through the proxy owning `recorder`. The recorder is reset first: it must see only
/// this run's writes.
pub async fn run(
    channel: &Channel,
    settings: &OpenLoopSettings,
    recorder: &Recorder,
    clock: EpochClock,
) -> anyhow::Result<OpenLoopReport> {
    if settings.confirm_window == 0 {
        bail!("the confirm window must hold at least one publish");
    }
    if settings.traffic.hosts == 0 || settings.traffic.collectors == 0 {
        bail!("the traffic needs at least one host and one collector");
    }
    recorder.reset();
    let cpu_before = procfs::sample(Process::Own)?.cpu;
    let start = clock.now_micros() + LEAD.as_micros() as u64;
    let schedule = Schedule::new(start, settings.rate, settings.count)?;
    let bad = settings.traffic.bad_among(settings.count);
    let good = settings.count - bad;

    // The confirm window: a bounded channel of pending confirms, awaited in order by their own
    // task. A full channel makes the publisher wait, which is the back-pressure we want.
    let (pending, mut confirms) = mpsc::channel::<PublisherConfirm>(settings.confirm_window);
    let confirmer = tokio::spawn(async move {
        let mut confirmed = 0u64;
        while let Some(confirm) = confirms.recv().await {
            ensure_acked(confirm.await)?;
            confirmed += 1;
        }
        anyhow::Ok(confirmed)
    });

    let mut publish_lag = LatencyHistogram::new()?;
    let mut index = 0;
    let published: anyhow::Result<()> = async {
        while index < settings.count {
            let next_due = clock.instant_at(schedule.intended_micros(index));
            tokio::time::sleep_until(next_due.into()).await;
            let due = schedule.due_by(clock.now_micros()).max(index + 1);
            while index < due {
                // Every message due now, in bursts of at most PUBLISH_BURST: lapin resolves each
                // publish once its frames are written, so awaiting them one by one would cost an
                // I/O round trip each and cap the rate near 12,000/s. Polled together, they are
                // queued in order (delivery tags follow the index) and written in one go.
                let burst_end = due.min(index + PUBLISH_BURST);
                let messages: Vec<(u64, &'static str, Vec<u8>)> = (index..burst_end)
                    .map(|index| {
                        let intended = schedule.intended_micros(index);
                        let (routing_key, body) = settings.traffic.message(index, intended);
                        (intended, routing_key, body)
                    })
                    .collect();
                let publishes = messages.iter().map(|(_, routing_key, body)| {
                    channel.basic_publish(
                        settings.exchange.as_str().into(),
                        (*routing_key).into(),
                        BasicPublishOptions::default(),
                        body,
                        BasicProperties::default(),
                    )
                });
                let confirms = futures::future::join_all(publishes).await;
                let published_at = clock.now_micros();
                for ((intended, _, _), confirm) in messages.iter().zip(confirms) {
                    let confirm = confirm.with_context(|| format!("publishing message {index}"))?;
                    publish_lag.record_micros(latency_micros(*intended, published_at));
                    if pending.send(confirm).await.is_err() {
                        // The confirmer stopped on a nack or an error, which it reports below.
                        return Ok(());
                    }
                    index += 1;
                }
            }
        }
        Ok(())
    }
    .await;
    drop(pending);
    let confirmed = confirmer.await.context("the confirm task panicked")??;
    published?;
    if confirmed < settings.count {
        bail!(
            "only {confirmed} of {} publishes were confirmed",
            settings.count
        );
    }
    let published_in = Duration::from_micros(clock.now_micros().saturating_sub(start));

    let last_due = clock.instant_at(schedule.intended_micros(settings.count.saturating_sub(1)));
    let wait =
        (last_due + settings.drain_timeout).saturating_duration_since(std::time::Instant::now());
    recorder.wait_for_distinct(good, wait).await;

    let last_intended = schedule.intended_micros(settings.count.saturating_sub(1));
    let mut latency = LatencyHistogram::new()?;
    let mut written_at = Vec::new();
    for (value, written_micros) in recorder.entries() {
        // Only this run's intended times: anything else written through the proxy is not ours.
        let intended = value as u64;
        if value.fract() != 0.0 || intended < start || intended > last_intended {
            continue;
        }
        latency.record_micros(latency_micros(intended, written_micros));
        written_at.push(written_micros);
    }
    Ok(OpenLoopReport {
        rate: settings.rate,
        published: settings.count,
        good,
        bad,
        written: latency.count(),
        latency: latency.summary(),
        publish_lag: publish_lag.summary(),
        written_per_second: per_second_counts(start, written_at),
        published_in,
        proxy: recorder.stats(),
        harness_cpu: procfs::sample(Process::Own)?.cpu.saturating_sub(cpu_before),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_780_000_000_123_456;

    #[test]
    fn the_body_carries_its_intended_time_as_value_and_time() {
        let traffic = Traffic {
            hosts: 3,
            collectors: 2,
            bad_every: 0,
        };
        let (routing_key, body) = traffic.message(4, T0);
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        // Series 4 of 3 x 2: host 1, collector 1.
        assert_eq!(routing_key, "shop.prod.eu");
        assert_eq!(body["node_id"], "nodejs_host_00001");
        assert_eq!(body["name"], "cpu");
        assert_eq!(body["path"], "total_system");
        assert_eq!(
            body["service"],
            "shop.prod.eu.nodejs_host.nodejs_host_00001.cpu.total.system"
        );
        assert_eq!(body["metric"].as_f64(), Some(T0 as f64));
        assert_eq!(body["metric"].as_f64().map(|value| value as u64), Some(T0));
        assert_eq!(body["time"], 1_780_000_000);
    }

    #[test]
    fn messages_cycle_over_hosts_times_collectors() {
        let traffic = Traffic {
            hosts: 2,
            collectors: 12,
            bad_every: 0,
        };
        let services: std::collections::BTreeSet<String> = (0..48)
            .map(|index| {
                let (_, body) = traffic.message(index, T0);
                let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
                body["service"].as_str().expect("service").to_owned()
            })
            .collect();
        assert_eq!(services.len(), 24);
        assert!(
            services
                .iter()
                .any(|service| service.ends_with("cpu.total.user_1"))
        );
    }

    #[test]
    fn every_bad_every_th_message_is_malformed() {
        let traffic = Traffic {
            hosts: 200,
            collectors: 10,
            bad_every: 100,
        };
        assert!(!traffic.is_bad(0));
        assert!(traffic.is_bad(99));
        assert_eq!(traffic.message(199, T0).1, BAD_BODY);
        assert_eq!(traffic.bad_among(2_000), 20);
        assert_eq!(
            Traffic {
                bad_every: 0,
                ..traffic
            }
            .bad_among(2_000),
            0
        );
    }
}
