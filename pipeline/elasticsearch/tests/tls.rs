//! HTTPS to Elasticsearch with a private CA and a client certificate, against a local TLS
//! server that asks for one (certificates made per test): refused without the CA, refused
//! without the client certificate, answered with both.

use axum::Router;
use axum::routing::get;
use sluice_elasticsearch::{EsSettings, EsWriter};
use sluice_http::TlsSettings;
use sluice_testing::tls::{TestCa, TlsServer};

#[tokio::test]
async fn the_sink_trusts_the_configured_ca_and_presents_its_client_certificate() {
    let ca = TestCa::new("sluice test CA");
    // `GET /` is what the sink's ping asks; a cluster answers its name and version there.
    let root = Router::new().route("/", get(|| async { r#"{"version":{"number":"8.15.0"}}"# }));
    let server = TlsServer::start(root, &ca.issue(&["localhost"]), Some(&ca)).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca.cert_pem()).expect("write the CA");
    let (cert_file, key_file) = ca.issue(&["sluice"]).write_to(dir.path(), "client");
    let writer = |tls: TlsSettings| {
        let mut settings = EsSettings::new(server.url("localhost"));
        settings.tls = tls;
        EsWriter::new(settings).expect("valid settings")
    };

    let untrusted = writer(TlsSettings::default())
        .ping()
        .await
        .expect_err("an unknown CA");
    assert!(
        untrusted.to_string().to_lowercase().contains("certificate"),
        "says why: {untrusted}"
    );
    let anonymous = TlsSettings::from_files(Some(&ca_file), None, None).expect("a PEM CA");
    writer(anonymous)
        .ping()
        .await
        .expect_err("the server requires a client certificate");
    let identified = TlsSettings::from_files(Some(&ca_file), Some(&cert_file), Some(&key_file))
        .expect("PEM files");
    writer(identified)
        .ping()
        .await
        .expect("trusted, and the client certificate accepted");
}
