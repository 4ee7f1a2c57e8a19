//! Configuration in two layers.
//!
//! [`RawConfig`] is what the TOML file says, with serde defaults that make `sluice run` with no
//! file a Cloudify sidecar, and unknown keys refused. Every setting can be overridden by an
//! environment variable: `SLUICE_<SECTION>__<KEY>`, e.g. `SLUICE_INFLUX__URL` or
//! `SLUICE_METRICS__BINDING_KEYS='["#"]'` (values are read as TOML values).
//!
//! [`RawConfig::validate`] turns it into [`Settings`]: typed values (URLs, socket addresses,
//! non-zero sizes, parsed templates), checked without I/O, with every error naming its field.
//! (Every secret may come from a file, `<name>_file`; those are read while loading, see
//! [`secret`].)
//! The JSON Schema of the raw layer is `schemas/config.schema.json`; a test fails when it is
//! stale (`sluice config-schema > schemas/config.schema.json` regenerates it).
//!
//! Each section has its module, holding its raw struct and its checks: [`amqp`], [`metrics`]
//! with its sink [`influx`], [`events`] with its sink [`elasticsearch`], [`dead_letter`],
//! [`rules`] with the [`manager`] API its actions call, [`admin`] and [`shutdown`]. This module
//! loads the file, runs the sections' checks in that order and ties their results together.

mod admin;
mod amqp;
mod dead_letter;
mod elasticsearch;
mod events;
mod fingerprint;
mod influx;
mod manager;
mod metrics;
mod pipelines;
mod rules;
mod secret;
mod shutdown;
#[cfg(test)]
mod test_support;
mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use schemars::JsonSchema;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use sluice_amqp::dead_letter::DeadLetterSettings;
use sluice_core::batch::BatchLimits;
use sluice_core::path::PathLimits;
use sluice_core::retry::RetryPolicy;

pub use admin::RawAdmin;
pub use amqp::RawAmqp;
pub use dead_letter::RawDeadLetter;
pub use elasticsearch::RawElasticsearch;
pub use events::{EventsPathSettings, RawEvents};
pub use fingerprint::Fingerprints;
pub use influx::RawInflux;
use influx::RawInfluxApi;
pub use manager::RawManagerRest;
pub use metrics::{MetricsPathSettings, RawMetrics};
pub use pipelines::{
    ConsumeSpec, DecoderSpec, IntakeSpec, PipelinesSettings, PublishTarget, RawPipelines, RawSink,
    RawSinkKind, RawSource, RawTransform, SinkKind, SinkSpec, SourceSpec,
};
pub use rules::{RawRules, RulesSettings};
pub use shutdown::RawShutdown;

/// The prefix of environment overrides; sections and keys are separated by `__`.
pub const ENV_PREFIX: &str = "SLUICE_";

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
    /// Configured pipelines (the standalone tier): named sources...
    pub sources: BTreeMap<String, RawSource>,
    /// ...transforms...
    pub transforms: BTreeMap<String, RawTransform>,
    /// ...and sinks, each naming its `inputs`.
    pub sinks: BTreeMap<String, RawSink>,
}

fn redacted_option<S: serde::Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) if fingerprint::revealing() => {
            serializer.serialize_str(secret.expose_secret())
        }
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
    /// The configured pipelines' sections.
    pub fn pipelines(&self) -> RawPipelines<'_> {
        RawPipelines {
            sources: &self.sources,
            transforms: &self.transforms,
            sinks: &self.sinks,
        }
    }

    /// Whether the sidecar's metrics path runs: as `metrics.enabled` says, else when no
    /// pipelines are configured.
    pub fn metrics_enabled(&self) -> bool {
        self.metrics.enabled.unwrap_or(self.pipelines().is_empty())
    }

    /// Whether the sidecar's events path runs, decided as for [`metrics_enabled`](Self::metrics_enabled).
    pub fn events_enabled(&self) -> bool {
        self.events.enabled.unwrap_or(self.pipelines().is_empty())
    }

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
        Self::extract(&figment)
    }

    /// Reads the text of a configuration file as [`load`](Self::load) reads the file, without
    /// the environment's overrides: what a file alone says (the fuzz target of the
    /// configuration reads its inputs with this).
    pub fn from_toml(text: &str) -> Result<RawConfig, ConfigErrors> {
        Self::extract(&Figment::new().merge(Toml::string(text)))
    }

    /// The sections a figment holds, every error naming its field.
    fn extract(figment: &Figment) -> Result<RawConfig, ConfigErrors> {
        figment.extract().map_err(|error| {
            ConfigErrors(
                error
                    .into_iter()
                    .map(|error| {
                        let path = error.path.join(".");
                        ConfigError {
                            // Also a key that is the empty string (`"" = 1`) at the top level.
                            field: if path.is_empty() {
                                "(top level)".to_owned()
                            } else {
                                path
                            },
                            message: explained(&error.kind),
                        }
                    })
                    .collect(),
            )
        })
    }

    /// Checks everything that can be checked without I/O and builds the typed settings.
    pub fn validate(&self) -> Result<Settings, ConfigErrors> {
        let mut errors = Vec::new();
        let mut fail = collect_into(&mut errors);

        let amqp = self.amqp.validate(&mut fail);
        let metrics = self.metrics.validate(&self.influx, &amqp, &mut fail);
        self.dead_letter.validate(&mut fail);
        let admin_listen = self.admin.validate(&mut fail);
        self.shutdown.validate(&mut fail);
        let events = self.events.validate(&self.elasticsearch, &amqp, &mut fail);
        let rules = self
            .rules
            .validate(&self.manager, self.events.manager, &amqp, &mut fail);
        let pipelines = self.pipelines().validate(&amqp, &mut fail);
        drop(fail);

        let (Some(broker), Some(metrics_path)) = (amqp.broker, metrics) else {
            return Err(ConfigErrors(errors));
        };
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }

        let mut warnings = Vec::new();
        // A tier without the sidecar's metrics path has no use for its rule stage: no warning.
        if self.rules.enabled && self.metrics.enabled == Some(false) {
            warnings.push(
                "rules.enabled needs the metrics path, which carries the metrics and the \
                 manager's control messages: the rule stage is off"
                    .to_owned(),
            );
        }
        let wanted_prefetch = metrics_path
            .limits
            .batch
            .max_items
            .get()
            .saturating_mul(metrics_path.limits.concurrency.get() + 1);
        if usize::from(self.amqp.prefetch) < wanted_prefetch {
            warnings.push(format!(
                "amqp.prefetch {} is below influx.batch_max_points * (influx.concurrency + 1) = \
                 {wanted_prefetch}: batches will often wait for their linger time",
                self.amqp.prefetch
            ));
        }

        warnings.extend(self.no_sync_warnings());

        Ok(Settings {
            metrics: Some(metrics_path).filter(|_| self.metrics_enabled()),
            events: events.filter(|_| self.events_enabled()),
            rules: rules.filter(|_| self.rules.enabled && self.metrics_enabled()),
            pipelines,
            dead_letter: self.dead_letter.settings(broker, amqp.reconnect),
            admin_listen,
            shutdown_deadline: self.shutdown.deadline,
            warnings,
        })
    }
}

impl RawConfig {
    /// InfluxDB 3's `no_sync` answers before the write-ahead log is persisted: allowed, since
    /// some data can be lost, but said at every start, because an ack after it is not durable.
    fn no_sync_warnings(&self) -> Vec<String> {
        let in_use = |influx: &RawInflux| influx.no_sync && matches!(influx.api, RawInfluxApi::V3);
        let sidecar = (self.metrics_enabled() && in_use(&self.influx)).then(|| "influx".to_owned());
        let sinks = self
            .sinks
            .iter()
            .filter_map(|(name, sink)| match &sink.kind {
                RawSinkKind::Influxdb(influx) if in_use(influx) => Some(format!("sinks.{name}")),
                _ => None,
            });
        sidecar
            .into_iter()
            .chain(sinks)
            .map(|section| {
                format!(
                    "{section}.no_sync = true: InfluxDB answers before its write-ahead log is \
                     persisted, so points acked after it can be lost with the server"
                )
            })
            .collect()
    }
}

/// A loading error's text; a misspelt setting also gets the nearest real one.
fn explained(kind: &figment::error::Kind) -> String {
    if let figment::error::Kind::UnknownField(found, expected) = kind {
        let nearest = expected
            .iter()
            .map(|known| (strsim::jaro_winkler(found, known), *known))
            .filter(|(similarity, _)| *similarity > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((_, known)) = nearest {
            return format!("unknown setting `{found}`: did you mean `{known}`?");
        }
        return format!(
            "unknown setting `{found}`; this section has: {}",
            expected.join(", ")
        );
    }
    kind.to_string()
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

/// How a sink's writes are batched, run and retried: the settings `[influx]` and
/// `[elasticsearch]` both have, checked the same way. Errors name `<section>.<key>`.
struct SinkWrites<'a> {
    section: &'a str,
    /// What the sink counts its batches in: `batch_max_points`, `batch_max_documents`.
    max_items_key: &'a str,
    max_items: usize,
    max_bytes: usize,
    linger: Duration,
    concurrency: usize,
    /// What the sink calls how long one write may take: `request_timeout`, `confirm_timeout`.
    timeout_key: &'a str,
    request_timeout: Duration,
    retry_initial_delay: Duration,
    retry_max_delay: Duration,
}

impl SinkWrites<'_> {
    /// The path's limits; `None` when a count is zero (each error is reported to `fail`).
    fn validate(&self, fail: &mut impl FnMut(&str, String)) -> Option<PathLimits> {
        let field = |key: &str| format!("{}.{key}", self.section);
        let max_items = at_least_one(&field(self.max_items_key), self.max_items, fail);
        let max_bytes = at_least_one(&field("batch_max_bytes"), self.max_bytes, fail);
        let concurrency = at_least_one(&field("concurrency"), self.concurrency, fail);
        above_zero(&field(self.timeout_key), self.request_timeout, fail);
        let write_retry = backoff(
            (&field("retry_initial_delay"), self.retry_initial_delay),
            (&field("retry_max_delay"), self.retry_max_delay),
            fail,
        );
        Some(PathLimits {
            batch: BatchLimits {
                max_items: max_items?,
                max_bytes: max_bytes?,
                linger: self.linger,
            },
            concurrency: concurrency?,
            write_retry,
        })
    }
}

/// Validated settings: what the pipeline runs with.
pub struct Settings {
    /// `None` when the metrics path is disabled.
    pub metrics: Option<MetricsPathSettings>,
    /// `None` when the events path is disabled.
    pub events: Option<EventsPathSettings>,
    /// `None` when the rule stage is disabled (or the metrics path is).
    pub rules: Option<RulesSettings>,
    /// `None` when no pipelines are configured.
    pub pipelines: Option<PipelinesSettings>,
    pub dead_letter: DeadLetterSettings,
    pub admin_listen: Option<SocketAddr>,
    pub shutdown_deadline: Duration,
    /// Settings that are valid but probably not what the user wants.
    pub warnings: Vec<String>,
}

/// The JSON Schema of the configuration file.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawConfig)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use sluice_amqp::topology::ExchangeType;
    use sluice_influx::InfluxApi;

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
    fn every_error_is_reported_with_its_field() {
        let mut raw = RawConfig::default();
        raw.amqp.url = Some(SecretString::from("http://nope"));
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
    fn a_misspelt_setting_is_answered_with_the_nearest_real_one() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("sluice.toml");
        std::fs::write(&file, "[influx]\nbatch_max_point = 10\nzzz = 1\n").expect("write");
        let errors = RawConfig::load(Some(&file)).err().expect("refused").0;
        let said: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            said.contains(
                &"influx.batch_max_point: unknown setting `batch_max_point`: did you mean \
                  `batch_max_points`?"
                    .to_owned()
            ),
            "{said:?}"
        );
    }

    /// Found by the `config` fuzz target: an empty key at the top level was reported under an
    /// empty field name.
    #[test]
    fn an_empty_key_at_the_top_level_is_reported_under_the_top_level() {
        let errors = RawConfig::from_toml("\"\" = 1\n").err().expect("refused").0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "(top level)");
        assert!(errors[0].message.contains("unknown setting"), "{errors:?}");
    }

    /// A configuration that takes every secret from a file in `dir`, each file holding
    /// `file-secret-<name>` and a line break.
    fn every_secret_from_a_file(dir: &Path) -> RawConfig {
        let secret = |name: &str, value: &str| {
            let path = dir.join(name);
            std::fs::write(&path, format!("{value}\n")).expect("write a secret file");
            toml_string(&path)
        };
        let file = dir.join("sluice.toml");
        let text = format!(
            r#"
[amqp]
url_file = {amqp}
[influx]
username = "sluice"
password_file = {influx}
[elasticsearch]
api_key_file = {es}
[manager]
api = "4.x"
token_file = {manager}
[sources.push]
type = "influxdb_write"
token_file = {source}
[sinks.out]
type = "influxdb"
inputs = ["push"]
api = "v2"
org = "o"
bucket = "b"
token_file = {sink}
"#,
            amqp = secret("amqp", "amqp://sluice:file-secret-amqp@127.0.0.1:5672/%2f"),
            influx = secret("influx", "file-secret-influx"),
            es = secret("es", "file-secret-es"),
            manager = secret("manager", "file-secret-manager"),
            source = secret("source", "file-secret-source"),
            sink = secret("sink", "file-secret-sink"),
        );
        std::fs::write(&file, text).expect("write the configuration");
        RawConfig::load(Some(&file)).expect("loads")
    }

    fn toml_string(path: &Path) -> String {
        format!("{:?}", path.display().to_string())
    }

    #[test]
    fn every_secret_can_come_from_a_file_and_none_is_shown() {
        use sluice_elasticsearch::EsAuth;
        use sluice_rest::ManagerApi;

        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut raw = every_secret_from_a_file(dir.path());
        // The rule stage is what uses `[manager]`; the sidecar's paths run next to the pipelines.
        raw.metrics.enabled = Some(true);
        raw.events.enabled = Some(true);
        let settings = raw.validate().expect("valid");

        let metrics = settings.metrics.as_ref().expect("metrics path");
        // The user in the file's URL, shown with the password redacted.
        let broker = metrics.source.url.to_string();
        assert!(broker.starts_with("amqp://sluice:"), "{broker}");
        match &metrics.influx.api {
            InfluxApi::V1 {
                password: Some(password),
                ..
            } => assert_eq!(password.expose_secret(), "file-secret-influx"),
            _ => panic!("a v1 password"),
        }
        let events = settings.events.as_ref().expect("events path");
        match &events.elasticsearch.auth {
            EsAuth::ApiKey(key) => assert_eq!(key.expose_secret(), "file-secret-es"),
            _ => panic!("an API key"),
        }
        let rules = settings.rules.as_ref().expect("rule stage");
        match &rules.stage.manager.api {
            ManagerApi::V4 { token, .. } => {
                assert_eq!(token.expose_secret(), "file-secret-manager")
            }
            ManagerApi::V3 => panic!("4.x"),
        }
        let pipelines = settings.pipelines.as_ref().expect("pipelines");
        let intake = pipelines.sources[0].intake.as_ref().expect("a listener");
        match intake {
            IntakeSpec::InfluxWrite {
                token: Some(token), ..
            } => assert_eq!(token.expose_secret(), "file-secret-source"),
            _ => panic!("an influxdb_write token"),
        }
        match &pipelines.sinks[0].kind {
            SinkKind::Influx { settings, .. } => match &settings.api {
                InfluxApi::V2 { token, .. } => {
                    assert_eq!(token.expose_secret(), "file-secret-sink")
                }
                _ => panic!("v2"),
            },
            SinkKind::Amqp { .. } => panic!("an influxdb sink"),
        }

        // What the configuration shows of itself: serialized, and the settings' Debug.
        let shown = [
            serde_json::to_string(&raw).expect("serializes"),
            format!("{:?}", metrics.influx),
            format!("{:?}", events.elasticsearch),
            format!("{:?}", metrics.source.url),
            format!("{:?}", intake),
        ];
        for shown in shown {
            assert!(!shown.contains("file-secret"), "a secret is shown: {shown}");
        }
    }

    #[test]
    fn a_secret_set_twice_or_unreadable_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        every_secret_from_a_file(dir.path());
        let missing = dir.path().join("sink");
        std::fs::remove_file(&missing).expect("remove the sink's token file");
        let mut raw = RawConfig::load(Some(&dir.path().join("sluice.toml"))).expect("loads");
        raw.influx.password = Some(SecretString::from("inline-secret"));
        let errors = raw.validate().err().expect("invalid").0;
        let said: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            said.iter()
                .any(|error| error.starts_with("influx.password_file: ")
                    && error.contains("influx.password ")),
            "{said:?}"
        );
        assert!(
            said.iter()
                .any(|error| error.starts_with("sinks.out.token_file: ")
                    && error.contains(&missing.display().to_string())),
            "{said:?}"
        );
        // Reported once, not again as a missing token.
        assert!(
            !said
                .iter()
                .any(|error| error.starts_with("sinks.out.token:")),
            "{said:?}"
        );
        for error in &said {
            assert!(!error.contains("secret-"), "a secret is shown: {error}");
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
