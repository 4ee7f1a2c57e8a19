//! `{{...}}` templates in actions, compiled when the rules are validated.
//!
//! Compiling up front means an unknown placeholder is a config error naming its field, and a
//! firing only walks ready segments. JSON bodies are compiled into a tree whose string leaves are
//! templates, so a `"{{value}}"` leaf can become a JSON number while its neighbours stay text.

use serde_json::{Map, Number, Value};
use sluice_core::point::{FieldValue, Point};

/// One placeholder.
#[derive(Debug, Clone, PartialEq)]
enum Variable {
    Rule,
    Key,
    Value,
    State,
    Measurement,
    TimeMs,
    Tag(String),
    Field(String),
}

impl Variable {
    fn parse(name: &str) -> Result<Variable, String> {
        let variable = match name {
            "rule" => Variable::Rule,
            "key" => Variable::Key,
            "value" => Variable::Value,
            "state" => Variable::State,
            "measurement" => Variable::Measurement,
            "time_ms" => Variable::TimeMs,
            _ => {
                if let Some(tag) = name.strip_prefix("tags.").filter(|tag| !tag.is_empty()) {
                    Variable::Tag(tag.to_owned())
                } else if let Some(field) = name
                    .strip_prefix("fields.")
                    .filter(|field| !field.is_empty())
                {
                    Variable::Field(field.to_owned())
                } else {
                    return Err(format!(
                        "unknown placeholder `{{{{{name}}}}}`; expected rule, key, value, state, \
                         measurement, time_ms, tags.NAME or fields.NAME"
                    ));
                }
            }
        };
        Ok(variable)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Variable(Variable),
}

/// What a firing knows, for the templates.
pub(crate) struct TemplateContext<'a> {
    pub(crate) rule: &'a str,
    pub(crate) key: &'a str,
    pub(crate) value: Option<f64>,
    pub(crate) state: &'a str,
    pub(crate) point: &'a Point,
    pub(crate) time_ms: i64,
}

/// A placeholder's value: a number (which a lone placeholder keeps as a JSON number) or text.
enum Resolved {
    Number(Number),
    Text(String),
}

impl Resolved {
    fn into_text(self) -> String {
        match self {
            Resolved::Number(number) => number.to_string(),
            Resolved::Text(text) => text,
        }
    }
}

fn number_or_text(value: f64) -> Resolved {
    Number::from_f64(value).map_or_else(|| Resolved::Text(value.to_string()), Resolved::Number)
}

impl TemplateContext<'_> {
    fn resolve(&self, variable: &Variable) -> Resolved {
        match variable {
            Variable::Rule => Resolved::Text(self.rule.to_owned()),
            Variable::Key => Resolved::Text(self.key.to_owned()),
            Variable::State => Resolved::Text(self.state.to_owned()),
            Variable::Measurement => Resolved::Text(self.point.measurement.clone()),
            Variable::TimeMs => Resolved::Number(Number::from(self.time_ms)),
            Variable::Value => self
                .value
                .map_or_else(|| Resolved::Text(String::new()), number_or_text),
            Variable::Tag(name) => {
                Resolved::Text(self.point.tags.get(name).cloned().unwrap_or_default())
            }
            Variable::Field(name) => match self.point.fields.get(name) {
                None => Resolved::Text(String::new()),
                Some(FieldValue::Integer(integer)) => Resolved::Number(Number::from(*integer)),
                Some(FieldValue::Float(float)) => number_or_text(*float),
                Some(FieldValue::Boolean(boolean)) => Resolved::Text(boolean.to_string()),
                Some(FieldValue::String(text)) => Resolved::Text(text.clone()),
            },
        }
    }
}

/// A compiled template string.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    segments: Vec<Segment>,
}

impl Template {
    /// Compiles `source`; the error says what is wrong (the caller adds the field).
    pub(crate) fn parse(source: &str) -> Result<Template, String> {
        let mut segments = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                segments.push(Segment::Literal(rest[..open].to_owned()));
            }
            let after_open = &rest[open + 2..];
            let Some(close) = after_open.find("}}") else {
                return Err(format!("unclosed `{{{{` in {source:?}"));
            };
            segments.push(Segment::Variable(Variable::parse(
                after_open[..close].trim(),
            )?));
            rest = &after_open[close + 2..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_owned()));
        }
        Ok(Template { segments })
    }

    /// The literal text before the first placeholder (all of it when there is none).
    pub(crate) fn literal_prefix(&self) -> &str {
        match self.segments.first() {
            Some(Segment::Literal(text)) => text,
            _ => "",
        }
    }

    pub(crate) fn render_text(&self, context: &TemplateContext<'_>) -> String {
        let mut text = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(literal) => text.push_str(literal),
                Segment::Variable(variable) => {
                    text.push_str(&context.resolve(variable).into_text());
                }
            }
        }
        text
    }

    /// As text, except that a template that is exactly one placeholder with a number value
    /// renders as that JSON number.
    fn render_json(&self, context: &TemplateContext<'_>) -> Value {
        if let [Segment::Variable(variable)] = self.segments.as_slice() {
            return match context.resolve(variable) {
                Resolved::Number(number) => Value::Number(number),
                Resolved::Text(text) => Value::String(text),
            };
        }
        Value::String(self.render_text(context))
    }
}

/// A JSON value whose strings are templates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TemplateJson {
    /// Null, booleans and numbers.
    Constant(Value),
    Text(Template),
    Array(Vec<TemplateJson>),
    Object(Vec<(String, TemplateJson)>),
}

impl TemplateJson {
    /// Compiles a TOML value; the error is `(field path, reason)` with the path starting at
    /// `path` (`action[0].body.key`).
    pub(crate) fn from_toml(
        value: &toml::Value,
        path: &str,
    ) -> Result<TemplateJson, (String, String)> {
        let compiled = match value {
            toml::Value::String(text) => TemplateJson::Text(
                Template::parse(text).map_err(|reason| (path.to_owned(), reason))?,
            ),
            toml::Value::Integer(integer) => TemplateJson::Constant(Value::from(*integer)),
            toml::Value::Float(float) => match Number::from_f64(*float) {
                Some(number) => TemplateJson::Constant(Value::Number(number)),
                None => return Err((path.to_owned(), format!("{float} is not a finite number"))),
            },
            toml::Value::Boolean(boolean) => TemplateJson::Constant(Value::Bool(*boolean)),
            // No date type in JSON: its TOML text, as a constant (never a template).
            toml::Value::Datetime(datetime) => {
                TemplateJson::Constant(Value::String(datetime.to_string()))
            }
            toml::Value::Array(items) => TemplateJson::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| TemplateJson::from_toml(item, &format!("{path}[{index}]")))
                    .collect::<Result<_, _>>()?,
            ),
            toml::Value::Table(table) => TemplateJson::Object(
                table
                    .iter()
                    .map(|(key, item)| {
                        TemplateJson::from_toml(item, &format!("{path}.{key}"))
                            .map(|compiled| (key.clone(), compiled))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(compiled)
    }

    pub(crate) fn render(&self, context: &TemplateContext<'_>) -> Value {
        match self {
            TemplateJson::Constant(value) => value.clone(),
            TemplateJson::Text(template) => template.render_json(context),
            TemplateJson::Array(items) => {
                Value::Array(items.iter().map(|item| item.render(context)).collect())
            }
            TemplateJson::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(key, item)| (key.clone(), item.render(context)))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }
}
