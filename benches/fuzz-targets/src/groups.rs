//! The manager's `groups` files (wire formats, section 4), as the policy engine loads them when
//! the manager starts a deployment's policies.
//!
//! The input is the file. One that parses is loaded and run: metrics from every member of every
//! group (breaches, recoveries, silence) and sweeps. Then the contract of checkpoints: the
//! engine's state survives a restart, so an engine restored from a checkpoint (written as JSON
//! and read back) holds the same state and answers what follows with the same actions as the
//! engine it was taken from.

use sluice_core::action::Action;
use sluice_rules::{Engine, EngineLimits, EngineState, Groups, MetricEvent};

const DEPLOYMENT: &str = "nodecellar";
/// Collectors and paths of the services the metrics carry (`<collector>.<path>`).
const SERVICES: [&str; 3] = ["cpu.total.user", "memory.MemFree", "loadavg.01"];

/// Loads `data` as a groups file and runs it; panics when a property above does not hold.
pub fn groups(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(groups) = Groups::parse(text) else {
        return;
    };
    let members: Vec<String> = groups
        .groups()
        .iter()
        .flat_map(|group| group.members.iter().cloned())
        .collect();
    let limits = EngineLimits::default();
    let mut original = Engine::new(limits);
    original.load_deployment(DEPLOYMENT, groups);

    // Before the restart: every member breaches, recovers and goes silent.
    for (time_ms, value) in [(0, 0.0), (10_000, 95.0), (30_000, 1e9), (60_000, -1.0)] {
        feed(&mut original, &members, time_ms, value);
    }
    original.sweep(65_000);

    let state = original.checkpoint();
    let json = serde_json::to_string(&state)
        .unwrap_or_else(|error| panic!("a checkpoint does not serialise: {error}"));
    let read: EngineState = serde_json::from_str(&json)
        .unwrap_or_else(|error| panic!("a checkpoint does not read back: {error}: {json}"));
    assert_eq!(
        read, state,
        "a checkpoint reads back otherwise than written"
    );
    let mut restored = Engine::new(limits);
    if let Err(error) = restored.restore(read) {
        panic!("a checkpoint of a loaded groups file does not restore: {error}");
    }
    assert_eq!(
        restored.checkpoint(),
        state,
        "the restored engine holds other state"
    );

    // After it: both engines see the same and must answer the same.
    let before = feed(&mut original, &members, 70_000, 99.0);
    let after = feed(&mut restored, &members, 70_000, 99.0);
    assert_eq!(before, after, "the engines answer a metric differently");
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

/// One metric of every service from every member; the actions they fired.
fn feed(engine: &mut Engine, members: &[String], time_ms: i64, value: f64) -> Vec<Action> {
    let mut actions = Vec::new();
    for member in members {
        let node_id = format!("{member}_1");
        for service in SERVICES {
            let event = MetricEvent {
                deployment_id: DEPLOYMENT.to_owned(),
                node_name: member.clone(),
                node_id: node_id.clone(),
                host: Some(node_id.clone()),
                service: format!("{DEPLOYMENT}.{member}.{node_id}.{service}"),
                metric: value,
                time_ms,
                ttl: None,
            };
            actions.extend(engine.on_metric(&event, time_ms));
        }
    }
    actions
}
