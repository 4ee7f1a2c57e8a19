//! `[influx.tls]`, `[elasticsearch.tls]`, `[manager.tls]` (and a sink's `[sinks.<name>.tls]`):
//! HTTPS to a store with a private CA or a client certificate. The files are read when the
//! configuration is checked, so a wrong path or a file that is not PEM is an error naming its
//! field, not a failure at the first write.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_http::TlsSettings;

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
        TlsSettings::from_files(
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
    use crate::config::test_support::{AGENTS, errors};

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
