//! Decoders for bodies that carry many points, chosen per AMQP source: Graphite plaintext lines
//! ([`GraphiteLinesDecoder`]), InfluxDB line protocol ([`LineProtocolDecoder`]) and JSON mapped
//! by pointers ([`JsonDecoder`]).
//!
//! Each is a [`Decoder`](sluice_core::path::Decoder) whose
//! [`decode_each`](sluice_core::path::Decoder::decode_each) hands on one
//! `Decoded::Item` per point and one `Decoded::Refused` per bad line (or array element),
//! whose [`Refusal::part`] is that line alone, so that only it is dead-lettered and a replay does
//! not write the good points again. The refusal's detail names the line (or element) number.
//! Every point passes [`PointRef::validated`](sluice_core::point::PointRef::validated) with the
//! decoder's limits: names too long, line breaks that would inject a line, too many keys,
//! non-finite floats are refused there. Nothing is counted here: the path counts decoded and
//! refused items.
//!
//! A point borrows from the body where it can (line protocol and Graphite names without
//! escapes), so decoding allocates little per point.

pub mod graphite_lines;
pub mod json_mapping;
pub mod line_protocol;

pub use graphite_lines::GraphiteLinesDecoder;
pub use json_mapping::{
    JsonDecoder, JsonMapping, JsonMappingError, JsonMappingSettings, MeasurementSource, TimeFormat,
};
pub use line_protocol::{LineProtocolDecoder, TimestampPrecision};

use std::borrow::Cow;
use std::convert::Infallible;

use bytes::Bytes;
use sluice_core::path::Decoded;
use sluice_core::point::{FieldRef, Point, PointLimits, PointRef, ValidPoint};
use sluice_core::rejection::{Reason, Refusal, Rejection};

/// The refusal of line `number` (1-based) of a body, carrying that line.
pub(crate) fn line_refusal(reason: Reason, number: usize, detail: &str, line: &[u8]) -> Refusal {
    Refusal::new(reason, format!("line {number}: {detail}")).of_part(Bytes::copy_from_slice(line))
}

/// The refusal of line `number` for `error`.
pub(crate) fn line_error(number: usize, error: &impl Rejection, line: &[u8]) -> Refusal {
    line_refusal(error.reason(), number, &error.to_string(), line)
}

/// Sorts tags by key; a later tag of the same key is dropped (the first one wins).
pub(crate) fn sort_tags<'a>(tags: &mut smallvec::SmallVec<[(Cow<'a, str>, Cow<'a, str>); 6]>) {
    tags.sort_by(|(left, _), (right, _)| left.cmp(right));
    tags.dedup_by(|later, earlier| later.0 == earlier.0);
}

/// Sorts fields by key; of a key given twice the last value wins, as InfluxDB keeps it.
pub(crate) fn sort_fields<'a>(fields: &mut smallvec::SmallVec<[(Cow<'a, str>, FieldRef<'a>); 1]>) {
    // A stable sort keeps the order of equal keys; reversing first makes the last one first.
    fields.reverse();
    fields.sort_by(|(left, _), (right, _)| left.cmp(right));
    fields.dedup_by(|later, earlier| later.0 == earlier.0);
}

/// What a many-item decoder's [`decode`](sluice_core::path::Decoder::decode) answers, for
/// callers that take one item per body (the path itself uses `decode_each`): the body's one
/// point or refusal; a body of several items is refused whole, since one answer cannot carry
/// them. The point is kept in `kept`, so that it can borrow from the decoder.
pub(crate) fn decode_one<'a>(
    kept: &'a mut Option<Point>,
    limits: &PointLimits,
    mut outcomes: Vec<Result<Point, Refusal>>,
) -> Decoded<ValidPoint<'a>, Infallible> {
    if outcomes.len() != 1 {
        return Decoded::Refused(Refusal::new(
            Reason::Rejected,
            format!(
                "the body carries {} items, and this call answers one: decode it item by item",
                outcomes.len()
            ),
        ));
    }
    match outcomes.pop() {
        Some(Ok(point)) => {
            let point = kept.insert(point);
            match point.borrowed().validated(limits) {
                Ok(point) => Decoded::Item(point),
                Err(invalid) => Decoded::Refused(Refusal::of(&invalid)),
            }
        }
        Some(Err(refusal)) => Decoded::Refused(refusal),
        None => Decoded::Refused(Refusal::new(Reason::Rejected, "the body carries nothing")),
    }
}

/// Collects what `decode_each` hands on, owned.
pub(crate) fn owned(decoded: Decoded<ValidPoint<'_>, Infallible>) -> Result<Point, Refusal> {
    match decoded {
        Decoded::Item(point) => Ok(point.to_point()),
        Decoded::Refused(refusal) => Err(refusal),
        Decoded::Control(never) => match never {},
    }
}

/// The point of a decoded line, validated; a point that fails is refused as line `number`.
pub(crate) fn validated<'a>(
    point: PointRef<'a>,
    limits: &PointLimits,
    number: usize,
    line: &[u8],
) -> Decoded<ValidPoint<'a>, Infallible> {
    match point.validated(limits) {
        Ok(point) => Decoded::Item(point),
        Err(invalid) => Decoded::Refused(line_error(number, &invalid, line)),
    }
}

/// `value` units of `nanos_per_unit` nanoseconds, a fraction kept to the nanosecond: the
/// whole and fractional parts are scaled apart, since `value * nanos_per_unit` in floating point
/// would lose the last digits of a present-day timestamp. `None` when not finite or out of range.
pub(crate) fn fraction_to_nanos(value: f64, nanos_per_unit: i64) -> Option<i64> {
    if !value.is_finite() {
        return None;
    }
    let whole = value.trunc();
    // `i64::MAX as f64` rounds up to 2^63, itself out of range.
    if !(i64::MIN as f64..i64::MAX as f64).contains(&whole) {
        return None;
    }
    let fraction = ((value - whole) * nanos_per_unit as f64).round() as i64;
    (whole as i64)
        .checked_mul(nanos_per_unit)?
        .checked_add(fraction)
}

/// The tap record of a point, as the Diamond decoder's.
pub(crate) fn point_record(point: &ValidPoint<'_>) -> serde_json::Value {
    serde_json::to_value(point.to_point()).unwrap_or_default()
}

/// A short quote of what was found, for error texts: never a whole line.
pub(crate) fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut quoted: String = text.chars().take(MAX_CHARS).collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        quoted.push('…');
    }
    quoted
}
