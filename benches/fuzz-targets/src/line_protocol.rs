//! The property of every point a metrics decoder lets through: it encodes, as the metrics
//! path encodes it, to exactly one line of line protocol, and InfluxDB's own parser reads that
//! line back as the same point.

use std::collections::BTreeMap;

use influxdb_line_protocol::{FieldValue as ParsedValue, parse_lines};
use sluice_core::point::{FieldRef, ValidPoint};
use sluice_influx::{EncodeError, LineEncoder};

/// Encodes `point` with `encoder` and parses the line back; panics when the line is not one
/// line, does not parse, or reads back as another point.
pub(crate) fn assert_encodes_to_one_line(encoder: &mut LineEncoder, point: &ValidPoint<'_>) {
    let line = match encoder.encode_line(point) {
        Ok(line) => line,
        // Refused by design (`unsafe_name`, dead-lettered): InfluxDB 1.x and 2.x would not
        // read a name with a backslash back unchanged.
        Err(EncodeError::Backslash { .. }) => return,
        Err(error) => panic!("the encoder refused a validated point: {error}: {point:?}"),
    };
    let text = std::str::from_utf8(line.as_bytes()).expect("line protocol is UTF-8");
    assert!(
        text.ends_with('\n') && text.matches('\n').count() == 1,
        "not exactly one line: {text:?}"
    );
    // The IOx parser ends a name at a tab; InfluxDB 1.x, the sidecar's store, reads it as part
    // of the name (pipeline/influx/tests/influx_v1.rs stores one and reads it back), so a line
    // with a tab is one line but is not checked against this parser.
    if text.contains('\t') {
        return;
    }
    let parsed: Vec<_> = parse_lines(text).collect();
    assert_eq!(
        parsed.len(),
        1,
        "parsed as {} lines: {text:?}",
        parsed.len()
    );
    let parsed = match &parsed[0] {
        Ok(parsed) => parsed,
        Err(error) => panic!("InfluxDB's parser refuses {text:?}: {error}"),
    };

    assert_eq!(
        parsed.series.measurement.as_str(),
        point.measurement.as_ref(),
        "measurement of {text:?}"
    );
    let tags: BTreeMap<&str, &str> = parsed
        .series
        .tag_set
        .iter()
        .flatten()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    let sent_tags: BTreeMap<&str, &str> = point
        .tags
        .iter()
        .map(|(key, value)| (key.as_ref(), value.as_ref()))
        .collect();
    assert_eq!(tags, sent_tags, "tags of {text:?}");
    assert_eq!(
        parsed.field_set.len(),
        point.fields.len(),
        "fields of {text:?}"
    );
    for (key, value) in &parsed.field_set {
        let sent = point
            .fields
            .iter()
            .find(|(sent_key, _)| sent_key.as_ref() == key.as_str())
            .map(|(_, sent)| sent);
        assert!(
            sent.is_some_and(|sent| same_value(value, sent)),
            "field {key:?} reads back as {value:?}, was {sent:?}, in {text:?}"
        );
    }
    assert_eq!(
        parsed.timestamp,
        Some(point.timestamp),
        "timestamp of {text:?}"
    );
}

fn same_value(parsed: &ParsedValue<'_>, sent: &FieldRef<'_>) -> bool {
    match (parsed, sent) {
        (ParsedValue::F64(parsed), FieldRef::Float(sent)) => parsed == sent,
        (ParsedValue::I64(parsed), FieldRef::Integer(sent)) => parsed == sent,
        (ParsedValue::Boolean(parsed), FieldRef::Boolean(sent)) => parsed == sent,
        (ParsedValue::String(parsed), FieldRef::String(sent)) => parsed.as_str() == sent.as_ref(),
        _ => false,
    }
}
