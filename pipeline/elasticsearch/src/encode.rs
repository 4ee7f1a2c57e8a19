//! One document to its two lines of an NDJSON `_bulk` body:
//!
//! ```text
//! {"create":{"_index":"logstash-2016.06.15","_id":"a1b2c3"}}
//! {"@timestamp":"2016-06-15T10:13:20.123Z","type":"cloudify_event",...}
//! ```
//!
//! The action line is built from typed parts, the index and id escaped as JSON strings exactly
//! as `serde_json` escapes them, so no index name or id can break out of its string. The source
//! line is the document's own JSON, copied as it is: [`validate_document`] first refuses what
//! would break the body's framing or make Elasticsearch refuse the whole request (and with it
//! every other document of the batch) instead of just that document.

use serde::de::IgnoredAny;
use sluice_core::document::Document;
use sluice_core::rejection::{Reason, Rejection};

/// Elasticsearch refuses a whole bulk request (`action_request_validation_exception`) when an
/// `_id` is longer than this.
pub const MAX_ID_BYTES: usize = 512;

/// Why a document cannot go into a bulk body. It is dead-lettered as `invalid_document`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDocument {
    /// A raw newline would end the source line early and misalign every line after it.
    #[error("the source contains a raw newline at byte {position}")]
    NewlineInSource { position: usize },
    /// Elasticsearch stores JSON objects only.
    #[error("the source is not a json object: {detail}")]
    NotAnObject { detail: String },
    /// Elasticsearch refuses the whole request for an empty `_index` ("index is missing").
    #[error("the index is empty")]
    EmptyIndex,
    /// Elasticsearch refuses the whole request for an empty `_id`; the sink never lets
    /// Elasticsearch pick one (that would make redeliveries duplicates).
    #[error("the id is empty")]
    EmptyId,
    /// Elasticsearch refuses the whole request for an `_id` over 512 bytes.
    #[error("the id is {length} bytes long, more than the {MAX_ID_BYTES} Elasticsearch accepts")]
    IdTooLong { length: usize },
}

impl Rejection for InvalidDocument {
    fn reason(&self) -> Reason {
        Reason::InvalidDocument
    }
}

/// Checks that `document` can be written on its own: a one-line JSON object with an index and
/// an id Elasticsearch accepts in a bulk request.
pub fn validate_document(document: &Document) -> Result<(), InvalidDocument> {
    if document.index.is_empty() {
        return Err(InvalidDocument::EmptyIndex);
    }
    if document.id.is_empty() {
        return Err(InvalidDocument::EmptyId);
    }
    if document.id.len() > MAX_ID_BYTES {
        return Err(InvalidDocument::IdTooLong {
            length: document.id.len(),
        });
    }
    let source = &document.source[..];
    if let Some(position) = source.iter().position(|byte| *byte == b'\n') {
        return Err(InvalidDocument::NewlineInSource { position });
    }
    let first = source
        .iter()
        .find(|byte| !matches!(byte, b' ' | b'\t' | b'\r'));
    if first != Some(&b'{') {
        return Err(InvalidDocument::NotAnObject {
            detail: "it does not start with '{'".to_owned(),
        });
    }
    // Well-formed to the end, one value and nothing after it; nothing is allocated.
    serde_json::from_slice::<IgnoredAny>(source).map_err(|error| InvalidDocument::NotAnObject {
        detail: error.to_string(),
    })?;
    Ok(())
}

/// Appends the NDJSON action and source lines of one document:
/// `{"create":{"_index":..,"_id":..}}\n<source>\n`.
///
/// The action is always `create` (fails with 409 when the id exists, which the writer counts
/// as delivered), without `_type` (Elasticsearch 7 and 8 have no mapping types). The source is
/// copied as it is: call [`validate_document`] first.
pub fn encode_document(buf: &mut Vec<u8>, document: &Document) {
    buf.extend_from_slice(br#"{"create":{"_index":"#);
    write_json_string(buf, &document.index);
    buf.extend_from_slice(br#","_id":"#);
    write_json_string(buf, &document.id);
    buf.extend_from_slice(b"}}\n");
    buf.extend_from_slice(&document.source);
    buf.push(b'\n');
}

/// Writes `text` as a JSON string, escaped by serde_json, so that no index name or id can break
/// out of its string.
fn write_json_string(buf: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *buf, text)
        .expect("serialising a string into a Vec<u8> cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn document(index: &str, id: &str, source: &str) -> Document {
        Document {
            index: index.to_owned(),
            id: id.to_owned(),
            source: Bytes::copy_from_slice(source.as_bytes()),
        }
    }

    #[test]
    fn a_document_becomes_an_action_line_and_its_source_line() {
        let mut buf = Vec::new();
        encode_document(
            &mut buf,
            &document(
                "logstash-2016.06.15",
                "7f3a9c",
                r#"{"@timestamp":"2016-06-15T10:13:20.123Z","type":"cloudify_event"}"#,
            ),
        );
        encode_document(&mut buf, &document("i", "2", "{}"));
        assert_eq!(
            String::from_utf8(buf).expect("utf-8"),
            "{\"create\":{\"_index\":\"logstash-2016.06.15\",\"_id\":\"7f3a9c\"}}\n\
             {\"@timestamp\":\"2016-06-15T10:13:20.123Z\",\"type\":\"cloudify_event\"}\n\
             {\"create\":{\"_index\":\"i\",\"_id\":\"2\"}}\n\
             {}\n"
        );
    }

    #[test]
    fn index_and_id_are_escaped_as_json_strings() {
        let mut buf = Vec::new();
        encode_document(
            &mut buf,
            &document("a\"b\\c", "line\nbreak\ttab\u{1}\u{7f}é😀", "{}"),
        );
        assert_eq!(
            String::from_utf8(buf).expect("utf-8"),
            "{\"create\":{\"_index\":\"a\\\"b\\\\c\",\"_id\":\"line\\nbreak\\ttab\\u0001\u{7f}é😀\"}}\n{}\n"
        );
    }

    #[test]
    fn documents_that_would_break_the_request_are_invalid() {
        let cases = [
            (document("i", "1", "{\"a\":\n1}"), "raw newline at byte 5"),
            (document("i", "1", "[1,2]"), "not a json object"),
            (document("i", "1", "\"text\""), "not a json object"),
            (document("i", "1", "{\"a\":1} {}"), "trailing characters"),
            (document("i", "1", "{\"a\":"), "not a json object"),
            (document("i", "1", ""), "not a json object"),
            (document("", "1", "{}"), "the index is empty"),
            (document("i", "", "{}"), "the id is empty"),
            (document("i", &"x".repeat(513), "{}"), "513 bytes long"),
        ];
        for (document, expected) in cases {
            let error = validate_document(&document).expect_err(expected);
            assert!(error.to_string().contains(expected), "{error}");
            assert_eq!(error.reason(), "invalid_document");
        }
        for valid in [
            document("i", "1", "{}"),
            document("i", "1", " \t{\"a\":[1,{\"b\":null}]}\r"),
            document("i", &"x".repeat(512), "{\"s\":\"with \\n escaped\"}"),
        ] {
            assert_eq!(validate_document(&valid), Ok(()), "{valid:?}");
        }
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Action {
        create: Meta,
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Meta {
        _index: String,
        _id: String,
    }

    proptest! {
        #[test]
        fn the_action_line_is_json_that_round_trips(
            index in any::<String>(),
            id in any::<String>(),
        ) {
            let mut buf = Vec::new();
            encode_document(&mut buf, &document(&index, &id, "{}"));
            let text = String::from_utf8(buf).expect("utf-8");
            let lines: Vec<&str> = text.split('\n').collect();
            prop_assert_eq!(lines.len(), 3, "{:?}", text);
            prop_assert_eq!(lines[1], "{}");
            prop_assert_eq!(lines[2], "");
            let action: Action = serde_json::from_str(lines[0]).expect("valid json");
            prop_assert_eq!(&action.create._index, &index);
            prop_assert_eq!(&action.create._id, &id);
        }

        #[test]
        fn every_json_object_without_raw_newlines_is_valid(
            value in proptest::collection::btree_map(any::<String>(), any::<i64>(), 0..8),
        ) {
            let source = serde_json::to_vec(&value).expect("serialise");
            let document = Document {
                index: "i".into(),
                id: "1".into(),
                source: Bytes::from(source),
            };
            prop_assert_eq!(validate_document(&document), Ok(()));
        }
    }
}
