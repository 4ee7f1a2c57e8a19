//! Bodies that must be refused, each with the reason it is counted and dead-lettered under.

use sluice_core::point::PointLimits;
use sluice_core::rejection::Rejection;
use sluice_normalise::{Naming, Normalised, Normaliser};

const EXAMPLE: &str = r#"{"node_id":"nodejs_host_x7k2p","node_name":"nodejs_host","deployment_id":"nodecellar","name":"cpu","path":"total_user","metric":3.2,"unit":"","type":"GAUGE","host":"nodejs_host_x7k2p","service":"nodecellar.nodejs_host.nodejs_host_x7k2p.cpu.total.user","time":1466000000}"#;

const CONTROL: &str = r#"{"service":"cloudify.configuration","state":"start","config_path":"/tmp/p","deployment_id":"nodecellar","time":1466000000}"#;

const SERVICE: &str = "nodecellar.nodejs_host.nodejs_host_x7k2p.cpu.total.user";

/// `EXAMPLE` with one `"key":value` pair replaced (or removed, with `None`).
fn example_with(key: &str, value: Option<&str>) -> String {
    set_key(EXAMPLE, key, value)
}

fn set_key(json: &str, key: &str, value: Option<&str>) -> String {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).expect("a JSON object");
    let mut text = String::from("{");
    let mut replaced = false;
    for (existing, existing_value) in &object {
        let value = if existing == key {
            replaced = true;
            match value {
                Some(value) => value.to_owned(),
                None => continue,
            }
        } else {
            existing_value.to_string()
        };
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str(&format!("{existing:?}:{value}"));
    }
    assert!(replaced, "{key} is not in {json}");
    text.push('}');
    text
}

fn refusal(naming: Naming, body: &[u8]) -> (String, &'static str) {
    let normaliser = Normaliser::new(naming, PointLimits::default());
    match normaliser.normalise(body) {
        Ok(Normalised::Point(point)) => panic!("accepted as {point:?}"),
        Ok(Normalised::Control(control)) => panic!("accepted as {control:?}"),
        Err(error) => (error.to_string(), error.reason().as_str()),
    }
}

#[test]
fn bad_bodies_are_refused_with_their_reason() {
    let long_service = format!("{SERVICE}.{}", "x".repeat(5000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not JSON",
            b"cpu.total.user 3.2 1466000000".to_vec(),
            "invalid_json",
        ),
        ("empty body", Vec::new(), "invalid_json"),
        (
            "truncated",
            EXAMPLE.as_bytes()[..40].to_vec(),
            "invalid_json",
        ),
        (
            "trailing garbage",
            format!("{EXAMPLE}x").into_bytes(),
            "invalid_json",
        ),
        ("invalid UTF-8, bare", vec![0xff], "invalid_utf8"),
        (
            "invalid UTF-8 in a value",
            {
                let mut body = EXAMPLE.as_bytes().to_vec();
                let at = EXAMPLE.find("total_user").expect("in the example");
                body[at] = 0xff;
                body
            },
            "invalid_utf8",
        ),
        (
            "invalid UTF-8 in an unknown key's value",
            {
                let mut body = br#"{"junk":"#.to_vec();
                body.extend([b'"', 0xc3, 0x28, b'"', b',']);
                body.extend_from_slice(&EXAMPLE.as_bytes()[1..]);
                body
            },
            "invalid_utf8",
        ),
        ("a JSON array", b"[1,2,3]".to_vec(), "wrong_type"),
        ("a JSON string", br#""cpu""#.to_vec(), "wrong_type"),
        ("a JSON number", b"3.2".to_vec(), "wrong_type"),
        ("JSON null", b"null".to_vec(), "wrong_type"),
        (
            "a duplicate key",
            example_with("name", Some(r#""cpu","name":"mem""#)).into_bytes(),
            "invalid_json",
        ),
        (
            "metric as a string",
            example_with("metric", Some(r#""3.2""#)).into_bytes(),
            "wrong_type",
        ),
        (
            "metric null",
            example_with("metric", Some("null")).into_bytes(),
            "wrong_type",
        ),
        (
            "metric an object",
            example_with("metric", Some(r#"{"v":1}"#)).into_bytes(),
            "wrong_type",
        ),
        (
            "metric 1e999",
            example_with("metric", Some("1e999")).into_bytes(),
            "not_finite",
        ),
        (
            "metric -1e999",
            example_with("metric", Some("-1e999")).into_bytes(),
            "not_finite",
        ),
        (
            "metric 1e999 with spaces around",
            example_with("metric", Some(" 1e999 ")).into_bytes(),
            "not_finite",
        ),
        (
            "metric +1e999 is not JSON",
            example_with("metric", Some("+1e999")).into_bytes(),
            "invalid_json",
        ),
        (
            "metric 01 is not JSON",
            example_with("metric", Some("01")).into_bytes(),
            "invalid_json",
        ),
        (
            "an unknown key 1e999",
            example_with("unit", Some(r#""","ttl":1e999"#)).into_bytes(),
            "not_finite",
        ),
        (
            "time 1e999",
            example_with("time", Some("1E+999")).into_bytes(),
            "bad_timestamp",
        ),
        (
            "time a 30-digit integer",
            example_with("time", Some(&"9".repeat(30))).into_bytes(),
            "bad_timestamp",
        ),
        (
            "time as a string",
            example_with("time", Some(r#""1466000000""#)).into_bytes(),
            "bad_timestamp",
        ),
        (
            "time negative",
            example_with("time", Some("-1")).into_bytes(),
            "bad_timestamp",
        ),
        (
            "time past 2262",
            example_with("time", Some("9223372037")).into_bytes(),
            "bad_timestamp",
        ),
        (
            "time huge float",
            example_with("time", Some("1e300")).into_bytes(),
            "bad_timestamp",
        ),
        (
            "time null",
            example_with("time", Some("null")).into_bytes(),
            "bad_timestamp",
        ),
        (
            "node_id a number",
            example_with("node_id", Some("7")).into_bytes(),
            "wrong_type",
        ),
        (
            "host a number",
            example_with("host", Some("7")).into_bytes(),
            "wrong_type",
        ),
        (
            "type an array",
            example_with("type", Some("[]")).into_bytes(),
            "wrong_type",
        ),
        (
            "newline reaching the measurement through service",
            example_with(
                "service",
                Some(r#""nodecellar.nodejs_host.nodejs_host_x7k2p.cpu.total\nuser""#),
            )
            .into_bytes(),
            "unsafe_name",
        ),
        (
            "newline in path reaching the measurement through the name.path fallback",
            set_key(
                &example_with("service", Some(r#""elsewhere""#)),
                "path",
                Some(r#""total\nuser""#),
            )
            .into_bytes(),
            "unsafe_name",
        ),
        (
            "carriage return in a tag",
            example_with("node_name", Some(r#""nodejs\r_host""#)).into_bytes(),
            "unsafe_name",
        ),
        (
            "measurement starting with '#'",
            example_with(
                "service",
                Some(r##""nodecellar.nodejs_host.nodejs_host_x7k2p.#cpu.total.user""##),
            )
            .into_bytes(),
            "unsafe_name",
        ),
        (
            "5000-byte service name",
            example_with("service", Some(&format!("{long_service:?}"))).into_bytes(),
            "name_too_long",
        ),
        (
            "control message with a bad state",
            set_key(CONTROL, "state", Some(r#""pause""#)).into_bytes(),
            "wrong_type",
        ),
        (
            "control message with a numeric state",
            set_key(CONTROL, "state", Some("1")).into_bytes(),
            "wrong_type",
        ),
        (
            "control message with a bad time",
            set_key(CONTROL, "time", Some(r#""now""#)).into_bytes(),
            "bad_timestamp",
        ),
    ];
    for (what, body, reason) in cases {
        let (message, got) = refusal(Naming::default(), &body);
        assert_eq!(got, reason, "{what}: {message}");
        assert!(message.len() < 300, "{what}: message too long: {message}");
    }
}

#[test]
fn each_required_metric_field_missing_is_missing_field() {
    for field in [
        "deployment_id",
        "node_name",
        "node_id",
        "name",
        "path",
        "metric",
        "service",
        "time",
    ] {
        let body = example_with(field, None);
        for naming in [Naming::default(), Naming::CloudifyLegacy] {
            let (message, reason) = refusal(naming, body.as_bytes());
            assert_eq!(reason, "missing_field", "{field}: {message}");
            assert_eq!(message, format!("metric body has no {field:?} field"));
        }
    }
}

#[test]
fn each_required_control_field_missing_is_missing_field() {
    for field in ["state", "config_path", "deployment_id", "time"] {
        let body = set_key(CONTROL, field, None);
        let (message, reason) = refusal(Naming::default(), body.as_bytes());
        assert_eq!(reason, "missing_field", "{field}: {message}");
        assert_eq!(message, format!("control message has no {field:?} field"));
    }
}

#[test]
fn optional_fields_may_be_absent_or_null() {
    let normaliser = Normaliser::new(Naming::default(), PointLimits::default());
    for field in ["host", "unit", "type"] {
        for body in [example_with(field, None), example_with(field, Some("null"))] {
            let normalised = normaliser.normalise(&body.into_bytes());
            assert!(
                matches!(normalised, Ok(Normalised::Point(_))),
                "{field}: {normalised:?}"
            );
        }
    }
}

#[test]
fn deep_nesting_neither_overflows_the_stack_nor_passes() {
    let normaliser = Normaliser::new(Naming::default(), PointLimits::default());
    for depth in [1_000, 100_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let body = example_with("unit", Some(&nested));
        match normaliser.normalise(&body.into_bytes()) {
            // simd-json's depth limit is 1024: below it the value is a wrong-typed unit.
            Err(error) => assert!(
                ["wrong_type", "invalid_json"].contains(&error.reason().as_str()),
                "{depth}: {error}"
            ),
            Ok(normalised) => panic!("{depth}: {normalised:?}"),
        }
    }
}

#[test]
fn integers_past_64_bits_are_float_metrics() {
    let normaliser = Normaliser::new(Naming::default(), PointLimits::default());
    let body = example_with("metric", Some("123456789012345678901234567890"));
    match normaliser.normalise(&body.into_bytes()) {
        Ok(Normalised::Point(point)) => assert_eq!(
            point.fields["value"],
            sluice_core::point::FieldValue::Float(1.2345678901234568e29)
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn limits_are_the_normalisers_own() {
    let tight = PointLimits {
        max_name_bytes: 8,
        ..PointLimits::default()
    };
    let normaliser = Normaliser::new(Naming::default(), tight);
    let error = normaliser
        .normalise(EXAMPLE.as_bytes())
        .expect_err("cpu.total.user is over 8 bytes");
    assert_eq!(error.reason(), "name_too_long");
    assert!(
        error
            .to_string()
            .starts_with("metric \"nodecellar.nodejs_host."),
        "{error}"
    );
}
