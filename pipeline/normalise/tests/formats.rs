//! The many-point decoders (`sluice_normalise::formats`): good bodies become exactly the points
//! they hold; in mixed bodies each bad line (or array element) is refused alone, carrying
//! itself as the dead letter's part, with a reason and its line number; bodies that attack the
//! line protocol downstream (injected lines, huge names) or hold nonsense (invalid UTF-8, NaN)
//! are refused, never passed on; and generated valid bodies decode to one point per line.

use std::collections::BTreeMap;
use std::convert::Infallible;

use bytes::Bytes;
use proptest::prelude::*;
use sluice_core::ack::SourceMessage;
use sluice_core::path::{Decoded, Decoder};
use sluice_core::point::{FieldValue, Point, PointLimits, ValidPoint};
use sluice_normalise::{
    GraphiteLinesDecoder, JsonDecoder, JsonMappingError, JsonMappingSettings, LineProtocolDecoder,
    MeasurementSource, TemplateSet, TimeFormat, TimestampPrecision,
};

/// What one body became, owned: a point, or (reason, detail, part).
#[derive(Debug, Clone, PartialEq)]
enum Out {
    Point(Point),
    Refused(String, String, Option<String>),
}

fn decode_all<D>(decoder: &mut D, body: &[u8]) -> Vec<Out>
where
    D: for<'a> Decoder<Item<'a> = ValidPoint<'a>, Control = Infallible>,
{
    let message = SourceMessage {
        body: Bytes::copy_from_slice(body),
        ..SourceMessage::default()
    };
    let mut outs = Vec::new();
    decoder.decode_each(&message, &mut |decoded| {
        outs.push(match decoded {
            Decoded::Item(point) => Out::Point(point.to_point()),
            Decoded::Refused(refusal) => Out::Refused(
                refusal.reason.as_str().to_owned(),
                refusal.detail.clone(),
                refusal
                    .part
                    .as_ref()
                    .map(|part| String::from_utf8_lossy(part).into_owned()),
            ),
            Decoded::Control(never) => match never {},
        });
    });
    outs
}

fn points(outs: &[Out]) -> Vec<Point> {
    outs.iter()
        .filter_map(|out| match out {
            Out::Point(point) => Some(point.clone()),
            Out::Refused(..) => None,
        })
        .collect()
}

/// The refusals as (reason, line number named in the detail, part).
fn refusals(outs: &[Out]) -> Vec<(String, String, Option<String>)> {
    outs.iter()
        .filter_map(|out| match out {
            Out::Refused(reason, detail, part) => {
                Some((reason.clone(), detail.clone(), part.clone()))
            }
            Out::Point(_) => None,
        })
        .collect()
}

fn point(
    measurement: &str,
    tags: &[(&str, &str)],
    fields: &[(&str, FieldValue)],
    timestamp: i64,
) -> Point {
    Point {
        measurement: measurement.to_owned(),
        tags: tags
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        fields: fields
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect(),
        timestamp,
    }
}

const SECOND: i64 = 1_000_000_000;

// ---- Graphite plaintext ----

fn graphite() -> GraphiteLinesDecoder {
    let templates = TemplateSet::parse(
        ".",
        &[
            "servers.* .host.measurement.field".to_owned(),
            "measurement* region=eu".to_owned(),
        ],
    )
    .expect("valid templates");
    GraphiteLinesDecoder::new(
        templates,
        [
            ("source".to_owned(), "graphite".to_owned()),
            ("region".to_owned(), "extra".to_owned()),
        ],
        PointLimits::default(),
    )
}

#[test]
fn graphite_lines_become_templated_points_with_extra_tags() {
    let body = b"servers.web01.cpu.idle 98.5 1700000000\r\n\nload.avg 0.25 1700000001.5\n\n";
    let outs = decode_all(&mut graphite(), body);
    assert_eq!(
        outs,
        [
            Out::Point(point(
                "cpu",
                &[
                    ("host", "web01"),
                    ("region", "extra"),
                    ("source", "graphite")
                ],
                &[("idle", FieldValue::Float(98.5))],
                1_700_000_000 * SECOND,
            )),
            Out::Point(point(
                "load.avg",
                &[("region", "eu"), ("source", "graphite")],
                &[("value", FieldValue::Float(0.25))],
                1_700_000_001 * SECOND + SECOND / 2,
            )),
        ]
    );
}

#[test]
fn graphite_bad_lines_are_refused_alone_with_their_number_and_reason() {
    let body = b"a.b 1 1700000000\n\
        a.b 2\n\
        a.b x 1700000000\n\
        a.b nan 1700000000\n\
        a.b inf 1700000000\n\
        a.b 1 yesterday\n\
        a.b 1 1700000000 extra\n\
        a.\xff 1 1700000000\n\
        a.c 3 1700000003\n";
    let outs = decode_all(&mut graphite(), body);
    assert_eq!(
        points(&outs),
        [
            point(
                "a.b",
                &[("region", "eu"), ("source", "graphite")],
                &[("value", FieldValue::Float(1.0))],
                1_700_000_000 * SECOND
            ),
            point(
                "a.c",
                &[("region", "eu"), ("source", "graphite")],
                &[("value", FieldValue::Float(3.0))],
                1_700_000_003 * SECOND
            ),
        ]
    );
    let refused = refusals(&outs);
    let expected = [
        ("bad_timestamp", 2, "a.b 2"),
        ("bad_line", 3, "a.b x 1700000000"),
        ("not_finite", 4, "a.b nan 1700000000"),
        ("not_finite", 5, "a.b inf 1700000000"),
        ("bad_timestamp", 6, "a.b 1 yesterday"),
        ("bad_line", 7, "a.b 1 1700000000 extra"),
        ("invalid_utf8", 8, "a.\u{fffd} 1 1700000000"),
    ];
    assert_eq!(refused.len(), expected.len(), "{refused:?}");
    for ((reason, detail, part), (want_reason, line, want_part)) in refused.iter().zip(expected) {
        assert_eq!(reason, want_reason, "{detail}");
        assert!(detail.starts_with(&format!("line {line}: ")), "{detail}");
        assert_eq!(part.as_deref(), Some(want_part));
    }
}

#[test]
fn graphite_names_too_long_are_refused_and_do_not_crash() {
    let long = format!("{} 1 1700000000\nok 1 1700000000", "x".repeat(5_000));
    let outs = decode_all(&mut graphite(), long.as_bytes());
    let refused = refusals(&outs);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, "name_too_long");
    assert_eq!(points(&outs).len(), 1);
}

// ---- Line protocol ----

fn line_protocol(precision: TimestampPrecision) -> LineProtocolDecoder {
    LineProtocolDecoder::new(precision, PointLimits::default())
}

#[test]
fn line_protocol_of_every_field_type_becomes_exact_points() {
    let body = "# a comment\n\
        cpu,host=web\\ 01,region=eu usage=0.5,count=3i,big=7u,up=true,note=\"say \\\"hi\\\"\" 1700000000000000000\r\n\
        \n\
        mem,host=a free=1e3,free=2.5 1700000000000000001\n\
        text s=\"two\nlines\" 1700000000000000002\n";
    let outs = decode_all(
        &mut line_protocol(TimestampPrecision::Nanoseconds),
        body.as_bytes(),
    );
    assert_eq!(
        outs,
        [
            Out::Point(point(
                "cpu",
                &[("host", "web 01"), ("region", "eu")],
                &[
                    ("big", FieldValue::Integer(7)),
                    ("count", FieldValue::Integer(3)),
                    ("note", FieldValue::String("say \"hi\"".into())),
                    ("up", FieldValue::Boolean(true)),
                    ("usage", FieldValue::Float(0.5)),
                ],
                1_700_000_000_000_000_000,
            )),
            Out::Point(point(
                "mem",
                &[("host", "a")],
                &[("free", FieldValue::Float(2.5))],
                1_700_000_000_000_000_001,
            )),
            Out::Point(point(
                "text",
                &[],
                &[("s", FieldValue::String("two\nlines".into()))],
                1_700_000_000_000_000_002,
            )),
        ]
    );
}

#[test]
fn line_protocol_timestamps_are_read_in_the_precision() {
    let outs = decode_all(
        &mut line_protocol(TimestampPrecision::Seconds),
        b"m v=1 1700000000\n",
    );
    assert_eq!(points(&outs)[0].timestamp, 1_700_000_000 * SECOND);
    let outs = decode_all(
        &mut line_protocol(TimestampPrecision::Milliseconds),
        b"m v=1 1700000000123\n",
    );
    assert_eq!(points(&outs)[0].timestamp, 1_700_000_000_123_000_000);
    let outs = decode_all(
        &mut line_protocol(TimestampPrecision::Seconds),
        b"m v=1 9223372036854775807\n",
    );
    assert_eq!(refusals(&outs)[0].0, "bad_timestamp");
}

#[test]
fn line_protocol_bad_lines_are_refused_alone_with_their_number_reason_and_part() {
    let body = b"ok v=1 1\n\
        no_time v=1\n\
        broken v= 2\n\
        nofields 3\n\
        huge v=18446744073709551615u 4\n\
        dup,t=a,t=b v=1 5\n\
        bad\xfe v=1 6\n\
        ok v=7 7\n";
    let outs = decode_all(&mut line_protocol(TimestampPrecision::Nanoseconds), body);
    assert_eq!(
        points(&outs),
        [
            point("ok", &[], &[("v", FieldValue::Float(1.0))], 1),
            point("ok", &[], &[("v", FieldValue::Float(7.0))], 7),
        ]
    );
    let expected = [
        ("bad_timestamp", 2, "no_time v=1"),
        ("bad_line", 3, "broken v= 2"),
        ("bad_line", 4, "nofields 3"),
        ("wrong_type", 5, "huge v=18446744073709551615u 4"),
        ("bad_line", 6, "dup,t=a,t=b v=1 5"),
        ("invalid_utf8", 7, "bad\u{fffd} v=1 6"),
    ];
    let refused = refusals(&outs);
    assert_eq!(refused.len(), expected.len(), "{refused:?}");
    for ((reason, detail, part), (want_reason, line, want_part)) in refused.iter().zip(expected) {
        assert_eq!(reason, want_reason, "{detail}");
        assert!(detail.starts_with(&format!("line {line}: ")), "{detail}");
        assert_eq!(part.as_deref(), Some(want_part));
    }
}

#[test]
fn line_protocol_nan_and_injected_names_are_refused() {
    // An escaped line break keeps the line whole (as the parser splits lines), and the tag
    // value holding it is refused: written on, it would start an injected line. The parser
    // has no literal for NaN or infinity and refuses those lines itself.
    let body = "m,host=a\\\nb v=1 1\nm v=NaN 2\nm v=inf 3\n";
    let outs = decode_all(
        &mut line_protocol(TimestampPrecision::Nanoseconds),
        body.as_bytes(),
    );
    assert!(points(&outs).is_empty(), "{outs:?}");
    let refused: Vec<(String, String)> = refusals(&outs)
        .into_iter()
        .map(|(reason, detail, _)| (reason, detail))
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert_eq!(refused[0].0, "unsafe_name");
    assert!(
        refused[0].1.starts_with("line 1: tag value"),
        "{}",
        refused[0].1
    );
    assert_eq!(
        refused[1],
        ("bad_line".into(), "line 3: No fields were provided".into())
    );
    assert_eq!(
        refused[2],
        ("bad_line".into(), "line 4: No fields were provided".into())
    );
    let long_tag = format!("m,t={} v=1 1\n", "x".repeat(2_000));
    let outs = decode_all(
        &mut line_protocol(TimestampPrecision::Nanoseconds),
        long_tag.as_bytes(),
    );
    assert_eq!(refusals(&outs)[0].0, "name_too_long");
}

// ---- JSON ----

fn mapping(time_format: TimeFormat, time: &str) -> JsonMappingSettings {
    JsonMappingSettings {
        measurement: MeasurementSource::Pointer("/name".into()),
        tags: BTreeMap::from([
            ("host".into(), "/meta/host".into()),
            ("rack".into(), "/meta/rack".into()),
        ]),
        fields: BTreeMap::from([
            ("value".into(), "/value".into()),
            ("count".into(), "/n".into()),
            ("ok".into(), "/ok".into()),
            ("msg".into(), "/msg".into()),
        ]),
        time: time.into(),
        time_format,
    }
}

fn json(settings: JsonMappingSettings) -> JsonDecoder {
    JsonDecoder::new(
        settings.validate().expect("valid mapping"),
        PointLimits::default(),
    )
}

#[test]
fn a_json_object_and_an_array_of_them_become_mapped_points() {
    let mut decoder = json(mapping(TimeFormat::UnixMs, "/ts"));
    let object = br#"{"name":"cpu","meta":{"host":"web01","rack":7},"value":0.5,"n":3,"ok":true,"msg":"hi","ts":1700000000123}"#;
    assert_eq!(
        decode_all(&mut decoder, object),
        [Out::Point(point(
            "cpu",
            &[("host", "web01"), ("rack", "7")],
            &[
                ("count", FieldValue::Integer(3)),
                ("msg", FieldValue::String("hi".into())),
                ("ok", FieldValue::Boolean(true)),
                ("value", FieldValue::Float(0.5)),
            ],
            1_700_000_000_123_000_000,
        ))]
    );

    let mut decoder = json(mapping(TimeFormat::Rfc3339, "/at"));
    let array = br#"[{"name":"a","value":1,"at":"2023-11-14T22:13:20.5Z"},{"name":"b","value":2.5,"at":"2023-11-14T23:13:20+01:00"}]"#;
    assert_eq!(
        points(&decode_all(&mut decoder, array)),
        [
            point(
                "a",
                &[],
                &[("value", FieldValue::Integer(1))],
                1_700_000_000 * SECOND + SECOND / 2
            ),
            point(
                "b",
                &[],
                &[("value", FieldValue::Float(2.5))],
                1_700_000_000 * SECOND
            ),
        ]
    );

    for (format, time, expected) in [
        (
            TimeFormat::UnixS,
            "1700000000.25",
            1_700_000_000 * SECOND + SECOND / 4,
        ),
        (
            TimeFormat::UnixNs,
            "1700000000000000007",
            1_700_000_000_000_000_007,
        ),
    ] {
        let mut decoder = json(mapping(format, "/t"));
        let body = format!(r#"{{"name":"m","value":1,"t":{time}}}"#);
        assert_eq!(
            points(&decode_all(&mut decoder, body.as_bytes()))[0].timestamp,
            expected
        );
    }

    let mut constant = mapping(TimeFormat::UnixS, "/t");
    constant.measurement = MeasurementSource::Constant("fixed".into());
    let outs = decode_all(&mut json(constant), br#"{"value":1,"t":1}"#);
    assert_eq!(points(&outs)[0].measurement, "fixed");
}

#[test]
fn json_elements_are_refused_alone_with_their_index_reason_and_part() {
    let mut decoder = json(mapping(TimeFormat::UnixS, "/t"));
    let body = br#"[
        {"name":"good","value":1,"t":1},
        {"name":"no_time","value":1},
        {"value":1,"t":1},
        {"name":"no_fields","t":1},
        {"name":"bad_time","value":1,"t":"soon"},
        {"name":"nested","value":{"x":1},"t":1},
        {"name":"inject\nx value=1","value":1,"t":1},
        {"name":"tag","meta":{"host":"h\nevil v=1 1"},"value":1,"t":1},
        7,
        {"name":"good","value":2,"t":2}
    ]"#;
    let outs = decode_all(&mut decoder, body);
    assert_eq!(points(&outs).len(), 2);
    let expected = [
        ("missing_field", 1),
        ("missing_field", 2),
        ("missing_field", 3),
        ("bad_timestamp", 4),
        ("wrong_type", 5),
        ("unsafe_name", 6),
        ("unsafe_name", 7),
        ("wrong_type", 8),
    ];
    let refused = refusals(&outs);
    assert_eq!(refused.len(), expected.len(), "{refused:?}");
    for ((reason, detail, part), (want_reason, index)) in refused.iter().zip(expected) {
        assert_eq!(reason, want_reason, "{detail}");
        assert!(detail.starts_with(&format!("element {index} ")), "{detail}");
        let part: serde_json::Value =
            serde_json::from_str(part.as_deref().expect("a part")).expect("the element as JSON");
        let whole: serde_json::Value = serde_json::from_slice(body).expect("json");
        assert_eq!(part, whole[index]);
    }
}

#[test]
fn json_bodies_that_are_not_json_objects_are_refused_whole() {
    let mut decoder = json(mapping(TimeFormat::UnixS, "/t"));
    for (body, reason) in [
        (&b"\xff\xfe"[..], "invalid_utf8"),
        (b"{not json", "invalid_json"),
        (b"42", "wrong_type"),
        (br#"{"name":"m","value":1e999,"t":1}"#, "invalid_json"),
    ] {
        let outs = decode_all(&mut decoder, body);
        let refused = refusals(&outs);
        assert_eq!(refused.len(), 1, "{outs:?}");
        assert_eq!(refused[0].0, reason, "{}", String::from_utf8_lossy(body));
        assert_eq!(refused[0].2, None, "the whole body is the dead letter");
    }
}

#[test]
fn a_bad_pointer_is_refused_naming_the_setting() {
    let mut settings = mapping(TimeFormat::UnixS, "/t");
    settings.tags.insert("zone".into(), "zone".into());
    assert_eq!(
        settings.validate(),
        Err(JsonMappingError::BadPointer {
            setting: "tags.zone".into(),
            pointer: "zone".into()
        })
    );
    let mut settings = mapping(TimeFormat::UnixS, "/t~2");
    assert!(matches!(
        settings.clone().validate(),
        Err(JsonMappingError::BadPointer { setting, .. }) if setting == "time"
    ));
    settings.time = "/t".into();
    settings.fields.clear();
    assert_eq!(settings.validate(), Err(JsonMappingError::NoFields));
}

#[test]
fn the_mapping_settings_read_from_configuration() {
    let settings: JsonMappingSettings = serde_json::from_value(serde_json::json!({
        "measurement": {"constant": "weather"},
        "tags": {"station": "/id"},
        "fields": {"temp": "/readings/0"},
        "time": "/when",
        "time_format": "rfc3339"
    }))
    .expect("reads");
    let mut decoder = json(settings);
    let outs = decode_all(
        &mut decoder,
        br#"{"id":"x1","readings":[21.5],"when":"2023-11-14T22:13:20Z"}"#,
    );
    assert_eq!(
        points(&outs),
        [point(
            "weather",
            &[("station", "x1")],
            &[("temp", FieldValue::Float(21.5))],
            1_700_000_000 * SECOND
        )]
    );
}

// ---- decode(), one item per body ----

#[test]
fn decode_answers_a_body_of_one_point_and_refuses_a_body_of_many() {
    let mut decoder = line_protocol(TimestampPrecision::Nanoseconds);
    let one = SourceMessage {
        body: Bytes::from_static(b"m v=1 1\n"),
        ..SourceMessage::default()
    };
    assert!(matches!(decoder.decode(&one), Decoded::Item(point) if point.measurement == "m"));
    let many = SourceMessage {
        body: Bytes::from_static(b"m v=1 1\nm v=2 2\n"),
        ..SourceMessage::default()
    };
    assert!(
        matches!(decoder.decode(&many), Decoded::Refused(refusal) if refusal.reason == "rejected")
    );
}

// ---- properties ----

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,11}"
}

proptest! {
    /// Any set of valid Graphite lines decodes to one point per line, in order.
    #[test]
    fn valid_graphite_lines_decode_to_one_point_each(
        lines in proptest::collection::vec((name(), name(), -1e12f64..1e12, 0i64..4_000_000_000), 0..50),
        crlf in any::<bool>(),
    ) {
        let ending = if crlf { "\r\n" } else { "\n" };
        let body: String = lines
            .iter()
            .map(|(first, second, value, time)| format!("{first}.{second} {value} {time}{ending}"))
            .collect();
        let outs = decode_all(&mut graphite(), body.as_bytes());
        prop_assert_eq!(outs.len(), lines.len());
        for (out, (first, second, value, time)) in outs.iter().zip(&lines) {
            let Out::Point(point) = out else { panic!("{out:?}") };
            prop_assert_eq!(&point.measurement, &format!("{first}.{second}"));
            prop_assert_eq!(&point.fields["value"], &FieldValue::Float(*value));
            prop_assert_eq!(point.timestamp, time * SECOND);
        }
    }

    /// Any set of valid line-protocol lines decodes to one point per line.
    #[test]
    fn valid_line_protocol_decodes_to_one_point_each(
        lines in proptest::collection::vec((name(), name(), name(), any::<i64>(), 0i64..i64::MAX), 0..50),
    ) {
        let body: String = lines
            .iter()
            .map(|(measurement, tag, field, value, time)| {
                format!("{measurement},t={tag} {field}={value}i {time}\n")
            })
            .collect();
        let outs = decode_all(&mut line_protocol(TimestampPrecision::Nanoseconds), body.as_bytes());
        prop_assert_eq!(outs.len(), lines.len());
        for (out, (_, _, field, value, _)) in outs.iter().zip(&lines) {
            let Out::Point(point) = out else { panic!("{out:?}") };
            prop_assert_eq!(&point.fields[field], &FieldValue::Integer(*value));
        }
    }

    /// Any array of valid objects decodes to one point per object.
    #[test]
    fn valid_json_arrays_decode_to_one_point_each(
        objects in proptest::collection::vec((name(), -1e9f64..1e9, 0i64..4_000_000_000), 0..30),
    ) {
        let body = serde_json::Value::Array(
            objects
                .iter()
                .map(|(name, value, time)| serde_json::json!({"name": name, "value": value, "t": time}))
                .collect(),
        );
        let mut decoder = json(mapping(TimeFormat::UnixS, "/t"));
        let outs = decode_all(&mut decoder, body.to_string().as_bytes());
        prop_assert_eq!(points(&outs).len(), objects.len());
    }

    /// Nothing any body holds makes a decoder panic.
    #[test]
    fn arbitrary_bodies_never_crash(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        decode_all(&mut graphite(), &body);
        decode_all(&mut line_protocol(TimestampPrecision::Seconds), &body);
        decode_all(&mut json(mapping(TimeFormat::Rfc3339, "/t")), &body);
    }
}
