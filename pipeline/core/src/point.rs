//! The normalised metric point.
//!
//! Its JSON form (`schemas/point.schema.json`) is what `sluice normalise` prints:
//! `{"measurement": "cpu.total.user", "tags": {"host": "..."}, "fields": {"value": 3.2},
//! "timestamp": 1466000000000000000}` with the timestamp in nanoseconds since the Unix epoch.
//!
//! [`Point::validate`] is the guard every point passes before any sink sees it. The
//! line-protocol builder escapes commas, spaces, equals signs and quotes, but a newline, a
//! carriage return, a leading `#` (a comment line), an empty name or a non-finite float would
//! still break or inject lines, so those are refused here with a reason that is counted.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::batch::ByteSize;
use crate::rejection::{Reason, Rejection};

/// One field value. Serialised untagged: floats always print with a fraction or exponent, so an
/// integer and a float never read back as each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Integer(i64),
    Float(f64),
    Boolean(bool),
    String(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub measurement: String,
    /// Sorted by key, the order InfluxDB stores series keys in.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub fields: BTreeMap<String, FieldValue>,
    /// Nanoseconds since the Unix epoch.
    pub timestamp: i64,
}

/// Upper bounds on a point's names, so an absurd name is refused before it reaches a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointLimits {
    /// Longest measurement name, tag key, tag value or field key, in bytes.
    pub max_name_bytes: usize,
    pub max_tags: usize,
    pub max_fields: usize,
}

impl Default for PointLimits {
    fn default() -> Self {
        Self {
            max_name_bytes: 1024,
            max_tags: 64,
            max_fields: 64,
        }
    }
}

/// Why a point cannot be written. `reason()` is the label it is counted and dead-lettered under.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidPoint {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} bytes long, over the limit of {limit}")]
    NameTooLong {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("{what} {name:?} contains a line break, which line protocol cannot carry")]
    LineBreak { what: &'static str, name: String },
    /// A NUL, which the line-protocol builder cannot escape and InfluxDB's parsers refuse in a
    /// name. (A tab is kept: InfluxDB 1.x stores it unchanged, which
    /// `pipeline/influx/tests/influx_v1.rs` checks against the real server.)
    #[error("{what} {name:?} contains {character:?}, which line protocol cannot carry")]
    Unescapable {
        what: &'static str,
        name: String,
        character: char,
    },
    #[error("measurement {0:?} starts with '#', which line protocol reads as a comment")]
    CommentMeasurement(String),
    #[error("field {field:?} is {value}, not a finite number")]
    NotFinite { field: String, value: f64 },
    #[error("{what} count {count} is over the limit of {limit}")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
}

impl Rejection for InvalidPoint {
    fn reason(&self) -> Reason {
        match self {
            InvalidPoint::Empty { .. } => Reason::EmptyName,
            InvalidPoint::NameTooLong { .. } => Reason::NameTooLong,
            InvalidPoint::LineBreak { .. }
            | InvalidPoint::Unescapable { .. }
            | InvalidPoint::CommentMeasurement(_) => Reason::UnsafeName,
            InvalidPoint::NotFinite { .. } => Reason::NotFinite,
            InvalidPoint::TooMany { .. } => Reason::TooManyKeys,
        }
    }
}

fn check_name(what: &'static str, name: &str, limits: &PointLimits) -> Result<(), InvalidPoint> {
    if name.is_empty() {
        return Err(InvalidPoint::Empty { what });
    }
    if name.len() > limits.max_name_bytes {
        return Err(InvalidPoint::NameTooLong {
            what,
            len: name.len(),
            limit: limits.max_name_bytes,
        });
    }
    // A plain loop: names are short, and a vectorised search costs more to set up than this.
    if name.bytes().any(|byte| matches!(byte, b'\n' | b'\r')) {
        return Err(InvalidPoint::LineBreak {
            what,
            name: name.chars().take(64).collect(),
        });
    }
    if let Some(character) = name.chars().find(|character| *character == '\0') {
        return Err(InvalidPoint::Unescapable {
            what,
            name: name.chars().take(64).collect(),
            character,
        });
    }
    Ok(())
}

impl Point {
    /// A point with a single float field `value`, the shape of every Diamond metric.
    pub fn with_value(measurement: impl Into<String>, value: f64, timestamp: i64) -> Self {
        Self {
            measurement: measurement.into(),
            tags: BTreeMap::new(),
            fields: BTreeMap::from([("value".to_owned(), FieldValue::Float(value))]),
            timestamp,
        }
    }

    /// Sets a tag; an empty value removes it, because line protocol has no empty tag values.
    pub fn set_tag(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        if value.is_empty() {
            self.tags.remove(&key);
        } else {
            self.tags.insert(key, value);
        }
    }

    /// Checks that the point can be written to any sink without changing its meaning.
    pub fn validate(&self, limits: &PointLimits) -> Result<(), InvalidPoint> {
        self.borrowed().validate(limits)
    }

    /// The same point, borrowing this one's names.
    pub fn borrowed(&self) -> PointRef<'_> {
        PointRef {
            measurement: Cow::Borrowed(&self.measurement),
            tags: self
                .tags
                .iter()
                .map(|(key, value)| (Cow::Borrowed(key.as_str()), Cow::Borrowed(value.as_str())))
                .collect(),
            fields: self
                .fields
                .iter()
                .map(|(key, value)| (Cow::Borrowed(key.as_str()), FieldRef::from(value)))
                .collect(),
            timestamp: self.timestamp,
        }
    }
}

/// A [`Point`] whose names borrow from the message it was decoded from, so that the hot path
/// (decode, normalise, encode) allocates nothing per message. Up to 6 tags and one field (a
/// Diamond metric has 5 and 1) live inline; more spill to the heap. Inline space is kept small
/// because the point is moved a few times on its way, and every move copies all of it.
#[derive(Debug, Clone, PartialEq)]
pub struct PointRef<'a> {
    pub measurement: Cow<'a, str>,
    /// Sorted by key, each key once.
    pub tags: SmallVec<[(Cow<'a, str>, Cow<'a, str>); 6]>,
    /// Sorted by key, each key once.
    pub fields: SmallVec<[(Cow<'a, str>, FieldRef<'a>); 1]>,
    /// Nanoseconds since the Unix epoch.
    pub timestamp: i64,
}

/// A [`PointRef`] that passed [`PointRef::validate`] with [`limits`](Self::limits): the proof
/// travels with the point, so a sink's encoder with the same limits need not check it again.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidPoint<'a> {
    point: PointRef<'a>,
    limits: PointLimits,
}

impl<'a> ValidPoint<'a> {
    pub fn limits(&self) -> &PointLimits {
        &self.limits
    }

    pub fn into_inner(self) -> PointRef<'a> {
        self.point
    }
}

impl<'a> std::ops::Deref for ValidPoint<'a> {
    type Target = PointRef<'a>;

    fn deref(&self) -> &PointRef<'a> {
        &self.point
    }
}

/// A [`FieldValue`] whose text borrows.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldRef<'a> {
    Integer(i64),
    Float(f64),
    Boolean(bool),
    String(Cow<'a, str>),
}

impl<'a> From<&'a FieldValue> for FieldRef<'a> {
    fn from(value: &'a FieldValue) -> Self {
        match value {
            FieldValue::Integer(number) => FieldRef::Integer(*number),
            FieldValue::Float(number) => FieldRef::Float(*number),
            FieldValue::Boolean(flag) => FieldRef::Boolean(*flag),
            FieldValue::String(text) => FieldRef::String(Cow::Borrowed(text)),
        }
    }
}

impl From<&FieldRef<'_>> for FieldValue {
    fn from(value: &FieldRef<'_>) -> Self {
        match value {
            FieldRef::Integer(number) => FieldValue::Integer(*number),
            FieldRef::Float(number) => FieldValue::Float(*number),
            FieldRef::Boolean(flag) => FieldValue::Boolean(*flag),
            FieldRef::String(text) => FieldValue::String(text.as_ref().to_owned()),
        }
    }
}

impl<'a> PointRef<'a> {
    /// [`validate`](Self::validate), keeping the proof with the point.
    pub fn validated(self, limits: &PointLimits) -> Result<ValidPoint<'a>, InvalidPoint> {
        self.validate(limits)?;
        Ok(ValidPoint {
            point: self,
            limits: *limits,
        })
    }

    /// The same point borrowing from this one, to be changed by a stage that must not change
    /// the original (a transform on one of several routes). Copies references, not text.
    pub fn reborrowed(&self) -> PointRef<'_> {
        PointRef {
            measurement: Cow::Borrowed(self.measurement.as_ref()),
            tags: self
                .tags
                .iter()
                .map(|(key, value)| (Cow::Borrowed(key.as_ref()), Cow::Borrowed(value.as_ref())))
                .collect(),
            fields: self
                .fields
                .iter()
                .map(|(key, value)| {
                    let value = match value {
                        FieldRef::String(text) => FieldRef::String(Cow::Borrowed(text.as_ref())),
                        FieldRef::Integer(number) => FieldRef::Integer(*number),
                        FieldRef::Float(number) => FieldRef::Float(*number),
                        FieldRef::Boolean(flag) => FieldRef::Boolean(*flag),
                    };
                    (Cow::Borrowed(key.as_ref()), value)
                })
                .collect(),
            timestamp: self.timestamp,
        }
    }

    /// The owned point, for the stages that keep it (rules, JSON output).
    pub fn to_point(&self) -> Point {
        Point {
            measurement: self.measurement.as_ref().to_owned(),
            tags: self
                .tags
                .iter()
                .map(|(key, value)| (key.as_ref().to_owned(), value.as_ref().to_owned()))
                .collect(),
            fields: self
                .fields
                .iter()
                .map(|(key, value)| (key.as_ref().to_owned(), FieldValue::from(value)))
                .collect(),
            timestamp: self.timestamp,
        }
    }

    /// Checks that the point can be written to any sink without changing its meaning.
    pub fn validate(&self, limits: &PointLimits) -> Result<(), InvalidPoint> {
        check_name("measurement", &self.measurement, limits)?;
        if self.measurement.starts_with('#') {
            return Err(InvalidPoint::CommentMeasurement(
                self.measurement.chars().take(64).collect(),
            ));
        }
        if self.tags.len() > limits.max_tags {
            return Err(InvalidPoint::TooMany {
                what: "tag",
                count: self.tags.len(),
                limit: limits.max_tags,
            });
        }
        if self.fields.is_empty() {
            return Err(InvalidPoint::Empty { what: "field set" });
        }
        if self.fields.len() > limits.max_fields {
            return Err(InvalidPoint::TooMany {
                what: "field",
                count: self.fields.len(),
                limit: limits.max_fields,
            });
        }
        for (key, value) in &self.tags {
            check_name("tag key", key, limits)?;
            check_name("tag value", value, limits)?;
        }
        for (key, value) in &self.fields {
            check_name("field key", key, limits)?;
            match value {
                FieldRef::Float(number) if !number.is_finite() => {
                    return Err(InvalidPoint::NotFinite {
                        field: key.as_ref().to_owned(),
                        value: *number,
                    });
                }
                FieldRef::String(text) if text.len() > limits.max_name_bytes * 64 => {
                    return Err(InvalidPoint::NameTooLong {
                        what: "string field value",
                        len: text.len(),
                        limit: limits.max_name_bytes * 64,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl ByteSize for Point {
    /// The length of the point's line-protocol line, before escaping: close enough to bound a
    /// request body, and cheap.
    fn byte_size(&self) -> usize {
        let tags: usize = self.tags.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let fields: usize = self
            .fields
            .iter()
            .map(|(k, v)| {
                k.len()
                    + 2
                    + match v {
                        FieldValue::String(text) => text.len() + 2,
                        _ => 20,
                    }
            })
            .sum();
        self.measurement.len() + tags + fields + 21
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `graphite` fuzz target: a NUL in a metric name became a measurement
    /// InfluxDB's parser refuses. A tab (found by the `diamond` target, which checks with the
    /// IOx parser) stays valid: InfluxDB 1.x stores it unchanged.
    #[test]
    fn a_nul_in_any_name_is_refused_as_unsafe_and_a_tab_is_kept() {
        let mut point = Point::with_value("cpu", 1.0, 0);
        point.set_tag("host", "vm\u{0}1");
        let refused = point.validate(&PointLimits::default());
        assert!(
            matches!(&refused, Err(InvalidPoint::Unescapable { what, character: '\0', .. })
                if what.contains("tag")),
            "{refused:?}"
        );
        assert_eq!(
            refused.err().map(|error| error.reason()),
            Some(Reason::UnsafeName)
        );
        let nul_measurement = Point::with_value("cpu\0load", 1.0, 0);
        assert!(matches!(
            nul_measurement.validate(&PointLimits::default()),
            Err(InvalidPoint::Unescapable {
                character: '\0',
                ..
            })
        ));
        let mut tab = Point::with_value("cpu\tload", 1.0, 0);
        tab.set_tag("host", "vm\t1");
        assert!(tab.validate(&PointLimits::default()).is_ok());
    }

    #[test]
    fn json_form_round_trips_and_keeps_integers_apart_from_floats() {
        let mut point = Point::with_value("cpu.total.user", 3.0, 1_466_000_000_000_000_000);
        point.set_tag("host", "h1");
        point.fields.insert("count".into(), FieldValue::Integer(3));
        let json = serde_json::to_string(&point).expect("serialise");
        assert_eq!(
            json,
            r#"{"measurement":"cpu.total.user","tags":{"host":"h1"},"fields":{"count":3,"value":3.0},"timestamp":1466000000000000000}"#
        );
        let back: Point = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, point);
    }

    #[test]
    fn empty_tag_values_are_dropped_not_written() {
        let mut point = Point::with_value("m", 1.0, 0);
        point.set_tag("host", "");
        assert!(point.tags.is_empty());
    }

    #[test]
    fn unsafe_names_are_refused_with_their_reason() {
        let limits = PointLimits::default();
        let cases: Vec<(Point, &str)> = vec![
            (Point::with_value("", 1.0, 0), "empty_name"),
            (Point::with_value("a\nb f=1 0", 1.0, 0), "unsafe_name"),
            (Point::with_value("#comment", 1.0, 0), "unsafe_name"),
            (Point::with_value("m", f64::NAN, 0), "not_finite"),
            (Point::with_value("m", f64::INFINITY, 0), "not_finite"),
            (Point::with_value("x".repeat(2000), 1.0, 0), "name_too_long"),
            (
                {
                    let mut p = Point::with_value("m", 1.0, 0);
                    p.set_tag("host", "a\rb");
                    p
                },
                "unsafe_name",
            ),
        ];
        for (point, reason) in cases {
            let error = point.validate(&limits).expect_err("must be refused");
            assert_eq!(error.reason(), reason, "{error}");
        }
        assert!(
            Point::with_value("ok, with = \"quotes\"", 1.0, 0)
                .validate(&limits)
                .is_ok()
        );
    }
}
