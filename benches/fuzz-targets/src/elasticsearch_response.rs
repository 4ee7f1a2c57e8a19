//! Elasticsearch's answers: the `_bulk` answer, read item by item into one outcome per
//! document, and the error text of any other answer.
//!
//! The input is the answer's body, read as the answer to a request of as many documents as it
//! has items (and of one more, which must be refused as a count mismatch). When it is read:
//!
//! - there is one outcome and one status per document;
//! - without `"errors": true`, every document is delivered;
//! - an item's 401 or 403 is reported, and only then;
//! - a refused document carries a detail cut to the detail limit.

use serde_json::Value;
use sluice_core::outcome::ItemOutcome;
use sluice_elasticsearch::answers::{UnreadableResponse, error_message, read_bulk_response};

/// A detail is cut to `sluice_http::MAX_DETAIL_BYTES` and marked with one more character.
const MAX_DETAIL_BYTES: usize = 1024 + '…'.len_utf8();

/// Reads `data` as an answer; panics when a property above does not hold.
pub fn elasticsearch_response(data: &[u8]) {
    let _ = error_message(data);

    // How many items the answer has, as the reader counts them: serde_json's `Value` refuses
    // some numbers (`1e999`) that the reader skips over unread.
    let items = match read_bulk_response(data, 0) {
        Ok(_) => 0,
        Err(UnreadableResponse::CountMismatch { sent, answered }) => {
            assert_eq!(sent, 0, "counted otherwise");
            answered
        }
        Err(UnreadableResponse::Malformed(_)) => return,
    };
    match read_bulk_response(data, items + 1) {
        Err(UnreadableResponse::CountMismatch { sent, answered }) => {
            assert_eq!((sent, answered), (items + 1, items), "counted otherwise");
        }
        other => panic!(
            "{items} items read as the answer for {}: {other:?}",
            items + 1
        ),
    }
    let read = match read_bulk_response(data, items) {
        Ok(read) => read,
        Err(error) => panic!("{items} items not read as the answer for {items}: {error}"),
    };
    assert_eq!(read.outcomes.len(), items, "outcomes for {items} documents");
    assert_eq!(read.statuses.len(), items, "statuses for {items} documents");
    let errors = serde_json::from_slice::<Value>(data)
        .ok()
        .and_then(|answer| answer.get("errors")?.as_bool());
    // Where `Value` reads the answer too, its `errors` says what the outcomes must be.
    if errors == Some(false) {
        assert!(
            read.outcomes
                .iter()
                .all(|outcome| *outcome == ItemOutcome::Delivered),
            "an answer without errors did not deliver everything: {read:?}"
        );
    } else if errors == Some(true) {
        let unauthorized = read
            .statuses
            .iter()
            .rev()
            .find(|status| matches!(status, 401 | 403))
            .copied();
        assert_eq!(
            read.unauthorized, unauthorized,
            "statuses {:?}",
            read.statuses
        );
    }
    for outcome in &read.outcomes {
        if let ItemOutcome::Reject { detail, .. } | ItemOutcome::Retry { detail, .. } = outcome {
            assert!(
                detail.len() <= MAX_DETAIL_BYTES,
                "a detail of {} bytes",
                detail.len()
            );
        }
    }
}
