//! The Graphite listeners against the real RabbitMQ: several TCP connections with lines split
//! across writes, UDP datagrams, timestamps filled in, and a clean stop.

mod support;

use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_core::retry::RetryPolicy;
use sluice_intake::{GraphiteListeners, GraphiteSettings};
use sluice_testing::wait::eventually;
use support::{Broker, ROUTING_KEY};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

fn settings() -> GraphiteSettings {
    GraphiteSettings {
        tcp: Some("127.0.0.1:0".parse().expect("address")),
        udp: Some("127.0.0.1:0".parse().expect("address")),
        max_connections: NonZeroUsize::new(4).expect("non-zero"),
        max_line_bytes: NonZeroUsize::new(256).expect("non-zero"),
        linger: Duration::from_millis(20),
        publish_retry: RetryPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        ..GraphiteSettings::new(ROUTING_KEY)
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Lines as published, each received-time timestamp (within `from..=to`) shown as `<now>`,
/// sorted (connections publish independently).
fn normalised(lines: &str, from: u64, to: u64) -> Vec<String> {
    let mut lines: Vec<String> = lines
        .lines()
        .map(|line| match line.rsplit_once(' ') {
            Some((before, time))
                if time
                    .parse::<u64>()
                    .is_ok_and(|time| (from..=to).contains(&time)) =>
            {
                format!("{before} <now>")
            }
            _ => line.to_owned(),
        })
        .collect();
    lines.sort();
    lines
}

async fn collect(broker: &Broker, expected_lines: usize) -> String {
    let all = std::sync::Mutex::new(String::new());
    eventually(
        &format!("{expected_lines} graphite lines in the queue"),
        Duration::from_secs(10),
        || async {
            while let Some(message) = broker.take().await {
                assert_eq!(
                    message.content_type.as_deref(),
                    Some("text/plain; format=graphite")
                );
                all.lock().expect("not poisoned").push_str(&message.body);
            }
            (all.lock().expect("not poisoned").lines().count() >= expected_lines).then_some(())
        },
    )
    .await;
    all.into_inner().expect("not poisoned")
}

#[tokio::test]
async fn tcp_lines_from_several_connections_split_across_writes_reach_the_queue() {
    let broker = Broker::start(None).await;
    let settings = settings();
    let listeners = GraphiteListeners::bind(&settings).await.expect("bind");
    let address = listeners.tcp_address().expect("a TCP listener");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(listeners.run(settings, broker.publisher.clone(), shutdown.clone()));
    let from = now_seconds();

    let mut first = TcpStream::connect(address).await.expect("connect");
    let mut second = TcpStream::connect(address).await.expect("connect");
    first
        .write_all(b"servers.a.cpu 1.5 1700000000\nservers.a.")
        .await
        .expect("write");
    second
        .write_all(b"servers.b.mem 42\r\n")
        .await
        .expect("write");
    first.flush().await.expect("flush");
    first
        .write_all(b"load 0.7 -1\nnot a graphite line at all\n")
        .await
        .expect("write");
    // The last line has no newline: the end of the connection ends it.
    second
        .write_all(b"servers.b.disk 3 1700000001")
        .await
        .expect("write");
    drop(first);
    drop(second);

    let published = collect(&broker, 4).await;
    let to = now_seconds();
    assert_eq!(
        normalised(&published, from, to),
        [
            "servers.a.cpu 1.5 1700000000",
            "servers.a.load 0.7 <now>",
            "servers.b.disk 3 1700000001",
            "servers.b.mem 42 <now>",
        ]
    );
    shutdown.cancel();
    running.await.expect("joins").expect("stops cleanly");
    broker.delete().await;
}

#[tokio::test]
async fn udp_datagrams_reach_the_queue_with_timestamps_filled_in() {
    let broker = Broker::start(None).await;
    let settings = settings();
    let listeners = GraphiteListeners::bind(&settings).await.expect("bind");
    let address = listeners.udp_address().expect("a UDP socket");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(listeners.run(settings, broker.publisher.clone(), shutdown.clone()));
    let from = now_seconds();

    let sender = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sender
        .send_to(b"udp.a 1 1700000000\nudp.b 2\n", address)
        .await
        .expect("send");
    sender.send_to(b"udp.c 3 -1", address).await.expect("send");

    let published = collect(&broker, 3).await;
    let to = now_seconds();
    assert_eq!(
        normalised(&published, from, to),
        ["udp.a 1 1700000000", "udp.b 2 <now>", "udp.c 3 <now>"]
    );
    shutdown.cancel();
    running.await.expect("joins").expect("stops cleanly");
    broker.delete().await;
}

#[tokio::test]
async fn an_open_idle_connection_does_not_hold_the_shutdown() {
    let broker = Broker::start(None).await;
    let settings = settings();
    let listeners = GraphiteListeners::bind(&settings).await.expect("bind");
    let address = listeners.tcp_address().expect("a TCP listener");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(listeners.run(settings, broker.publisher.clone(), shutdown.clone()));

    let mut connection = TcpStream::connect(address).await.expect("connect");
    connection
        .write_all(b"before.stop 1 1700000000\n")
        .await
        .expect("write");
    collect(&broker, 1).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the listeners stop although a connection is still open")
        .expect("joins")
        .expect("stops cleanly");
    drop(connection);
    broker.delete().await;
}

#[tokio::test]
async fn while_the_broker_refuses_a_tcp_sender_is_held_back_not_buffered() {
    let broker = Broker::start(Some(1)).await;
    broker
        .publisher
        .publish(
            "fill",
            bytes::Bytes::from_static(b"fills the queue\n"),
            "text/plain",
        )
        .await
        .expect("room for one");
    let mut settings = settings();
    settings.udp = None;
    settings.batch_max_bytes = NonZeroUsize::new(64 * 1024).expect("non-zero");
    let listeners = GraphiteListeners::bind(&settings).await.expect("bind");
    let address = listeners.tcp_address().expect("a TCP listener");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(listeners.run(settings, broker.publisher.clone(), shutdown.clone()));

    // Far more than the batch, the socket buffers of both ends and anything sluice may hold:
    // the sender can only get rid of it all if sluice reads without publishing.
    let lines = b"held.back 1 1700000000\n".repeat(3 << 20);
    let mut connection = TcpStream::connect(address).await.expect("connect");
    let written = tokio::time::timeout(Duration::from_secs(2), connection.write_all(&lines)).await;
    assert!(
        written.is_err(),
        "the sender is held back while its batch cannot be published"
    );
    // The listener stops before the queue is read: while it runs it keeps retrying, and a retry
    // would land the moment reading the queue made room for it.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stops although its publish is refused")
        .expect("joins")
        .expect("stops cleanly");
    let kept = broker.take_all().await;
    let held_back = kept.matches("held.back").count();
    assert!(
        kept.starts_with("fills the queue\n") && held_back == 0,
        "nothing but the first message got in; the queue held {} bytes with {held_back} held-back lines",
        kept.len()
    );
    broker.delete().await;
}

/// `#[tokio::test]` runs on one thread, so the thread-local recorder sees every metric.
#[tokio::test]
async fn udp_batches_the_broker_cannot_take_are_dropped_and_counted() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let broker = Broker::start(Some(1)).await;
    broker
        .publisher
        .publish(
            "fill",
            bytes::Bytes::from_static(b"fills the queue\n"),
            "text/plain",
        )
        .await
        .expect("room for one");
    let mut settings = settings();
    settings.tcp = None;
    settings.batch_max_lines = NonZeroUsize::MIN;
    settings.udp_queue_batches = NonZeroUsize::MIN;
    let listeners = GraphiteListeners::bind(&settings).await.expect("bind");
    let address = listeners.udp_address().expect("a UDP socket");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(listeners.run(settings, broker.publisher.clone(), shutdown.clone()));

    let sender = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let dropped_key = "sluice_intake_dropped_total{input=graphite_udp,reason=overloaded}";
    eventually(
        "UDP lines dropped and counted",
        Duration::from_secs(10),
        || async {
            sender
                .send_to(b"udp.dropped 1 1700000000\n", address)
                .await
                .expect("send");
            tokio::task::yield_now().await;
            let (counters, _) = sluice_testing::recorded::recorded(&snapshotter);
            counters
                .get(dropped_key)
                .filter(|&&dropped| dropped > 0)
                .map(|_| ())
        },
    )
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stops although its publish is refused")
        .expect("joins")
        .expect("stops cleanly");
    let (counters, _) = sluice_testing::recorded::recorded(&snapshotter);
    assert!(
        counters.contains_key("sluice_intake_dropped_total{input=graphite_udp,reason=shutdown}"),
        "the batch being retried at the stop is counted too: {counters:?}"
    );
    broker.delete().await;
}
