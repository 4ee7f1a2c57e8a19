//! `sluice normalise`: what a message body becomes, without running the pipeline.
//!
//! One JSON line per input body, in input order: the point (its `schemas/point.schema.json`
//! form), `{"control": {...}}` for a policy-engine control message, or
//! `{"error": {"input": ..., "reason": ..., "message": ...}}`. Exits 1 when any body was bad.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;
use sluice_core::rejection::Rejection;
use sluice_normalise::{Normalised, Normaliser};

use crate::config::RawConfig;

pub fn run(config_file: Option<&Path>, files: &[PathBuf]) -> ExitCode {
    let settings = match RawConfig::load(config_file).and_then(|raw| raw.validate()) {
        Ok(settings) => settings,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let Some(metrics) = settings.metrics else {
        eprintln!("error: the metrics path is disabled (metrics.enabled = false)");
        return ExitCode::FAILURE;
    };
    let normaliser = Normaliser::new(metrics.naming, metrics.point_limits);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut any_bad = false;
    let mut emit = |input: String, body: Vec<u8>| -> std::io::Result<()> {
        let line = match normaliser.normalise(&body) {
            Ok(Normalised::Point(point)) => serde_json::to_value(&point).unwrap_or_default(),
            Ok(Normalised::Control(control)) => json!({ "control": control }),
            Err(error) => {
                any_bad = true;
                json!({ "error": { "input": input, "reason": error.reason().as_str(), "message": error.to_string() } })
            }
        };
        writeln!(out, "{line}")
    };

    let result = if files.is_empty() {
        let stdin = std::io::stdin();
        let mut outcome = Ok(());
        for (index, line) in stdin.lock().split(b'\n').enumerate() {
            let line = match line {
                Ok(line) => line,
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Err(error) = emit(format!("stdin:{}", index + 1), line) {
                outcome = Err(error);
                break;
            }
        }
        outcome
    } else {
        files.iter().try_for_each(|file| {
            let body = std::fs::read(file).map_err(|error| {
                std::io::Error::new(error.kind(), format!("{}: {error}", file.display()))
            })?;
            emit(file.display().to_string(), body)
        })
    };
    match result {
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
        Ok(()) if any_bad => ExitCode::FAILURE,
        Ok(()) => ExitCode::SUCCESS,
    }
}
