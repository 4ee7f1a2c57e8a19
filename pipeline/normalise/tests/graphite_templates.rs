//! The Graphite template syntax against its fixtures: `schemas/fixtures/graphite/applied.json`
//! (a template set, a dotted name, and the measurement, field and tags it must give) and
//! `refused.json` (template sets that must be refused, with a part of the message). The cases
//! come from the InfluxDB 1.x graphite README, Telegraf's TEMPLATE_PATTERN.md and the two
//! projects' parser tests, so they are data others can read and extend without Rust.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sluice_normalise::{Applied, TemplateSet};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas/fixtures/graphite")
        .join(name)
}

fn read_cases<Case: for<'de> Deserialize<'de>>(name: &str) -> Vec<Case> {
    #[derive(Deserialize)]
    struct Fixture<Case> {
        cases: Vec<Case>,
    }
    let path = fixture(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
    let fixture: Fixture<Case> =
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path:?}: {error}"));
    assert!(!fixture.cases.is_empty(), "{path:?} holds no cases");
    fixture.cases
}

#[derive(Deserialize)]
struct AppliedCase {
    what: String,
    separator: String,
    templates: Vec<String>,
    name: String,
    measurement: String,
    field: Option<String>,
    tags: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct RefusedCase {
    separator: String,
    templates: Vec<String>,
    message_contains: String,
}

#[test]
fn templates_apply_as_the_influxdb_and_telegraf_documentation_says() {
    for case in read_cases::<AppliedCase>("applied.json") {
        let set = TemplateSet::parse(&case.separator, &case.templates)
            .unwrap_or_else(|error| panic!("{}: the templates are valid: {error}", case.what));
        let mut tags = case.tags;
        tags.sort();
        let expected = Applied {
            measurement: case.measurement,
            field: case.field,
            tags,
        };
        assert_eq!(set.apply(&case.name), expected, "{}", case.what);
    }
}

#[test]
fn bad_templates_are_refused_with_the_line_and_the_reason() {
    for case in read_cases::<RefusedCase>("refused.json") {
        let lines = case.templates;
        let error = TemplateSet::parse(&case.separator, &lines).expect_err("must be refused");
        let message = error.to_string();
        let expected = case.message_contains;
        assert!(
            message.contains(&expected),
            "{lines:?}: {message:?} should contain {expected:?}"
        );
    }
}
