//! The confirmed publisher and the AMQP sink against the real RabbitMQ (`AMQP_URL`, or the local
//! one `deploy/services.sh` starts): confirms awaited, nacks from a full `reject-publish` queue,
//! the in-flight bound, unroutable messages, and a reconnect after the broker closed the
//! connection.

use std::borrow::Cow;
use std::num::NonZeroUsize;
use std::time::Duration;

use bytes::Bytes;
use lapin::options::BasicGetOptions;
use metrics_util::debugging::DebuggingRecorder;
use sluice_amqp::BrokerUrl;
use sluice_amqp::confirmed::{
    BoundQueue, ConfirmedPublisher, ConfirmedPublisherSettings, PublishError,
};
use sluice_amqp::sink::{AmqpSink, AmqpSinkSettings, LINE_PROTOCOL_CONTENT_TYPE};
use sluice_amqp::topology::{ExchangeSpec, ExchangeType, Overflow, QueueSpec};
use sluice_core::outcome::ItemOutcome;
use sluice_core::point::{FieldRef, PointLimits, PointRef};
use sluice_core::retry::RetryPolicy;
use sluice_testing::names::unique;
use sluice_testing::recorded::recorded;
use sluice_testing::services::amqp_url;
use sluice_testing::sink::encode_and_write;
use sluice_testing::wait::eventually;

const CONTENT_TYPE: &str = "text/plain; format=test";

struct Target {
    publisher: ConfirmedPublisher,
    name: String,
    queue: String,
    exchange: String,
}

fn settings(name: &str, queue: Option<BoundQueue>) -> ConfirmedPublisherSettings {
    ConfirmedPublisherSettings {
        url: BrokerUrl::parse(&amqp_url()).expect("a valid AMQP_URL"),
        name: name.to_owned(),
        exchange: ExchangeSpec {
            name: unique("intake_test_exchange"),
            kind: ExchangeType::Topic,
            durable: false,
            auto_delete: true,
        },
        queue,
        max_in_flight: NonZeroUsize::new(16).expect("non-zero"),
        max_in_flight_bytes: NonZeroUsize::new(1 << 20).expect("non-zero"),
        confirm_timeout: Duration::from_secs(5),
        reconnect: RetryPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
        },
    }
}

fn test_queue(max_length: Option<u32>) -> BoundQueue {
    BoundQueue {
        queue: QueueSpec {
            name: unique("intake_test_queue"),
            durable: false,
            auto_delete: false,
            message_ttl: Some(Duration::from_secs(600)),
            max_length,
            overflow: Overflow::RejectPublish,
        },
        binding_keys: vec!["#".to_owned()],
    }
}

async fn start(adjust: impl FnOnce(&mut ConfirmedPublisherSettings)) -> Target {
    let name = unique("intake-test");
    let mut settings = settings(&name, Some(test_queue(None)));
    adjust(&mut settings);
    let queue = settings
        .queue
        .as_ref()
        .map(|bound| bound.queue.name.clone())
        .unwrap_or_default();
    let exchange = settings.exchange.name.clone();
    let publisher = ConfirmedPublisher::start(settings);
    tokio::time::timeout(Duration::from_secs(10), publisher.connected())
        .await
        .expect("the publisher connects to RabbitMQ: is it running? (deploy/services.sh)");
    Target {
        publisher,
        name,
        queue,
        exchange,
    }
}

/// Takes one message from `queue` (acked), with its content type.
async fn get_one(queue: &str) -> Option<(Vec<u8>, Option<String>, Option<u8>)> {
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    let message = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")?;
    let properties = &message.delivery.properties;
    Some((
        message.delivery.data.clone(),
        properties
            .content_type()
            .as_ref()
            .map(|kind| kind.to_string()),
        *properties.delivery_mode(),
    ))
}

async fn delete_queue(queue: &str) {
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    let _ = channel
        .queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
        .await;
}

#[tokio::test]
async fn a_publish_returns_once_confirmed_and_the_message_is_persistent_in_the_queue() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let target = start(|_| {}).await;

    target
        .publisher
        .for_input("influx_write")
        .publish("m.key", Bytes::from_static(b"m v=1 1\n"), CONTENT_TYPE)
        .await
        .expect("confirmed");

    let (body, content_type, delivery_mode) = get_one(&target.queue)
        .await
        .expect("the confirmed message is in the queue");
    assert_eq!(body, b"m v=1 1\n");
    assert_eq!(content_type.as_deref(), Some(CONTENT_TYPE));
    assert_eq!(delivery_mode, Some(2), "persistent");
    let (counters, _) = recorded(&snapshotter);
    assert_eq!(
        counters.get("sluice_intake_published_total{input=influx_write,result=confirmed}"),
        Some(&1),
        "{counters:?}"
    );
    delete_queue(&target.queue).await;
}

#[tokio::test]
async fn a_full_reject_publish_queue_is_a_nack() {
    let target = start(|settings| settings.queue = Some(test_queue(Some(1)))).await;
    target
        .publisher
        .publish("k", Bytes::from_static(b"first"), CONTENT_TYPE)
        .await
        .expect("room for one");
    let refused = target
        .publisher
        .publish("k", Bytes::from_static(b"second"), CONTENT_TYPE)
        .await;
    assert_eq!(refused, Err(PublishError::Nacked));
    let (body, _, _) = get_one(&target.queue).await.expect("the first is kept");
    assert_eq!(body, b"first");
    assert!(
        get_one(&target.queue).await.is_none(),
        "the second was refused"
    );
    delete_queue(&target.queue).await;
}

#[tokio::test]
async fn past_the_in_flight_bound_a_publish_is_busy_at_once() {
    let target = start(|settings| settings.max_in_flight = NonZeroUsize::MIN).await;
    // join! polls the first publish first: it takes the only slot before awaiting the broker,
    // so the second finds none.
    let (first, second) = tokio::join!(
        target
            .publisher
            .publish("k", Bytes::from_static(b"one"), CONTENT_TYPE),
        target
            .publisher
            .publish("k", Bytes::from_static(b"two"), CONTENT_TYPE),
    );
    assert_eq!(first, Ok(()));
    assert_eq!(
        second,
        Err(PublishError::Busy {
            messages: 1,
            bytes: 3
        })
    );
    target
        .publisher
        .publish("k", Bytes::from_static(b"three"), CONTENT_TYPE)
        .await
        .expect("the slot is free again once the first was confirmed");
    delete_queue(&target.queue).await;
}

#[tokio::test]
async fn the_bytes_in_flight_are_bounded_too() {
    let target = start(|settings| {
        settings.max_in_flight_bytes = NonZeroUsize::new(10).expect("non-zero");
    })
    .await;
    let (first, second) = tokio::join!(
        target
            .publisher
            .publish("k", Bytes::from_static(b"123456"), CONTENT_TYPE),
        target
            .publisher
            .publish("k", Bytes::from_static(b"123456"), CONTENT_TYPE),
    );
    assert_eq!(first, Ok(()));
    assert!(
        matches!(second, Err(PublishError::Busy { bytes: 6, .. })),
        "{second:?}"
    );
    delete_queue(&target.queue).await;
}

#[tokio::test]
async fn a_message_no_queue_takes_is_unroutable() {
    let target = start(|settings| settings.queue = None).await;
    let refused = target
        .publisher
        .publish("nobody.listens", Bytes::from_static(b"x"), CONTENT_TYPE)
        .await;
    assert_eq!(
        refused,
        Err(PublishError::Unroutable {
            exchange: target.exchange.clone(),
            routing_key: "nobody.listens".to_owned()
        })
    );
}

#[tokio::test]
async fn without_a_broker_a_publish_is_unavailable_at_once() {
    let port = sluice_testing::names::free_port();
    let mut settings = settings(&unique("intake-test"), None);
    settings.url =
        BrokerUrl::parse(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f")).expect("valid");
    let publisher = ConfirmedPublisher::start(settings);
    let refused = publisher
        .publish("k", Bytes::from_static(b"x"), CONTENT_TYPE)
        .await;
    assert!(
        matches!(refused, Err(PublishError::Unavailable { .. })),
        "{refused:?}"
    );
    assert!(!publisher.is_connected());
}

/// Has the broker close the connections named after `name`, as a broker restart would.
fn sever(name: &str) -> usize {
    sluice_testing::services::close_broker_connections(&format!(
        "sluice {name} pid={}",
        std::process::id()
    ))
}

#[tokio::test]
async fn after_the_broker_closes_the_connection_the_publisher_reconnects() {
    let target = start(|_| {}).await;
    target
        .publisher
        .publish("k", Bytes::from_static(b"before"), CONTENT_TYPE)
        .await
        .expect("confirmed");
    assert_eq!(sever(&target.name), 1, "one connection to close");

    eventually(
        "a publish confirmed after the reconnect",
        Duration::from_secs(15),
        || {
            let publisher = target.publisher.clone();
            async move {
                publisher
                    .publish("k", Bytes::from_static(b"after"), CONTENT_TYPE)
                    .await
                    .ok()
            }
        },
    )
    .await;
    let (first, _, _) = get_one(&target.queue).await.expect("before");
    assert_eq!(first, b"before");
    let (second, _, _) = get_one(&target.queue).await.expect("after");
    assert_eq!(second, b"after");
    assert_eq!(sever(&target.name), 1, "exactly one new connection");
    delete_queue(&target.queue).await;
}

fn point(measurement: &str, value: f64, timestamp: i64) -> PointRef<'static> {
    let mut point = PointRef {
        measurement: Cow::Owned(measurement.to_owned()),
        tags: Default::default(),
        fields: Default::default(),
        timestamp,
    };
    point
        .tags
        .push((Cow::Borrowed("host"), Cow::Borrowed("web 1")));
    point
        .fields
        .push((Cow::Borrowed("value"), FieldRef::Float(value)));
    point
}

#[tokio::test]
async fn the_amqp_sink_publishes_a_batch_as_one_message_of_lines() {
    let target = start(|_| {}).await;
    let limits = PointLimits::default();
    let sink = AmqpSink::new(
        target.publisher.clone(),
        AmqpSinkSettings {
            routing_key: "metrics.lines".to_owned(),
            max_point: limits,
            retry_after: Duration::from_secs(1),
        },
    );
    let points = [
        point("cpu", 1.5, 1_700_000_000_123_456_789),
        point("mem", 2.0, 1_700_000_000_000_000_000),
    ];
    let outcomes = encode_and_write(
        &sink,
        points.into_iter().map(|point| {
            point
                .validated(&limits)
                .map_err(|error| sluice_core::rejection::Refusal::of(&error))
        }),
    )
    .await;
    assert_eq!(
        outcomes,
        vec![ItemOutcome::Delivered, ItemOutcome::Delivered]
    );

    let (body, content_type, delivery_mode) =
        get_one(&target.queue).await.expect("the batch's message");
    assert_eq!(
        String::from_utf8(body).expect("utf-8"),
        "cpu,host=web\\ 1 value=1.5 1700000000123456789\nmem,host=web\\ 1 value=2 1700000000000000000\n"
    );
    assert_eq!(content_type.as_deref(), Some(LINE_PROTOCOL_CONTENT_TYPE));
    assert_eq!(delivery_mode, Some(2));
    assert!(
        get_one(&target.queue).await.is_none(),
        "one message per batch"
    );
    delete_queue(&target.queue).await;
}

#[tokio::test]
async fn the_amqp_sink_retries_every_item_when_the_broker_refuses() {
    let target = start(|settings| settings.queue = Some(test_queue(Some(1)))).await;
    target
        .publisher
        .publish("k", Bytes::from_static(b"fills the queue"), CONTENT_TYPE)
        .await
        .expect("room for one");
    let limits = PointLimits::default();
    let sink = AmqpSink::new(
        target.publisher.clone(),
        AmqpSinkSettings {
            routing_key: "metrics.lines".to_owned(),
            max_point: limits,
            retry_after: Duration::from_secs(2),
        },
    );
    let outcomes = encode_and_write(
        &sink,
        [point("cpu", 1.0, 1), point("cpu", 2.0, 2)]
            .into_iter()
            .map(|point| {
                point
                    .validated(&limits)
                    .map_err(|error| sluice_core::rejection::Refusal::of(&error))
            }),
    )
    .await;
    assert_eq!(outcomes.len(), 2);
    for outcome in outcomes {
        assert!(
            matches!(outcome, ItemOutcome::Retry { after: Some(after), .. } if after == Duration::from_secs(2)),
            "{outcome:?}"
        );
    }
    delete_queue(&target.queue).await;
}

#[tokio::test]
async fn a_confirm_not_received_in_time_is_a_timeout() {
    let target = start(|settings| settings.confirm_timeout = Duration::from_secs(30)).await;
    // With the clock paused, a runtime that waits for nothing but the broker moves the clock
    // on to the next timer at once: the confirm timeout passes before the confirm can come.
    tokio::time::pause();
    let late = target
        .publisher
        .publish("k", Bytes::from_static(b"late"), CONTENT_TYPE)
        .await;
    tokio::time::resume();
    assert_eq!(late, Err(PublishError::Timeout(Duration::from_secs(30))));
    delete_queue(&target.queue).await;
}
