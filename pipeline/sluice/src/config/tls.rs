//! `[influx.tls]`, `[elasticsearch.tls]`, `[manager.tls]` (and a sink's `[sinks.<name>.tls]`):
//! HTTPS to a store with a private CA or a client certificate; `[amqp.tls]`: the same for
//! `amqps://` to the broker. The files are read when the configuration is checked, so a wrong
//! path or a file that is not PEM is an error naming its field, not a failure at the first write.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_amqp::BrokerTls;
use sluice_http::{TlsFileError, TlsSettings};

#[derive(Deserialize, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// PEM certificates trusted beside the system's roots (a private CA). Hostnames are always
    /// verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate (chain), for a server that asks for one; needs `key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl RawTls {
    /// The client's TLS settings; an unusable file is reported as `<section>.tls.<file>`.
    pub(super) fn validate(
        &self,
        section: &str,
        fail: &mut impl FnMut(&str, String),
    ) -> Option<TlsSettings> {
        self.read(section, fail, TlsSettings::from_files)
    }

    /// The broker connections' TLS settings (`[amqp.tls]`), reported as `amqp.tls.<file>`.
    pub(super) fn validate_broker(&self, fail: &mut impl FnMut(&str, String)) -> Option<BrokerTls> {
        self.read("amqp", fail, BrokerTls::from_files)
    }

    /// Whether any file is set.
    pub(super) fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    fn read<Settings>(
        &self,
        section: &str,
        fail: &mut impl FnMut(&str, String),
        from_files: impl FnOnce(
            Option<&Path>,
            Option<&Path>,
            Option<&Path>,
        ) -> Result<Settings, TlsFileError>,
    ) -> Option<Settings> {
        from_files(
            self.ca_file.as_deref(),
            self.cert_file.as_deref(),
            self.key_file.as_deref(),
        )
        .map_err(|error| fail(&format!("{section}.tls.{}", error.file), error.reason))
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use sluice_testing::tls::TestCa;

    use crate::config::test_support::{AGENTS, errors, load};

    #[test]
    fn an_unusable_tls_file_is_an_error_naming_its_field() {
        let said = errors(
            r#"
            [influx.tls]
            ca_file = "/nonexistent/ca.pem"

            [manager.tls]
            cert_file = "/nonexistent/client.pem"

            [rules]
            enabled = true
            "#,
        );
        let has = |needle: &str| said.iter().any(|line| line.starts_with(needle));
        assert!(
            has("influx.tls.ca_file: cannot read /nonexistent/ca.pem"),
            "{said:?}"
        );
        assert!(
            has("manager.tls.key_file: a client certificate needs its key"),
            "{said:?}"
        );
    }

    #[test]
    fn amqp_tls_files_are_checked_and_named_under_amqp() {
        let said = errors(
            r#"
            [amqp]
            url = "amqps://sluice:s3cret@broker.example:5671/%2f"

            [amqp.tls]
            key_file = "/nonexistent/client.key"
            "#,
        );
        assert_eq!(
            said,
            ["amqp.tls.cert_file: a client key needs its certificate"]
        );
        let said = errors(
            r#"
            [amqp]
            url = "amqps://sluice:s3cret@broker.example:5671/%2f"
            tls = { ca_file = "/nonexistent/ca.pem" }
            "#,
        );
        assert!(
            said.iter()
                .any(|line| line.starts_with("amqp.tls.ca_file: cannot read /nonexistent/ca.pem")),
            "{said:?}"
        );
        assert!(!said.iter().any(|line| line.contains("s3cret")), "{said:?}");
    }

    #[test]
    fn amqp_tls_with_a_plain_url_is_refused() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, TestCa::new("sluice test CA").cert_pem()).expect("write");
        let said = errors(&format!(
            r#"
            [amqp]
            url = "amqp://sluice:s3cret@broker.example:5672/%2f"
            tls = {{ ca_file = {ca_file:?} }}
            "#
        ));
        assert!(
            said.iter().any(|line| line
                == "amqp.tls: is set, but amqp.url is amqp://: use amqps:// to connect over TLS"),
            "{said:?}"
        );
        assert!(!said.iter().any(|line| line.contains("s3cret")), "{said:?}");
    }

    #[test]
    fn amqps_with_a_ca_file_is_accepted() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, TestCa::new("sluice test CA").cert_pem()).expect("write");
        let settings = load(&format!(
            r#"
            [amqp]
            url = "amqps://sluice:s3cret@broker.example:5671/%2f"
            tls = {{ ca_file = {ca_file:?} }}
            "#
        ))
        .expect("a valid configuration");
        let broker = &settings.dead_letter.url;
        assert!(broker.is_amqps());
        assert_eq!(
            broker.to_string(),
            "amqps://sluice:***@broker.example:5671/%2f"
        );
    }

    #[test]
    fn a_sinks_tls_errors_are_named_under_the_sink() {
        let said = errors(&format!(
            r#"
            {AGENTS}

            [sinks.secure]
            type = "influxdb"
            inputs = ["agents"]
            url = "https://influx.example:8086"
            tls = {{ ca_file = "/nonexistent/ca.pem" }}
            "#
        ));
        assert!(
            said.iter()
                .any(|line| line.starts_with("sinks.secure.tls.ca_file: cannot read")),
            "{said:?}"
        );
    }
}
