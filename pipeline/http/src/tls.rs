//! HTTPS to a store with a private CA or a client certificate: what `[influx.tls]`,
//! `[elasticsearch.tls]` and `[manager.tls]` configure.
//!
//! The system's roots stay trusted (a public endpoint keeps working); a CA file adds to them.
//! Hostnames are always verified: there is no switch to turn verification off, because a
//! private CA is the honest way to reach a server with a self-issued certificate.

use std::fmt;
use std::path::Path;

use reqwest::{Certificate, ClientBuilder, Identity};

/// Extra trust and a client identity for a client's HTTPS connections.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// Certificates (PEM) trusted beside the system's roots.
    pub extra_roots: Vec<Certificate>,
    /// A client certificate chain and its private key, for servers that ask for one.
    pub identity: Option<Identity>,
}

/// A TLS file that cannot be used, naming which one (never its contents).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct TlsFileError {
    /// `ca_file`, `cert_file` or `key_file`.
    pub file: &'static str,
    pub reason: String,
}

impl TlsSettings {
    /// Reads the PEM files: `ca` (one or more certificates), and `cert` with `key` (a client
    /// certificate chain and its PKCS#8, PKCS#1 or SEC1 key), which come together or not at all.
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Self, TlsFileError> {
        let extra_roots = match ca {
            None => Vec::new(),
            Some(path) => {
                let pem = read("ca_file", path)?;
                let roots = Certificate::from_pem_bundle(&pem).map_err(|error| TlsFileError {
                    file: "ca_file",
                    reason: format!("{} is not PEM certificates: {error}", path.display()),
                })?;
                if roots.is_empty() {
                    return Err(TlsFileError {
                        file: "ca_file",
                        reason: format!("{} holds no certificate", path.display()),
                    });
                }
                roots
            }
        };
        let identity = match client_pair(cert, key)? {
            None => None,
            Some((cert, key)) => {
                let mut pem = read("cert_file", cert)?;
                pem.push(b'\n');
                pem.extend(read("key_file", key)?);
                // reqwest's error names what is missing; it does not echo the key.
                Some(Identity::from_pem(&pem).map_err(|error| TlsFileError {
                    file: "cert_file",
                    reason: format!(
                        "{} and {} are not a PEM certificate and its key: {error}",
                        cert.display(),
                        key.display()
                    ),
                })?)
            }
        };
        Ok(Self {
            extra_roots,
            identity,
        })
    }

    /// `builder` with this trust and identity.
    pub fn apply(&self, builder: ClientBuilder) -> ClientBuilder {
        let builder = if self.extra_roots.is_empty() {
            builder
        } else {
            builder.tls_certs_merge(self.extra_roots.iter().cloned())
        };
        match &self.identity {
            Some(identity) => builder.identity(identity.clone()),
            None => builder,
        }
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("extra_roots", &self.extra_roots.len())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

/// A client certificate and its key, which come together or not at all: for every TLS client
/// (HTTPS here, AMQPS in `sluice-amqp`), so the rule and its errors are the same.
pub fn client_pair<'a>(
    cert: Option<&'a Path>,
    key: Option<&'a Path>,
) -> Result<Option<(&'a Path, &'a Path)>, TlsFileError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(TlsFileError {
            file: "key_file",
            reason: "a client certificate needs its key".into(),
        }),
        (None, Some(_)) => Err(TlsFileError {
            file: "cert_file",
            reason: "a client key needs its certificate".into(),
        }),
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
    }
}

/// Reads one of the TLS files, naming the setting (`ca_file`, ...) and never its contents.
pub fn read(file: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|error| TlsFileError {
        file,
        reason: format!("cannot read {}: {error}", path.display()),
    })
}
