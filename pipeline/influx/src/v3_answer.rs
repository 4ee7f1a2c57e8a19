//! What InfluxDB 3 (Core, Enterprise) says about the lines it refused, read into which line of
//! the request got which refusal.
//!
//! `POST /api/v3/write_lp` answers `204` when every line was written. Otherwise (as
//! `influxdb3_server`'s `http.rs` builds it):
//!
//! - `accept_partial=true`: `400` (`422` when a schema or database limit was hit) with
//!   `{"error": "partial write of line protocol occurred", "data": [{"original_line": ..,
//!   "line_number": .., "error_message": ..}, ..]}`. The lines not listed **were written**;
//! - `accept_partial=false`: `400` with `{"error": "parsing failed for write_lp endpoint",
//!   "data": {"original_line": .., "line_number": .., "error_message": ..}}` for the first bad
//!   line, and **nothing** of the request was written.
//!
//! A line is taken as named only when its `original_line` is the text sent at `line_number`
//! (1-based), or, because some of the server's errors count from 0, at `line_number - 1`, or
//! when the text is found exactly once in the request. When any entry names no line this way
//! (no text, a text the server reflowed, a line sent twice), or when the list may have been cut
//! (the documentation speaks of "up to 100" rejected points), the answer does not say which
//! lines were refused, and the writer isolates them by halving as it does for 1.x.

use influxdb_line_protocol::split_lines;
use serde_json::Value;
use sluice_core::rejection::{Reason, Refusal};
use sluice_http::truncate_detail;

/// At or beyond this many entries, the server may have left refused lines unlisted.
const LISTED_AT_MOST: usize = 100;

/// The refused lines of one v3 answer.
#[derive(Debug, PartialEq)]
pub enum V3Refusal {
    /// A partial write: these lines (index in the request, refusal) were refused, every other
    /// line was written.
    Partial(Vec<(usize, Refusal)>),
    /// `accept_partial=false`: the request was refused whole for this line; nothing written.
    Whole { line: usize, refusal: Refusal },
    /// The answer names no line we can trust: isolate the refused ones by halving.
    Unnamed,
}

/// Reads a 400/422 body for the request `lines` (the request body as sent, `line_count`
/// lines).
pub fn read_refusal(status: u16, body: &[u8], lines: &[u8], line_count: usize) -> V3Refusal {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return V3Refusal::Unnamed;
    };
    let Ok(text) = std::str::from_utf8(lines) else {
        return V3Refusal::Unnamed;
    };
    let sent: Vec<&str> = request_lines(text).collect();
    if sent.len() != line_count {
        // Lines split otherwise than the writer wrote them cannot be told apart.
        return V3Refusal::Unnamed;
    }
    match answer.get("data") {
        Some(Value::Array(entries)) => {
            if entries.is_empty() || entries.len() >= LISTED_AT_MOST {
                return V3Refusal::Unnamed;
            }
            let mut refused = Vec::with_capacity(entries.len());
            for entry in entries {
                let Some(named) = named_line(status, entry, &sent) else {
                    return V3Refusal::Unnamed;
                };
                refused.push(named);
            }
            refused.sort_by_key(|(line, _)| *line);
            refused.dedup_by_key(|(line, _)| *line);
            V3Refusal::Partial(refused)
        }
        Some(entry @ Value::Object(_)) => match named_line(status, entry, &sent) {
            Some((line, refusal)) => V3Refusal::Whole { line, refusal },
            None => V3Refusal::Unnamed,
        },
        _ => V3Refusal::Unnamed,
    }
}

/// The lines of a request as the server numbers them: blank lines are skipped by its parser
/// (the writer never sends any, nor comments).
fn request_lines(text: &str) -> impl Iterator<Item = &str> {
    split_lines(text).filter(|line| !line.trim().is_empty())
}

/// The line an entry names, with its refusal; `None` when it names none we can trust.
fn named_line(status: u16, entry: &Value, sent: &[&str]) -> Option<(usize, Refusal)> {
    let original = entry.get("original_line")?.as_str()?;
    let message = entry
        .get("error_message")
        .and_then(Value::as_str)
        .unwrap_or("refused");
    let number = entry.get("line_number").and_then(Value::as_u64);
    let is_sent_at = |index: usize| sent.get(index).is_some_and(|line| *line == original);
    let by_number = number.and_then(|number| {
        let number = usize::try_from(number).ok()?;
        [number.checked_sub(1), Some(number)]
            .into_iter()
            .flatten()
            .find(|index| is_sent_at(*index))
    });
    let index = by_number.or_else(|| {
        let mut found = sent
            .iter()
            .enumerate()
            .filter(|(_, line)| **line == original);
        match (found.next(), found.next()) {
            (Some((index, _)), None) => Some(index),
            _ => None,
        }
    })?;
    let detail = truncate_detail(format!(
        "influxdb answered {status}: line {}: {message}",
        index + 1
    ));
    Some((index, Refusal::new(line_reason(message), detail)))
}

/// The dead-letter reason for one line InfluxDB 3 refused, from its error text.
pub(crate) fn line_reason(message: &str) -> Reason {
    // "invalid column type for column 'v', expected iox::column_type::field::float, got ..."
    // (3.x) and "invalid field value in line protocol for field 'v' on line 1: expected type
    // ..." (earlier).
    if message.contains("invalid column type") || message.contains("invalid field value") {
        return Reason::FieldTypeConflict;
    }
    if message.contains("retention") {
        return Reason::BeyondRetention;
    }
    // The line-protocol parser's own errors.
    const PARSE_ERRORS: [&str; 9] = [
        "No fields were provided",
        "Unable to parse",
        "Could not parse entire line",
        "Invalid measurement",
        "Tag Set Malformed",
        "duplicate tags",
        "may not end with a backslash",
        "generic parsing error",
        "failed to parse",
    ];
    if PARSE_ERRORS.iter().any(|error| message.contains(error)) {
        return Reason::BadLine;
    }
    Reason::Rejected
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: &[u8] = b"cpu v=1 1\ncpu v=\"x\" 2\nmem v=3 3\ncpu v=\"y\" 4\n";

    fn count(lines: &[u8]) -> usize {
        lines.iter().filter(|byte| **byte == b'\n').count()
    }

    fn reasons(refusal: &V3Refusal) -> Vec<(usize, &str)> {
        match refusal {
            V3Refusal::Partial(lines) => lines
                .iter()
                .map(|(line, refusal)| (*line, refusal.reason.as_str()))
                .collect(),
            V3Refusal::Whole { line, refusal } => vec![(*line, refusal.reason.as_str())],
            V3Refusal::Unnamed => Vec::new(),
        }
    }

    #[test]
    fn a_partial_write_names_its_refused_lines_by_number_and_text() {
        let body = br#"{"error":"partial write of line protocol occurred","data":[
            {"original_line":"cpu v=\"x\" 2","line_number":2,"error_message":"invalid column type for column 'v', expected iox::column_type::field::float, got iox::column_type::field::string"},
            {"original_line":"cpu v=\"y\" 4","line_number":4,"error_message":"invalid field value in line protocol for field 'v' on line 3: expected type iox::column_type::field::float, but got iox::column_type::field::string"}]}"#;
        let refusal = read_refusal(400, body, LINES, count(LINES));
        assert_eq!(
            reasons(&refusal),
            [(1, "field_type_conflict"), (3, "field_type_conflict")]
        );
        let V3Refusal::Partial(lines) = refusal else {
            panic!("{refusal:?}")
        };
        assert!(
            lines[0]
                .1
                .detail
                .starts_with("influxdb answered 400: line 2: invalid column type"),
            "{}",
            lines[0].1.detail
        );
    }

    #[test]
    fn a_zero_based_line_number_is_matched_by_its_text() {
        let body = br#"{"error":"partial write of line protocol occurred","data":[
            {"original_line":"mem v=3 3","line_number":2,"error_message":"write to table mem had the incorrect series key"}]}"#;
        assert_eq!(
            reasons(&read_refusal(400, body, LINES, count(LINES))),
            [(2, "rejected")]
        );
    }

    #[test]
    fn a_refusal_of_the_whole_request_names_one_line() {
        let body = br#"{"error":"parsing failed for write_lp endpoint","data":{"original_line":"mem v=3 3","line_number":3,"error_message":"No fields were provided"}}"#;
        let refusal = read_refusal(400, body, LINES, count(LINES));
        assert!(
            matches!(refusal, V3Refusal::Whole { line: 2, .. }),
            "{refusal:?}"
        );
        assert_eq!(reasons(&refusal), [(2, "bad_line")]);
    }

    #[test]
    fn answers_that_name_no_line_we_can_trust_are_unnamed() {
        let cases: [&[u8]; 6] = [
            b"not json",
            br#"{"error":"invalid character in database name"}"#,
            br#"{"error":"partial write of line protocol occurred","data":[{"error_message":"only a message"}]}"#,
            br#"{"error":"partial write of line protocol occurred","data":[{"original_line":"reflowed","line_number":1,"error_message":"x"}]}"#,
            br#"{"error":"partial write of line protocol occurred","data":[]}"#,
            br#"{"error":"partial write of line protocol occurred","data":[{"original_line":"cpu v=1 1","line_number":1,"error_message":"x"}, {"line_number":2}]}"#,
        ];
        for body in cases {
            assert_eq!(
                read_refusal(400, body, LINES, count(LINES)),
                V3Refusal::Unnamed,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn lines_counted_otherwise_than_written_are_unnamed() {
        let body =
            br#"{"data":[{"original_line":"cpu v=1 1","line_number":1,"error_message":"x"}]}"#;
        assert_eq!(read_refusal(400, body, LINES, 3), V3Refusal::Unnamed);
    }

    #[test]
    fn a_line_sent_twice_is_named_only_by_its_number() {
        let lines = b"a v=1 1\na v=1 1\n";
        let by_number =
            br#"{"data":[{"original_line":"a v=1 1","line_number":2,"error_message":"x"}]}"#;
        assert_eq!(
            reasons(&read_refusal(400, by_number, lines, count(lines))),
            [(1, "rejected")]
        );
        let no_number = br#"{"data":[{"original_line":"a v=1 1","error_message":"x"}]}"#;
        assert_eq!(
            read_refusal(400, no_number, lines, count(lines)),
            V3Refusal::Unnamed
        );
    }

    #[test]
    fn a_list_that_may_have_been_cut_is_unnamed() {
        let mut lines = String::new();
        let mut entries = Vec::new();
        for index in 0..LISTED_AT_MOST {
            let line = format!("m v=\"s\" {index}");
            entries.push(serde_json::json!({
                "original_line": line, "line_number": index + 1, "error_message": "x"
            }));
            lines.push_str(&line);
            lines.push('\n');
        }
        let body = serde_json::json!({"error": "partial", "data": entries}).to_string();
        assert_eq!(
            read_refusal(
                400,
                body.as_bytes(),
                lines.as_bytes(),
                count(lines.as_bytes())
            ),
            V3Refusal::Unnamed
        );
    }
}
