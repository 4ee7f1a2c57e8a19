//! [`RuleStageSettings`]: what the rule stage runs with (the binary's configuration builds it).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use sluice_rules::{EngineLimits, GenericLimits};

use crate::settings::ManagerSettings;

#[derive(Debug, Clone)]
pub struct RuleStageSettings {
    /// Generic rule files, read at start (and by `sluice validate`).
    pub rule_files: Vec<PathBuf>,
    /// Where the checkpoint (`rules.json`) is written.
    pub state_dir: PathBuf,
    pub sweep_interval: Duration,
    pub checkpoint_interval: Duration,
    /// The longest the host sweeps wait for the start's backlog (see the module docs).
    pub startup_grace: Duration,
    pub engine_limits: EngineLimits,
    pub generic_limits: GenericLimits,
    pub max_actions_in_flight: NonZeroUsize,
    pub max_actions_queued: NonZeroUsize,
    pub manager: ManagerSettings,
}
