//! A firing of a generic rule: the [`Firing`] (which rule, which state, which point) rendered
//! into its [`Action`]s through the rule's action templates.

use serde_json::{Value, json};
use sluice_core::action::{Action, ActionOrigin, ExecuteWorkflow, Webhook};
use sluice_core::point::Point;

use super::action_template::TemplateContext;
use super::config::{ActionTemplate, Rule};
use super::rules_engine::by_values;
use super::window::Stat;

/// `{{key}}`: `name=value,name=value` in `by` order.
fn key_display(rule: &Rule, point: &Point) -> String {
    rule.by
        .iter()
        .zip(by_values(rule, point))
        .map(|(tag, value)| format!("{tag}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Everything a firing renders its actions from.
pub(super) struct Firing<'a> {
    pub(super) group: &'a str,
    pub(super) rule: &'a Rule,
    pub(super) diagnose: &'static str,
    pub(super) state: &'static str,
    pub(super) stat: Option<Stat>,
    pub(super) value: Option<f64>,
    pub(super) point: &'a Point,
    pub(super) event_time_ms: i64,
}

impl Firing<'_> {
    pub(super) fn actions(&self) -> Vec<Action> {
        let key = key_display(self.rule, self.point);
        let context = TemplateContext {
            rule: &self.rule.name,
            key: &key,
            value: self.value,
            state: self.state,
            point: self.point,
            time_ms: self.event_time_ms,
        };
        let event = json!({
            "rule": self.rule.name,
            "key": key,
            "state": self.state,
            "stat": self.stat.map(|stat| stat.to_string()),
            "value": self.value,
            "point": serde_json::to_value(self.point).unwrap_or(Value::Null),
        });
        let origin = |trigger: &str| ActionOrigin {
            group: self.group.to_owned(),
            policy: self.rule.name.clone(),
            trigger: trigger.to_owned(),
            node_id: self.point.tags.get("node_id").cloned(),
            node_name: self.point.tags.get("node_name").cloned(),
            diagnose: self.diagnose.to_owned(),
            event_time_ms: self.event_time_ms,
            event: event.clone(),
        };
        self.rule
            .actions
            .iter()
            .map(|action| match &action.template {
                ActionTemplate::ExecuteWorkflow {
                    deployment_id,
                    workflow,
                    parameters,
                    force,
                    allow_custom_parameters,
                    socket_timeout,
                    connect_timeout,
                } => Action::ExecuteWorkflow(ExecuteWorkflow {
                    deployment_id: deployment_id.render_text(&context),
                    workflow_id: workflow.render_text(&context),
                    parameters: parameters.render(&context),
                    force: *force,
                    allow_custom_parameters: *allow_custom_parameters,
                    socket_timeout: *socket_timeout,
                    connect_timeout: *connect_timeout,
                    origin: origin(&action.trigger),
                }),
                ActionTemplate::Webhook {
                    url,
                    headers,
                    body,
                    timeout,
                } => Action::Webhook(Webhook {
                    url: url.render_text(&context),
                    headers: headers
                        .iter()
                        .map(|(name, value)| (name.clone(), value.render_text(&context)))
                        .collect(),
                    body: body.render(&context),
                    timeout: *timeout,
                    origin: origin(&action.trigger),
                }),
            })
            .collect()
    }
}
