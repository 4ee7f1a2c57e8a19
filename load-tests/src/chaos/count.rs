//! The account after a round: the ids stored in InfluxDB and in the Elasticsearch double, what
//! the queues still hold, and the dead letters with the ids and reasons they carry.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use lapin::Channel;
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

use sluice_testing::elasticsearch::FakeElasticsearch;

use super::load::{BAD_ROUTING_KEY_PREFIX, EVENT_TASK_PREFIX};

/// The measurement the load's good bodies become (`service` after
/// `<deployment>.<node>.<node_id>.`, with the default template `measurement*`).
const MEASUREMENT: &str = "chaos.id";

/// Ready messages and consumers of `queue`.
pub(super) async fn queue_state(channel: &Channel, queue: &str) -> anyhow::Result<(u32, u32)> {
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

/// One message of the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DeadLetterSeen {
    /// The malformed id its original routing key names; `None` for anything else (a good
    /// message dead-lettered, which its missing point shows too).
    pub id: Option<u64>,
    pub reason: Option<String>,
}

/// Takes every message of the dead-letter queue (sluice has stopped: nothing adds to it).
pub(super) async fn take_dead_letters(
    channel: &Channel,
    queue: &str,
) -> anyhow::Result<Vec<DeadLetterSeen>> {
    let mut seen = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .with_context(|| format!("reading the dead letters of {queue}"))?
    {
        let headers = message
            .delivery
            .properties
            .headers()
            .clone()
            .unwrap_or_default();
        let text = |name: &str| match headers.inner().get(name) {
            Some(AMQPValue::LongString(text)) => Some(text.to_string()),
            Some(AMQPValue::ShortString(text)) => Some(text.to_string()),
            _ => None,
        };
        let id = text(sluice_amqp::dead_letter::headers::ORIGINAL_ROUTING_KEY)
            .and_then(|key| key.strip_prefix(BAD_ROUTING_KEY_PREFIX)?.parse().ok());
        seen.push(DeadLetterSeen {
            id,
            reason: text(sluice_amqp::dead_letter::headers::REASON),
        });
    }
    Ok(seen)
}

/// The round's database, through InfluxDB's 1.x query API.
pub(super) struct Influx {
    client: reqwest::Client,
    url: String,
    database: Arc<str>,
}

impl Influx {
    pub(super) fn new(url: &str, database: &str) -> Self {
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
    pub(super) async fn count_from(&self, from: u64) -> anyhow::Result<u64> {
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
    pub(super) async fn all_ids(&self) -> anyhow::Result<Vec<u64>> {
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

    pub(super) async fn drop_database(&self) -> anyhow::Result<()> {
        self.query(&format!("DROP DATABASE \"{}\"", self.database))
            .await
            .map(|_| ())
    }
}

/// The event id of every document stored (copies included), from its `context.task_id`.
pub(super) fn event_ids(es: &FakeElasticsearch) -> Vec<u64> {
    es.documents("*")
        .iter()
        .filter_map(|document| {
            document["context"]["task_id"]
                .as_str()?
                .strip_prefix(EVENT_TASK_PREFIX)?
                .parse()
                .ok()
        })
        .collect()
}
