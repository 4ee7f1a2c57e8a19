//! A round's load: message `i` is
//! - a good metric (`metric = i` and `time = base + i` seconds on one series, so its point
//!   names it);
//! - for a seeded quarter of the ids, a manager event on the events exchange, whose
//!   `context.task_id` is `chaos-<i>`, so that its document names it;
//! - for a seeded share of the ids, a malformed metric (one of [`BadKind`]) published with
//!   routing key `chaos.bad.<i>`, so that its dead letter names it too (sluice keeps the
//!   original routing key in `x-original-routing-key`).
//!
//! Every message is persistent and confirmed, and the publisher reconnects as Diamond does after
//! a broker restart, declaring the topology again: the manager's monitoring exchange is
//! transient, so a restart deletes it and the binding of sluice's durable queue with it, and
//! what is published before the binding is back would be confirmed and routed nowhere.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Connection};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sluice_amqp::topology::{ExchangeSpec, declare_exchange};
use tokio::sync::watch;

use crate::broker;

/// The routing key of the good messages (sluice binds `#`).
const ROUTING_KEY: &str = "chaos";
/// The routing key of malformed message `i` is this followed by `i`.
pub(super) const BAD_ROUTING_KEY_PREFIX: &str = "chaos.bad.";
/// The share of the ids that are events.
const EVENT_SHARE: f64 = 0.25;
/// An event's `context.task_id` is this followed by its id.
pub(super) const EVENT_TASK_PREFIX: &str = "chaos-";
/// How long the publisher keeps trying to reach a broker that went away.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(120);
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// A body sluice's Diamond decoder must refuse, and the reason it must give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BadKind {
    /// A good body cut in half.
    InvalidJson,
    /// `"metric": true`.
    WrongType,
    /// `"metric"` left out.
    MissingField,
    /// `"metric": 1e999`, which no f64 holds.
    NotFinite,
    /// `"time": "soon"`.
    BadTimestamp,
    /// A JSON array instead of an object.
    NotAnObject,
    /// A byte that is not UTF-8 inside the service name.
    InvalidUtf8,
    /// A 70 KiB measurement.
    HugeName,
    /// A line break in the measurement: line-protocol injection.
    LineBreakInName,
    /// 64 random bytes.
    RandomBytes,
}

impl BadKind {
    pub const ALL: [BadKind; 10] = [
        BadKind::InvalidJson,
        BadKind::WrongType,
        BadKind::MissingField,
        BadKind::NotFinite,
        BadKind::BadTimestamp,
        BadKind::NotAnObject,
        BadKind::InvalidUtf8,
        BadKind::HugeName,
        BadKind::LineBreakInName,
        BadKind::RandomBytes,
    ];

    /// The dead-letter reason sluice must give (`x-sluice-reason`); random bytes may fail in
    /// more than one way.
    pub fn reason(self) -> Option<&'static str> {
        Some(match self {
            Self::InvalidJson => "invalid_json",
            Self::WrongType | Self::NotAnObject => "wrong_type",
            Self::MissingField => "missing_field",
            Self::NotFinite => "not_finite",
            Self::BadTimestamp => "bad_timestamp",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::HugeName => "name_too_long",
            Self::LineBreakInName => "unsafe_name",
            Self::RandomBytes => return None,
        })
    }

    /// Message `id`'s body of this kind.
    pub fn body(self, id: u64, base_seconds: u64, rng: &mut impl Rng) -> Vec<u8> {
        let good = diamond_value(id, base_seconds);
        let with = |field: &str, value: serde_json::Value| {
            let mut body = good.clone();
            body[field] = value;
            body.to_string().into_bytes()
        };
        match self {
            Self::InvalidJson => {
                let text = good.to_string();
                text.as_bytes()[..text.len() / 2].to_vec()
            }
            Self::WrongType => with("metric", serde_json::Value::Bool(true)),
            Self::MissingField => {
                let mut body = good.clone();
                body.as_object_mut().expect("an object").remove("metric");
                body.to_string().into_bytes()
            }
            Self::NotFinite => good
                .to_string()
                .replace(&format!("\"metric\":{id}"), "\"metric\":1e999")
                .into_bytes(),
            Self::BadTimestamp => with("time", "soon".into()),
            Self::NotAnObject => serde_json::json!([id]).to_string().into_bytes(),
            Self::InvalidUtf8 => {
                // JSON text cannot hold the byte itself: a `#` marks its place in the service
                // name, and the serialised body has it replaced.
                let marked = with("service", "chaos.chaos_host.chaos_host.chaos#id".into());
                marked
                    .into_iter()
                    .map(|byte| if byte == b'#' { 0xff } else { byte })
                    .collect()
            }
            Self::HugeName => with(
                "service",
                format!("chaos.chaos_host.chaos_host.{}", "x".repeat(70 * 1024)).into(),
            ),
            Self::LineBreakInName => with(
                "service",
                "chaos.chaos_host.chaos_host.chaos.id\nforged value=1".into(),
            ),
            Self::RandomBytes => (0..64).map(|_| rng.random::<u8>()).collect(),
        }
    }
}

/// Message `id`'s good body: its value and its own timestamp name it.
fn diamond_body(id: u64, base_seconds: u64) -> String {
    diamond_value(id, base_seconds).to_string()
}

fn diamond_value(id: u64, base_seconds: u64) -> serde_json::Value {
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
}

/// Event `id`: a 4.x task event whose `context.task_id` names it, stamped `base + id` seconds.
fn event_body(id: u64, base_seconds: u64) -> Vec<u8> {
    let time = jiff::Timestamp::from_second((base_seconds + id) as i64)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    serde_json::json!({
        "type": "cloudify_event",
        "event_type": "task_succeeded",
        "message_code": null,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "context": {
            "blueprint_id": "chaos",
            "deployment_id": "chaos",
            "execution_id": "chaos",
            "workflow_id": "install",
            "task_id": format!("{EVENT_TASK_PREFIX}{id}"),
            "task_name": "script_runner.tasks.run",
            "node_id": "chaos_host",
            "node_name": "chaos_host",
        },
        "message": {"text": format!("chaos event {id}"), "arguments": null},
    })
    .to_string()
    .into_bytes()
}

/// What to publish.
pub(super) struct LoadPlan {
    pub amqp_url: String,
    pub exchange: String,
    pub queue: String,
    /// The manager's events exchange (sluice declares and binds its own queue to it).
    pub events_exchange: String,
    /// At least this many messages (and more after a slow fault: see [`publish_load`]).
    pub messages: u64,
    /// Messages per second.
    pub rate: f64,
    pub base_seconds: u64,
    /// The share of ids that are malformed.
    pub malformed_share: f64,
    /// Seeds which ids are malformed, and how.
    pub seed: u64,
}

/// What the broker confirmed.
#[derive(Debug, Default)]
pub(super) struct LoadOutcome {
    pub published: u64,
    /// Good ids the broker confirmed.
    pub confirmed_good: Vec<u64>,
    /// Malformed ids the broker confirmed, with their kind.
    pub confirmed_bad: Vec<(u64, BadKind)>,
    /// Event ids the broker confirmed.
    pub confirmed_events: Vec<u64>,
    /// How often the publisher had to reconnect.
    pub reconnects: u32,
}

/// One message, decided once so that a publish retried on a new channel sends the same one.
struct Message {
    id: u64,
    kind: Kind,
    body: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Kind {
    Metric,
    Malformed(BadKind),
    Event,
}

/// Publishes messages `0, 1, ..` at `plan.rate` per second with confirms pipelined, announcing
/// each publish on `published`: at least `plan.messages`, and at least a tenth of that (20 at
/// least) after the id that `fault` names once the fault is over, so that there is a load to
/// recover. A dropped `fault` sender (the round gave up) stops it.
pub(super) async fn publish_load(
    plan: LoadPlan,
    published: watch::Sender<u64>,
    fault: watch::Receiver<Option<u64>>,
) -> anyhow::Result<LoadOutcome> {
    let after_fault = (plan.messages / 10).max(20);
    let more = |id: u64| {
        if fault.has_changed().is_err() {
            return false;
        }
        match *fault.borrow() {
            None => true,
            Some(first_after) => id < plan.messages.max(first_after + after_fault),
        }
    };
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut link = Link::open(&plan).await?;
    let mut outcome = LoadOutcome::default();
    let started = tokio::time::Instant::now();
    let mut unconfirmed = FuturesUnordered::new();
    let mut id = 0;
    while more(id) {
        // The intended send time: a publisher that falls behind catches up rather than drifts.
        let due = started + Duration::from_secs_f64(id as f64 / plan.rate);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(due) => break,
                Some((message, confirmation)) = unconfirmed.next(), if !unconfirmed.is_empty() => {
                    outcome.settle(message, confirmation);
                }
            }
        }
        let message = next_message(id, &plan, &mut rng);
        let (exchange, routing_key) = message.route(&plan);
        let confirm = loop {
            let publishing = link
                .channel
                .basic_publish(
                    exchange.into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &message.body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await;
            match publishing {
                Ok(confirm) => break confirm,
                // Expected while the broker restarts: what it cost shows in the round's
                // reconnects and in what was confirmed.
                Err(_) => {
                    link = Link::reopen(&plan).await?;
                    outcome.reconnects += 1;
                }
            }
        };
        unconfirmed.push(async move { (message, confirm.await) });
        id += 1;
        published.send_replace(id);
    }
    while let Some((message, confirmation)) = unconfirmed.next().await {
        outcome.settle(message, confirmation);
    }
    outcome.published = id;
    link.connection
        .close(200, "chaos load done".into())
        .await
        .ok();
    Ok(outcome)
}

fn next_message(id: u64, plan: &LoadPlan, rng: &mut StdRng) -> Message {
    let kind = if rng.random_bool(EVENT_SHARE) {
        Kind::Event
    } else if plan.malformed_share > 0.0 && rng.random_bool(plan.malformed_share) {
        Kind::Malformed(BadKind::ALL[rng.random_range(0..BadKind::ALL.len())])
    } else {
        Kind::Metric
    };
    let body = match kind {
        Kind::Metric => diamond_body(id, plan.base_seconds).into_bytes(),
        Kind::Malformed(bad) => bad.body(id, plan.base_seconds, rng),
        Kind::Event => event_body(id, plan.base_seconds),
    };
    Message { id, kind, body }
}

impl Message {
    /// Where it goes: (exchange, routing key).
    fn route<'a>(&self, plan: &'a LoadPlan) -> (&'a str, String) {
        match self.kind {
            Kind::Metric => (&plan.exchange, ROUTING_KEY.to_owned()),
            Kind::Malformed(_) => (
                &plan.exchange,
                format!("{BAD_ROUTING_KEY_PREFIX}{}", self.id),
            ),
            Kind::Event => (&plan.events_exchange, String::new()),
        }
    }
}

impl LoadOutcome {
    fn settle(&mut self, message: Message, confirmation: lapin::Result<lapin::Confirmation>) {
        if !confirmation.is_ok_and(|confirmation| confirmation.is_ack()) {
            return;
        }
        match message.kind {
            Kind::Metric => self.confirmed_good.push(message.id),
            Kind::Malformed(bad) => self.confirmed_bad.push((message.id, bad)),
            Kind::Event => self.confirmed_events.push(message.id),
        }
    }
}

/// Declares what the load is published to, as the manager does: the monitoring exchange with
/// sluice's metrics queue bound to it (so that what is published while sluice is down waits in
/// the queue), and the events exchange.
pub(super) async fn declare_topology(channel: &Channel, plan: &LoadPlan) -> anyhow::Result<()> {
    broker::declare_metrics_queue(channel, &plan.exchange, &plan.queue).await?;
    declare_exchange(
        channel,
        &ExchangeSpec::durable_fanout(plan.events_exchange.as_str()),
    )
    .await
    .with_context(|| format!("declaring the events exchange {}", plan.events_exchange))
}

/// A connection with a confirming channel, and the topology declared on it.
struct Link {
    connection: Connection,
    channel: Channel,
}

impl Link {
    async fn open(plan: &LoadPlan) -> anyhow::Result<Self> {
        let (connection, channel) = broker::confirming_channel(&plan.amqp_url).await?;
        declare_topology(&channel, plan).await?;
        Ok(Self {
            connection,
            channel,
        })
    }

    /// [`Link::open`] until the broker is back, for at most [`RECONNECT_TIMEOUT`].
    async fn reopen(plan: &LoadPlan) -> anyhow::Result<Self> {
        let deadline = Instant::now() + RECONNECT_TIMEOUT;
        loop {
            match Self::open(plan).await {
                Ok(link) => return Ok(link),
                Err(error) if Instant::now() > deadline => {
                    bail!("the broker did not come back within {RECONNECT_TIMEOUT:?}: {error:#}")
                }
                Err(_) => tokio::time::sleep(RECONNECT_PAUSE).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::point::PointLimits;
    use sluice_core::rejection::Rejection;
    use sluice_normalise::{Naming, Normaliser};

    /// Every malformed body is refused by sluice's own decoder, for the reason the harness
    /// expects to find on its dead letter; and a good body is not.
    #[test]
    fn every_bad_kind_is_refused_for_its_reason() {
        let normaliser = Normaliser::new(Naming::default(), PointLimits::default());
        let mut rng = StdRng::seed_from_u64(7);
        assert!(
            normaliser
                .normalise(diamond_body(3, 1_700_000_000).as_bytes())
                .is_ok()
        );
        for kind in BadKind::ALL {
            let body = kind.body(3, 1_700_000_000, &mut rng);
            let error = normaliser
                .normalise(&body)
                .expect_err(&format!("{kind:?} must be refused"));
            if let Some(reason) = kind.reason() {
                assert_eq!(error.reason().as_str(), reason, "{kind:?}: {error}");
            }
        }
    }
}
