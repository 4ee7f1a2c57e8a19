//! `[influx]`: the InfluxDB sink of the metrics path, and how its writes are batched, run and
//! retried.

use std::time::Duration;

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sluice_core::path::PathLimits;
use sluice_core::point::PointLimits;
use sluice_influx::{InfluxApi, InfluxSettings, Precision};

use super::secret::{SecretFile, secret};
use super::tls::RawTls;
use super::{SinkWrites, http_url, redacted_option};

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum RawInfluxApi {
    /// InfluxDB 1.x `/write` (also 2.x and 3.x compatibility endpoints).
    V1,
    /// InfluxDB 2.x `/api/v2/write` with org, bucket and token.
    V2,
    /// InfluxDB 3 Core/Enterprise `/api/v3/write_lp` with database and (optional) token.
    V3,
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
    /// v1: a file holding the password, instead of `password`.
    #[schemars(with = "Option<String>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<SecretFile>,
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
    /// v2, v3: a file holding the token, instead of `token`.
    #[schemars(with = "Option<String>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<SecretFile>,
    /// v3: the good lines of a request are written and only the bad ones refused. With
    /// `false`, a bad line fails its request, and sluice sends the others again without it.
    pub accept_partial: bool,
    /// v3: answer before the write-ahead log is persisted. Off: an ack after such an answer
    /// would not mean the points are durable. Only for data one can afford to lose.
    pub no_sync: bool,
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
    /// `https` with a private CA or a client certificate.
    pub tls: RawTls,
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
            password_file: None,
            org: None,
            bucket: None,
            token: None,
            token_file: None,
            accept_partial: true,
            no_sync: false,
            precision: RawPrecision::Nanoseconds,
            gzip: false,
            request_timeout: Duration::from_secs(10),
            batch_max_points: 1000,
            batch_max_bytes: 1024 * 1024,
            batch_linger: Duration::from_millis(200),
            concurrency: 2,
            retry_initial_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(10),
            tls: RawTls::default(),
        }
    }
}

impl From<RawPrecision> for Precision {
    fn from(raw: RawPrecision) -> Self {
        match raw {
            RawPrecision::Nanoseconds => Precision::Nanoseconds,
            RawPrecision::Microseconds => Precision::Microseconds,
            RawPrecision::Milliseconds => Precision::Milliseconds,
            RawPrecision::Seconds => Precision::Seconds,
        }
    }
}

/// A checked `[influx]`: the writer's settings and how its writes are batched, run and retried.
pub(super) struct InfluxSink {
    pub(super) settings: InfluxSettings,
    pub(super) create_database: bool,
    pub(super) limits: PathLimits,
}

impl RawInflux {
    /// Checks the section, reporting each error to `fail`; `max_point` is what the metrics path
    /// lets through. `None` when something is invalid.
    pub(super) fn validate(
        &self,
        max_point: PointLimits,
        fail: &mut impl FnMut(&str, String),
    ) -> Option<InfluxSink> {
        let url = http_url("influx.url", &self.url, fail);
        let password = secret(
            "influx.password",
            self.password.as_ref(),
            self.password_file.as_ref(),
            fail,
        );
        let token = secret(
            "influx.token",
            self.token.as_ref(),
            self.token_file.as_ref(),
            fail,
        );
        let api = match self.api {
            RawInfluxApi::V1 => {
                if self.database.is_empty() {
                    fail(
                        "influx.database",
                        "must not be empty with api = \"v1\"".into(),
                    );
                }
                if matches!(password, Ok(Some(_))) && self.username.is_none() {
                    fail("influx.username", "a password needs a username".into());
                }
                password.ok().map(|password| InfluxApi::V1 {
                    database: self.database.clone(),
                    retention_policy: self.retention_policy.clone(),
                    username: self.username.clone(),
                    password,
                })
            }
            RawInfluxApi::V2 => {
                let org = self.org.clone().filter(|org| !org.is_empty());
                let bucket = self.bucket.clone().filter(|bucket| !bucket.is_empty());
                if org.is_none() {
                    fail("influx.org", "is required with api = \"v2\"".into());
                }
                if bucket.is_none() {
                    fail("influx.bucket", "is required with api = \"v2\"".into());
                }
                // A token file that could not be read is reported already, not as missing.
                if matches!(token, Ok(None)) {
                    fail("influx.token", "is required with api = \"v2\"".into());
                }
                match (org, bucket, token) {
                    (Some(org), Some(bucket), Ok(Some(token))) => {
                        Some(InfluxApi::V2 { org, bucket, token })
                    }
                    _ => None,
                }
            }
            RawInfluxApi::V3 => {
                if self.database.is_empty() {
                    fail(
                        "influx.database",
                        "must not be empty with api = \"v3\"".into(),
                    );
                }
                token.ok().map(|token| InfluxApi::V3 {
                    database: self.database.clone(),
                    token,
                    accept_partial: self.accept_partial,
                    no_sync: self.no_sync,
                })
            }
        };
        let limits = SinkWrites {
            section: "influx",
            max_items_key: "batch_max_points",
            max_items: self.batch_max_points,
            max_bytes: self.batch_max_bytes,
            linger: self.batch_linger,
            concurrency: self.concurrency,
            timeout_key: "request_timeout",
            request_timeout: self.request_timeout,
            retry_initial_delay: self.retry_initial_delay,
            retry_max_delay: self.retry_max_delay,
        }
        .validate(fail);
        let tls = self.tls.validate("influx", fail);
        Some(InfluxSink {
            settings: InfluxSettings {
                url: url?,
                api: api?,
                precision: self.precision.into(),
                gzip: self.gzip,
                request_timeout: self.request_timeout,
                max_point,
                tls: tls?,
            },
            create_database: self.create_database,
            limits: limits?,
        })
    }
}
