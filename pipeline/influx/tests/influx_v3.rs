//! The writer's InfluxDB 3 API against `sluice_testing::influx3::FakeInfluxDb3`, the double that
//! answers as 3 Core does (3 Core cannot be installed here): clean batches, partial writes
//! with a type conflict, `accept_partial=false`, tokens, faults, the oversize answer, and a
//! property: whatever mix of good and conflicting points is written, exactly the good ones
//! land, once, and each conflicting one is refused alone.

#[path = "support/through_sink.rs"]
mod through_sink;

use std::time::Duration;

use metrics_util::debugging::DebuggingRecorder;
use proptest::prelude::*;
use secrecy::SecretString;
use sluice_core::outcome::ItemOutcome;
use sluice_core::point::{FieldValue, Point};
use sluice_core::rejection::Reason;
use sluice_influx::{InfluxApi, InfluxError, InfluxSettings, InfluxWriter, Precision};
use sluice_testing::influx3::{FakeInfluxDb3, Fault, Stored};
use sluice_testing::recorded::recorded;

use through_sink::write_points;

const TOKEN: &str = "apiv3_s3cr3t-token-value";
const DATABASE: &str = "metrics";
const TIMESTAMP: i64 = 1_700_000_000_123_456_789;

fn settings(server: &FakeInfluxDb3, token: Option<&str>) -> InfluxSettings {
    InfluxSettings::new(
        server.url.clone(),
        InfluxApi::v3(DATABASE, token.map(SecretString::from)),
    )
}

fn writer(server: &FakeInfluxDb3, token: Option<&str>) -> InfluxWriter {
    InfluxWriter::new(settings(server, token)).expect("valid settings")
}

fn cpu(index: i64, value: f64) -> Point {
    let mut point = Point::with_value("cpu", value, TIMESTAMP + index);
    point.set_tag("host", format!("h{index}"));
    point
}

/// A `cpu` point whose `value` is a string: a type conflict once `value` is a float.
fn conflicting(index: i64) -> Point {
    let mut point = cpu(index, 0.0);
    point
        .fields
        .insert("value".into(), FieldValue::String(format!("text {index}")));
    point
}

async fn write(writer: &InfluxWriter, points: &[Point]) -> Vec<ItemOutcome> {
    write_points(writer, &points.iter().collect::<Vec<_>>()).await
}

#[tokio::test]
async fn a_clean_batch_is_written_in_one_request_with_every_field_type() {
    let server = FakeInfluxDb3::start().await;
    let mut settings = settings(&server, None);
    settings.precision = Precision::Microseconds;
    let writer = InfluxWriter::new(settings).expect("valid settings");
    let mut point = cpu(0, 0.5);
    point.fields.insert("count".into(), FieldValue::Integer(-7));
    point.fields.insert("up".into(), FieldValue::Boolean(true));
    point
        .fields
        .insert("note".into(), FieldValue::String("say \"hi\", x=1".into()));
    let points = [point, cpu(1, 1.5), cpu(2, 2.5)];

    let outcomes = write(&writer, &points).await;
    assert_eq!(outcomes, vec![ItemOutcome::Delivered; 3]);

    let writes = server.writes();
    assert_eq!(writes.len(), 1);
    let query = &writes[0].query;
    assert_eq!(query.get("db").map(String::as_str), Some(DATABASE));
    assert_eq!(
        query.get("precision").map(String::as_str),
        Some("microsecond")
    );
    assert_eq!(
        query.get("accept_partial").map(String::as_str),
        Some("true")
    );
    assert!(
        !query.contains_key("no_sync"),
        "no_sync must not be sent unless asked for: {query:?}"
    );
    assert_eq!(writes[0].authorization, None);

    let rows = server.rows(DATABASE, "cpu");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].tags.get("host").map(String::as_str), Some("h0"));
    assert_eq!(rows[0].time, (TIMESTAMP / 1_000) * 1_000);
    assert_eq!(rows[0].fields["value"], Stored::Float(0.5));
    assert_eq!(rows[0].fields["count"], Stored::Integer(-7));
    assert_eq!(rows[0].fields["up"], Stored::Boolean(true));
    assert_eq!(
        rows[0].fields["note"],
        Stored::String("say \"hi\", x=1".into())
    );
    assert_eq!(rows[2].fields["value"], Stored::Float(2.5));
    assert_eq!(server.databases(), [DATABASE], "created by the first write");
}

#[tokio::test]
async fn a_type_conflict_is_refused_alone_and_the_good_lines_stored_once_in_one_request() {
    let server = FakeInfluxDb3::start().await;
    let writer = writer(&server, None);
    assert_eq!(
        write(&writer, &[cpu(100, 1.0)]).await,
        [ItemOutcome::Delivered]
    );

    let points: Vec<Point> = (0..10)
        .map(|index| {
            if index == 3 || index == 8 {
                conflicting(index)
            } else {
                cpu(index, index as f64 + 0.25)
            }
        })
        .collect();
    let outcomes = write(&writer, &points).await;

    for (index, outcome) in outcomes.iter().enumerate() {
        if index == 3 || index == 8 {
            let ItemOutcome::Reject { reason, detail } = outcome else {
                panic!("item {index}: {outcome:?}");
            };
            assert_eq!(*reason, Reason::FieldTypeConflict, "item {index}");
            assert!(
                detail.contains(&format!("line {}", index + 1))
                    && detail.contains("invalid column type for column 'value'")
                    && detail.contains("expected iox::column_type::field::float"),
                "item {index}: {detail}"
            );
        } else {
            assert_eq!(outcome, &ItemOutcome::Delivered, "item {index}");
        }
    }
    // One request: the answer named the refused lines, nothing was halved or resent.
    let writes = server.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[1].line_count(), 10);
    assert_eq!(writes[1].status, 400);

    let rows = server.rows(DATABASE, "cpu");
    assert_eq!(rows.len(), 1 + 8, "the first point and the eight good ones");
    assert_eq!(
        server.lines(DATABASE, "cpu").len(),
        1 + 8,
        "each good line was sent once"
    );
    for row in &rows {
        assert!(matches!(row.fields["value"], Stored::Float(_)), "{row:?}");
    }
    for index in [3, 8] {
        let host = format!("h{index}");
        assert!(
            rows.iter().all(|row| row.tags["host"] != host),
            "{host} stored"
        );
    }
}

#[tokio::test]
async fn without_partial_writes_the_named_line_is_refused_and_the_others_sent_again() {
    let server = FakeInfluxDb3::start().await;
    let mut settings = settings(&server, None);
    settings.api = InfluxApi::V3 {
        database: DATABASE.into(),
        token: None,
        accept_partial: false,
        no_sync: false,
    };
    let writer = InfluxWriter::new(settings).expect("valid settings");
    assert_eq!(
        write(&writer, &[cpu(100, 1.0)]).await,
        [ItemOutcome::Delivered]
    );

    let points: Vec<Point> = (0..6)
        .map(|index| {
            if index == 2 {
                conflicting(index)
            } else {
                cpu(index, 1.0)
            }
        })
        .collect();
    let outcomes = write(&writer, &points).await;
    for (index, outcome) in outcomes.iter().enumerate() {
        if index == 2 {
            assert!(
                matches!(
                    outcome,
                    ItemOutcome::Reject {
                        reason: Reason::FieldTypeConflict,
                        ..
                    }
                ),
                "{outcome:?}"
            );
        } else {
            assert_eq!(outcome, &ItemOutcome::Delivered, "item {index}");
        }
    }
    let lines: Vec<usize> = server
        .writes()
        .iter()
        .map(|write| write.line_count())
        .collect();
    // The refused request, then the lines before and after the named one.
    assert_eq!(lines, [1, 6, 2, 3]);
    assert!(
        server
            .writes()
            .iter()
            .all(|write| write.query["accept_partial"] == "false")
    );
    assert_eq!(server.rows(DATABASE, "cpu").len(), 1 + 5);
}

#[tokio::test]
async fn the_token_is_sent_as_bearer_and_a_wrong_one_holds_the_points() {
    let server = FakeInfluxDb3::with_token(TOKEN).await;
    let good = writer(&server, Some(TOKEN));
    assert_eq!(write(&good, &[cpu(0, 1.0)]).await, [ItemOutcome::Delivered]);
    assert_eq!(
        server.writes()[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    for token in [None, Some("apiv3_wrong")] {
        let writer = writer(&server, token);
        let outcomes = write(&writer, &[cpu(1, 1.0), cpu(2, 1.0)]).await;
        for outcome in &outcomes {
            let ItemOutcome::Retry { detail, .. } = outcome else {
                panic!("{token:?}: {outcome:?}");
            };
            assert_eq!(detail, "authentication failed (status 401)");
            assert!(!detail.contains(TOKEN));
        }
        let error = writer.ensure_database().await.expect_err("refused");
        assert!(
            matches!(error, InfluxError::Authentication { status: 401 }),
            "{error:?}"
        );
    }
    assert_eq!(server.rows(DATABASE, "cpu").len(), 1);
    assert!(!format!("{good:?}").contains(TOKEN));
}

#[tokio::test]
async fn a_503_is_retried_after_retry_after_and_the_points_land_once_it_passes() {
    let server = FakeInfluxDb3::start().await;
    let writer = writer(&server, None);
    server.set_fault(Some(Fault::Unavailable {
        retry_after_seconds: 4,
    }));
    let points = [cpu(0, 1.0), cpu(1, 2.0)];
    let outcomes = write(&writer, &points).await;
    let expected = ItemOutcome::Retry {
        after: Some(Duration::from_secs(4)),
        detail: "influxdb answered 503: service unavailable".into(),
    };
    assert_eq!(outcomes, [expected.clone(), expected]);
    assert!(server.rows(DATABASE, "cpu").is_empty());

    server.set_fault(None);
    assert_eq!(
        write(&writer, &points).await,
        vec![ItemOutcome::Delivered; 2]
    );
    assert_eq!(server.rows(DATABASE, "cpu").len(), 2);
}

#[tokio::test]
async fn a_stalled_server_times_out_into_a_retry() {
    let server = FakeInfluxDb3::start().await;
    let mut settings = settings(&server, None);
    settings.request_timeout = Duration::from_millis(300);
    let writer = InfluxWriter::new(settings).expect("valid settings");
    server.set_fault(Some(Fault::Stall));
    let outcomes = write(&writer, &[cpu(0, 1.0)]).await;
    assert!(
        matches!(&outcomes[0], ItemOutcome::Retry { after: None, detail }
            if detail.contains("could not reach influxdb")),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn an_oversized_body_is_split_as_for_413_and_a_line_too_large_alone_is_refused() {
    let server = FakeInfluxDb3::start().await;
    let mut settings = settings(&server, None);
    settings.gzip = false;
    let writer = InfluxWriter::new(settings).expect("valid settings");
    let mut big = cpu(9, 1.0);
    big.fields
        .insert("blob".into(), FieldValue::String("x".repeat(400)));
    let points = [cpu(0, 1.0), cpu(1, 1.0), big, cpu(3, 1.0)];
    server.set_max_request_bytes(300);

    let outcomes = write(&writer, &points).await;
    assert_eq!(outcomes[0], ItemOutcome::Delivered);
    assert_eq!(outcomes[1], ItemOutcome::Delivered);
    assert!(
        matches!(&outcomes[2], ItemOutcome::Reject { reason: Reason::TooLarge, detail }
            if detail.contains("max request size")),
        "{:?}",
        outcomes[2]
    );
    assert_eq!(outcomes[3], ItemOutcome::Delivered);
    assert_eq!(server.rows(DATABASE, "cpu").len(), 3);
}

#[tokio::test]
async fn no_sync_is_sent_only_when_asked_and_the_answer_then_does_not_wait_for_the_wal() {
    let server = FakeInfluxDb3::start().await;
    server.set_wal_flush(Duration::from_millis(400));
    let mut settings = settings(&server, None);
    settings.api = InfluxApi::V3 {
        database: DATABASE.into(),
        token: None,
        accept_partial: true,
        no_sync: true,
    };
    let writer = InfluxWriter::new(settings).expect("valid settings");
    let started = std::time::Instant::now();
    assert_eq!(
        write(&writer, &[cpu(0, 1.0)]).await,
        [ItemOutcome::Delivered]
    );
    assert!(started.elapsed() < Duration::from_millis(400));
    assert_eq!(server.writes()[0].query["no_sync"], "true");

    let durable = self::writer(&server, None);
    let started = std::time::Instant::now();
    assert_eq!(
        write(&durable, &[cpu(1, 1.0)]).await,
        [ItemOutcome::Delivered]
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the default answer comes after the WAL flush"
    );
}

#[tokio::test]
async fn ensure_database_creates_it_and_accepts_one_that_exists() {
    let server = FakeInfluxDb3::with_token(TOKEN).await;
    let writer = writer(&server, Some(TOKEN));
    writer.ping().await.expect("ping");
    writer.ensure_database().await.expect("create");
    writer.ensure_database().await.expect("exists: 409 is fine");
    assert_eq!(server.databases(), [DATABASE]);
}

/// `#[tokio::test]` runs on one thread, so the thread-local recorder sees every metric.
#[tokio::test]
async fn requests_are_counted_as_for_v1_and_v2_and_a_named_refusal_needs_no_bisection() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let server = FakeInfluxDb3::start().await;
    let writer = writer(&server, None);
    assert_eq!(
        write(&writer, &[cpu(9, 1.0)]).await,
        [ItemOutcome::Delivered]
    );
    let outcomes = write(&writer, &[cpu(0, 1.0), conflicting(1), cpu(2, 1.0)]).await;
    assert!(
        matches!(outcomes[1], ItemOutcome::Reject { .. }),
        "{outcomes:?}"
    );

    let (counters, histograms) = recorded(&snapshotter);
    assert_eq!(
        counters.get("sluice_influx_requests_total{status=204}"),
        Some(&1)
    );
    assert_eq!(
        counters.get("sluice_influx_requests_total{status=400}"),
        Some(&1)
    );
    assert_eq!(counters.get("sluice_influx_bisections_total{}"), None);
    assert_eq!(histograms["sluice_influx_request_bytes{}"].len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any mix of good and conflicting points: the good ones are stored once each and
    /// delivered, every conflicting one is refused alone, in one request after the first.
    #[test]
    fn exactly_the_good_points_land(conflicts in proptest::collection::vec(any::<bool>(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let server = FakeInfluxDb3::start().await;
            let writer = writer(&server, None);
            assert_eq!(write(&writer, &[cpu(-1, 0.0)]).await, [ItemOutcome::Delivered]);
            let points: Vec<Point> = conflicts
                .iter()
                .enumerate()
                .map(|(index, conflict)| {
                    if *conflict { conflicting(index as i64) } else { cpu(index as i64, 1.0) }
                })
                .collect();
            let outcomes = write(&writer, &points).await;
            for (outcome, conflict) in outcomes.iter().zip(&conflicts) {
                if *conflict {
                    assert!(
                        matches!(outcome, ItemOutcome::Reject { reason: Reason::FieldTypeConflict, .. }),
                        "{outcome:?}"
                    );
                } else {
                    assert_eq!(outcome, &ItemOutcome::Delivered);
                }
            }
            let good = conflicts.iter().filter(|conflict| !**conflict).count();
            assert_eq!(server.rows(DATABASE, "cpu").len(), 1 + good);
            assert_eq!(server.writes().len(), 2);
        });
    }
}

/// 3 Core creates a database on its first write, so a 404 naming the database is rare (a
/// database deleted under the writer); the double cannot give it, so a recording server does.
#[tokio::test]
async fn a_missing_database_is_created_through_configure_database_and_the_write_retried() {
    use sluice_testing::recording_server::{RecordingServer, Reply};
    let server = RecordingServer::start(|request| {
        if request.path == "/api/v3/write_lp" {
            Reply::status(404).with_body("database not found: metrics")
        } else {
            Reply::status(200)
        }
    })
    .await;
    let writer = InfluxWriter::new(InfluxSettings::new(
        server.url.clone(),
        InfluxApi::v3(DATABASE, Some(SecretString::from(TOKEN))),
    ))
    .expect("valid settings");
    let outcomes = write(&writer, &[cpu(0, 1.0)]).await;
    assert!(
        matches!(&outcomes[0], ItemOutcome::Retry { after: None, detail }
            if detail == "influxdb answered 404: database not found: metrics"),
        "{outcomes:?}"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].path, "/api/v3/configure/database");
    assert_eq!(requests[1].body, r#"{"db":"metrics"}"#);
    assert_eq!(
        requests[1].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}
