//! Properties over arbitrary metric sequences.

#![expect(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use sluice_rules::{Engine, EngineLimits, EngineState, Groups, MetricEvent};

fn all_policies() -> Groups {
    let trigger = json!({"t": {"type": "cloudify.policies.triggers.execute_workflow",
        "parameters": {"workflow": "heal",
                       "workflow_parameters": {"n": {"get_property": ["SELF", "node_id"]}}}}});
    Groups::parse(
        &json!({"g": {"members": ["n0", "n1"], "policies": {
            "threshold": {"type": "cloudify.policies.types.threshold",
                "properties": {"service": "cpu", "threshold": 50, "stability_time": 5}, "triggers": trigger},
            "ewma": {"type": "cloudify.policies.types.ewma_stabilized",
                "properties": {"service": "cpu", "threshold": 50, "policy_operates_on_group": true},
                "triggers": trigger},
            "hosts": {"type": "cloudify.policies.types.host_failure",
                "properties": {"service": ["cpu", "mem"], "ttl": 10}, "triggers": trigger}
        }}})
        .to_string(),
    )
    .unwrap()
}

#[derive(Debug, Clone)]
enum Step {
    Metric {
        node: u8,
        service: u8,
        metric: f64,
        time_delta_ms: i64,
        ttl_s: Option<u8>,
    },
    Sweep {
        advance_ms: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (
            0u8..3,
            0u8..3,
            prop_oneof![
                any::<f64>(),
                -100.0f64..200.0,
                Just(f64::NAN),
                Just(f64::INFINITY)
            ],
            -20_000i64..20_000,
            proptest::option::of(0u8..30),
        )
            .prop_map(
                |(node, service, metric, time_delta_ms, ttl_s)| Step::Metric {
                    node,
                    service,
                    metric,
                    time_delta_ms,
                    ttl_s,
                }
            ),
        (0i64..30_000).prop_map(|advance_ms| Step::Sweep { advance_ms }),
    ]
}

fn run(engine: &mut Engine, steps: &[Step], now: &mut i64) -> usize {
    let mut fired = 0;
    for step in steps {
        match step {
            Step::Metric {
                node,
                service,
                metric,
                time_delta_ms,
                ttl_s,
            } => {
                let event = MetricEvent {
                    deployment_id: "d".to_owned(),
                    node_name: format!("n{node}"),
                    node_id: format!("n{node}_x"),
                    host: None,
                    service: ["d.n.cpu.total", "d.n.mem.used", "other"][usize::from(*service)]
                        .to_owned(),
                    metric: *metric,
                    time_ms: *now + time_delta_ms,
                    ttl: ttl_s.map(|seconds| Duration::from_secs(u64::from(seconds))),
                };
                fired += engine.on_metric(&event, *now).len();
            }
            Step::Sweep { advance_ms } => {
                *now += advance_ms;
                fired += engine.sweep(*now).len();
            }
        }
    }
    fired
}

proptest! {
    /// Never panics, whatever the values, times and ttls; and a checkpoint taken at any point,
    /// restored into a fresh engine, behaves exactly like the original from then on.
    #[test]
    fn never_panics_and_restore_is_transparent(
        before in proptest::collection::vec(step(), 0..60),
        after in proptest::collection::vec(step(), 0..60),
        max_keys in 1usize..4,
    ) {
        let limits = EngineLimits { max_keys_per_policy: max_keys, idle_forget_after: Duration::from_secs(40) };
        let mut engine = Engine::new(limits);
        engine.load_deployment("d", all_policies());
        let mut now = 1_000_000_000_000;
        run(&mut engine, &before, &mut now);

        let text = serde_json::to_string(&engine.checkpoint()).unwrap();
        let state: EngineState = serde_json::from_str(&text).unwrap();
        let mut restored = Engine::new(limits);
        restored.restore(state).unwrap();

        let mut now_restored = now;
        let fired = run(&mut engine, &after, &mut now);
        let fired_restored = run(&mut restored, &after, &mut now_restored);
        prop_assert_eq!(fired, fired_restored);
        prop_assert_eq!(engine.checkpoint(), restored.checkpoint());
    }
}
