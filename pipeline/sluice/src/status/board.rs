//! The figures behind the status page: a second metrics recorder beside the Prometheus one, and
//! a sampler that reads it once a second.
//!
//! Every `counter!`, `gauge!` and `histogram!` of the pipeline reaches both recorders (a
//! fanout), so the page shows exactly what `/metrics` counts, without parsing the Prometheus
//! text. [`StatusRecorder`] keeps plain atomics; [`Sampler::sample`] turns two readings into
//! rates (counter deltas over the time between them), takes gauges as they are, and drains the
//! histograms, so their percentiles are over the values of the last interval only (Prometheus
//! keeps its own copy of each value for its summaries).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use sluice_core::rejection::Stage;

use super::figures::{
    AckFigures, BatchFigures, CountFigures, DeadLetterFigures, DecodeFigures, PathFigures,
    ReasonFigures, RuleFigures, SinkFigures, SourceFigures, Status,
};

/// How often the board samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// How many samples of each rate are kept for the sparklines (a minute).
pub const HISTORY: usize = 60;

pub type StatusRegistry = Registry<Key, AtomicStorage>;

/// The status page's recorder: one atomic per series, read by the sampler.
#[derive(Clone)]
pub struct StatusRecorder {
    registry: Arc<StatusRegistry>,
}

impl StatusRecorder {
    pub fn new() -> Self {
        Self {
            registry: Arc::new(Registry::atomic()),
        }
    }

    pub fn registry(&self) -> Arc<StatusRegistry> {
        Arc::clone(&self.registry)
    }
}

impl Recorder for StatusRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.registry
            .get_or_create_counter(key, |counter| Counter::from_arc(Arc::clone(counter)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.registry
            .get_or_create_gauge(key, |gauge| Gauge::from_arc(Arc::clone(gauge)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.registry
            .get_or_create_histogram(key, |histogram| Histogram::from_arc(Arc::clone(histogram)))
    }
}

/// One reading of every series: counters' values, gauges' values, and the values histograms
/// recorded since the previous reading.
#[derive(Debug, Default, Clone)]
pub struct Readings {
    pub counters: HashMap<Key, u64>,
    pub gauges: HashMap<Key, f64>,
    pub histograms: HashMap<Key, Vec<f64>>,
}

impl Readings {
    /// Reads `registry`, draining its histograms.
    pub fn read(registry: &StatusRegistry) -> Self {
        let mut readings = Readings::default();
        registry.visit_counters(|key, counter| {
            readings
                .counters
                .insert(key.clone(), counter.load(Ordering::Relaxed));
        });
        registry.visit_gauges(|key, gauge| {
            readings
                .gauges
                .insert(key.clone(), f64::from_bits(gauge.load(Ordering::Relaxed)));
        });
        registry.visit_histograms(|key, bucket| {
            let mut values = Vec::new();
            bucket.clear_with(|chunk| values.extend_from_slice(chunk));
            readings.histograms.insert(key.clone(), values);
        });
        readings
    }
}

/// What runs, as configured: which series belong to which node of the graph.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    pub paths: Vec<PathShape>,
    pub dead_letter_exchange: String,
    /// The manager's URL (without credentials) when the rule stage runs.
    pub manager: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PathShape {
    pub name: &'static str,
    pub sources: Vec<SourceShape>,
    pub decode_stage: Stage,
    pub sink: Stage,
    pub sink_url: String,
}

#[derive(Debug, Clone)]
pub struct SourceShape {
    pub name: String,
    pub queue: String,
    pub broker: String,
}

/// Turns readings into figures; keeps the previous counters and the rate histories.
pub struct Sampler {
    shape: Shape,
    started: Instant,
    previous: Option<(Instant, HashMap<Key, u64>)>,
    /// Per path: received and written rates, oldest first.
    histories: Vec<(VecDeque<f64>, VecDeque<f64>)>,
}

impl Sampler {
    pub fn new(shape: Shape, started: Instant) -> Self {
        let histories = shape
            .paths
            .iter()
            .map(|_| (VecDeque::new(), VecDeque::new()))
            .collect();
        Self {
            shape,
            started,
            previous: None,
            histories,
        }
    }

    /// The figures from `readings` taken at `now`. The first sample's rates are over the time
    /// since start, from zero (every counter was zero then).
    pub fn sample(&mut self, now: Instant, readings: Readings) -> Status {
        let empty = HashMap::new();
        let (since, before) = match &self.previous {
            Some((at, counters)) => (*at, counters),
            None => (self.started, &empty),
        };
        let seconds = now.saturating_duration_since(since).as_secs_f64();
        let view = View {
            now: &readings.counters,
            before,
            seconds,
            gauges: &readings.gauges,
            histograms: &readings.histograms,
        };
        let mut paths = Vec::with_capacity(self.shape.paths.len());
        for (path, (received_history, written_history)) in
            self.shape.paths.iter().zip(&mut self.histories)
        {
            let figures = path_figures(&view, path);
            let received: f64 = figures
                .sources
                .iter()
                .map(|source| source.received_per_s)
                .sum();
            push_bounded(received_history, received);
            push_bounded(written_history, figures.sink.written_per_s);
            paths.push(PathFigures {
                received_history: received_history.iter().copied().collect(),
                written_history: written_history.iter().copied().collect(),
                ..figures
            });
        }
        let status = Status {
            version: crate::VERSION.to_owned(),
            uptime_s: now.saturating_duration_since(self.started).as_secs(),
            sampled_at_ms: super::recent::now_ms(),
            interval_s: seconds,
            paths,
            acks: AckFigures {
                acked_per_s: view.rate("sluice_acked_total", |_| true),
                acked_total: view.total("sluice_acked_total", |_| true),
                requeued_per_s: view.rate("sluice_requeued_total", |_| true),
                requeued_total: view.total("sluice_requeued_total", |_| true),
            },
            dead_letters: dead_letter_figures(&view, &self.shape.dead_letter_exchange),
            rules: self.shape.manager.as_ref().map(|manager| RuleFigures {
                manager: manager.clone(),
                fired_per_s: view.rate("sluice_policies_fired_total", |_| true),
                fired_total: view.total("sluice_policies_fired_total", |_| true),
                actions: view.counts("sluice_actions_total", &["kind", "outcome"]),
                activity: Default::default(),
            }),
            errors: Vec::new(),
        };
        self.previous = Some((now, readings.counters));
        status
    }
}

fn push_bounded(history: &mut VecDeque<f64>, value: f64) {
    if history.len() == HISTORY {
        history.pop_front();
    }
    history.push_back(value);
}

fn path_figures(view: &View<'_>, path: &PathShape) -> PathFigures {
    let mut sources: Vec<SourceFigures> = Vec::new();
    for source in &path.sources {
        // Several consumers of one queue share a name and their series: shown once.
        if sources.iter().any(|shown| shown.name == source.name) {
            continue;
        }
        let of_source = |key: &Key| label(key, "source") == Some(source.name.as_str());
        sources.push(SourceFigures {
            name: source.name.clone(),
            queue: source.queue.clone(),
            broker: source.broker.clone(),
            received_per_s: view.rate("sluice_received_total", of_source),
            received_total: view.total("sluice_received_total", of_source),
            unacked: view.gauge("sluice_unacked", of_source),
            reconnects_total: view.total("sluice_amqp_reconnects_total", of_source),
        });
    }
    let decode_stage = path.decode_stage.as_str();
    let sink = path.sink.as_str();
    let of_stage = |key: &Key| label(key, "stage") == Some(decode_stage);
    let of_sink = |key: &Key| label(key, "sink") == Some(sink);
    let sink_stage = |key: &Key| label(key, "stage") == Some(sink);
    let batch_items = view.values("sluice_batch_items", of_sink);
    let batch_bytes = view.values("sluice_batch_bytes", of_sink);
    let write_seconds = view.values("sluice_sink_write_seconds", of_sink);
    let to_ms = |seconds: Option<f64>| seconds.map(|seconds| seconds * 1000.0);
    PathFigures {
        name: path.name.to_owned(),
        consuming: false,
        sources,
        decode: DecodeFigures {
            stage: decode_stage.to_owned(),
            decoded_per_s: view.rate("sluice_decoded_total", of_stage),
            decoded_total: view.total("sluice_decoded_total", of_stage),
            rejected_per_s: view.rate("sluice_rejected_total", of_stage),
            control_messages_total: if path.decode_stage == Stage::Normalise {
                view.total("sluice_control_messages_total", |_| true)
            } else {
                0
            },
        },
        batch: BatchFigures {
            batches_per_s: if view.seconds > 0.0 {
                batch_items.len() as f64 / view.seconds
            } else {
                0.0
            },
            items_p50: percentile(&batch_items, 0.5),
            items_p99: percentile(&batch_items, 0.99),
            bytes_p50: percentile(&batch_bytes, 0.5),
            bytes_p99: percentile(&batch_bytes, 0.99),
        },
        sink: SinkFigures {
            name: sink.to_owned(),
            url: path.sink_url.clone(),
            written_per_s: view.rate("sluice_written_total", of_sink),
            written_total: view.total("sluice_written_total", of_sink),
            retried_per_s: view.rate("sluice_retried_total", of_sink),
            rejected_per_s: view.rate("sluice_rejected_total", sink_stage),
            in_flight: view.gauge("sluice_sink_in_flight", of_sink),
            write_p50_ms: to_ms(percentile(&write_seconds, 0.5)),
            write_p99_ms: to_ms(percentile(&write_seconds, 0.99)),
        },
        received_history: Vec::new(),
        written_history: Vec::new(),
    }
}

fn dead_letter_figures(view: &View<'_>, exchange: &str) -> DeadLetterFigures {
    let mut by_reason: Vec<ReasonFigures> = Vec::new();
    for key in view.now.keys() {
        if key.name() != "sluice_dead_lettered_total" {
            continue;
        }
        let (Some(stage), Some(reason)) = (label(key, "stage"), label(key, "reason")) else {
            continue;
        };
        let same = |other: &Key| key == other;
        by_reason.push(ReasonFigures {
            stage: stage.to_owned(),
            reason: reason.to_owned(),
            total: view.total("sluice_dead_lettered_total", same),
            per_s: view.rate("sluice_dead_lettered_total", same),
        });
    }
    by_reason.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.reason.cmp(&b.reason)));
    DeadLetterFigures {
        exchange: exchange.to_owned(),
        dead_lettered_per_s: view.rate("sluice_dead_lettered_total", |_| true),
        by_reason,
        failures: view.counts("sluice_dead_letter_failures_total", &["cause"]),
    }
}

/// Two readings of the counters and one of the rest.
struct View<'a> {
    now: &'a HashMap<Key, u64>,
    before: &'a HashMap<Key, u64>,
    seconds: f64,
    gauges: &'a HashMap<Key, f64>,
    histograms: &'a HashMap<Key, Vec<f64>>,
}

impl View<'_> {
    fn total(&self, name: &str, matches: impl Fn(&Key) -> bool) -> u64 {
        self.now
            .iter()
            .filter(|(key, _)| key.name() == name && matches(key))
            .map(|(_, value)| *value)
            .sum()
    }

    fn rate(&self, name: &str, matches: impl Fn(&Key) -> bool) -> f64 {
        if self.seconds <= 0.0 {
            return 0.0;
        }
        let grown: u64 = self
            .now
            .iter()
            .filter(|(key, _)| key.name() == name && matches(key))
            .map(|(key, value)| value.saturating_sub(self.before.get(key).copied().unwrap_or(0)))
            .sum();
        grown as f64 / self.seconds
    }

    fn gauge(&self, name: &str, matches: impl Fn(&Key) -> bool) -> f64 {
        self.gauges
            .iter()
            .filter(|(key, _)| key.name() == name && matches(key))
            .map(|(_, value)| *value)
            .sum()
    }

    /// The values recorded in the interval by the matching histograms, sorted.
    fn values(&self, name: &str, matches: impl Fn(&Key) -> bool) -> Vec<f64> {
        let mut values: Vec<f64> = self
            .histograms
            .iter()
            .filter(|(key, _)| key.name() == name && matches(key))
            .flat_map(|(_, values)| values.iter().copied())
            .collect();
        values.sort_by(f64::total_cmp);
        values
    }

    /// A counter's totals by the values of `labels`, joined with `/`, largest first.
    fn counts(&self, name: &str, labels: &[&str]) -> Vec<CountFigures> {
        let mut counts: HashMap<String, u64> = HashMap::new();
        for (key, value) in self.now.iter().filter(|(key, _)| key.name() == name) {
            let label_text = labels
                .iter()
                .map(|wanted| label(key, wanted).unwrap_or("-"))
                .collect::<Vec<_>>()
                .join("/");
            *counts.entry(label_text).or_default() += value;
        }
        let mut counts: Vec<CountFigures> = counts
            .into_iter()
            .filter(|(_, total)| *total > 0)
            .map(|(label, total)| CountFigures { label, total })
            .collect();
        counts.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.label.cmp(&b.label)));
        counts
    }
}

fn label<'a>(key: &'a Key, name: &str) -> Option<&'a str> {
    key.labels()
        .find(|label| label.key() == name)
        .map(|label| label.value())
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `quantile`
/// of them at or below it.
pub fn percentile(sorted: &[f64], quantile: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The latest figures, as the board task leaves them for the admin endpoint.
#[derive(Default)]
pub struct Board {
    latest: RwLock<Arc<Status>>,
}

impl Board {
    pub fn latest(&self) -> Arc<Status> {
        Arc::clone(&self.latest.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn set(&self, status: Status) {
        *self.latest.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(status);
    }

    /// Samples `registry` every [`SAMPLE_INTERVAL`], for as long as the process runs, drawing
    /// the paths `running_shape` answers. A new shape (a reload turned a path on or off, or
    /// moved it) starts a new history.
    pub async fn run(
        self: Arc<Self>,
        registry: Arc<StatusRegistry>,
        mut running_shape: impl FnMut() -> Arc<Shape> + Send + 'static,
    ) {
        let mut shape = running_shape();
        let mut sampler = Sampler::new(Shape::clone(&shape), Instant::now());
        let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: skip it, so the first rates cover a whole interval.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let latest = running_shape();
            if !Arc::ptr_eq(&latest, &shape) {
                shape = latest;
                sampler = Sampler::new(Shape::clone(&shape), Instant::now());
            }
            let readings = Readings::read(&registry);
            self.set(sampler.sample(Instant::now(), readings));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
        let labels: Vec<metrics::Label> = labels
            .iter()
            .map(|(key, value)| metrics::Label::new(*key, *value))
            .collect();
        Key::from_parts(name, labels)
    }

    fn shape() -> Shape {
        Shape {
            paths: vec![PathShape {
                name: "metrics",
                sources: vec![
                    SourceShape {
                        name: "metrics".into(),
                        queue: "sluice.metrics".into(),
                        broker: "amqp://guest:***@127.0.0.1:5672/%2f".into(),
                    },
                    SourceShape {
                        name: "metrics".into(),
                        queue: "sluice.metrics".into(),
                        broker: "amqp://guest:***@127.0.0.1:5672/%2f".into(),
                    },
                ],
                decode_stage: Stage::Normalise,
                sink: Stage::Influx,
                sink_url: "http://127.0.0.1:8086/".into(),
            }],
            dead_letter_exchange: "sluice.dead-letter".into(),
            manager: None,
        }
    }

    fn readings(received: u64, written: u64) -> Readings {
        let mut readings = Readings::default();
        readings.counters.insert(
            key("sluice_received_total", &[("source", "metrics")]),
            received,
        );
        readings
            .counters
            .insert(key("sluice_written_total", &[("sink", "influx")]), written);
        readings.counters.insert(
            key("sluice_written_total", &[("sink", "elasticsearch")]),
            1_000_000,
        );
        readings
    }

    #[test]
    fn rates_are_counter_deltas_over_the_time_between_samples() {
        let started = Instant::now();
        let mut sampler = Sampler::new(shape(), started);
        let first = sampler.sample(started + Duration::from_secs(2), readings(100, 40));
        let path = &first.paths[0];
        assert_eq!(
            path.sources.len(),
            1,
            "two consumers of one queue show once"
        );
        assert_eq!(path.sources[0].received_per_s, 50.0, "from zero at start");
        assert_eq!(path.sink.written_per_s, 20.0, "only this path's sink");

        let second = sampler.sample(started + Duration::from_millis(2500), readings(400, 40));
        let path = &second.paths[0];
        assert_eq!(path.sources[0].received_per_s, 600.0);
        assert_eq!(path.sources[0].received_total, 400);
        assert_eq!(path.sink.written_per_s, 0.0, "nothing written meanwhile");
        assert_eq!(second.interval_s, 0.5);
        assert_eq!(path.received_history, vec![50.0, 600.0]);
    }

    #[test]
    fn the_history_keeps_the_last_minute() {
        let started = Instant::now();
        let mut sampler = Sampler::new(shape(), started);
        for second in 1..=(HISTORY as u64 + 10) {
            sampler.sample(
                started + Duration::from_secs(second),
                readings(second * 10, 0),
            );
        }
        let last = sampler.sample(
            started + Duration::from_secs(HISTORY as u64 + 11),
            readings(0, 0),
        );
        assert_eq!(last.paths[0].received_history.len(), HISTORY);
        assert_eq!(
            last.paths[0].received_history.last(),
            Some(&0.0),
            "a counter never goes back: a smaller value is no negative rate"
        );
    }

    #[test]
    fn percentiles_are_nearest_rank_over_the_interval() {
        assert_eq!(percentile(&[], 0.5), None);
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), Some(50.0));
        assert_eq!(percentile(&values, 0.99), Some(99.0));
        assert_eq!(percentile(&values, 1.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));

        let started = Instant::now();
        let mut sampler = Sampler::new(shape(), started);
        let mut with_batches = readings(0, 0);
        with_batches.histograms.insert(
            key("sluice_batch_items", &[("sink", "influx")]),
            vec![10.0, 30.0, 20.0, 40.0],
        );
        with_batches.histograms.insert(
            key("sluice_sink_write_seconds", &[("sink", "influx")]),
            vec![0.002, 0.010],
        );
        with_batches.histograms.insert(
            key("sluice_batch_items", &[("sink", "elasticsearch")]),
            vec![9999.0],
        );
        let figures = sampler.sample(started + Duration::from_secs(1), with_batches);
        let path = &figures.paths[0];
        assert_eq!(path.batch.items_p50, Some(20.0));
        assert_eq!(path.batch.items_p99, Some(40.0));
        assert_eq!(path.batch.batches_per_s, 4.0);
        assert_eq!(path.sink.write_p99_ms, Some(10.0));
        let idle = sampler.sample(started + Duration::from_secs(2), readings(0, 0));
        assert_eq!(
            idle.paths[0].batch.items_p50, None,
            "no batch this interval"
        );
    }

    #[test]
    fn the_recorder_serves_what_the_macros_record_and_histograms_drain_on_reading() {
        let recorder = StatusRecorder::new();
        let registry = recorder.registry();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("sluice_received_total", "source" => "metrics").increment(3);
            metrics::gauge!("sluice_unacked", "source" => "metrics").set(7.0);
            metrics::histogram!("sluice_batch_items", "sink" => "influx").record(5.0);
        });
        let first = Readings::read(&registry);
        let received = key("sluice_received_total", &[("source", "metrics")]);
        assert_eq!(first.counters[&received], 3);
        assert_eq!(
            first.gauges[&key("sluice_unacked", &[("source", "metrics")])],
            7.0
        );
        let batch_items = key("sluice_batch_items", &[("sink", "influx")]);
        assert_eq!(first.histograms[&batch_items], vec![5.0]);
        let second = Readings::read(&registry);
        assert!(second.histograms[&batch_items].is_empty());
        assert_eq!(second.counters[&received], 3, "counters are not drained");
    }

    #[test]
    fn dead_letters_are_shown_by_stage_and_reason_largest_first() {
        let started = Instant::now();
        let mut sampler = Sampler::new(shape(), started);
        let mut with_letters = readings(0, 0);
        with_letters.counters.insert(
            key(
                "sluice_dead_lettered_total",
                &[("stage", "normalise"), ("reason", "invalid_json")],
            ),
            2,
        );
        with_letters.counters.insert(
            key(
                "sluice_dead_lettered_total",
                &[("stage", "influx"), ("reason", "field_type_conflict")],
            ),
            5,
        );
        let figures = sampler.sample(started + Duration::from_secs(1), with_letters);
        let reasons: Vec<(&str, u64)> = figures
            .dead_letters
            .by_reason
            .iter()
            .map(|reason| (reason.reason.as_str(), reason.total))
            .collect();
        assert_eq!(
            reasons,
            vec![("field_type_conflict", 5), ("invalid_json", 2)]
        );
        assert_eq!(figures.dead_letters.dead_lettered_per_s, 7.0);
    }
}
