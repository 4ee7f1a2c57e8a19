//! `[transforms.<name>]`: what happens to points between sources and sinks
//! (`sluice_normalise::transform`).

use std::collections::BTreeMap;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_normalise::{PointFilter, TagEdit, TemplateSet, Transform};

use super::field;

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum RawFilterAction {
    /// Only the matching points go on.
    #[default]
    Keep,
    /// The matching points are dropped; the others go on.
    Drop,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawTransform {
    /// Adds, drops and renames tags (applied as rename, drop, add).
    Tags {
        inputs: Vec<String>,
        #[serde(default)]
        add: BTreeMap<String, String>,
        #[serde(default)]
        drop: Vec<String>,
        /// `from = "to"`.
        #[serde(default)]
        rename: BTreeMap<String, String>,
    },
    /// Keeps (or drops) the points whose measurement and tags match regular expressions.
    Filter {
        inputs: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        measurement: Option<String>,
        /// Tag key = pattern of its value; a point without the tag does not match.
        #[serde(default)]
        tags: BTreeMap<String, String>,
        #[serde(default)]
        action: RawFilterAction,
    },
    /// The Graphite templates applied to the measurement of points from any source.
    Templates {
        inputs: Vec<String>,
        templates: Vec<String>,
        #[serde(default = "dot")]
        separator: String,
    },
}

fn dot() -> String {
    ".".to_owned()
}

impl RawTransform {
    pub(super) fn inputs(&self) -> &[String] {
        match self {
            RawTransform::Tags { inputs, .. }
            | RawTransform::Filter { inputs, .. }
            | RawTransform::Templates { inputs, .. } => inputs,
        }
    }

    pub(super) fn validate(
        &self,
        name: &str,
        fail: &mut impl FnMut(&str, String),
    ) -> Option<Transform> {
        let field = |key: &str| field("transforms", name, key);
        match self {
            RawTransform::Tags {
                add, drop, rename, ..
            } => {
                if add.is_empty() && drop.is_empty() && rename.is_empty() {
                    fail(
                        &field("add"),
                        "a tags transform needs add, drop or rename".into(),
                    );
                    return None;
                }
                Some(Transform::Tags(TagEdit {
                    add: add.clone().into_iter().collect(),
                    drop: drop.clone(),
                    rename: rename.clone().into_iter().collect(),
                }))
            }
            RawTransform::Filter {
                measurement,
                tags,
                action,
                ..
            } => {
                let mut valid = true;
                let mut pattern = |key: &str, text: &str| {
                    Regex::new(text)
                        .map_err(|error| {
                            fail(&field(key), format!("not a regular expression: {error}"));
                            valid = false;
                        })
                        .ok()
                };
                let measurement = measurement
                    .as_deref()
                    .and_then(|text| pattern("measurement", text));
                let tags: Vec<(String, Regex)> = tags
                    .iter()
                    .filter_map(|(key, text)| {
                        pattern(&format!("tags.{key}"), text).map(|regex| (key.clone(), regex))
                    })
                    .collect();
                if valid && measurement.is_none() && tags.is_empty() {
                    fail(
                        &field("measurement"),
                        "a filter needs a measurement or tags pattern".into(),
                    );
                    return None;
                }
                valid.then_some(Transform::Filter(PointFilter {
                    measurement,
                    tags,
                    keep: *action == RawFilterAction::Keep,
                }))
            }
            RawTransform::Templates {
                templates,
                separator,
                ..
            } => TemplateSet::parse(separator, templates)
                .map(Transform::Templates)
                .map_err(|error| fail(&field("templates"), error.to_string()))
                .ok(),
        }
    }
}
