//! A round trip: any point the sink encodes is decoded back, exactly, by the normalise stage's
//! `LineProtocolDecoder`, which an AMQP source of line protocol (another sluice tier's output,
//! the push intake) uses. Names with every character line protocol escapes, every field type,
//! floats bit for bit, and several lines in one body.

use std::collections::BTreeMap;
use std::convert::Infallible;

use bytes::Bytes;
use proptest::prelude::*;
use sluice_core::ack::SourceMessage;
use sluice_core::path::{Decoded, Decoder};
use sluice_core::point::{FieldValue, Point, PointLimits};
use sluice_influx::{Precision, encode_point};
use sluice_normalise::{LineProtocolDecoder, TimestampPrecision};

/// Names as the encoder takes them: anything but backslashes (refused for 1.x's sake), line
/// breaks and a leading `#`; with the characters line protocol escapes, quotes and unicode.
fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,=\"'é中😀_.-]{1,12}".prop_filter("no leading #", |name| !name.starts_with('#'))
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<i64>().prop_map(FieldValue::Integer),
        any::<f64>()
            .prop_filter("finite", |value| value.is_finite())
            .prop_map(FieldValue::Float),
        any::<bool>().prop_map(FieldValue::Boolean),
        "[a-zA-Z0-9 ,=\"'\\\\é😀]{0,16}".prop_map(FieldValue::String),
    ]
}

fn point() -> impl Strategy<Value = Point> {
    (
        name(),
        proptest::collection::btree_map(name(), name(), 0..4),
        proptest::collection::btree_map(name(), field_value(), 1..4),
        0i64..i64::MAX,
    )
        .prop_map(|(measurement, tags, fields, timestamp)| Point {
            measurement,
            tags,
            fields,
            timestamp,
        })
}

fn decode(body: Vec<u8>) -> Vec<Result<Point, String>> {
    let mut decoder =
        LineProtocolDecoder::new(TimestampPrecision::Nanoseconds, PointLimits::default());
    let message = SourceMessage {
        body: Bytes::from(body),
        ..SourceMessage::default()
    };
    let mut decoded = Vec::new();
    decoder.decode_each(&message, &mut |item: Decoded<_, Infallible>| {
        decoded.push(match item {
            Decoded::Item(point) => Ok(point.to_point()),
            Decoded::Refused(refusal) => Err(refusal.detail),
            Decoded::Control(never) => match never {},
        });
    });
    decoded
}

proptest! {
    #[test]
    fn every_encoded_point_decodes_back_exactly(points in proptest::collection::vec(point(), 1..20)) {
        let mut body = Vec::new();
        for point in &points {
            encode_point(&mut body, point, Precision::Nanoseconds, &PointLimits::default())
                .expect("the generated points are encodable");
        }
        let decoded = decode(body);
        prop_assert_eq!(decoded.len(), points.len());
        for (decoded, point) in decoded.into_iter().zip(&points) {
            prop_assert_eq!(decoded.as_ref(), Ok(point));
        }
    }
}

#[test]
fn a_point_with_every_field_type_round_trips() {
    let point = Point {
        measurement: "cpu load, \"x\"=1".into(),
        tags: BTreeMap::from([("host name".into(), "h,1=2".into())]),
        fields: BTreeMap::from([
            ("f".into(), FieldValue::Float(-0.1)),
            ("i".into(), FieldValue::Integer(i64::MIN)),
            ("b".into(), FieldValue::Boolean(false)),
            ("s".into(), FieldValue::String("say \"hi\" \\ back".into())),
        ]),
        timestamp: 1_700_000_000_123_456_789,
    };
    let mut body = Vec::new();
    encode_point(
        &mut body,
        &point,
        Precision::Nanoseconds,
        &PointLimits::default(),
    )
    .expect("encodes");
    assert_eq!(decode(body), [Ok(point)]);
}
