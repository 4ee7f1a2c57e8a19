//! Generic rule files (the standalone tier's TOML rules), as the generic engine loads them.
//!
//! The input is the file. One that parses is run: points matching the usual measurements and
//! tags, carrying every field a rule reads, rising, falling and falling silent, then sweeps.
//! Then the contract of checkpoints: an engine built from the same file and restored from a
//! checkpoint (written as JSON and read back) restores every rule, holds the same state, and
//! answers what follows with the same actions as the engine the checkpoint was taken from.

use std::collections::BTreeMap;

use sluice_core::action::Action;
use sluice_core::point::{FieldValue, Point};
use sluice_rules::{GenericEngine, GenericLimits, GenericState, RuleSet};

const MEASUREMENTS: [&str; 3] = ["cpu.total.user", "disk.used_percent", "memory"];
const NODES: [&str; 2] = ["vm_1", "vm_2"];

/// Loads `data` as a rules file and runs it; panics when a property above does not hold.
pub fn generic_rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rules) = RuleSet::parse(text) else {
        return;
    };
    let fields: Vec<String> = rules
        .rules()
        .iter()
        .map(|rule| rule.field.clone())
        .collect();
    let limits = GenericLimits::default();
    let mut original = GenericEngine::new(rules.clone(), limits);

    // Before the restart.
    for (time_ms, value) in [(0, 0.0), (10_000, 95.0), (30_000, 1e9), (60_000, -1.0)] {
        feed(&mut original, &fields, time_ms, value);
    }
    original.sweep(65_000);

    let state = original.checkpoint();
    let json = serde_json::to_string(&state)
        .unwrap_or_else(|error| panic!("a checkpoint does not serialise: {error}"));
    let read: GenericState = serde_json::from_str(&json)
        .unwrap_or_else(|error| panic!("a checkpoint does not read back: {error}: {json}"));
    assert_eq!(
        read, state,
        "a checkpoint reads back otherwise than written"
    );
    let mut restored = GenericEngine::new(rules.clone(), limits);
    let outcome = restored
        .restore(read)
        .unwrap_or_else(|error| panic!("a checkpoint does not restore: {error}"));
    assert!(
        outcome.discarded_rules.is_empty() && outcome.restored_rules.len() == rules.rules().len(),
        "a checkpoint into the same rules restores only some: {outcome:?}"
    );
    assert_eq!(
        restored.checkpoint(),
        state,
        "the restored engine holds other state"
    );

    // After it: both engines see the same and must answer the same.
    let before = feed(&mut original, &fields, 70_000, 99.0);
    let after = feed(&mut restored, &fields, 70_000, 99.0);
    assert_eq!(before, after, "the engines answer a point differently");
    for time_ms in [70_000, 130_000, 3_600_000] {
        let before = original.sweep(time_ms);
        let after = restored.sweep(time_ms);
        assert_eq!(before, after, "the engines' sweeps at {time_ms} ms differ");
    }
    assert_eq!(
        original.checkpoint(),
        restored.checkpoint(),
        "the engines' states drifted apart"
    );
}

/// One point of every measurement from every node, each carrying every field a rule reads;
/// the actions they fired.
fn feed(engine: &mut GenericEngine, fields: &[String], time_ms: i64, value: f64) -> Vec<Action> {
    let mut actions = Vec::new();
    for measurement in MEASUREMENTS {
        for node in NODES {
            let tags = [
                ("deployment_id", "nodecellar"),
                ("node_id", node),
                ("host", node),
                ("service", measurement),
            ];
            let point = Point {
                measurement: measurement.to_owned(),
                tags: tags
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                    .collect(),
                fields: fields
                    .iter()
                    .map(|field| (field.clone(), FieldValue::Float(value)))
                    .collect::<BTreeMap<_, _>>(),
                timestamp: time_ms * 1_000_000,
            };
            actions.extend(engine.on_point(&point, time_ms));
        }
    }
    actions
}
