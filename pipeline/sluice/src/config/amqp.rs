//! `[amqp]`: the RabbitMQ connection that every source and publisher shares, and the exchange
//! types of the sections that declare exchanges (`[metrics]`, `[events]`).

use std::time::Duration;

use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sluice_amqp::BrokerUrl;
use sluice_amqp::source::SourceSettings;
use sluice_amqp::topology::{ExchangeType, SourceTopology};
use sluice_core::retry::RetryPolicy;

use super::secret::{SecretFile, secret};
use super::tls::RawTls;
use super::{backoff, redacted_option};

/// The broker `amqp.url` is when neither it nor `amqp.url_file` is set: the manager's own.
const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The longest `amqp.receive_pause`: far past the point where a longer pause saves any wake-ups
/// (one per run is reached at 1 ms, see BENCHMARKS.md); longer would only hold messages back.
const MAX_RECEIVE_PAUSE: Duration = Duration::from_millis(100);

/// The RabbitMQ connection shared by every source.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawAmqp {
    /// Broker URL; its password is never logged. Default
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`.
    #[schemars(with = "Option<String>")]
    #[serde(
        serialize_with = "redacted_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<SecretString>,
    /// A file holding the broker URL, instead of `url`.
    #[schemars(with = "Option<String>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_file: Option<SecretFile>,
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
    /// `amqps://` with a private CA or a client certificate; needs an `amqps://` URL.
    pub tls: RawTls,
}

impl Default for RawAmqp {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            prefetch: 5000,
            receive_pause: Duration::from_millis(1),
            reconnect_initial_delay: Duration::from_millis(200),
            reconnect_max_delay: Duration::from_secs(30),
            tls: RawTls::default(),
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

impl From<RawExchangeType> for ExchangeType {
    fn from(raw: RawExchangeType) -> Self {
        match raw {
            RawExchangeType::Topic => ExchangeType::Topic,
            RawExchangeType::Fanout => ExchangeType::Fanout,
            RawExchangeType::Direct => ExchangeType::Direct,
        }
    }
}

/// A checked `[amqp]`: what the sections that consume or publish build their connections from.
pub(super) struct BrokerConnection<'a> {
    raw: &'a RawAmqp,
    /// `None` when `amqp.url` is invalid (the error is reported already).
    pub(super) broker: Option<BrokerUrl>,
    /// How every connection backs off between reconnection attempts.
    pub(super) reconnect: RetryPolicy,
}

impl BrokerConnection<'_> {
    /// A source named `name` consuming `topology`, with `[amqp]`'s prefetch, receive pause and
    /// reconnect backoff; `None` when the broker URL is invalid.
    pub(super) fn source(&self, name: String, topology: SourceTopology) -> Option<SourceSettings> {
        Some(SourceSettings {
            url: self.broker.clone()?,
            name,
            topology,
            prefetch: self.raw.prefetch,
            receive_pause: self.raw.receive_pause,
            reconnect: self.reconnect,
        })
    }
}

impl RawAmqp {
    /// Checks the section, reporting each error to `fail`.
    pub(super) fn validate(&self, fail: &mut impl FnMut(&str, String)) -> BrokerConnection<'_> {
        let url = match secret("amqp.url", self.url.as_ref(), self.url_file.as_ref(), fail) {
            Ok(url) => {
                let url = url.unwrap_or_else(|| SecretString::from(DEFAULT_URL));
                // The parse error never repeats the URL, which holds the password.
                BrokerUrl::parse(url.expose_secret())
                    .map_err(|error| fail("amqp.url", error.to_string()))
                    .ok()
            }
            Err(_) => None,
        };
        let tls = self.tls.validate_broker(fail);
        let plain_with_tls = self.tls.is_set() && url.as_ref().is_some_and(|url| !url.is_amqps());
        if plain_with_tls {
            // TLS settings on a plain connection would look like encryption and be none.
            fail(
                "amqp.tls",
                "is set, but amqp.url is amqp://: use amqps:// to connect over TLS".into(),
            );
        }
        let broker = match (url, tls) {
            (Some(url), Some(tls)) if !plain_with_tls => Some(url.with_tls(tls)),
            _ => None,
        };
        if self.prefetch == 0 {
            fail("amqp.prefetch", "must be at least 1".into());
        }
        if self.receive_pause > MAX_RECEIVE_PAUSE {
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
            ("amqp.reconnect_initial_delay", self.reconnect_initial_delay),
            ("amqp.reconnect_max_delay", self.reconnect_max_delay),
            fail,
        );
        BrokerConnection {
            raw: self,
            broker,
            reconnect,
        }
    }
}
