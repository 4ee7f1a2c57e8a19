//! The date formats Elasticsearch's dynamic mapping detects and its `date` fields parse by
//! default, to epoch milliseconds (UTC).
//!
//! - `strict_date_optional_time`: `yyyy-MM-dd`, optionally `T` and `HH:mm`, `:ss`, a fraction
//!   of up to nine digits, and a zone (`Z`, `+HH`, `+HHmm`, `+HH:mm`). (Elasticsearch also
//!   accepts a bare `yyyy` or `yyyy-MM` there; this fake does not, so that numbers in strings
//!   are not taken for years.)
//! - `yyyy/MM/dd HH:mm:ss Z` and `yyyy/MM/dd Z`, the other default of `dynamic_date_formats`.
//! - `epoch_millis` in `date` fields: a number, or a string of digits.
//!
//! The Cloudify shapes with a space (`2016-06-15 10:13:20.123+0000`) match none of them, as in
//! Elasticsearch: such a string is mapped as `text`.

/// A string dynamic mapping takes for a date.
pub(super) fn detect(text: &str) -> Option<i64> {
    strict_date_optional_time(text.as_bytes()).or_else(|| slash_date(text.as_bytes()))
}

/// A string a `date` field accepts (`strict_date_optional_time||epoch_millis`).
pub(super) fn parse_field_string(text: &str) -> Option<i64> {
    if let Some(millis) = detect(text) {
        return Some(millis);
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return text.parse::<i64>().ok();
    }
    None
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, count: usize) -> Option<i64> {
        let end = self.at.checked_add(count)?;
        let slice = self.bytes.get(self.at..end)?;
        let mut value = 0i64;
        for byte in slice {
            if !byte.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(byte - b'0');
        }
        self.at = end;
        Some(value)
    }

    fn eat(&mut self, expected: u8) -> bool {
        if self.bytes.get(self.at) == Some(&expected) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// `Z`, `+HH`, `+HHmm` or `+HH:mm`, as an offset in minutes east of UTC.
    fn zone(&mut self) -> Option<i64> {
        if self.eat(b'Z') {
            return Some(0);
        }
        let sign = match self.peek()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        self.at += 1;
        let hours = self.digits(2)?;
        let minutes = if self.done() {
            0
        } else {
            self.eat(b':');
            self.digits(2)?
        };
        if hours > 18 || minutes > 59 {
            return None;
        }
        Some(sign * (hours * 60 + minutes))
    }
}

fn strict_date_optional_time(bytes: &[u8]) -> Option<i64> {
    let mut cursor = Cursor { bytes, at: 0 };
    let year = cursor.digits(4)?;
    if !cursor.eat(b'-') {
        return None;
    }
    let month = cursor.digits(2)?;
    if !cursor.eat(b'-') {
        return None;
    }
    let day = cursor.digits(2)?;
    let date = days_from_civil(year, month, day)?;
    if cursor.done() {
        return Some(date * 86_400_000);
    }
    if !cursor.eat(b'T') {
        return None;
    }
    let hour = cursor.digits(2)?;
    if !cursor.eat(b':') {
        return None;
    }
    let minute = cursor.digits(2)?;
    let mut second = 0;
    let mut millis = 0;
    if cursor.eat(b':') {
        second = cursor.digits(2)?;
        if cursor.eat(b'.') || cursor.eat(b',') {
            let start = cursor.at;
            while cursor.peek().is_some_and(|byte| byte.is_ascii_digit()) {
                cursor.at += 1;
            }
            let fraction = &bytes[start..cursor.at];
            if fraction.is_empty() || fraction.len() > 9 {
                return None;
            }
            for (position, digit) in fraction.iter().take(3).enumerate() {
                millis += i64::from(digit - b'0') * [100, 10, 1][position];
            }
        }
    }
    let offset = if cursor.done() { 0 } else { cursor.zone()? };
    if !cursor.done() || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(date * 86_400_000 + ((hour * 60 + minute - offset) * 60 + second) * 1_000 + millis)
}

fn slash_date(bytes: &[u8]) -> Option<i64> {
    let mut cursor = Cursor { bytes, at: 0 };
    let year = cursor.digits(4)?;
    if !cursor.eat(b'/') {
        return None;
    }
    let month = cursor.digits(2)?;
    if !cursor.eat(b'/') {
        return None;
    }
    let day = cursor.digits(2)?;
    let date = days_from_civil(year, month, day)?;
    let mut seconds = 0;
    if cursor.eat(b' ') && cursor.peek().is_some_and(|byte| byte.is_ascii_digit()) {
        let hour = cursor.digits(2)?;
        let minute = cursor.eat(b':').then(|| cursor.digits(2)).flatten()?;
        let second = cursor.eat(b':').then(|| cursor.digits(2)).flatten()?;
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        seconds = (hour * 60 + minute) * 60 + second;
        cursor.eat(b' ');
    }
    let offset = if cursor.done() { 0 } else { cursor.zone()? };
    if !cursor.done() {
        return None;
    }
    Some(date * 86_400_000 + (seconds - offset * 60) * 1_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date; None when the date does not exist.
fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let days_in_month = *month_days.get(usize::try_from(month - 1).ok()?)?;
    if day < 1 || day > days_in_month {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_are_detected_and_converted_to_utc_millis() {
        let cases = [
            ("1970-01-01", 0),
            ("2016-06-15", 1_465_948_800_000),
            ("2016-06-15T10:13:20.123Z", 1_465_985_600_123),
            ("2016-06-15T10:13:20.123456789Z", 1_465_985_600_123),
            ("2016-06-15T10:13:20Z", 1_465_985_600_000),
            ("2016-06-15T10:13Z", 1_465_985_580_000),
            ("2016-06-15T10:13:20", 1_465_985_600_000),
            ("2016-06-15T12:13:20+02:00", 1_465_985_600_000),
            ("2016-06-15T12:13:20+0200", 1_465_985_600_000),
            ("2016-06-15T08:13:20-02", 1_465_985_600_000),
            ("2016/06/15 10:13:20 +0000", 1_465_985_600_000),
            ("2016/06/15", 1_465_948_800_000),
            ("1969-12-31T23:59:59Z", -1_000),
        ];
        for (text, millis) in cases {
            assert_eq!(detect(text), Some(millis), "{text}");
        }
    }

    #[test]
    fn other_strings_are_not_dates() {
        for text in [
            "2016-06-15 10:13:20.123+0000",
            "2016-06-15 10:13:20.123",
            "2016-02-30",
            "2016-13-01",
            "2016-06-15T24:00:00Z",
            "2016-06-15T10:13:20.Z",
            "2016",
            "2016-06",
            "20160615",
            "nodecellar",
            "",
        ] {
            assert_eq!(detect(text), None, "{text}");
        }
        assert_eq!(parse_field_string("1465985600123"), Some(1_465_985_600_123));
        assert_eq!(parse_field_string("-5"), Some(-5));
        assert_eq!(parse_field_string("12a"), None);
    }
}
