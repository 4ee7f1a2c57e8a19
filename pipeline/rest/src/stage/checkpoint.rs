//! The rule stage's checkpoint, `<state_dir>/rules.json`: every engine's state, the executor's
//! interval records and the actions decided and not finished. Written atomically (a temporary
//! file, synced, renamed over the old one, the directory synced), so the file on disk is always
//! a whole checkpoint; read back once at start.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_core::action::{Action, Restraints};
use sluice_rules::{EngineState, GenericState, RuleStates};

use super::now_ms;
use crate::executor::TriggerTime;

pub(super) const CHECKPOINT_FILE: &str = "rules.json";
const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// What `rules.json` holds.
#[derive(Serialize, Deserialize)]
pub(super) struct Checkpoint {
    format_version: u32,
    saved_at_ms: i64,
    /// The manager's policies' state: always written, and required (a checkpoint without it is
    /// not one of ours).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "required_engine_state"
    )]
    engine: Option<EngineState>,
    trigger_times: Vec<TriggerTime>,
    pending_actions: Vec<PendingAction>,
    /// Generic rules' state, by rules file (group) name.
    #[serde(default)]
    generic: BTreeMap<String, GenericState>,
}

fn required_engine_state<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<EngineState>, D::Error> {
    EngineState::deserialize(deserializer).map(Some)
}

impl Checkpoint {
    pub(super) fn new(
        states: RuleStates,
        trigger_times: Vec<TriggerTime>,
        pending_actions: Vec<PendingAction>,
    ) -> Checkpoint {
        Checkpoint {
            format_version: CHECKPOINT_FORMAT_VERSION,
            saved_at_ms: now_ms(),
            engine: states.manager_policies,
            trigger_times,
            pending_actions,
            generic: states.generic,
        }
    }
}

/// What a restored checkpoint hands back to the stage.
pub(super) struct Restored {
    pub(super) states: RuleStates,
    pub(super) trigger_times: Vec<TriggerTime>,
    /// To resume; their interval restraint is dropped (see the stage's docs).
    pub(super) pending_actions: Vec<PendingAction>,
    pub(super) saved_at_ms: i64,
}

/// An action decided and not yet finished, with the restraints it runs under.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct PendingAction {
    pub(super) action: Action,
    is_node_started_before_workflow: bool,
    /// 0: no interval.
    interval_between_workflows_ms: u64,
}

impl PendingAction {
    pub(super) fn new(action: Action, restraints: Restraints) -> PendingAction {
        PendingAction {
            action,
            is_node_started_before_workflow: restraints.is_node_started_before_workflow,
            interval_between_workflows_ms: restraints
                .interval_between_workflows
                .map_or(0, |interval| {
                    u64::try_from(interval.as_millis()).unwrap_or(u64::MAX)
                }),
        }
    }

    pub(super) fn restraints(&self) -> Restraints {
        Restraints {
            is_node_started_before_workflow: self.is_node_started_before_workflow,
            interval_between_workflows: (self.interval_between_workflows_ms > 0)
                .then(|| Duration::from_millis(self.interval_between_workflows_ms)),
        }
    }
}

/// Why a checkpoint could not be written.
#[derive(Debug, thiserror::Error)]
pub(super) enum WriteError {
    #[error("{what} {}: {error}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("serialising the checkpoint: {0}")]
    Serialise(#[from] serde_json::Error),
    #[error("the writing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Writes `checkpoint` over the file at `path`, atomically (see the module docs).
pub(super) async fn write(path: &Path, checkpoint: Checkpoint) -> Result<(), WriteError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || write_atomically(&path, &checkpoint)).await?
}

fn write_atomically(path: &Path, checkpoint: &Checkpoint) -> Result<(), WriteError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |error| WriteError::Io { what, path, error }
    };
    let temporary = path.with_extension("json.tmp");
    // Owner only: pending webhook actions carry their headers, which may hold credentials.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io("creating", &temporary))?;
    serde_json::to_writer(std::io::BufWriter::new(&mut file), checkpoint)?;
    file.flush().map_err(io("writing", &temporary))?;
    file.sync_all().map_err(io("syncing", &temporary))?;
    std::fs::rename(&temporary, path).map_err(io("renaming to", path))?;
    if let Some(directory) = path.parent() {
        // The rename is durable once the directory is synced.
        std::fs::File::open(directory)
            .and_then(|directory| directory.sync_all())
            .map_err(io("syncing the state directory", directory))?;
    }
    Ok(())
}

/// Reads the checkpoint at `path`. A missing checkpoint is a first start (`None`); an
/// unreadable one is kept aside and the stage starts clean.
pub(super) async fn read(path: &Path) -> Option<Restored> {
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "cannot read the rules checkpoint; starting without it");
            return None;
        }
    };
    let checkpoint = match serde_json::from_slice::<Checkpoint>(&bytes) {
        Ok(checkpoint) if checkpoint.format_version == CHECKPOINT_FORMAT_VERSION => checkpoint,
        Ok(checkpoint) => {
            set_aside(
                path,
                &format!("format version {}", checkpoint.format_version),
            )
            .await;
            return None;
        }
        Err(error) => {
            set_aside(path, &error.to_string()).await;
            return None;
        }
    };
    Some(Restored {
        states: RuleStates {
            manager_policies: checkpoint.engine,
            generic: checkpoint.generic,
        },
        trigger_times: checkpoint.trigger_times,
        pending_actions: checkpoint
            .pending_actions
            .into_iter()
            .map(|mut pending| {
                // Its interval may already be recorded in the restored state (see the stage's
                // docs).
                pending.interval_between_workflows_ms = 0;
                pending
            })
            .collect(),
        saved_at_ms: checkpoint.saved_at_ms,
    })
}

async fn set_aside(path: &Path, why: &str) {
    let aside = path.with_extension(format!("json.unreadable-{}", now_ms()));
    let kept = tokio::fs::rename(path, &aside).await;
    metrics::counter!("sluice_rule_checkpoints_total", "result" => "unreadable").increment(1);
    tracing::error!(
        path = %path.display(),
        kept_as = %aside.display(),
        kept = kept.is_ok(),
        %why,
        "the rules checkpoint cannot be used; starting without it"
    );
}
