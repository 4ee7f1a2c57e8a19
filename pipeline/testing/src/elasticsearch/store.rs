//! What the fake stores: indices with their documents and mappings, and index templates; and
//! the execution of one bulk operation into Elasticsearch's item answer.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::Failure;
use super::bulk::{OpType, Operation};
use super::mapping::Mapping;

#[derive(Debug, Clone)]
pub(super) struct StoredDocument {
    /// The source exactly as it was sent.
    pub(super) raw: String,
    pub(super) value: Map<String, Value>,
    pub(super) version: u64,
    pub(super) seq_no: u64,
}

#[derive(Debug, Clone)]
pub(super) struct Index {
    pub(super) uuid: String,
    pub(super) documents: BTreeMap<String, StoredDocument>,
    pub(super) mapping: Mapping,
    next_seq_no: u64,
}

impl Index {
    /// Documents in the order they were last written.
    pub(super) fn in_write_order(&self) -> Vec<(&String, &StoredDocument)> {
        let mut documents: Vec<_> = self.documents.iter().collect();
        documents.sort_by_key(|(_, document)| document.seq_no);
        documents
    }
}

#[derive(Debug, Clone)]
pub(super) struct Template {
    pub(super) patterns: Vec<String>,
    pub(super) priority: u64,
    /// The body as it was put.
    pub(super) body: Value,
}

/// A data stream: created by the first `create` into a name that a template with
/// `data_stream` matches; its documents live in hidden backing indices. This fake never rolls
/// over, so there is one backing index, `.ds-<name>-<yyyy.MM.dd>-000001` (the day it was made).
#[derive(Debug, Clone)]
pub(super) struct DataStream {
    pub(super) template: String,
    pub(super) backing_indices: Vec<String>,
}

#[derive(Debug, Default)]
pub(super) struct Store {
    pub(super) indices: BTreeMap<String, Index>,
    pub(super) templates: BTreeMap<String, Template>,
    pub(super) data_streams: BTreeMap<String, DataStream>,
    generated: u64,
}

impl Store {
    /// The indices an expression names: comma-separated names and `*` patterns, `_all`.
    /// A concrete name that does not exist is `index_not_found_exception`; a pattern that
    /// matches nothing is no index.
    /// A data stream stands for its backing indices, which (hidden, as in Elasticsearch) a
    /// pattern matches only when it starts with `.`.
    pub(super) fn resolve(&self, expression: &str) -> Result<Vec<String>, Failure> {
        let mut names = Vec::new();
        for part in expression.split(',').filter(|part| !part.is_empty()) {
            if part == "_all" || part.contains('*') {
                let pattern = if part == "_all" { "*" } else { part };
                names.extend(
                    self.indices
                        .keys()
                        .filter(|name| !name.starts_with('.') || pattern.starts_with('.'))
                        .filter(|name| glob_matches(pattern, name))
                        .cloned(),
                );
                names.extend(
                    self.data_streams
                        .iter()
                        .filter(|(name, _)| glob_matches(pattern, name))
                        .flat_map(|(_, stream)| stream.backing_indices.iter().cloned()),
                );
            } else if let Some(stream) = self.data_streams.get(part) {
                names.extend(stream.backing_indices.iter().cloned());
            } else if self.indices.contains_key(part) {
                names.push(part.to_owned());
            } else {
                return Err(index_not_found(part));
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// `PUT /_index_template/<name>`.
    pub(super) fn put_template(&mut self, name: &str, body: Value) -> Result<(), Failure> {
        let Some(object) = body.as_object() else {
            return Err(Failure::new(
                400,
                "x_content_parse_exception",
                "[1:1] [index_template] failed to parse, expected START_OBJECT".to_owned(),
            ));
        };
        const KNOWN: [&str; 9] = [
            "index_patterns",
            "template",
            "priority",
            "version",
            "_meta",
            "composed_of",
            "data_stream",
            "allow_auto_create",
            "ignore_missing_component_templates",
        ];
        if let Some(unknown) = object.keys().find(|key| !KNOWN.contains(&key.as_str())) {
            return Err(Failure::new(
                400,
                "x_content_parse_exception",
                format!("[1:2] [index_template] unknown field [{unknown}]"),
            ));
        }
        let patterns: Vec<String> = match object.get("index_patterns") {
            Some(Value::String(pattern)) => vec![pattern.clone()],
            Some(Value::Array(patterns)) => patterns
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        if patterns.is_empty() {
            return Err(Failure::new(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: index patterns are missing;".to_owned(),
            ));
        }
        let problems: Vec<String> = patterns
            .iter()
            .filter_map(|pattern| {
                let problem = if pattern.contains(' ') {
                    "must not contain a space"
                } else if pattern.contains(',') {
                    "must not contain a ','"
                } else if pattern.contains('#') {
                    "must not contain a '#'"
                } else if pattern.contains(':') {
                    "must not contain a ':'"
                } else if pattern.starts_with('_') {
                    "must not start with '_'"
                } else if pattern.contains(['\\', '/', '?', '"', '<', '>', '|']) {
                    "must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?]"
                } else {
                    return None;
                };
                Some(format!("index_pattern [{pattern}] {problem}"))
            })
            .collect();
        if !problems.is_empty() {
            let numbered: String = problems
                .iter()
                .enumerate()
                .map(|(number, problem)| format!("{}: {problem};", number + 1))
                .collect();
            return Err(Failure::new(
                400,
                "invalid_index_template_exception",
                format!("index_template [{name}] invalid, cause [Validation Failed: {numbered}]"),
            ));
        }
        let priority = object.get("priority").and_then(Value::as_u64).unwrap_or(0);
        for (other_name, other) in &self.templates {
            if other_name == name || other.priority != priority {
                continue;
            }
            let overlapping = patterns.iter().any(|mine| {
                other
                    .patterns
                    .iter()
                    .any(|theirs| glob_matches(mine, theirs) || glob_matches(theirs, mine))
            });
            if overlapping {
                return Err(Failure::illegal_argument(format!(
                    "index template [{name}] has index patterns {patterns:?} matching patterns \
                     from existing templates [{other_name}] with patterns ({other_name} => {:?}) \
                     that have the same priority [{priority}], multiple index templates may not \
                     match during index creation, please use a different priority",
                    other.patterns
                )));
            }
        }
        self.templates.insert(
            name.to_owned(),
            Template {
                patterns,
                priority,
                body,
            },
        );
        Ok(())
    }

    /// Runs one bulk operation; answers its item (`{"<action>": {..}}`).
    pub(super) fn execute(&mut self, operation: &Operation<'_>) -> Value {
        let item = self.execute_inner(operation);
        json!({ operation.op_type.name(): item })
    }

    fn execute_inner(&mut self, operation: &Operation<'_>) -> Value {
        let requested = operation.index.as_str();
        let id = match &operation.id {
            Some(id) => id.clone(),
            None => self.generate_id(),
        };
        let backing_index = match self.data_stream_write_index(requested, operation.op_type) {
            Ok(backing_index) => backing_index,
            Err(error) => return failure(requested, &id, 400, error),
        };
        let in_data_stream = backing_index.is_some();
        let index_name = backing_index.as_deref().unwrap_or(requested);
        if !self.indices.contains_key(index_name) {
            if operation.op_type == OpType::Delete {
                return failure(
                    index_name,
                    &id,
                    404,
                    index_not_found(index_name).error_json(),
                );
            }
            if let Err(error) = self.create_index(index_name) {
                return failure(index_name, &id, 400, error);
            }
        }
        let Some(index) = self.indices.get_mut(index_name) else {
            return failure(
                index_name,
                &id,
                404,
                index_not_found(index_name).error_json(),
            );
        };

        match operation.op_type {
            OpType::Delete => match index.documents.remove(&id) {
                Some(removed) => {
                    let seq_no = index.take_seq_no();
                    success(index_name, &id, removed.version + 1, "deleted", seq_no, 200)
                }
                None => {
                    let seq_no = index.take_seq_no();
                    success(index_name, &id, 1, "not_found", seq_no, 404)
                }
            },
            OpType::Create | OpType::Index => {
                let existing = index.documents.get(&id).map(|document| document.version);
                if operation.op_type == OpType::Create
                    && let Some(version) = existing
                {
                    let error = json!({
                        "type": "version_conflict_engine_exception",
                        "reason": format!(
                            "[{id}]: version conflict, document already exists (current version \
                             [{version}])"
                        ),
                        "index_uuid": index.uuid,
                        "shard": "0",
                        "index": index_name,
                    });
                    return failure(index_name, &id, 409, error);
                }
                let value = match parse_source(operation.source) {
                    Ok(value) => value,
                    Err(error) => return failure(index_name, &id, 400, error),
                };
                if in_data_stream && !value.contains_key("@timestamp") {
                    let error = json!({
                        "type": "document_parsing_exception",
                        "reason": "[1:1] failed to parse: data stream timestamp field \
                                   [@timestamp] is missing",
                    });
                    return failure(index_name, &id, 400, error);
                }
                if let Err(error) = index.mapping.index_document(&id, &value, operation.source) {
                    return failure(index_name, &id, 400, error.to_json());
                }
                let version = existing.map_or(1, |version| version + 1);
                let seq_no = index.take_seq_no();
                index.documents.insert(
                    id.clone(),
                    StoredDocument {
                        raw: operation.source.to_owned(),
                        value,
                        version,
                        seq_no,
                    },
                );
                match existing {
                    None => success(index_name, &id, version, "created", seq_no, 201),
                    Some(_) => success(index_name, &id, version, "updated", seq_no, 200),
                }
            }
            OpType::Update => self.update(index_name, &id, operation.source),
        }
    }

    /// `update` with a partial `doc` (and `doc_as_upsert` or `upsert`); scripts are not run.
    fn update(&mut self, index_name: &str, id: &str, source: &str) -> Value {
        let Some(index) = self.indices.get_mut(index_name) else {
            return failure(
                index_name,
                id,
                404,
                index_not_found(index_name).error_json(),
            );
        };
        let request = match parse_source(source) {
            Ok(request) => request,
            Err(error) => return failure(index_name, id, 400, error),
        };
        if request.contains_key("script") {
            let error = json!({
                "type": "illegal_argument_exception",
                "reason": "FakeElasticsearch does not run update scripts",
            });
            return failure(index_name, id, 400, error);
        }
        let doc = request.get("doc").and_then(Value::as_object).cloned();
        let doc_as_upsert = request.get("doc_as_upsert").and_then(Value::as_bool) == Some(true);
        let upsert = request.get("upsert").and_then(Value::as_object).cloned();
        let (merged, existing_version) = match (index.documents.get(id), doc, upsert) {
            (Some(existing), Some(doc), _) => {
                let mut merged = existing.value.clone();
                merge(&mut merged, &doc);
                if merged == existing.value {
                    return success(
                        index_name,
                        id,
                        existing.version,
                        "noop",
                        existing.seq_no,
                        200,
                    );
                }
                (merged, Some(existing.version))
            }
            (None, Some(doc), _) if doc_as_upsert => (doc, None),
            (None, _, Some(upsert)) => (upsert, None),
            (Some(_), None, _) | (None, _, None) => {
                let (status, error) = if index.documents.contains_key(id) {
                    (
                        400,
                        json!({
                            "type": "action_request_validation_exception",
                            "reason": "Validation Failed: 1: script or doc is missing;",
                        }),
                    )
                } else {
                    (
                        404,
                        json!({
                            "type": "document_missing_exception",
                            "reason": format!("[{id}]: document missing"),
                            "index_uuid": index.uuid,
                            "shard": "0",
                            "index": index_name,
                        }),
                    )
                };
                return failure(index_name, id, status, error);
            }
        };
        let raw = Value::Object(merged.clone()).to_string();
        if let Err(error) = index.mapping.index_document(id, &merged, &raw) {
            return failure(index_name, id, 400, error.to_json());
        }
        let version = existing_version.map_or(1, |version| version + 1);
        let seq_no = index.take_seq_no();
        index.documents.insert(
            id.to_owned(),
            StoredDocument {
                raw,
                value: merged,
                version,
                seq_no,
            },
        );
        match existing_version {
            Some(_) => success(index_name, id, version, "updated", seq_no, 200),
            None => success(index_name, id, version, "created", seq_no, 201),
        }
    }

    /// The highest-priority template whose patterns match `name`, with its name.
    fn template_for(&self, name: &str) -> Option<(&String, &Template)> {
        self.templates
            .iter()
            .filter(|(_, template)| {
                template
                    .patterns
                    .iter()
                    .any(|pattern| glob_matches(pattern, name))
            })
            .max_by_key(|(_, template)| template.priority)
    }

    /// Where a write to `name` goes when `name` is a data stream, or becomes one (the first
    /// `create` into a name whose template has `data_stream`): its backing index, created
    /// with the template's mapping. `None` for a write to an ordinary index. Only `create`
    /// writes into a data stream, as in Elasticsearch.
    fn data_stream_write_index(
        &mut self,
        name: &str,
        op_type: OpType,
    ) -> Result<Option<String>, Value> {
        let is_stream = self.data_streams.contains_key(name);
        let makes_stream = !is_stream
            && !self.indices.contains_key(name)
            && self
                .template_for(name)
                .is_some_and(|(_, template)| template.body.get("data_stream").is_some());
        if !is_stream && !makes_stream {
            return Ok(None);
        }
        if op_type != OpType::Create {
            return Err(json!({
                "type": "illegal_argument_exception",
                "reason": "only write ops with an op_type of create are allowed in data streams",
            }));
        }
        if makes_stream {
            validate_index_name(name)?;
            let Some((template_name, template)) = self.template_for(name) else {
                return Ok(None);
            };
            let template_name = template_name.clone();
            let mapping = Mapping::from_template(template.body.pointer("/template/mappings"));
            let day = jiff::Timestamp::now().strftime("%Y.%m.%d").to_string();
            let backing_index = format!(".ds-{name}-{day}-000001");
            self.insert_index(&backing_index, mapping);
            self.data_streams.insert(
                name.to_owned(),
                DataStream {
                    template: template_name,
                    backing_indices: vec![backing_index],
                },
            );
        }
        Ok(self
            .data_streams
            .get(name)
            .and_then(|stream| stream.backing_indices.last().cloned()))
    }

    /// Creates an index the first time a document names it, with the mapping of the
    /// highest-priority template whose patterns match its name.
    fn create_index(&mut self, name: &str) -> Result<(), Value> {
        validate_index_name(name)?;
        let mappings = self
            .template_for(name)
            .and_then(|(_, template)| template.body.pointer("/template/mappings"));
        let mapping = Mapping::from_template(mappings);
        self.insert_index(name, mapping);
        Ok(())
    }

    fn insert_index(&mut self, name: &str, mapping: Mapping) {
        let uuid = format!("fAkE{:018}", self.indices.len() as u64 + 1);
        self.indices.insert(
            name.to_owned(),
            Index {
                uuid,
                documents: BTreeMap::new(),
                mapping,
                next_seq_no: 0,
            },
        );
    }

    /// A 20-character id, as Elasticsearch's time-based ids look.
    fn generate_id(&mut self) -> String {
        use base64::Engine as _;
        self.generated += 1;
        let mut bytes = [0u8; 15];
        bytes[..8].copy_from_slice(&self.generated.to_be_bytes());
        bytes[8..].copy_from_slice(&b"sluice!"[..]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}

impl Index {
    fn take_seq_no(&mut self) -> u64 {
        let seq_no = self.next_seq_no;
        self.next_seq_no += 1;
        seq_no
    }
}

/// A source line as a JSON object, or the item error Elasticsearch 8 gives.
fn parse_source(source: &str) -> Result<Map<String, Value>, Value> {
    match serde_json::from_str::<Value>(source) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(json!({
            "type": "document_parsing_exception",
            "reason": format!(
                "[1:1] failed to parse: Malformed content, must start with an object, but found [{}]",
                super::bulk::token_name(&other)
            ),
        })),
        Err(error) => {
            let message = error.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(text, _)| text)
                .to_owned();
            Err(json!({
                "type": "document_parsing_exception",
                "reason": format!("[{}:{}] failed to parse: {message}", error.line(), error.column()),
                "caused_by": {
                    "type": "x_content_parse_exception",
                    "reason": format!("[{}:{}] {message}", error.line(), error.column()),
                },
            }))
        }
    }
}

/// A shallow-then-deep merge of a partial `doc` into a document, as `update` does.
fn merge(target: &mut Map<String, Value>, doc: &Map<String, Value>) {
    for (key, value) in doc {
        match (target.get_mut(key), value) {
            (Some(Value::Object(existing)), Value::Object(partial)) => merge(existing, partial),
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

fn success(index: &str, id: &str, version: u64, result: &str, seq_no: u64, status: u16) -> Value {
    json!({
        "_index": index,
        "_id": id,
        "_version": version,
        "result": result,
        "_shards": {"total": 2, "successful": 1, "failed": 0},
        "_seq_no": seq_no,
        "_primary_term": 1,
        "status": status,
    })
}

fn failure(index: &str, id: &str, status: u16, error: Value) -> Value {
    json!({"_index": index, "_id": id, "status": status, "error": error})
}

pub(super) fn index_not_found(name: &str) -> Failure {
    Failure::new(
        404,
        "index_not_found_exception",
        format!("no such index [{name}]"),
    )
    .with("resource.type", json!("index_or_alias"))
    .with("resource.id", json!(name))
    .with("index_uuid", json!("_na_"))
    .with("index", json!(name))
}

/// Elasticsearch's rules for index names; the error is an item's `invalid_index_name_exception`.
fn validate_index_name(name: &str) -> Result<(), Value> {
    const FORBIDDEN: [char; 10] = ['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ','];
    let problem = if name.chars().any(|c| FORBIDDEN.contains(&c)) {
        Some(
            "must not contain the following characters [' ','\"','*',',','/','<','>','?','\\','|']"
                .to_owned(),
        )
    } else if name.contains('#') {
        Some("must not contain '#'".to_owned())
    } else if name.contains(':') {
        Some("must not contain ':'".to_owned())
    } else if name.starts_with(['_', '-', '+']) {
        Some("must not start with '_', '-', or '+'".to_owned())
    } else if name.to_lowercase() != name {
        Some("must be lowercase".to_owned())
    } else if name == "." || name == ".." {
        Some("must not be '.' or '..'".to_owned())
    } else if name.len() > 255 {
        Some(format!("index name is too long, ({} > 255)", name.len()))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(json!({
            "type": "invalid_index_name_exception",
            "reason": format!("Invalid index name [{name}], {problem}"),
            "index_uuid": "_na_",
            "index": name,
        })),
    }
}

/// A pattern with `*` wildcards against a name.
pub(super) fn glob_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return pattern == name;
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_index_patterns() {
        assert!(glob_matches("logstash-*", "logstash-2016.06.15"));
        assert!(glob_matches("logstash-*", "logstash-"));
        assert!(!glob_matches("logstash-*", "logs"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a*b*c", "aXbYc"));
        assert!(!glob_matches("a*b*c", "aXbY"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
        assert!(glob_matches("*-x", "a-x"));
    }

    #[test]
    fn index_names_follow_elasticsearchs_rules() {
        assert!(validate_index_name("logstash-2016.06.15").is_ok());
        for (name, problem) in [
            ("Upper", "must be lowercase"),
            ("_hidden", "must not start with '_', '-', or '+'"),
            ("a b", "must not contain the following characters"),
            ("a#b", "must not contain '#'"),
            ("..", "must not be '.' or '..'"),
        ] {
            let error = validate_index_name(name).expect_err(name);
            let reason = error["reason"].as_str().expect("reason");
            assert!(
                reason.starts_with(&format!("Invalid index name [{name}], {problem}")),
                "{reason}"
            );
        }
    }
}
