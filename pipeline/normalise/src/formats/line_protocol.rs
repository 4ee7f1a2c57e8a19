//! [`LineProtocolDecoder`]: InfluxDB line protocol, parsed by the `influxdb-line-protocol`
//! crate (InfluxDB 3's own parser), one point per line.
//!
//! - Every field type: floats, integers (`i`), unsigned integers (`u`, carried as integers:
//!   sluice's points have no unsigned type, so one beyond `i64::MAX` is refused as
//!   `wrong_type`), strings and booleans. Of a field given twice in a line the last wins.
//! - The timestamp is read in the decoder's [`TimestampPrecision`] (nanoseconds by default). A
//!   line **without a timestamp is refused** (`bad_timestamp`), for the reason the Graphite
//!   decoder gives: the push intake stamps every line before publishing, so a line without one
//!   did not come through it and its time is unknown.
//! - Lines are split as the parser splits them, so a quoted string value may hold a line
//!   break; `\r\n` endings are read as `\n`. Blank lines and `#` comments are skipped.
//! - A body that is not UTF-8 is read line by line: the lines that are not are refused as
//!   `invalid_utf8`, the others decoded.
//! - A line the parser refuses is refused as `bad_line` with the parser's error.

use std::borrow::Cow;
use std::convert::Infallible;

use influxdb_line_protocol::{EscapedStr, FieldValue, ParsedLine, parse_lines, split_lines};
use sluice_core::ack::SourceMessage;
use sluice_core::path::{Decoded, Decoder};
use sluice_core::point::{FieldRef, Point, PointLimits, PointRef, ValidPoint};
use sluice_core::rejection::{Reason, Stage};
use smallvec::SmallVec;

use super::{decode_one, line_refusal, owned, point_record, sort_fields, validated};

/// The unit of the timestamps in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
pub enum TimestampPrecision {
    #[default]
    #[serde(rename = "ns")]
    Nanoseconds,
    #[serde(rename = "us")]
    Microseconds,
    #[serde(rename = "ms")]
    Milliseconds,
    #[serde(rename = "s")]
    Seconds,
}

impl TimestampPrecision {
    pub fn nanos_per_unit(self) -> i64 {
        match self {
            TimestampPrecision::Nanoseconds => 1,
            TimestampPrecision::Microseconds => 1_000,
            TimestampPrecision::Milliseconds => 1_000_000,
            TimestampPrecision::Seconds => 1_000_000_000,
        }
    }
}

/// Line-protocol bodies to points.
#[derive(Debug)]
pub struct LineProtocolDecoder {
    precision: TimestampPrecision,
    limits: PointLimits,
    /// The point [`Decoder::decode`] answers, kept so that it can borrow from the decoder.
    kept: Option<Point>,
}

impl LineProtocolDecoder {
    pub fn new(precision: TimestampPrecision, limits: PointLimits) -> Self {
        Self {
            precision,
            limits,
            kept: None,
        }
    }

    /// One line (as split by the parser) to a point or a refusal; `None` for a blank line or a
    /// comment.
    fn decode_line<'a>(
        &self,
        number: usize,
        line: &'a str,
    ) -> Option<Decoded<ValidPoint<'a>, Infallible>> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return None;
        }
        let refuse = |reason, detail: &str| {
            Some(Decoded::Refused(line_refusal(
                reason,
                number,
                detail,
                line.as_bytes(),
            )))
        };
        let parsed = match parse_lines(line).next()? {
            Ok(parsed) => parsed,
            Err(error) => return refuse(Reason::BadLine, &error.to_string()),
        };
        match self.point(parsed) {
            Ok(point) => Some(validated(point, &self.limits, number, line.as_bytes())),
            Err((reason, detail)) => refuse(reason, &detail),
        }
    }

    fn point<'a>(&self, parsed: ParsedLine<'a>) -> Result<PointRef<'a>, (Reason, String)> {
        let Some(timestamp) = parsed.timestamp else {
            return Err((
                Reason::BadTimestamp,
                "has no timestamp; the intake stamps every line, so its time is unknown".into(),
            ));
        };
        let timestamp = timestamp
            .checked_mul(self.precision.nanos_per_unit())
            .ok_or_else(|| {
                (
                    Reason::BadTimestamp,
                    format!("timestamp {timestamp} is beyond the range of nanoseconds"),
                )
            })?;
        let mut tags: SmallVec<[(Cow<'a, str>, Cow<'a, str>); 6]> = parsed
            .series
            .tag_set
            .into_iter()
            .flatten()
            .map(|(key, value)| (text(key), text(value)))
            .collect();
        tags.sort_by(|(left, _), (right, _)| left.cmp(right));
        // InfluxDB refuses a line that names a tag twice: which value was meant is unknown.
        if let Some(pair) = tags.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err((
                Reason::BadLine,
                format!("tag {:?} is given more than once", pair[0].0),
            ));
        }
        let mut fields: SmallVec<[(Cow<'a, str>, FieldRef<'a>); 1]> = SmallVec::new();
        for (key, value) in parsed.field_set {
            let value = match value {
                FieldValue::F64(number) => FieldRef::Float(number),
                FieldValue::I64(number) => FieldRef::Integer(number),
                FieldValue::U64(number) => match i64::try_from(number) {
                    Ok(number) => FieldRef::Integer(number),
                    Err(_) => {
                        return Err((
                            Reason::WrongType,
                            format!(
                                "field {:?} is the unsigned integer {number}, beyond the signed \
                                 64-bit integers sluice carries",
                                key.as_str()
                            ),
                        ));
                    }
                },
                FieldValue::String(value) => FieldRef::String(text(value)),
                FieldValue::Boolean(flag) => FieldRef::Boolean(flag),
            };
            fields.push((text(key), value));
        }
        sort_fields(&mut fields);
        Ok(PointRef {
            measurement: text(parsed.series.measurement),
            tags,
            fields,
            timestamp,
        })
    }
}

/// The parser's string: borrowed from the body unless it was unescaped into a copy.
fn text(escaped: EscapedStr<'_>) -> Cow<'_, str> {
    match escaped {
        EscapedStr::SingleSlice(slice) => Cow::Borrowed(slice),
        EscapedStr::CopiedValue(copy) => Cow::Owned(copy),
    }
}

impl Decoder for LineProtocolDecoder {
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
        let body: &[u8] = &message.body;
        match std::str::from_utf8(body) {
            Ok(text) => {
                let mut number = 1;
                for line in split_lines(text) {
                    if let Some(decoded) = self.decode_line(number, line) {
                        each(decoded);
                    }
                    // A quoted string value may hold line breaks: count them all.
                    number += 1 + line.matches('\n').count();
                }
            }
            Err(_) => {
                for (index, line) in body.split(|byte| *byte == b'\n').enumerate() {
                    let number = index + 1;
                    match std::str::from_utf8(line) {
                        Ok(line) => {
                            if let Some(decoded) = self.decode_line(number, line) {
                                each(decoded);
                            }
                        }
                        Err(error) => each(Decoded::Refused(line_refusal(
                            Reason::InvalidUtf8,
                            number,
                            &format!("not valid UTF-8 (at byte {})", error.valid_up_to()),
                            line,
                        ))),
                    }
                }
            }
        }
    }

    fn tap_name(&self) -> &'static str {
        "points"
    }

    fn tap_record(point: &ValidPoint<'_>) -> serde_json::Value {
        point_record(point)
    }
}
