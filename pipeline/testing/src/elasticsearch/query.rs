//! Enough of the query DSL for tests: `match_all`, `term`, `terms`, `ids`, `exists`, `match`
//! (any analysed token), and `bool` (`must`, `filter`, `should`, `must_not`) over them, with
//! `from`, `size` and `sort`. Every hit scores 1.0.
//!
//! A `term` compares as the field's type does: exact strings on `keyword` (and on a text
//! field's `.keyword` sub-field, up to its `ignore_above` of 256), one token of the standard
//! analyser (lower-cased words) on `text`, numbers on numeric fields, instants on `date`.

use std::cmp::Ordering;

use serde_json::{Map, Value, json};

use super::Failure;
use super::dates;
use super::mapping::FieldType;
use super::store::{Index, StoredDocument};

#[derive(Debug, Clone)]
pub(super) enum Query {
    MatchAll,
    Term { field: String, value: Value },
    Terms { field: String, values: Vec<Value> },
    Ids(Vec<String>),
    Exists { field: String },
    Match { field: String, text: String },
    Bool(Box<BoolQuery>),
}

#[derive(Debug, Clone, Default)]
pub(super) struct BoolQuery {
    must: Vec<Query>,
    should: Vec<Query>,
    must_not: Vec<Query>,
}

/// The part of a search body this fake reads.
#[derive(Debug, Clone)]
pub(super) struct SearchRequest {
    pub(super) query: Query,
    pub(super) from: usize,
    pub(super) size: usize,
    pub(super) sort: Vec<(String, bool)>,
}

impl SearchRequest {
    pub(super) fn parse(body: Option<&Value>) -> Result<SearchRequest, Failure> {
        let mut request = SearchRequest {
            query: Query::MatchAll,
            from: 0,
            size: 10,
            sort: Vec::new(),
        };
        let Some(body) = body else {
            return Ok(request);
        };
        if let Some(query) = body.get("query") {
            request.query = Query::parse(query)?;
        }
        if let Some(from) = body.get("from").and_then(Value::as_u64) {
            request.from = usize::try_from(from).unwrap_or(usize::MAX);
        }
        if let Some(size) = body.get("size").and_then(Value::as_u64) {
            request.size = usize::try_from(size).unwrap_or(usize::MAX);
        }
        if request.from.saturating_add(request.size) > 10_000 {
            return Err(Failure::illegal_argument(format!(
                "Result window is too large, from + size must be less than or equal to: [10000] \
                 but was [{}]. See the scroll api for a more efficient way to request large data \
                 sets. This limit can be set by changing the [index.max_result_window] index \
                 level setting.",
                request.from.saturating_add(request.size)
            )));
        }
        if let Some(sort) = body.get("sort") {
            let entries = match sort {
                Value::Array(entries) => entries.clone(),
                other => vec![other.clone()],
            };
            for entry in entries {
                match entry {
                    Value::String(field) => request.sort.push((field, false)),
                    Value::Object(object) => {
                        for (field, order) in object {
                            let order = order
                                .get("order")
                                .unwrap_or(&order)
                                .as_str()
                                .unwrap_or("asc")
                                .to_owned();
                            request.sort.push((field, order == "desc"));
                        }
                    }
                    _ => return Err(parsing("malformed sort")),
                }
            }
        }
        Ok(request)
    }
}

fn parsing(reason: impl Into<String>) -> Failure {
    Failure::new(400, "parsing_exception", reason.into())
}

impl Query {
    pub(super) fn parse(value: &Value) -> Result<Query, Failure> {
        let Some((kind, body)) = value.as_object().and_then(|object| {
            if object.len() == 1 {
                object.iter().next()
            } else {
                None
            }
        }) else {
            return Err(parsing("query malformed, must start with start_object"));
        };
        match kind.as_str() {
            "match_all" => Ok(Query::MatchAll),
            "term" => {
                let (field, value) = single_field(body, kind)?;
                let value = value.get("value").unwrap_or(value).clone();
                Ok(Query::Term { field, value })
            }
            "terms" => {
                let (field, values) = single_field(body, kind)?;
                let values = values
                    .as_array()
                    .cloned()
                    .ok_or_else(|| parsing("[terms] query does not support a single value"))?;
                Ok(Query::Terms { field, values })
            }
            "ids" => Ok(Query::Ids(
                body.get("values")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|value| value.as_str().map(str::to_owned))
                    .collect(),
            )),
            "exists" => Ok(Query::Exists {
                field: body
                    .get("field")
                    .and_then(Value::as_str)
                    .ok_or_else(|| parsing("[exists] must be provided with a [field]"))?
                    .to_owned(),
            }),
            "match" => {
                let (field, value) = single_field(body, kind)?;
                let text = value.get("query").unwrap_or(value);
                Ok(Query::Match {
                    field,
                    text: scalar_text(text).unwrap_or_default(),
                })
            }
            "bool" => {
                let mut bool_query = BoolQuery::default();
                let Some(clauses) = body.as_object() else {
                    return Err(parsing("[bool] malformed query"));
                };
                for (occur, clause) in clauses {
                    let queries = match clause {
                        Value::Array(queries) => queries
                            .iter()
                            .map(Query::parse)
                            .collect::<Result<Vec<_>, _>>()?,
                        single => vec![Query::parse(single)?],
                    };
                    match occur.as_str() {
                        // Scores are not modelled, so a filter is a must.
                        "must" | "filter" => bool_query.must.extend(queries),
                        "should" => bool_query.should.extend(queries),
                        "must_not" => bool_query.must_not.extend(queries),
                        "minimum_should_match" | "boost" | "_name" => {}
                        other => {
                            return Err(parsing(format!(
                                "[bool] query does not support [{other}]"
                            )));
                        }
                    }
                }
                Ok(Query::Bool(Box::new(bool_query)))
            }
            other => Err(parsing(format!("unknown query [{other}]"))
                .with("line", json!(1))
                .with("col", json!(1))),
        }
    }

    pub(super) fn matches(&self, index: &Index, id: &str, document: &StoredDocument) -> bool {
        match self {
            Query::MatchAll => true,
            Query::Ids(ids) => ids.iter().any(|candidate| candidate == id),
            Query::Term { field, value } => term_matches(index, id, document, field, value),
            Query::Terms { field, values } => values
                .iter()
                .any(|value| term_matches(index, id, document, field, value)),
            Query::Exists { field } => !field_values(index, document, field).is_empty(),
            Query::Match { field, text } => {
                let wanted = tokens(text);
                field_values(index, document, field)
                    .into_iter()
                    .filter_map(scalar_text)
                    .any(|value| tokens(&value).iter().any(|token| wanted.contains(token)))
            }
            Query::Bool(bool_query) => {
                bool_query
                    .must
                    .iter()
                    .all(|query| query.matches(index, id, document))
                    && !bool_query
                        .must_not
                        .iter()
                        .any(|query| query.matches(index, id, document))
                    && (bool_query.should.is_empty()
                        || !bool_query.must.is_empty()
                        || bool_query
                            .should
                            .iter()
                            .any(|query| query.matches(index, id, document)))
            }
        }
    }
}

fn single_field<'a>(body: &'a Value, kind: &str) -> Result<(String, &'a Value), Failure> {
    body.as_object()
        .and_then(|object| object.iter().find(|(key, _)| key.as_str() != "boost"))
        .map(|(field, value)| (field.clone(), value))
        .ok_or_else(|| parsing(format!("[{kind}] query malformed, no field")))
}

/// The mapped type a query or sort uses for `field`; `.keyword` is the dynamic sub-field.
fn field_type(index: &Index, field: &str) -> Option<(FieldType, String)> {
    if let Some(field_type) = index.mapping.field(field) {
        return Some((field_type, field.to_owned()));
    }
    let base = field.strip_suffix(".keyword")?;
    match index.mapping.field(base) {
        Some(FieldType::Text {
            keyword_subfield: true,
        }) => Some((FieldType::Keyword, base.to_owned())),
        _ => None,
    }
}

/// The values at a dotted path of the source (arrays flattened); a `.keyword` sub-field reads
/// its text field's strings of at most 256 characters.
fn field_values<'a>(index: &Index, document: &'a StoredDocument, field: &str) -> Vec<&'a Value> {
    let Some((field_type, path)) = field_type(index, field) else {
        return Vec::new();
    };
    let mut values = Vec::new();
    collect(&document.value, &path, &mut values);
    if path != field && field_type == FieldType::Keyword {
        values.retain(|value| {
            value
                .as_str()
                .is_none_or(|text| text.chars().count() <= 256)
        });
    }
    values
}

fn collect<'a>(object: &'a Map<String, Value>, path: &str, out: &mut Vec<&'a Value>) {
    for (key, value) in object {
        if key == path {
            flatten(value, out);
        } else if let Some(rest) = path
            .strip_prefix(key.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
        {
            let mut nested = Vec::new();
            flatten(value, &mut nested);
            for element in nested {
                if let Value::Object(child) = element {
                    collect(child, rest, out);
                }
            }
        }
    }
}

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(values) => values.iter().for_each(|value| flatten(value, out)),
        Value::Null => {}
        other => out.push(other),
    }
}

fn term_matches(
    index: &Index,
    id: &str,
    document: &StoredDocument,
    field: &str,
    wanted: &Value,
) -> bool {
    if field == "_id" {
        return scalar_text(wanted).as_deref() == Some(id);
    }
    let Some((field_type, _)) = field_type(index, field) else {
        return false;
    };
    let values = field_values(index, document, field);
    match field_type {
        FieldType::Text { .. } => {
            let Some(wanted) = scalar_text(wanted) else {
                return false;
            };
            values
                .into_iter()
                .filter_map(scalar_text)
                .any(|value| tokens(&value).contains(&wanted))
        }
        FieldType::Long
        | FieldType::Integer
        | FieldType::Float
        | FieldType::Double
        | FieldType::Date => {
            let Some(wanted) = sort_number(field_type, wanted) else {
                return false;
            };
            values
                .into_iter()
                .any(|value| sort_number(field_type, value) == Some(wanted))
        }
        FieldType::Boolean => {
            let truth = |value: &Value| match value {
                Value::Bool(flag) => Some(*flag),
                Value::String(text) => Some(text == "true"),
                _ => None,
            };
            let wanted = truth(wanted);
            values.into_iter().any(|value| truth(value) == wanted)
        }
        FieldType::Keyword | FieldType::Other => {
            let wanted = scalar_text(wanted);
            values.into_iter().any(|value| scalar_text(value) == wanted)
        }
        FieldType::Object | FieldType::Disabled => false,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// The standard analyser, near enough: Unicode word boundaries (UAX #29) as its tokenizer
/// finds them, lower-cased. Letters, digits and `_` make words; `.` and `'` join letters or
/// digits on both sides (`script_runner.tasks.run`, `don't`), `:` joins letters, `,` digits.
fn tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut current = String::new();
    for (position, &c) in chars.iter().enumerate() {
        let before = position
            .checked_sub(1)
            .and_then(|at| chars.get(at))
            .copied();
        let after = chars.get(position + 1).copied();
        let between = |test: fn(&char) -> bool| {
            before.is_some_and(|c| test(&c)) && after.is_some_and(|c| test(&c))
        };
        let joins = c.is_alphanumeric()
            || c == '_'
            || (matches!(c, '.' | '\'') && between(|c| c.is_alphanumeric()))
            || (c == ':' && between(|c| c.is_alphabetic()))
            || (c == ',' && between(|c| c.is_numeric()));
        if joins {
            current.extend(c.to_lowercase());
        } else if !current.is_empty() {
            tokens.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_split_into_words_as_the_standard_tokenizer_splits_it() {
        assert_eq!(
            tokens("Task succeeded 'script_runner.tasks.run' #7, 1,000.5 a:b x-y"),
            [
                "task",
                "succeeded",
                "script_runner.tasks.run",
                "7",
                "1,000.5",
                "a:b",
                "x",
                "y"
            ]
        );
        assert_eq!(tokens("cloudify_log"), ["cloudify_log"]);
        assert!(tokens(" -- ").is_empty());
    }
}

/// A numeric field's value, or a date's epoch milliseconds.
fn sort_number(field_type: FieldType, value: &Value) -> Option<f64> {
    match (field_type, value) {
        (FieldType::Date, Value::String(text)) => {
            dates::parse_field_string(text).map(|ms| ms as f64)
        }
        (_, Value::Number(number)) => number.as_f64(),
        (_, Value::String(text)) => text.trim().parse().ok(),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum SortKey {
    Number(f64),
    Text(String),
    Missing,
}

/// Runs a search over `indices` (name and index): the page of hits asked for, and the total.
pub(super) fn search(
    indices: &[(&str, &Index)],
    request: &SearchRequest,
) -> Result<(Vec<Hit>, usize), Failure> {
    for (field, _) in &request.sort {
        if field == "_doc" || field == "_score" {
            continue;
        }
        let mut mapped = false;
        for (name, index) in indices {
            match field_type(index, field) {
                Some((FieldType::Text { .. }, _)) => {
                    return Err(Failure::illegal_argument(format!(
                        "Fielddata is disabled on [{field}] in [{name}]. Text fields are not \
                         optimised for operations that require per-document field data like \
                         aggregations and sorting, so these operations are disabled by default. \
                         Please use a keyword field instead. Alternatively, set fielddata=true \
                         on [{field}] in order to load field data by uninverting the inverted \
                         index. Note that this can use significant memory."
                    )));
                }
                Some(_) => mapped = true,
                None => {}
            }
        }
        if !mapped && !indices.is_empty() {
            return Err(Failure::new(
                400,
                "query_shard_exception",
                format!("No mapping found for [{field}] in order to sort on"),
            ));
        }
    }

    let mut hits: Vec<(&str, &String, &StoredDocument, Vec<SortKey>)> = Vec::new();
    for (name, index) in indices {
        for (id, document) in index.in_write_order() {
            if !request.query.matches(index, id, document) {
                continue;
            }
            let keys = request
                .sort
                .iter()
                .map(|(field, _)| sort_key(index, document, field))
                .collect();
            hits.push((name, id, document, keys));
        }
    }
    hits.sort_by(|left, right| {
        for (position, (_, descending)) in request.sort.iter().enumerate() {
            let ordering = compare_keys(&left.3[position], &right.3[position], *descending);
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    });
    let total = hits.len();
    let sorted = !request.sort.is_empty();
    let page = hits
        .into_iter()
        .skip(request.from)
        .take(request.size)
        .map(|(name, id, document, keys)| Hit {
            index: name.to_owned(),
            id: id.clone(),
            score: if sorted { None } else { Some(1.0) },
            source: document.raw.clone(),
            sort: sorted.then(|| {
                keys.into_iter()
                    .map(|key| match key {
                        SortKey::Number(number) => json!(number),
                        SortKey::Text(text) => json!(text),
                        SortKey::Missing => Value::Null,
                    })
                    .collect()
            }),
        })
        .collect();
    Ok((page, total))
}

/// One search hit; its `_source` is the stored source, byte for byte as it was sent.
#[derive(Debug, Clone)]
pub(super) struct Hit {
    pub(super) index: String,
    pub(super) id: String,
    pub(super) score: Option<f64>,
    pub(super) source: String,
    pub(super) sort: Option<Vec<Value>>,
}

fn sort_key(index: &Index, document: &StoredDocument, field: &str) -> SortKey {
    if field == "_doc" {
        return SortKey::Number(document.seq_no as f64);
    }
    let Some((field_type, _)) = field_type(index, field) else {
        return SortKey::Missing;
    };
    let values = field_values(index, document, field);
    let Some(first) = values.first() else {
        return SortKey::Missing;
    };
    match field_type {
        FieldType::Keyword | FieldType::Other => {
            scalar_text(first).map_or(SortKey::Missing, SortKey::Text)
        }
        FieldType::Boolean => SortKey::Number(if first.as_bool() == Some(true) {
            1.0
        } else {
            0.0
        }),
        numeric => sort_number(numeric, first).map_or(SortKey::Missing, SortKey::Number),
    }
}

/// Missing values last in either order, as Elasticsearch's default `missing: _last`.
fn compare_keys(left: &SortKey, right: &SortKey, descending: bool) -> Ordering {
    match (left, right) {
        (SortKey::Missing, SortKey::Missing) => Ordering::Equal,
        (SortKey::Missing, _) => Ordering::Greater,
        (_, SortKey::Missing) => Ordering::Less,
        _ => {
            let ordering = left.partial_cmp(right).unwrap_or(Ordering::Equal);
            if descending {
                ordering.reverse()
            } else {
                ordering
            }
        }
    }
}
