//! Replays what fuzzing keeps: every file under `benches/fuzz/corpus/<target>/` (seeds and what
//! the fuzzer added) and `benches/fuzz/artifacts/<target>/` (crashes found, kept after the fix)
//! through its target's checks, on stable, so that CI fails when a decoder regresses on any of
//! them.

use std::path::{Path, PathBuf};

use sluice_fuzz_targets::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files directly in `dir`, sorted; none when it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs target `name` over its corpus and artifacts; fails naming every input it panics on.
fn replay(name: &str) {
    let target = TARGETS
        .iter()
        .find(|(target, _)| *target == name)
        .map(|(_, target)| *target)
        .unwrap_or_else(|| panic!("no target {name}"));
    let corpus = files_in(&fuzz_dir().join("corpus").join(name));
    assert!(!corpus.is_empty(), "target {name} has no seed corpus");
    let artifacts = files_in(&fuzz_dir().join("artifacts").join(name));
    let mut failed = Vec::new();
    for file in corpus.iter().chain(&artifacts) {
        let data = std::fs::read(file).expect("a readable corpus file");
        if std::panic::catch_unwind(|| target(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "target {name} fails on {} of {} inputs: {failed:#?}",
        failed.len(),
        corpus.len() + artifacts.len()
    );
}

#[test]
fn every_directory_kept_belongs_to_a_target() {
    for kind in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for entry in entries {
            let name = entry.expect("a readable directory entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                TARGETS.iter().any(|(target, _)| *target == name),
                "benches/fuzz/{kind}/{name} is no target's: it would never be replayed"
            );
        }
    }
}

#[test]
fn every_fuzz_target_binary_is_a_target() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("the manifest");
    for (name, _) in TARGETS {
        assert!(
            manifest.contains(&format!("path = \"fuzz_targets/{name}.rs\"")),
            "target {name} has no cargo-fuzz binary"
        );
    }
}

#[test]
fn diamond() {
    replay("diamond");
}

#[test]
fn events() {
    replay("events");
}

#[test]
fn graphite() {
    replay("graphite");
}

#[test]
fn config() {
    replay("config");
}

#[test]
fn groups() {
    replay("groups");
}

#[test]
fn generic_rules() {
    replay("generic_rules");
}

#[test]
fn influx_response() {
    replay("influx_response");
}

#[test]
fn elasticsearch_response() {
    replay("elasticsearch_response");
}
