//! What the rule stage shows of itself while it runs: the deployments whose policies are loaded
//! and the last actions it decided, with their outcomes. The stage writes a [`RuleActivity`];
//! whoever shows it (the binary's status page) reads a [`RuleActivitySnapshot`]. The stage only
//! ever holds the lock to copy a few fields in, never across an `.await`.
//!
//! Nothing secret goes in: a webhook is shown by its URL without credentials or query (where
//! tokens tend to be put), a workflow by its id.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use sluice_core::action::Action;
use sluice_rules::Engine;

/// How many of the last decided actions are kept.
pub const RECENT_TRIGGERS: usize = 20;

/// The rule stage's live view, shared with the status page.
#[derive(Debug, Default)]
pub struct RuleActivity {
    inner: Mutex<RuleActivitySnapshot>,
}

/// A copy of [`RuleActivity`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleActivitySnapshot {
    /// The deployments whose policies are loaded, by id.
    pub deployments: Vec<LoadedDeployment>,
    /// Generic rule files loaded (the standalone tier's rules).
    pub generic_rule_files: usize,
    /// The last decided actions, newest first.
    pub triggers: VecDeque<TriggerSeen>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadedDeployment {
    pub deployment_id: String,
    pub groups: usize,
    pub policies: usize,
}

/// One action a rule or policy decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerSeen {
    /// Unix milliseconds, when it was decided.
    pub fired_at_ms: i64,
    pub group: String,
    pub policy: String,
    pub trigger: String,
    pub deployment_id: Option<String>,
    pub node_id: Option<String>,
    /// `threshold-breached`, `heart-beat-failure`, ...
    pub diagnose: String,
    /// `execute_workflow` or `webhook`.
    pub kind: String,
    /// The workflow id, or the webhook's URL without credentials and query.
    pub target: String,
    /// The `outcome` label of `sluice_actions_total` once the action finished; `None` while it
    /// is queued or running.
    pub outcome: Option<String>,
    /// The stage's own id of the action, to record its outcome against.
    #[serde(skip)]
    pub(crate) action_id: Option<u64>,
}

impl RuleActivity {
    pub fn snapshot(&self) -> RuleActivitySnapshot {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RuleActivitySnapshot> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Copies in the loaded deployments, and sets `sluice_rule_deployments_loaded`.
    pub(crate) fn set_loaded(&self, policies: &Engine, generic_rule_files: usize) {
        let deployments: Vec<LoadedDeployment> = policies
            .deployment_ids()
            .map(|deployment_id| {
                let groups = policies.deployment_groups(deployment_id);
                LoadedDeployment {
                    deployment_id: deployment_id.to_owned(),
                    groups: groups.map_or(0, |groups| groups.groups().len()),
                    policies: groups.map_or(0, |groups| {
                        groups
                            .groups()
                            .iter()
                            .map(|group| group.policies.len())
                            .sum()
                    }),
                }
            })
            .collect();
        metrics::gauge!("sluice_rule_deployments_loaded").set(deployments.len() as f64);
        let mut inner = self.lock();
        inner.deployments = deployments;
        inner.generic_rule_files = generic_rule_files;
    }

    /// Records a decided action; `action_id` is `None` when it was dropped (`outcome` says why).
    pub(crate) fn fired(
        &self,
        action: &Action,
        action_id: Option<u64>,
        outcome: Option<&str>,
        now_ms: i64,
    ) {
        let (origin, kind, target, deployment_id) = match action {
            Action::ExecuteWorkflow(workflow) => (
                &workflow.origin,
                "execute_workflow",
                workflow.workflow_id.clone(),
                Some(workflow.deployment_id.clone()),
            ),
            Action::Webhook(webhook) => (
                &webhook.origin,
                "webhook",
                url_without_secrets(&webhook.url),
                None,
            ),
        };
        let seen = TriggerSeen {
            fired_at_ms: now_ms,
            group: origin.group.clone(),
            policy: origin.policy.clone(),
            trigger: origin.trigger.clone(),
            deployment_id,
            node_id: origin.node_id.clone(),
            diagnose: origin.diagnose.clone(),
            kind: kind.to_owned(),
            target,
            outcome: outcome.map(str::to_owned),
            action_id,
        };
        let mut inner = self.lock();
        inner.triggers.push_front(seen);
        inner.triggers.truncate(RECENT_TRIGGERS);
    }

    /// Records the outcome of an action [`fired`](Self::fired) earlier, if it is still shown.
    pub(crate) fn finished(&self, action_id: u64, outcome: &str) {
        let mut inner = self.lock();
        if let Some(seen) = inner
            .triggers
            .iter_mut()
            .find(|seen| seen.action_id == Some(action_id))
        {
            seen.outcome = Some(outcome.to_owned());
        }
    }
}

/// The URL as shown: no user, no password, no query, no fragment. Text that is not a URL is
/// shown as nothing but its length, since it may be anything.
fn url_without_secrets(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => format!("(not a URL, {} bytes)", text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::action::{ActionOrigin, Webhook};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn webhook(url: &str) -> Action {
        Action::Webhook(Webhook {
            url: url.into(),
            headers: BTreeMap::new(),
            body: serde_json::json!({}),
            timeout: Duration::from_secs(1),
            origin: ActionOrigin {
                group: "g".into(),
                policy: "p".into(),
                trigger: "t".into(),
                node_id: Some("vm_1".into()),
                node_name: None,
                diagnose: "threshold-breached".into(),
                event_time_ms: 0,
                event: serde_json::json!({}),
            },
        })
    }

    #[test]
    fn a_webhook_is_shown_without_its_credentials_or_query() {
        let activity = RuleActivity::default();
        activity.fired(
            &webhook("https://bot:s3cret@hooks.example/alert?token=abc#x"),
            Some(1),
            None,
            5,
        );
        let shown = activity.snapshot().triggers[0].target.clone();
        assert_eq!(shown, "https://hooks.example/alert");
        assert!(!format!("{:?}", activity.snapshot()).contains("s3cret"));
    }

    #[test]
    fn the_newest_trigger_comes_first_and_only_the_last_ones_are_kept() {
        let activity = RuleActivity::default();
        for id in 0..(RECENT_TRIGGERS as u64 + 5) {
            activity.fired(&webhook("http://h/"), Some(id), None, id as i64);
        }
        activity.finished(RECENT_TRIGGERS as u64 + 4, "succeeded");
        activity.finished(0, "succeeded");
        let triggers = activity.snapshot().triggers;
        assert_eq!(triggers.len(), RECENT_TRIGGERS);
        assert_eq!(triggers[0].fired_at_ms, RECENT_TRIGGERS as i64 + 4);
        assert_eq!(triggers[0].outcome.as_deref(), Some("succeeded"));
        assert!(triggers.iter().skip(1).all(|seen| seen.outcome.is_none()));
    }
}
