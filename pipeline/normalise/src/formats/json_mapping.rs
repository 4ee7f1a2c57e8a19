//! [`JsonDecoder`]: a JSON object, or an array of objects (each one point), mapped to points by
//! JSON pointers (RFC 6901, read with `serde_json::Value::pointer`).
//!
//! [`JsonMappingSettings`] says where each part of the point is: the `measurement` (a pointer,
//! or a constant), `tags` (tag key to pointer), `fields` (field key to pointer) and `time`
//! (a pointer, read as [`TimeFormat`]). [`JsonMappingSettings::validate`] checks the pointers
//! and answers a [`JsonMapping`], or a [`JsonMappingError`] naming the setting.
//!
//! - A tag takes a string, a number or a boolean (written as text); a field a number (an
//!   integer that fits 64 bits stays an integer, any other number is a float), a boolean or a
//!   string. A tag or field whose pointer finds nothing (or `null`) is left out; one that finds
//!   an object or an array is refused as `wrong_type`.
//! - An object in which none of the fields is found is refused as `missing_field`, as is one
//!   without its measurement or its time: there is no default time.
//! - Each element of an array is decoded and refused on its own; the refusal's part is the
//!   element, and its detail names the element by index.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::convert::Infallible;

use bytes::Bytes;
use serde_json::Value;
use sluice_core::ack::SourceMessage;
use sluice_core::path::{Decoded, Decoder};
use sluice_core::point::{FieldRef, Point, PointLimits, PointRef, ValidPoint};
use sluice_core::rejection::{Reason, Refusal, Stage};
use smallvec::SmallVec;

use super::{decode_one, fraction_to_nanos, owned, point_record, quote, sort_fields, sort_tags};

/// Where the measurement comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MeasurementSource {
    /// The string the pointer finds.
    Pointer(String),
    /// The same measurement for every point.
    Constant(String),
}

/// How the value at the time pointer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// A number of seconds since the Unix epoch (a fraction is kept).
    UnixS,
    /// A number of milliseconds (a fraction is kept).
    UnixMs,
    /// An integer number of nanoseconds.
    UnixNs,
    /// An RFC 3339 string with an offset, e.g. `2026-12-03T18:00:00.5Z`.
    Rfc3339,
}

/// The mapping as configured; [`validate`](Self::validate) checks it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonMappingSettings {
    pub measurement: MeasurementSource,
    /// Tag key to pointer.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Field key to pointer; at least one.
    pub fields: BTreeMap<String, String>,
    /// Pointer to the time.
    pub time: String,
    pub time_format: TimeFormat,
}

/// What is wrong with a [`JsonMappingSettings`]; each names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonMappingError {
    #[error(
        "{setting}: {pointer:?} is not a JSON pointer (RFC 6901: empty, or `/` followed by \
         reference tokens, `~` only as `~0` or `~1`)"
    )]
    BadPointer { setting: String, pointer: String },
    #[error("measurement: the constant is empty")]
    EmptyMeasurement,
    #[error("{setting}: the key is empty")]
    EmptyKey { setting: &'static str },
    #[error("fields: maps no field; a point needs at least one")]
    NoFields,
}

/// A checked mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonMapping {
    measurement: MeasurementSource,
    tags: Vec<(String, String)>,
    fields: Vec<(String, String)>,
    time: String,
    time_format: TimeFormat,
}

impl JsonMappingSettings {
    pub fn validate(self) -> Result<JsonMapping, JsonMappingError> {
        let check = |setting: String, pointer: &str| {
            if is_json_pointer(pointer) {
                Ok(())
            } else {
                Err(JsonMappingError::BadPointer {
                    setting,
                    pointer: pointer.to_owned(),
                })
            }
        };
        match &self.measurement {
            MeasurementSource::Pointer(pointer) => check("measurement.pointer".into(), pointer)?,
            MeasurementSource::Constant(constant) if constant.is_empty() => {
                return Err(JsonMappingError::EmptyMeasurement);
            }
            MeasurementSource::Constant(_) => {}
        }
        for (setting, map) in [("tags", &self.tags), ("fields", &self.fields)] {
            for (key, pointer) in map {
                if key.is_empty() {
                    return Err(JsonMappingError::EmptyKey { setting });
                }
                check(format!("{setting}.{key}"), pointer)?;
            }
        }
        if self.fields.is_empty() {
            return Err(JsonMappingError::NoFields);
        }
        check("time".into(), &self.time)?;
        Ok(JsonMapping {
            measurement: self.measurement,
            tags: self.tags.into_iter().collect(),
            fields: self.fields.into_iter().collect(),
            time: self.time,
            time_format: self.time_format,
        })
    }
}

/// RFC 6901: the empty string (the whole document), or `/`-prefixed tokens in which `~` is
/// always followed by `0` or `1`.
fn is_json_pointer(pointer: &str) -> bool {
    if pointer.is_empty() {
        return true;
    }
    if !pointer.starts_with('/') {
        return false;
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return false;
        }
    }
    true
}

/// Why one object was not made a point.
struct Refused {
    reason: Reason,
    detail: String,
}

impl Refused {
    fn new(reason: Reason, detail: String) -> Self {
        Self { reason, detail }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl JsonMapping {
    /// One object to a point (not yet validated).
    fn point<'a>(&'a self, object: &'a Value) -> Result<PointRef<'a>, Refused> {
        if !object.is_object() {
            return Err(Refused::new(
                Reason::WrongType,
                format!("is {}, expected a JSON object", kind(object)),
            ));
        }
        let measurement = match &self.measurement {
            MeasurementSource::Constant(constant) => Cow::Borrowed(constant.as_str()),
            MeasurementSource::Pointer(pointer) => match object.pointer(pointer) {
                Some(Value::String(name)) => Cow::Borrowed(name.as_str()),
                None | Some(Value::Null) => {
                    return Err(Refused::new(
                        Reason::MissingField,
                        format!("has no measurement at {pointer:?}"),
                    ));
                }
                Some(other) => {
                    return Err(Refused::new(
                        Reason::WrongType,
                        format!(
                            "measurement at {pointer:?} is {}, expected a string",
                            kind(other)
                        ),
                    ));
                }
            },
        };
        let mut tags: SmallVec<[(Cow<'a, str>, Cow<'a, str>); 6]> = SmallVec::new();
        for (key, pointer) in &self.tags {
            let value = match object.pointer(pointer) {
                None | Some(Value::Null) => continue,
                Some(Value::String(text)) => Cow::Borrowed(text.as_str()),
                Some(Value::Number(number)) => Cow::Owned(number.to_string()),
                Some(Value::Bool(flag)) => Cow::Owned(flag.to_string()),
                Some(other) => {
                    return Err(Refused::new(
                        Reason::WrongType,
                        format!(
                            "tag {key:?} at {pointer:?} is {}, expected a string, number or boolean",
                            kind(other)
                        ),
                    ));
                }
            };
            tags.push((Cow::Borrowed(key.as_str()), value));
        }
        sort_tags(&mut tags);
        let mut fields: SmallVec<[(Cow<'a, str>, FieldRef<'a>); 1]> = SmallVec::new();
        for (key, pointer) in &self.fields {
            let value = match object.pointer(pointer) {
                None | Some(Value::Null) => continue,
                Some(Value::String(text)) => FieldRef::String(Cow::Borrowed(text.as_str())),
                Some(Value::Bool(flag)) => FieldRef::Boolean(*flag),
                Some(Value::Number(number)) => match number.as_i64() {
                    Some(integer) => FieldRef::Integer(integer),
                    // serde_json's numbers are finite; a u64 beyond i64 becomes a float.
                    None => FieldRef::Float(number.as_f64().unwrap_or(f64::NAN)),
                },
                Some(other) => {
                    return Err(Refused::new(
                        Reason::WrongType,
                        format!(
                            "field {key:?} at {pointer:?} is {}, expected a number, boolean or \
                             string",
                            kind(other)
                        ),
                    ));
                }
            };
            fields.push((Cow::Borrowed(key.as_str()), value));
        }
        if fields.is_empty() {
            return Err(Refused::new(
                Reason::MissingField,
                "has none of the mapped fields".to_owned(),
            ));
        }
        sort_fields(&mut fields);
        let timestamp = self.timestamp(object)?;
        Ok(PointRef {
            measurement,
            tags,
            fields,
            timestamp,
        })
    }

    fn timestamp(&self, object: &Value) -> Result<i64, Refused> {
        let pointer = &self.time;
        let value = match object.pointer(pointer) {
            None | Some(Value::Null) => {
                return Err(Refused::new(
                    Reason::MissingField,
                    format!("has no time at {pointer:?}"),
                ));
            }
            Some(value) => value,
        };
        let bad =
            |why: &str| Refused::new(Reason::BadTimestamp, format!("time at {pointer:?} {why}"));
        let scaled = |per_unit: i64| -> Result<i64, Refused> {
            let Value::Number(number) = value else {
                return Err(bad(&format!("is {}, expected a number", kind(value))));
            };
            let nanos = match number.as_i64() {
                Some(integer) => integer.checked_mul(per_unit),
                None => number
                    .as_f64()
                    .and_then(|units| fraction_to_nanos(units, per_unit)),
            };
            nanos.ok_or_else(|| bad("is beyond the range of nanoseconds"))
        };
        match self.time_format {
            TimeFormat::UnixS => scaled(1_000_000_000),
            TimeFormat::UnixMs => scaled(1_000_000),
            TimeFormat::UnixNs => match value.as_i64() {
                Some(nanos) => Ok(nanos),
                None => Err(bad(&format!("is {}, expected an integer", kind(value)))),
            },
            TimeFormat::Rfc3339 => {
                let Value::String(text) = value else {
                    return Err(bad(&format!(
                        "is {}, expected an RFC 3339 string",
                        kind(value)
                    )));
                };
                let instant: jiff::Timestamp = text.parse().map_err(|error| {
                    bad(&format!(
                        "{:?} is not an RFC 3339 time: {error}",
                        quote(text)
                    ))
                })?;
                i64::try_from(instant.as_nanosecond())
                    .map_err(|_| bad("is beyond the range of nanoseconds"))
            }
        }
    }
}

/// JSON bodies to points, by a [`JsonMapping`].
#[derive(Debug)]
pub struct JsonDecoder {
    mapping: JsonMapping,
    limits: PointLimits,
    /// The point [`Decoder::decode`] answers, kept so that it can borrow from the decoder.
    kept: Option<Point>,
}

impl JsonDecoder {
    pub fn new(mapping: JsonMapping, limits: PointLimits) -> Self {
        Self {
            mapping,
            limits,
            kept: None,
        }
    }

    /// One object to a point or a refusal. `element` is its index in an array body, whose
    /// refusal then carries the element alone.
    fn decode_object<'a>(
        &'a self,
        object: &'a Value,
        element: Option<usize>,
    ) -> Decoded<ValidPoint<'a>, Infallible> {
        let refuse = |reason, detail: String| {
            let refusal = match element {
                None => Refusal::new(reason, format!("the object {detail}")),
                Some(index) => Refusal::new(reason, format!("element {index} {detail}"))
                    .of_part(Bytes::from(serde_json::to_vec(object).unwrap_or_default())),
            };
            Decoded::Refused(refusal)
        };
        let point = match self.mapping.point(object) {
            Ok(point) => point,
            Err(refused) => return refuse(refused.reason, refused.detail),
        };
        match point.validated(&self.limits) {
            Ok(point) => Decoded::Item(point),
            Err(invalid) => refuse(
                sluice_core::rejection::Rejection::reason(&invalid),
                format!("makes a point that cannot be written: {invalid}"),
            ),
        }
    }
}

impl Decoder for JsonDecoder {
    type Item<'a> = ValidPoint<'a>;
    type Control = Infallible;

    fn stage(&self) -> Stage {
        Stage::Normalise
    }

    fn decode<'a>(&'a mut self, message: &SourceMessage) -> Decoded<ValidPoint<'a>, Infallible> {
        let mut outcomes = Vec::new();
        self.decode_each(message, &mut |decoded| outcomes.push(owned(decoded)));
        decode_one(&mut self.kept, &self.limits, outcomes)
    }

    fn decode_each(
        &mut self,
        message: &SourceMessage,
        each: &mut dyn FnMut(Decoded<ValidPoint<'_>, Infallible>),
    ) {
        if let Err(error) = std::str::from_utf8(&message.body) {
            each(Decoded::Refused(Refusal::new(
                Reason::InvalidUtf8,
                format!("body is not valid UTF-8 (at byte {})", error.valid_up_to()),
            )));
            return;
        }
        let body: Value = match serde_json::from_slice(&message.body) {
            Ok(body) => body,
            Err(error) => {
                each(Decoded::Refused(Refusal::new(
                    Reason::InvalidJson,
                    format!("body is not JSON: {error}"),
                )));
                return;
            }
        };
        match &body {
            Value::Array(elements) => {
                for (index, element) in elements.iter().enumerate() {
                    each(self.decode_object(element, Some(index)));
                }
            }
            Value::Object(_) => each(self.decode_object(&body, None)),
            other => each(Decoded::Refused(Refusal::new(
                Reason::WrongType,
                format!(
                    "body is {}, expected a JSON object or an array of them",
                    kind(other)
                ),
            ))),
        }
    }

    fn tap_name(&self) -> &'static str {
        "points"
    }

    fn tap_record(point: &ValidPoint<'_>) -> serde_json::Value {
        point_record(point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_are_checked_as_rfc_6901_defines_them() {
        for good in ["", "/", "/a", "/a/0", "/a~1b", "/m~0n", "/ spaced /x"] {
            assert!(is_json_pointer(good), "{good:?}");
        }
        for bad in ["a", "a/b", "/a~", "/a~2", "#/a"] {
            assert!(!is_json_pointer(bad), "{bad:?}");
        }
    }
}
