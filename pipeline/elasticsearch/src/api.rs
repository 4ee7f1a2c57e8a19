//! Where and how the sink writes: the server, its credentials and the request options.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use sluice_http::TlsSettings;
use sluice_http::redacted_url;
use url::Url;

/// How the sink authenticates.
///
/// `Debug` prints the secrets as `[REDACTED]` (they are [`SecretString`]s).
#[derive(Debug, Clone, Default)]
pub enum EsAuth {
    /// No `Authorization` header (security disabled, or a proxy that adds it).
    #[default]
    None,
    /// HTTP basic auth: `Authorization: Basic base64(<username>:<password>)`.
    Basic {
        username: String,
        password: SecretString,
    },
    /// An Elasticsearch API key, the base64 `id:api_key` form the create-API-key API answers in
    /// its `encoded` field: `Authorization: ApiKey <key>`.
    ApiKey(SecretString),
}

/// Everything [`EsWriter::new`](crate::EsWriter::new) needs; checked there.
#[derive(Clone)]
pub struct EsSettings {
    /// The cluster's base URL, e.g. `http://127.0.0.1:9200`; a path prefix (a reverse proxy's
    /// `/es/`) is kept. Credentials do not belong here: they are refused.
    pub url: Url,
    pub auth: EsAuth,
    /// Compress request bodies with gzip (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// The whole request, connecting included.
    pub request_timeout: Duration,
    /// A private CA and a client certificate for `https`.
    pub tls: TlsSettings,
}

impl EsSettings {
    /// Settings with the defaults: no credentials, gzip on, a 30 s timeout (a bulk request of
    /// a few megabytes can take seconds on a busy cluster).
    pub fn new(url: Url) -> Self {
        Self {
            url,
            auth: EsAuth::None,
            gzip: true,
            request_timeout: Duration::from_secs(30),
            tls: TlsSettings::default(),
        }
    }
}

/// By hand rather than derived, so that a password someone put into the URL is not printed.
impl fmt::Debug for EsSettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("EsSettings")
            .field("url", &redacted_url(&self.url))
            .field("auth", &self.auth)
            .field("gzip", &self.gzip)
            .field("request_timeout", &self.request_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The URLs the writer calls, derived once from the settings.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    /// The base URL, ending in `/`: `GET /` answers the cluster's name and version.
    pub(crate) root: Url,
    pub(crate) bulk: Url,
}

impl Endpoints {
    /// Checks the settings and derives the endpoints; the error names the offending setting.
    pub(crate) fn from_settings(settings: &EsSettings) -> Result<Self, String> {
        let root = sluice_http::base_url(
            &settings.url,
            settings.request_timeout,
            "the basic auth username and password or the api key",
        )?;
        match &settings.auth {
            EsAuth::Basic { username, .. } if username.is_empty() => {
                return Err("auth.username: is empty".to_owned());
            }
            EsAuth::Basic { username, .. } if username.contains(':') => {
                return Err("auth.username: must not contain ':'".to_owned());
            }
            _ => {}
        }

        let bulk = root
            .join("_bulk")
            .map_err(|error| format!("url: cannot append \"_bulk\": {error}"))?;
        Ok(Self { root, bulk })
    }

    /// `/_index_template/<name>`, the name percent-encoded as one path segment.
    pub(crate) fn index_template(&self, name: &str) -> Result<Url, String> {
        let mut url = self.root.clone();
        url.path_segments_mut()
            .map_err(|()| "url: cannot be a base".to_owned())?
            .pop_if_empty()
            .push("_index_template")
            .push(name);
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> EsSettings {
        let mut settings = EsSettings::new(Url::parse(url).expect("url"));
        settings.auth = EsAuth::Basic {
            username: "writer".into(),
            password: SecretString::from("hunter2-password"),
        };
        settings
    }

    #[test]
    fn endpoints_keep_a_path_prefix() {
        let endpoints =
            Endpoints::from_settings(&settings("http://proxy.example:8080/es")).expect("valid");
        assert_eq!(endpoints.root.as_str(), "http://proxy.example:8080/es/");
        assert_eq!(
            endpoints.bulk.as_str(),
            "http://proxy.example:8080/es/_bulk"
        );
        assert_eq!(
            endpoints
                .index_template("sluice events/1")
                .expect("template url")
                .as_str(),
            "http://proxy.example:8080/es/_index_template/sluice%20events%2F1"
        );
        let endpoints = Endpoints::from_settings(&settings("https://es.example")).expect("valid");
        assert_eq!(endpoints.bulk.as_str(), "https://es.example/_bulk");
        assert_eq!(
            endpoints.index_template("logstash").expect("url").as_str(),
            "https://es.example/_index_template/logstash"
        );
    }

    #[test]
    fn bad_settings_are_refused_naming_the_setting() {
        let cases = [
            ("ftp://host/", "url: scheme"),
            ("http://user:pw@host/", "url: must not carry credentials"),
            ("http://host/?pretty", "url: must not have a query"),
        ];
        for (url, expected) in cases {
            let error = Endpoints::from_settings(&settings(url)).expect_err(url);
            assert!(error.starts_with(expected), "{url}: {error}");
            assert!(!error.contains("pw"), "{error}");
        }
        let mut no_user = settings("http://host/");
        no_user.auth = EsAuth::Basic {
            username: String::new(),
            password: SecretString::from("x"),
        };
        let error = Endpoints::from_settings(&no_user).expect_err("empty username");
        assert!(error.starts_with("auth.username:"), "{error}");
        let mut zero = settings("http://host/");
        zero.request_timeout = Duration::ZERO;
        let error = Endpoints::from_settings(&zero).expect_err("zero timeout");
        assert!(error.starts_with("request_timeout:"), "{error}");
    }

    #[test]
    fn debug_of_settings_shows_no_secret() {
        let mut settings = settings("http://host:9200/");
        let printed = format!("{settings:?} {settings:#?}");
        assert!(printed.contains("writer"), "{printed}");
        assert!(!printed.contains("hunter2-password"), "{printed}");

        settings.url = Url::parse("http://user:url-secret@host/").expect("url");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("url-secret"), "{printed}");

        settings.auth = EsAuth::ApiKey(SecretString::from("api-key-secret"));
        let printed = format!("{settings:?} {:#?}", settings.auth);
        assert!(!printed.contains("api-key-secret"), "{printed}");
    }
}
