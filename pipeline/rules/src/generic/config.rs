//! The rules file: raw serde shapes (every table `deny_unknown_fields`), then validation into
//! typed values whose errors name the rule and the field.
//!
//! Parsing goes one section at a time (the file, each `[[rule]]`, its `condition`, each
//! `[[rule.action]]`) so that even a shape error (an unknown key, a wrong type) says which rule
//! and section it is in; TOML's own line and column only come with a syntax error. Durations and
//! regexes are kept as text in the raw shapes and parsed by `validate`, for the same reason.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use humantime_serde::re::humantime;
use regex::Regex;
use serde::Deserialize;

use super::action_template::{Template, TemplateJson};
use super::window::Stat;

/// `origin.group` of actions unless [`RuleSet::with_group_name`] says otherwise.
pub const DEFAULT_GROUP_NAME: &str = "rules";
const DEFAULT_FIELD: &str = "value";
const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// The manager trigger's `socket_timeout` / `conn_timeout` defaults.
const DEFAULT_MANAGER_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a rules file was refused. Permanent: the file must be fixed; nothing of it is loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuleConfigError {
    #[error("rules file is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// A table does not have the expected shape (unknown key, wrong type, missing key).
    /// `rule` is the rule's name, or `#N` (1-based) when it has none.
    #[error("rule `{rule}`: in `{section}`: {reason}")]
    Shape {
        rule: String,
        section: String,
        reason: String,
    },
    #[error("rule `{rule}`: field `{field}`: {reason}")]
    InvalidField {
        rule: String,
        field: String,
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    measurement: Option<String>,
    service: Option<String>,
    /// Each value a string (exact) or `{ regex = "..." }`; read by `parse_tag_matcher`, so a
    /// wrong shape is reported with the tag's name.
    #[serde(default)]
    tags: BTreeMap<String, toml::Value>,
    field: Option<String>,
    #[serde(default)]
    by: Vec<String>,
    min_interval: Option<String>,
    condition: toml::Value,
    #[serde(default)]
    action: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum RawCondition {
    Threshold(RawComparison),
    StateChange(RawComparison),
    Absence(RawAbsence),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComparison {
    stat: String,
    window: Option<String>,
    op: String,
    value: f64,
    #[serde(rename = "for")]
    hold_for: Option<String>,
    recover_for: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAbsence {
    after: String,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum RawAction {
    ExecuteWorkflow(RawExecuteWorkflow),
    Webhook(RawWebhook),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecuteWorkflow {
    name: Option<String>,
    deployment_id: String,
    workflow: String,
    #[serde(default)]
    parameters: toml::Table,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    allow_custom_parameters: bool,
    socket_timeout: Option<String>,
    connect_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: Option<String>,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<toml::Value>,
    timeout: Option<String>,
}

/// All rules of one file, in file order (the order they are evaluated and fire in).
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    group_name: String,
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// Unanchored; None matches every measurement.
    pub measurement: Option<Regex>,
    /// Every entry must match the point's tag of that name (`service` lands here too).
    pub tags: BTreeMap<String, TagMatcher>,
    /// The numeric field observed.
    pub field: String,
    /// The tags whose values make the key, in this order.
    pub by: Vec<String>,
    pub condition: Condition,
    /// At most one firing per key per this much of the caller's clock.
    pub min_interval: Option<Duration>,
    pub actions: Vec<RuleAction>,
}

/// A tag filter.
#[derive(Debug, Clone)]
pub enum TagMatcher {
    Exact(String),
    /// Unanchored.
    Regex(Regex),
}

impl TagMatcher {
    pub fn matches(&self, tag_value: &str) -> bool {
        match self {
            TagMatcher::Exact(expected) => expected == tag_value,
            TagMatcher::Regex(regex) => regex.is_match(tag_value),
        }
    }
}

/// What a rule watches for.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Fires on ok -> breached.
    Threshold(Comparison),
    /// Fires on ok -> breached and breached -> ok.
    StateChange(Comparison),
    /// Fires once when a key seen before has been silent longer than `after`.
    Absence { after: Duration },
}

impl Condition {
    /// `threshold`, `state_change` or `absence`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Condition::Threshold(_) => "threshold",
            Condition::StateChange(_) => "state_change",
            Condition::Absence { .. } => "absence",
        }
    }
}

/// `stat` over `window` compared with `value` by `op`, held for `hold_for` to breach and false
/// for `recover_for` to recover.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub stat: Stat,
    pub window: Duration,
    pub op: CompareOp,
    pub value: f64,
    /// `for` in the file.
    pub hold_for: Duration,
    pub recover_for: Duration,
}

impl Comparison {
    pub fn is_breached_by(&self, stat_value: f64) -> bool {
        self.op.holds(stat_value, self.value)
    }
}

/// `>`, `>=`, `<`, `<=`, `==`, `!=` (floats compared exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
    Equal,
    NotEqual,
}

impl CompareOp {
    fn parse(text: &str) -> Result<CompareOp, String> {
        let op = match text {
            ">" => CompareOp::Greater,
            ">=" => CompareOp::GreaterOrEqual,
            "<" => CompareOp::Less,
            "<=" => CompareOp::LessOrEqual,
            "==" => CompareOp::Equal,
            "!=" => CompareOp::NotEqual,
            _ => {
                return Err(format!(
                    "unknown operator `{text}`; expected one of >, >=, <, <=, ==, !="
                ));
            }
        };
        Ok(op)
    }

    pub fn symbol(&self) -> &'static str {
        match self {
            CompareOp::Greater => ">",
            CompareOp::GreaterOrEqual => ">=",
            CompareOp::Less => "<",
            CompareOp::LessOrEqual => "<=",
            CompareOp::Equal => "==",
            CompareOp::NotEqual => "!=",
        }
    }

    pub fn holds(&self, left: f64, right: f64) -> bool {
        match self {
            CompareOp::Greater => left > right,
            CompareOp::GreaterOrEqual => left >= right,
            CompareOp::Less => left < right,
            CompareOp::LessOrEqual => left <= right,
            CompareOp::Equal => left == right,
            CompareOp::NotEqual => left != right,
        }
    }
}

/// One `[[rule.action]]`, with its templates compiled.
#[derive(Debug, Clone)]
pub struct RuleAction {
    /// `origin.trigger`: the action's `name`, or its index in the rule.
    pub trigger: String,
    pub(crate) template: ActionTemplate,
}

#[derive(Debug, Clone)]
pub(crate) enum ActionTemplate {
    ExecuteWorkflow {
        deployment_id: Template,
        workflow: Template,
        parameters: TemplateJson,
        force: bool,
        allow_custom_parameters: bool,
        socket_timeout: Duration,
        connect_timeout: Duration,
    },
    Webhook {
        url: Template,
        headers: BTreeMap<String, Template>,
        body: TemplateJson,
        timeout: Duration,
    },
}

impl RuleSet {
    /// Parses and validates a rules file. An empty file is an empty rule set.
    pub fn parse(toml_text: &str) -> Result<RuleSet, RuleConfigError> {
        let file: RawFile = toml::from_str(toml_text)?;
        let mut rules = Vec::with_capacity(file.rule.len());
        let mut names = BTreeSet::new();
        for (index, table) in file.rule.into_iter().enumerate() {
            let rule = parse_rule(index, table)?;
            if !names.insert(rule.name.clone()) {
                return Err(invalid(&rule.name, "name", "another rule has this name"));
            }
            rules.push(rule);
        }
        Ok(RuleSet {
            rules,
            group_name: DEFAULT_GROUP_NAME.to_owned(),
        })
    }

    /// Sets `origin.group` of the actions (e.g. the rules file's name).
    pub fn with_group_name(mut self, group_name: impl Into<String>) -> RuleSet {
        self.group_name = group_name.into();
        self
    }

    pub fn group_name(&self) -> &str {
        &self.group_name
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn find(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.name == name)
    }
}

impl Rule {
    /// What the saved state of this rule depends on: a checkpoint's state is only restored into a
    /// rule with the same fingerprint (same condition, field and key), so editing a threshold
    /// starts the rule clean instead of judging old state by the new condition.
    pub(crate) fn state_fingerprint(&self) -> String {
        let condition = match &self.condition {
            Condition::Threshold(comparison) | Condition::StateChange(comparison) => format!(
                "{} {} over {:?} {} {} for {:?} recover {:?}",
                self.condition.kind_name(),
                comparison.stat,
                comparison.window,
                comparison.op.symbol(),
                comparison.value,
                comparison.hold_for,
                comparison.recover_for,
            ),
            Condition::Absence { after } => format!("absence after {after:?}"),
        };
        format!("{condition}; field {:?}; by {:?}", self.field, self.by)
    }
}

fn invalid(rule: &str, field: &str, reason: impl Into<String>) -> RuleConfigError {
    RuleConfigError::InvalidField {
        rule: rule.to_owned(),
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn shape(rule: &str, section: &str, error: &toml::de::Error) -> RuleConfigError {
    RuleConfigError::Shape {
        rule: rule.to_owned(),
        section: section.to_owned(),
        reason: error.message().trim_end().to_owned(),
    }
}

fn parse_duration(rule: &str, field: &str, text: &str) -> Result<Duration, RuleConfigError> {
    humantime::parse_duration(text)
        .map_err(|error| invalid(rule, field, format!("invalid duration {text:?}: {error}")))
}

fn optional_duration(
    rule: &str,
    field: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, RuleConfigError> {
    text.map_or(Ok(default), |text| parse_duration(rule, field, text))
}

fn parse_regex(rule: &str, field: &str, pattern: &str) -> Result<Regex, RuleConfigError> {
    Regex::new(pattern).map_err(|error| invalid(rule, field, format!("invalid regex: {error}")))
}

fn parse_tag_matcher(
    rule: &str,
    field: &str,
    value: toml::Value,
) -> Result<TagMatcher, RuleConfigError> {
    match value {
        toml::Value::String(expected) => Ok(TagMatcher::Exact(expected)),
        toml::Value::Table(table) => match table.get("regex") {
            Some(toml::Value::String(pattern)) if table.len() == 1 => {
                Ok(TagMatcher::Regex(parse_regex(rule, field, pattern)?))
            }
            _ => Err(invalid(
                rule,
                field,
                "a table must be exactly `{ regex = \"...\" }`",
            )),
        },
        _ => Err(invalid(
            rule,
            field,
            "must be a string (exact match) or `{ regex = \"...\" }`",
        )),
    }
}

fn parse_rule(index: usize, table: toml::Table) -> Result<Rule, RuleConfigError> {
    let label = match table.get("name") {
        Some(toml::Value::String(name)) if !name.is_empty() => name.clone(),
        _ => format!("#{}", index + 1),
    };
    let raw: RawRule = toml::Value::Table(table)
        .try_into()
        .map_err(|error| shape(&label, "[[rule]]", &error))?;
    let rule = label.as_str();
    if raw.name.is_empty() {
        return Err(invalid(rule, "name", "must not be empty"));
    }

    let measurement = raw
        .measurement
        .as_deref()
        .map(|pattern| parse_regex(rule, "measurement", pattern))
        .transpose()?;
    let mut tags = BTreeMap::new();
    for (tag, matcher) in raw.tags {
        let matcher = parse_tag_matcher(rule, &format!("tags.{tag}"), matcher)?;
        tags.insert(tag, matcher);
    }
    if let Some(pattern) = raw.service.as_deref() {
        if tags.contains_key("service") {
            return Err(invalid(rule, "service", "also given as `tags.service`"));
        }
        tags.insert(
            "service".to_owned(),
            TagMatcher::Regex(parse_regex(rule, "service", pattern)?),
        );
    }

    let field = raw.field.unwrap_or_else(|| DEFAULT_FIELD.to_owned());
    if field.is_empty() {
        return Err(invalid(rule, "field", "must not be empty"));
    }
    let mut seen_by = BTreeSet::new();
    for tag in &raw.by {
        if tag.is_empty() {
            return Err(invalid(rule, "by", "a tag name is empty"));
        }
        if !seen_by.insert(tag) {
            return Err(invalid(rule, "by", format!("tag `{tag}` is listed twice")));
        }
    }
    let min_interval = raw
        .min_interval
        .as_deref()
        .map(|text| parse_duration(rule, "min_interval", text))
        .transpose()?;
    let condition = parse_condition(rule, raw.condition)?;
    let actions = raw
        .action
        .into_iter()
        .enumerate()
        .map(|(action_index, action)| parse_action(rule, action_index, action))
        .collect::<Result<_, _>>()?;

    Ok(Rule {
        name: raw.name,
        measurement,
        tags,
        field,
        by: raw.by,
        condition,
        min_interval,
        actions,
    })
}

fn parse_condition(rule: &str, value: toml::Value) -> Result<Condition, RuleConfigError> {
    let raw: RawCondition = value
        .try_into()
        .map_err(|error| shape(rule, "condition", &error))?;
    let condition = match raw {
        RawCondition::Threshold(comparison) => {
            Condition::Threshold(parse_comparison(rule, comparison)?)
        }
        RawCondition::StateChange(comparison) => {
            Condition::StateChange(parse_comparison(rule, comparison)?)
        }
        RawCondition::Absence(RawAbsence { after }) => {
            let after = parse_duration(rule, "condition.after", &after)?;
            Condition::Absence { after }
        }
    };
    Ok(condition)
}

fn parse_comparison(rule: &str, raw: RawComparison) -> Result<Comparison, RuleConfigError> {
    let stat: Stat = raw
        .stat
        .parse()
        .map_err(|reason: String| invalid(rule, "condition.stat", reason))?;
    let op = CompareOp::parse(&raw.op).map_err(|reason| invalid(rule, "condition.op", reason))?;
    if !raw.value.is_finite() {
        return Err(invalid(rule, "condition.value", "must be a finite number"));
    }
    let window = optional_duration(
        rule,
        "condition.window",
        raw.window.as_deref(),
        Duration::ZERO,
    )?;
    if stat == Stat::Rate && window.is_zero() {
        return Err(invalid(
            rule,
            "condition.window",
            "stat `rate` needs a window longer than 0s",
        ));
    }
    Ok(Comparison {
        stat,
        window,
        op,
        value: raw.value,
        hold_for: optional_duration(
            rule,
            "condition.for",
            raw.hold_for.as_deref(),
            Duration::ZERO,
        )?,
        recover_for: optional_duration(
            rule,
            "condition.recover_for",
            raw.recover_for.as_deref(),
            Duration::ZERO,
        )?,
    })
}

fn parse_action(
    rule: &str,
    index: usize,
    value: toml::Value,
) -> Result<RuleAction, RuleConfigError> {
    let section = format!("action[{index}]");
    let raw: RawAction = value
        .try_into()
        .map_err(|error| shape(rule, &section, &error))?;
    let template = |field: &str, text: &str| {
        Template::parse(text).map_err(|reason| invalid(rule, &format!("{section}.{field}"), reason))
    };
    let json_template = |field: &str, value: &toml::Value| {
        TemplateJson::from_toml(value, &format!("{section}.{field}"))
            .map_err(|(path, reason)| invalid(rule, &path, reason))
    };
    let duration = |field: &str, text: Option<&str>, default| {
        optional_duration(rule, &format!("{section}.{field}"), text, default)
    };
    let (name, template) = match raw {
        RawAction::ExecuteWorkflow(raw) => (
            raw.name,
            ActionTemplate::ExecuteWorkflow {
                deployment_id: template("deployment_id", &raw.deployment_id)?,
                workflow: template("workflow", &raw.workflow)?,
                parameters: json_template("parameters", &toml::Value::Table(raw.parameters))?,
                force: raw.force,
                allow_custom_parameters: raw.allow_custom_parameters,
                socket_timeout: duration(
                    "socket_timeout",
                    raw.socket_timeout.as_deref(),
                    DEFAULT_MANAGER_TIMEOUT,
                )?,
                connect_timeout: duration(
                    "connect_timeout",
                    raw.connect_timeout.as_deref(),
                    DEFAULT_MANAGER_TIMEOUT,
                )?,
            },
        ),
        RawAction::Webhook(raw) => {
            let url = template("url", &raw.url)?;
            let prefix = url.literal_prefix();
            if !(prefix.starts_with("http://") || prefix.starts_with("https://")) {
                return Err(invalid(
                    rule,
                    &format!("{section}.url"),
                    "must start with http:// or https://",
                ));
            }
            let headers = raw
                .headers
                .iter()
                .map(|(header, text)| {
                    Ok((
                        header.clone(),
                        template(&format!("headers.{header}"), text)?,
                    ))
                })
                .collect::<Result<_, RuleConfigError>>()?;
            let body = raw
                .body
                .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
            (
                raw.name,
                ActionTemplate::Webhook {
                    url,
                    headers,
                    body: json_template("body", &body)?,
                    timeout: duration("timeout", raw.timeout.as_deref(), DEFAULT_WEBHOOK_TIMEOUT)?,
                },
            )
        }
    };
    Ok(RuleAction {
        trigger: name.unwrap_or_else(|| index.to_string()),
        template,
    })
}
