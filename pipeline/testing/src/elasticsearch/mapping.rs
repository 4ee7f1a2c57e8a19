//! An index's mapping, grown by dynamic mapping as Elasticsearch 8 grows it, and the check of
//! each document against it.
//!
//! A field's first value fixes its type: `true` makes a `boolean`, an integer a `long`, a
//! fraction a `float`, an object an `object`, a string a `date` when it looks like one (see
//! [`dates`](super::dates)) and otherwise `text` with a `keyword` sub-field (`ignore_above`
//! 256). Later values are coerced as Elasticsearch coerces them (`"42"` into a `long`, `7` into
//! `text`) or the whole document is refused with `document_parsing_exception`, and none of its
//! new fields are added. Dotted keys (`"a.b"`) are paths into objects, as in Elasticsearch.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::dates;

/// Elasticsearch's default `index.mapping.total_fields.limit`.
const TOTAL_FIELDS_LIMIT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FieldType {
    Long,
    Integer,
    Float,
    Double,
    Boolean,
    /// `keyword_subfield`: the dynamic `fields.keyword` (`ignore_above` 256).
    Text {
        keyword_subfield: bool,
    },
    Keyword,
    Date,
    Object,
    /// An object with `enabled: false`: any value (an object or not) is kept in `_source`,
    /// neither parsed nor indexed, and nothing under it is mapped.
    Disabled,
    /// A type this fake does not model (`ip`, `geo_point`, ...): any value is accepted.
    Other,
}

impl FieldType {
    pub(super) fn name(self) -> &'static str {
        match self {
            FieldType::Long => "long",
            FieldType::Integer => "integer",
            FieldType::Float => "float",
            FieldType::Double => "double",
            FieldType::Boolean => "boolean",
            FieldType::Text { .. } => "text",
            FieldType::Keyword => "keyword",
            FieldType::Date => "date",
            FieldType::Object | FieldType::Disabled => "object",
            FieldType::Other => "other",
        }
    }

    fn from_name(name: &str) -> FieldType {
        match name {
            "long" | "short" | "byte" | "unsigned_long" => FieldType::Long,
            "integer" => FieldType::Integer,
            "float" | "half_float" | "scaled_float" => FieldType::Float,
            "double" => FieldType::Double,
            "boolean" => FieldType::Boolean,
            "text" | "match_only_text" => FieldType::Text {
                keyword_subfield: false,
            },
            "keyword" | "constant_keyword" | "wildcard" => FieldType::Keyword,
            "date" | "date_nanos" => FieldType::Date,
            "object" => FieldType::Object,
            _ => FieldType::Other,
        }
    }
}

/// What a template's `mappings` can set beyond fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Dynamic {
    #[default]
    True,
    /// New fields are kept in `_source` but not mapped.
    False,
    /// A new field refuses the document (`strict_dynamic_mapping_exception`).
    Strict,
}

#[derive(Debug, Clone)]
pub(super) struct Mapping {
    /// Field types by dotted path.
    fields: BTreeMap<String, FieldType>,
    date_detection: bool,
    dynamic: Dynamic,
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            fields: BTreeMap::new(),
            date_detection: true,
            dynamic: Dynamic::True,
        }
    }
}

/// Why a document does not fit the mapping: an item error of status 400.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct MappingError {
    pub(super) kind: &'static str,
    pub(super) reason: String,
    pub(super) caused_by: Option<Value>,
}

impl MappingError {
    pub(super) fn to_json(&self) -> Value {
        let mut error = json!({"type": self.kind, "reason": self.reason});
        if let (Some(caused_by), Some(object)) = (&self.caused_by, error.as_object_mut()) {
            object.insert("caused_by".into(), caused_by.clone());
        }
        error
    }
}

impl Mapping {
    /// The mapping an index starts with: a template's `mappings` (its `properties`,
    /// `date_detection` and `dynamic`), or an empty one.
    pub(super) fn from_template(mappings: Option<&Value>) -> Mapping {
        let mut mapping = Mapping::default();
        let Some(mappings) = mappings else {
            return mapping;
        };
        if let Some(detection) = mappings.get("date_detection").and_then(Value::as_bool) {
            mapping.date_detection = detection;
        }
        mapping.dynamic = match mappings.get("dynamic") {
            Some(Value::Bool(false)) => Dynamic::False,
            Some(Value::String(text)) if text == "false" => Dynamic::False,
            Some(Value::String(text)) if text == "strict" => Dynamic::Strict,
            _ => Dynamic::True,
        };
        if let Some(properties) = mappings.get("properties").and_then(Value::as_object) {
            mapping.add_properties("", properties);
        }
        mapping
    }

    fn add_properties(&mut self, prefix: &str, properties: &Map<String, Value>) {
        for (name, definition) in properties {
            let path = join(prefix, name);
            if definition.get("enabled").and_then(Value::as_bool) == Some(false) {
                self.fields.insert(path, FieldType::Disabled);
                continue;
            }
            let field_type = match definition.get("type").and_then(Value::as_str) {
                Some("text") => FieldType::Text {
                    keyword_subfield: definition
                        .pointer("/fields/keyword/type")
                        .and_then(Value::as_str)
                        == Some("keyword"),
                },
                Some(name) => FieldType::from_name(name),
                None => FieldType::Object,
            };
            self.fields.insert(path.clone(), field_type);
            if let Some(children) = definition.get("properties").and_then(Value::as_object) {
                self.add_properties(&path, children);
            }
        }
    }

    pub(super) fn field(&self, path: &str) -> Option<FieldType> {
        self.fields.get(path).copied()
    }

    /// Checks `source` (an object) against the mapping and adds its new fields; on error the
    /// mapping is left as it was.
    pub(super) fn index_document(
        &mut self,
        id: &str,
        source: &Map<String, Value>,
        raw: &str,
    ) -> Result<(), MappingError> {
        let mut parser = DocumentParser {
            mapping: self,
            id,
            raw,
            added: BTreeMap::new(),
        };
        parser.object("", source)?;
        let added = parser.added;
        if !added.is_empty() && self.fields.len() + added.len() > TOTAL_FIELDS_LIMIT {
            return Err(MappingError {
                kind: "illegal_argument_exception",
                reason: format!(
                    "Limit of total fields [{TOTAL_FIELDS_LIMIT}] has been exceeded while adding \
                     new fields [{}]",
                    added.len()
                ),
                caused_by: None,
            });
        }
        self.fields.extend(added);
        Ok(())
    }

    /// `{"properties": {..}}` as `GET /<index>/_mapping` shows it.
    pub(super) fn to_json(&self) -> Value {
        let mut root = Map::new();
        for (path, field_type) in &self.fields {
            let mut properties = &mut root;
            let mut segments = path.split('.').peekable();
            while let Some(segment) = segments.next() {
                let entry = properties
                    .entry(segment.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if segments.peek().is_none() {
                    if let Some(definition) = entry.as_object_mut() {
                        render_type(definition, *field_type);
                    }
                    break;
                }
                let Some(definition) = entry.as_object_mut() else {
                    break;
                };
                let Some(children) = definition
                    .entry("properties")
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                else {
                    break;
                };
                properties = children;
            }
        }
        json!({ "properties": root })
    }
}

fn render_type(definition: &mut Map<String, Value>, field_type: FieldType) {
    match field_type {
        FieldType::Object => {
            definition
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
        }
        FieldType::Disabled => {
            definition.insert("type".into(), json!("object"));
            definition.insert("enabled".into(), json!(false));
        }
        FieldType::Text { keyword_subfield } => {
            definition.insert("type".into(), json!("text"));
            if keyword_subfield {
                definition.insert(
                    "fields".into(),
                    json!({"keyword": {"type": "keyword", "ignore_above": 256}}),
                );
            }
        }
        other => {
            definition.insert("type".into(), json!(other.name()));
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

struct DocumentParser<'a> {
    mapping: &'a Mapping,
    id: &'a str,
    raw: &'a str,
    added: BTreeMap<String, FieldType>,
}

impl DocumentParser<'_> {
    fn field(&self, path: &str) -> Option<FieldType> {
        self.added
            .get(path)
            .copied()
            .or_else(|| self.mapping.field(path))
    }

    /// Whether `path` is a disabled object or lies under one (reached by a dotted key).
    fn disabled(&self, path: &str) -> bool {
        path.match_indices('.')
            .map(|(at, _)| &path[..at])
            .chain([path])
            .any(|prefix| self.field(prefix) == Some(FieldType::Disabled))
    }

    fn object(&mut self, prefix: &str, object: &Map<String, Value>) -> Result<(), MappingError> {
        for (key, value) in object {
            if key.is_empty() || key.split('.').any(str::is_empty) {
                return Err(self.error(
                    "document_parsing_exception",
                    format!(
                        "{}field name cannot contain only whitespace or be empty: ['{key}']",
                        self.position(key)
                    ),
                    None,
                ));
            }
            // `"a.b": 1` is `"a": {"b": 1}`: the leading segments are objects.
            let mut path = prefix.to_owned();
            let mut segments = key.split('.').peekable();
            while let Some(segment) = segments.next() {
                path = join(&path, segment);
                if segments.peek().is_some() {
                    self.enter_object(&path, key)?;
                }
            }
            self.value(&path, key, value)?;
        }
        Ok(())
    }

    /// `path` is about to hold an object: map it as one, or refuse a concrete field.
    fn enter_object(&mut self, path: &str, key: &str) -> Result<(), MappingError> {
        if self.disabled(path) {
            return Ok(());
        }
        match self.field(path) {
            Some(FieldType::Object) => Ok(()),
            None => self.add(path, FieldType::Object, key),
            Some(other) => Err(self.failed_to_parse(path, other, "{}", key, None)),
        }
    }

    fn add(&mut self, path: &str, field_type: FieldType, key: &str) -> Result<(), MappingError> {
        match self.mapping.dynamic {
            Dynamic::True => {
                self.added.insert(path.to_owned(), field_type);
                Ok(())
            }
            // Unmapped: kept in the source, neither indexed nor checked.
            Dynamic::False => Ok(()),
            Dynamic::Strict => {
                let (parent, leaf) = path.rsplit_once('.').unwrap_or(("_doc", path));
                Err(self.error(
                    "strict_dynamic_mapping_exception",
                    format!(
                        "{}mapping set to strict, dynamic introduction of [{leaf}] within \
                         [{parent}] is not allowed",
                        self.position(key)
                    ),
                    None,
                ))
            }
        }
    }

    fn value(&mut self, path: &str, key: &str, value: &Value) -> Result<(), MappingError> {
        if self.disabled(path) {
            return Ok(());
        }
        match value {
            Value::Null => Ok(()),
            Value::Array(values) => {
                for element in values {
                    self.value(path, key, element)?;
                }
                Ok(())
            }
            Value::Object(object) => {
                match self.field(path) {
                    Some(FieldType::Object) => {}
                    None => {
                        self.add(path, FieldType::Object, key)?;
                        if self.mapping.dynamic == Dynamic::False {
                            return Ok(());
                        }
                    }
                    Some(FieldType::Other) => return Ok(()),
                    Some(other) => {
                        return Err(self.failed_to_parse(
                            path,
                            other,
                            &preview(value),
                            key,
                            Some(json!({
                                "type": "illegal_state_exception",
                                "reason": "Can't get text on a START_OBJECT",
                            })),
                        ));
                    }
                }
                self.object(path, object)
            }
            concrete => match self.field(path) {
                None => {
                    let detected = self.detect(concrete);
                    self.add(path, detected, key)
                }
                Some(FieldType::Object) => {
                    let leaf = path.rsplit('.').next().unwrap_or(path);
                    Err(self.error(
                        "document_parsing_exception",
                        format!(
                            "{}object mapping for [{path}] tried to parse field [{leaf}] as \
                             object, but found a concrete value",
                            self.position(key)
                        ),
                        None,
                    ))
                }
                Some(field_type) => match coerce(field_type, concrete) {
                    Ok(()) => Ok(()),
                    Err(cause) => Err(self.failed_to_parse(
                        path,
                        field_type,
                        &preview(concrete),
                        key,
                        Some(json!({"type": "illegal_argument_exception", "reason": cause})),
                    )),
                },
            },
        }
    }

    fn detect(&self, value: &Value) -> FieldType {
        match value {
            Value::Bool(_) => FieldType::Boolean,
            Value::Number(number) if number.is_i64() || number.is_u64() => FieldType::Long,
            Value::Number(_) => FieldType::Float,
            Value::String(text) if self.mapping.date_detection && dates::detect(text).is_some() => {
                FieldType::Date
            }
            _ => FieldType::Text {
                keyword_subfield: true,
            },
        }
    }

    fn failed_to_parse(
        &self,
        path: &str,
        field_type: FieldType,
        preview: &str,
        key: &str,
        caused_by: Option<Value>,
    ) -> MappingError {
        self.error(
            "document_parsing_exception",
            format!(
                "{}failed to parse field [{path}] of type [{}] in document with id '{}'. \
                 Preview of field's value: '{preview}'",
                self.position(key),
                field_type.name(),
                self.id
            ),
            caused_by,
        )
    }

    fn error(&self, kind: &'static str, reason: String, caused_by: Option<Value>) -> MappingError {
        MappingError {
            kind,
            reason,
            caused_by,
        }
    }

    /// `[1:<column>] `, the column after the field's name in the source line, as
    /// Elasticsearch 8 prefixes its parse errors (found by text search: close, not exact).
    fn position(&self, key: &str) -> String {
        let quoted = serde_json::to_string(key).unwrap_or_default();
        let column = self.raw.find(&quoted).map_or(1, |at| at + quoted.len() + 2);
        format!("[1:{column}] ")
    }
}

/// Whether a field of `field_type` takes `value` (a concrete value), and if not the cause
/// Elasticsearch gives.
fn coerce(field_type: FieldType, value: &Value) -> Result<(), String> {
    match (field_type, value) {
        (FieldType::Text { .. } | FieldType::Keyword | FieldType::Other, _) => Ok(()),
        (FieldType::Boolean, Value::Bool(_)) => Ok(()),
        (FieldType::Boolean, Value::String(text)) => match text.as_str() {
            "true" | "false" | "" => Ok(()),
            _ => Err(format!(
                "Failed to parse value [{text}] as only [true] or [false] are allowed."
            )),
        },
        (FieldType::Boolean, other) => Err(format!(
            "Current token ({}) not of boolean type",
            token_name(other)
        )),
        (FieldType::Long | FieldType::Integer, value) => {
            let number = numeric(value)?;
            let (min, max, name) = if field_type == FieldType::Long {
                (i64::MIN as f64, i64::MAX as f64, "long")
            } else {
                (f64::from(i32::MIN), f64::from(i32::MAX), "integer")
            };
            if number.is_finite() && number >= min && number <= max {
                Ok(())
            } else {
                Err(format!(
                    "Value [{number}] is out of range for {article} {name}",
                    article = if name == "integer" { "an" } else { "a" }
                ))
            }
        }
        (FieldType::Float | FieldType::Double, value) => {
            let number = numeric(value)?;
            if number.is_finite() {
                Ok(())
            } else {
                Err(format!(
                    "[{}] supports only finite values, but got [{number}]",
                    field_type.name()
                ))
            }
        }
        (FieldType::Date, Value::Number(_)) => Ok(()),
        (FieldType::Date, Value::String(text)) => match dates::parse_field_string(text) {
            Some(_) => Ok(()),
            None => Err(format!(
                "failed to parse date field [{text}] with format \
                 [strict_date_optional_time||epoch_millis]"
            )),
        },
        (FieldType::Date, other) => Err(format!(
            "Current token ({}) not of date type",
            token_name(other)
        )),
        (FieldType::Object, _) => Err("object".into()),
        // Never reached: values under a disabled object are not parsed.
        (FieldType::Disabled, _) => Ok(()),
    }
}

/// A value as a number, as numeric fields coerce it: numbers, and strings that parse.
fn numeric(value: &Value) -> Result<f64, String> {
    match value {
        Value::Number(number) => number.as_f64().ok_or_else(|| number.to_string()),
        Value::String(text) => text
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("For input string: \"{text}\"")),
        other => Err(format!(
            "Current token ({}) not numeric, can not use numeric value accessors",
            token_name(other)
        )),
    }
}

fn token_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "VALUE_NULL",
        Value::Bool(true) => "VALUE_TRUE",
        Value::Bool(false) => "VALUE_FALSE",
        Value::Number(number) if number.is_f64() => "VALUE_NUMBER_FLOAT",
        Value::Number(_) => "VALUE_NUMBER_INT",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

/// A value as Elasticsearch previews it in errors: strings bare, objects as Java maps.
fn preview(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Object(object) => {
            let entries: Vec<String> = object
                .iter()
                .map(|(key, value)| format!("{key}={}", preview(value)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        Value::Array(values) => {
            let entries: Vec<String> = values.iter().map(preview).collect();
            format!("[{}]", entries.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(mapping: &mut Mapping, id: &str, source: &str) -> Result<(), MappingError> {
        let value: Value = serde_json::from_str(source).expect("json");
        mapping.index_document(id, value.as_object().expect("object"), source)
    }

    #[test]
    fn the_first_value_fixes_the_type_and_conflicts_are_refused() {
        let mut mapping = Mapping::default();
        index(
            &mut mapping,
            "1",
            r#"{"n":1,"f":1.5,"b":true,"s":"x","d":"2016-06-15T10:13:20Z","o":{"a":1},"x.y":"z","nil":null}"#,
        )
        .expect("first document");
        assert_eq!(mapping.field("n"), Some(FieldType::Long));
        assert_eq!(mapping.field("f"), Some(FieldType::Float));
        assert_eq!(mapping.field("b"), Some(FieldType::Boolean));
        assert_eq!(
            mapping.field("s"),
            Some(FieldType::Text {
                keyword_subfield: true
            })
        );
        assert_eq!(mapping.field("d"), Some(FieldType::Date));
        assert_eq!(mapping.field("o"), Some(FieldType::Object));
        assert_eq!(mapping.field("o.a"), Some(FieldType::Long));
        assert_eq!(mapping.field("x"), Some(FieldType::Object));
        assert_eq!(mapping.field("nil"), None);

        // Coerced, as Elasticsearch coerces.
        index(
            &mut mapping,
            "2",
            r#"{"n":"42","f":3,"s":7,"b":"false","d":1465985600000}"#,
        )
        .expect("coerced");

        let error = index(&mut mapping, "3", r#"{"new":1,"n":"abc"}"#).expect_err("conflict");
        assert_eq!(error.kind, "document_parsing_exception");
        assert_eq!(
            error.reason,
            "[1:14] failed to parse field [n] of type [long] in document with id '3'. Preview \
             of field's value: 'abc'"
        );
        assert_eq!(
            error.caused_by,
            Some(
                json!({"type": "illegal_argument_exception", "reason": "For input string: \"abc\""})
            )
        );
        assert_eq!(
            mapping.field("new"),
            None,
            "a refused document adds no field"
        );

        let error = index(&mut mapping, "4", r#"{"o":"flat"}"#).expect_err("object");
        assert!(
            error
                .reason
                .ends_with("object mapping for [o] tried to parse field [o] as object, but found a concrete value"),
            "{}",
            error.reason
        );
        let error = index(&mut mapping, "5", r#"{"s":{"a":1}}"#).expect_err("object in text");
        assert!(error.reason.contains("of type [text]"), "{}", error.reason);
        assert!(error.reason.ends_with("Preview of field's value: '{a=1}'"));
        let error = index(&mut mapping, "6", r#"{"d":"yesterday"}"#).expect_err("date");
        assert!(error.reason.contains("of type [date]"), "{}", error.reason);
    }

    #[test]
    fn template_properties_come_first_and_render_back() {
        let template = json!({
            "properties": {
                "@timestamp": {"type": "date"},
                "context": {"properties": {"execution_id": {"type": "keyword"}}}
            }
        });
        let mut mapping = Mapping::from_template(Some(&template));
        index(
            &mut mapping,
            "1",
            r#"{"@timestamp":"2016-06-15T10:13:20Z","context":{"execution_id":"5e1c","n":1},"message":"hi"}"#,
        )
        .expect("fits");
        assert_eq!(
            mapping.to_json(),
            json!({"properties": {
                "@timestamp": {"type": "date"},
                "context": {"properties": {
                    "execution_id": {"type": "keyword"},
                    "n": {"type": "long"}
                }},
                "message": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
            }})
        );
        let error = index(
            &mut mapping,
            "2",
            r#"{"@timestamp":"2016-06-15 10:13:20.123+0000"}"#,
        )
        .expect_err("not a date format");
        assert!(error.reason.contains("[@timestamp] of type [date]"));
    }

    #[test]
    fn strict_mappings_refuse_new_fields() {
        let mut mapping = Mapping::from_template(Some(&json!({
            "dynamic": "strict",
            "properties": {"a": {"type": "long"}}
        })));
        index(&mut mapping, "1", r#"{"a":1}"#).expect("known field");
        let error = index(&mut mapping, "2", r#"{"a":1,"b":2}"#).expect_err("strict");
        assert_eq!(error.kind, "strict_dynamic_mapping_exception");
        assert!(error.reason.ends_with(
            "mapping set to strict, dynamic introduction of [b] within [_doc] is not allowed"
        ));
    }
}
