//! Configuration in two layers.
//!
//! [`RawConfig`] is what the TOML file says, with serde defaults that make `sluice run` with no
//! file a Cloudify sidecar, and unknown keys refused. Every setting can be overridden by an
//! environment variable: `SLUICE_<SECTION>__<KEY>`, e.g. `SLUICE_INFLUX__URL` or
//! `SLUICE_METRICS__BINDING_KEYS='["#"]'` (values are read as TOML values).
//!
//! [`RawConfig::validate`] turns it into [`Settings`]: typed values (URLs, socket addresses,
//! non-zero sizes, parsed templates), checked without I/O, with every error naming its field.
//! The JSON Schema of the raw layer is `schemas/config.schema.json`; a test fails when it is
//! stale (`sluice config-schema > schemas/config.schema.json` regenerates it).

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sluice_amqp::BrokerUrl;
use sluice_amqp::dead_letter::DeadLetterSettings;
use sluice_amqp::publisher::EventPublisherSettings;
use sluice_amqp::source::SourceSettings;
use sluice_amqp::topology::{ExchangeSpec, ExchangeType, QueueSpec, SourceTopology};
use sluice_core::batch::BatchLimits;
use sluice_core::point::PointLimits;
use sluice_core::retry::RetryPolicy;
use sluice_elasticsearch::{EsAuth, EsSettings};
use sluice_influx::{InfluxApi, InfluxSettings, Precision};
use sluice_normalise::{IndexPattern, Naming, TemplateSet};
use sluice_rest::stage::RuleStageSettings;
use sluice_rest::{DEFAULT_MANAGER_URL, ManagerApi, ManagerSettings};
use sluice_rules::{EngineLimits, GenericLimits};

/// The prefix of environment overrides; sections and keys are separated by `__`.
pub const ENV_PREFIX: &str = "SLUICE_";
/// Enough to spread one queue over several connections; more only adds broker load.
const MAX_CONSUMERS: u16 = 16;
/// The longest `amqp.receive_pause`: far past the point where a longer pause saves any wake-ups
/// (one per run is reached at 1 ms, see BENCHMARKS.md); longer would only hold messages back.
const MAX_RECEIVE_PAUSE: Duration = Duration::from_millis(100);

#[derive(Deserialize, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
#[schemars(title = "sluice configuration")]
pub struct RawConfig {
    pub amqp: RawAmqp,
    pub metrics: RawMetrics,
    pub influx: RawInflux,
    pub events: RawEvents,
    pub elasticsearch: RawElasticsearch,
    pub dead_letter: RawDeadLetter,
    pub rules: RawRules,
    pub manager: RawManagerRest,
    pub admin: RawAdmin,
    pub shutdown: RawShutdown,
}

/// The RabbitMQ connection shared by every source.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawAmqp {
    /// Broker URL; its password is never logged.
    #[schemars(with = "String")]
    #[serde(serialize_with = "redacted")]
    pub url: SecretString,
    /// Unacknowledged deliveries per consumer: the bound on what is in flight. Should be at least
    /// `influx.batch_max_points * (influx.concurrency + 1)` so batches fill without waiting.
    pub prefetch: u16,
    /// While deliveries arrive in runs, how long a consumer lets them queue up before taking
    /// them: one thread wake-up per run instead of one per delivery, for at most this much
    /// latency. A lone delivery is taken at once. "0s" takes each delivery as it comes.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub receive_pause: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub reconnect_initial_delay: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub reconnect_max_delay: Duration,
}

impl Default for RawAmqp {
    fn default() -> Self {
        Self {
            url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            prefetch: 5000,
            receive_pause: Duration::from_millis(1),
            reconnect_initial_delay: Duration::from_millis(200),
            reconnect_max_delay: Duration::from_secs(30),
        }
    }
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum RawExchangeType {
    Topic,
    Fanout,
    Direct,
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum RawNaming {
    /// Graphite templates applied to the metric path (default `measurement*`).
    Templates,
    /// The old Cloudify consumer's series name as the measurement, with fields value, unit, type.
    CloudifyLegacy,
}

/// The metrics path: where Diamond metrics are consumed and how they are named.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    pub enabled: bool,
    /// The exchange the agents publish to, declared exactly as the manager declares it.
    pub exchange: String,
    pub exchange_type: RawExchangeType,
    pub exchange_durable: bool,
    pub exchange_auto_delete: bool,
    /// sluice's own queue; it survives sluice restarts, so metrics wait meanwhile.
    pub queue: String,
    pub queue_durable: bool,
    /// Binding keys; `#` also matches deployment ids that contain dots.
    pub binding_keys: Vec<String>,
    /// Broker-side `x-message-ttl` of the queue, e.g. "10m". Unset: messages never expire.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub queue_message_ttl: Option<Duration>,
    /// Broker-side `x-max-length` of the queue. Unset: unbounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_max_length: Option<u32>,
    pub naming: RawNaming,
    /// Joins the measurement parts (and field parts) a template picks.
    pub separator: String,
    /// Graphite templates, `[filter] template [tag=value,...]`, most specific filter wins.
    pub templates: Vec<String>,
    /// Longest measurement, tag or field name accepted, in bytes.
    pub max_name_bytes: usize,
    /// Consumers of the metrics queue, each on its own connection and channel with its own
    /// prefetch. More than one helps when one connection's frame handling is the limit.
    pub consumers: u16,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            enabled: true,
            exchange: "cloudify-monitoring".into(),
            exchange_type: RawExchangeType::Topic,
            exchange_durable: false,
            exchange_auto_delete: true,
            queue: "sluice.metrics".into(),
            queue_durable: true,
            binding_keys: vec!["#".into()],
            queue_message_ttl: None,
            queue_max_length: None,
            naming: RawNaming::Templates,
            separator: ".".into(),
            templates: vec!["measurement*".into()],
            max_name_bytes: PointLimits::default().max_name_bytes,
            consumers: 1,
        }
    }
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum RawInfluxApi {
    /// InfluxDB 1.x `/write` (also 2.x and 3.x compatibility endpoints).
    V1,
    /// InfluxDB 2.x `/api/v2/write` with org, bucket and token.
    V2,
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
pub enum RawPrecision {
    #[serde(rename = "ns")]
    Nanoseconds,
    #[serde(rename = "us")]
    Microseconds,
    #[serde(rename = "ms")]
    Milliseconds,
    #[serde(rename = "s")]
    Seconds,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawInflux {
    pub url: String,
    pub api: RawInfluxApi,
    /// v1: the database, created at start when `create_database` is true.
    pub database: String,
    pub create_database: bool,
    /// v1: the retention policy; unset for the database's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_policy: Option<String>,
    /// v1: basic-auth user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// v1: basic-auth password; never logged.
    #[schemars(with = "Option<String>")]
    #[serde(
        serialize_with = "redacted_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub password: Option<SecretString>,
    /// v2: organisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// v2: bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// v2: API token; never logged.
    #[schemars(with = "Option<String>")]
    #[serde(
        serialize_with = "redacted_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<SecretString>,
    pub precision: RawPrecision,
    pub gzip: bool,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub request_timeout: Duration,
    /// A batch is written when it holds this many points...
    pub batch_max_points: usize,
    /// ...or this many bytes of line protocol...
    pub batch_max_bytes: usize,
    /// ...or this long after its first point arrived.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub batch_linger: Duration,
    /// Write requests in flight at once.
    pub concurrency: usize,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_initial_delay: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_max_delay: Duration,
}

impl Default for RawInflux {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8086".into(),
            api: RawInfluxApi::V1,
            database: "cloudify".into(),
            create_database: true,
            retention_policy: None,
            username: None,
            password: None,
            org: None,
            bucket: None,
            token: None,
            precision: RawPrecision::Nanoseconds,
            gzip: false,
            request_timeout: Duration::from_secs(10),
            batch_max_points: 1000,
            batch_max_bytes: 1024 * 1024,
            batch_linger: Duration::from_millis(200),
            concurrency: 2,
            retry_initial_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(10),
        }
    }
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
pub enum RawManager {
    /// Cloudify 4.x: sluice's own durable queues bound to the durable fanout exchanges.
    #[serde(rename = "4.x")]
    V4,
    /// Cloudify 3.x: the manager's own queues (durable, auto-delete), fed through the default
    /// exchange.
    #[serde(rename = "3.x")]
    V3,
    /// Any exchanges: sluice's own durable queues bound with `binding_keys`.
    #[serde(rename = "generic")]
    Generic,
}

/// The events and logs path: the manager's event and log streams into Elasticsearch.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawEvents {
    pub enabled: bool,
    pub manager: RawManager,
    /// 4.x and generic: the exchanges to consume (one queue of sluice's own per exchange).
    pub exchanges: Vec<String>,
    /// generic: the exchanges' type (4.x: always fanout).
    pub exchange_type: RawExchangeType,
    /// generic: binding keys (fanout exchanges ignore them).
    pub binding_keys: Vec<String>,
    /// 4.x and generic: sluice's own queue for each exchange, in the same order. 3.x: the
    /// manager's queues to consume. Unset: `sluice.events`/`sluice.logs` (4.x), or
    /// `cloudify-events`/`cloudify-logs` (3.x).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<String>>,
    /// The index each document goes to, named from its own `@timestamp` (Logstash date syntax),
    /// or a fixed name such as `cloudify_events`.
    pub index: String,
    /// Install an index template (strings as text with a keyword sub-field) at start.
    pub install_index_template: bool,
}

impl Default for RawEvents {
    fn default() -> Self {
        Self {
            enabled: true,
            manager: RawManager::V4,
            exchanges: vec!["cloudify-events".into(), "cloudify-logs".into()],
            exchange_type: RawExchangeType::Fanout,
            binding_keys: vec!["#".into()],
            queues: None,
            index: "logstash-%{+YYYY.MM.dd}".into(),
            install_index_template: false,
        }
    }
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawElasticsearch {
    /// Elasticsearch 7 or 8, or OpenSearch.
    pub url: String,
    /// Basic-auth user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Basic-auth password; never logged.
    #[schemars(with = "Option<String>")]
    #[serde(
        serialize_with = "redacted_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub password: Option<SecretString>,
    /// An API key (`Authorization: ApiKey ...`), instead of basic auth; never logged.
    #[schemars(with = "Option<String>")]
    #[serde(
        serialize_with = "redacted_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_key: Option<SecretString>,
    pub gzip: bool,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub request_timeout: Duration,
    /// A bulk request is sent when it holds this many documents...
    pub batch_max_documents: usize,
    /// ...or this many bytes...
    pub batch_max_bytes: usize,
    /// ...or this long after its first document arrived.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub batch_linger: Duration,
    /// Bulk requests in flight at once.
    pub concurrency: usize,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_initial_delay: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_max_delay: Duration,
}

impl Default for RawElasticsearch {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9200".into(),
            username: None,
            password: None,
            api_key: None,
            gzip: false,
            request_timeout: Duration::from_secs(30),
            batch_max_documents: 500,
            batch_max_bytes: 5 * 1024 * 1024,
            batch_linger: Duration::from_millis(200),
            concurrency: 2,
            retry_initial_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(10),
        }
    }
}

/// Where rejected messages go, with headers saying why.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawDeadLetter {
    /// A durable topic exchange; routing key `<stage>.<reason>`.
    pub exchange: String,
    /// A durable queue bound with `#` so that dead letters are kept; "" to declare none (then
    /// bind your own, or unroutable dead letters send their originals back to their queue).
    pub queue: String,
}

impl Default for RawDeadLetter {
    fn default() -> Self {
        Self {
            exchange: "sluice.dead-letter".into(),
            queue: "sluice.dead-letter".into(),
        }
    }
}

/// The rule stage: the manager's policies (loaded by its `manager-riemann` control messages),
/// evaluated on the metrics stream, triggering workflows through the manager's REST API.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawRules {
    /// Needs the metrics path, which carries both the metrics and the control messages.
    pub enabled: bool,
    /// Generic rule files (TOML) for the standalone tier, evaluated on every point of the
    /// metrics path; each file's name (without `.toml`) is its rules' `group`. The manager's
    /// policies need none: they come with its control messages.
    pub files: Vec<String>,
    /// Where rule state is checkpointed (`rules.json`), so a restart neither re-fires nor
    /// forgets a silent host. Created at start.
    pub state_dir: String,
    /// How often silent hosts are looked for (the manager's Riemann: every 5 s).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub sweep_interval: Duration,
    /// How often changed state is written to `state_dir`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub checkpoint_interval: Duration,
    /// After a start, the first sweep for silent hosts waits this long, so the metrics that
    /// queued up while sluice was down arrive first (the manager's default TTL is 60 s).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub startup_grace: Duration,
    /// Keys (node instances, or host series) kept per policy or rule; the least recently seen
    /// goes.
    pub max_keys_per_policy: usize,
    /// Samples kept per key in a generic rule's window; the oldest go first.
    pub max_samples_per_window: usize,
    /// Keys not seen for this long are forgotten.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idle_forget_after: Duration,
    /// Actions (REST calls with their retries) running at once.
    pub max_actions_in_flight: usize,
    /// Actions waiting for a place; beyond this an action fails at once with a `trigger_failed`
    /// event saying so.
    pub max_actions_queued: usize,
    /// Where the rule stage's events go. Unset: the manager's events path, `cloudify-events`
    /// (the 4.x fanout exchange, or with `events.manager = "3.x"` the default exchange).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_exchange: Option<String>,
    /// Unset: `""` for an exchange, `cloudify-events` for the default exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_routing_key: Option<String>,
}

impl Default for RawRules {
    fn default() -> Self {
        Self {
            enabled: true,
            files: Vec::new(),
            state_dir: "/var/lib/sluice/rules".into(),
            sweep_interval: Duration::from_secs(5),
            checkpoint_interval: Duration::from_secs(5),
            startup_grace: Duration::from_secs(60),
            max_keys_per_policy: EngineLimits::default().max_keys_per_policy,
            max_samples_per_window: GenericLimits::default().max_samples_per_window,
            idle_forget_after: EngineLimits::default().idle_forget_after,
            max_actions_in_flight: 16,
            max_actions_queued: 1000,
            events_exchange: None,
            events_routing_key: None,
        }
    }
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
pub enum RawManagerRestApi {
    /// Cloudify 3.x: `/api/v2`, no authentication (the internal port 8101).
    #[serde(rename = "3.x")]
    V3,
    /// Cloudify 4.x: `/api/v3`, with `token` and `tenant`.
    #[serde(rename = "4.x")]
    V4,
}

/// The manager's REST API, which the rule stage's `execute_workflow` triggers call.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawManagerRest {
    pub url: String,
    pub api: RawManagerRestApi,
    /// 4.x: the `API-Authentication-Token`; never logged.
    #[schemars(with = "Option<String>")]
    #[serde(
        serialize_with = "redacted_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<SecretString>,
    /// 4.x: the `Tenant` header.
    pub tenant: String,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_initial_delay: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_max_delay: Duration,
    /// How long one action is retried (5xx, timeouts, connection errors) before it fails.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_deadline: Duration,
}

impl Default for RawManagerRest {
    fn default() -> Self {
        Self {
            url: DEFAULT_MANAGER_URL.into(),
            api: RawManagerRestApi::V3,
            token: None,
            tenant: "default_tenant".into(),
            retry_initial_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(10),
            retry_deadline: Duration::from_secs(60),
        }
    }
}

/// The admin HTTP endpoint: `/metrics` (Prometheus), `/healthz`, `/readyz`.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Loopback unless configured otherwise; "" disables the endpoint.
    pub listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9598".into(),
        }
    }
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawShutdown {
    /// How long SIGTERM waits for the pipeline to drain, flush and ack before exiting anyway
    /// (what is unacked then is redelivered by the broker).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub deadline: Duration,
}

impl Default for RawShutdown {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(30),
        }
    }
}

fn redacted<S: serde::Serializer>(_: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("***")
}

fn redacted_option<S: serde::Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str("***"),
        None => serializer.serialize_none(),
    }
}

/// One problem with the configuration, naming the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found, so a user fixes them in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration error(s):", self.0.len())?;
        for error in &self.0 {
            writeln!(f, "  {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl RawConfig {
    /// Reads the file (if any), then the `SLUICE_*` environment overrides.
    pub fn load(file: Option<&Path>) -> Result<RawConfig, ConfigErrors> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigErrors(vec![ConfigError {
                    field: "--config".into(),
                    message: format!("{} is not a readable file", file.display()),
                }]));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only nested keys (`SECTION__KEY`) are configuration; other SLUICE_* variables are not.
        figment = figment.merge(
            Env::prefixed(ENV_PREFIX)
                .split("__")
                .filter(|key| key.as_str().contains('.')),
        );
        figment.extract().map_err(|error| {
            ConfigErrors(
                error
                    .into_iter()
                    .map(|error| ConfigError {
                        field: if error.path.is_empty() {
                            "(top level)".to_owned()
                        } else {
                            error.path.join(".")
                        },
                        message: error.kind.to_string(),
                    })
                    .collect(),
            )
        })
    }

    /// Checks everything that can be checked without I/O and builds the typed settings.
    pub fn validate(&self) -> Result<Settings, ConfigErrors> {
        let mut errors = Vec::new();
        let mut fail = collect_into(&mut errors);

        let broker = BrokerUrl::parse(self.amqp.url.expose_secret())
            .map_err(|error| fail("amqp.url", error.to_string()))
            .ok();
        if !(1..=MAX_CONSUMERS).contains(&self.metrics.consumers) {
            fail(
                "metrics.consumers",
                format!("must be from 1 to {MAX_CONSUMERS}"),
            );
        }
        if self.amqp.prefetch == 0 {
            fail("amqp.prefetch", "must be at least 1".into());
        }
        if self.amqp.receive_pause > MAX_RECEIVE_PAUSE {
            // Each pause is added to the latency of what waits, and a long one throttles the
            // drain instead of coalescing wake-ups.
            fail(
                "amqp.receive_pause",
                format!(
                    "must be at most {}",
                    humantime::format_duration(MAX_RECEIVE_PAUSE)
                ),
            );
        }
        let reconnect = backoff(
            (
                "amqp.reconnect_initial_delay",
                self.amqp.reconnect_initial_delay,
            ),
            ("amqp.reconnect_max_delay", self.amqp.reconnect_max_delay),
            &mut fail,
        );

        let metrics = &self.metrics;
        if metrics.queue.is_empty() {
            fail("metrics.queue", "must not be empty".into());
        }
        if metrics.exchange.is_empty() {
            fail("metrics.exchange", "must not be empty".into());
        }
        if metrics.binding_keys.is_empty() {
            fail(
                "metrics.binding_keys",
                "needs at least one key (\"#\" for all)".into(),
            );
        }
        if metrics.max_name_bytes == 0 {
            fail("metrics.max_name_bytes", "must be at least 1".into());
        }
        let naming = match metrics.naming {
            RawNaming::CloudifyLegacy => Some(Naming::CloudifyLegacy),
            RawNaming::Templates => TemplateSet::parse(&metrics.separator, &metrics.templates)
                .map(Naming::Templates)
                .map_err(|error| fail("metrics.templates", error.to_string()))
                .ok(),
        };
        let point_limits = PointLimits {
            max_name_bytes: metrics.max_name_bytes,
            ..PointLimits::default()
        };

        let influx = &self.influx;
        let influx_url = http_url("influx.url", &influx.url, &mut fail);
        let api = match influx.api {
            RawInfluxApi::V1 => {
                if influx.database.is_empty() {
                    fail(
                        "influx.database",
                        "must not be empty with api = \"v1\"".into(),
                    );
                }
                if influx.password.is_some() && influx.username.is_none() {
                    fail("influx.username", "a password needs a username".into());
                }
                Some(InfluxApi::V1 {
                    database: influx.database.clone(),
                    retention_policy: influx.retention_policy.clone(),
                    username: influx.username.clone(),
                    password: influx.password.clone(),
                })
            }
            RawInfluxApi::V2 => {
                let org = influx.org.clone().filter(|org| !org.is_empty());
                let bucket = influx.bucket.clone().filter(|bucket| !bucket.is_empty());
                let token = influx.token.clone();
                if org.is_none() {
                    fail("influx.org", "is required with api = \"v2\"".into());
                }
                if bucket.is_none() {
                    fail("influx.bucket", "is required with api = \"v2\"".into());
                }
                if token.is_none() {
                    fail("influx.token", "is required with api = \"v2\"".into());
                }
                match (org, bucket, token) {
                    (Some(org), Some(bucket), Some(token)) => {
                        Some(InfluxApi::V2 { org, bucket, token })
                    }
                    _ => None,
                }
            }
        };
        let max_items = at_least_one(
            "influx.batch_max_points",
            influx.batch_max_points,
            &mut fail,
        );
        let max_bytes = at_least_one("influx.batch_max_bytes", influx.batch_max_bytes, &mut fail);
        let concurrency = at_least_one("influx.concurrency", influx.concurrency, &mut fail);
        above_zero("influx.request_timeout", influx.request_timeout, &mut fail);
        let write_retry = backoff(
            ("influx.retry_initial_delay", influx.retry_initial_delay),
            ("influx.retry_max_delay", influx.retry_max_delay),
            &mut fail,
        );

        if self.dead_letter.exchange.is_empty() {
            fail("dead_letter.exchange", "must not be empty".into());
        }
        let admin_listen = if self.admin.listen.is_empty() {
            None
        } else {
            match self.admin.listen.parse::<SocketAddr>() {
                Ok(address) => Some(address),
                Err(error) => {
                    fail(
                        "admin.listen",
                        format!("{:?} is not an address:port: {error}", self.admin.listen),
                    );
                    None
                }
            }
        };
        above_zero("shutdown.deadline", self.shutdown.deadline, &mut fail);
        drop(fail);
        let events = self.validate_events(broker.as_ref(), reconnect, &mut errors);
        let rules = self.validate_rules(broker.as_ref(), reconnect, &mut errors);

        let (
            Some(broker),
            Some(naming),
            Some(influx_url),
            Some(api),
            Some(max_items),
            Some(max_bytes),
            Some(concurrency),
        ) = (
            broker,
            naming,
            influx_url,
            api,
            max_items,
            max_bytes,
            concurrency,
        )
        else {
            return Err(ConfigErrors(errors));
        };
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }

        let exchange_type = metrics.exchange_type.into();
        let precision = match influx.precision {
            RawPrecision::Nanoseconds => Precision::Nanoseconds,
            RawPrecision::Microseconds => Precision::Microseconds,
            RawPrecision::Milliseconds => Precision::Milliseconds,
            RawPrecision::Seconds => Precision::Seconds,
        };
        let mut warnings = Vec::new();
        if self.rules.enabled && !metrics.enabled {
            warnings.push(
                "rules.enabled needs the metrics path, which carries the metrics and the \
                 manager's control messages: the rule stage is off"
                    .to_owned(),
            );
        }
        let wanted_prefetch = max_items.get().saturating_mul(concurrency.get() + 1);
        if usize::from(self.amqp.prefetch) < wanted_prefetch {
            warnings.push(format!(
                "amqp.prefetch {} is below influx.batch_max_points * (influx.concurrency + 1) = \
                 {wanted_prefetch}: batches will often wait for their linger time",
                self.amqp.prefetch
            ));
        }

        Ok(Settings {
            metrics: metrics.enabled.then(|| MetricsPathSettings {
                source: SourceSettings {
                    url: broker.clone(),
                    name: "metrics".to_owned(),
                    topology: SourceTopology {
                        exchange: Some(ExchangeSpec {
                            name: metrics.exchange.clone(),
                            kind: exchange_type,
                            durable: metrics.exchange_durable,
                            auto_delete: metrics.exchange_auto_delete,
                        }),
                        queue: QueueSpec {
                            name: metrics.queue.clone(),
                            durable: metrics.queue_durable,
                            auto_delete: false,
                            message_ttl: metrics.queue_message_ttl,
                            max_length: metrics.queue_max_length,
                        },
                        binding_keys: metrics.binding_keys.clone(),
                    },
                    prefetch: self.amqp.prefetch,
                    receive_pause: self.amqp.receive_pause,
                    reconnect,
                },
                consumers: metrics.consumers,
                naming,
                point_limits,
                influx: InfluxSettings {
                    url: influx_url,
                    api,
                    precision,
                    gzip: influx.gzip,
                    request_timeout: influx.request_timeout,
                    max_point: point_limits,
                },
                create_database: influx.create_database,
                batch: BatchLimits {
                    max_items,
                    max_bytes,
                    linger: influx.batch_linger,
                },
                concurrency,
                write_retry,
            }),
            events: events.filter(|_| self.events.enabled),
            rules: rules.filter(|_| self.rules.enabled && metrics.enabled),
            dead_letter: DeadLetterSettings {
                url: broker,
                exchange: self.dead_letter.exchange.clone(),
                queue: Some(self.dead_letter.queue.clone()).filter(|queue| !queue.is_empty()),
                reconnect,
            },
            admin_listen,
            shutdown_deadline: self.shutdown.deadline,
            warnings,
        })
    }

    /// The events path's part of [`RawConfig::validate`]: pushes its errors, and returns the
    /// settings when they are complete (also when the path is disabled, so a disabled section is
    /// still checked).
    fn validate_events(
        &self,
        broker: Option<&BrokerUrl>,
        reconnect: RetryPolicy,
        errors: &mut Vec<ConfigError>,
    ) -> Option<EventsPathSettings> {
        let mut fail = collect_into(errors);
        let events = &self.events;
        let index = IndexPattern::parse(&events.index)
            .map_err(|error| fail("events.index", error.to_string()))
            .ok();
        let queues = match (&events.manager, &events.queues) {
            (_, Some(queues)) => queues.clone(),
            (RawManager::V3, None) => vec!["cloudify-events".into(), "cloudify-logs".into()],
            (_, None) => events
                .exchanges
                .iter()
                .map(|exchange| {
                    format!(
                        "sluice.{}",
                        exchange.strip_prefix("cloudify-").unwrap_or(exchange)
                    )
                })
                .collect(),
        };
        if queues.is_empty() || queues.iter().any(String::is_empty) {
            fail(
                "events.queues",
                "needs at least one queue, and no empty names".into(),
            );
        }
        if events.manager != RawManager::V3 {
            if events.exchanges.is_empty() || events.exchanges.iter().any(String::is_empty) {
                fail(
                    "events.exchanges",
                    "needs at least one exchange, and no empty names".into(),
                );
            }
            if queues.len() != events.exchanges.len() {
                fail(
                    "events.queues",
                    format!(
                        "names {} queues for {} exchanges: one queue per exchange",
                        queues.len(),
                        events.exchanges.len()
                    ),
                );
            }
        }
        let topologies: Vec<SourceTopology> = match events.manager {
            RawManager::V3 => queues
                .iter()
                .map(|queue| SourceTopology {
                    exchange: None,
                    // Declared exactly as the 3.x manager declares them.
                    queue: QueueSpec {
                        name: queue.clone(),
                        durable: true,
                        auto_delete: true,
                        message_ttl: None,
                        max_length: None,
                    },
                    binding_keys: Vec::new(),
                })
                .collect(),
            RawManager::V4 | RawManager::Generic => events
                .exchanges
                .iter()
                .zip(&queues)
                .map(|(exchange, queue)| {
                    let (kind, binding_keys) = if events.manager == RawManager::V4 {
                        (ExchangeType::Fanout, vec![String::new()])
                    } else {
                        (events.exchange_type.into(), events.binding_keys.clone())
                    };
                    SourceTopology {
                        exchange: Some(ExchangeSpec {
                            name: exchange.clone(),
                            kind,
                            durable: true,
                            auto_delete: false,
                        }),
                        queue: QueueSpec {
                            name: queue.clone(),
                            durable: true,
                            auto_delete: false,
                            message_ttl: None,
                            max_length: None,
                        },
                        binding_keys,
                    }
                })
                .collect(),
        };
        let sources: Vec<SourceSettings> = topologies
            .into_iter()
            .filter_map(|topology| {
                Some(SourceSettings {
                    url: broker?.clone(),
                    name: topology.queue.name.clone(),
                    topology,
                    prefetch: self.amqp.prefetch,
                    receive_pause: self.amqp.receive_pause,
                    reconnect,
                })
            })
            .collect();

        let es = &self.elasticsearch;
        let url = http_url("elasticsearch.url", &es.url, &mut fail);
        let auth = match (&es.username, &es.password, &es.api_key) {
            (None, None, None) => Some(EsAuth::None),
            (Some(username), Some(password), None) => Some(EsAuth::Basic {
                username: username.clone(),
                password: password.clone(),
            }),
            (None, None, Some(key)) => Some(EsAuth::ApiKey(key.clone())),
            (_, _, Some(_)) => {
                fail(
                    "elasticsearch.api_key",
                    "use either an API key or username and password".into(),
                );
                None
            }
            _ => {
                fail(
                    "elasticsearch.password",
                    "username and password go together".into(),
                );
                None
            }
        };
        let max_items = at_least_one(
            "elasticsearch.batch_max_documents",
            es.batch_max_documents,
            &mut fail,
        );
        let max_bytes = at_least_one(
            "elasticsearch.batch_max_bytes",
            es.batch_max_bytes,
            &mut fail,
        );
        let concurrency = at_least_one("elasticsearch.concurrency", es.concurrency, &mut fail);
        above_zero(
            "elasticsearch.request_timeout",
            es.request_timeout,
            &mut fail,
        );
        let write_retry = backoff(
            ("elasticsearch.retry_initial_delay", es.retry_initial_delay),
            ("elasticsearch.retry_max_delay", es.retry_max_delay),
            &mut fail,
        );
        Some(EventsPathSettings {
            sources,
            index: index?,
            install_index_template: events.install_index_template,
            elasticsearch: EsSettings {
                url: url?,
                auth: auth?,
                gzip: es.gzip,
                request_timeout: es.request_timeout,
            },
            batch: BatchLimits {
                max_items: max_items?,
                max_bytes: max_bytes?,
                linger: es.batch_linger,
            },
            concurrency: concurrency?,
            write_retry,
        })
    }

    /// The rule stage's part of [`RawConfig::validate`], checked also when it is disabled.
    fn validate_rules(
        &self,
        broker: Option<&BrokerUrl>,
        reconnect: RetryPolicy,
        errors: &mut Vec<ConfigError>,
    ) -> Option<RulesSettings> {
        let mut fail = collect_into(errors);
        let rules = &self.rules;
        if rules.state_dir.is_empty() {
            fail("rules.state_dir", "must not be empty".into());
        }
        above_zero("rules.sweep_interval", rules.sweep_interval, &mut fail);
        above_zero(
            "rules.checkpoint_interval",
            rules.checkpoint_interval,
            &mut fail,
        );
        let max_keys = at_least_one(
            "rules.max_keys_per_policy",
            rules.max_keys_per_policy,
            &mut fail,
        );
        let max_samples = at_least_one(
            "rules.max_samples_per_window",
            rules.max_samples_per_window,
            &mut fail,
        );
        if rules.files.iter().any(String::is_empty) {
            fail("rules.files", "a file name is empty".into());
        }
        let in_flight = at_least_one(
            "rules.max_actions_in_flight",
            rules.max_actions_in_flight,
            &mut fail,
        );
        let queued = at_least_one(
            "rules.max_actions_queued",
            rules.max_actions_queued,
            &mut fail,
        );

        let manager = &self.manager;
        let manager_url = http_url("manager.url", &manager.url, &mut fail);
        let api = match (manager.api, &manager.token) {
            (RawManagerRestApi::V3, _) => Some(ManagerApi::V3),
            (RawManagerRestApi::V4, Some(token)) => Some(ManagerApi::V4 {
                token: token.clone(),
                tenant: manager.tenant.clone(),
            }),
            (RawManagerRestApi::V4, None) => {
                fail("manager.token", "is required with api = \"4.x\"".into());
                None
            }
        };
        let retry = backoff(
            ("manager.retry_initial_delay", manager.retry_initial_delay),
            ("manager.retry_max_delay", manager.retry_max_delay),
            &mut fail,
        );
        above_zero("manager.retry_deadline", manager.retry_deadline, &mut fail);

        // The manager's events path: 3.x's queue through the default exchange, or 4.x's
        // fanout exchange, declared as the manager declares it.
        let (default_exchange, default_routing_key) = match self.events.manager {
            RawManager::V3 => ("", "cloudify-events"),
            RawManager::V4 | RawManager::Generic => ("cloudify-events", ""),
        };
        let exchange = rules
            .events_exchange
            .clone()
            .unwrap_or_else(|| default_exchange.to_owned());
        let routing_key = rules.events_routing_key.clone().unwrap_or_else(|| {
            if exchange.is_empty() {
                "cloudify-events".to_owned()
            } else {
                default_routing_key.to_owned()
            }
        });
        let declare =
            (rules.events_exchange.is_none() && !exchange.is_empty()).then(|| ExchangeSpec {
                name: exchange.clone(),
                kind: ExchangeType::Fanout,
                durable: true,
                auto_delete: false,
            });
        let max_keys = max_keys?.get();
        let stage = RuleStageSettings {
            rule_files: rules.files.iter().map(std::path::PathBuf::from).collect(),
            state_dir: std::path::PathBuf::from(&rules.state_dir),
            sweep_interval: rules.sweep_interval,
            checkpoint_interval: rules.checkpoint_interval,
            startup_grace: rules.startup_grace,
            engine_limits: EngineLimits {
                max_keys_per_policy: max_keys,
                idle_forget_after: rules.idle_forget_after,
            },
            generic_limits: GenericLimits {
                max_keys_per_rule: max_keys,
                max_samples_per_window: max_samples?.get(),
                idle_forget_after: rules.idle_forget_after,
            },
            max_actions_in_flight: in_flight?,
            max_actions_queued: queued?,
            manager: ManagerSettings {
                url: manager_url?,
                api: api?,
                retry,
                retry_deadline: manager.retry_deadline,
            },
        };
        Some(RulesSettings {
            stage,
            events: EventPublisherSettings {
                url: broker?.clone(),
                exchange,
                declare,
                routing_key,
                reconnect,
            },
        })
    }
}

/// An http or https URL.
fn http_url(field: &str, raw: &str, fail: &mut impl FnMut(&str, String)) -> Option<url::Url> {
    let url = url::Url::parse(raw)
        .map_err(|error| fail(field, format!("{raw:?} is not a URL: {error}")))
        .ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        fail(
            field,
            format!("scheme {:?} is not http or https", url.scheme()),
        );
        return None;
    }
    Some(url)
}

/// A count that must be at least 1.
fn at_least_one(
    field: &str,
    value: usize,
    fail: &mut impl FnMut(&str, String),
) -> Option<NonZeroUsize> {
    let checked = NonZeroUsize::new(value);
    if checked.is_none() {
        fail(field, "must be at least 1".into());
    }
    checked
}

/// The `fail` every check reports to: each call pushes one [`ConfigError`] onto `errors`.
fn collect_into(errors: &mut Vec<ConfigError>) -> impl FnMut(&str, String) + '_ {
    |field, message| {
        errors.push(ConfigError {
            field: field.to_owned(),
            message,
        })
    }
}

fn above_zero(field: &str, value: Duration, fail: &mut impl FnMut(&str, String)) {
    if value.is_zero() {
        fail(field, "must be above zero".into());
    }
}

/// A backoff from its `(field, value)` pairs: the first delay above zero and at most the cap.
fn backoff(
    (initial_field, initial): (&str, Duration),
    (max_field, max): (&str, Duration),
    fail: &mut impl FnMut(&str, String),
) -> RetryPolicy {
    if initial.is_zero() || initial > max {
        fail(
            initial_field,
            format!("must be above zero and at most {max_field}"),
        );
    }
    RetryPolicy { initial, max }
}

/// Validated settings: what the pipeline runs with.
pub struct Settings {
    /// `None` when the metrics path is disabled.
    pub metrics: Option<MetricsPathSettings>,
    /// `None` when the events path is disabled.
    pub events: Option<EventsPathSettings>,
    /// `None` when the rule stage is disabled (or the metrics path is).
    pub rules: Option<RulesSettings>,
    pub dead_letter: DeadLetterSettings,
    pub admin_listen: Option<SocketAddr>,
    pub shutdown_deadline: Duration,
    /// Settings that are valid but probably not what the user wants.
    pub warnings: Vec<String>,
}

pub struct MetricsPathSettings {
    pub source: SourceSettings,
    /// How many consumers of `source` run side by side.
    pub consumers: u16,
    pub naming: Naming,
    pub point_limits: PointLimits,
    pub influx: InfluxSettings,
    pub create_database: bool,
    pub batch: BatchLimits,
    pub concurrency: NonZeroUsize,
    pub write_retry: RetryPolicy,
}

pub struct EventsPathSettings {
    /// One source per consumed queue; they feed one decoder.
    pub sources: Vec<SourceSettings>,
    pub index: IndexPattern,
    pub install_index_template: bool,
    pub elasticsearch: EsSettings,
    pub batch: BatchLimits,
    pub concurrency: NonZeroUsize,
    pub write_retry: RetryPolicy,
}

/// The rule stage's settings, and where its events are published.
pub struct RulesSettings {
    pub stage: RuleStageSettings,
    /// Where the policy and trigger events are published.
    pub events: EventPublisherSettings,
}

impl From<RawExchangeType> for ExchangeType {
    fn from(raw: RawExchangeType) -> Self {
        match raw {
            RawExchangeType::Topic => ExchangeType::Topic,
            RawExchangeType::Fanout => ExchangeType::Fanout,
            RawExchangeType::Direct => ExchangeType::Direct,
        }
    }
}

/// The JSON Schema of the configuration file.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawConfig)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_cloudify_sidecar() {
        let settings = RawConfig::default().validate().expect("defaults are valid");
        let metrics = settings.metrics.expect("metrics path on by default");
        let exchange = metrics.source.topology.exchange.expect("an exchange");
        assert_eq!(exchange.name, "cloudify-monitoring");
        assert_eq!(exchange.kind, ExchangeType::Topic);
        assert!(
            !exchange.durable && exchange.auto_delete,
            "declared as the manager does"
        );
        assert!(!metrics.source.topology.queue.auto_delete);
        assert_eq!(metrics.source.topology.binding_keys, vec!["#".to_owned()]);
        assert_eq!(metrics.influx.url.as_str(), "http://127.0.0.1:8086/");
        assert!(
            matches!(metrics.influx.api, InfluxApi::V1 { ref database, .. } if database == "cloudify")
        );
        assert_eq!(
            settings.admin_listen,
            Some("127.0.0.1:9598".parse().expect("addr"))
        );
        assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
        // Events: the 4.x manager's durable fanout exchanges, sluice's own durable queues.
        let events = settings.events.expect("events path on by default");
        let streams: Vec<(String, String)> = events
            .sources
            .iter()
            .map(|source| {
                let exchange = source.topology.exchange.as_ref().expect("an exchange");
                assert_eq!(exchange.kind, ExchangeType::Fanout);
                assert!(exchange.durable && !exchange.auto_delete);
                assert!(source.topology.queue.durable && !source.topology.queue.auto_delete);
                (exchange.name.clone(), source.topology.queue.name.clone())
            })
            .collect();
        assert_eq!(
            streams,
            vec![
                ("cloudify-events".to_owned(), "sluice.events".to_owned()),
                ("cloudify-logs".to_owned(), "sluice.logs".to_owned()),
            ]
        );
        assert_eq!(events.index.as_str(), "logstash-%{+YYYY.MM.dd}");
        assert_eq!(events.elasticsearch.url.as_str(), "http://127.0.0.1:9200/");
    }

    #[test]
    fn manager_3x_consumes_the_managers_own_queues_as_it_declares_them() {
        let mut raw = RawConfig::default();
        raw.events.manager = RawManager::V3;
        let events = raw.validate().expect("valid").events.expect("events");
        let queues: Vec<&str> = events
            .sources
            .iter()
            .map(|source| {
                assert!(
                    source.topology.exchange.is_none(),
                    "fed through the default exchange"
                );
                assert!(source.topology.queue.durable && source.topology.queue.auto_delete);
                source.topology.queue.name.as_str()
            })
            .collect();
        assert_eq!(queues, vec!["cloudify-events", "cloudify-logs"]);
    }

    #[test]
    fn the_rule_stage_defaults_to_the_3x_manager_and_the_4x_events_exchange() {
        let rules = RawConfig::default()
            .validate()
            .expect("valid")
            .rules
            .expect("the rule stage is on by default");
        assert_eq!(rules.stage.manager.url.as_str(), "http://127.0.0.1:8101/");
        assert!(matches!(rules.stage.manager.api, ManagerApi::V3));
        assert_eq!(rules.stage.sweep_interval, Duration::from_secs(5));
        assert_eq!(rules.events.exchange, "cloudify-events");
        assert_eq!(rules.events.routing_key, "");
        let declared = rules
            .events
            .declare
            .expect("declared as the 4.x manager does");
        assert_eq!(declared.kind, ExchangeType::Fanout);
        assert!(declared.durable && !declared.auto_delete);

        // 3.x: the manager's queue through the default exchange, nothing declared.
        let mut raw = RawConfig::default();
        raw.events.manager = RawManager::V3;
        let rules = raw.validate().expect("valid").rules.expect("rules");
        assert_eq!(rules.events.exchange, "");
        assert_eq!(rules.events.routing_key, "cloudify-events");
        assert!(rules.events.declare.is_none());
    }

    #[test]
    fn the_4x_api_needs_a_token_and_the_rule_stage_needs_the_metrics_path() {
        let mut raw = RawConfig::default();
        raw.manager.api = RawManagerRestApi::V4;
        raw.manager.url = "ftp://manager".into();
        raw.rules.sweep_interval = Duration::ZERO;
        let errors = raw.validate().err().expect("invalid").0;
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        for field in ["manager.token", "manager.url", "rules.sweep_interval"] {
            assert!(fields.contains(&field), "{field} missing from {fields:?}");
        }

        let mut raw = RawConfig::default();
        raw.manager.api = RawManagerRestApi::V4;
        raw.manager.token = Some(SecretString::from("s3cret-token"));
        raw.metrics.enabled = false;
        let settings = raw.validate().expect("valid");
        assert!(settings.rules.is_none(), "no metrics path, no rule stage");
        assert!(
            settings
                .warnings
                .iter()
                .any(|warning| warning.contains("rules.enabled"))
        );
        let shown = serde_json::to_string(&raw).expect("serialisable");
        assert!(
            !shown.contains("s3cret-token"),
            "the token is redacted: {shown}"
        );
    }

    #[test]
    fn every_error_is_reported_with_its_field() {
        let mut raw = RawConfig::default();
        raw.amqp.url = SecretString::from("http://nope");
        raw.amqp.prefetch = 0;
        raw.amqp.receive_pause = Duration::from_secs(1);
        raw.metrics.consumers = 0;
        raw.influx.api = RawInfluxApi::V2;
        raw.influx.batch_max_points = 0;
        raw.metrics.templates = vec!["measurement* field*".into()];
        raw.admin.listen = "everywhere".into();
        raw.events.index = "Logstash-%{+YYYY}".into();
        raw.elasticsearch.username = Some("elastic".into());
        raw.elasticsearch.batch_max_documents = 0;
        let errors = raw.validate().err().expect("invalid").0;
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        for field in [
            "amqp.url",
            "amqp.prefetch",
            "amqp.receive_pause",
            "metrics.consumers",
            "influx.org",
            "influx.bucket",
            "influx.token",
            "influx.batch_max_points",
            "metrics.templates",
            "admin.listen",
            "events.index",
            "elasticsearch.password",
            "elasticsearch.batch_max_documents",
        ] {
            assert!(fields.contains(&field), "{field} missing from {fields:?}");
        }
    }

    #[test]
    fn schema_file_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/config.schema.json"
        );
        let on_disk: serde_json::Value = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        assert!(
            on_disk == json_schema(),
            "schemas/config.schema.json is stale: run `cargo run -p sluice -- config-schema > schemas/config.schema.json`"
        );
    }
}
