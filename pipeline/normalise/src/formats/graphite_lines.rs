//! [`GraphiteLinesDecoder`]: Graphite plaintext, `metric.path value timestamp` one per line
//! (`\n` or `\r\n`), named by [`TemplateSet`] (the Telegraf/InfluxDB graphite template syntax;
//! the field key is `value` unless a template names one), with optional extra tags.
//!
//! - The timestamp is Unix seconds (a fraction is kept to the nanosecond). A line **without a
//!   timestamp is refused** (`bad_timestamp`): the Graphite intake fills in the time of arrival
//!   before publishing, so a line without one did not come through it and its time is unknown;
//!   stamping it with the time it is consumed would put it wherever the queue's backlog puts it.
//! - A value that is not a number, or a line of more or fewer than three fields, is refused as
//!   `bad_line`; `nan` and `inf` as `not_finite`.
//! - Blank lines are skipped.
//! - Tags from the template win over the extra tags of the same key.

use std::borrow::Cow;
use std::convert::Infallible;

use sluice_core::ack::SourceMessage;
use sluice_core::path::{Decoded, Decoder};
use sluice_core::point::{FieldRef, Point, PointLimits, PointRef, ValidPoint};
use sluice_core::rejection::{Reason, Stage};
use smallvec::SmallVec;

use super::{
    decode_one, fraction_to_nanos, line_refusal, owned, point_record, quote, sort_tags, validated,
};
use crate::graphite::TemplateSet;

/// Graphite plaintext bodies to points.
#[derive(Debug)]
pub struct GraphiteLinesDecoder {
    templates: TemplateSet,
    /// Added to every point, sorted by key.
    extra_tags: Vec<(String, String)>,
    limits: PointLimits,
    /// The point [`Decoder::decode`] answers, kept so that it can borrow from the decoder.
    kept: Option<Point>,
}

impl GraphiteLinesDecoder {
    /// `extra_tags` are added to every point unless a template sets the same key.
    pub fn new(
        templates: TemplateSet,
        extra_tags: impl IntoIterator<Item = (String, String)>,
        limits: PointLimits,
    ) -> Self {
        let mut extra_tags: Vec<(String, String)> = extra_tags.into_iter().collect();
        extra_tags.sort();
        extra_tags.dedup_by(|later, earlier| later.0 == earlier.0);
        Self {
            templates,
            extra_tags,
            limits,
            kept: None,
        }
    }

    /// One line (without its line break) to a point or a refusal; `None` for a blank line.
    fn decode_line<'a>(
        &'a self,
        number: usize,
        line: &'a [u8],
    ) -> Option<Decoded<ValidPoint<'a>, Infallible>> {
        let refuse = |reason, detail: &str| {
            Some(Decoded::Refused(line_refusal(reason, number, detail, line)))
        };
        let text = match std::str::from_utf8(line) {
            Ok(text) => text,
            Err(error) => {
                return refuse(
                    Reason::InvalidUtf8,
                    &format!("not valid UTF-8 (at byte {})", error.valid_up_to()),
                );
            }
        };
        let mut parts = text.split_ascii_whitespace();
        let name = parts.next()?;
        let (Some(value), timestamp, None) = (parts.next(), parts.next(), parts.next()) else {
            return refuse(
                Reason::BadLine,
                "expected `metric.path value timestamp`, three fields separated by spaces",
            );
        };
        let value: f64 = match value.parse() {
            Ok(value) => value,
            Err(_) => {
                return refuse(
                    Reason::BadLine,
                    &format!("value {:?} is not a number", quote(value)),
                );
            }
        };
        if !value.is_finite() {
            return refuse(
                Reason::NotFinite,
                &format!("value {value} is not a finite number"),
            );
        }
        let Some(timestamp) = timestamp else {
            return refuse(
                Reason::BadTimestamp,
                "has no timestamp; the Graphite intake stamps every line, so its time is unknown",
            );
        };
        let Some(timestamp) = seconds_to_nanos(timestamp) else {
            return refuse(
                Reason::BadTimestamp,
                &format!(
                    "timestamp {:?} is not Unix seconds within the range of nanoseconds",
                    quote(timestamp)
                ),
            );
        };

        let applied = self.templates.apply_borrowed(name);
        let field = applied.field.unwrap_or(Cow::Borrowed("value"));
        let mut tags: SmallVec<[(Cow<'a, str>, Cow<'a, str>); 6]> =
            applied.tags.into_iter().collect();
        tags.extend(
            self.extra_tags
                .iter()
                .map(|(key, value)| (Cow::Borrowed(key.as_str()), Cow::Borrowed(value.as_str()))),
        );
        sort_tags(&mut tags);
        let point = PointRef {
            measurement: applied.measurement,
            tags,
            fields: smallvec::smallvec![(field, FieldRef::Float(value))],
            timestamp,
        };
        Some(validated(point, &self.limits, number, line))
    }
}

/// Unix seconds, whole or with a fraction, to nanoseconds; `None` out of range or not a number.
fn seconds_to_nanos(text: &str) -> Option<i64> {
    const NANOS_PER_SECOND: i64 = 1_000_000_000;
    if let Ok(seconds) = text.parse::<i64>() {
        return seconds
            .checked_mul(NANOS_PER_SECOND)
            .filter(|nanos| *nanos >= 0);
    }
    let seconds: f64 = text.parse().ok()?;
    fraction_to_nanos(seconds, NANOS_PER_SECOND).filter(|nanos| *nanos >= 0)
}

impl Decoder for GraphiteLinesDecoder {
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
        for (index, line) in message.body.split(|byte| *byte == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(decoded) = self.decode_line(index + 1, line) {
                each(decoded);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_become_nanoseconds_and_nonsense_does_not() {
        assert_eq!(
            seconds_to_nanos("1700000000"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            seconds_to_nanos("1700000000.25"),
            Some(1_700_000_000_250_000_000)
        );
        assert_eq!(seconds_to_nanos("0"), Some(0));
        for bad in ["-1", "x", "1e300", "nan", "inf", "9223372037", "-0.5"] {
            assert_eq!(seconds_to_nanos(bad), None, "{bad}");
        }
    }
}
