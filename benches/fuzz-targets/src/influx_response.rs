//! InfluxDB's answers to a refused write: the error text of any answer (1.x, 2.x) and
//! InfluxDB 3's partial-write bodies, which name the refused lines.
//!
//! The input is `<answer body> NUL <request lines>`, or an answer alone to a request of three
//! lines. The status is 400, or 422 when the request's first line starts with `422`. A v3 answer
//! is only trusted where it names lines of the request:
//!
//! - a partial write names each refused line once, in order, each a line of the request, whose
//!   refusal detail names that line and is cut to the detail limit;
//! - a whole refusal names one line of the request.

use influxdb_line_protocol::split_lines;
use sluice_core::rejection::Refusal;
use sluice_influx::answers::{V3Refusal, error_message, read_refusal};

use crate::split_at_nul;

/// The request of an answer that comes alone.
const REQUEST: &[u8] = b"cpu,host=a value=1 1466000000000000000\n\
    cpu,host=b value=2 1466000000000000000\n\
    mem,host=a used=3i 1466000000000000000\n";

/// A detail is cut to `sluice_http::MAX_DETAIL_BYTES` and marked with one more character.
const MAX_DETAIL_BYTES: usize = 1024 + '…'.len_utf8();

/// Reads `data` as an answer to a request; panics when a property above does not hold.
pub fn influx_response(data: &[u8]) {
    let (body, lines) = split_at_nul(data).unwrap_or((data, REQUEST));
    // Error texts of every API: anything at all is some text.
    let _ = error_message(body);

    let status = if lines.starts_with(b"422") { 422 } else { 400 };
    // As the writer counts them (a line break inside a quoted string value is no line's end),
    // so that the answer is read against the request it answers.
    let line_count = std::str::from_utf8(lines).map_or(0, |text| {
        split_lines(text)
            .filter(|line| !line.trim().is_empty())
            .count()
    });
    match read_refusal(status, body, lines, line_count) {
        V3Refusal::Partial(refused) => {
            assert!(!refused.is_empty(), "a partial write of no line");
            for pair in refused.windows(2) {
                assert!(pair[0].0 < pair[1].0, "lines named out of order or twice");
            }
            for (line, refusal) in &refused {
                assert_names(*line, refusal, line_count);
            }
        }
        V3Refusal::Whole { line, refusal } => assert_names(line, &refusal, line_count),
        V3Refusal::Unnamed => {}
    }
}

fn assert_names(line: usize, refusal: &Refusal, line_count: usize) {
    assert!(line < line_count, "line {line} named of {line_count}");
    assert!(
        refusal.detail.contains(&format!(": line {}: ", line + 1)),
        "the detail does not name line {}: {}",
        line + 1,
        refusal.detail
    );
    assert!(
        refusal.detail.len() <= MAX_DETAIL_BYTES,
        "a detail of {} bytes",
        refusal.detail.len()
    );
}
