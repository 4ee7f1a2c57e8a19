//! Shared harness for the end-to-end tests: the real `sluice` binary, the real RabbitMQ and the
//! real InfluxDB, each test with its own exchange, queues and database so tests run in parallel.
//!
//! Services come from `AMQP_URL` and `INFLUX_URL` (defaults: the local ones that
//! `deploy/services.sh` starts). A missing service fails the test with what to run.

// Each test uses part of the harness.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};

use sluice_amqp::topology::{ExchangeSpec, declare_exchange};
pub use sluice_testing::names::{free_port, unique};
pub use sluice_testing::services::{amqp_url, influx_url};
pub use sluice_testing::wait::eventually;

/// A Diamond metric body as the manager's agents publish it.
pub fn diamond(deployment: &str, node_id: &str, path: &str, metric: f64, time: i64) -> Vec<u8> {
    let (collector, rest) = path.split_once('.').unwrap_or((path, "value"));
    serde_json::json!({
        "node_id": node_id,
        "node_name": "nodejs_host",
        "deployment_id": deployment,
        "name": collector,
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

// ---------------------------------------------------------------------------------------------
// RabbitMQ

pub struct Broker {
    pub connection: Connection,
    pub channel: Channel,
}

impl Broker {
    pub async fn connect() -> Broker {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "RabbitMQ is not reachable at {}: {error}; run deploy/services.sh",
                    amqp_url()
                )
            });
        let channel = connection.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        Broker {
            connection,
            channel,
        }
    }

    /// Declares the metrics exchange exactly as the manager's agents do.
    pub async fn declare_monitoring_exchange(&self, exchange: &str) {
        declare_exchange(&self.channel, &ExchangeSpec::cloudify_monitoring(exchange))
            .await
            .expect("declare exchange");
    }

    /// Declares a durable fanout exchange, as the 4.x manager declares `cloudify-events`.
    pub async fn declare_fanout_exchange(&self, exchange: &str) {
        declare_exchange(&self.channel, &ExchangeSpec::durable_fanout(exchange))
            .await
            .expect("declare exchange");
    }

    /// Declares a queue bound to `exchange` with `binding_key`, so a test sees what is published.
    pub async fn bind_queue(&self, queue: &str, exchange: &str, binding_key: &str) {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("declare queue");
        self.channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                binding_key.into(),
                lapin::options::QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind queue");
    }

    /// Publishes with no properties, as the agents do, and waits for the broker's confirm.
    pub async fn publish(&self, exchange: &str, routing_key: &str, body: &[u8]) {
        sluice_load::publish::publish_confirmed(&self.channel, [(exchange, routing_key, body)])
            .await
            .expect("publish, confirmed");
    }

    /// Ready (not unacked) messages and consumers of a queue, without changing it.
    pub async fn queue_counts(&self, queue: &str) -> (u32, u32) {
        let declared = self
            .channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue exists");
        (declared.message_count(), declared.consumer_count())
    }

    /// Removes the queues and the dead-letter exchange a test's sluice declared. The metrics
    /// exchange is auto-delete: it goes with its last binding.
    pub async fn remove(&self, names: &TestNames) {
        self.delete_queue(&names.queue).await;
        self.delete_queue(&names.dead_letter_queue).await;
        self.delete_exchange(&names.dead_letter_exchange).await;
    }

    pub async fn delete_queue(&self, queue: &str) {
        let _ = self
            .channel
            .queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
            .await;
    }

    pub async fn delete_exchange(&self, exchange: &str) {
        let _ = self
            .channel
            .exchange_delete(
                exchange.into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    }

    /// Takes `count` messages from `queue` (acking them), failing after `timeout`.
    pub async fn take(&self, queue: &str, count: usize, timeout: Duration) -> Vec<DeadLetterSeen> {
        let channel = self.connection.create_channel().await.expect("channel");
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                unique("test-reader").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while seen.len() < count {
            let next = tokio::time::timeout_at(deadline, consumer.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("only {} of {count} messages arrived in {queue}", seen.len())
                });
            let delivery = next.expect("stream open").expect("delivery");
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
            let headers = delivery
                .properties
                .headers()
                .clone()
                .map(|table| {
                    table
                        .inner()
                        .iter()
                        .map(|(key, value)| (key.to_string(), header_text(value)))
                        .collect()
                })
                .unwrap_or_default();
            seen.push(DeadLetterSeen {
                routing_key: delivery.routing_key.to_string(),
                headers,
                body: delivery.data,
            });
        }
        let _ = channel.close(200, "done".into()).await;
        seen
    }
}

fn header_text(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        AMQPValue::LongLongInt(number) => number.to_string(),
        other => format!("{other:?}"),
    }
}

#[derive(Debug)]
pub struct DeadLetterSeen {
    pub routing_key: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

// ---------------------------------------------------------------------------------------------
// The sluice process

/// Names of everything one test's sluice uses, so tests never share broker objects.
pub struct TestNames {
    pub exchange: String,
    pub queue: String,
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    pub database: String,
}

impl TestNames {
    pub fn new(test: &str) -> TestNames {
        TestNames {
            exchange: unique(&format!("{test}.monitoring")),
            queue: unique(&format!("{test}.metrics")),
            dead_letter_exchange: unique(&format!("{test}.dead-letter")),
            dead_letter_queue: unique(&format!("{test}.dead-letter")),
            database: unique(test),
        }
    }
}

pub struct Sluice {
    process: Option<Child>,
    pub admin: String,
    client: reqwest::Client,
    /// The rule stage's state directory unless the test names its own.
    _state_dir: tempfile::TempDir,
}

impl Sluice {
    /// Starts `sluice run` with the test's names, extra `SLUICE_*` overrides, and waits until
    /// it is consuming (so its queue is bound before anything is published).
    pub async fn start(names: &TestNames, influx_url: &str, overrides: &[(&str, &str)]) -> Sluice {
        Sluice::start_with_args(names, influx_url, overrides, &[]).await
    }

    /// As [`Sluice::start`], with `args` after `sluice run` (e.g. `--config FILE`).
    pub async fn start_with_args(
        names: &TestNames,
        influx_url: &str,
        overrides: &[(&str, &str)],
        args: &[&str],
    ) -> Sluice {
        let admin = format!("127.0.0.1:{}", free_port());
        let state_dir = tempfile::tempdir().expect("a temporary directory");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .arg("run")
            .args(args)
            .env("RUST_LOG", "warn")
            .env("SLUICE_AMQP__URL", amqp_url())
            .env("SLUICE_METRICS__EXCHANGE", &names.exchange)
            .env("SLUICE_METRICS__QUEUE", &names.queue)
            .env("SLUICE_DEAD_LETTER__EXCHANGE", &names.dead_letter_exchange)
            .env("SLUICE_DEAD_LETTER__QUEUE", &names.dead_letter_queue)
            .env("SLUICE_INFLUX__URL", influx_url)
            .env("SLUICE_INFLUX__DATABASE", &names.database)
            .env("SLUICE_INFLUX__BATCH_LINGER", "50ms")
            .env("SLUICE_EVENTS__ENABLED", "false")
            .env("SLUICE_ELASTICSEARCH__BATCH_LINGER", "50ms")
            .env("SLUICE_ADMIN__LISTEN", &admin)
            .env("SLUICE_RULES__STATE_DIR", state_dir.path())
            .stdin(Stdio::null());
        for (key, value) in overrides {
            command.env(key, value);
        }
        let process = command.spawn().expect("spawn sluice");
        let sluice = Sluice {
            process: Some(process),
            admin,
            client: reqwest::Client::new(),
            _state_dir: state_dir,
        };
        eventually(
            "sluice to consume its queue",
            Duration::from_secs(30),
            || async { sluice.consuming().await.then_some(()) },
        )
        .await;
        sluice
    }

    /// Consuming from the broker; `/readyz` says so even while a store is down ("influxdb: ...",
    /// "pipelines: sink ...").
    async fn consuming(&self) -> bool {
        let Ok(response) = self
            .client
            .get(format!("http://{}/readyz", self.admin))
            .send()
            .await
        else {
            return false;
        };
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        // A store that does not answer is reported after the sources, which consume already.
        status == 200
            || ["influxdb", "elasticsearch", "pipelines: sink"]
                .iter()
                .any(|store| body.starts_with(store))
    }

    /// Status and body of an admin endpoint.
    pub async fn get(&self, path: &str) -> (u16, String) {
        match self
            .client
            .get(format!("http://{}{path}", self.admin))
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    pub async fn metrics_text(&self) -> Option<String> {
        let response = self
            .client
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .ok()?;
        response.text().await.ok()
    }

    /// A counter's value for one label set, written as `/metrics` has it, e.g.
    /// `path="metrics"` (0 when absent).
    pub async fn counter_with(&self, name: &str, labels: &str) -> f64 {
        let series = format!("{name}{{{labels}}} ");
        let text = self.metrics_text().await.unwrap_or_default();
        text.lines()
            .filter_map(|line| line.strip_prefix(&series)?.parse::<f64>().ok())
            .sum()
    }

    /// Sends `signal` (e.g. `HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.process.as_ref().map(Child::id).expect("running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The sum of a counter over all its label sets (0 when absent).
    pub async fn counter(&self, name: &str) -> f64 {
        let text = self.metrics_text().await.unwrap_or_default();
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Has the broker close this process's connection of `role` (`metrics`, `dead-letter`), as a
    /// broker restart or a network cut would. Returns how many connections were closed.
    pub fn sever_broker_connection(&self, role: &str) -> usize {
        let pid = self.process.as_ref().map(Child::id).expect("running");
        sluice_testing::services::close_broker_connections(&format!("sluice {role} pid={pid}"))
    }

    /// `kill -9`, sent from this process (no `kill` to spawn first, so nothing sluice holds in
    /// memory gets out after the caller decided to kill it), then reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit; returns the exit status's success.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.process.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().map(|status| status.success()).unwrap_or(false)
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
