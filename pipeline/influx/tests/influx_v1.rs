//! The writer against a real InfluxDB 1.x (`INFLUX_URL`, default `http://127.0.0.1:8086`; run
//! `deploy/services.sh`). Each test writes to a database of its own, dropped at the end, and
//! reads back with `SELECT ... epoch=ns`, checking exact values.

#[path = "support/real_influx.rs"]
mod real_influx;

#[path = "support/through_sink.rs"]
mod through_sink;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sluice_core::outcome::ItemOutcome;
use sluice_core::point::{FieldValue, Point};
use sluice_core::rejection::Reason;
use sluice_influx::{InfluxError, InfluxWriter, Precision};

use real_influx::WriterSettings as _;
use sluice_testing::influx::{TestDatabase, require_influx};
use sluice_testing::services::influx_url;
use through_sink::write_points;

/// Names with everything line protocol escapes, and unicode. (Backslashes are refused by the
/// encoder, see `influxdb_1_stores_escaped_backslashes_in_names_doubled`.)
const NAMES: &[&str] = &[
    "plain",
    "with space",
    "with,comma",
    "with=equals",
    "with\"quote",
    "'single'",
    " leading space",
    "trailing space ",
    "=",
    ",",
    "\"",
    "ünïcødé",
    "中文 名字",
    "😀 emoji",
    "x#y",
    "zero\u{200b}width",
    "tab\there",
    "a, b=c \"d\"",
];

const STRING_VALUES: &[&str] = &[
    "plain",
    "with \"quotes\"",
    "back\\slash",
    "trailing backslash\\",
    "\\\"",
    "line\nbreak",
    "crlf\r\nend",
    "",
    "ünï 😀 中文",
    "a=b, c d",
];

const BASE_TIMESTAMP: i64 = 1_700_000_000_123_456_789;

fn writer(database: &TestDatabase, precision: Precision, gzip: bool) -> InfluxWriter {
    let mut settings = database.settings();
    settings.precision = precision;
    settings.gzip = gzip;
    InfluxWriter::new(settings).expect("valid settings")
}

/// Three points per name, each in a measurement of that name with tags and fields named after
/// the others; timestamps more than a second apart, so that no precision merges two of them.
fn tricky_points() -> Vec<Point> {
    let mut points = Vec::new();
    let count = NAMES.len();
    for (index, measurement) in NAMES.iter().enumerate() {
        for round in 0..3usize {
            let number = index * 3 + round;
            let name = |offset: usize| NAMES[(index + offset) % count];
            let mut point = Point {
                measurement: (*measurement).to_owned(),
                tags: BTreeMap::new(),
                fields: BTreeMap::new(),
                timestamp: BASE_TIMESTAMP + number as i64 * 1_000_000_007,
            };
            point.set_tag(format!("t{}", name(1)), name(2 + round));
            point.set_tag("host", format!("host {}", round));
            point.fields.insert(
                format!("f{}", name(3)),
                FieldValue::Float(number as f64 * 1.1 - 7.0),
            );
            point.fields.insert(
                format!("i{}", name(4)),
                FieldValue::Integer(number as i64 * 1_000_003 - 50),
            );
            point.fields.insert(
                format!("s{}", name(5)),
                FieldValue::String(STRING_VALUES[number % STRING_VALUES.len()].to_owned()),
            );
            point.fields.insert(
                format!("b{}", name(6)),
                FieldValue::Boolean(number % 2 == 0),
            );
            points.push(point);
        }
    }
    points.push(Point {
        measurement: "extremes".to_owned(),
        tags: BTreeMap::new(),
        fields: BTreeMap::from([
            ("max_i".to_owned(), FieldValue::Integer(i64::MAX)),
            ("min_i".to_owned(), FieldValue::Integer(i64::MIN)),
            ("max_f".to_owned(), FieldValue::Float(f64::MAX)),
            ("tiny_f".to_owned(), FieldValue::Float(5e-324)),
            ("big_f".to_owned(), FieldValue::Float(1e300)),
            ("tenth".to_owned(), FieldValue::Float(0.1)),
            ("neg_f".to_owned(), FieldValue::Float(-123.456e-7)),
        ]),
        timestamp: BASE_TIMESTAMP,
    });
    points
}

fn json_matches(stored: &Value, written: &FieldValue) -> bool {
    match written {
        FieldValue::Integer(number) => stored.as_i64() == Some(*number),
        FieldValue::Float(number) => stored.as_f64() == Some(*number),
        FieldValue::Boolean(flag) => stored.as_bool() == Some(*flag),
        FieldValue::String(text) => stored.as_str() == Some(text.as_str()),
    }
}

/// Asserts that `point` is stored exactly: its series (measurement and tags) holds a row at the
/// timestamp truncated to `precision`, with exactly its field values.
async fn assert_stored(database: &TestDatabase, point: &Point, precision: Precision) {
    let expected_time = precision.from_nanos(point.timestamp) * precision.nanos_per_unit();
    let series = database.series(&point.measurement).await;
    let matching: Vec<&Value> = series
        .iter()
        .filter(|series| {
            assert_eq!(series["name"], json!(point.measurement));
            // GROUP BY * lists every tag key of the measurement; "" where a series has none.
            let tags: BTreeMap<String, String> = series["tags"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(key, value)| {
                    let value = value.as_str()?;
                    (!value.is_empty()).then(|| (key.clone(), value.to_owned()))
                })
                .collect();
            tags == point.tags
        })
        .collect();
    assert_eq!(matching.len(), 1, "series of {point:?} in {series:?}");
    let series = matching[0];
    let columns: Vec<&str> = series["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|column| column.as_str().expect("column name"))
        .collect();
    let rows: Vec<&Vec<Value>> = series["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|row| row.as_array().expect("row"))
        .filter(|row| row[0].as_i64() == Some(expected_time))
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "row at {expected_time} of {point:?} in {series}"
    );
    for (column, stored) in columns.iter().zip(rows[0]).skip(1) {
        match point.fields.get(*column) {
            Some(written) => assert!(
                json_matches(stored, written),
                "{:?} field {column:?}: stored {stored}, wrote {written:?}",
                point.measurement
            ),
            None => assert!(stored.is_null(), "{column:?} = {stored} was not written"),
        }
    }
    for key in point.fields.keys() {
        assert!(
            columns.contains(&key.as_str()),
            "field {key:?} missing in {columns:?}"
        );
    }
}

fn assert_all_delivered(outcomes: &[ItemOutcome], count: usize) {
    assert_eq!(outcomes.len(), count);
    for (index, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome, &ItemOutcome::Delivered, "item {index}");
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64
}

#[tokio::test]
async fn every_name_value_and_timestamp_is_stored_exactly_in_each_precision() {
    let points = tricky_points();
    let items: Vec<&Point> = points.iter().collect();
    let cases = [
        (Precision::Nanoseconds, true),
        (Precision::Seconds, false),
        (Precision::Milliseconds, true),
        (Precision::Microseconds, false),
    ];
    for (precision, gzip) in cases {
        let database = TestDatabase::create("names", None).await;
        let writer = writer(&database, precision, gzip);
        let outcomes = write_points(&writer, &items).await;
        assert_all_delivered(&outcomes, points.len());
        for point in &points {
            assert_stored(&database, point, precision).await;
        }
        let count = database
            .query("SELECT count(\"max_i\") FROM \"extremes\"")
            .await;
        assert_eq!(count["results"][0]["series"][0]["values"][0][1], json!(1));
    }
}

#[tokio::test]
async fn a_field_type_conflict_rejects_only_the_conflicting_points() {
    let database = TestDatabase::create("conflict", None).await;
    let writer = writer(&database, Precision::Nanoseconds, true);
    let mut text_point = Point::with_value("conflict", 0.0, BASE_TIMESTAMP);
    text_point
        .fields
        .insert("value".into(), FieldValue::String("text".into()));
    assert_all_delivered(&write_points(&writer, &[&text_point]).await, 1);

    let points: Vec<Point> = (0..10)
        .map(|index| {
            let measurement = if index == 2 || index == 7 {
                "conflict"
            } else {
                "good"
            };
            let mut point =
                Point::with_value(measurement, index as f64 + 0.5, BASE_TIMESTAMP + index);
            point.set_tag("index", index.to_string());
            point
        })
        .collect();
    let items: Vec<&Point> = points.iter().collect();
    let outcomes = write_points(&writer, &items).await;

    for (index, outcome) in outcomes.iter().enumerate() {
        if index == 2 || index == 7 {
            let ItemOutcome::Reject { reason, detail } = outcome else {
                panic!("item {index}: {outcome:?}");
            };
            assert_eq!(*reason, "field_type_conflict");
            assert!(detail.contains("field type conflict"), "{detail}");
            assert!(detail.len() <= 1100, "{detail}");
        } else {
            assert_eq!(outcome, &ItemOutcome::Delivered, "item {index}");
        }
    }
    for point in points.iter().filter(|point| point.measurement == "good") {
        assert_stored(&database, point, Precision::Nanoseconds).await;
    }
    assert_eq!(database.series("good").await.len(), 8);
    // The string point is all that `conflict` holds.
    assert_stored(&database, &text_point, Precision::Nanoseconds).await;
    let conflict = database.series("conflict").await;
    assert_eq!(conflict.len(), 1);
    assert_eq!(conflict[0]["values"].as_array().expect("rows").len(), 1);
}

#[tokio::test]
async fn points_beyond_the_retention_are_rejected_and_the_rest_delivered() {
    let database = TestDatabase::create("retention", Some("1h")).await;
    let writer = writer(&database, Precision::Nanoseconds, false);
    let now = now_nanos();
    let two_hours = 2 * 3600 * 1_000_000_000;
    let points = [
        Point::with_value("recent", 1.0, now),
        Point::with_value("recent", 2.0, now - two_hours),
        Point::with_value("recent", 3.0, now - 1_000),
    ];
    let outcomes = write_points(&writer, &points.iter().collect::<Vec<_>>()).await;
    assert_eq!(outcomes[0], ItemOutcome::Delivered);
    assert!(
        matches!(&outcomes[1], ItemOutcome::Reject { reason: Reason::BeyondRetention, detail }
            if detail.contains("beyond retention")),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(outcomes[2], ItemOutcome::Delivered);
    assert_stored(&database, &points[0], Precision::Nanoseconds).await;
    assert_stored(&database, &points[2], Precision::Nanoseconds).await;
}

#[tokio::test]
async fn invalid_points_are_rejected_without_being_sent() {
    let database = TestDatabase::create("invalid", None).await;
    let writer = writer(&database, Precision::Nanoseconds, true);
    let mut injected = Point::with_value("ok", 1.0, BASE_TIMESTAMP);
    injected.set_tag("host", "h1 value=666 1\ninjected value=1");
    let points = [
        Point::with_value("ok", 1.0, BASE_TIMESTAMP + 1),
        Point::with_value("ok", f64::NAN, BASE_TIMESTAMP + 2),
        injected,
        Point::with_value("C:\\temp", 1.0, BASE_TIMESTAMP + 3),
        Point::with_value("ok", 4.0, BASE_TIMESTAMP + 4),
    ];
    let outcomes = write_points(&writer, &points.iter().collect::<Vec<_>>()).await;
    let reasons: Vec<&str> = outcomes
        .iter()
        .map(|outcome| match outcome {
            ItemOutcome::Delivered => "delivered",
            ItemOutcome::Reject { reason, .. } => reason.as_str(),
            ItemOutcome::Retry { .. } => "retry",
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "delivered",
            "not_finite",
            "unsafe_name",
            "unsafe_name",
            "delivered"
        ]
    );
    let measurements = database.query("SHOW MEASUREMENTS").await;
    assert_eq!(
        measurements["results"][0]["series"][0]["values"],
        json!([["ok"]])
    );
    let rows = database.series("ok").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["values"].as_array().expect("rows").len(), 2);
}

/// Why the encoder refuses backslashes in names: the builder writes `C:\temp` as `C:\\temp`,
/// and InfluxDB 1.x does not unescape `\\` in names, so it would store a different measurement.
#[tokio::test]
async fn influxdb_1_stores_escaped_backslashes_in_names_doubled() {
    let database = TestDatabase::create("backslash", None).await;
    let (status, body) = database
        .write_raw("C:\\\\temp,dir=D:\\\\x value=1 1000\n")
        .await;
    assert_eq!(status, 204, "{body}");
    let measurements = database.query("SHOW MEASUREMENTS").await;
    assert_eq!(
        measurements["results"][0]["series"][0]["values"],
        json!([["C:\\\\temp"]]),
        "if this fails, InfluxDB now unescapes \\\\ in names and the encoder can stop refusing \
         backslashes"
    );
}

#[tokio::test]
async fn a_missing_database_is_created_and_the_write_retried() {
    let database = TestDatabase::named("missing").await;
    let writer = writer(&database, Precision::Nanoseconds, true);
    let point = Point::with_value("m", 42.0, BASE_TIMESTAMP);

    let first = write_points(&writer, &[&point]).await;
    let [
        ItemOutcome::Retry {
            after: None,
            detail,
        },
    ] = first.as_slice()
    else {
        panic!("{first:?}");
    };
    assert!(detail.contains("database not found"), "{detail}");

    assert_all_delivered(&write_points(&writer, &[&point]).await, 1);
    assert_stored(&database, &point, Precision::Nanoseconds).await;
}

#[tokio::test]
async fn ping_answers_and_ensure_database_is_idempotent() {
    let database = TestDatabase::named("ensure").await;
    let writer = writer(&database, Precision::Nanoseconds, false);
    writer.ping().await.expect("ping");
    writer.ensure_database().await.expect("create");
    writer.ensure_database().await.expect("create again");
    let databases = database.query("SHOW DATABASES").await;
    let names = databases["results"][0]["series"][0]["values"]
        .as_array()
        .expect("databases");
    assert!(names.contains(&json!([database.name])), "{names:?}");
}

#[tokio::test]
async fn a_refused_connection_retries_every_point() {
    require_influx().await;
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let mut settings = TestDatabase::named("refused").await.settings();
    settings.url = format!("http://127.0.0.1:{closed_port}/")
        .parse()
        .expect("url");
    settings.request_timeout = Duration::from_secs(2);
    let writer = InfluxWriter::new(settings).expect("valid settings");

    let points: Vec<Point> = (0..3)
        .map(|index| Point::with_value("m", 1.0, BASE_TIMESTAMP + index))
        .collect();
    let outcomes = write_points(&writer, &points.iter().collect::<Vec<_>>()).await;
    assert_eq!(outcomes.len(), 3);
    for outcome in &outcomes {
        let ItemOutcome::Retry {
            after: None,
            detail,
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert!(detail.contains("could not reach influxdb"), "{detail}");
        assert!(detail.contains(&closed_port.to_string()), "{detail}");
    }

    let error = writer.ping().await.expect_err("nothing listens");
    assert!(
        matches!(
            error,
            InfluxError::Transport {
                timed_out: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert!(
        writer
            .ensure_database()
            .await
            .expect_err("nothing listens")
            .is_retryable()
    );
    // The real server is still where INFLUX_URL says, untouched by this test.
    assert_ne!(
        url::Url::parse(&influx_url())
            .expect("a url")
            .port_or_known_default(),
        Some(closed_port)
    );
}
