//! The manager's policy-engine control messages (`manager-riemann`): `start` loads a
//! deployment's groups file into the manager's policies, `stop` unloads it (see the stage's
//! docs for the order of the checkpoint, the `ok` file and the ack).

use std::path::Path;

use sluice_core::ack::ControlAck;
use sluice_core::dead_letter::{DeadLetter, send_dead_letter};
use sluice_core::rejection::{Reason, Refusal, Stage};
use sluice_normalise::{ControlMessage, ControlState};
use sluice_rules::Groups;

use super::RuleStage;

impl RuleStage {
    pub(super) async fn control(&mut self, message: ControlMessage, ack: ControlAck) {
        let deployment_id = message.deployment_id.clone();
        match message.state {
            ControlState::Start => {
                let config_path = Path::new(&message.config_path);
                let groups = match load_groups(config_path).await {
                    Ok(groups) => groups,
                    Err(refusal) => {
                        tracing::error!(%deployment_id, reason = %refusal.reason, detail = %refusal.detail, "policies not loaded");
                        self.dead_letter(refusal, ack).await;
                        return;
                    }
                };
                let policies: usize = groups
                    .groups()
                    .iter()
                    .map(|group| group.policies.len())
                    .sum();
                self.engines
                    .policies
                    .load_deployment(&deployment_id, groups);
                self.set_loaded(&deployment_id, true);
                // Durable before the manager is told: a crash now restarts with the policies.
                self.write_checkpoint().await;
                let ok_file = config_path.join("ok");
                if let Err(error) = tokio::fs::write(&ok_file, b"").await {
                    let detail = format!("cannot create {}: {error}", ok_file.display());
                    tracing::error!(%deployment_id, %detail, "policies loaded but the manager is not told");
                    let refusal = Refusal::new(Reason::OkFileUnwritable, detail);
                    self.dead_letter(refusal, ack).await;
                    return;
                }
                metrics::counter!("sluice_rule_deployments_total", "state" => "start").increment(1);
                tracing::info!(%deployment_id, policies, "policies started");
            }
            ControlState::Stop => {
                self.engines.policies.unload_deployment(&deployment_id);
                self.set_loaded(&deployment_id, false);
                self.write_checkpoint().await;
                metrics::counter!("sluice_rule_deployments_total", "state" => "stop").increment(1);
                tracing::info!(%deployment_id, "policies stopped");
            }
        }
        ack.applied();
    }

    /// Keeps the feed's view of the loaded deployments ([`super::RuleFeed::wants`]) in step.
    fn set_loaded(&self, deployment_id: &str, loaded: bool) {
        let mut set = self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if loaded {
            set.insert(deployment_id.to_owned());
        } else {
            set.remove(deployment_id);
        }
        drop(set);
        self.activity
            .set_loaded(&self.engines.policies, self.engines.generic.len());
    }

    async fn dead_letter(&self, refusal: Refusal, ack: ControlAck) {
        let letter = DeadLetter::new(Stage::Rules, refusal, 0, ack.into_token());
        send_dead_letter(&self.dead_letters, letter).await;
    }
}

/// Reads `<config_path>/groups`; the error is what the control message is dead-lettered with.
async fn load_groups(config_path: &Path) -> Result<Groups, Refusal> {
    let file = config_path.join("groups");
    let text = tokio::fs::read_to_string(&file).await.map_err(|error| {
        Refusal::new(
            Reason::GroupsUnreadable,
            format!("{}: {error}", file.display()),
        )
    })?;
    Groups::parse(&text).map_err(|error| {
        Refusal::new(
            Reason::InvalidGroups,
            format!("{}: {error}", file.display()),
        )
    })
}
