//! Parsing and validation of the manager's `groups` file.

#![expect(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::time::Duration;

use sluice_rules::{Groups, GroupsError, PolicyKind};

/// The example of wire formats section 4, verbatim.
const EXAMPLE: &str = r#"{"web_tier": {"members": ["nodejs_host"],
  "policies": {"cpu_high": {"type": "cloudify.policies.types.threshold",
     "properties": {"service": "cpu.total.user", "threshold": 90, "upper_bound": true,
                    "stability_time": 30, "policy_operates_on_group": false,
                    "is_node_started_before_workflow": true, "interval_between_workflows": 300},
     "triggers": {"scale": {"type": "cloudify.policies.triggers.execute_workflow",
        "parameters": {"workflow": "scale", "workflow_parameters": {"node_id": {"get_property": ["SELF", "node_id"]}},
                       "force": false, "allow_custom_parameters": false}}}}}}}"#;

#[test]
fn parses_the_manager_example() {
    let groups = Groups::parse(EXAMPLE).unwrap();
    let [group] = groups.groups() else {
        panic!("one group expected")
    };
    assert_eq!(group.name, "web_tier");
    assert!(group.members.contains("nodejs_host"));
    let policy = groups.find_policy("web_tier", "cpu_high").unwrap();
    let PolicyKind::Threshold(spec) = &policy.kind else {
        panic!("threshold expected")
    };
    assert_eq!(spec.threshold, 90.0);
    assert!(spec.upper_bound);
    assert_eq!(spec.stability_time, Duration::from_secs(30));
    assert!(
        spec.service
            .is_match("nodecellar.nodejs_host.nodejs_host_x7k2p.cpu.total.user")
    );
    assert!(!policy.operates_on_group);
    assert!(policy.restraints.is_node_started_before_workflow);
    assert_eq!(
        policy.restraints.interval_between_workflows,
        Some(Duration::from_secs(300))
    );
    let [trigger] = policy.triggers.as_slice() else {
        panic!("one trigger expected")
    };
    assert_eq!(trigger.name, "scale");
    assert_eq!(trigger.workflow, "scale");
    assert!(!trigger.force);
    assert!(!trigger.allow_custom_parameters);
    assert_eq!(trigger.socket_timeout, Duration::from_millis(1000));
    assert_eq!(trigger.connect_timeout, Duration::from_millis(1000));
}

#[test]
fn defaults_apply_when_properties_are_absent() {
    let groups = Groups::parse(
        r#"{"g": {"members": ["n"], "policies": {
            "e": {"type": "cloudify.policies.types.ewma_stabilized",
                  "properties": {"service": "cpu", "threshold": 1, "interval_between_workflows": 0}},
            "h": {"type": "cloudify.policies.types.host_failure", "properties": {"service": ["a", "b"]}}}}}"#,
    )
    .unwrap();
    let ewma = groups.find_policy("g", "e").unwrap();
    let PolicyKind::EwmaStabilized { threshold, r } = &ewma.kind else {
        panic!("ewma expected")
    };
    assert_eq!(*r, 0.5);
    assert!(threshold.upper_bound);
    assert_eq!(threshold.stability_time, Duration::ZERO);
    assert_eq!(
        ewma.restraints.interval_between_workflows, None,
        "<= 0 disables"
    );
    assert!(ewma.restraints.is_node_started_before_workflow);
    assert!(ewma.triggers.is_empty());
    let host = groups.find_policy("g", "h").unwrap();
    let PolicyKind::HostFailure {
        services,
        default_ttl,
    } = &host.kind
    else {
        panic!("host_failure expected")
    };
    assert_eq!(services.len(), 2);
    assert_eq!(*default_ttl, Duration::from_secs(60));
}

fn error_of(json: &str) -> String {
    Groups::parse(json).unwrap_err().to_string()
}

#[test]
fn unknown_policy_type_is_named() {
    let error = Groups::parse(
        r#"{"g": {"members": [], "policies": {"p": {"type": "cloudify.policies.types.nope", "properties": {}}}}}"#,
    )
    .unwrap_err();
    assert!(
        matches!(&error, GroupsError::UnknownPolicyType { type_name, .. } if type_name == "cloudify.policies.types.nope")
    );
    assert_eq!(
        error.to_string(),
        "group `g` policy `p`: unknown policy type `cloudify.policies.types.nope`"
    );
}

#[test]
fn unknown_trigger_type_is_named() {
    let message = error_of(
        r#"{"g": {"members": [], "policies": {"p": {"type": "cloudify.policies.types.threshold",
            "properties": {"service": "x", "threshold": 1},
            "triggers": {"t": {"type": "cloudify.policies.triggers.webhook", "parameters": {}}}}}}}"#,
    );
    assert_eq!(
        message,
        "group `g` policy `p` trigger `t`: unknown trigger type `cloudify.policies.triggers.webhook`"
    );
}

#[test]
fn missing_and_invalid_fields_are_named() {
    let threshold_missing = error_of(
        r#"{"g": {"policies": {"p": {"type": "cloudify.policies.types.threshold", "properties": {"service": "x"}}}}}"#,
    );
    assert_eq!(
        threshold_missing,
        "group `g` policy `p`: field `threshold`: required"
    );

    let workflow_missing = error_of(
        r#"{"g": {"policies": {"p": {"type": "cloudify.policies.types.threshold", "properties": {"service": "x", "threshold": 1},
            "triggers": {"t": {"type": "cloudify.policies.triggers.execute_workflow", "parameters": {}}}}}}}"#,
    );
    assert!(
        workflow_missing
            .starts_with("group `g` policy `p` trigger `t`: field `parameters.workflow`"),
        "{workflow_missing}"
    );

    let bad_regex = error_of(
        r#"{"g": {"policies": {"p": {"type": "cloudify.policies.types.threshold", "properties": {"service": "(", "threshold": 1}}}}}"#,
    );
    assert!(
        bad_regex.starts_with("group `g` policy `p`: field `service`: invalid regex"),
        "{bad_regex}"
    );

    let bad_bool = error_of(
        r#"{"g": {"policies": {"p": {"type": "cloudify.policies.types.threshold", "properties": {"service": "x", "threshold": 1, "upper_bound": "yes"}}}}}"#,
    );
    assert_eq!(
        bad_bool,
        "group `g` policy `p`: field `upper_bound`: must be a boolean"
    );

    let negative = error_of(
        r#"{"g": {"policies": {"p": {"type": "cloudify.policies.types.threshold", "properties": {"service": "x", "threshold": 1, "stability_time": -1}}}}}"#,
    );
    assert_eq!(
        negative,
        "group `g` policy `p`: field `stability_time`: must not be negative"
    );

    let bad_r = error_of(
        r#"{"g": {"policies": {"p": {"type": "cloudify.policies.types.ewma_stabilized", "properties": {"service": "x", "threshold": 1, "ewma_timeless_r": 0}}}}}"#,
    );
    assert_eq!(
        bad_r,
        "group `g` policy `p`: field `ewma_timeless_r`: must be in (0, 1]"
    );

    let bad_members = error_of(r#"{"g": {"members": "n"}}"#);
    assert_eq!(
        bad_members,
        "group `g`: field `members`: must be a list of node names"
    );

    assert!(error_of("[1]").contains("must be an object"));
    assert!(matches!(
        Groups::parse("{").unwrap_err(),
        GroupsError::Json(_)
    ));
}

#[test]
fn trigger_timeouts_are_milliseconds() {
    let groups = Groups::parse(
        r#"{"g": {"policies": {"p": {"type": "cloudify.policies.types.threshold", "properties": {"service": "x", "threshold": 1},
            "triggers": {"t": {"type": "cloudify.policies.triggers.execute_workflow",
              "parameters": {"workflow": "heal", "socket_timeout": 2500, "conn_timeout": 300, "force": true}}}}}}}"#,
    )
    .unwrap();
    let trigger = &groups.find_policy("g", "p").unwrap().triggers[0];
    assert_eq!(trigger.socket_timeout, Duration::from_millis(2500));
    assert_eq!(trigger.connect_timeout, Duration::from_millis(300));
    assert!(trigger.force);
    assert!(trigger.workflow_parameters.is_empty());
}
