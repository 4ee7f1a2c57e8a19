//! HTTPS to InfluxDB with a private CA and client certificates, against a local TLS server
//! (rustls, with certificates made per test): an untrusted server, a certificate for another
//! name, and a server that asks for a client certificate are each refused with an error that
//! says so; with the CA (and the client certificate) the same calls succeed.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use sluice_http::TlsSettings;
use sluice_influx::{InfluxApi, InfluxSettings, InfluxWriter};
use sluice_testing::tls::{TestCa, TlsServer};
use url::Url;

/// Answers `/ping` as InfluxDB does.
fn influx_ping() -> Router {
    Router::new().route("/ping", get(|| async { StatusCode::NO_CONTENT }))
}

fn writer(url: Url, tls: TlsSettings) -> InfluxWriter {
    let mut settings = InfluxSettings::new(
        url,
        InfluxApi::V1 {
            database: "tls".into(),
            retention_policy: None,
            username: None,
            password: None,
        },
    );
    settings.tls = tls;
    InfluxWriter::new(settings).expect("valid settings")
}

/// The error's text, lower-cased for matching.
fn refusal(writer_error: impl std::fmt::Display) -> String {
    writer_error.to_string().to_lowercase()
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_when_configured_and_only_for_its_names() {
    let ca = TestCa::new("sluice test CA");
    let server = TlsServer::start(influx_ping(), &ca.issue(&["localhost"]), None).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca.cert_pem()).expect("write the CA");
    let with_ca = TlsSettings::from_files(Some(&ca_file), None, None).expect("a PEM CA");

    let untrusted = writer(server.url("localhost"), TlsSettings::default())
        .ping()
        .await
        .expect_err("a certificate of an unknown CA");
    assert!(
        refusal(&untrusted).contains("certificate"),
        "says why: {untrusted}"
    );

    writer(server.url("localhost"), with_ca.clone())
        .ping()
        .await
        .expect("trusted through the CA file");

    let wrong_name = writer(server.url("127.0.0.1"), with_ca)
        .ping()
        .await
        .expect_err("the certificate names localhost only");
    assert!(
        refusal(&wrong_name).contains("certificate"),
        "hostnames are verified: {wrong_name}"
    );
}

#[tokio::test]
async fn a_server_that_asks_for_a_client_certificate_gets_the_configured_one() {
    let ca = TestCa::new("sluice test CA");
    let server = TlsServer::start(influx_ping(), &ca.issue(&["localhost"]), Some(&ca)).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca.cert_pem()).expect("write the CA");
    let (cert_file, key_file) = ca.issue(&["sluice"]).write_to(dir.path(), "client");

    let anonymous = TlsSettings::from_files(Some(&ca_file), None, None).expect("a PEM CA");
    writer(server.url("localhost"), anonymous)
        .ping()
        .await
        .expect_err("the server requires a client certificate");

    let stranger = TestCa::new("another CA").issue(&["sluice"]);
    let (stranger_cert, stranger_key) = stranger.write_to(dir.path(), "stranger");
    let untrusted_client =
        TlsSettings::from_files(Some(&ca_file), Some(&stranger_cert), Some(&stranger_key))
            .expect("PEM files");
    writer(server.url("localhost"), untrusted_client)
        .ping()
        .await
        .expect_err("a client certificate of another CA is refused");

    let identified = TlsSettings::from_files(Some(&ca_file), Some(&cert_file), Some(&key_file))
        .expect("PEM files");
    writer(server.url("localhost"), identified)
        .ping()
        .await
        .expect("the client certificate is presented and accepted");
}

#[test]
fn unusable_files_are_named_and_never_quoted() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate: hunter2").expect("write");
    let missing = dir.path().join("missing.pem");

    let error = TlsSettings::from_files(Some(&missing), None, None).expect_err("missing");
    assert_eq!(error.file, "ca_file");
    assert!(error.reason.contains("missing.pem"), "{error}");

    let error = TlsSettings::from_files(Some(&garbage), None, None).expect_err("no certificate");
    assert_eq!(error.file, "ca_file");
    assert!(!error.to_string().contains("hunter2"), "{error}");

    let error = TlsSettings::from_files(None, Some(&garbage), None).expect_err("no key");
    assert_eq!(error.file, "key_file");

    let error = TlsSettings::from_files(None, Some(&garbage), Some(&garbage)).expect_err("not PEM");
    assert_eq!(error.file, "cert_file");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}
