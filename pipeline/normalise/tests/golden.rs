//! Golden fixtures: every `schemas/fixtures/diamond/<case>.json` body normalises to the JSON in
//! `<case>.point.json` (or `<case>.control.json` for a control message) beside it, with the
//! default naming; the same for `diamond/legacy/` with the `cloudify-legacy` naming. Every point
//! produced is also checked against `schemas/point.schema.json`.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice_core::point::PointLimits;
use sluice_core::rejection::Rejection;
use sluice_normalise::{Naming, Normalised, Normaliser};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path:?}: {error}"))
}

fn point_validator() -> jsonschema::Validator {
    let schema = read_json(&schemas_dir().join("point.schema.json"));
    jsonschema::meta::validate(&schema).expect("point.schema.json is a valid JSON Schema");
    jsonschema::draft202012::new(&schema).expect("point.schema.json compiles")
}

/// The input bodies of a fixture folder, sorted, skipping the expected outputs.
fn cases(folder: &Path) -> Vec<PathBuf> {
    let mut inputs: Vec<PathBuf> = fs::read_dir(folder)
        .unwrap_or_else(|error| panic!("{folder:?}: {error}"))
        .map(|entry| entry.expect("readable folder entry").path())
        .filter(|path| {
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            path.is_file()
                && name.ends_with(".json")
                && !name.ends_with(".point.json")
                && !name.ends_with(".control.json")
        })
        .collect();
    inputs.sort();
    inputs
}

/// Runs every case of a folder; returns how many points it checked against the schema.
fn check_folder(folder: &Path, naming: Naming) -> usize {
    let normaliser = Normaliser::new(naming, PointLimits::default());
    let validator = point_validator();
    let inputs = cases(folder);
    assert!(!inputs.is_empty(), "no fixtures in {folder:?}");
    let mut points = 0;

    for input in inputs {
        let point_file = input.with_extension("point.json");
        let control_file = input.with_extension("control.json");
        let expected_file = match (point_file.exists(), control_file.exists()) {
            (true, false) => &point_file,
            (false, true) => &control_file,
            (both, _) => panic!(
                "{input:?} needs exactly one of {point_file:?} and {control_file:?}, found {}",
                if both { "both" } else { "neither" }
            ),
        };
        let expected = read_json(expected_file);

        let body = fs::read(&input).expect("readable fixture");
        let normalised = normaliser
            .normalise(&body)
            .unwrap_or_else(|error| panic!("{input:?}: {error} ({})", error.reason()));
        let produced = match &normalised {
            Normalised::Point(point) => {
                assert_eq!(expected_file, &point_file, "{input:?} gave a point");
                serde_json::to_value(point).expect("a point serialises")
            }
            Normalised::Control(control) => {
                assert_eq!(
                    expected_file, &control_file,
                    "{input:?} gave a control message"
                );
                serde_json::to_value(control).expect("a control message serialises")
            }
        };
        assert_eq!(produced, expected, "{input:?} against {expected_file:?}");

        if let Normalised::Point(_) = normalised {
            let errors: Vec<String> = validator
                .iter_errors(&produced)
                .map(|error| error.to_string())
                .collect();
            assert!(errors.is_empty(), "{input:?}: schema says {errors:?}");
            points += 1;
        }
    }
    points
}

#[test]
fn diamond_fixtures_normalise_to_their_golden_points() {
    let folder = schemas_dir().join("fixtures/diamond");
    let points = check_folder(&folder, Naming::default());
    assert!(points >= 5, "only {points} golden points checked");
}

#[test]
fn legacy_fixtures_normalise_to_the_old_consumer_series() {
    let folder = schemas_dir().join("fixtures/diamond/legacy");
    let points = check_folder(&folder, Naming::CloudifyLegacy);
    assert!(points >= 3, "only {points} golden points checked");
}

#[test]
fn the_point_schema_refuses_what_validate_refuses() {
    let validator = point_validator();
    let good = serde_json::json!({
        "measurement": "cpu", "tags": {"host": "h1"}, "fields": {"value": 1.5, "n": 3, "ok": true, "s": "x"},
        "timestamp": 1
    });
    assert!(validator.is_valid(&good));
    let without_tags =
        serde_json::json!({"measurement": "cpu", "fields": {"value": 1.5}, "timestamp": 1});
    assert!(validator.is_valid(&without_tags));

    let bad = [
        serde_json::json!({"measurement": "", "fields": {"value": 1.5}, "timestamp": 1}),
        serde_json::json!({"measurement": "#c", "fields": {"value": 1.5}, "timestamp": 1}),
        serde_json::json!({"measurement": "a\nb", "fields": {"value": 1.5}, "timestamp": 1}),
        serde_json::json!({"measurement": "cpu", "fields": {}, "timestamp": 1}),
        serde_json::json!({"measurement": "cpu", "fields": {"value": null}, "timestamp": 1}),
        serde_json::json!({"measurement": "cpu", "fields": {"value": [1]}, "timestamp": 1}),
        serde_json::json!({"measurement": "cpu", "tags": {"host": ""}, "fields": {"value": 1}, "timestamp": 1}),
        serde_json::json!({"measurement": "cpu", "tags": {"host": 1}, "fields": {"value": 1}, "timestamp": 1}),
        serde_json::json!({"measurement": "cpu", "fields": {"value": 1}, "timestamp": 1.5}),
        serde_json::json!({"measurement": "cpu", "fields": {"value": 1}}),
        serde_json::json!({"measurement": "cpu", "fields": {"value": 1}, "timestamp": 1, "extra": 1}),
    ];
    for point in bad {
        assert!(!validator.is_valid(&point), "schema accepted {point}");
    }
}
