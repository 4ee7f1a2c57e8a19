//! Reading an NDJSON `_bulk` body as Elasticsearch 8's bulk parser reads it, with its error
//! texts: the request is refused as a whole (400) when a line is not what it must be, and only
//! the documents' sources are left to be refused one by one.

use serde_json::{Map, Value};

use super::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpType {
    Index,
    Create,
    Update,
    Delete,
}

impl OpType {
    pub(super) fn name(self) -> &'static str {
        match self {
            OpType::Index => "index",
            OpType::Create => "create",
            OpType::Update => "update",
            OpType::Delete => "delete",
        }
    }
}

/// One action with its metadata and (but for `delete`) its source line.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Operation<'a> {
    pub(super) op_type: OpType,
    pub(super) index: String,
    /// `None`: Elasticsearch picks an id (`index` and `create` only).
    pub(super) id: Option<String>,
    /// The source line as sent, without its line end.
    pub(super) source: &'a str,
}

/// Parses a whole body; `default_index` is the `<index>` of `POST /<index>/_bulk`.
pub(super) fn parse_bulk<'a>(
    body: &'a str,
    default_index: Option<&str>,
) -> Result<Vec<Operation<'a>>, Failure> {
    if !body.is_empty() && !body.ends_with('\n') {
        return Err(Failure::illegal_argument(
            "The bulk request must be terminated by a newline [\\n]",
        ));
    }
    let mut lines = body.split('\n').enumerate().peekable();
    let mut operations = Vec::new();
    let mut validation_errors: Vec<String> = Vec::new();
    while let Some((line_index, line)) = lines.next() {
        let line_number = line_index + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let (op_type, metadata) = parse_action_line(line, line_number)?;
        let mut index = default_index.map(str::to_owned);
        let mut id = None;
        for (key, value) in &metadata {
            match key.as_str() {
                "_index" => index = Some(simple_value(value, key, line_number)?),
                "_id" => id = Some(simple_value(value, key, line_number)?),
                "routing" | "op_type" | "version_type" | "pipeline" | "version" | "if_seq_no"
                | "if_primary_term" | "retry_on_conflict" => {
                    simple_value(value, key, line_number)?;
                }
                "require_alias"
                | "require_data_stream"
                | "list_executed_pipelines"
                | "_source"
                | "dynamic_templates" => {}
                unknown => {
                    return Err(Failure::illegal_argument(format!(
                        "Action/metadata line [{line_number}] contains an unknown parameter \
                         [{unknown}]"
                    )));
                }
            }
        }
        let source = if op_type == OpType::Delete {
            ""
        } else {
            // A last action without its source line is dropped, as Elasticsearch drops it.
            let Some((_, source)) = lines.next() else {
                break;
            };
            if lines.peek().is_none() {
                // `source` was the empty remainder after the final newline.
                break;
            }
            source.trim_end_matches('\r')
        };

        let errors_before = validation_errors.len();
        match &index {
            None => validation_errors.push("index is missing".into()),
            Some(name) if name.is_empty() => validation_errors.push("index is missing".into()),
            Some(_) => {}
        }
        match &id {
            Some(id) if id.len() > 512 => validation_errors.push(format!(
                "id [{id}] is too long, must be no longer than 512 bytes but was: {}",
                id.len()
            )),
            Some(id) if id.is_empty() => {
                validation_errors.push("if _id is specified it must not be empty".into());
            }
            None if matches!(op_type, OpType::Update | OpType::Delete) => {
                validation_errors.push("id is missing".into());
            }
            _ => {}
        }
        if op_type != OpType::Delete && source.trim().is_empty() {
            validation_errors.push("source is missing".into());
        }
        if validation_errors.len() == errors_before {
            operations.push(Operation {
                op_type,
                index: index.unwrap_or_default(),
                id,
                source,
            });
        }
    }
    if operations.is_empty() && validation_errors.is_empty() {
        validation_errors.push("no requests added".into());
    }
    if !validation_errors.is_empty() {
        let numbered: String = validation_errors
            .iter()
            .enumerate()
            .map(|(number, error)| format!("{}: {error};", number + 1))
            .collect();
        return Err(Failure::new(
            400,
            "action_request_validation_exception",
            format!("Validation Failed: {numbered}"),
        ));
    }
    Ok(operations)
}

fn parse_action_line(
    line: &str,
    line_number: usize,
) -> Result<(OpType, Map<String, Value>), Failure> {
    let value: Value = serde_json::from_str(line).map_err(|error| {
        let message = error.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(text, _)| text);
        Failure::new(
            400,
            "x_content_parse_exception",
            format!("[{line_number}:{}] {message}", error.column()),
        )
    })?;
    let Value::Object(action) = value else {
        return Err(Failure::illegal_argument(format!(
            "Malformed action/metadata line [{line_number}], expected START_OBJECT but found [{}]",
            token_name(&value)
        )));
    };
    let mut entries = action.into_iter();
    let Some((name, metadata)) = entries.next() else {
        return Err(Failure::illegal_argument(format!(
            "Malformed action/metadata line [{line_number}], expected FIELD_NAME but found \
             [END_OBJECT]"
        )));
    };
    let op_type = match name.as_str() {
        "index" => OpType::Index,
        "create" => OpType::Create,
        "update" => OpType::Update,
        "delete" => OpType::Delete,
        other => {
            return Err(Failure::illegal_argument(format!(
                "Malformed action/metadata line [{line_number}], expected field [create], \
                 [delete], [index] or [update] but found [{other}]"
            )));
        }
    };
    let Value::Object(metadata) = metadata else {
        return Err(Failure::illegal_argument(format!(
            "Malformed action/metadata line [{line_number}], expected START_OBJECT or \
             END_OBJECT but found [{}]",
            token_name(&metadata)
        )));
    };
    if entries.next().is_some() {
        return Err(Failure::illegal_argument(format!(
            "Malformed action/metadata line [{line_number}], expected END_OBJECT but found \
             [FIELD_NAME]"
        )));
    }
    Ok((op_type, metadata))
}

fn simple_value(value: &Value, key: &str, line_number: usize) -> Result<String, Failure> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        other => Err(Failure::illegal_argument(format!(
            "Malformed action/metadata line [{line_number}], expected a simple value for field \
             [{key}] but found [{}]",
            token_name(other)
        ))),
    }
}

pub(super) fn token_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "VALUE_NULL",
        Value::Bool(_) => "VALUE_BOOLEAN",
        Value::Number(_) => "VALUE_NUMBER",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> (String, String) {
        let failure = parse_bulk(body, None).expect_err(body);
        assert_eq!(failure.status, 400, "{body}");
        (failure.kind.to_owned(), failure.reason)
    }

    #[test]
    fn actions_and_sources_are_paired() {
        let body = "{\"create\":{\"_index\":\"i\",\"_id\":\"1\"}}\n{\"a\":1}\r\n\
                    \n\
                    {\"delete\":{\"_index\":\"i\",\"_id\":\"2\"}}\n\
                    {\"index\":{\"_id\":3}}\n{\"b\":2}\n";
        let operations = parse_bulk(body, Some("default")).expect("valid");
        assert_eq!(
            operations,
            [
                Operation {
                    op_type: OpType::Create,
                    index: "i".into(),
                    id: Some("1".into()),
                    source: "{\"a\":1}",
                },
                Operation {
                    op_type: OpType::Delete,
                    index: "i".into(),
                    id: Some("2".into()),
                    source: "",
                },
                Operation {
                    op_type: OpType::Index,
                    index: "default".into(),
                    id: Some("3".into()),
                    source: "{\"b\":2}",
                },
            ]
        );
    }

    #[test]
    fn malformed_lines_refuse_the_whole_request_with_elasticsearchs_texts() {
        let cases = [
            (
                "{\"create\":{\"_index\":\"i\"}}\n{}",
                "illegal_argument_exception",
                "The bulk request must be terminated by a newline [\\n]",
            ),
            (
                "[1]\n{}\n",
                "illegal_argument_exception",
                "Malformed action/metadata line [1], expected START_OBJECT but found [START_ARRAY]",
            ),
            (
                "{}\n",
                "illegal_argument_exception",
                "Malformed action/metadata line [1], expected FIELD_NAME but found [END_OBJECT]",
            ),
            (
                "{\"create\":{\"_index\":\"i\"}}\n{}\n{\"upsert\":{}}\n{}\n",
                "illegal_argument_exception",
                "Malformed action/metadata line [3], expected field [create], [delete], [index] \
                 or [update] but found [upsert]",
            ),
            (
                "{\"create\":\"i\"}\n{}\n",
                "illegal_argument_exception",
                "Malformed action/metadata line [1], expected START_OBJECT or END_OBJECT but \
                 found [VALUE_STRING]",
            ),
            (
                "{\"create\":{\"_index\":\"i\",\"_type\":\"_doc\"}}\n{}\n",
                "illegal_argument_exception",
                "Action/metadata line [1] contains an unknown parameter [_type]",
            ),
            (
                "{\"create\":{\"_index\":[\"i\"]}}\n{}\n",
                "illegal_argument_exception",
                "Malformed action/metadata line [1], expected a simple value for field [_index] \
                 but found [START_ARRAY]",
            ),
            (
                "{\"create\":{\"_id\":\"1\"}}\n{}\n{\"create\":{\"_index\":\"i\",\"_id\":\"\"}}\n{}\n",
                "action_request_validation_exception",
                "Validation Failed: 1: index is missing;2: if _id is specified it must not be \
                 empty;",
            ),
            (
                "{\"delete\":{\"_index\":\"i\"}}\n",
                "action_request_validation_exception",
                "Validation Failed: 1: id is missing;",
            ),
            (
                "",
                "action_request_validation_exception",
                "Validation Failed: 1: no requests added;",
            ),
        ];
        for (body, kind, reason) in cases {
            assert_eq!(
                refused(body),
                (kind.to_owned(), reason.to_owned()),
                "{body}"
            );
        }
        let (kind, reason) = refused("{create\n{}\n");
        assert_eq!(kind, "x_content_parse_exception");
        assert!(reason.starts_with("[1:2] key must be a string"), "{reason}");
    }

    #[test]
    fn an_action_whose_source_line_is_missing_at_the_end_is_dropped() {
        let body =
            "{\"create\":{\"_index\":\"i\",\"_id\":\"1\"}}\n{}\n{\"create\":{\"_index\":\"i\"}}\n";
        let operations = parse_bulk(body, None).expect("valid");
        assert_eq!(operations.len(), 1);
    }
}
