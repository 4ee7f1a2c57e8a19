//! What the writer counts: requests by status, items by status, request sizes. Against the
//! fake only (a 429 item is injected).

#[path = "support/target.rs"]
mod target;

use metrics_util::debugging::DebuggingRecorder;
use sluice_core::outcome::ItemOutcome;
use sluice_testing::recorded::recorded;

use target::{Target, document, event, write};

/// `#[tokio::test]` runs on one thread, so the thread-local recorder sees every metric.
#[tokio::test]
async fn requests_and_items_are_counted_by_status_and_requests_measured_in_bytes() {
    let mut target = Target::fake().await;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let index = target.index("metrics");
    let writer = target.writer();
    write(&writer, &[event(&index, 1)]).await;
    target
        .fake_server()
        .fail_items_with_429(["event-0003".to_owned()], 1);
    target.fake_server().respond_whole_request(413, 1);

    let outcomes = write(
        &writer,
        &[
            event(&index, 1),
            event(&index, 2),
            event(&index, 3),
            document(&index, "conflict", r#"{"sequence":"x"}"#),
        ],
    )
    .await;
    assert!(
        matches!(outcomes[2], ItemOutcome::Retry { .. }),
        "{outcomes:?}"
    );

    let (counters, histograms) = recorded(&snapshotter);
    let counter = |key: &str| counters.get(key).copied().unwrap_or_default();
    // 1 request, then 413 and its two halves.
    assert_eq!(
        counter("sluice_elasticsearch_requests_total{status=200}"),
        3
    );
    assert_eq!(
        counter("sluice_elasticsearch_requests_total{status=413}"),
        1
    );
    assert_eq!(counter("sluice_elasticsearch_splits_total{}"), 1);
    assert_eq!(counter("sluice_elasticsearch_items_total{status=201}"), 2);
    assert_eq!(counter("sluice_elasticsearch_items_total{status=409}"), 1);
    assert_eq!(counter("sluice_elasticsearch_items_total{status=429}"), 1);
    assert_eq!(counter("sluice_elasticsearch_items_total{status=400}"), 1);

    let recorded_sizes: Vec<usize> = histograms["sluice_elasticsearch_request_bytes{}"]
        .iter()
        .map(|size| *size as usize)
        .collect();
    let sent_sizes: Vec<usize> = target
        .fake_server()
        .bulk_log()
        .iter()
        .map(|record| record.wire_bytes)
        .collect();
    assert_eq!(recorded_sizes, sent_sizes);
}
