//! The timestamps Cloudify managers and the policy engine write into events and logs (wire
//! formats, section 3), read as UTC instants.
//!
//! Every shape goes through jiff's ISO 8601 / RFC 9557 parser ([`Pieces`]), which keeps the
//! date, the time and the offset apart, so that the one decision left here is what an absent
//! offset means:
//!
//! | shape                              | who writes it          | read as                  |
//! | ---------------------------------- | ---------------------- | ------------------------ |
//! | `2016-06-15 10:13:20.123+0000`     | managers 3.2 to 3.4    | any `±HHMM`, to UTC      |
//! | `2016-06-15 10:13+0000`            | 3.x, on a whole second | seconds `00.000`         |
//! | `2016-06-15 10:13:20.123`          | the policy engine      | UTC                      |
//! | `2016-06-15T10:13:20.123Z`         | 3.5 and 4.x            | UTC; `±HH:MM` also taken |
//!
//! A time zone name without an offset (`...[Europe/Paris]`) is refused rather than read as UTC:
//! there is no zone database here, and a wrong instant is worse than a dead-lettered event. A
//! leap second (`:60`) reads as `:59`, as jiff does. Fractions of up to nine digits are kept.

use std::borrow::Cow;

use jiff::Timestamp;
use jiff::fmt::temporal::Pieces;
use jiff::tz::Offset;
use sluice_core::rejection::{Reason, Rejection};

use crate::diamond::quote;

/// Why a text is not a manager timestamp. Counted as `bad_timestamp`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{found} is not a timestamp: {why}")]
pub struct TimestampError {
    /// What was found, e.g. `the string "2016-13-01 10:00"`, cut short.
    found: String,
    why: Cow<'static, str>,
}

impl TimestampError {
    /// For a value found where a timestamp should be, described by the caller
    /// (`the number 5`, `null`).
    pub(crate) fn new(found: String, why: impl Into<Cow<'static, str>>) -> Self {
        Self {
            found,
            why: why.into(),
        }
    }

    fn in_text(text: &str, why: impl Into<Cow<'static, str>>) -> Self {
        Self::new(format!("the string {:?}", quote(text)), why)
    }
}

impl Rejection for TimestampError {
    fn reason(&self) -> Reason {
        Reason::BadTimestamp
    }
}

/// How much of jiff's explanation an error keeps.
const WHY_CHARS: usize = 160;

const SECONDS_PER_DAY: u32 = 24 * 60 * 60;

/// The first year a document can be stored under: `@timestamp` and the index name write four
/// digits.
const FIRST_YEAR: i16 = 0;
/// The last such year.
const LAST_YEAR: i16 = 9999;

/// Reads a manager timestamp (any shape in the module table) as the UTC instant it names.
///
/// Errors on anything else, never guessing: an empty or non-date text, a month 13, a date
/// without a time of day, a zone name without an offset, an offset of a day or more, or an
/// instant outside what jiff holds in the years 0000 to 9999 in UTC (its last instant is
/// `9999-12-30T22:00:00Z`).
pub fn parse_manager_timestamp(text: &str) -> Result<Timestamp, TimestampError> {
    if text.is_empty() {
        return Err(TimestampError::in_text(text, "it is empty"));
    }
    let pieces = match Pieces::parse(text) {
        Ok(pieces) => pieces,
        Err(error) => return Err(TimestampError::in_text(text, parser_said(&error))),
    };
    let Some(time) = pieces.time() else {
        return Err(TimestampError::in_text(text, "it has no time of day"));
    };
    let offset = match pieces.offset() {
        Some(offset) => offset.to_numeric_offset(),
        None if pieces.time_zone_annotation().is_some() => {
            return Err(TimestampError::in_text(
                text,
                "it names a time zone but gives no offset",
            ));
        }
        // The policy engine writes UTC without saying so.
        None => Offset::UTC,
    };
    if offset.seconds().unsigned_abs() >= SECONDS_PER_DAY {
        return Err(TimestampError::in_text(
            text,
            "its offset is not within ±23:59, as RFC 3339 requires",
        ));
    }
    let instant = match offset.to_timestamp(pieces.date().to_datetime(time)) {
        Ok(instant) => instant,
        Err(error) => return Err(TimestampError::in_text(text, parser_said(&error))),
    };
    let year = Offset::UTC.to_datetime(instant).year();
    if !(FIRST_YEAR..=LAST_YEAR).contains(&year) {
        return Err(TimestampError::in_text(
            text,
            "it is outside the years 0000 to 9999 in UTC",
        ));
    }
    Ok(instant)
}

/// jiff's explanation, cut short: it can quote the unparsed rest of the text, which may be long.
fn parser_said(error: &jiff::Error) -> String {
    let message = error.to_string();
    match message.char_indices().nth(WHY_CHARS) {
        Some((end, _)) => format!("{}...", &message[..end]),
        None => message,
    }
}

/// The instant as `@timestamp` is written: RFC 3339 in UTC with exactly three fraction digits,
/// e.g. `2016-06-15T10:13:20.123Z`. Finer fractions are cut, never rounded, so the instant
/// stays in the same second, day and daily index.
///
/// Years outside 0000 to 9999 (which [`parse_manager_timestamp`] never returns) print with a
/// sign and are not RFC 3339.
pub fn format_event_timestamp(timestamp: Timestamp) -> String {
    let utc = Offset::UTC.to_datetime(timestamp);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        utc.year(),
        utc.month(),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
        utc.subsec_nanosecond() / 1_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> String {
        match parse_manager_timestamp(text) {
            Ok(instant) => format_event_timestamp(instant),
            Err(error) => panic!("{text:?}: {error}"),
        }
    }

    #[test]
    fn every_manager_shape_reads_as_its_utc_instant() {
        let cases = [
            // 3.2 to 3.4: ±HHMM offsets.
            ("2016-06-15 10:13:20.123+0000", "2016-06-15T10:13:20.123Z"),
            ("2016-06-15 10:13:20.123+0200", "2016-06-15T08:13:20.123Z"),
            ("2016-06-15 10:13:20.123-0530", "2016-06-15T15:43:20.123Z"),
            ("2016-06-15 10:13:20.123+2359", "2016-06-14T10:14:20.123Z"),
            ("2016-06-15 10:13:20.123-2359", "2016-06-16T10:12:20.123Z"),
            ("2016-06-15 10:13:20+0000", "2016-06-15T10:13:20.000Z"),
            ("2016-06-15 10:13:20.1+0000", "2016-06-15T10:13:20.100Z"),
            (
                "2016-06-15 10:13:20.123456+0000",
                "2016-06-15T10:13:20.123Z",
            ),
            // The lost-seconds quirk: a whole second is written without its seconds.
            ("2016-06-15 10:13+0000", "2016-06-15T10:13:00.000Z"),
            ("2016-06-15 10:13+0100", "2016-06-15T09:13:00.000Z"),
            // The policy engine: no zone means UTC.
            ("2016-06-15 10:13:20.123", "2016-06-15T10:13:20.123Z"),
            ("2016-06-15 10:13:20", "2016-06-15T10:13:20.000Z"),
            ("2016-06-15T10:13:20.123", "2016-06-15T10:13:20.123Z"),
            // 3.5 and 4.x: ISO 8601 with Z or ±HH:MM, zero to nine fraction digits.
            ("2016-06-15T10:13:20.123Z", "2016-06-15T10:13:20.123Z"),
            ("2016-06-15T10:13:20Z", "2016-06-15T10:13:20.000Z"),
            ("2016-06-15T10:13:20.123456789Z", "2016-06-15T10:13:20.123Z"),
            ("2016-06-15T10:13:20.999999999Z", "2016-06-15T10:13:20.999Z"),
            ("2016-06-15T10:13:20.123+02:00", "2016-06-15T08:13:20.123Z"),
            ("2016-06-15T10:13:20.123-00:00", "2016-06-15T10:13:20.123Z"),
            ("2016-06-15T10:13:20.123z", "2016-06-15T10:13:20.123Z"),
            ("2016-06-15t10:13:20.123Z", "2016-06-15T10:13:20.123Z"),
            // ISO 8601 also allows an offset in whole hours.
            ("2016-06-15T10:13:20.123+05", "2016-06-15T05:13:20.123Z"),
        ];
        for (text, expected) in cases {
            assert_eq!(utc(text), expected, "{text}");
        }
    }

    #[test]
    fn offsets_move_instants_across_days_months_and_years() {
        let cases = [
            // East of UTC: early local morning is the previous UTC day.
            ("2016-06-15 01:30:00.000+0200", "2016-06-14T23:30:00.000Z"),
            ("2016-07-01 00:30:00.000+0100", "2016-06-30T23:30:00.000Z"),
            ("2017-01-01 00:00:00.000+0000", "2017-01-01T00:00:00.000Z"),
            ("2017-01-01 00:00:00.000+0000", "2017-01-01T00:00:00.000Z"),
            ("2017-01-01 05:00+1400", "2016-12-31T15:00:00.000Z"),
            // West of UTC: late local evening is the next UTC day.
            ("2016-06-15 23:30:00.000-0100", "2016-06-16T00:30:00.000Z"),
            ("2016-12-31 20:00:00.000-0500", "2017-01-01T01:00:00.000Z"),
            ("2016-02-28T23:00:00Z", "2016-02-28T23:00:00.000Z"),
            ("2016-02-28T23:00:00-01:00", "2016-02-29T00:00:00.000Z"),
            ("2016-12-31T23:59:59.999-00:01", "2017-01-01T00:00:59.999Z"),
            // The last millisecond of a day stays in it.
            ("2016-06-15T23:59:59.999Z", "2016-06-15T23:59:59.999Z"),
            ("2016-06-15T23:59:59.999999999Z", "2016-06-15T23:59:59.999Z"),
        ];
        for (text, expected) in cases {
            assert_eq!(utc(text), expected, "{text}");
        }
    }

    #[test]
    fn anything_else_is_a_bad_timestamp() {
        let cases = [
            "",
            " ",
            "yesterday",
            "1466000000",
            "1466000000.123",
            "2016-13-15 10:13:20.123+0000",
            "2016-00-15 10:13:20.123+0000",
            "2016-02-30 10:13:20.123+0000",
            "2016-06-31T10:13:20Z",
            "2016-06-15 24:13:20.123+0000",
            "2016-06-15 10:61:20.123+0000",
            "2016-06-15 10:13:20.1234567890Z",
            "2016-06-15 10:13:20.+0000",
            "2016-06-15 10:13:20.123+2500",
            "2016-06-15",
            "2016-06-15Z",
            "2016-06-15 10:13:20.123 +0000",
            " 2016-06-15 10:13:20.123+0000",
            "2016-06-15 10:13:20.123+0000 ",
            "2016-06-15 10:13:20.123+0000x",
            "2016-06-15 10:13:20.123 UTC",
            "2016-06-15T10:13:20[Europe/Paris]",
            "15/06/2016 10:13:20",
            "Wed, 15 Jun 2016 10:13:20 +0000",
            "-000001-06-15T10:13:20Z",
            "0000-01-01T00:30:00+01:00",
            "+010000-01-01T00:00:00Z",
        ];
        for text in cases {
            match parse_manager_timestamp(text) {
                Ok(instant) => panic!("{text:?} was read as {instant}"),
                Err(error) => {
                    assert_eq!(error.reason(), "bad_timestamp");
                    assert!(error.to_string().len() < 300, "{error}");
                }
            }
        }
    }

    #[test]
    fn the_year_range_is_inclusive() {
        assert_eq!(utc("0000-01-01T00:00:00Z"), "0000-01-01T00:00:00.000Z");
        assert_eq!(utc("9999-12-30T21:59:59.999Z"), "9999-12-30T21:59:59.999Z");
        assert!(parse_manager_timestamp("9999-12-31T23:59:59.999Z").is_err());
    }

    #[test]
    fn errors_quote_the_text_short() {
        let error = parse_manager_timestamp("2016-13-15 10:13:20.123+0000").expect_err("month 13");
        assert!(
            error
                .to_string()
                .starts_with(r#"the string "2016-13-15 10:13:20.123+0000" is not a timestamp: "#),
            "{error}"
        );
        for long in [
            "9".repeat(5000),
            format!("2016-06-15 10:13:20 {}", "x".repeat(5000)),
            format!("2016-06-15 10:13:20[{}]", "x".repeat(5000)),
        ] {
            let error = parse_manager_timestamp(&long).expect_err("not a date");
            assert!(error.to_string().len() < 300, "{error}");
        }
    }
}
