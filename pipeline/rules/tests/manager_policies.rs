//! The manager's policies (`Engine`) with a controlled clock: every time is given, nothing sleeps.

#![expect(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::time::Duration;

use serde_json::{Value, json};
use sluice_core::action::{Action, ExecuteWorkflow};
use sluice_rules::{Engine, EngineLimits, EngineState, Groups, MetricEvent};

const DEPLOYMENT: &str = "nodecellar";
const T0: i64 = 1_466_000_000_000;

fn groups_json(policy_type: &str, properties: Value) -> String {
    json!({
        "web_tier": {
            "members": ["nodejs_host"],
            "policies": {"p": {
                "type": policy_type,
                "properties": properties,
                "triggers": {"heal": {
                    "type": "cloudify.policies.triggers.execute_workflow",
                    "parameters": {
                        "workflow": "heal",
                        "workflow_parameters": {
                            "node_instance_id": {"get_property": ["SELF", "node_id"]},
                            "diagnose_value": {"get_property": ["SELF", "diagnose"]},
                            "nested": [{"value": {"get_property": ["SELF", "metric"]}}],
                            "missing": {"get_property": ["SELF", "no_such_field"]},
                            "literal": {"get_property": ["OTHER", "node_id"]}
                        }
                    }
                }}
            }}
        }
    })
    .to_string()
}

fn engine(policy_type: &str, properties: Value) -> Engine {
    let mut engine = Engine::new(EngineLimits::default());
    let groups = Groups::parse(&groups_json(policy_type, properties)).unwrap();
    engine.load_deployment(DEPLOYMENT, groups);
    engine
}

fn threshold_engine(properties: Value) -> Engine {
    engine("cloudify.policies.types.threshold", properties)
}

fn metric(node_id: &str, value: f64, time_ms: i64) -> MetricEvent {
    MetricEvent {
        deployment_id: DEPLOYMENT.to_owned(),
        node_name: "nodejs_host".to_owned(),
        node_id: node_id.to_owned(),
        host: Some(node_id.to_owned()),
        service: format!("{DEPLOYMENT}.nodejs_host.{node_id}.cpu.total.user"),
        metric: value,
        time_ms,
        ttl: None,
    }
}

fn workflows(actions: &[Action]) -> Vec<&ExecuteWorkflow> {
    actions
        .iter()
        .map(|action| match action {
            Action::ExecuteWorkflow(workflow) => workflow,
            Action::Webhook(_) => panic!("no webhooks expected"),
        })
        .collect()
}

/// Feeds (seconds after T0, value) pairs for node `a`; returns the offsets that fired.
fn fire_times(engine: &mut Engine, series: &[(i64, f64)]) -> Vec<i64> {
    series
        .iter()
        .filter(|(offset, value)| {
            let time = T0 + offset * 1000;
            !engine
                .on_metric(&metric("a", *value, time), time)
                .is_empty()
        })
        .map(|(offset, _)| *offset)
        .collect()
}

#[test]
fn threshold_held_for_stability_time_fires_once_at_the_right_event() {
    let mut engine = threshold_engine(
        json!({"service": "cpu.total.user", "threshold": 90, "stability_time": 30}),
    );
    let fired = fire_times(
        &mut engine,
        &[
            (0, 50.0),
            (10, 95.0),
            (20, 91.0),
            (30, 99.0),
            (40, 90.0),
            (50, 92.0),
            (60, 93.0),
        ],
    );
    // The breach starts at 10 s and has held 30 s at the event of 40 s; it fires once.
    assert_eq!(fired, vec![40]);
}

#[test]
fn interrupted_breach_does_not_fire() {
    let mut engine = threshold_engine(
        json!({"service": "cpu.total.user", "threshold": 90, "stability_time": 30}),
    );
    let fired = fire_times(
        &mut engine,
        &[
            (0, 95.0),
            (10, 95.0),
            (20, 95.0),
            (25, 10.0),
            (30, 95.0),
            (40, 95.0),
            (50, 95.0),
        ],
    );
    assert!(fired.is_empty(), "{fired:?}");
    // The clock restarted at 30 s: it fires at 60 s.
    assert_eq!(fire_times(&mut engine, &[(60, 95.0)]), vec![60]);
}

#[test]
fn threshold_rearms_only_after_a_stable_non_breach() {
    let mut engine = threshold_engine(
        json!({"service": "cpu.total.user", "threshold": 90, "stability_time": 20}),
    );
    let fired = fire_times(
        &mut engine,
        &[
            (0, 95.0),
            (20, 95.0), // fires
            (30, 10.0), // a blip: not yet stable ok
            (40, 95.0),
            (70, 95.0), // still the same breach: no second firing
            (80, 10.0),
            (100, 10.0), // stable ok: re-armed
            (110, 95.0),
            (130, 95.0), // fires again
        ],
    );
    assert_eq!(fired, vec![20, 130]);
}

#[test]
fn an_out_of_order_event_never_makes_a_breach_stable_early() {
    let mut engine = threshold_engine(
        json!({"service": "cpu.total.user", "threshold": 90, "stability_time": 30}),
    );
    // Breach starts at 10 s (event time); an older event arriving later changes nothing.
    let fired = fire_times(
        &mut engine,
        &[(10, 95.0), (-100, 95.0), (20, 95.0), (40, 95.0)],
    );
    assert_eq!(fired, vec![40]);
}

#[test]
fn zero_stability_fires_on_each_transition_into_breach() {
    let mut engine = threshold_engine(json!({"service": "cpu", "threshold": 90}));
    let fired = fire_times(
        &mut engine,
        &[(0, 90.0), (10, 95.0), (20, 89.0), (30, 91.0), (40, 50.0)],
    );
    assert_eq!(fired, vec![0, 30], "metric >= threshold breaches");
}

#[test]
fn lower_bound_breaches_at_or_below() {
    let mut engine =
        threshold_engine(json!({"service": "cpu", "threshold": 10, "upper_bound": false}));
    let fired = fire_times(
        &mut engine,
        &[(0, 50.0), (10, 10.0), (20, 5.0), (30, 11.0), (40, 2.0)],
    );
    assert_eq!(fired, vec![10, 40]);
}

#[test]
fn threshold_action_is_filled_from_the_event() {
    let mut engine = threshold_engine(json!({"service": "cpu.total.user", "threshold": 90}));
    let actions = engine.on_metric(&metric("nodejs_host_x7k2p", 95.5, T0), T0);
    let [workflow] = workflows(&actions)[..] else {
        panic!("one action expected")
    };
    assert_eq!(workflow.deployment_id, DEPLOYMENT);
    assert_eq!(workflow.workflow_id, "heal");
    assert!(!workflow.force);
    assert!(!workflow.allow_custom_parameters);
    assert_eq!(workflow.socket_timeout, Duration::from_millis(1000));
    let parameters: Value = workflow.parameters.clone();
    assert_eq!(
        parameters,
        json!({
            "node_instance_id": "nodejs_host_x7k2p",
            "diagnose_value": "threshold-breached",
            "nested": [{"value": 95.5}],
            "missing": null,
            "literal": {"get_property": ["OTHER", "node_id"]}
        })
    );
    let origin = &workflow.origin;
    assert_eq!(
        (
            origin.group.as_str(),
            origin.policy.as_str(),
            origin.trigger.as_str()
        ),
        ("web_tier", "p", "heal")
    );
    assert_eq!(origin.node_id.as_deref(), Some("nodejs_host_x7k2p"));
    assert_eq!(origin.node_name.as_deref(), Some("nodejs_host"));
    assert_eq!(origin.diagnose, "threshold-breached");
    assert_eq!(origin.event_time_ms, T0);
    let event: Value = origin.event.clone();
    assert_eq!(event["metric"], json!(95.5));
    assert_eq!(
        event["service"],
        json!("nodecellar.nodejs_host.nodejs_host_x7k2p.cpu.total.user")
    );
    assert_eq!(event["host"], json!("nodejs_host_x7k2p"));
    assert_eq!(event["time"], json!(T0 / 1000));
    assert_eq!(event["state"], json!("triggering_state"));
}

#[test]
fn service_regex_matches_unanchored_and_filters() {
    let mut engine = threshold_engine(json!({"service": "total\\.user$", "threshold": 1}));
    let mut other = metric("a", 100.0, T0);
    other.service = "nodecellar.nodejs_host.a.memory.used".to_owned();
    assert!(engine.on_metric(&other, T0).is_empty());
    assert_eq!(engine.on_metric(&metric("a", 100.0, T0), T0).len(), 1);
}

#[test]
fn only_group_members_count() {
    let mut engine = threshold_engine(json!({"service": "cpu", "threshold": 1}));
    let mut outsider = metric("m", 100.0, T0);
    outsider.node_name = "mongod_host".to_owned();
    assert!(engine.on_metric(&outsider, T0).is_empty());
    let mut other_deployment = metric("a", 100.0, T0);
    other_deployment.deployment_id = "other".to_owned();
    assert!(engine.on_metric(&other_deployment, T0).is_empty());
    assert_eq!(engine.on_metric(&metric("a", 100.0, T0), T0).len(), 1);
}

#[test]
fn state_is_per_node_unless_the_policy_operates_on_the_group() {
    let per_node = json!({"service": "cpu", "threshold": 90, "stability_time": 10});
    let mut engine = threshold_engine(per_node);
    // Two nodes alternate breaching; neither holds for 10 s on its own clock... until they do.
    assert!(engine.on_metric(&metric("a", 95.0, T0), T0).is_empty());
    assert!(
        engine
            .on_metric(&metric("b", 95.0, T0 + 5000), T0 + 5000)
            .is_empty()
    );
    let fired_a = engine.on_metric(&metric("a", 95.0, T0 + 10_000), T0 + 10_000);
    assert_eq!(workflows(&fired_a)[0].origin.node_id.as_deref(), Some("a"));
    assert!(
        engine
            .on_metric(&metric("b", 10.0, T0 + 12_000), T0 + 12_000)
            .is_empty()
    );

    let on_group = json!({"service": "cpu", "threshold": 90, "stability_time": 10,
                          "policy_operates_on_group": true});
    let mut engine = threshold_engine(on_group);
    assert!(engine.on_metric(&metric("a", 95.0, T0), T0).is_empty());
    // b's breach continues the group's breach started by a.
    let fired = engine.on_metric(&metric("b", 95.0, T0 + 10_000), T0 + 10_000);
    let [workflow] = workflows(&fired)[..] else {
        panic!("one action expected")
    };
    assert_eq!(workflow.origin.node_id, None, "group state has no node");
    let parameters: Value = workflow.parameters.clone();
    assert_eq!(
        parameters["node_instance_id"],
        json!("b"),
        "the triggering event's node"
    );
}

#[test]
fn ewma_starts_at_zero_and_fires_when_the_average_crosses() {
    let mut engine = engine(
        "cloudify.policies.types.ewma_stabilized",
        json!({"service": "cpu", "threshold": 80}),
    );
    // r = 0.5: 50, 75, 87.5: the first 100 is biased low to 50.
    let mut fired_at = Vec::new();
    for (index, expected_ewma) in [50.0, 75.0, 87.5, 93.75].into_iter().enumerate() {
        let time = T0 + i64::try_from(index).unwrap() * 10_000;
        let actions = engine.on_metric(&metric("a", 100.0, time), time);
        if let [workflow] = workflows(&actions)[..] {
            let event: Value = workflow.origin.event.clone();
            assert_eq!(
                event["metric"],
                json!(expected_ewma),
                "the average is reported"
            );
            assert_eq!(event["raw_metric"], json!(100.0));
            assert_eq!(workflow.origin.diagnose, "ewma-threshold-breached");
            fired_at.push(index);
        }
    }
    assert_eq!(
        fired_at,
        vec![2],
        "fires once, on the third event (87.5 >= 80)"
    );
}

#[test]
fn ewma_factor_is_honoured() {
    let mut engine = engine(
        "cloudify.policies.types.ewma_stabilized",
        json!({"service": "cpu", "threshold": 80, "ewma_timeless_r": 0.9}),
    );
    // 0.9 * 100 = 90 >= 80 at once.
    assert_eq!(engine.on_metric(&metric("a", 100.0, T0), T0).len(), 1);
}

fn host_failure_engine(properties: Value) -> Engine {
    engine("cloudify.policies.types.host_failure", properties)
}

#[test]
fn host_failure_fires_at_the_first_sweep_after_ttl_and_once() {
    let mut engine = host_failure_engine(json!({"service": ["cpu.total.user"]}));
    assert!(engine.on_metric(&metric("a", 1.0, T0), T0).is_empty());
    // Sweeps every 5 s: silent exactly 60 s is not yet expired (Riemann: time + ttl < now).
    for offset_s in (5..=60).step_by(5) {
        assert!(
            engine.sweep(T0 + offset_s * 1000).is_empty(),
            "{offset_s} s"
        );
    }
    let actions = engine.sweep(T0 + 65_000);
    let [workflow] = workflows(&actions)[..] else {
        panic!("one action expected")
    };
    assert_eq!(workflow.origin.diagnose, "heart-beat-failure");
    assert_eq!(workflow.origin.node_id.as_deref(), Some("a"));
    assert_eq!(workflow.origin.event_time_ms, T0 + 65_000);
    let event: Value = workflow.origin.event.clone();
    assert_eq!(event["state"], json!("expired"));
    assert_eq!(event["last_seen_ms"], json!(T0));
    let parameters: Value = workflow.parameters.clone();
    assert_eq!(parameters["node_instance_id"], json!("a"));
    assert_eq!(parameters["diagnose_value"], json!("heart-beat-failure"));
    // Once per expiry.
    assert!(engine.sweep(T0 + 70_000).is_empty());
    assert!(engine.sweep(T0 + 600_000).is_empty());
}

#[test]
fn host_failure_uses_the_event_ttl_and_the_policy_ttl() {
    let mut engine = host_failure_engine(json!({"service": "cpu", "ttl": 20}));
    let mut short = metric("a", 1.0, T0);
    short.ttl = Some(Duration::from_secs(10));
    engine.on_metric(&short, T0);
    engine.on_metric(&metric("b", 1.0, T0), T0);
    assert!(engine.sweep(T0 + 10_000).is_empty());
    let at_15 = engine.sweep(T0 + 15_000);
    assert_eq!(workflows(&at_15)[0].origin.node_id.as_deref(), Some("a"));
    assert_eq!(at_15.len(), 1);
    assert!(engine.sweep(T0 + 20_000).is_empty());
    let at_25 = engine.sweep(T0 + 25_000);
    assert_eq!(workflows(&at_25)[0].origin.node_id.as_deref(), Some("b"));
}

#[test]
fn host_failure_revives_when_the_series_reports_again() {
    let mut engine = host_failure_engine(json!({"service": ["cpu"]}));
    engine.on_metric(&metric("a", 1.0, T0), T0);
    assert_eq!(engine.sweep(T0 + 65_000).len(), 1);
    // A stale (late) event does not revive it.
    engine.on_metric(&metric("a", 1.0, T0 + 1000), T0 + 70_000);
    assert!(engine.sweep(T0 + 200_000).is_empty());
    // A fresh one does, and the next silence fires again.
    engine.on_metric(&metric("a", 1.0, T0 + 300_000), T0 + 300_000);
    assert!(engine.sweep(T0 + 360_000).is_empty());
    assert_eq!(engine.sweep(T0 + 365_000).len(), 1);
}

#[test]
fn host_failure_series_need_a_matching_service() {
    let mut engine = host_failure_engine(json!({"service": ["memory", "^nope"]}));
    engine.on_metric(&metric("a", 1.0, T0), T0);
    assert!(engine.sweep(T0 + 120_000).is_empty());
}

#[test]
fn unload_and_reload_start_clean() {
    let properties = json!({"service": "cpu", "threshold": 90, "stability_time": 10});
    let mut engine = threshold_engine(properties.clone());
    engine.on_metric(&metric("a", 95.0, T0), T0);
    engine.unload_deployment(DEPLOYMENT);
    assert!(
        engine
            .on_metric(&metric("a", 95.0, T0 + 10_000), T0 + 10_000)
            .is_empty()
    );
    assert_eq!(engine.deployment_ids().count(), 0);

    let groups = Groups::parse(&groups_json(
        "cloudify.policies.types.threshold",
        properties,
    ))
    .unwrap();
    engine.load_deployment(DEPLOYMENT, groups.clone());
    engine.on_metric(&metric("a", 95.0, T0 + 20_000), T0 + 20_000);
    // Re-loading (a re-created deployment) forgets the breach started at 20 s.
    engine.load_deployment(DEPLOYMENT, groups);
    assert!(
        engine
            .on_metric(&metric("a", 95.0, T0 + 30_000), T0 + 30_000)
            .is_empty()
    );
    assert_eq!(
        engine
            .on_metric(&metric("a", 95.0, T0 + 40_000), T0 + 40_000)
            .len(),
        1
    );
}

fn round_trip(engine: &Engine) -> Engine {
    let text = serde_json::to_string(&engine.checkpoint()).unwrap();
    let state: EngineState = serde_json::from_str(&text).unwrap();
    let mut restored = Engine::new(EngineLimits::default());
    restored.restore(state).unwrap();
    restored
}

#[test]
fn restore_neither_refires_nor_forgets_a_silent_host() {
    let mut engine = host_failure_engine(json!({"service": "cpu"}));
    engine.on_metric(&metric("dead", 1.0, T0), T0);
    engine.on_metric(&metric("silent", 1.0, T0 + 30_000), T0 + 30_000);
    assert_eq!(
        engine.sweep(T0 + 65_000).len(),
        1,
        "dead expired before the restart"
    );

    let mut restored = round_trip(&engine);
    assert_eq!(restored.checkpoint(), engine.checkpoint());
    assert!(
        restored.sweep(T0 + 90_000).is_empty(),
        "dead does not fire again"
    );
    let actions = restored.sweep(T0 + 95_000);
    let [workflow] = workflows(&actions)[..] else {
        panic!("silent must still expire")
    };
    assert_eq!(workflow.origin.node_id.as_deref(), Some("silent"));
}

#[test]
fn restore_keeps_threshold_and_ewma_progress() {
    let mut engine =
        threshold_engine(json!({"service": "cpu", "threshold": 90, "stability_time": 20}));
    engine.on_metric(&metric("a", 95.0, T0), T0);
    engine.on_metric(&metric("b", 95.0, T0), T0);
    assert_eq!(
        engine
            .on_metric(&metric("b", 95.0, T0 + 20_000), T0 + 20_000)
            .len(),
        1
    );
    let mut restored = round_trip(&engine);
    // a's breach clock survived; b's firing is remembered.
    assert_eq!(
        restored
            .on_metric(&metric("a", 95.0, T0 + 20_000), T0 + 20_000)
            .len(),
        1
    );
    assert!(
        restored
            .on_metric(&metric("b", 95.0, T0 + 30_000), T0 + 30_000)
            .is_empty()
    );

    let mut ewma = engine_for_ewma();
    ewma.on_metric(&metric("a", 100.0, T0), T0);
    ewma.on_metric(&metric("a", 100.0, T0 + 10_000), T0 + 10_000);
    let mut restored = round_trip(&ewma);
    // 50, 75, then 87.5 crosses 80 only if the average survived.
    assert_eq!(
        restored
            .on_metric(&metric("a", 100.0, T0 + 20_000), T0 + 20_000)
            .len(),
        1
    );
}

fn engine_for_ewma() -> Engine {
    engine(
        "cloudify.policies.types.ewma_stabilized",
        json!({"service": "cpu", "threshold": 80}),
    )
}

#[test]
fn restore_refuses_another_format_version() {
    let engine = threshold_engine(json!({"service": "cpu", "threshold": 1}));
    let mut state = serde_json::to_value(engine.checkpoint()).unwrap();
    state["format_version"] = json!(99);
    let state: EngineState = serde_json::from_value(state).unwrap();
    let mut restored = Engine::new(EngineLimits::default());
    assert!(restored.restore(state).is_err());
}

#[test]
fn idle_keys_are_forgotten_by_the_sweep() {
    let limits = EngineLimits {
        max_keys_per_policy: 100,
        idle_forget_after: Duration::from_secs(60),
    };
    let mut engine = Engine::new(limits);
    let groups = Groups::parse(&groups_json(
        "cloudify.policies.types.threshold",
        json!({"service": "cpu", "threshold": 90, "stability_time": 100}),
    ))
    .unwrap();
    engine.load_deployment(DEPLOYMENT, groups);
    engine.on_metric(&metric("a", 95.0, T0), T0);
    engine.sweep(T0 + 60_000);
    // Still remembered at exactly the idle time: the breach started at T0 completes.
    assert_eq!(
        engine
            .on_metric(&metric("a", 95.0, T0 + 100_000), T0 + 60_000)
            .len(),
        1
    );
    engine.on_metric(&metric("b", 95.0, T0), T0);
    engine.sweep(T0 + 61_000);
    // b was forgotten: its breach starts again at 100 s.
    assert!(
        engine
            .on_metric(&metric("b", 95.0, T0 + 100_000), T0 + 100_000)
            .is_empty()
    );
}

#[test]
fn max_keys_forgets_the_least_recently_seen() {
    let limits = EngineLimits {
        max_keys_per_policy: 2,
        idle_forget_after: Duration::from_secs(3600),
    };
    let mut engine = Engine::new(limits);
    let groups = Groups::parse(&groups_json(
        "cloudify.policies.types.threshold",
        json!({"service": "cpu", "threshold": 90, "stability_time": 10}),
    ))
    .unwrap();
    engine.load_deployment(DEPLOYMENT, groups);
    engine.on_metric(&metric("a", 95.0, T0), T0);
    engine.on_metric(&metric("b", 95.0, T0), T0 + 1);
    engine.on_metric(&metric("c", 95.0, T0), T0 + 2); // evicts a
    assert!(
        engine
            .on_metric(&metric("a", 95.0, T0 + 10_000), T0 + 10_000)
            .is_empty()
    );
    assert_eq!(
        engine
            .on_metric(&metric("c", 95.0, T0 + 10_000), T0 + 10_001)
            .len(),
        1
    );
}

#[test]
fn restraints_are_exposed_not_applied() {
    let mut engine = threshold_engine(json!({"service": "cpu", "threshold": 90,
        "interval_between_workflows": 600, "is_node_started_before_workflow": false}));
    let policy = engine.policy(DEPLOYMENT, "web_tier", "p").unwrap();
    assert_eq!(
        policy.restraints.interval_between_workflows,
        Some(Duration::from_secs(600))
    );
    assert!(!policy.restraints.is_node_started_before_workflow);
    // Two breaches one second apart both fire: the interval is the executor's business.
    let fired = fire_times(&mut engine, &[(0, 95.0), (1, 10.0), (2, 95.0)]);
    assert_eq!(fired, vec![0, 2]);
}

#[test]
fn every_trigger_of_a_policy_fires_and_deployments_are_independent() {
    let two_triggers = json!({"g": {"members": ["nodejs_host"], "policies": {"p": {
        "type": "cloudify.policies.types.threshold",
        "properties": {"service": "cpu", "threshold": 90},
        "triggers": {
            "b_scale": {"type": "cloudify.policies.triggers.execute_workflow",
                        "parameters": {"workflow": "scale", "allow_custom_parameters": true}},
            "a_heal": {"type": "cloudify.policies.triggers.execute_workflow",
                       "parameters": {"workflow": "heal"}}}}}}})
    .to_string();
    let mut engine = Engine::new(EngineLimits::default());
    engine.load_deployment(DEPLOYMENT, Groups::parse(&two_triggers).unwrap());
    engine.load_deployment("other", Groups::parse(&two_triggers).unwrap());
    let actions = engine.on_metric(&metric("a", 95.0, T0), T0);
    let fired: Vec<_> = workflows(&actions)
        .iter()
        .map(|workflow| {
            (
                workflow.origin.trigger.clone(),
                workflow.workflow_id.clone(),
            )
        })
        .collect();
    assert_eq!(
        fired,
        vec![
            ("a_heal".to_owned(), "heal".to_owned()),
            ("b_scale".to_owned(), "scale".to_owned())
        ],
        "in trigger name order"
    );
    assert!(workflows(&actions)[1].allow_custom_parameters);
    assert_eq!(workflows(&actions)[0].parameters, json!({}));

    engine.unload_deployment(DEPLOYMENT);
    let mut elsewhere = metric("a", 95.0, T0);
    elsewhere.deployment_id = "other".to_owned();
    assert_eq!(
        engine.on_metric(&elsewhere, T0).len(),
        2,
        "other deployment still loaded"
    );
    assert_eq!(engine.deployment_ids().collect::<Vec<_>>(), vec!["other"]);
}

#[test]
fn a_host_first_seen_with_a_stale_event_fires_at_the_next_sweep() {
    let mut engine = host_failure_engine(json!({"service": "cpu"}));
    engine.on_metric(&metric("late", 1.0, T0), T0 + 120_000);
    assert_eq!(engine.sweep(T0 + 125_000).len(), 1);
    assert!(engine.sweep(T0 + 130_000).is_empty());
}
