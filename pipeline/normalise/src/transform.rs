//! Transforms: what a configured pipeline does to points between its sources and its sinks.
//!
//! A [`Transform`] takes a point and answers it changed, or nothing when it filters the point
//! out. Each is pure and cheap, and a chain of them runs in the path's encode stage, once per
//! route a point takes (a point going to two sinks through different transforms is changed on
//! each route separately). Renamed and added tags are checked again by [`PointRef::validated`]
//! at the end of a chain, so a transform cannot smuggle a name into line protocol that the
//! decoders would have refused.
//!
//! - [`TagEdit`]: add, drop and rename tags (Telegraf's `tags`/`tagexclude`, Vector's `remap`
//!   for the simple cases);
//! - [`PointFilter`]: keep or drop points by measurement and tag values, by regular expression;
//! - [`TemplateSet`]: the Graphite templates, applied to the measurement of a point from any
//!   source (a dotted measurement becomes measurement, field and tags).

use std::borrow::Cow;

use regex::Regex;
use sluice_core::point::{PointLimits, PointRef, ValidPoint};
use sluice_core::rejection::{Refusal, Rejection};

use crate::graphite::TemplateSet;

/// One transform of a pipeline.
#[derive(Debug, Clone)]
pub enum Transform {
    Tags(TagEdit),
    Filter(PointFilter),
    Templates(TemplateSet),
}

/// Tags to add, drop and rename, applied in that order: rename, drop, add. So `add` can set a
/// tag that `drop` removed, and a renamed tag can be dropped under its new name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagEdit {
    /// Set on every point, replacing a tag of the same key.
    pub add: Vec<(String, String)>,
    pub drop: Vec<String>,
    /// `(from, to)`: the tag `from` becomes `to`, replacing a tag `to` if there was one.
    pub rename: Vec<(String, String)>,
}

/// Which points go on: those whose measurement and tags match (or, with `keep = false`, those
/// that do not). A point matches when its measurement matches `measurement` (if set) and every
/// tag pattern matches the value of its tag; a point without one of the tags does not match.
#[derive(Debug, Clone)]
pub struct PointFilter {
    pub measurement: Option<Regex>,
    pub tags: Vec<(String, Regex)>,
    /// True: only matching points go on. False: matching points are dropped.
    pub keep: bool,
}

impl PointFilter {
    fn matches(&self, point: &PointRef<'_>) -> bool {
        let measurement_matches = self
            .measurement
            .as_ref()
            .is_none_or(|pattern| pattern.is_match(&point.measurement));
        measurement_matches
            && self.tags.iter().all(|(key, pattern)| {
                point
                    .tags
                    .iter()
                    .find(|(tag, _)| tag == key)
                    .is_some_and(|(_, value)| pattern.is_match(value))
            })
    }
}

/// A chain of transforms with the limits its result is checked against.
#[derive(Debug, Clone)]
pub struct TransformChain {
    transforms: Vec<Transform>,
    limits: PointLimits,
}

impl TransformChain {
    pub fn new(transforms: Vec<Transform>, limits: PointLimits) -> Self {
        Self { transforms, limits }
    }

    pub fn is_empty(&self) -> bool {
        self.transforms.is_empty()
    }

    /// Runs every transform on `point`: `Ok(None)` when one filtered it out, a refusal when the
    /// result is not a point any sink can carry.
    pub fn apply<'p>(
        &'p self,
        point: &'p ValidPoint<'_>,
    ) -> Result<Option<ValidPoint<'p>>, Refusal> {
        let mut point = point.reborrowed();
        for transform in &self.transforms {
            match transform {
                Transform::Tags(edit) => edit.apply(&mut point),
                Transform::Filter(filter) => {
                    if filter.matches(&point) != filter.keep {
                        return Ok(None);
                    }
                }
                Transform::Templates(templates) => apply_templates(templates, &mut point),
            }
        }
        point
            .validated(&self.limits)
            .map(Some)
            .map_err(|invalid| Refusal::of(&invalid as &dyn Rejection))
    }
}

impl TagEdit {
    fn apply<'a>(&'a self, point: &mut PointRef<'a>) {
        for (from, to) in &self.rename {
            if let Some(index) = point.tags.iter().position(|(key, _)| key == from) {
                let (_, value) = point.tags.remove(index);
                set_tag(point, Cow::Borrowed(to), value);
            }
        }
        point
            .tags
            .retain(|(key, _)| !self.drop.iter().any(|dropped| dropped == key));
        for (key, value) in &self.add {
            set_tag(point, Cow::Borrowed(key), Cow::Borrowed(value));
        }
    }
}

/// Sets a tag, keeping the tags sorted by key with each key once.
fn set_tag<'a>(point: &mut PointRef<'a>, key: Cow<'a, str>, value: Cow<'a, str>) {
    match point
        .tags
        .binary_search_by(|(tag, _)| tag.as_ref().cmp(&key))
    {
        Ok(index) => point.tags[index].1 = value,
        Err(index) => point.tags.insert(index, (key, value)),
    }
}

/// The templates applied to the measurement: it becomes the template's measurement, its tags
/// are added (a tag the point has already keeps its value) and, when the template names a field
/// and the point has one field, that field is renamed.
fn apply_templates(templates: &TemplateSet, point: &mut PointRef<'_>) {
    let applied = templates.apply(&point.measurement);
    point.measurement = Cow::Owned(applied.measurement);
    for (key, value) in applied.tags {
        if !point.tags.iter().any(|(tag, _)| *tag == key) {
            set_tag(point, Cow::Owned(key), Cow::Owned(value));
        }
    }
    if let (Some(field), [(name, _)]) = (applied.field, point.fields.as_mut_slice()) {
        *name = Cow::Owned(field);
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::point::FieldRef;
    use sluice_core::rejection::Reason;

    use super::*;

    fn point(
        measurement: &'static str,
        tags: &[(&'static str, &'static str)],
    ) -> PointRef<'static> {
        PointRef {
            measurement: Cow::Borrowed(measurement),
            tags: tags
                .iter()
                .map(|(key, value)| (Cow::Borrowed(*key), Cow::Borrowed(*value)))
                .collect(),
            fields: [(Cow::Borrowed("value"), FieldRef::Float(1.5))]
                .into_iter()
                .collect(),
            timestamp: 1,
        }
    }

    fn chain(transforms: Vec<Transform>) -> TransformChain {
        TransformChain::new(transforms, PointLimits::default())
    }

    fn valid(point: PointRef<'static>) -> ValidPoint<'static> {
        point
            .validated(&PointLimits::default())
            .expect("a valid point")
    }

    fn tags<'p>(point: &'p PointRef<'_>) -> Vec<(&'p str, &'p str)> {
        point
            .tags
            .iter()
            .map(|(key, value)| (key.as_ref(), value.as_ref()))
            .collect()
    }

    #[test]
    fn tags_are_renamed_then_dropped_then_added_and_stay_sorted() {
        let edit = Transform::Tags(TagEdit {
            add: vec![("env".into(), "prod".into()), ("a".into(), "first".into())],
            drop: vec!["instance".into()],
            rename: vec![("job".into(), "service".into())],
        });
        let chain = chain(vec![edit]);
        let input = valid(point(
            "cpu",
            &[("host", "h1"), ("instance", "i:9100"), ("job", "node")],
        ));
        let output = chain.apply(&input).expect("valid").expect("kept");
        assert_eq!(
            tags(&output),
            [
                ("a", "first"),
                ("env", "prod"),
                ("host", "h1"),
                ("service", "node")
            ]
        );
    }

    #[test]
    fn filters_keep_or_drop_by_measurement_and_tag_patterns() {
        let only_web_cpu = |keep| {
            chain(vec![Transform::Filter(PointFilter {
                measurement: Some(Regex::new("^cpu").expect("regex")),
                tags: vec![("host".into(), Regex::new("^web").expect("regex"))],
                keep,
            })])
        };
        let web_cpu = valid(point("cpu_busy", &[("host", "web1")]));
        let db_cpu = valid(point("cpu_busy", &[("host", "db1")]));
        let untagged = valid(point("cpu_busy", &[]));
        let keep = only_web_cpu(true);
        assert!(keep.apply(&web_cpu).expect("valid").is_some());
        assert!(keep.apply(&db_cpu).expect("valid").is_none());
        assert!(keep.apply(&untagged).expect("valid").is_none());
        let drop = only_web_cpu(false);
        assert!(drop.apply(&web_cpu).expect("valid").is_none());
        assert!(drop.apply(&db_cpu).expect("valid").is_some());
    }

    #[test]
    fn templates_turn_a_dotted_measurement_into_measurement_tags_and_field() {
        let templates = TemplateSet::parse(".", &["region.host.measurement.field".into()])
            .expect("a valid template");
        let chain = chain(vec![Transform::Templates(templates)]);
        let input = valid(point("eu.web1.cpu.idle", &[("source", "carbon")]));
        let output = chain.apply(&input).expect("valid").expect("kept");
        assert_eq!(output.measurement, "cpu");
        assert_eq!(
            tags(&output),
            [("host", "web1"), ("region", "eu"), ("source", "carbon")]
        );
        assert_eq!(output.fields[0].0, "idle");
    }

    #[test]
    fn a_transform_cannot_smuggle_an_unsafe_name_past_the_guard() {
        let edit = Transform::Tags(TagEdit {
            add: vec![("env".into(), "prod\nevil,x=1 value=2".into())],
            ..TagEdit::default()
        });
        let refusal = chain(vec![edit])
            .apply(&valid(point("cpu", &[])))
            .expect_err("a newline in a tag value is refused");
        assert_eq!(refusal.reason, Reason::UnsafeName);
    }
}
