//! `amqps://` to the broker with a private CA or a client certificate: what `[amqp.tls]`
//! configures.
//!
//! The same rules as HTTPS (`sluice_http::tls`): the system's roots stay trusted and a CA file
//! adds to them, hostnames are always verified (there is no switch to turn verification off),
//! and a client certificate comes with its key or not at all. lapin does the handshake with
//! rustls (its default backend, the one reqwest uses too) through the platform verifier; this
//! module reads and checks the files up front, so that a wrong path or a key that does not belong
//! to its certificate is an error naming the file when the configuration is checked, not a
//! failure at the first connection.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
pub use sluice_http::TlsFileError;
use sluice_http::tls::{client_pair, read};

/// Extra trust and a client identity for the `amqps://` connections; unused by `amqp://`.
#[derive(Clone, Default)]
pub struct BrokerTls {
    /// What lapin hands to rustls: the CA file's PEM as extra roots, the client's PEM pair.
    /// Shared: every connection's broker URL carries it, and it is cloned into each connect.
    config: Arc<OwnedTLSConfig>,
}

impl BrokerTls {
    /// Reads the PEM files: `ca` (one or more certificates), and `cert` with `key` (a client
    /// certificate chain and its PKCS#8, PKCS#1 or SEC1 key), which come together or not at all.
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Self, TlsFileError> {
        let cert_chain = match ca {
            None => None,
            Some(path) => {
                let pem = read("ca_file", path)?;
                certificates("ca_file", path, &pem)?;
                Some(pem_text("ca_file", path, pem)?)
            }
        };
        let identity = match client_pair(cert, key)? {
            None => None,
            Some((cert, key)) => Some(identity(cert, key)?),
        };
        Ok(Self {
            config: Arc::new(OwnedTLSConfig {
                identity,
                cert_chain,
            }),
        })
    }

    /// Whether a client certificate is configured.
    pub fn has_client_certificate(&self) -> bool {
        self.config.identity.is_some()
    }

    pub(crate) fn lapin_config(&self) -> OwnedTLSConfig {
        OwnedTLSConfig::clone(&self.config)
    }
}

impl fmt::Debug for BrokerTls {
    /// Never the key, and not the certificates either: only what is configured.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerTls")
            .field("ca_file", &self.config.cert_chain.is_some())
            .field("client_certificate", &self.config.identity.is_some())
            .finish()
    }
}

/// The client's certificate chain and key, checked to belong together.
fn identity(cert: &Path, key: &Path) -> Result<OwnedIdentity, TlsFileError> {
    let cert_pem = read("cert_file", cert)?;
    let chain = certificates("cert_file", cert, &cert_pem)?;
    let key_pem = read("key_file", key)?;
    // The parse error names the PEM section it missed, never the key's bytes.
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsFileError {
        file: "key_file",
        reason: format!("{} is not a PEM private key: {error}", key.display()),
    })?;
    CertifiedKey::from_der(chain, private_key, &crypto_provider()).map_err(|error| {
        TlsFileError {
            file: "key_file",
            reason: format!(
                "{} is not the key of the certificate in {}: {error}",
                key.display(),
                cert.display()
            ),
        }
    })?;
    Ok(OwnedIdentity::PKCS8 {
        pem: cert_pem,
        key: key_pem,
    })
}

/// The provider lapin's rustls uses (its `rustls--aws_lc_rs` default), so that a key it would
/// refuse is refused here too.
fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certificates(
    file: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsFileError {
            file,
            reason: format!("{} is not PEM certificates: {error}", path.display()),
        })?;
    if certificates.is_empty() {
        return Err(TlsFileError {
            file,
            reason: format!("{} holds no certificate", path.display()),
        });
    }
    Ok(certificates)
}

/// lapin takes the CA bundle as text; PEM is ASCII, so this fails only on a file that is not PEM.
fn pem_text(file: &'static str, path: &Path, pem: Vec<u8>) -> Result<String, TlsFileError> {
    String::from_utf8(pem).map_err(|_| TlsFileError {
        file,
        reason: format!("{} is not PEM text", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use sluice_testing::tls::TestCa;

    #[test]
    fn unusable_files_are_named_and_never_quoted() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate: hunter2").expect("write");
        let missing = dir.path().join("missing.pem");

        let error = BrokerTls::from_files(Some(&missing), None, None).expect_err("missing");
        assert_eq!(error.file, "ca_file");
        assert!(error.reason.contains("missing.pem"), "{error}");

        let error = BrokerTls::from_files(Some(&garbage), None, None).expect_err("no certificate");
        assert_eq!(error.file, "ca_file");
        assert!(error.reason.contains("holds no certificate"), "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");

        let error = BrokerTls::from_files(None, Some(&garbage), None).expect_err("no key");
        assert_eq!(error.file, "key_file");
        let error = BrokerTls::from_files(None, None, Some(&garbage)).expect_err("no cert");
        assert_eq!(error.file, "cert_file");

        let ca = TestCa::new("sluice test CA");
        let (cert, key) = ca.issue(&["sluice"]).write_to(dir.path(), "client");
        let error =
            BrokerTls::from_files(None, Some(&garbage), Some(&key)).expect_err("not a certificate");
        assert_eq!(error.file, "cert_file");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let error =
            BrokerTls::from_files(None, Some(&cert), Some(&garbage)).expect_err("not a key");
        assert_eq!(error.file, "key_file");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_without_showing_it() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca = TestCa::new("sluice test CA");
        let first = ca.issue(&["sluice"]);
        let (cert, _) = first.write_to(dir.path(), "first");
        let (_, other_key) = ca.issue(&["sluice"]).write_to(dir.path(), "second");

        let error = BrokerTls::from_files(None, Some(&cert), Some(&other_key))
            .expect_err("the key belongs to another certificate");
        assert_eq!(error.file, "key_file");
        assert!(error.reason.contains("is not the key of"), "{error}");
        let key_pem = std::fs::read_to_string(&other_key).expect("the key");
        let key_body = key_pem.lines().nth(1).expect("a PEM body line");
        assert!(!error.to_string().contains(key_body), "{error}");
    }

    #[test]
    fn the_files_make_a_configuration_that_shows_no_key() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca = TestCa::new("sluice test CA");
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, ca.cert_pem()).expect("write the CA");
        let issued = ca.issue(&["sluice"]);
        let (cert, key) = issued.write_to(dir.path(), "client");

        let tls = BrokerTls::from_files(Some(&ca_file), Some(&cert), Some(&key)).expect("PEM");
        assert!(tls.has_client_certificate());
        let config = tls.lapin_config();
        assert_eq!(config.cert_chain.as_deref(), Some(ca.cert_pem().as_str()));
        let shown = format!("{tls:?}");
        assert_eq!(
            shown,
            "BrokerTls { ca_file: true, client_certificate: true }"
        );
        assert!(
            !BrokerTls::from_files(Some(&ca_file), None, None)
                .expect("a CA alone")
                .has_client_certificate()
        );
    }
}
