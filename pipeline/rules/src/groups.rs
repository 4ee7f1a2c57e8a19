//! A deployment's `groups` file (wire formats section 4), parsed and validated.
//!
//! The manager writes the blueprint's `groups` as one JSON object into `config_path/groups`.
//! Parsing is strict about what changes behaviour: an unknown policy or trigger type, a missing
//! required field, a wrong type or an invalid regex is an error naming the group, policy, trigger
//! and field. Properties this crate does not know are accepted and ignored, because the manager's
//! type definitions (and so the set of properties it fills in) vary between manager versions.

use std::collections::BTreeSet;
use std::time::Duration;

use regex::Regex;
use serde_json::{Map, Value};
/// The restraints the executor applies before a trigger runs: one type for the groups file, the
/// rule stage and the executor.
pub use sluice_core::action::Restraints;

/// `cloudify.policies.types.threshold`
pub const THRESHOLD_TYPE: &str = "cloudify.policies.types.threshold";
/// `cloudify.policies.types.ewma_stabilized`
pub const EWMA_TYPE: &str = "cloudify.policies.types.ewma_stabilized";
/// `cloudify.policies.types.host_failure`
pub const HOST_FAILURE_TYPE: &str = "cloudify.policies.types.host_failure";
/// `cloudify.policies.triggers.execute_workflow`
pub const EXECUTE_WORKFLOW_TYPE: &str = "cloudify.policies.triggers.execute_workflow";

const DEFAULT_INTERVAL_BETWEEN_WORKFLOWS: Duration = Duration::from_secs(300);
const DEFAULT_HOST_FAILURE_TTL: Duration = Duration::from_secs(60);
const DEFAULT_EWMA_R: f64 = 0.5;
const DEFAULT_TRIGGER_TIMEOUT: Duration = Duration::from_millis(1000);

/// Why a `groups` file was refused. Permanent: the file must be fixed (the deployment's policies
/// are not loaded). `location` reads like ``group `g` policy `p` trigger `t` ``.
#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    #[error("groups file is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{location}: unknown policy type `{type_name}`")]
    UnknownPolicyType { location: String, type_name: String },
    #[error("{location}: unknown trigger type `{type_name}`")]
    UnknownTriggerType { location: String, type_name: String },
    #[error("{location}: field `{field}`: {reason}")]
    InvalidField {
        location: String,
        field: String,
        reason: String,
    },
}

/// All groups of one deployment, in name order.
#[derive(Debug, Clone)]
pub struct Groups {
    groups: Vec<Group>,
    /// The text parsed, kept so a checkpoint can rebuild the policies on restore.
    source_json: String,
}

/// One blueprint group: its member node names and its policies (in name order).
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub members: BTreeSet<String>,
    pub policies: Vec<Policy>,
}

/// One policy of a group.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub kind: PolicyKind,
    /// `policy_operates_on_group`: one state for the whole group instead of one per `node_id`.
    pub operates_on_group: bool,
    /// Applied by the action executor, not by the engine: carried so the caller can hand them on.
    pub restraints: Restraints,
    /// In name order.
    pub triggers: Vec<Trigger>,
}

/// What a policy watches.
#[derive(Debug, Clone)]
pub enum PolicyKind {
    Threshold(ThresholdSpec),
    EwmaStabilized {
        threshold: ThresholdSpec,
        /// `ewma_timeless_r`, in (0, 1].
        r: f64,
    },
    HostFailure {
        /// `service`: a series is watched when any of these matches (unanchored).
        services: Vec<Regex>,
        /// `ttl` property (not in the manager's type, accepted for tests and tuning); 60 s by
        /// default. An event's own `ttl` wins.
        default_ttl: Duration,
    },
}

impl PolicyKind {
    /// The policy type name, as written in the groups file.
    pub fn type_name(&self) -> &'static str {
        match self {
            PolicyKind::Threshold(_) => THRESHOLD_TYPE,
            PolicyKind::EwmaStabilized { .. } => EWMA_TYPE,
            PolicyKind::HostFailure { .. } => HOST_FAILURE_TYPE,
        }
    }
}

/// The common part of threshold and ewma_stabilized.
#[derive(Debug, Clone)]
pub struct ThresholdSpec {
    /// `service`, matched unanchored against the event's service.
    pub service: Regex,
    pub threshold: f64,
    /// true: `value >= threshold` breaches; false: `value <= threshold`.
    pub upper_bound: bool,
    pub stability_time: Duration,
}

impl ThresholdSpec {
    pub(crate) fn breaches(&self, value: f64) -> bool {
        if self.upper_bound {
            value >= self.threshold
        } else {
            value <= self.threshold
        }
    }
}

/// One `cloudify.policies.triggers.execute_workflow` trigger.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub name: String,
    pub workflow: String,
    /// A JSON object; `{get_property: [SELF, field]}` values are filled when the trigger fires.
    pub workflow_parameters: Map<String, Value>,
    pub force: bool,
    pub allow_custom_parameters: bool,
    pub socket_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Groups {
    /// Parses and validates a `groups` file.
    pub fn parse(json: &str) -> Result<Groups, GroupsError> {
        let root: Value = serde_json::from_str(json)?;
        let root = as_object(&root, "groups file", "(root)")?;
        let mut groups = Vec::with_capacity(root.len());
        for (group_name, group_value) in root {
            groups.push(parse_group(group_name, group_value)?);
        }
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Groups {
            groups,
            source_json: json.to_owned(),
        })
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    pub fn find_policy(&self, group: &str, policy: &str) -> Option<&Policy> {
        self.groups
            .iter()
            .find(|candidate| candidate.name == group)?
            .policies
            .iter()
            .find(|candidate| candidate.name == policy)
    }

    pub(crate) fn source_json(&self) -> &str {
        &self.source_json
    }
}

fn invalid(location: &str, field: &str, reason: impl Into<String>) -> GroupsError {
    GroupsError::InvalidField {
        location: location.to_owned(),
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn as_object<'a>(
    value: &'a Value,
    location: &str,
    field: &str,
) -> Result<&'a Map<String, Value>, GroupsError> {
    value
        .as_object()
        .ok_or_else(|| invalid(location, field, "must be an object"))
}

/// An optional object field; absent or null gives an empty map.
fn optional_object(
    object: &Map<String, Value>,
    location: &str,
    field: &str,
) -> Result<Map<String, Value>, GroupsError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(value) => Ok(as_object(value, location, field)?.clone()),
    }
}

fn optional_bool(
    object: &Map<String, Value>,
    location: &str,
    field: &str,
    default: bool,
) -> Result<bool, GroupsError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(value)) => Ok(*value),
        Some(_) => Err(invalid(location, field, "must be a boolean")),
    }
}

fn optional_number(
    object: &Map<String, Value>,
    location: &str,
    field: &str,
) -> Result<Option<f64>, GroupsError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|number| number.is_finite())
            .map(Some)
            .ok_or_else(|| invalid(location, field, "must be a number")),
    }
}

/// A non-negative duration given as a number of `unit_seconds` (1.0 for seconds, 0.001 for ms).
fn optional_duration(
    object: &Map<String, Value>,
    location: &str,
    field: &str,
    unit_seconds: f64,
    default: Duration,
) -> Result<Duration, GroupsError> {
    let Some(number) = optional_number(object, location, field)? else {
        return Ok(default);
    };
    if number < 0.0 {
        return Err(invalid(location, field, "must not be negative"));
    }
    Duration::try_from_secs_f64(number * unit_seconds)
        .map_err(|error| invalid(location, field, error.to_string()))
}

fn compile_regex(pattern: &str, location: &str, field: &str) -> Result<Regex, GroupsError> {
    Regex::new(pattern).map_err(|error| invalid(location, field, format!("invalid regex: {error}")))
}

fn parse_group(name: &str, value: &Value) -> Result<Group, GroupsError> {
    let location = format!("group `{name}`");
    let object = as_object(value, &location, "(group)")?;
    let members = match object.get("members") {
        None | Some(Value::Null) => BTreeSet::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(&location, "members", "must be a list of node names"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(invalid(
                &location,
                "members",
                "must be a list of node names",
            ));
        }
    };
    let mut policies = Vec::new();
    for (policy_name, policy_value) in optional_object(object, &location, "policies")? {
        policies.push(parse_policy(name, &policy_name, &policy_value)?);
    }
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Group {
        name: name.to_owned(),
        members,
        policies,
    })
}

fn parse_policy(group: &str, name: &str, value: &Value) -> Result<Policy, GroupsError> {
    let location = format!("group `{group}` policy `{name}`");
    let object = as_object(value, &location, "(policy)")?;
    let type_name = object
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&location, "type", "required, must be a string"))?;
    let properties = optional_object(object, &location, "properties")?;
    let kind = match type_name {
        THRESHOLD_TYPE => PolicyKind::Threshold(parse_threshold_spec(&properties, &location)?),
        EWMA_TYPE => {
            let threshold = parse_threshold_spec(&properties, &location)?;
            let r = optional_number(&properties, &location, "ewma_timeless_r")?
                .unwrap_or(DEFAULT_EWMA_R);
            if !(r > 0.0 && r <= 1.0) {
                return Err(invalid(&location, "ewma_timeless_r", "must be in (0, 1]"));
            }
            PolicyKind::EwmaStabilized { threshold, r }
        }
        HOST_FAILURE_TYPE => {
            let services = match properties.get("service") {
                Some(Value::String(pattern)) => {
                    vec![compile_regex(pattern, &location, "service")?]
                }
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| match item.as_str() {
                        Some(pattern) => compile_regex(pattern, &location, "service"),
                        None => Err(invalid(&location, "service", "must be a list of regexes")),
                    })
                    .collect::<Result<_, _>>()?,
                _ => {
                    return Err(invalid(
                        &location,
                        "service",
                        "required, a regex or a list of regexes",
                    ));
                }
            };
            let default_ttl =
                optional_duration(&properties, &location, "ttl", 1.0, DEFAULT_HOST_FAILURE_TTL)?;
            if default_ttl.is_zero() {
                return Err(invalid(&location, "ttl", "must be positive"));
            }
            PolicyKind::HostFailure {
                services,
                default_ttl,
            }
        }
        other => {
            return Err(GroupsError::UnknownPolicyType {
                location,
                type_name: other.to_owned(),
            });
        }
    };
    let operates_on_group =
        optional_bool(&properties, &location, "policy_operates_on_group", false)?;
    let is_node_started_before_workflow = optional_bool(
        &properties,
        &location,
        "is_node_started_before_workflow",
        true,
    )?;
    let interval_seconds = optional_number(&properties, &location, "interval_between_workflows")?
        .unwrap_or(DEFAULT_INTERVAL_BETWEEN_WORKFLOWS.as_secs_f64());
    let interval_between_workflows = if interval_seconds <= 0.0 {
        None
    } else {
        Some(
            Duration::try_from_secs_f64(interval_seconds).map_err(|error| {
                invalid(&location, "interval_between_workflows", error.to_string())
            })?,
        )
    };
    let mut triggers = Vec::new();
    for (trigger_name, trigger_value) in optional_object(object, &location, "triggers")? {
        triggers.push(parse_trigger(&location, &trigger_name, &trigger_value)?);
    }
    triggers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Policy {
        name: name.to_owned(),
        kind,
        operates_on_group,
        restraints: Restraints {
            is_node_started_before_workflow,
            interval_between_workflows,
        },
        triggers,
    })
}

fn parse_threshold_spec(
    properties: &Map<String, Value>,
    location: &str,
) -> Result<ThresholdSpec, GroupsError> {
    let service = match properties.get("service") {
        Some(Value::String(pattern)) => compile_regex(pattern, location, "service")?,
        _ => return Err(invalid(location, "service", "required, must be a regex")),
    };
    let threshold = optional_number(properties, location, "threshold")?
        .ok_or_else(|| invalid(location, "threshold", "required"))?;
    Ok(ThresholdSpec {
        service,
        threshold,
        upper_bound: optional_bool(properties, location, "upper_bound", true)?,
        stability_time: optional_duration(
            properties,
            location,
            "stability_time",
            1.0,
            Duration::ZERO,
        )?,
    })
}

fn parse_trigger(policy_location: &str, name: &str, value: &Value) -> Result<Trigger, GroupsError> {
    let location = format!("{policy_location} trigger `{name}`");
    let object = as_object(value, &location, "(trigger)")?;
    let type_name = object
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&location, "type", "required, must be a string"))?;
    if type_name != EXECUTE_WORKFLOW_TYPE {
        return Err(GroupsError::UnknownTriggerType {
            location,
            type_name: type_name.to_owned(),
        });
    }
    let parameters = optional_object(object, &location, "parameters")?;
    let workflow = match parameters.get("workflow") {
        Some(Value::String(workflow)) if !workflow.is_empty() => workflow.clone(),
        _ => {
            return Err(invalid(
                &location,
                "parameters.workflow",
                "required, a non-empty string",
            ));
        }
    };
    let workflow_parameters = optional_object(&parameters, &location, "workflow_parameters")
        .map_err(|_| {
            invalid(
                &location,
                "parameters.workflow_parameters",
                "must be an object",
            )
        })?;
    Ok(Trigger {
        name: name.to_owned(),
        workflow,
        workflow_parameters,
        force: optional_bool(&parameters, &location, "force", false)?,
        allow_custom_parameters: optional_bool(
            &parameters,
            &location,
            "allow_custom_parameters",
            false,
        )?,
        socket_timeout: optional_duration(
            &parameters,
            &location,
            "socket_timeout",
            0.001,
            DEFAULT_TRIGGER_TIMEOUT,
        )?,
        connect_timeout: optional_duration(
            &parameters,
            &location,
            "conn_timeout",
            0.001,
            DEFAULT_TRIGGER_TIMEOUT,
        )?,
    })
}
