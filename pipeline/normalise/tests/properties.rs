//! Property tests: `normalise` never panics, and whatever point it returns is writable.

use proptest::prelude::*;
use serde_json::{Map, Value};
use sluice_core::point::PointLimits;
use sluice_core::rejection::Rejection;
use sluice_normalise::{Naming, Normalised, Normaliser, TemplateSet};

const KNOWN_KEYS: &[&str] = &[
    "deployment_id",
    "node_name",
    "node_id",
    "host",
    "name",
    "path",
    "service",
    "metric",
    "unit",
    "type",
    "time",
    "state",
    "config_path",
];

fn namings() -> Vec<Naming> {
    let templates = TemplateSet::parse(
        "_",
        &[
            "cpu.* measurement.host.field* zone=1c".to_owned(),
            "*.*.* region..measurement".to_owned(),
            ".measurement*".to_owned(),
        ],
    )
    .expect("valid templates");
    vec![
        Naming::default(),
        Naming::CloudifyLegacy,
        Naming::Templates(templates),
    ]
}

/// Checks one body against every naming: no panic, and every point passes `validate`.
fn check(body: &[u8]) -> Result<(), TestCaseError> {
    let limits = PointLimits::default();
    for naming in namings() {
        let normaliser = Normaliser::new(naming, limits);
        match normaliser.normalise(body) {
            Ok(Normalised::Point(point)) => {
                prop_assert!(point.validate(&limits).is_ok(), "{point:?}");
            }
            Ok(Normalised::Control(_)) => {}
            Err(error) => {
                // Every error has a counted reason and a bounded message.
                prop_assert!(!error.reason().as_str().is_empty());
                prop_assert!(error.to_string().len() < 400, "{error}");
            }
        }
    }
    Ok(())
}

/// Strings that hit the edges: dots, line breaks, '#', the control service, states, and noise.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(".".to_owned()),
        Just("cloudify.configuration".to_owned()),
        Just("start".to_owned()),
        Just("stop".to_owned()),
        Just("#cpu".to_owned()),
        Just("a\nb".to_owned()),
        "[a-z.#\\r\\n_ -]{0,12}",
        any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (0u32..4_000_000_000).prop_map(Value::from),
        (0.0f64..4e9).prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Objects whose keys are mostly the ones normalising reads, with values of any type.
fn json_object() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        4 => prop::sample::select(KNOWN_KEYS).prop_map(str::to_owned),
        1 => "[a-z_]{1,8}",
    ];
    prop::collection::vec((key, json_value()), 0..16).prop_map(|pairs| {
        let object: Map<String, Value> = pairs.into_iter().collect();
        serde_json::to_vec(&Value::Object(object)).expect("serialises")
    })
}

/// Well-typed metric bodies with arbitrary strings: the only refusals are unwritable points.
fn metric_body() -> impl Strategy<Value = (Vec<u8>, bool)> {
    (
        prop::collection::vec(text(), 6),
        any::<f64>(),
        0i64..9_000_000_000,
        any::<bool>(),
    )
        .prop_map(|(texts, metric, time, prefixed)| {
            let [deployment_id, node_name, node_id, name, path, rest] =
                <[String; 6]>::try_from(texts).expect("six strings");
            let service = if prefixed {
                format!("{deployment_id}.{node_name}.{node_id}.{rest}")
            } else {
                rest
            };
            let body = serde_json::json!({
                "deployment_id": deployment_id, "node_name": node_name, "node_id": node_id,
                "name": name, "path": path, "service": service,
                "metric": if metric.is_finite() { metric } else { 0.0 },
                "time": time, "host": "h", "unit": "", "type": "GAUGE",
            });
            let is_control = body["service"] == "cloudify.configuration";
            (serde_json::to_vec(&body).expect("serialises"), is_control)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&body)?;
    }

    #[test]
    fn arbitrary_text_never_panics(body in "\\PC{0,256}") {
        check(body.as_bytes())?;
    }

    #[test]
    fn arbitrary_objects_never_panic(body in json_object()) {
        check(&body)?;
    }

    #[test]
    fn mangled_objects_never_panic(body in json_object(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut body = body;
        if !body.is_empty() {
            let at = cut.index(body.len());
            body[at] = byte;
        }
        check(&body)?;
    }

    #[test]
    fn well_typed_metrics_are_points_or_unwritable((body, is_control) in metric_body()) {
        let limits = PointLimits::default();
        for naming in namings() {
            let normaliser = Normaliser::new(naming, limits);
            match normaliser.normalise(&body.clone()) {
                Ok(Normalised::Point(point)) => prop_assert!(point.validate(&limits).is_ok()),
                Ok(Normalised::Control(control)) => prop_assert!(is_control, "{control:?}"),
                Err(error) => {
                    let reason = error.reason().as_str();
                    prop_assert!(
                        is_control || ["empty_name", "unsafe_name", "name_too_long"].contains(&reason),
                        "{reason}: {error}"
                    );
                }
            }
        }
    }

    #[test]
    fn plain_ids_keep_the_service_rest_as_the_measurement(
        ids in prop::collection::vec("[a-z][a-z0-9_]{0,8}(\\.[a-z0-9_]{1,8}){0,2}", 3),
        rest in "[a-z][a-z0-9_]{0,8}(\\.[a-z0-9_]{1,8}){0,3}",
        metric in -1e12f64..1e12,
        time in 0i64..4_000_000_000,
    ) {
        let body = serde_json::json!({
            "deployment_id": ids[0], "node_name": ids[1], "node_id": ids[2],
            "name": "n", "path": "p", "service": format!("{}.{}.{}.{rest}", ids[0], ids[1], ids[2]),
            "metric": metric, "time": time,
        });
        let normaliser = Normaliser::new(Naming::default(), PointLimits::default());
        let bytes = serde_json::to_vec(&body).expect("serialises");
        match normaliser.normalise(&bytes) {
            Ok(Normalised::Point(point)) => {
                prop_assert_eq!(&point.measurement, &rest);
                prop_assert_eq!(point.timestamp, time * 1_000_000_000);
                prop_assert_eq!(&point.tags["deployment_id"], &ids[0]);
                prop_assert_eq!(point.fields.len(), 1);
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }
}
