//! `amqps://` against a real RabbitMQ node of the test's own (`sluice_testing::rabbitmq_node`:
//! the installed server, beside the shared broker, with a certificate authority made for this
//! run): a round trip with a client certificate; an untrusted server certificate, a certificate
//! for another name, a missing client certificate and one of a foreign CA are each refused with
//! an error that says so and shows no password.
//!
//! A node takes seconds to boot, so the tests share two: one requiring client certificates and
//! one where they are optional. Each test opens its own connections and queues.

use std::path::PathBuf;

use futures::StreamExt as _;
use lapin::BasicProperties;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use sluice_amqp::connection::connect;
use sluice_amqp::{AmqpError, BrokerTls, BrokerUrl};
use sluice_testing::names::unique;
use sluice_testing::rabbitmq_node::{ClientCertificates, TlsRabbitNode};
use sluice_testing::tls::TestCa;
use tokio::sync::OnceCell;

/// A node, the files of the CA it trusts and of a client certificate that CA issued.
struct Broker {
    node: TlsRabbitNode,
    ca_file: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// Holds the files above.
    _dir: tempfile::TempDir,
}

impl Broker {
    async fn start(clients: ClientCertificates) -> Broker {
        let ca = TestCa::new("sluice broker test CA");
        // For `localhost` only: `127.0.0.1` is the name the certificate does not carry.
        let node = TlsRabbitNode::start(&ca, &ca.issue(&["localhost"]), clients).await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, ca.cert_pem()).expect("write the CA");
        let (client_cert, client_key) = ca.issue(&["sluice"]).write_to(dir.path(), "client");
        Broker {
            node,
            ca_file,
            client_cert,
            client_key,
            _dir: dir,
        }
    }

    /// The node's URL for `host`, trusting its CA, with the client certificate.
    fn identified(&self, host: &str) -> BrokerUrl {
        let tls = BrokerTls::from_files(
            Some(&self.ca_file),
            Some(&self.client_cert),
            Some(&self.client_key),
        )
        .expect("PEM files");
        self.url(host).with_tls(tls)
    }

    /// The node's URL for `host`, trusting its CA, without a client certificate.
    fn anonymous(&self, host: &str) -> BrokerUrl {
        let tls = BrokerTls::from_files(Some(&self.ca_file), None, None).expect("a PEM CA");
        self.url(host).with_tls(tls)
    }

    fn url(&self, host: &str) -> BrokerUrl {
        BrokerUrl::parse(&self.node.url(host)).expect("a valid URL")
    }
}

/// The node every test but one uses: it requires a client certificate of its CA.
async fn strict_broker() -> &'static Broker {
    static BROKER: OnceCell<Broker> = OnceCell::const_new();
    BROKER
        .get_or_init(|| Broker::start(ClientCertificates::Required))
        .await
}

/// A node that does not require a client certificate.
async fn lenient_broker() -> &'static Broker {
    static BROKER: OnceCell<Broker> = OnceCell::const_new();
    BROKER
        .get_or_init(|| Broker::start(ClientCertificates::Optional))
        .await
}

/// Connecting must fail over TLS; answers the error's text, checked to hide the password.
async fn refused(url: &BrokerUrl) -> String {
    let error = connect(url, "tls-test")
        .await
        .expect_err("the connection must be refused");
    let text = error.to_string();
    assert!(
        matches!(error, AmqpError::Tls { .. } | AmqpError::TlsClosed { .. }),
        "a TLS error, not {error:?}: {text}"
    );
    assert!(
        text.starts_with(&format!("cannot connect to {url}: TLS: ")),
        "names the broker: {text}"
    );
    assert!(
        text.contains("guest:***@") && !text.contains("guest:guest"),
        "the password stays masked: {text}"
    );
    text
}

/// Declares a queue, publishes to it with a confirm, and consumes the message back.
async fn round_trip(url: &BrokerUrl) {
    let connection = connect(url, "tls-test").await.expect("connected over TLS");
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("publisher confirms");
    let queue = unique("tls_round_trip");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare the queue");
    let confirmation = channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"over amqps",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("the broker's confirm");
    assert!(confirmation.is_ack(), "confirmed: {confirmation:?}");

    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "tls-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let delivery = tokio::time::timeout(std::time::Duration::from_secs(30), consumer.next())
        .await
        .expect("a delivery within 30 s")
        .expect("the consumer is open")
        .expect("a delivery");
    assert_eq!(delivery.data, b"over amqps");
    delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("ack the delivery");
    connection
        .close(200, "done".into())
        .await
        .expect("close the connection");
}

#[tokio::test]
async fn a_round_trip_over_amqps_with_a_client_certificate() {
    let broker = strict_broker().await;
    round_trip(&broker.identified("localhost")).await;
}

#[tokio::test]
async fn the_broker_sees_the_client_certificate_on_a_tls_connection() {
    let broker = strict_broker().await;
    let connection = connect(&broker.identified("localhost"), "tls-peer-check")
        .await
        .expect("connected over TLS");
    let mut list = broker.node.rabbitmqctl();
    list.args([
        "-q",
        "list_connections",
        "client_properties",
        "ssl",
        "peer_cert_subject",
    ]);
    let listing = tokio::task::spawn_blocking(move || list.output())
        .await
        .expect("rabbitmqctl's thread")
        .expect("rabbitmqctl");
    assert!(listing.status.success(), "{listing:?}");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let ours = listing
        .lines()
        .find(|line| line.contains("sluice tls-peer-check"))
        .unwrap_or_else(|| panic!("our connection is listed: {listing}"));
    assert!(ours.contains("\ttrue\t"), "over TLS: {ours}");
    assert!(
        ours.contains("CN=sluice test"),
        "with our certificate: {ours}"
    );
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test]
async fn a_server_certificate_of_an_unknown_ca_is_refused() {
    let broker = strict_broker().await;
    // The system's roots only: the node's CA is nobody's.
    let url = broker.url("localhost").with_tls(BrokerTls::default());
    let text = refused(&url).await;
    assert!(
        text.ends_with("TLS: invalid peer certificate: UnknownIssuer"),
        "{text}"
    );
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_refused() {
    let broker = strict_broker().await;
    // The CA is trusted, but the certificate names localhost, not 127.0.0.1.
    let text = refused(&broker.identified("127.0.0.1")).await;
    assert!(
        text.contains("TLS: invalid peer certificate: certificate not valid for name"),
        "{text}"
    );
    assert!(text.contains("127.0.0.1"), "names what was asked: {text}");
}

#[tokio::test]
async fn a_broker_that_requires_a_client_certificate_refuses_a_client_without_one() {
    let broker = strict_broker().await;
    let text = refused(&broker.anonymous("localhost")).await;
    // With TLS 1.3 the broker's alert may be lost in the reset of its close (see
    // `AmqpError::TlsClosed`); either way the error says what is wrong.
    assert!(
        text.ends_with("TLS: received fatal alert: CertificateRequired")
            || text.contains(
                "TLS: the broker closed the session as it opened \
                 (does it require a client certificate? none is configured)"
            ),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_certificate_of_a_foreign_ca_is_refused() {
    let broker = strict_broker().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (cert, key) = TestCa::new("a foreign CA")
        .issue(&["sluice"])
        .write_to(dir.path(), "stranger");
    let tls =
        BrokerTls::from_files(Some(&broker.ca_file), Some(&cert), Some(&key)).expect("PEM files");
    let text = refused(&broker.url("localhost").with_tls(tls)).await;
    assert!(
        text.ends_with("TLS: received fatal alert: UnknownCA")
            || text.contains(
                "TLS: the broker closed the session as it opened \
                 (did it refuse the client certificate?)"
            ),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_certificate_is_optional_where_the_broker_does_not_require_one() {
    let broker = lenient_broker().await;
    round_trip(&broker.anonymous("localhost")).await;
    round_trip(&broker.identified("localhost")).await;
}
