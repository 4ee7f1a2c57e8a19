//! Where and how the sink writes: the server, the API flavour with its credentials, the
//! timestamp precision and the request options.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use sluice_core::point::PointLimits;
use sluice_http::redacted_url;
use url::Url;

/// The unit of the timestamps written. Points carry nanoseconds; coarser precisions truncate
/// (toward zero) when a line is encoded, and tell the server the unit in the `precision` query
/// parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl Precision {
    /// The `precision` query value of the v1 `/write` API.
    pub fn v1_query_value(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "u",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
        }
    }

    /// The `precision` query value of the v2 `/api/v2/write` API.
    pub fn v2_query_value(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "us",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
        }
    }

    /// Nanoseconds per unit of this precision.
    pub fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
        }
    }

    /// A nanosecond timestamp in this precision, truncated toward zero.
    pub fn from_nanos(self, timestamp_nanos: i64) -> i64 {
        timestamp_nanos / self.nanos_per_unit()
    }
}

/// Which write API the server speaks, with its credentials.
///
/// `Debug` prints the secrets as `[REDACTED]` (they are [`SecretString`]s).
#[derive(Debug, Clone)]
pub enum InfluxApi {
    /// InfluxDB 1.x: `POST /write?db=&rp=&precision=`, HTTP basic auth when a username is set.
    V1 {
        database: String,
        /// The server's default retention policy of the database when `None`.
        retention_policy: Option<String>,
        username: Option<String>,
        password: Option<SecretString>,
    },
    /// InfluxDB 2.x (and the v2-compatible endpoint of later versions):
    /// `POST /api/v2/write?org=&bucket=&precision=`, `Authorization: Token <token>`.
    V2 {
        org: String,
        bucket: String,
        token: SecretString,
    },
}

/// Everything [`InfluxWriter::new`](crate::InfluxWriter::new) needs; checked there.
#[derive(Clone)]
pub struct InfluxSettings {
    /// The server's base URL, e.g. `http://127.0.0.1:8086`; a path prefix (a reverse proxy's
    /// `/influx/`) is kept. Credentials do not belong here: they are refused.
    pub url: Url,
    pub api: InfluxApi,
    pub precision: Precision,
    /// Compress request bodies with gzip (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// The whole request, connecting included.
    pub request_timeout: Duration,
    /// The bounds every point is validated against before it is encoded.
    pub max_point: PointLimits,
}

impl InfluxSettings {
    /// Settings with the defaults: nanosecond precision, gzip on, a 10 s timeout, default
    /// point limits.
    pub fn new(url: Url, api: InfluxApi) -> Self {
        Self {
            url,
            api,
            precision: Precision::default(),
            gzip: true,
            request_timeout: Duration::from_secs(10),
            max_point: PointLimits::default(),
        }
    }
}

/// By hand rather than derived, so that a password someone put into the URL is not printed.
impl fmt::Debug for InfluxSettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("InfluxSettings")
            .field("url", &redacted_url(&self.url))
            .field("api", &self.api)
            .field("precision", &self.precision)
            .field("gzip", &self.gzip)
            .field("request_timeout", &self.request_timeout)
            .field("max_point", &self.max_point)
            .finish()
    }
}

/// The URLs the writer calls, derived once from the settings.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) write: Url,
    pub(crate) query: Url,
    pub(crate) ping: Url,
}

impl Endpoints {
    /// Checks the settings and derives the endpoints; the error names the offending setting.
    pub(crate) fn from_settings(settings: &InfluxSettings) -> Result<Self, String> {
        let base = sluice_http::base_url(
            &settings.url,
            settings.request_timeout,
            "the username and password (v1) or the token (v2)",
        )?;
        let join = |path: &str| {
            base.join(path)
                .map_err(|error| format!("url: cannot append {path:?}: {error}"))
        };

        let mut write = match &settings.api {
            InfluxApi::V1 { .. } => join("write")?,
            InfluxApi::V2 { .. } => join("api/v2/write")?,
        };
        match &settings.api {
            InfluxApi::V1 {
                database,
                retention_policy,
                username,
                password,
            } => {
                if database.is_empty() {
                    return Err("database: is empty".to_owned());
                }
                if username.is_none() && password.is_some() {
                    return Err("password: set without a username".to_owned());
                }
                let mut query = write.query_pairs_mut();
                query.append_pair("db", database);
                if let Some(policy) = retention_policy {
                    query.append_pair("rp", policy);
                }
                query.append_pair("precision", settings.precision.v1_query_value());
            }
            InfluxApi::V2 { org, bucket, .. } => {
                if org.is_empty() {
                    return Err("org: is empty".to_owned());
                }
                if bucket.is_empty() {
                    return Err("bucket: is empty".to_owned());
                }
                write
                    .query_pairs_mut()
                    .append_pair("org", org)
                    .append_pair("bucket", bucket)
                    .append_pair("precision", settings.precision.v2_query_value());
            }
        }
        Ok(Self {
            write,
            query: join("query")?,
            ping: join("ping")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(url: &str) -> InfluxSettings {
        InfluxSettings::new(
            Url::parse(url).expect("url"),
            InfluxApi::V1 {
                database: "metrics db".into(),
                retention_policy: Some("a&b".into()),
                username: Some("writer".into()),
                password: Some(SecretString::from("hunter2-password")),
            },
        )
    }

    #[test]
    fn precision_truncates_nanoseconds_toward_zero() {
        let timestamp = 1_700_000_000_123_456_789;
        assert_eq!(Precision::Nanoseconds.from_nanos(timestamp), timestamp);
        assert_eq!(
            Precision::Microseconds.from_nanos(timestamp),
            1_700_000_000_123_456
        );
        assert_eq!(
            Precision::Milliseconds.from_nanos(timestamp),
            1_700_000_000_123
        );
        assert_eq!(Precision::Seconds.from_nanos(timestamp), 1_700_000_000);
        assert_eq!(Precision::Seconds.from_nanos(-1_500_000_000), -1);
    }

    #[test]
    fn v1_endpoints_keep_a_path_prefix_and_encode_the_query() {
        let endpoints =
            Endpoints::from_settings(&v1("http://proxy.example:8080/influx")).expect("valid");
        assert_eq!(
            endpoints.write.as_str(),
            "http://proxy.example:8080/influx/write?db=metrics+db&rp=a%26b&precision=ns"
        );
        assert_eq!(
            endpoints.query.as_str(),
            "http://proxy.example:8080/influx/query"
        );
        assert_eq!(
            endpoints.ping.as_str(),
            "http://proxy.example:8080/influx/ping"
        );
    }

    #[test]
    fn v2_endpoint_names_org_bucket_and_precision() {
        let mut settings = InfluxSettings::new(
            Url::parse("https://influx.example/").expect("url"),
            InfluxApi::V2 {
                org: "my org".into(),
                bucket: "metrics".into(),
                token: SecretString::from("t0ken"),
            },
        );
        settings.precision = Precision::Microseconds;
        let endpoints = Endpoints::from_settings(&settings).expect("valid");
        assert_eq!(
            endpoints.write.as_str(),
            "https://influx.example/api/v2/write?org=my+org&bucket=metrics&precision=us"
        );
    }

    #[test]
    fn bad_settings_are_refused_naming_the_setting() {
        let cases = [
            ("ftp://host/", "url: scheme"),
            ("http://user:pw@host/", "url: must not carry credentials"),
            ("http://host/?db=x", "url: must not have a query"),
        ];
        for (url, expected) in cases {
            let error = Endpoints::from_settings(&v1(url)).expect_err(url);
            assert!(error.starts_with(expected), "{url}: {error}");
            assert!(!error.contains("pw"), "{error}");
        }
        let mut no_user = v1("http://host/");
        if let InfluxApi::V1 { username, .. } = &mut no_user.api {
            *username = None;
        }
        let error = Endpoints::from_settings(&no_user).expect_err("password without user");
        assert!(error.starts_with("password:"), "{error}");
    }

    #[test]
    fn debug_of_settings_shows_no_secret() {
        let mut settings = v1("http://host:8086/");
        let printed = format!("{settings:?}");
        assert!(printed.contains("writer"), "{printed}");
        assert!(!printed.contains("hunter2-password"), "{printed}");

        settings.url = Url::parse("http://user:url-secret@host/").expect("url");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("url-secret"), "{printed}");

        settings.api = InfluxApi::V2 {
            org: "o".into(),
            bucket: "b".into(),
            token: SecretString::from("v2-token-secret"),
        };
        let printed = format!("{settings:?} {:#?}", settings);
        assert!(!printed.contains("v2-token-secret"), "{printed}");
    }
}
