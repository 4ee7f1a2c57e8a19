//! What the writer counts: requests by status, items by status, request sizes. Against the
//! fake only (a 429 item is injected).

#[path = "support/target.rs"]
mod target;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sluice_core::outcome::ItemOutcome;

use target::{Target, document, event, write};

/// A recorder that keeps counter totals and histogram values by `name{label=value,..}`.
#[derive(Default)]
struct RecordedMetrics {
    counters: Mutex<BTreeMap<String, u64>>,
    histograms: Mutex<BTreeMap<String, Vec<f64>>>,
}

struct MetricHandle {
    key: String,
    metrics: Arc<RecordedMetrics>,
}

impl metrics::CounterFn for MetricHandle {
    fn increment(&self, value: u64) {
        *self
            .metrics
            .counters
            .lock()
            .expect("lock")
            .entry(self.key.clone())
            .or_default() += value;
    }
    fn absolute(&self, value: u64) {
        self.metrics
            .counters
            .lock()
            .expect("lock")
            .insert(self.key.clone(), value);
    }
}

impl metrics::HistogramFn for MetricHandle {
    fn record(&self, value: f64) {
        self.metrics
            .histograms
            .lock()
            .expect("lock")
            .entry(self.key.clone())
            .or_default()
            .push(value);
    }
}

struct TestRecorder(Arc<RecordedMetrics>);

impl TestRecorder {
    fn handle(&self, key: &metrics::Key) -> Arc<MetricHandle> {
        let labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        Arc::new(MetricHandle {
            key: format!("{}{{{}}}", key.name(), labels.join(",")),
            metrics: Arc::clone(&self.0),
        })
    }
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.handle(key))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(self.handle(key))
    }
}

/// `#[tokio::test]` runs on one thread, so the thread-local recorder sees every metric.
#[tokio::test]
async fn requests_and_items_are_counted_by_status_and_requests_measured_in_bytes() {
    let mut target = Target::fake().await;
    let recorded = Arc::new(RecordedMetrics::default());
    let recorder = TestRecorder(Arc::clone(&recorded));
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

    let counters = recorded.counters.lock().expect("lock").clone();
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

    let histograms = recorded.histograms.lock().expect("lock").clone();
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
