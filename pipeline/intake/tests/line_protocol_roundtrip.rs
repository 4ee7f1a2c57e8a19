//! Any valid line in, a line that parses to the same series, fields and time (in nanoseconds)
//! out: the restamping of the InfluxDB write API never changes what a line says.

use std::collections::BTreeMap;

use influxdb_line_protocol::{FieldValue, LineProtocolBuilder, ParsedLine, parse_lines};
use proptest::prelude::*;
use sluice_intake::influx_write::restamp;

#[derive(Debug, Clone)]
enum Field {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    Text(String),
}

#[derive(Debug, Clone)]
struct Line {
    measurement: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, Field>,
    timestamp: Option<i64>,
}

/// Names with every character line protocol escapes; never ending in a backslash (the parser
/// refuses that, as InfluxDB's does).
fn name() -> impl Strategy<Value = String> {
    "[a-z0-9 ,=\"\\\\._é-]{0,10}[a-z0-9]"
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        (-1e12f64..1e12).prop_map(Field::Float),
        any::<i64>().prop_map(Field::Integer),
        any::<u64>().prop_map(Field::Unsigned),
        any::<bool>().prop_map(Field::Boolean),
        "[a-z \",=\\\\\n]{0,12}".prop_map(Field::Text),
    ]
}

fn line() -> impl Strategy<Value = Line> {
    (
        name().prop_filter("a comment is not a measurement", |name| {
            !name.starts_with('#')
        }),
        prop::collection::btree_map(name(), name(), 0..4),
        prop::collection::btree_map(name(), field(), 1..4),
        prop::option::of(-1_000_000_000i64..4_000_000_000),
    )
        .prop_map(|(measurement, tags, fields, timestamp)| Line {
            measurement,
            tags,
            fields,
            timestamp,
        })
}

fn build(line: &Line) -> String {
    let mut builder = LineProtocolBuilder::new().measurement(&line.measurement);
    for (key, value) in &line.tags {
        builder = builder.tag(key, value);
    }
    let mut fields = line.fields.iter();
    let (first_key, first_value) = fields.next().expect("at least one field");
    let mut builder = add_first(builder, first_key, first_value);
    for (key, value) in fields {
        builder = match value {
            Field::Float(number) => builder.field(key, *number),
            Field::Integer(number) => builder.field(key, *number),
            Field::Unsigned(number) => builder.field(key, *number),
            Field::Boolean(flag) => builder.field(key, *flag),
            Field::Text(text) => builder.field(key, text.as_str()),
        };
    }
    let built = match line.timestamp {
        Some(timestamp) => builder.timestamp(timestamp).close_line().build(),
        None => builder.close_line().build(),
    };
    String::from_utf8(built).expect("the builder writes UTF-8")
}

fn add_first(
    builder: LineProtocolBuilder<Vec<u8>, influxdb_line_protocol::builder::AfterMeasurement>,
    key: &str,
    value: &Field,
) -> LineProtocolBuilder<Vec<u8>, influxdb_line_protocol::builder::AfterField> {
    match value {
        Field::Float(number) => builder.field(key, *number),
        Field::Integer(number) => builder.field(key, *number),
        Field::Unsigned(number) => builder.field(key, *number),
        Field::Boolean(flag) => builder.field(key, *flag),
        Field::Text(text) => builder.field(key, text.as_str()),
    }
}

/// Measurement, tags and fields, as text.
type Meaning = (String, Vec<(String, String)>, Vec<(String, String)>);

/// A parsed line in a form that compares (floats by their bits).
fn meaning(parsed: &ParsedLine<'_>) -> Meaning {
    let tags = parsed
        .series
        .tag_set
        .iter()
        .flatten()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    let fields = parsed
        .field_set
        .iter()
        .map(|(key, value)| {
            let value = match value {
                FieldValue::F64(number) => format!("f{}", number.to_bits()),
                other => format!("{other:?}"),
            };
            (key.to_string(), value)
        })
        .collect();
    (parsed.series.measurement.to_string(), tags, fields)
}

proptest! {
    #[test]
    fn restamping_keeps_series_fields_and_time(
        lines in prop::collection::vec(line(), 1..5),
        nanos_per_unit in prop::sample::select(vec![1i64, 1_000, 1_000_000, 1_000_000_000]),
        received_at in 0i64..4_000_000_000_000_000_000,
    ) {
        let body: String = lines.iter().map(build).collect();
        let parsed: Result<Vec<ParsedLine<'_>>, _> = parse_lines(&body).collect();
        // The builder does not check everything the parser does: only lines the parser takes
        // are the property's (and proptest fails the test if too few are).
        prop_assume!(parsed.as_ref().is_ok_and(|parsed| parsed.len() == lines.len()));
        let originals = parsed.map_err(|error| TestCaseError::fail(error.to_string()))?;

        let restamped = restamp(&body, nanos_per_unit, received_at, 1 << 20);
        prop_assert_eq!(restamped.error_count, 0, "{:?}", restamped.errors);
        let output: String = restamped
            .messages
            .iter()
            .map(|message| String::from_utf8(message.to_vec()).expect("utf-8"))
            .collect();
        let again: Vec<ParsedLine<'_>> = parse_lines(&output)
            .collect::<Result<_, _>>()
            .map_err(|error| TestCaseError::fail(format!("{error}: {output}")))?;
        prop_assert_eq!(again.len(), originals.len());
        for (original, restamped) in originals.iter().zip(&again) {
            prop_assert_eq!(meaning(original), meaning(restamped), "{}", output);
            let expected_time = original
                .timestamp
                .map_or(received_at, |timestamp| timestamp * nanos_per_unit);
            prop_assert_eq!(restamped.timestamp, Some(expected_time));
        }
    }
}
