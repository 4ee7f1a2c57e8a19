//! Generic rule files, read and checked: by the rule stage at start, and by `sluice validate` and
//! `sluice test`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sluice_rules::{RuleConfigError, RuleSet};

/// Why the rule files cannot be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum RuleFileError {
    #[error("reading the rules file {}: {error}", path.display())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("rules file {}: another rules file has the same name `{group}`", path.display())]
    SameName { path: PathBuf, group: String },
    #[error("rules file {}: {error}", path.display())]
    Invalid {
        path: PathBuf,
        error: RuleConfigError,
    },
}

/// Reads and checks generic rule files; each file's stem is its rules' group name.
pub fn load_rule_files(paths: &[PathBuf]) -> Result<Vec<RuleSet>, RuleFileError> {
    let mut group_names = HashSet::new();
    paths
        .iter()
        .map(|path| {
            let owned = || path.clone();
            let text =
                std::fs::read_to_string(path).map_err(|error| RuleFileError::Unreadable {
                    path: owned(),
                    error,
                })?;
            let group = group_name(path);
            if !group_names.insert(group.clone()) {
                return Err(RuleFileError::SameName {
                    path: owned(),
                    group,
                });
            }
            let rules = RuleSet::parse(&text).map_err(|error| RuleFileError::Invalid {
                path: owned(),
                error,
            })?;
            Ok(rules.with_group_name(group))
        })
        .collect()
}

fn group_name(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}
