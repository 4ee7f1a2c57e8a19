//! The generic rules engine with a controlled clock: every time is given, nothing sleeps.

#![expect(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};
use sluice_core::action::{Action, ActionOrigin, ExecuteWorkflow, Webhook};
use sluice_core::point::{FieldValue, Point};
use sluice_rules::generic::{
    DIAGNOSE_ABSENCE, DIAGNOSE_STATE_CHANGE_BREACHED, DIAGNOSE_STATE_CHANGE_OK, DIAGNOSE_THRESHOLD,
};
use sluice_rules::{
    Condition, GenericEngine, GenericLimits, GenericRestoreError, GenericState, RuleSet, Sample,
    Stat,
};

const T0: i64 = 1_466_000_000_000;
const SECOND: i64 = 1000;

/// A point at `time_ms` (event time) with a float `value` and the given tags.
fn point(measurement: &str, tags: &[(&str, &str)], value: f64, time_ms: i64) -> Point {
    let mut point = Point::with_value(measurement, value, time_ms * 1_000_000);
    for (key, tag_value) in tags {
        point.set_tag(*key, *tag_value);
    }
    point
}

fn cpu(node_id: &str, value: f64, time_ms: i64) -> Point {
    point(
        "cpu.total.user",
        &[("node_id", node_id), ("deployment_id", "nodecellar")],
        value,
        time_ms,
    )
}

/// One rule with a webhook whose body carries the common placeholders.
fn webhook_rule(matching: &str, condition: &str) -> String {
    format!(
        r#"
        [[rule]]
        name = "r"
        {matching}
        condition = {condition}
        [[rule.action]]
        kind = "webhook"
        url = "http://127.0.0.1:9000/alert"
        body = {{ value = "{{{{value}}}}", state = "{{{{state}}}}", key = "{{{{key}}}}" }}
        "#
    )
}

fn engine(toml: &str) -> GenericEngine {
    GenericEngine::new(RuleSet::parse(toml).unwrap(), GenericLimits::default())
}

fn engine_with(toml: &str, limits: GenericLimits) -> GenericEngine {
    GenericEngine::new(RuleSet::parse(toml).unwrap(), limits)
}

fn webhook(action: &Action) -> &Webhook {
    match action {
        Action::Webhook(webhook) => webhook,
        other => panic!("not a webhook: {other:?}"),
    }
}

fn workflow(action: &Action) -> &ExecuteWorkflow {
    match action {
        Action::ExecuteWorkflow(workflow) => workflow,
        other => panic!("not an execute_workflow: {other:?}"),
    }
}

fn origin(action: &Action) -> &ActionOrigin {
    match action {
        Action::Webhook(webhook) => &webhook.origin,
        Action::ExecuteWorkflow(workflow) => &workflow.origin,
    }
}

fn body(action: &Action) -> Value {
    webhook(action).body.clone()
}

/// The `value` of each action's body.
fn fired_values(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .map(|action| body(action)["value"].clone())
        .collect()
}

fn samples(points: &[(i64, f64)]) -> Vec<Sample> {
    points
        .iter()
        .map(|&(time_ms, value)| Sample { time_ms, value })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Window stats

#[test]
fn stats_over_a_window() {
    // Deliberately unsorted values (sorted times): percentiles must sort.
    let window = samples(&[
        (0, 7.0),
        (1, 1.0),
        (2, 10.0),
        (3, 3.0),
        (4, 5.0),
        (5, 2.0),
        (6, 9.0),
        (7, 4.0),
        (8, 8.0),
        (9, 6.0),
    ]);
    let cases = [
        ("avg", 5.5),
        ("min", 1.0),
        ("max", 10.0),
        ("sum", 55.0),
        ("count", 10.0),
        ("last", 6.0),
        // Nearest rank: ceil(N/100 * 10)-th smallest.
        ("p50", 5.0),
        ("p90", 9.0),
        ("p99", 10.0),
        ("p(100)", 10.0),
        ("p(0.1)", 1.0),
        ("p(95)", 10.0),
        ("p(11)", 2.0),
    ];
    for (name, expected) in cases {
        let stat: Stat = name.parse().unwrap();
        assert_eq!(stat.compute(&window), Some(expected), "{name}");
    }
    assert_eq!(Stat::Avg.compute(&[]), None);
}

#[test]
fn rate_is_the_per_second_increase_and_treats_a_decrease_as_a_counter_reset() {
    // 10 -> 20 (+10), reset to 5 (+5 since the reset), 5 -> 15 (+10): 25 over 3 s.
    let counter = samples(&[(0, 10.0), (1000, 20.0), (2000, 5.0), (3000, 15.0)]);
    assert_eq!(Stat::Rate.compute(&counter), Some(25.0 / 3.0));
    let steady = samples(&[(0, 100.0), (500, 150.0)]);
    assert_eq!(Stat::Rate.compute(&steady), Some(100.0));
    // No elapsed time: no rate (rather than infinity).
    assert_eq!(Stat::Rate.compute(&samples(&[(0, 1.0)])), None);
    assert_eq!(Stat::Rate.compute(&samples(&[(5, 1.0), (5, 9.0)])), None);
}

#[test]
fn a_non_finite_stat_has_no_value() {
    let huge = samples(&[(0, f64::MAX), (1, f64::MAX)]);
    assert_eq!(Stat::Sum.compute(&huge), None);
    assert_eq!(Stat::Max.compute(&huge), Some(f64::MAX));
}

#[test]
fn stat_names_parse_and_bad_ones_are_refused() {
    assert_eq!("p(99.9)".parse::<Stat>(), Ok(Stat::Percentile(99.9)));
    assert_eq!("p95".parse::<Stat>(), Ok(Stat::Percentile(95.0)));
    for bad in [
        "median", "p0", "p(0)", "p101", "p(-5)", "p", "pnan", "p(50", "Avg",
    ] {
        assert!(bad.parse::<Stat>().is_err(), "{bad}");
    }
}

#[test]
fn the_window_evicts_by_event_time() {
    let mut engine = engine(&webhook_rule(
        "",
        r#"{ kind = "threshold", stat = "count", window = "10s", op = ">=", value = 3 }"#,
    ));
    assert!(engine.on_point(&cpu("a", 1.0, T0), T0).is_empty());
    assert!(
        engine
            .on_point(&cpu("a", 1.0, T0 + 20 * SECOND), T0)
            .is_empty()
    );
    // The first sample left the window: two, not three.
    assert!(
        engine
            .on_point(&cpu("a", 1.0, T0 + 21 * SECOND), T0)
            .is_empty()
    );
    let fired = engine.on_point(&cpu("a", 1.0, T0 + 30 * SECOND), T0);
    assert_eq!(fired_values(&fired), [json!(3.0)]);
}

#[test]
fn the_window_is_closed_at_its_oldest_edge() {
    let mut engine = engine(&webhook_rule(
        "",
        r#"{ kind = "threshold", stat = "count", window = "10s", op = ">=", value = 2 }"#,
    ));
    assert!(engine.on_point(&cpu("a", 1.0, T0), T0).is_empty());
    // Exactly `window` later: the first sample is still inside.
    let fired = engine.on_point(&cpu("a", 1.0, T0 + 10 * SECOND), T0);
    assert_eq!(fired_values(&fired), [json!(2.0)]);
}

#[test]
fn out_of_order_points_merge_inside_the_window_and_are_dropped_outside_it() {
    let mut engine = engine(&webhook_rule(
        "",
        r#"{ kind = "threshold", stat = "count", window = "10s", op = ">=", value = 3 }"#,
    ));
    assert!(
        engine
            .on_point(&cpu("a", 1.0, T0 + 20 * SECOND), T0)
            .is_empty()
    );
    // Older than the window: dropped (else this would be the third sample below).
    assert!(
        engine
            .on_point(&cpu("a", 1.0, T0 + 5 * SECOND), T0)
            .is_empty()
    );
    // Older but inside: merged.
    assert!(
        engine
            .on_point(&cpu("a", 1.0, T0 + 15 * SECOND), T0)
            .is_empty()
    );
    let fired = engine.on_point(&cpu("a", 1.0, T0 + 21 * SECOND), T0);
    assert_eq!(fired_values(&fired), [json!(3.0)]);
    // Evaluated at the key's event clock, the newest sample.
    assert_eq!(origin(&fired[0]).event_time_ms, T0 + 21 * SECOND);
}

#[test]
fn an_out_of_order_point_never_makes_for_elapse_early() {
    let mut engine = engine(&webhook_rule(
        "",
        r#"{ kind = "threshold", stat = "last", window = "1m", op = ">", value = 90, for = "30s" }"#,
    ));
    assert!(
        engine
            .on_point(&cpu("a", 95.0, T0 + 40 * SECOND), T0)
            .is_empty()
    );
    // 35 s older than the breach started: the clock does not go back to it.
    assert!(
        engine
            .on_point(&cpu("a", 95.0, T0 + 5 * SECOND), T0)
            .is_empty()
    );
    assert!(
        engine
            .on_point(&cpu("a", 95.0, T0 + 69 * SECOND), T0)
            .is_empty()
    );
    assert_eq!(
        engine.on_point(&cpu("a", 95.0, T0 + 70 * SECOND), T0).len(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// threshold

fn threshold_for_30s() -> GenericEngine {
    engine(&webhook_rule(
        "",
        r#"{ kind = "threshold", stat = "last", op = ">", value = 90.0, for = "30s" }"#,
    ))
}

#[test]
fn threshold_fires_once_when_held_for_exactly_for_and_rearms_after_recovering() {
    let mut engine = threshold_for_30s();
    let mut feed = |value, offset_ms| engine.on_point(&cpu("a", value, T0 + offset_ms), T0).len();
    assert_eq!(feed(95.0, 0), 0);
    assert_eq!(feed(95.0, 10 * SECOND), 0);
    assert_eq!(feed(95.0, 30 * SECOND - 1), 0, "not before `for`");
    assert_eq!(feed(95.0, 30 * SECOND), 1, "exactly at `for`");
    assert_eq!(feed(99.0, 40 * SECOND), 0, "once");
    assert_eq!(feed(99.0, 90 * SECOND), 0, "once, however long");
    assert_eq!(feed(80.0, 100 * SECOND), 0, "recovery is silent");
    assert_eq!(
        feed(95.0, 110 * SECOND),
        0,
        "re-armed: the clock starts again"
    );
    assert_eq!(feed(95.0, 139 * SECOND), 0);
    assert_eq!(feed(95.0, 140 * SECOND), 1, "fires again after re-arming");
}

#[test]
fn threshold_blip_restarts_the_for_clock() {
    let mut engine = threshold_for_30s();
    let mut feed = |value, offset_ms| engine.on_point(&cpu("a", value, T0 + offset_ms), T0).len();
    assert_eq!(feed(95.0, 0), 0);
    assert_eq!(feed(50.0, 20 * SECOND), 0);
    assert_eq!(feed(95.0, 25 * SECOND), 0);
    assert_eq!(
        feed(95.0, 30 * SECOND),
        0,
        "30 s since the first breach, 5 s since the blip"
    );
    assert_eq!(feed(95.0, 55 * SECOND), 1);
}

#[test]
fn threshold_with_recover_for_needs_a_held_recovery_to_rearm() {
    let mut engine = engine(&webhook_rule(
        "",
        r#"{ kind = "threshold", stat = "last", op = ">=", value = 90.0, recover_for = "20s" }"#,
    ));
    let mut feed = |value, offset_ms| engine.on_point(&cpu("a", value, T0 + offset_ms), T0).len();
    assert_eq!(
        feed(90.0, 0),
        1,
        "`>=` and no `for`: the first breach fires"
    );
    assert_eq!(feed(80.0, 10 * SECOND), 0);
    assert_eq!(
        feed(95.0, 20 * SECOND),
        0,
        "recovered for 10 s only: not re-armed"
    );
    assert_eq!(feed(80.0, 30 * SECOND), 0);
    assert_eq!(feed(80.0, 50 * SECOND), 0, "recovered for 20 s: re-armed");
    assert_eq!(feed(95.0, 51 * SECOND), 1);
}

#[test]
fn every_comparison_operator() {
    let cases = [
        (">", [false, false, true]),
        (">=", [false, true, true]),
        ("<", [true, false, false]),
        ("<=", [true, true, false]),
        ("==", [false, true, false]),
        ("!=", [true, false, true]),
    ];
    for (op, expected) in cases {
        let condition =
            format!(r#"{{ kind = "threshold", stat = "last", op = "{op}", value = 50 }}"#);
        let toml = webhook_rule(r#"by = ["node_id"]"#, &condition);
        let mut engine = engine(&toml);
        let fired: Vec<bool> = [49.0, 50.0, 51.0]
            .iter()
            .enumerate()
            .map(|(index, value)| {
                let node = format!("n{index}");
                !engine.on_point(&cpu(&node, *value, T0), T0).is_empty()
            })
            .collect();
        assert_eq!(fired, expected, "{op}");
    }
}

// ---------------------------------------------------------------------------------------------
// absence

fn absence_engine() -> GenericEngine {
    engine(
        r#"
        [[rule]]
        name = "silent"
        by = ["node_id"]
        condition = { kind = "absence", after = "60s" }
        [[rule.action]]
        kind = "webhook"
        url = "http://127.0.0.1:9000/deadman"
        body = { node = "{{tags.node_id}}", last = "{{value}}", state = "{{state}}", at = "{{time_ms}}" }
        "#,
    )
}

#[test]
fn absence_fires_once_after_the_silence_and_again_only_after_reviving() {
    let mut engine = absence_engine();
    assert!(engine.sweep(T0).is_empty(), "a key never seen never fires");
    assert!(engine.on_point(&cpu("a", 3.5, T0), T0).is_empty());
    assert!(
        engine.sweep(T0 + 60 * SECOND).is_empty(),
        "silent exactly `after`: alive"
    );

    let fired = engine.sweep(T0 + 60 * SECOND + 1);
    assert_eq!(fired.len(), 1, "the next sweep fires");
    assert_eq!(
        body(&fired[0]),
        json!({"node": "a", "last": 3.5, "state": "absent", "at": T0 + 60 * SECOND + 1})
    );
    let origin = origin(&fired[0]);
    assert_eq!(origin.diagnose, DIAGNOSE_ABSENCE);
    assert_eq!(origin.event_time_ms, T0 + 60 * SECOND + 1);
    assert_eq!(origin.node_id.as_deref(), Some("a"));

    assert!(engine.sweep(T0 + 61 * SECOND).is_empty(), "fires once");
    assert!(
        engine.sweep(T0 + 600 * SECOND).is_empty(),
        "fires once, however long"
    );

    // Reports again: alive, and the next silence fires again.
    let revived_at = T0 + 700 * SECOND;
    assert!(
        engine
            .on_point(&cpu("a", 4.0, revived_at), revived_at)
            .is_empty()
    );
    assert!(engine.sweep(revived_at + 60 * SECOND).is_empty());
    assert_eq!(engine.sweep(revived_at + 60 * SECOND + 1).len(), 1);
}

#[test]
fn absence_is_not_revived_by_a_stale_backlog_point() {
    let mut engine = absence_engine();
    engine.on_point(&cpu("a", 1.0, T0), T0);
    assert_eq!(engine.sweep(T0 + 61 * SECOND).len(), 1);
    let now = T0 + 200 * SECOND;
    // Event time 100 s before now: older than `after`, so not a sign of life.
    engine.on_point(&cpu("a", 1.0, now - 100 * SECOND), now);
    assert!(engine.sweep(now + SECOND).is_empty());
}

#[test]
fn absence_keys_are_independent() {
    let mut engine = absence_engine();
    engine.on_point(&cpu("a", 1.0, T0), T0);
    engine.on_point(&cpu("b", 1.0, T0 + 30 * SECOND), T0 + 30 * SECOND);
    let fired = engine.sweep(T0 + 61 * SECOND);
    assert_eq!(fired.len(), 1);
    assert_eq!(body(&fired[0])["node"], "a");
    let fired = engine.sweep(T0 + 91 * SECOND);
    assert_eq!(fired.len(), 1);
    assert_eq!(body(&fired[0])["node"], "b");
}

// ---------------------------------------------------------------------------------------------
// state_change

#[test]
fn state_change_fires_on_both_transitions() {
    let mut engine = engine(&webhook_rule(
        "",
        r#"{ kind = "state_change", stat = "last", window = "0s", op = ">", value = 90.0 }"#,
    ));
    let mut feed = |value, offset_ms| engine.on_point(&cpu("a", value, T0 + offset_ms), T0);

    let fired = feed(95.0, 0);
    assert_eq!(fired.len(), 1);
    assert_eq!(body(&fired[0])["state"], "breached");
    assert_eq!(origin(&fired[0]).diagnose, DIAGNOSE_STATE_CHANGE_BREACHED);
    assert!(feed(96.0, SECOND).is_empty());

    let fired = feed(80.0, 2 * SECOND);
    assert_eq!(fired.len(), 1);
    assert_eq!(body(&fired[0])["state"], "ok");
    assert_eq!(body(&fired[0])["value"], 80.0);
    assert_eq!(origin(&fired[0]).diagnose, DIAGNOSE_STATE_CHANGE_OK);
    assert!(feed(70.0, 3 * SECOND).is_empty());

    assert_eq!(body(&feed(91.0, 4 * SECOND)[0])["state"], "breached");
}

#[test]
fn state_change_starts_ok_so_a_first_ok_value_is_not_a_change() {
    let mut engine = engine(&webhook_rule(
        "",
        r#"{ kind = "state_change", stat = "last", op = ">", value = 90.0 }"#,
    ));
    assert!(engine.on_point(&cpu("a", 10.0, T0), T0).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Keys and filters

#[test]
fn by_keys_are_independent() {
    let mut engine = engine(&webhook_rule(
        r#"by = ["deployment_id", "node_id"]"#,
        r#"{ kind = "threshold", stat = "last", op = ">", value = 90.0 }"#,
    ));
    let fired = engine.on_point(&cpu("a", 95.0, T0), T0);
    assert_eq!(body(&fired[0])["key"], "deployment_id=nodecellar,node_id=a");
    assert!(engine.on_point(&cpu("b", 50.0, T0), T0).is_empty());
    let fired = engine.on_point(&cpu("b", 95.0, T0), T0);
    assert_eq!(body(&fired[0])["key"], "deployment_id=nodecellar,node_id=b");
    assert!(
        engine.on_point(&cpu("a", 95.0, T0), T0).is_empty(),
        "a is still breached"
    );
    assert_eq!(engine.key_count("r"), 2);
}

#[test]
fn no_by_is_one_key_for_all_points() {
    let mut engine = engine(&webhook_rule(
        "",
        r#"{ kind = "threshold", stat = "last", op = ">", value = 90.0 }"#,
    ));
    let fired = engine.on_point(&cpu("a", 95.0, T0), T0);
    assert_eq!(body(&fired[0])["key"], "");
    assert!(engine.on_point(&cpu("b", 95.0, T0), T0).is_empty());
    assert_eq!(engine.key_count("r"), 1);
}

#[test]
fn a_missing_by_tag_counts_as_empty() {
    let mut engine = engine(&webhook_rule(
        r#"by = ["node_id"]"#,
        r#"{ kind = "threshold", stat = "last", op = ">", value = 90.0 }"#,
    ));
    let fired = engine.on_point(&point("cpu", &[], 95.0, T0), T0);
    assert_eq!(body(&fired[0])["key"], "node_id=");
}

#[test]
fn filters_select_the_points_a_rule_observes() {
    // `by = ["probe"]`: every probe is its own key, so every observed point fires.
    let mut engine = engine(&webhook_rule(
        r#"
        measurement = "^cpu\\."
        service = "total\\.user$"
        tags = { deployment_id = "nodecellar", node_id = { regex = "^vm_" } }
        by = ["probe"]
        "#,
        r#"{ kind = "threshold", stat = "last", op = ">", value = -1e300 }"#,
    ));
    let good_tags = [
        ("deployment_id", "nodecellar"),
        ("node_id", "vm_1"),
        ("service", "cpu.total.user"),
    ];
    let mut probe_number = 0;
    let mut observes =
        |measurement: &str, tags: &[(&str, &str)], fields: Vec<(&str, FieldValue)>| {
            probe_number += 1;
            let probe = probe_number.to_string();
            let mut point = point(measurement, tags, 0.0, T0);
            point.fields = fields
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect();
            point.set_tag("probe", probe);
            !engine.on_point(&point, T0).is_empty()
        };
    let float = |value| vec![("value", FieldValue::Float(value))];

    assert!(observes("cpu.total.user", &good_tags, float(1.0)));
    assert!(observes(
        "cpu.total.user",
        &good_tags,
        vec![("value", FieldValue::Integer(3))]
    ));
    assert!(
        !observes("mem.used", &good_tags, float(1.0)),
        "measurement regex"
    );
    assert!(
        !observes("xcpu.total", &good_tags, float(1.0)),
        "anchored by the rule's own ^"
    );
    let wrong_service = [good_tags[0], good_tags[1], ("service", "cpu.total.idle")];
    assert!(
        !observes("cpu.total.user", &wrong_service, float(1.0)),
        "service regex"
    );
    assert!(
        !observes("cpu.total.user", &good_tags[..2], float(1.0)),
        "no service tag"
    );
    let other_deployment = [("deployment_id", "other"), good_tags[1], good_tags[2]];
    assert!(
        !observes("cpu.total.user", &other_deployment, float(1.0)),
        "tag equality"
    );
    let other_node = [good_tags[0], ("node_id", "db_1"), good_tags[2]];
    assert!(
        !observes("cpu.total.user", &other_node, float(1.0)),
        "tag regex"
    );
    let no_deployment = [good_tags[1], good_tags[2]];
    assert!(
        !observes("cpu.total.user", &no_deployment, float(1.0)),
        "missing tag"
    );
    assert!(!observes(
        "cpu.total.user",
        &good_tags,
        vec![("value", FieldValue::Boolean(true))]
    ));
    let text = FieldValue::String("90".to_owned());
    assert!(
        !observes("cpu.total.user", &good_tags, vec![("value", text)]),
        "string field"
    );
    assert!(!observes(
        "cpu.total.user",
        &good_tags,
        vec![("other", FieldValue::Float(1.0))]
    ));
    assert!(
        !observes("cpu.total.user", &good_tags, float(f64::NAN)),
        "NaN"
    );
    assert!(
        !observes("cpu.total.user", &good_tags, float(f64::INFINITY)),
        "infinity"
    );
    assert_eq!(engine.key_count("r"), 2, "ignored points make no key");
}

#[test]
fn a_nan_point_leaves_the_window_untouched() {
    let mut engine = engine(&webhook_rule(
        "",
        r#"{ kind = "threshold", stat = "avg", window = "1m", op = ">=", value = 15 }"#,
    ));
    assert!(engine.on_point(&cpu("a", 10.0, T0), T0).is_empty());
    assert!(
        engine
            .on_point(&cpu("a", f64::NAN, T0 + SECOND), T0)
            .is_empty()
    );
    let fired = engine.on_point(&cpu("a", 20.0, T0 + 2 * SECOND), T0);
    assert_eq!(fired_values(&fired), [json!(15.0)]);
}

#[test]
fn a_custom_field_is_read() {
    let mut engine = engine(&webhook_rule(
        r#"field = "used_percent""#,
        r#"{ kind = "threshold", stat = "last", op = ">", value = 90.0 }"#,
    ));
    let mut disk = cpu("a", 99.0, T0);
    assert!(
        engine.on_point(&disk, T0).is_empty(),
        "`value` is not the field"
    );
    disk.fields
        .insert("used_percent".to_owned(), FieldValue::Integer(95));
    assert_eq!(fired_values(&engine.on_point(&disk, T0)), [json!(95.0)]);
}

// ---------------------------------------------------------------------------------------------
// Templates and actions

const TEMPLATED: &str = r#"
[[rule]]
name = "cpu_high"
by = ["node_id"]
condition = { kind = "threshold", stat = "avg", window = "1m", op = ">", value = 90.0 }

[[rule.action]]
kind = "execute_workflow"
name = "heal"
deployment_id = "{{tags.deployment_id}}"
workflow = "heal"
force = true
parameters = { node_instance_id = "{{tags.node_id}}", cpu = "{{value}}", at = "{{time_ms}}", text = "cpu at {{value}}%", missing = "{{tags.nope}}", count = "{{fields.count}}", label = "{{fields.label}}", nested = [{ rule = "{{ rule }}" }], constant = 3, flag = true }

[[rule.action]]
kind = "webhook"
url = "http://127.0.0.1:9000/alert/{{rule}}"
headers = { Authorization = "Bearer {{tags.node_id}}", X-Key = "{{key}}" }
body = { rule = "{{rule}}", key = "{{key}}", value = "{{value}}", state = "{{state}}", measurement = "{{measurement}}", missing_field = "{{fields.nope}}" }
timeout = "2s"
"#;

fn templated_fire() -> Vec<Action> {
    let rules = RuleSet::parse(TEMPLATED)
        .unwrap()
        .with_group_name("cpu.toml");
    let mut engine = GenericEngine::new(rules, GenericLimits::default());
    let mut hot = cpu("vm_1", 95.5, T0);
    hot.set_tag("node_name", "vm");
    hot.fields
        .insert("count".to_owned(), FieldValue::Integer(7));
    hot.fields
        .insert("label".to_owned(), FieldValue::String("hot".to_owned()));
    engine.on_point(&hot, T0 + 5)
}

#[test]
fn execute_workflow_parameters_are_templated_and_lone_numbers_stay_numbers() {
    let actions = templated_fire();
    assert_eq!(actions.len(), 2);
    let execute = workflow(&actions[0]);
    assert_eq!(execute.deployment_id, "nodecellar");
    assert_eq!(execute.workflow_id, "heal");
    assert!(execute.force);
    assert!(!execute.allow_custom_parameters);
    assert_eq!(execute.socket_timeout, Duration::from_secs(1));
    let parameters: Value = execute.parameters.clone();
    assert_eq!(
        parameters,
        json!({
            "node_instance_id": "vm_1",
            "cpu": 95.5,
            "at": T0,
            "text": "cpu at 95.5%",
            "missing": "",
            "count": 7,
            "label": "hot",
            "nested": [{"rule": "cpu_high"}],
            "constant": 3,
            "flag": true,
        })
    );
}

#[test]
fn webhook_url_headers_and_body_are_templated() {
    let actions = templated_fire();
    let hook = webhook(&actions[1]);
    assert_eq!(hook.url, "http://127.0.0.1:9000/alert/cpu_high");
    assert_eq!(
        hook.headers,
        BTreeMap::from([
            ("Authorization".to_owned(), "Bearer vm_1".to_owned()),
            ("X-Key".to_owned(), "node_id=vm_1".to_owned()),
        ])
    );
    assert_eq!(hook.timeout, Duration::from_secs(2));
    assert_eq!(
        body(&actions[1]),
        json!({
            "rule": "cpu_high", "key": "node_id=vm_1", "value": 95.5, "state": "breached",
            "measurement": "cpu.total.user", "missing_field": "",
        })
    );
}

#[test]
fn actions_carry_their_origin() {
    let actions = templated_fire();
    let execute_origin = origin(&actions[0]);
    assert_eq!(execute_origin.group, "cpu.toml");
    assert_eq!(execute_origin.policy, "cpu_high");
    assert_eq!(execute_origin.trigger, "heal", "the action's name");
    assert_eq!(origin(&actions[1]).trigger, "1", "unnamed: its index");
    assert_eq!(execute_origin.node_id.as_deref(), Some("vm_1"));
    assert_eq!(execute_origin.node_name.as_deref(), Some("vm"));
    assert_eq!(execute_origin.diagnose, DIAGNOSE_THRESHOLD);
    assert_eq!(
        execute_origin.event_time_ms, T0,
        "event time, not the caller's clock"
    );
    let event: Value = execute_origin.event.clone();
    assert_eq!(event["stat"], "avg");
    assert_eq!(event["value"], 95.5);
    assert_eq!(event["state"], "breached");
    assert_eq!(event["point"]["measurement"], "cpu.total.user");
    assert_eq!(event["point"]["tags"]["node_id"], "vm_1");
    assert_eq!(event["point"]["fields"]["value"], 95.5);
}

#[test]
fn min_interval_holds_back_firings_of_a_key_by_the_callers_clock() {
    let mut engine = engine(&webhook_rule(
        r#"min_interval = "1m""#,
        r#"{ kind = "state_change", stat = "last", op = ">", value = 90.0 }"#,
    ));
    let mut feed = |value, now_ms| engine.on_point(&cpu("a", value, now_ms), now_ms).len();
    assert_eq!(feed(95.0, T0), 1);
    assert_eq!(
        feed(50.0, T0 + 30 * SECOND),
        0,
        "within a minute of the last firing"
    );
    assert_eq!(feed(95.0, T0 + 40 * SECOND), 0);
    assert_eq!(feed(50.0, T0 + 60 * SECOND), 1, "a minute later");
}

// ---------------------------------------------------------------------------------------------
// Config

#[test]
fn the_documented_example_parses() {
    let rules = RuleSet::parse(include_str!("../src/generic/example.toml")).unwrap();
    let names: Vec<&str> = rules
        .rules()
        .iter()
        .map(|rule| rule.name.as_str())
        .collect();
    assert_eq!(names, ["cpu_high", "node_silent", "disk_flapping"]);
    let cpu_high = rules.find("cpu_high").unwrap();
    assert_eq!(cpu_high.actions.len(), 2);
    assert_eq!(cpu_high.min_interval, Some(Duration::from_secs(300)));
    let Condition::Threshold(comparison) = &cpu_high.condition else {
        panic!("not a threshold: {:?}", cpu_high.condition);
    };
    assert_eq!(comparison.window, Duration::from_secs(60));
    assert_eq!(comparison.hold_for, Duration::from_secs(30));
    assert_eq!(comparison.recover_for, Duration::from_secs(10));
    assert_eq!(rules.group_name(), "rules");
}

#[test]
fn an_empty_file_is_an_empty_rule_set() {
    assert!(RuleSet::parse("").unwrap().rules().is_empty());
}

const ACTION: &str = r#"
[[rule.action]]
kind = "webhook"
url = "http://h/x"
"#;

fn config_error(toml: &str) -> String {
    RuleSet::parse(toml).unwrap_err().to_string()
}

fn rule(body: &str) -> String {
    format!("[[rule]]\nname = \"cpu_high\"\n{body}\n")
}

const THRESHOLD: &str =
    r#"condition = { kind = "threshold", stat = "avg", window = "1m", op = ">", value = 1 }"#;

#[test]
fn config_errors_name_the_rule_and_the_field() {
    let cases: Vec<(String, &str)> = vec![
        (
            rule(&format!("measurement = \"(\"\n{THRESHOLD}")),
            "rule `cpu_high`: field `measurement`: invalid regex",
        ),
        (
            rule(&format!("service = \"[\"\n{THRESHOLD}")),
            "rule `cpu_high`: field `service`: invalid regex",
        ),
        (
            rule(&format!(
                "tags = {{ node_id = {{ regex = \"(\" }} }}\n{THRESHOLD}"
            )),
            "rule `cpu_high`: field `tags.node_id`: invalid regex",
        ),
        (
            rule(&format!("tags = {{ node_id = 3 }}\n{THRESHOLD}")),
            "rule `cpu_high`: field `tags.node_id`: must be a string (exact match) or",
        ),
        (
            rule(&format!(
                "tags = {{ node_id = {{ regx = \"a\" }} }}\n{THRESHOLD}"
            )),
            "rule `cpu_high`: field `tags.node_id`: a table must be exactly",
        ),
        (
            rule(
                r#"condition = { kind = "threshold", stat = "avg", window = "1 minnit", op = ">", value = 1 }"#,
            ),
            "rule `cpu_high`: field `condition.window`: invalid duration \"1 minnit\"",
        ),
        (
            rule(
                r#"condition = { kind = "threshold", stat = "avg", op = ">", value = 1, for = "soon" }"#,
            ),
            "rule `cpu_high`: field `condition.for`: invalid duration",
        ),
        (
            rule(r#"condition = { kind = "absence", after = "-1s" }"#),
            "rule `cpu_high`: field `condition.after`: invalid duration",
        ),
        (
            rule(&format!("min_interval = \"x\"\n{THRESHOLD}")),
            "rule `cpu_high`: field `min_interval`: invalid duration",
        ),
        (
            rule(r#"condition = { kind = "threshold", stat = "avg", op = "=>", value = 1 }"#),
            "rule `cpu_high`: field `condition.op`: unknown operator `=>`",
        ),
        (
            rule(r#"condition = { kind = "threshold", stat = "median", op = ">", value = 1 }"#),
            "rule `cpu_high`: field `condition.stat`: unknown stat `median`",
        ),
        (
            rule(r#"condition = { kind = "threshold", stat = "p(0)", op = ">", value = 1 }"#),
            "rule `cpu_high`: field `condition.stat`: percentile p(0)",
        ),
        (
            rule(r#"condition = { kind = "threshold", stat = "rate", op = ">", value = 1 }"#),
            "rule `cpu_high`: field `condition.window`: stat `rate` needs a window",
        ),
        (
            rule(r#"condition = { kind = "threshold", stat = "avg", op = ">", value = nan }"#),
            "rule `cpu_high`: field `condition.value`: must be a finite number",
        ),
        (
            rule(&format!(
                "{THRESHOLD}\n[[rule.action]]\nkind = \"webhook\"\nurl = \"http://h/x\"\nbody = {{ key = \"{{{{nope}}}}\" }}"
            )),
            "rule `cpu_high`: field `action[0].body.key`: unknown placeholder `{{nope}}`",
        ),
        (
            rule(&format!(
                "{THRESHOLD}{ACTION}\n[[rule.action]]\nkind = \"webhook\"\nurl = \"http://h/x\"\nbody = {{ list = [1, \"{{{{tags.}}}}\"] }}"
            )),
            "rule `cpu_high`: field `action[1].body.list[1]`: unknown placeholder `{{tags.}}`",
        ),
        (
            rule(&format!(
                "{THRESHOLD}\n[[rule.action]]\nkind = \"webhook\"\nurl = \"http://h/x\"\nheaders = {{ X = \"{{{{value\" }}"
            )),
            "rule `cpu_high`: field `action[0].headers.X`: unclosed `{{`",
        ),
        (
            rule(&format!(
                "{THRESHOLD}\n[[rule.action]]\nkind = \"execute_workflow\"\ndeployment_id = \"{{{{tag.x}}}}\"\nworkflow = \"heal\""
            )),
            "rule `cpu_high`: field `action[0].deployment_id`: unknown placeholder `{{tag.x}}`",
        ),
        (
            rule(&format!(
                "{THRESHOLD}\n[[rule.action]]\nkind = \"webhook\"\nurl = \"ftp://h/x\""
            )),
            "rule `cpu_high`: field `action[0].url`: must start with http:// or https://",
        ),
        (
            rule(&format!(
                "{THRESHOLD}\n[[rule.action]]\nkind = \"webhook\"\nurl = \"http://h\"\ntimeout = \"5\""
            )),
            "rule `cpu_high`: field `action[0].timeout`: invalid duration",
        ),
        (
            rule(&format!("windw = \"1m\"\n{THRESHOLD}")),
            "rule `cpu_high`: in `[[rule]]`: unknown field `windw`",
        ),
        (
            rule(
                r#"condition = { kind = "threshold", stat = "avg", windw = "1m", op = ">", value = 1 }"#,
            ),
            "rule `cpu_high`: in `condition`: unknown field `windw`",
        ),
        (
            rule(r#"condition = { kind = "threshhold", stat = "avg", op = ">", value = 1 }"#),
            "rule `cpu_high`: in `condition`: unknown variant `threshhold`",
        ),
        (
            rule(r#"condition = { kind = "absence", after = "1m", for = "1m" }"#),
            "rule `cpu_high`: in `condition`: unknown field `for`",
        ),
        (
            rule(&format!("{THRESHOLD}{ACTION}method = \"PUT\"")),
            "rule `cpu_high`: in `action[0]`: unknown field `method`",
        ),
        (
            rule(&format!("{THRESHOLD}\n[[rule.action]]\nkind = \"email\"")),
            "rule `cpu_high`: in `action[0]`: unknown variant `email`",
        ),
        (
            rule(&format!(
                "service = \"a\"\ntags = {{ service = \"b\" }}\n{THRESHOLD}"
            )),
            "rule `cpu_high`: field `service`: also given as `tags.service`",
        ),
        (
            rule(&format!("by = [\"node_id\", \"node_id\"]\n{THRESHOLD}")),
            "rule `cpu_high`: field `by`: tag `node_id` is listed twice",
        ),
        (
            format!("{}{}", rule(THRESHOLD), rule(THRESHOLD)),
            "rule `cpu_high`: field `name`: another rule has this name",
        ),
        (
            format!("{}[[rule]]\n{THRESHOLD}\n", rule(THRESHOLD)),
            "rule `#2`: in `[[rule]]`: missing field `name`",
        ),
        (
            rule("measurement = \"cpu\""),
            "rule `cpu_high`: in `[[rule]]`: missing field `condition`",
        ),
    ];
    for (toml, expected) in cases {
        let error = config_error(&toml);
        assert!(
            error.starts_with(expected),
            "expected {expected:?}\n     got {error:?}\n    from {toml}"
        );
    }
}

#[test]
fn unknown_top_level_keys_and_bad_toml_are_refused() {
    let error = config_error("[[rules]]\nname = \"x\"\n");
    assert!(error.contains("unknown field `rules`"), "{error}");
    let error = config_error("[[rule]\n");
    assert!(error.starts_with("rules file is not valid TOML"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Bounds

#[test]
fn a_new_key_beyond_the_limit_evicts_the_least_recently_seen() {
    let limits = GenericLimits {
        max_keys_per_rule: 2,
        ..GenericLimits::default()
    };
    let toml = webhook_rule(
        r#"by = ["node_id"]"#,
        r#"{ kind = "threshold", stat = "last", op = ">", value = 90.0 }"#,
    );
    let mut engine = engine_with(&toml, limits);
    let mut fires =
        |node: &str, now_ms: i64| !engine.on_point(&cpu(node, 95.0, T0), now_ms).is_empty();
    assert!(fires("a", T0 + 1));
    assert!(fires("b", T0 + 2));
    assert!(
        !fires("a", T0 + 3),
        "a is still breached, and now the most recently seen"
    );
    assert!(fires("c", T0 + 4), "c evicts b");
    assert!(!fires("a", T0 + 5), "a kept its state");
    assert!(
        fires("b", T0 + 6),
        "b was forgotten, so it starts clean (evicting c)"
    );
    assert_eq!(engine.key_count("r"), 2);
}

#[test]
fn a_window_keeps_at_most_max_samples() {
    let limits = GenericLimits {
        max_samples_per_window: 3,
        ..GenericLimits::default()
    };
    let toml = webhook_rule(
        "",
        r#"{ kind = "threshold", stat = "sum", window = "1h", op = ">=", value = 10 }"#,
    );
    let mut engine = engine_with(&toml, limits);
    let mut feed =
        |value: f64, second: i64| engine.on_point(&cpu("a", value, T0 + second * SECOND), T0);
    assert!(feed(1.0, 0).is_empty());
    assert!(feed(2.0, 1).is_empty());
    assert!(feed(3.0, 2).is_empty());
    assert!(
        feed(4.0, 3).is_empty(),
        "2 + 3 + 4: the 1 was dropped, else 10"
    );
    assert_eq!(fired_values(&feed(5.0, 4)), [json!(12.0)]);
}

#[test]
fn sweep_forgets_idle_keys() {
    let limits = GenericLimits {
        idle_forget_after: Duration::from_secs(600),
        ..GenericLimits::default()
    };
    let toml = format!(
        "{}\n{}",
        webhook_rule(
            r#"by = ["node_id"]"#,
            r#"{ kind = "threshold", stat = "last", op = ">", value = 90.0 }"#
        ),
        r#"
        [[rule]]
        name = "silent"
        by = ["node_id"]
        condition = { kind = "absence", after = "60s" }
        "#
    );
    let mut engine = engine_with(&toml, limits);
    assert_eq!(engine.on_point(&cpu("a", 95.0, T0), T0).len(), 1);
    engine.sweep(T0 + 600 * SECOND);
    assert_eq!(engine.key_count("r"), 1, "idle exactly the limit: kept");
    assert_eq!(engine.key_count("silent"), 1);
    engine.sweep(T0 + 600 * SECOND + 1);
    assert_eq!(engine.key_count("r"), 0);
    assert_eq!(engine.key_count("silent"), 0, "fired, then forgotten");
    // Forgotten: a breach fires again.
    let later = T0 + 700 * SECOND;
    assert_eq!(engine.on_point(&cpu("a", 95.0, later), later).len(), 1);
}

#[test]
fn restoring_into_a_smaller_key_limit_keeps_the_most_recently_seen_keys() {
    let toml = webhook_rule(
        r#"by = ["node_id"]"#,
        r#"{ kind = "threshold", stat = "last", op = ">", value = 90.0 }"#,
    );
    let mut engine = engine(&toml);
    for (node, seen_at) in [("a", 4), ("b", 3), ("c", 1), ("d", 3)] {
        assert_eq!(engine.on_point(&cpu(node, 95.0, T0), T0 + seen_at).len(), 1);
    }
    let limits = GenericLimits {
        max_keys_per_rule: 2,
        ..GenericLimits::default()
    };
    let mut restored = engine_with(&toml, limits);
    restored.restore(engine.checkpoint()).unwrap();
    assert_eq!(restored.key_count("r"), 2);
    let mut fires = |node: &str| !restored.on_point(&cpu(node, 95.0, T0), T0 + 10).is_empty();
    assert!(!fires("a"), "kept: the most recently seen");
    assert!(
        !fires("d"),
        "kept: seen as recently as b, and b goes first in key order"
    );
    assert!(fires("b"), "dropped, so it starts clean");
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

#[test]
fn restore_keeps_a_for_clock_running_and_an_absence_fired() {
    let toml = format!(
        "{}\n{}",
        webhook_rule(
            "",
            r#"{ kind = "threshold", stat = "last", op = ">", value = 90.0, for = "30s" }"#
        ),
        r#"
        [[rule]]
        name = "silent"
        condition = { kind = "absence", after = "60s" }
        [[rule.action]]
        kind = "webhook"
        url = "http://h/x"
        "#
    );
    let mut engine = engine(&toml);
    engine.on_point(&cpu("a", 95.0, T0), T0);
    assert_eq!(engine.sweep(T0 + 61 * SECOND).len(), 1);

    let text = serde_json::to_string(&engine.checkpoint()).unwrap();
    let mut restored = self::engine(&toml);
    let outcome = restored
        .restore(serde_json::from_str(&text).unwrap())
        .unwrap();
    assert_eq!(outcome.restored_rules, ["r", "silent"]);
    assert!(outcome.discarded_rules.is_empty());

    assert_eq!(
        restored
            .on_point(&cpu("a", 95.0, T0 + 30 * SECOND), T0)
            .len(),
        1
    );
    assert!(restored.sweep(T0 + 62 * SECOND).is_empty(), "already fired");
}

#[test]
fn a_changed_rule_starts_clean_and_the_others_keep_their_state() {
    let before = webhook_rule(
        "",
        r#"{ kind = "threshold", stat = "last", op = ">", value = 90.0 }"#,
    );
    let mut engine = engine(&before);
    assert_eq!(engine.on_point(&cpu("a", 95.0, T0), T0).len(), 1);

    let same = engine.replace_rules(RuleSet::parse(&before).unwrap());
    assert_eq!(same.restored_rules, ["r"]);
    assert!(
        engine.on_point(&cpu("a", 95.0, T0), T0).is_empty(),
        "still breached"
    );

    let changed = webhook_rule(
        "",
        r#"{ kind = "threshold", stat = "last", op = ">", value = 80.0 }"#,
    );
    let outcome = engine.replace_rules(RuleSet::parse(&changed).unwrap());
    assert!(outcome.restored_rules.is_empty());
    assert_eq!(outcome.discarded_rules, ["r"]);
    assert_eq!(engine.on_point(&cpu("a", 95.0, T0), T0).len(), 1, "clean");
}

#[test]
fn checkpoint_keys_are_the_json_text_of_the_by_values() {
    // Existing checkpoints hold keys as serde_json wrote them; escaping must not drift.
    let toml = webhook_rule(
        r#"by = ["node_id", "host", "missing"]"#,
        r#"{ kind = "threshold", stat = "last", op = ">", value = 90.0 }"#,
    );
    let mut engine = engine(&toml);
    let odd_values = [
        ("plain", "h"),
        ("quote\"back\\slash", "tab\tnew\nline\r"),
        ("\u{1}\u{8}\u{c}\u{1f}\u{7f}", "é ☃ 🦀"),
    ];
    for (node_id, host) in odd_values {
        let point = point(
            "cpu.total.user",
            &[("node_id", node_id), ("host", host)],
            1.0,
            T0,
        );
        engine.on_point(&point, T0);
    }
    let checkpoint = serde_json::to_value(engine.checkpoint()).unwrap();
    let keys: Vec<&String> = checkpoint["rules"]["r"]["state"]["keys"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    let mut expected: Vec<String> = odd_values
        .iter()
        .map(|(node_id, host)| Value::from(vec![*node_id, *host, ""]).to_string())
        .collect();
    expected.sort();
    assert_eq!(keys, expected.iter().collect::<Vec<_>>());
}

#[test]
fn absence_fires_with_the_last_observed_point_whatever_changed_in_it() {
    // The saved point is updated in place; every kind of change must still land in it.
    let mut engine = engine(
        r#"
        [[rule]]
        name = "silent"
        by = ["node_id"]
        condition = { kind = "absence", after = "60s" }
        [[rule.action]]
        kind = "webhook"
        url = "http://h/{{tags.zone}}"
        body = { last = "{{value}}", note = "{{fields.note}}", m = "{{measurement}}" }
        "#,
    );
    let mut first = point("cpu.a", &[("node_id", "n"), ("zone", "z1")], 1.0, T0);
    first.fields.insert(
        "note".to_owned(),
        FieldValue::String("first note".to_owned()),
    );
    first
        .fields
        .insert("flag".to_owned(), FieldValue::Boolean(true));
    engine.on_point(&first, T0);
    // Same field names, a changed string field and value.
    let mut second = point(
        "cpu.b",
        &[("node_id", "n"), ("zone", "z1")],
        2.0,
        T0 + SECOND,
    );
    second
        .fields
        .insert("note".to_owned(), FieldValue::String("2nd".to_owned()));
    second
        .fields
        .insert("flag".to_owned(), FieldValue::Integer(7));
    engine.on_point(&second, T0 + SECOND);
    // Other tags and other field names.
    let mut last = point(
        "cpu.c",
        &[("node_id", "n"), ("zone", "z2"), ("extra", "x")],
        3.0,
        T0 + 2 * SECOND,
    );
    last.fields
        .insert("note".to_owned(), FieldValue::Float(0.1));
    engine.on_point(&last, T0 + 2 * SECOND);
    // Older than the last: not the last observed point.
    engine.on_point(&first, T0 + 3 * SECOND);

    let fired = engine.sweep(T0 + 63 * SECOND);
    assert_eq!(fired.len(), 1);
    assert_eq!(webhook(&fired[0]).url, "http://h/z2");
    assert_eq!(
        body(&fired[0]),
        json!({"last": 3.0, "note": 0.1, "m": "cpu.c"})
    );
    let event: Value = origin(&fired[0]).event.clone();
    assert_eq!(event["point"], serde_json::to_value(&last).unwrap());
}

#[test]
fn restore_refuses_another_format_version() {
    let mut engine = absence_engine();
    let mut value = serde_json::to_value(engine.checkpoint()).unwrap();
    value["format_version"] = json!(99);
    let state: GenericState = serde_json::from_value(value).unwrap();
    assert!(matches!(
        engine.restore(state),
        Err(GenericRestoreError::Version { found: 99, .. })
    ));
}

const ALL_KINDS: &str = r#"
[[rule]]
name = "avg_for"
by = ["node_id"]
condition = { kind = "threshold", stat = "avg", window = "10s", op = ">", value = 50, for = "5s", recover_for = "3s" }
[[rule.action]]
kind = "webhook"
url = "http://h/{{key}}"
body = { value = "{{value}}", time = "{{time_ms}}", field = "{{fields.value}}" }

[[rule]]
name = "p90_change"
measurement = "^cpu"
condition = { kind = "state_change", stat = "p90", window = "20s", op = "<=", value = 10 }
min_interval = "7s"
[[rule.action]]
kind = "execute_workflow"
deployment_id = "{{tags.deployment_id}}"
workflow = "heal"
parameters = { value = "{{value}}", state = "{{state}}" }

[[rule]]
name = "rate_change"
by = ["node_id"]
condition = { kind = "state_change", stat = "rate", window = "15s", op = ">=", value = 2 }
[[rule.action]]
kind = "webhook"
url = "http://h/rate"
body = { value = "{{value}}" }

[[rule]]
name = "silent"
by = ["node_id"]
condition = { kind = "absence", after = "12s" }
[[rule.action]]
kind = "webhook"
url = "http://h/silent"
body = { last = "{{value}}", at = "{{time_ms}}" }
"#;

#[derive(Debug, Clone)]
enum Step {
    Point {
        node: u8,
        measurement: u8,
        value: FieldValue,
        time_delta_ms: i64,
    },
    Sweep {
        advance_ms: i64,
    },
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<f64>().prop_map(FieldValue::Float),
        (-100.0f64..200.0).prop_map(FieldValue::Float),
        (0.0f64..1e6).prop_map(FieldValue::Float),
        Just(FieldValue::Float(f64::NAN)),
        Just(FieldValue::Float(f64::INFINITY)),
        Just(FieldValue::Float(f64::MAX)),
        (-50i64..500).prop_map(FieldValue::Integer),
        Just(FieldValue::Boolean(true)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..3, 0u8..2, field_value(), -20_000i64..20_000).prop_map(
            |(node, measurement, value, time_delta_ms)| Step::Point {
                node,
                measurement,
                value,
                time_delta_ms,
            }
        ),
        1 => (0i64..15_000).prop_map(|advance_ms| Step::Sweep { advance_ms }),
    ]
}

fn run(engine: &mut GenericEngine, steps: &[Step], now: &mut i64) -> Vec<Action> {
    let mut fired = Vec::new();
    for step in steps {
        match step {
            Step::Point {
                node,
                measurement,
                value,
                time_delta_ms,
            } => {
                let name = ["cpu.total.user", "mem.used"][usize::from(*measurement)];
                let mut point = point(
                    name,
                    &[("node_id", &format!("n{node}")), ("deployment_id", "d")],
                    0.0,
                    *now + time_delta_ms,
                );
                point.fields.insert("value".to_owned(), value.clone());
                fired.extend(engine.on_point(&point, *now));
                *now += 700;
            }
            Step::Sweep { advance_ms } => {
                *now += advance_ms;
                fired.extend(engine.sweep(*now));
            }
        }
    }
    fired
}

proptest! {
    /// Never panics, whatever the values and times; and a checkpoint taken at any point, sent
    /// through JSON and restored into a fresh engine, behaves exactly like the original from then
    /// on: the same actions, byte for byte, and the same state.
    #[test]
    fn never_panics_and_restore_is_transparent(
        before in proptest::collection::vec(step(), 0..80),
        after in proptest::collection::vec(step(), 0..80),
        max_keys in 1usize..4,
        max_samples in 1usize..6,
    ) {
        let limits = GenericLimits {
            max_keys_per_rule: max_keys,
            max_samples_per_window: max_samples,
            idle_forget_after: Duration::from_secs(40),
        };
        let mut engine = engine_with(ALL_KINDS, limits);
        let mut now = T0;
        run(&mut engine, &before, &mut now);

        let text = serde_json::to_string(&engine.checkpoint()).unwrap();
        let state: GenericState = serde_json::from_str(&text).unwrap();
        let mut restored = engine_with(ALL_KINDS, limits);
        let outcome = restored.restore(state).unwrap();
        prop_assert_eq!(outcome.restored_rules.len(), 4);

        let mut now_restored = now;
        let fired = run(&mut engine, &after, &mut now);
        let fired_restored = run(&mut restored, &after, &mut now_restored);
        prop_assert_eq!(fired, fired_restored);
        prop_assert_eq!(engine.checkpoint(), restored.checkpoint());
    }
}
