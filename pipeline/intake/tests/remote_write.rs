//! The Prometheus remote-write receiver against the real RabbitMQ, fed a real snappy-compressed
//! protobuf body built with the crate's own message types.

mod support;

use std::num::NonZeroUsize;
use std::time::Duration;

use metrics_util::debugging::DebuggingRecorder;
use prost::Message;
use reqwest::StatusCode;
use sluice_intake::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};
use sluice_intake::remote_write::{self, RemoteWriteSettings};
use sluice_testing::recorded::recorded;
use support::{Broker, ROUTING_KEY, serve};

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn sample(value: f64, timestamp: i64) -> Sample {
    Sample { value, timestamp }
}

fn snappy_protobuf(request: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("compresses")
}

async fn start(max_length: Option<u32>) -> (Broker, String) {
    let broker = Broker::start(max_length).await;
    let settings = RemoteWriteSettings {
        max_body_bytes: NonZeroUsize::new(1 << 20).expect("non-zero"),
        retry_after: Duration::from_secs(3),
        ..RemoteWriteSettings::new(ROUTING_KEY)
    };
    let (address, _shutdown) =
        serve(remote_write::router(settings, broker.publisher.clone())).await;
    (broker, format!("http://{address}/api/v1/write"))
}

async fn post(url: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("an answer")
}

/// `#[tokio::test]` runs on one thread, so the thread-local recorder sees every metric.
#[tokio::test]
async fn samples_become_lines_and_stale_markers_are_skipped_and_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (broker, url) = start(None).await;
    let stale_marker = f64::from_bits(0x7ff0_0000_0000_0002);
    let request = WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: vec![
                    label("__name__", "up"),
                    label("instance", "localhost:9090"),
                    label("job", "prometheus"),
                ],
                samples: vec![
                    sample(1.0, 1_700_000_000_000),
                    sample(stale_marker, 1_700_000_015_000),
                ],
            },
            TimeSeries {
                labels: vec![label("__name__", "http_seconds_sum"), label("path", "/a b")],
                samples: vec![sample(0.25, 1_700_000_000_500)],
            },
            TimeSeries {
                labels: vec![label("job", "nameless")],
                samples: vec![sample(3.0, 1_700_000_000_000)],
            },
        ],
    };

    let response = post(&url, snappy_protobuf(&request)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let taken = broker.take().await.expect("one message");
    assert_eq!(
        taken.body,
        "up,instance=localhost:9090,job=prometheus value=1 1700000000000000000\n\
         http_seconds_sum,path=/a\\ b value=0.25 1700000000500000000\n"
    );
    assert_eq!(
        taken.content_type.as_deref(),
        Some("text/plain; format=line-protocol; precision=ns")
    );
    let (counters, _) = recorded(&snapshotter);
    assert_eq!(
        counters.get("sluice_intake_refused_total{input=remote_write,reason=not_finite}"),
        Some(&1),
        "{counters:?}"
    );
    assert_eq!(
        counters.get("sluice_intake_refused_total{input=remote_write,reason=missing_name}"),
        Some(&1)
    );
    assert_eq!(
        counters.get("sluice_intake_received_total{input=remote_write}"),
        Some(&2)
    );
    broker.delete().await;
}

#[tokio::test]
async fn an_undecodable_body_is_a_400_so_prometheus_drops_it() {
    let (broker, url) = start(None).await;
    let response = post(&url, b"certainly not snappy".to_vec()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let not_a_request = snap::raw::Encoder::new()
        .compress_vec(b"\x0a\xff\xff\xff")
        .expect("compresses");
    let response = post(&url, not_a_request).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(broker.take().await.is_none());
    broker.delete().await;
}

#[tokio::test]
async fn a_full_queue_is_a_503_with_retry_after_so_prometheus_retries() {
    let (broker, url) = start(Some(1)).await;
    let request = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![label("__name__", "up")],
            samples: vec![sample(1.0, 1_000)],
        }],
    };
    assert_eq!(
        post(&url, snappy_protobuf(&request)).await.status(),
        StatusCode::NO_CONTENT
    );
    let response = post(&url, snappy_protobuf(&request)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok()),
        Some("3")
    );
    broker.delete().await;
}
