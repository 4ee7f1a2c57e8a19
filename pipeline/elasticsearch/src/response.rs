//! Reading a `_bulk` answer: one outcome per document, from its item's `status` and `error`.
//!
//! Elasticsearch answers 200 to a bulk request it could parse, whatever happened to its
//! documents, and reports each document in `items`, in the order they were sent:
//!
//! ```json
//! {"took":30,"errors":true,"items":[
//!   {"create":{"_index":"i","_id":"1","_version":1,"result":"created","status":201,..}},
//!   {"create":{"_index":"i","_id":"2","status":409,
//!     "error":{"type":"version_conflict_engine_exception","reason":"[2]: version conflict, .."}}}]}
//! ```
//!
//! | item status          | outcome                                                      |
//! |----------------------|--------------------------------------------------------------|
//! | 2xx                  | `Delivered`                                                  |
//! | 409                  | `Delivered`: a `create` of an id that exists, so a redelivery |
//! | 401, 403             | `Retry`: a missing privilege holds deliveries, logged as an error |
//! | 429, 5xx, other      | `Retry`                                                      |
//! | other 4xx            | `Reject`: `mapping_conflict`, `illegal_argument` or `rejected` |
//!
//! The structs borrow from the response body; only error texts with escapes are copied.

use std::borrow::Cow;

use serde::Deserialize;
use sluice_core::outcome::ItemOutcome;
use sluice_core::rejection::Reason;

use sluice_http::truncate_detail;

#[derive(Debug, Deserialize)]
struct BulkResponse<'a> {
    errors: bool,
    #[serde(borrow)]
    items: Vec<BulkItem<'a>>,
}

/// One item: an object with a single key, the action it answers.
#[derive(Debug, Deserialize)]
struct BulkItem<'a> {
    #[serde(borrow, alias = "index", alias = "update", alias = "delete")]
    create: ItemResult<'a>,
}

#[derive(Debug, Deserialize)]
struct ItemResult<'a> {
    status: u16,
    #[serde(borrow, default)]
    error: Option<ItemError<'a>>,
}

#[derive(Debug, Deserialize)]
struct ItemError<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
}

/// A bulk answer turned into outcomes.
#[derive(Debug, PartialEq)]
pub struct ItemOutcomes {
    pub outcomes: Vec<ItemOutcome>,
    /// Each item's own status, for the items counter.
    pub statuses: Vec<u16>,
    /// An item answered 401 or 403 (a privilege is missing on some index): this status.
    pub unauthorized: Option<u16>,
}

/// Why a 200 answer could not be read item by item; every document of the request is retried.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum UnreadableResponse {
    #[error("the bulk response is not what elasticsearch answers: {0}")]
    Malformed(String),
    #[error("the bulk response has {answered} items for {sent} documents")]
    CountMismatch { sent: usize, answered: usize },
}

/// Reads the body of a 2xx bulk answer to a request of `sent` documents.
pub fn read_bulk_response(body: &[u8], sent: usize) -> Result<ItemOutcomes, UnreadableResponse> {
    let response: BulkResponse<'_> = serde_json::from_slice(body)
        .map_err(|error| UnreadableResponse::Malformed(error.to_string()))?;
    if response.items.len() != sent {
        return Err(UnreadableResponse::CountMismatch {
            sent,
            answered: response.items.len(),
        });
    }
    let statuses: Vec<u16> = response
        .items
        .iter()
        .map(|item| item.create.status)
        .collect();
    if !response.errors {
        return Ok(ItemOutcomes {
            outcomes: vec![ItemOutcome::Delivered; sent],
            statuses,
            unauthorized: None,
        });
    }
    let mut unauthorized = None;
    let outcomes = response
        .items
        .iter()
        .map(|item| {
            let result = &item.create;
            if matches!(result.status, 401 | 403) {
                unauthorized = Some(result.status);
            }
            item_outcome(result)
        })
        .collect();
    Ok(ItemOutcomes {
        outcomes,
        statuses,
        unauthorized,
    })
}

fn item_outcome(result: &ItemResult<'_>) -> ItemOutcome {
    match result.status {
        200..=299 | 409 => ItemOutcome::Delivered,
        401 | 403 | 429 => ItemOutcome::Retry {
            after: None,
            detail: item_detail(result),
        },
        400..=499 => ItemOutcome::Reject {
            reason: rejection_reason(result.error.as_ref().map_or("", |error| &error.kind)),
            detail: item_detail(result),
        },
        _ => ItemOutcome::Retry {
            after: None,
            detail: item_detail(result),
        },
    }
}

/// `<type>: <reason>`, cut to a kibibyte; the status alone when the item has no error.
fn item_detail(result: &ItemResult<'_>) -> String {
    match &result.error {
        Some(ItemError {
            kind,
            reason: Some(reason),
        }) => truncate_detail(format!("{kind}: {reason}")),
        Some(ItemError { kind, reason: None }) => truncate_detail(kind.to_string()),
        None => format!("elasticsearch answered {} for the document", result.status),
    }
}

/// The dead-letter reason for a document Elasticsearch refused, from its error `type`.
pub(crate) fn rejection_reason(error_type: &str) -> Reason {
    match error_type {
        // Elasticsearch 7 and OpenSearch say `mapper_parsing_exception`, 8 says
        // `document_parsing_exception`; a strict mapping refuses a new field with the third.
        "mapper_parsing_exception"
        | "document_parsing_exception"
        | "strict_dynamic_mapping_exception" => Reason::MappingConflict,
        "illegal_argument_exception" => Reason::IllegalArgument,
        _ => Reason::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The success example of the bulk API reference (Elasticsearch 8), four actions.
    const DOCS_SUCCESS: &str = r#"{
       "took": 30,
       "errors": false,
       "items": [
          {"index": {"_index": "test", "_id": "1", "_version": 1, "result": "created",
                     "_shards": {"total": 2, "successful": 1, "failed": 0},
                     "status": 201, "_seq_no": 0, "_primary_term": 1}},
          {"delete": {"_index": "test", "_id": "2", "_version": 1, "result": "not_found",
                      "_shards": {"total": 2, "successful": 1, "failed": 0},
                      "status": 404, "_seq_no": 1, "_primary_term": 2}},
          {"create": {"_index": "test", "_id": "3", "_version": 1, "result": "created",
                      "_shards": {"total": 2, "successful": 1, "failed": 0},
                      "status": 201, "_seq_no": 2, "_primary_term": 3}},
          {"update": {"_index": "test", "_id": "1", "_version": 2, "result": "updated",
                      "_shards": {"total": 2, "successful": 1, "failed": 0},
                      "status": 200, "_seq_no": 3, "_primary_term": 4}}
       ]
    }"#;

    /// The failed-actions example of the bulk API reference: two updates of missing documents
    /// and one create.
    const DOCS_ERRORS: &str = r#"{
      "took": 486,
      "errors": true,
      "items": [
        {"update": {"_index": "index1", "_id": "5", "status": 404,
          "error": {"type": "document_missing_exception", "reason": "[5]: document missing",
                    "index_uuid": "aAsFqTI0Tc2W0LCWgPNrOA", "shard": "0", "index": "index1"}}},
        {"update": {"_index": "index1", "_id": "6", "status": 404,
          "error": {"type": "document_missing_exception", "reason": "[6]: document missing",
                    "index_uuid": "aAsFqTI0Tc2W0LCWgPNrOA", "shard": "0", "index": "index1"}}},
        {"create": {"_index": "index1", "_id": "7", "_version": 1, "result": "created",
          "_shards": {"total": 2, "successful": 1, "failed": 0},
          "_seq_no": 0, "_primary_term": 1, "status": 201}}
      ]
    }"#;

    /// What Elasticsearch 8 answers to `create`s of a new id, an existing id, a full write queue
    /// and a field of the wrong type; the 7.x shape (with `_type`) of the mapping error.
    const MIXED: &str = r#"{"took":12,"errors":true,"items":[
      {"create":{"_index":"logstash-2016.06.15","_id":"a","_version":1,"result":"created",
        "_shards":{"total":2,"successful":1,"failed":0},"_seq_no":4,"_primary_term":1,"status":201}},
      {"create":{"_index":"logstash-2016.06.15","_id":"b","status":409,
        "error":{"type":"version_conflict_engine_exception",
          "reason":"[b]: version conflict, document already exists (current version [1])",
          "index_uuid":"Cgw2bX1tRZC4pU0BO1fS0w","shard":"0","index":"logstash-2016.06.15"}}},
      {"create":{"_index":"logstash-2016.06.15","_id":"c","status":429,
        "error":{"type":"es_rejected_execution_exception",
          "reason":"rejected execution of primary operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, primary_operation_bytes=512, max_coordinating_and_primary_bytes=107374182]"}}},
      {"create":{"_index":"logstash-2016.06.15","_id":"d","status":400,
        "error":{"type":"document_parsing_exception",
          "reason":"[1:27] failed to parse field [context.node_id] of type [long] in document with id 'd'. Preview of field's value: 'nodejs_q1w2e'",
          "caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"nodejs_q1w2e\""}}}},
      {"create":{"_index":"logstash-2016.06.15","_type":"_doc","_id":"e","status":400,
        "error":{"type":"mapper_parsing_exception","reason":"failed to parse field [x] of type [long] in document with id 'e'"}}},
      {"create":{"_index":"Bad","_id":"f","status":400,
        "error":{"type":"invalid_index_name_exception","reason":"Invalid index name [Bad], must be lowercase","index_uuid":"_na_","index":"Bad"}}},
      {"create":{"_index":"i","_id":"g","status":400,
        "error":{"type":"illegal_argument_exception","reason":"Limit of total fields [1000] has been exceeded"}}},
      {"create":{"_index":"i","_id":"h","status":503,
        "error":{"type":"unavailable_shards_exception","reason":"[i][0] primary shard is not active"}}},
      {"create":{"_index":"i","_id":"j","status":403,
        "error":{"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized for API key id [x] of user [y] on indices [i]"}}}
    ]}"#;

    fn retry(detail: &str) -> ItemOutcome {
        ItemOutcome::Retry {
            after: None,
            detail: detail.to_owned(),
        }
    }

    #[test]
    fn an_answer_without_errors_delivers_everything_whatever_the_items_say() {
        let read = read_bulk_response(DOCS_SUCCESS.as_bytes(), 4).expect("readable");
        assert_eq!(read.outcomes, vec![ItemOutcome::Delivered; 4]);
        assert_eq!(read.statuses, [201, 404, 201, 200]);
        assert_eq!(read.unauthorized, None);
    }

    #[test]
    fn the_documented_error_example_is_read_item_by_item() {
        let read = read_bulk_response(DOCS_ERRORS.as_bytes(), 3).expect("readable");
        let missing = |id: u8| ItemOutcome::Reject {
            reason: Reason::Rejected,
            detail: format!("document_missing_exception: [{id}]: document missing"),
        };
        assert_eq!(
            read.outcomes,
            [missing(5), missing(6), ItemOutcome::Delivered]
        );
    }

    #[test]
    fn each_item_status_maps_to_its_outcome_in_place() {
        let read = read_bulk_response(MIXED.as_bytes(), 9).expect("readable");
        assert_eq!(read.statuses, [201, 409, 429, 400, 400, 400, 400, 503, 403]);
        assert_eq!(read.unauthorized, Some(403));
        assert_eq!(
            read.outcomes,
            [
                ItemOutcome::Delivered,
                ItemOutcome::Delivered,
                retry(
                    "es_rejected_execution_exception: rejected execution of primary operation \
                     [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, \
                     primary_operation_bytes=512, max_coordinating_and_primary_bytes=107374182]"
                ),
                ItemOutcome::Reject {
                    reason: Reason::MappingConflict,
                    detail: "document_parsing_exception: [1:27] failed to parse field \
                             [context.node_id] of type [long] in document with id 'd'. Preview \
                             of field's value: 'nodejs_q1w2e'"
                        .into(),
                },
                ItemOutcome::Reject {
                    reason: Reason::MappingConflict,
                    detail: "mapper_parsing_exception: failed to parse field [x] of type [long] \
                             in document with id 'e'"
                        .into(),
                },
                ItemOutcome::Reject {
                    reason: Reason::Rejected,
                    detail: "invalid_index_name_exception: Invalid index name [Bad], must be \
                             lowercase"
                        .into(),
                },
                ItemOutcome::Reject {
                    reason: Reason::IllegalArgument,
                    detail: "illegal_argument_exception: Limit of total fields [1000] has been \
                             exceeded"
                        .into(),
                },
                retry("unavailable_shards_exception: [i][0] primary shard is not active"),
                retry(
                    "security_exception: action [indices:data/write/bulk[s]] is unauthorized \
                     for API key id [x] of user [y] on indices [i]"
                ),
            ]
        );
    }

    #[test]
    fn a_wrong_item_count_or_an_unreadable_body_is_an_error() {
        assert_eq!(
            read_bulk_response(DOCS_ERRORS.as_bytes(), 4),
            Err(UnreadableResponse::CountMismatch {
                sent: 4,
                answered: 3
            })
        );
        // A count mismatch is caught even when `errors` is false.
        assert!(matches!(
            read_bulk_response(DOCS_SUCCESS.as_bytes(), 5),
            Err(UnreadableResponse::CountMismatch { .. })
        ));
        for body in [
            "",
            "<html>502 Bad Gateway</html>",
            r#"{"took":1,"items":[]}"#,
            r#"{"took":1,"errors":true,"items":[{"create":{"_id":"1"}}]}"#,
            r#"{"took":1,"errors":true,"items":[{"upsert":{"status":201}}]}"#,
        ] {
            assert!(
                matches!(
                    read_bulk_response(body.as_bytes(), 1),
                    Err(UnreadableResponse::Malformed(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn long_reasons_are_cut_and_escaped_text_is_unescaped() {
        let reason = "x".repeat(5000);
        let body = format!(
            r#"{{"took":1,"errors":true,"items":[{{"create":{{"_index":"i","_id":"1","status":400,"error":{{"type":"mapper_parsing_exception","reason":"say \"hi\" {reason}"}}}}}}]}}"#
        );
        let read = read_bulk_response(body.as_bytes(), 1).expect("readable");
        let ItemOutcome::Reject { reason, detail } = &read.outcomes[0] else {
            panic!("{:?}", read.outcomes);
        };
        assert_eq!(*reason, "mapping_conflict");
        assert!(detail.starts_with("mapper_parsing_exception: say \"hi\" xxx"));
        assert!(detail.len() <= 1024 + '…'.len_utf8(), "{}", detail.len());
    }

    #[test]
    fn reasons_come_from_the_error_type() {
        assert_eq!(
            rejection_reason("document_parsing_exception"),
            "mapping_conflict"
        );
        assert_eq!(
            rejection_reason("mapper_parsing_exception"),
            "mapping_conflict"
        );
        assert_eq!(
            rejection_reason("illegal_argument_exception"),
            "illegal_argument"
        );
        assert_eq!(rejection_reason("index_not_found_exception"), "rejected");
        assert_eq!(rejection_reason(""), "rejected");
    }
}
