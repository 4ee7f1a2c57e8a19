//! Where and how the sink writes: the server, the API flavour with its credentials, the
//! timestamp precision and the request options.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sluice_core::point::PointLimits;
use sluice_http::TlsSettings;
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

    /// The `precision` query value of the v3 `/api/v3/write_lp` API, which spells units out
    /// (and would guess the unit from the magnitude if none were given).
    pub fn v3_query_value(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "nanosecond",
            Precision::Microseconds => "microsecond",
            Precision::Milliseconds => "millisecond",
            Precision::Seconds => "second",
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
    /// InfluxDB 3 Core and Enterprise: `POST /api/v3/write_lp?db=&precision=&accept_partial=`,
    /// `Authorization: Bearer <token>` when a token is set (a server started without
    /// authentication takes none).
    ///
    /// 3 Core answers a partial write with the lines it refused, by number and text, and writes
    /// the others; the writer turns that into one outcome per line (see [`crate::writer`]).
    V3 {
        /// The database; 3 Core creates it on the first write. ASCII letters, digits, `_` and
        /// `-`, starting with a letter or digit, as the server requires.
        database: String,
        token: Option<SecretString>,
        /// `accept_partial=true` (the default): the good lines of a request are written and
        /// only the bad ones refused. `false`: a bad line fails its whole request and nothing
        /// of it is written; the writer then refuses that line and sends the others again.
        accept_partial: bool,
        /// `no_sync=true` makes the server answer before the write-ahead log is persisted, so
        /// a success no longer means durable, and the delivery acked after it could be lost
        /// with the server. Off unless asked for: only for data one can afford to lose.
        no_sync: bool,
    },
}

impl InfluxApi {
    /// The v3 API with its defaults: partial writes accepted, `no_sync` off.
    pub fn v3(database: impl Into<String>, token: Option<SecretString>) -> Self {
        InfluxApi::V3 {
            database: database.into(),
            token,
            accept_partial: true,
            no_sync: false,
        }
    }
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
    /// A private CA and a client certificate for `https`.
    pub tls: TlsSettings,
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
            tls: TlsSettings::default(),
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
            .field("tls", &self.tls)
            .finish()
    }
}

/// The URLs the writer calls, derived once from the settings.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) write: Url,
    pub(crate) query: Url,
    /// v3's `POST /api/v3/configure/database`, which creates a database.
    pub(crate) configure_database: Url,
    pub(crate) ping: Url,
}

impl Endpoints {
    /// Checks the settings and derives the endpoints; the error names the offending setting.
    pub(crate) fn from_settings(settings: &InfluxSettings) -> Result<Self, String> {
        let base = sluice_http::base_url(
            &settings.url,
            settings.request_timeout,
            "the username and password (v1) or the token (v2, v3)",
        )?;
        let join = |path: &str| {
            base.join(path)
                .map_err(|error| format!("url: cannot append {path:?}: {error}"))
        };

        let mut write = match &settings.api {
            InfluxApi::V1 { .. } => join("write")?,
            InfluxApi::V2 { .. } => join("api/v2/write")?,
            InfluxApi::V3 { .. } => join("api/v3/write_lp")?,
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
            InfluxApi::V3 {
                database,
                token,
                accept_partial,
                no_sync,
            } => {
                check_v3_database_name(database)?;
                // 3 Core answers a malformed `Authorization` (a token with a space) with 400,
                // which would read as every line refused.
                if token.as_ref().is_some_and(|token| {
                    let token = token.expose_secret();
                    token.is_empty() || token.contains(char::is_whitespace)
                }) {
                    return Err("token: must be non-empty and hold no spaces".to_owned());
                }
                let mut query = write.query_pairs_mut();
                query
                    .append_pair("db", database)
                    .append_pair("precision", settings.precision.v3_query_value())
                    .append_pair(
                        "accept_partial",
                        if *accept_partial { "true" } else { "false" },
                    );
                // Only when asked: the server's default (false) answers after the WAL is
                // persisted, which is what makes the ack after it mean durable.
                if *no_sync {
                    query.append_pair("no_sync", "true");
                }
            }
        }
        Ok(Self {
            write,
            query: join("query")?,
            configure_database: join("api/v3/configure/database")?,
            ping: join("ping")?,
        })
    }
}

/// The names InfluxDB 3 accepts for a database (it refuses others with 400, which would
/// otherwise look like every line being refused): ASCII letters, digits, `_` and `-`,
/// starting with a letter or digit.
fn check_v3_database_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("database: is empty".to_owned());
    };
    if !first.is_ascii_alphanumeric() {
        return Err(format!(
            "database: {name:?} must start with an ASCII letter or digit (InfluxDB 3 refuses it)"
        ));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!(
            "database: {name:?} may hold only ASCII letters, digits, '_' and '-' (InfluxDB 3 \
             refuses others)"
        ));
    }
    Ok(())
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
    fn v3_endpoint_names_database_precision_and_partial_writes_and_never_no_sync_by_default() {
        let mut settings = InfluxSettings::new(
            Url::parse("http://influx3.example:8181/").expect("url"),
            InfluxApi::v3("metrics-db_1", None),
        );
        settings.precision = Precision::Seconds;
        let endpoints = Endpoints::from_settings(&settings).expect("valid");
        assert_eq!(
            endpoints.write.as_str(),
            "http://influx3.example:8181/api/v3/write_lp?db=metrics-db_1&precision=second&accept_partial=true"
        );
        assert_eq!(
            endpoints.configure_database.as_str(),
            "http://influx3.example:8181/api/v3/configure/database"
        );

        settings.api = InfluxApi::V3 {
            database: "m".into(),
            token: None,
            accept_partial: false,
            no_sync: true,
        };
        let endpoints = Endpoints::from_settings(&settings).expect("valid");
        assert_eq!(
            endpoints.write.query(),
            Some("db=m&precision=second&accept_partial=false&no_sync=true")
        );
    }

    #[test]
    fn a_v3_token_with_a_space_is_refused_without_being_printed() {
        let settings = InfluxSettings::new(
            Url::parse("http://host/").expect("url"),
            InfluxApi::v3("db", Some(SecretString::from("secret part"))),
        );
        let error = Endpoints::from_settings(&settings).expect_err("a space");
        assert!(error.starts_with("token:"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn v3_database_names_are_checked_as_the_server_checks_them() {
        for bad in ["", "_metrics", "my db", "métriques", "a/b"] {
            let settings = InfluxSettings::new(
                Url::parse("http://host/").expect("url"),
                InfluxApi::v3(bad, None),
            );
            let error = Endpoints::from_settings(&settings).expect_err(bad);
            assert!(error.starts_with("database:"), "{bad:?}: {error}");
        }
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

        settings.api = InfluxApi::v3("db", Some(SecretString::from("v3-token-secret")));
        let printed = format!("{settings:?} {:#?}", settings);
        assert!(!printed.contains("v3-token-secret"), "{printed}");
    }
}
