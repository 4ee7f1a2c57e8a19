//! What the configuration's unit tests share: a file loaded as `sluice run --config` would
//! load it, and a source to hang sinks on.

use super::{ConfigErrors, RawConfig, Settings};

/// Loads `toml` as a file would be, then validates it.
pub(super) fn load(toml: &str) -> Result<Settings, ConfigErrors> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("sluice.toml");
    std::fs::write(&file, toml).expect("write");
    RawConfig::load(Some(&file))?.validate()
}

/// The errors `toml` is refused with, one line each; panics when it is accepted.
pub(super) fn errors(toml: &str) -> Vec<String> {
    match load(toml) {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

/// A source for tests about sinks.
pub(super) const AGENTS: &str = r#"
    [sources.agents]
    type = "amqp"
    exchange = "agents"
    decoder = { format = "line_protocol" }
"#;
