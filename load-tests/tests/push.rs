//! The push-input load generator (`sluice_load::push`) against endpoints served in this test: an
//! InfluxDB-shaped `/write` that answers 204, 429 and 503 in a fixed pattern, and a Graphite
//! TCP listener. It needs no services and runs in about a second. Only counts are asserted,
//! never speed: this machine is shared.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use sluice_load::push::{self, Lines, Pace, PushSettings, Target};
use sluice_load::schedule::EpochClock;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Every wait in these tests ends by then.
const BOUND: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Endpoint {
    requests: AtomicU64,
    lines: AtomicU64,
}

/// Of every ten requests, one is answered 429 and one 503; the rest 204.
async fn write(State(endpoint): State<Arc<Endpoint>>, body: Bytes) -> StatusCode {
    let request = endpoint.requests.fetch_add(1, Ordering::SeqCst);
    let lines = body
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty());
    endpoint
        .lines
        .fetch_add(lines.count() as u64, Ordering::SeqCst);
    match request % 10 {
        4 => StatusCode::TOO_MANY_REQUESTS,
        9 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::NO_CONTENT,
    }
}

async fn serve() -> (SocketAddr, Arc<Endpoint>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let endpoint = Arc::new(Endpoint::default());
    let app = Router::new()
        .route("/write", post(write))
        .with_state(Arc::clone(&endpoint));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, endpoint)
}

fn lines(batch: usize) -> Lines {
    Lines {
        measurement: "push_smoke".to_owned(),
        hosts: 20,
        collectors: 10,
        batch,
        base_seconds: 1_780_000_000,
    }
}

fn settings(target: Target, requests: u64, batch: usize, pace: Pace) -> PushSettings {
    PushSettings {
        target,
        lines: lines(batch),
        requests,
        pace,
        request_timeout: Duration::from_secs(10),
    }
}

async fn run(settings: &PushSettings) -> push::PushReport {
    let clock = EpochClock::new().expect("clock");
    tokio::time::timeout(BOUND, push::run(settings, clock))
        .await
        .expect("the run ends")
        .expect("the run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_every_request_and_sorts_the_answers() {
    let (address, endpoint) = serve().await;
    let url = format!("http://{address}/write?db=smoke&precision=s");
    let pace = Pace::Open {
        rate: 200.0,
        max_in_flight: 16,
    };
    let report = run(&settings(Target::Http(url), 100, 10, pace)).await;

    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 100);
    assert_eq!(endpoint.lines.load(Ordering::SeqCst), 1_000);
    assert_eq!(report.statuses.no_content, 80);
    assert_eq!(report.statuses.too_many_requests, 10);
    assert_eq!(report.statuses.unavailable, 10);
    assert_eq!(report.statuses.other + report.statuses.failed, 0);
    assert_eq!(report.accepted_lines(), 800);
    assert_eq!(report.latency.count, 100, "every request's latency");
    assert!(report.latency.p50_ms <= report.latency.p99_ms);
    assert_eq!(report.to_json()["statuses"]["503"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_senders_share_the_requests() {
    let (address, endpoint) = serve().await;
    let url = format!("http://{address}/write?db=smoke&precision=s");
    let report = run(&settings(
        Target::Http(url),
        60,
        5,
        Pace::Closed { concurrency: 3 },
    ))
    .await;

    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 60);
    assert_eq!(endpoint.lines.load(Ordering::SeqCst), 300);
    assert_eq!(report.statuses.total(), 60);
    assert_eq!(report.statuses.no_content, 48);
    assert_eq!(report.latency.count, 60);
}

#[tokio::test]
async fn a_target_that_is_not_there_counts_as_failed_requests() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let pace = Pace::Open {
        rate: 500.0,
        max_in_flight: 8,
    };
    let report = run(&settings(
        Target::Http(format!("http://{address}/write")),
        20,
        1,
        pace,
    ))
    .await;
    assert_eq!(report.statuses.failed, 20);
    assert_eq!(report.accepted_lines(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphite_batches_arrive_whole_over_every_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let connections = 2;
    // Reads each connection to its end, counting lines.
    let reader = tokio::spawn(async move {
        let mut readers = Vec::new();
        for _ in 0..connections {
            let (mut stream, _) = listener.accept().await.expect("accept");
            readers.push(tokio::spawn(async move {
                let mut text = String::new();
                stream.read_to_string(&mut text).await.expect("read");
                text.lines().count()
            }));
        }
        let mut lines = 0;
        for reader in readers {
            lines += reader.await.expect("reader");
        }
        lines
    });
    let pace = Pace::Open {
        rate: 500.0,
        max_in_flight: 16,
    };
    let target = Target::GraphiteTcp {
        address,
        connections,
    };
    let report = run(&settings(target, 50, 20, pace)).await;
    let received = tokio::time::timeout(BOUND, reader)
        .await
        .expect("the listener read to the end")
        .expect("reader");

    assert_eq!(report.statuses.sent, 50);
    assert_eq!(report.accepted_lines(), 1_000);
    assert_eq!(received, 1_000);
}
