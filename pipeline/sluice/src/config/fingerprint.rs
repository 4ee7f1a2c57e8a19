//! What each running part of the pipeline was started from, so a reload restarts only the parts
//! whose settings changed.
//!
//! A part's fingerprint is a hash of the raw sections it is built from. Secrets count: a new
//! broker password must restart the paths that connect with it, so while a fingerprint is
//! computed the redacting serializers write the secret itself (and a `<name>_file` setting the
//! contents it was loaded with). Only the hash is kept, and it never leaves the process.

use std::cell::Cell;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::path::Path;

use serde::Serialize;

use super::RawConfig;

thread_local! {
    static REVEALING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the redacting serializers should write secrets, for a fingerprint's hash only.
pub(super) fn revealing() -> bool {
    REVEALING.with(Cell::get)
}

/// The fingerprints of the parts a reload may restart one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprints {
    /// The metrics path with its rule stage: `[amqp]`, `[metrics]`, `[influx]`, `[rules]`,
    /// `[manager]`, `events.manager` (where rule events go) and the rule files' contents.
    pub metrics: u64,
    /// The events path: `[amqp]`, `[events]`, `[elasticsearch]`.
    pub events: u64,
    /// The configured pipelines: `[amqp]`, `[sources]`, `[transforms]`, `[sinks]`.
    pub pipelines: u64,
    /// The dead-letter publisher every path rejects into: `[amqp]`, `[dead_letter]`.
    pub dead_letter: u64,
    /// The admin endpoint: `[admin]`.
    pub admin: u64,
}

impl RawConfig {
    pub fn fingerprints(&self) -> Fingerprints {
        let rule_files: Vec<Option<Vec<u8>>> = self
            .rules
            .files
            .iter()
            .map(|file| std::fs::read(Path::new(file)).ok())
            .collect();
        Fingerprints {
            metrics: hash_of(&(
                &self.amqp,
                &self.metrics,
                &self.influx,
                &self.rules,
                &self.manager,
                self.events.manager,
                rule_files,
            )),
            events: hash_of(&(&self.amqp, &self.events, &self.elasticsearch)),
            pipelines: hash_of(&(&self.amqp, &self.sources, &self.transforms, &self.sinks)),
            dead_letter: hash_of(&(&self.amqp, &self.dead_letter)),
            admin: hash_of(&self.admin),
        }
    }
}

fn hash_of(sections: &impl Serialize) -> u64 {
    REVEALING.with(|revealing| revealing.set(true));
    let serialized = serde_json::to_vec(sections);
    REVEALING.with(|revealing| revealing.set(false));
    let mut hasher = DefaultHasher::new();
    // Sections are plain data; one that cannot serialize hashes as its error, which differs
    // from any good value and so restarts the part, where the error then shows.
    match serialized {
        Ok(bytes) => bytes.hash(&mut hasher),
        Err(error) => error.to_string().hash(&mut hasher),
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    #[test]
    fn a_section_changes_only_the_parts_built_from_it() {
        let before = RawConfig::default().fingerprints();
        assert_eq!(before, RawConfig::default().fingerprints(), "stable");

        let mut raw = RawConfig::default();
        raw.influx.batch_max_points += 1;
        let after = raw.fingerprints();
        assert_ne!(after.metrics, before.metrics);
        assert_eq!(after.events, before.events);
        assert_eq!(after.dead_letter, before.dead_letter);

        let mut raw = RawConfig::default();
        raw.elasticsearch.batch_max_documents += 1;
        let after = raw.fingerprints();
        assert_eq!(after.metrics, before.metrics);
        assert_ne!(after.events, before.events);
    }

    #[test]
    fn a_new_password_changes_every_part_that_connects_with_it_and_stays_hidden() {
        let before = RawConfig::default().fingerprints();
        let mut raw = RawConfig::default();
        raw.amqp.url = Some(SecretString::from(
            "amqp://guest:another@127.0.0.1:5672/%2f",
        ));
        let after = raw.fingerprints();
        assert_ne!(after.metrics, before.metrics);
        assert_ne!(after.events, before.events);
        assert_ne!(after.dead_letter, before.dead_letter);
        assert_eq!(after.admin, before.admin);
        // Outside a fingerprint, the secret is redacted as before.
        let shown = serde_json::to_string(&raw.amqp).expect("serializes");
        assert!(!shown.contains("another"), "{shown}");
    }

    #[test]
    fn a_changed_secret_file_changes_the_parts_that_use_it_at_the_next_load() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let password = dir.path().join("influx-password");
        std::fs::write(&password, "first-password\n").expect("write");
        let file = dir.path().join("sluice.toml");
        std::fs::write(
            &file,
            format!(
                "[influx]\nusername = \"sluice\"\npassword_file = {:?}\n",
                password.display().to_string()
            ),
        )
        .expect("write");
        let loaded = RawConfig::load(Some(&file)).expect("loads");
        let before = loaded.fingerprints();
        std::fs::write(&password, "second-password\n").expect("write");
        // What was loaded keeps the secret it was loaded with (a reload's fallback needs it)...
        assert_eq!(loaded.fingerprints(), before);
        // ...and a reload reads the file again.
        let after = RawConfig::load(Some(&file)).expect("loads").fingerprints();
        assert_ne!(after.metrics, before.metrics);
        assert_eq!(after.events, before.events);
        assert_eq!(after.dead_letter, before.dead_letter);
    }

    #[test]
    fn a_changed_rule_file_changes_the_metrics_part() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("hosts.toml");
        std::fs::write(&file, "# one\n").expect("write");
        let mut raw = RawConfig::default();
        raw.rules.files = vec![file.display().to_string()];
        let before = raw.fingerprints();
        std::fs::write(&file, "# two\n").expect("write");
        let after = raw.fingerprints();
        assert_ne!(after.metrics, before.metrics);
        assert_eq!(after.events, before.events);
    }
}
