//! `[elasticsearch]`: the Elasticsearch (or OpenSearch) sink of the events path, and how its
//! bulk requests are batched, run and retried.

use std::time::Duration;

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sluice_core::path::PathLimits;
use sluice_elasticsearch::{EsAuth, EsSettings};

use super::secret::{SecretFile, secret};
use super::tls::RawTls;
use super::{SinkWrites, http_url, redacted_option};

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
    /// A file holding the password, instead of `password`.
    #[schemars(with = "Option<String>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<SecretFile>,
    /// An API key (`Authorization: ApiKey ...`), instead of basic auth; never logged.
    #[schemars(with = "Option<String>")]
    #[serde(
        serialize_with = "redacted_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_key: Option<SecretString>,
    /// A file holding the API key, instead of `api_key`.
    #[schemars(with = "Option<String>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<SecretFile>,
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
    /// `https` with a private CA or a client certificate.
    pub tls: RawTls,
}

impl Default for RawElasticsearch {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9200".into(),
            username: None,
            password: None,
            password_file: None,
            api_key: None,
            api_key_file: None,
            gzip: false,
            request_timeout: Duration::from_secs(30),
            batch_max_documents: 500,
            batch_max_bytes: 5 * 1024 * 1024,
            batch_linger: Duration::from_millis(200),
            concurrency: 2,
            retry_initial_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(10),
            tls: RawTls::default(),
        }
    }
}

/// A checked `[elasticsearch]`: the writer's settings and how its bulk requests are batched, run
/// and retried.
pub(super) struct ElasticsearchSink {
    pub(super) settings: EsSettings,
    pub(super) limits: PathLimits,
}

impl RawElasticsearch {
    /// Checks the section, reporting each error to `fail`; `None` when something is invalid.
    pub(super) fn validate(
        &self,
        fail: &mut impl FnMut(&str, String),
    ) -> Option<ElasticsearchSink> {
        let url = http_url("elasticsearch.url", &self.url, fail);
        let password = secret(
            "elasticsearch.password",
            self.password.as_ref(),
            self.password_file.as_ref(),
            fail,
        );
        let api_key = secret(
            "elasticsearch.api_key",
            self.api_key.as_ref(),
            self.api_key_file.as_ref(),
            fail,
        );
        let auth = match (&self.username, password, api_key) {
            // A secret whose file could not be read is reported already.
            (_, Err(_), _) | (_, _, Err(_)) => None,
            (None, Ok(None), Ok(None)) => Some(EsAuth::None),
            (Some(username), Ok(Some(password)), Ok(None)) => Some(EsAuth::Basic {
                username: username.clone(),
                password,
            }),
            (None, Ok(None), Ok(Some(key))) => Some(EsAuth::ApiKey(key)),
            (_, _, Ok(Some(_))) => {
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
        let limits = SinkWrites {
            section: "elasticsearch",
            max_items_key: "batch_max_documents",
            max_items: self.batch_max_documents,
            max_bytes: self.batch_max_bytes,
            linger: self.batch_linger,
            concurrency: self.concurrency,
            timeout_key: "request_timeout",
            request_timeout: self.request_timeout,
            retry_initial_delay: self.retry_initial_delay,
            retry_max_delay: self.retry_max_delay,
        }
        .validate(fail);
        let tls = self.tls.validate("elasticsearch", fail);
        Some(ElasticsearchSink {
            settings: EsSettings {
                url: url?,
                auth: auth?,
                gzip: self.gzip,
                request_timeout: self.request_timeout,
                tls: tls?,
            },
            limits: limits?,
        })
    }
}
