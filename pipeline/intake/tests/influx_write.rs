//! The InfluxDB write API against the real RabbitMQ: what a 204 put in the queue, byte for
//! byte, and InfluxDB's own answers to bad lines, credentials, size and overload.

mod support;

use std::io::Write;
use std::num::NonZeroUsize;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::StatusCode;
use secrecy::SecretString;
use sluice_intake::influx_write::{self, InfluxWriteSettings};
use support::{Broker, ROUTING_KEY, mask_now, now_nanos, serve};

fn settings() -> InfluxWriteSettings {
    InfluxWriteSettings {
        max_body_bytes: NonZeroUsize::new(64 * 1024).expect("non-zero"),
        retry_after: Duration::from_secs(7),
        ..InfluxWriteSettings::new(ROUTING_KEY)
    }
}

struct Input {
    broker: Broker,
    base: String,
    client: reqwest::Client,
}

async fn start(adjust: impl FnOnce(&mut InfluxWriteSettings), max_length: Option<u32>) -> Input {
    let broker = Broker::start(max_length).await;
    let mut settings = settings();
    adjust(&mut settings);
    let (address, _shutdown) =
        serve(influx_write::router(settings, broker.publisher.clone())).await;
    Input {
        broker,
        base: format!("http://{address}"),
        client: reqwest::Client::new(),
    }
}

impl Input {
    async fn post(&self, path_and_query: &str, body: &'static str) -> (StatusCode, String) {
        let response = self
            .client
            .post(format!("{}{path_and_query}", self.base))
            .body(body)
            .send()
            .await
            .expect("an answer");
        let status = response.status();
        (status, response.text().await.expect("a body"))
    }
}

#[tokio::test]
async fn a_204_means_the_lines_are_in_the_queue_with_nanosecond_timestamps() {
    let input = start(|_| {}, None).await;
    let before = now_nanos();
    let (status, body) = input
        .post(
            "/write?db=telegraf&precision=s",
            "cpu,host=a\\ b usage=1.5,text=\"x y\" 1700000000\nmem free=2i\n",
        )
        .await;
    let after = now_nanos();
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let taken = input.broker.take().await.expect("one message");
    assert_eq!(
        taken.content_type.as_deref(),
        Some("text/plain; format=line-protocol; precision=ns")
    );
    assert_eq!(
        mask_now(&taken.body, before, after),
        "cpu,host=a\\ b usage=1.5,text=\"x y\" 1700000000000000000\nmem free=2i <now>\n"
    );
    assert!(
        input.broker.take().await.is_none(),
        "one message per request"
    );
    input.broker.delete().await;
}

#[tokio::test]
async fn every_precision_of_both_apis_becomes_nanoseconds() {
    let input = start(|_| {}, None).await;
    let cases = [
        (
            "/write?db=d&precision=h",
            "m v=1 2\n",
            "m v=1 7200000000000\n",
        ),
        (
            "/write?db=d&precision=m",
            "m v=1 2\n",
            "m v=1 120000000000\n",
        ),
        ("/write?db=d&precision=ms", "m v=1 2\n", "m v=1 2000000\n"),
        ("/write?db=d&precision=u", "m v=1 2\n", "m v=1 2000\n"),
        ("/write?db=d&precision=ns", "m v=1 2\n", "m v=1 2\n"),
        (
            "/api/v2/write?org=o&bucket=b&precision=us",
            "m v=1 2\n",
            "m v=1 2000\n",
        ),
        (
            "/api/v2/write?org=o&bucket=b&precision=s",
            "m v=1 -2\n",
            "m v=1 -2000000000\n",
        ),
    ];
    for (path, body, expected) in cases {
        let (status, answer) = input.post(path, body).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{path}: {answer}");
        let taken = input.broker.take().await.expect("a message");
        assert_eq!(taken.body, expected, "{path}");
    }
    let (status, answer) = input
        .post("/api/v2/write?org=o&bucket=b&precision=u", "m v=1 2\n")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer,
        r#"{"code":"invalid","message":"invalid precision; valid precision units are ns, us, ms, and s"}"#
    );
    input.broker.delete().await;
}

#[tokio::test]
async fn a_gzip_body_is_taken() {
    let input = start(|_| {}, None).await;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(b"m v=1 5\n").expect("in memory");
    let response = input
        .client
        .post(format!("{}/api/v2/write?org=o&bucket=b", input.base))
        .header("Content-Encoding", "gzip")
        .body(encoder.finish().expect("in memory"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        input.broker.take().await.expect("a message").body,
        "m v=1 5\n"
    );

    let response = input
        .client
        .post(format!("{}/write?db=d", input.base))
        .header("Content-Encoding", "gzip")
        .body("not gzip")
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    input.broker.delete().await;
}

#[tokio::test]
async fn v1_writes_the_good_lines_of_a_partial_write_and_says_which_failed() {
    let input = start(|_| {}, None).await;
    let (status, body) = input
        .post("/write?db=d", "m v=1 1\nbad line\nm v=2 2\n")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    let error = answer["error"].as_str().expect("an error string");
    assert!(
        error.starts_with("partial write: unable to parse 'bad line': ")
            && error.ends_with(" dropped=0"),
        "{error}"
    );
    assert_eq!(
        answer.as_object().map(|object| object.len()),
        Some(1),
        "{body}"
    );
    assert_eq!(input.broker.take_all().await, "m v=1 1\nm v=2 2\n");

    let (status, body) = input.post("/write?db=d", "bad\nworse\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    let error = answer["error"].as_str().expect("an error string");
    assert!(
        error.starts_with("unable to parse 'bad': ")
            && error.contains("\nunable to parse 'worse': "),
        "{error}"
    );
    assert!(input.broker.take().await.is_none(), "nothing to publish");
    input.broker.delete().await;
}

#[tokio::test]
async fn v2_refuses_a_request_with_any_bad_line_whole() {
    let input = start(|_| {}, None).await;
    let (status, body) = input
        .post("/api/v2/write?org=o&bucket=b", "m v=1 1\nbad line\n")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["code"], "invalid");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("unable to parse 'bad line': ")),
        "{body}"
    );
    assert!(
        input.broker.take().await.is_none(),
        "2.x writes nothing of it"
    );

    let (status, body) = input.post("/api/v2/write?org=o&bucket=b", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        r#"{"code":"invalid","message":"writing requires points"}"#
    );
    input.broker.delete().await;
}

#[tokio::test]
async fn v1_needs_a_database() {
    let input = start(|_| {}, None).await;
    let (status, body) = input.post("/write", "m v=1\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, r#"{"error":"database is required"}"#);
    input.broker.delete().await;
}

#[tokio::test]
async fn with_a_token_configured_writes_without_it_get_influxdbs_401() {
    let input = start(
        |settings| settings.token = Some(SecretString::from("s3cret")),
        None,
    )
    .await;
    let v1 = format!("{}/write?db=d", input.base);
    let v2 = format!("{}/api/v2/write?org=o&bucket=b", input.base);
    let answers = [
        (
            input.client.post(&v1),
            r#"{"error":"unable to parse authentication credentials"}"#,
        ),
        (
            input.client.post(format!("{v1}&u=me&p=wrong")),
            r#"{"error":"authorization failed"}"#,
        ),
        (
            input.client.post(&v1).basic_auth("me", Some("wrong")),
            r#"{"error":"authorization failed"}"#,
        ),
        (
            input.client.post(&v2),
            r#"{"code":"unauthorized","message":"unauthorized access"}"#,
        ),
        (
            input
                .client
                .post(&v2)
                .header("Authorization", "Token wrong"),
            r#"{"code":"unauthorized","message":"unauthorized access"}"#,
        ),
    ];
    for (request, expected) in answers {
        let response = request.body("m v=1 1\n").send().await.expect("an answer");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body = response.text().await.expect("a body");
        assert_eq!(body, expected);
        assert!(!body.contains("s3cret"));
    }
    let accepted = [
        input.client.post(format!("{v1}&u=me&p=s3cret")),
        input.client.post(&v1).basic_auth("me", Some("s3cret")),
        input
            .client
            .post(&v1)
            .header("Authorization", "Token me:s3cret"),
        input
            .client
            .post(&v2)
            .header("Authorization", "Token s3cret"),
    ];
    for request in accepted {
        let response = request.body("m v=1 1\n").send().await.expect("an answer");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(input.broker.take_all().await, "m v=1 1\n".repeat(4));
    input.broker.delete().await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_influxdbs_413() {
    let input = start(
        |settings| settings.max_body_bytes = NonZeroUsize::new(16).expect("non-zero"),
        None,
    )
    .await;
    let (status, body) = input
        .post("/write?db=d", "m v=1 1\nm v=2 2\nm v=3 3\n")
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body, r#"{"error":"Request Entity Too Large"}"#);
    let (status, body) = input
        .post(
            "/api/v2/write?org=o&bucket=b",
            "m v=1 1\nm v=2 2\nm v=3 3\n",
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body,
        r#"{"code":"request too large","message":"unable to read data: points batch is too large"}"#
    );
    assert!(input.broker.take().await.is_none());
    input.broker.delete().await;
}

#[tokio::test]
async fn a_full_queue_is_a_503_with_retry_after() {
    let input = start(|_| {}, Some(1)).await;
    let (status, _) = input.post("/write?db=d", "m v=1 1\n").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "room for one");
    for path in ["/write?db=d", "/api/v2/write?org=o&bucket=b"] {
        let response = input
            .client
            .post(format!("{}{path}", input.base))
            .body("m v=2 2\n")
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok()),
            Some("7")
        );
    }
    assert_eq!(
        input.broker.take_all().await,
        "m v=1 1\n",
        "only the first was kept"
    );
    input.broker.delete().await;
}

#[tokio::test]
async fn ping_and_health_answer_as_influxdb_does() {
    let input = start(|_| {}, None).await;
    for request in [
        input.client.get(format!("{}/ping", input.base)),
        input.client.head(format!("{}/ping", input.base)),
    ] {
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            response
                .headers()
                .get("x-influxdb-version")
                .and_then(|value| value.to_str().ok()),
            Some("1.8.10")
        );
    }
    let response = input
        .client
        .get(format!("{}/health", input.base))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let health: serde_json::Value = response.json().await.expect("json");
    assert_eq!(health["status"], "pass");
    assert_eq!(health["name"], "influxdb");
    input.broker.delete().await;
}

#[tokio::test]
async fn without_the_broker_health_fails_and_writes_are_503_with_retry_after() {
    let port = sluice_testing::names::free_port();
    let publisher = sluice_amqp::confirmed::ConfirmedPublisher::start(
        sluice_amqp::confirmed::ConfirmedPublisherSettings {
            url: sluice_amqp::BrokerUrl::parse(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f"))
                .expect("valid"),
            name: sluice_testing::names::unique("intake-test"),
            exchange: sluice_amqp::topology::ExchangeSpec::durable_fanout("unused"),
            queue: None,
            max_in_flight: NonZeroUsize::MIN,
            max_in_flight_bytes: NonZeroUsize::MIN,
            confirm_timeout: Duration::from_secs(1),
            reconnect: sluice_core::retry::RetryPolicy::default(),
        },
    );
    let (address, _shutdown) = serve(influx_write::router(settings(), publisher)).await;
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{address}/health"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health: serde_json::Value = health.json().await.expect("json");
    assert_eq!(health["status"], "fail");

    let response = client
        .post(format!("http://{address}/api/v2/write?org=o&bucket=b"))
        .body("m v=1 1\n")
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok()),
        Some("7")
    );
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], "unavailable");
    assert!(
        !body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("guest:guest"),
        "no credentials in answers"
    );
}

/// `Expect: 100-continue` makes the request's progress visible: the server asks for the body
/// only once the handler reads it, so the shutdown below comes while the request is in flight.
#[tokio::test]
async fn a_request_in_flight_at_shutdown_is_still_confirmed_and_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let broker = Broker::start(None).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(sluice_intake::serve_listener(
        listener,
        influx_write::router(settings(), broker.publisher.clone()),
        shutdown.clone(),
    ));
    let mut connection = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    connection
        .write_all(
            b"POST /write?db=d HTTP/1.1\r\nHost: sluice\r\nContent-Length: 8\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await
        .expect("write the head");
    let mut answer = Vec::new();
    let mut buffer = [0; 1024];
    while !answer.ends_with(b"\r\n\r\n") {
        let read = connection.read(&mut buffer).await.expect("read");
        assert!(read > 0, "the server asks for the body");
        answer.extend_from_slice(&buffer[..read]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 100 Continue"), "{answer:?}");

    shutdown.cancel();
    connection
        .write_all(b"m v=1 1\n")
        .await
        .expect("write the body");
    let mut answer = Vec::new();
    connection
        .read_to_end(&mut answer)
        .await
        .expect("read the answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("the server stops once the request is answered")
        .expect("joins")
        .expect("serves cleanly");
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "no longer accepting"
    );
    assert_eq!(broker.take_all().await, "m v=1 1\n");
    broker.delete().await;
}
