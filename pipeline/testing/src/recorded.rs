//! What a `metrics` recorder saw, in a form assertions can compare.

use std::collections::BTreeMap;

use metrics_util::debugging::{DebugValue, Snapshotter};

/// Counter totals and histogram values by `name{label=value,..}`, read once from the recorder.
pub fn recorded(snapshotter: &Snapshotter) -> (BTreeMap<String, u64>, BTreeMap<String, Vec<f64>>) {
    let mut counters = BTreeMap::new();
    let mut histograms = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        match value {
            DebugValue::Counter(total) => {
                counters.insert(name, total);
            }
            DebugValue::Histogram(values) => {
                histograms.insert(
                    name,
                    values.into_iter().map(|value| value.into_inner()).collect(),
                );
            }
            DebugValue::Gauge(_) => {}
        }
    }
    (counters, histograms)
}
