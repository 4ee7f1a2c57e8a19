//! Graphite naming templates, in the syntax of the InfluxDB 1.x and Telegraf `graphite` inputs.
//!
//! A template line is `[filter] template [tag1=value1,tag2=value2]`:
//!
//! - the **template** is a dotted pattern matched part by part against a dotted metric name:
//!   `measurement` and `field` take that part into the measurement or the field key (several of
//!   each are joined with the separator), `measurement*` and `field*` take every remaining part,
//!   an empty part skips the name's part, and any other word is a tag key (a key used several
//!   times joins its values with the separator). If no name part lands in the measurement, the
//!   measurement is the whole name; with no field part the caller keeps its default field key.
//! - the **filter** is a dotted pattern whose parts are literal words or `*`; it matches a name
//!   whose leading parts it matches. When several filters match, the most specific wins: at each
//!   part an exact word beats `*`, and a deeper filter beats a shallower one on the same path
//!   (InfluxDB's filter tree, with Telegraf's fall-back to `*` when an exact branch ends without
//!   a template). A template without a filter is the default; without one, `measurement*` is.
//! - the **tags** are fixed tags added to every name the template applies to; a tag extracted
//!   from the name wins over a fixed tag of the same key.
//!
//! Where InfluxDB accepts a line it then applies silently wrong (two defaults, the same filter
//! twice, parts after a greedy part, a `*` inside a word, `tag` without `=`), [`TemplateSet::parse`]
//! refuses it with the line and the reason.

use std::borrow::Cow;
use std::collections::BTreeMap;

use smallvec::SmallVec;

/// A template's parts are always split on `.`, as graphite names are; the separator only joins.
const NAME_DELIMITER: char = '.';

/// A parsed set of templates, ready to apply to metric names.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSet {
    separator: String,
    default: Template,
    /// Templates reached through `filters`, indexed by the filter tree's leaves.
    filtered: Vec<Template>,
    filters: FilterNode,
}

/// What a template makes of one metric name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub measurement: String,
    /// `None` when the template has no field part or none matched: the caller's default applies.
    pub field: Option<String>,
    /// Extracted tags, then the template's fixed tags whose key was not extracted; sorted by key,
    /// empty values left out.
    pub tags: Vec<(String, String)>,
}

/// [`Applied`], borrowing from the metric name and the templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRef<'a> {
    pub measurement: Cow<'a, str>,
    pub field: Option<Cow<'a, str>>,
    /// Sorted by key, empty values left out.
    pub tags: SmallVec<[(Cow<'a, str>, Cow<'a, str>); 4]>,
}

impl AppliedRef<'_> {
    pub fn into_owned(self) -> Applied {
        Applied {
            measurement: self.measurement.into_owned(),
            field: self.field.map(Cow::into_owned),
            tags: self
                .tags
                .into_iter()
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect(),
        }
    }
}

/// A tag key of a template and the name parts it took, in order.
type ExtractedTag<'a> = (&'a str, SmallVec<[&'a str; 2]>);

/// `parts.join(separator)`, as a slice of `name` when the parts are consecutive in it and the
/// separator is the `.` they were split on.
fn join<'a>(name: &'a str, parts: &[&'a str], separator: &str) -> Cow<'a, str> {
    let offset = |part: &str| part.as_ptr() as usize - name.as_ptr() as usize;
    match parts {
        [] => Cow::Borrowed(""),
        [one] => Cow::Borrowed(one),
        [first, .., last]
            if separator.len() == 1
                && separator.starts_with(NAME_DELIMITER)
                && parts
                    .windows(2)
                    .all(|pair| offset(pair[1]) == offset(pair[0]) + pair[0].len() + 1) =>
        {
            Cow::Borrowed(&name[offset(first)..offset(last) + last.len()])
        }
        _ => Cow::Owned(parts.join(separator)),
    }
}

/// Why a template line was refused. Each message names the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template separator is empty: it joins measurement, field and tag parts, use \".\"")]
    EmptySeparator,
    #[error("template #{index} is empty")]
    EmptyLine { index: usize },
    #[error(
        "template {line:?} has {words} words, expected \"[filter] template [tag1=value1,...]\""
    )]
    TooManyWords { line: String, words: usize },
    #[error(
        "template {line:?}: pattern {pattern:?} has no \"measurement\" or \"measurement*\" part"
    )]
    NoMeasurement { line: String, pattern: String },
    #[error(
        "template {line:?}: \"measurement*\" and \"field*\" cannot both be used in one template"
    )]
    BothGreedy { line: String },
    #[error(
        "template {line:?}: {part:?} takes the rest of the name, so the parts after it would never be used"
    )]
    PartsAfterGreedy { line: String, part: &'static str },
    #[error(
        "template {line:?}: part {part:?} has a '*', which only \"measurement*\" and \"field*\" may have"
    )]
    WildcardInPart { line: String, part: String },
    #[error("template {line:?}: filter {filter:?} {why}")]
    BadFilter {
        line: String,
        filter: String,
        why: &'static str,
    },
    #[error("template {line:?}: fixed tag {tag:?} is not key=value with both sides non-empty")]
    BadTag { line: String, tag: String },
    #[error("template {line:?}: fixed tag {key:?} is given twice")]
    DuplicateTag { line: String, key: String },
    #[error("template {line:?}: filter {filter:?} is already used by template {first:?}")]
    DuplicateFilter {
        line: String,
        filter: String,
        first: String,
    },
    #[error(
        "template {line:?} has no filter, like {first:?} before it: only one default template is allowed"
    )]
    DuplicateDefault { line: String, first: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Skip,
    Measurement,
    MeasurementRest,
    Field,
    FieldRest,
    Tag(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Template {
    /// The line it came from, for error messages.
    line: String,
    parts: Vec<Part>,
    fixed_tags: Vec<(String, String)>,
}

/// The filter tree: one level per filter part, exact words apart from the `*` branch.
#[derive(Debug, Clone, Default, PartialEq)]
struct FilterNode {
    template: Option<usize>,
    exact: BTreeMap<String, FilterNode>,
    wildcard: Option<Box<FilterNode>>,
}

impl FilterNode {
    /// Inserts a template index at the end of `parts`; returns the index already there, if any.
    fn insert(&mut self, parts: &[&str], index: usize) -> Option<usize> {
        let Some((first, rest)) = parts.split_first() else {
            return self.template.replace(index);
        };
        let child = if *first == "*" {
            self.wildcard.get_or_insert_with(Box::default)
        } else {
            self.exact.entry((*first).to_owned()).or_default()
        };
        child.insert(rest, index)
    }

    /// The most specific template whose filter matches the leading parts of `name_parts`.
    fn find(&self, name_parts: &[&str]) -> Option<usize> {
        if let Some((first, rest)) = name_parts.split_first() {
            let exact = self.exact.get(*first).and_then(|child| child.find(rest));
            if exact.is_some() {
                return exact;
            }
            let wildcard = self.wildcard.as_ref().and_then(|child| child.find(rest));
            if wildcard.is_some() {
                return wildcard;
            }
        }
        self.template
    }
}

impl Template {
    fn parse(line: &str, pattern: &str, tags: Option<&str>) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        for word in pattern.split(NAME_DELIMITER) {
            let part = match word {
                "" => Part::Skip,
                "measurement" => Part::Measurement,
                "measurement*" => Part::MeasurementRest,
                "field" => Part::Field,
                "field*" => Part::FieldRest,
                _ if word.contains('*') => {
                    return Err(TemplateError::WildcardInPart {
                        line: line.to_owned(),
                        part: word.to_owned(),
                    });
                }
                _ => Part::Tag(word.to_owned()),
            };
            parts.push(part);
        }

        if !parts
            .iter()
            .any(|part| matches!(part, Part::Measurement | Part::MeasurementRest))
        {
            return Err(TemplateError::NoMeasurement {
                line: line.to_owned(),
                pattern: pattern.to_owned(),
            });
        }
        let has_measurement_rest = parts.contains(&Part::MeasurementRest);
        let has_field_rest = parts.contains(&Part::FieldRest);
        if has_measurement_rest && has_field_rest {
            return Err(TemplateError::BothGreedy {
                line: line.to_owned(),
            });
        }
        let greedy_position = parts
            .iter()
            .position(|part| matches!(part, Part::MeasurementRest | Part::FieldRest));
        if let Some(position) = greedy_position
            && position + 1 != parts.len()
        {
            return Err(TemplateError::PartsAfterGreedy {
                line: line.to_owned(),
                part: if has_measurement_rest {
                    "measurement*"
                } else {
                    "field*"
                },
            });
        }

        let fixed_tags = match tags {
            Some(tags) => parse_fixed_tags(line, tags)?,
            None => Vec::new(),
        };
        Ok(Template {
            line: line.to_owned(),
            parts,
            fixed_tags,
        })
    }

    fn apply<'a>(
        &'a self,
        name: &'a str,
        name_parts: &[&'a str],
        separator: &str,
    ) -> AppliedRef<'a> {
        let mut measurement: SmallVec<[&str; 8]> = SmallVec::new();
        let mut field: SmallVec<[&str; 4]> = SmallVec::new();
        // Few tags per template: a vector keeps the template's order and needs no hashing.
        let mut extracted: SmallVec<[ExtractedTag<'_>; 4]> = SmallVec::new();

        for (position, part) in self.parts.iter().enumerate() {
            let Some(value) = name_parts.get(position) else {
                break;
            };
            match part {
                Part::Skip => {}
                Part::Measurement => measurement.push(value),
                Part::MeasurementRest => {
                    measurement.extend_from_slice(&name_parts[position..]);
                    break;
                }
                Part::Field => field.push(value),
                Part::FieldRest => {
                    field.extend_from_slice(&name_parts[position..]);
                    break;
                }
                Part::Tag(key) => match extracted.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, values)) => values.push(value),
                    None => extracted.push((key, smallvec::smallvec![*value])),
                },
            }
        }

        let measurement = join(name, &measurement, separator);
        let measurement = if measurement.is_empty() {
            Cow::Borrowed(name)
        } else {
            measurement
        };
        let field = join(name, &field, separator);
        let field = (!field.is_empty()).then_some(field);

        let mut tags: SmallVec<[(Cow<'a, str>, Cow<'a, str>); 4]> = extracted
            .into_iter()
            .map(|(key, values)| (Cow::Borrowed(key), join(name, &values, separator)))
            .filter(|(_, value)| !value.is_empty())
            .collect();
        for (key, value) in &self.fixed_tags {
            if !tags.iter().any(|(extracted_key, _)| extracted_key == key) {
                tags.push((Cow::Borrowed(key), Cow::Borrowed(value)));
            }
        }
        tags.sort_unstable();

        AppliedRef {
            measurement,
            field,
            tags,
        }
    }
}

fn parse_fixed_tags(line: &str, tags: &str) -> Result<Vec<(String, String)>, TemplateError> {
    let mut parsed: Vec<(String, String)> = Vec::new();
    for pair in tags.split(',') {
        let Some((key, value)) = pair
            .split_once('=')
            .filter(|(key, value)| !key.is_empty() && !value.is_empty())
        else {
            return Err(TemplateError::BadTag {
                line: line.to_owned(),
                tag: pair.to_owned(),
            });
        };
        if parsed.iter().any(|(existing, _)| existing == key) {
            return Err(TemplateError::DuplicateTag {
                line: line.to_owned(),
                key: key.to_owned(),
            });
        }
        parsed.push((key.to_owned(), value.to_owned()));
    }
    Ok(parsed)
}

fn check_filter(line: &str, filter: &str) -> Result<(), TemplateError> {
    let bad = |why| TemplateError::BadFilter {
        line: line.to_owned(),
        filter: filter.to_owned(),
        why,
    };
    for part in filter.split(NAME_DELIMITER) {
        if part.is_empty() {
            return Err(bad("has an empty part"));
        }
        if part != "*" && part.contains('*') {
            return Err(bad("has a '*' inside a word; '*' must be a whole part"));
        }
    }
    Ok(())
}

impl TemplateSet {
    /// Parses template lines in InfluxDB/Telegraf graphite syntax:
    /// `"[filter] template [tag1=v1,tag2=v2]"`. `separator` joins repeated measurement, field and
    /// tag parts (InfluxDB's `separator` setting); names and patterns are always split on `.`.
    ///
    /// With no line lacking a filter, the default template is `measurement*`.
    pub fn parse(separator: &str, templates: &[String]) -> Result<TemplateSet, TemplateError> {
        if separator.is_empty() {
            return Err(TemplateError::EmptySeparator);
        }
        let mut default: Option<Template> = None;
        let mut filtered: Vec<Template> = Vec::new();
        let mut filters = FilterNode::default();

        for (index, line) in templates.iter().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let (filter, pattern, tags) = match words.as_slice() {
                [] => return Err(TemplateError::EmptyLine { index }),
                [pattern] => (None, *pattern, None),
                [pattern, tags] if tags.contains('=') => (None, *pattern, Some(*tags)),
                [filter, pattern] => (Some(*filter), *pattern, None),
                [filter, pattern, tags] => (Some(*filter), *pattern, Some(*tags)),
                _ => {
                    return Err(TemplateError::TooManyWords {
                        line: line.clone(),
                        words: words.len(),
                    });
                }
            };
            if let Some(filter) = filter {
                check_filter(line, filter)?;
            }
            let template = Template::parse(line, pattern, tags)?;

            match filter {
                None => {
                    if let Some(first) = &default {
                        return Err(TemplateError::DuplicateDefault {
                            line: line.clone(),
                            first: first.line.clone(),
                        });
                    }
                    default = Some(template);
                }
                Some(filter) => {
                    let filter_parts: Vec<&str> = filter.split(NAME_DELIMITER).collect();
                    let index = filtered.len();
                    if let Some(previous) = filters.insert(&filter_parts, index) {
                        return Err(TemplateError::DuplicateFilter {
                            line: line.clone(),
                            filter: filter.to_owned(),
                            first: filtered[previous].line.clone(),
                        });
                    }
                    filtered.push(template);
                }
            }
        }

        Ok(TemplateSet {
            separator: separator.to_owned(),
            default: default.unwrap_or_else(greedy_measurement),
            filtered,
            filters,
        })
    }

    /// The default naming: the single template `measurement*`, separator `.`, so a name becomes
    /// the measurement unchanged.
    pub fn default_diamond() -> TemplateSet {
        TemplateSet {
            separator: ".".to_owned(),
            default: greedy_measurement(),
            filtered: Vec::new(),
            filters: FilterNode::default(),
        }
    }

    /// Applies the most specific matching template to a dotted metric name.
    pub fn apply(&self, name: &str) -> Applied {
        self.apply_borrowed(name).into_owned()
    }

    /// As [`apply`](Self::apply), borrowing from the name and the templates where it can: with
    /// the `.` separator, consecutive parts are one slice of the name, so the default template
    /// allocates nothing.
    pub fn apply_borrowed<'a>(&'a self, name: &'a str) -> AppliedRef<'a> {
        let name_parts: SmallVec<[&str; 16]> = name.split(NAME_DELIMITER).collect();
        let template = match self.filters.find(&name_parts) {
            Some(index) => &self.filtered[index],
            None => &self.default,
        };
        template.apply(name, &name_parts, &self.separator)
    }
}

impl Default for TemplateSet {
    fn default() -> Self {
        TemplateSet::default_diamond()
    }
}

fn greedy_measurement() -> Template {
    Template {
        line: "measurement*".to_owned(),
        parts: vec![Part::MeasurementRest],
        fixed_tags: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(separator: &str, lines: &[&str]) -> TemplateSet {
        let lines: Vec<String> = lines.iter().map(|line| (*line).to_owned()).collect();
        TemplateSet::parse(separator, &lines).expect("valid templates")
    }

    #[test]
    fn default_diamond_keeps_the_name_as_the_measurement() {
        let applied = TemplateSet::default_diamond().apply("cpu.total.user");
        assert_eq!(
            applied,
            Applied {
                measurement: "cpu.total.user".to_owned(),
                field: None,
                tags: Vec::new(),
            }
        );
        assert_eq!(TemplateSet::default_diamond(), set(".", &["measurement*"]));
    }

    #[test]
    fn error_messages_name_the_offending_line() {
        let lines = vec!["servers.* .host.measurement*".to_owned(), "x.y".to_owned()];
        let error = TemplateSet::parse(".", &lines).expect_err("second line has no measurement");
        assert_eq!(
            error.to_string(),
            "template \"x.y\": pattern \"x.y\" has no \"measurement\" or \"measurement*\" part"
        );
    }
}
