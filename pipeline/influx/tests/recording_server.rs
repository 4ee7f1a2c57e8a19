//! The writer against a recording HTTP server on 127.0.0.1:0, for what the real InfluxDB 1.x
//! cannot show: the v2 API (InfluxDB 2 cannot be installed here), 413, 429, 401, slow answers,
//! and exactly which requests the isolation of refused lines makes.

#[path = "support/through_sink.rs"]
mod through_sink;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use metrics_util::debugging::DebuggingRecorder;
use secrecy::SecretString;
use sluice_core::outcome::ItemOutcome;
use sluice_core::point::{FieldValue, Point};
use sluice_core::rejection::Reason;
use sluice_influx::{InfluxApi, InfluxError, InfluxSettings, InfluxWriter, Precision};
use url::Url;

use through_sink::write_points;

use sluice_testing::recorded::recorded;
use sluice_testing::recording_server::{Captured, RecordingServer, Reply};

const TOKEN: &str = "s3cr3t-token-value";
const PASSWORD: &str = "hunter2-password-value";
const TIMESTAMP: i64 = 1_700_000_000_123_456_789;

fn v2_settings(url: &Url) -> InfluxSettings {
    InfluxSettings::new(
        url.clone(),
        InfluxApi::V2 {
            org: "my org".into(),
            bucket: "metrics".into(),
            token: SecretString::from(TOKEN),
        },
    )
}

fn v1_settings(url: &Url, username: Option<&str>) -> InfluxSettings {
    InfluxSettings::new(
        url.clone(),
        InfluxApi::V1 {
            database: "sluice".into(),
            retention_policy: Some("short".into()),
            username: username.map(str::to_owned),
            password: username.map(|_| SecretString::from(PASSWORD)),
        },
    )
}

fn points(count: usize) -> Vec<Point> {
    (0..count)
        .map(|index| {
            let mut point = Point::with_value("cpu", index as f64 + 0.5, TIMESTAMP + index as i64);
            point.set_tag("host", format!("h{index}"));
            point
        })
        .collect()
}

async fn write(writer: &InfluxWriter, points: &[Point]) -> Vec<ItemOutcome> {
    write_points(writer, &points.iter().collect::<Vec<_>>()).await
}

fn line_counts(requests: &[Captured]) -> Vec<usize> {
    requests
        .iter()
        .map(|request| request.lines().len())
        .collect()
}

#[tokio::test]
async fn v2_writes_gzipped_lines_with_org_bucket_precision_and_token() {
    let server = RecordingServer::start(|_| Reply::status(204)).await;
    let mut settings = v2_settings(&server.url);
    settings.precision = Precision::Microseconds;
    settings.gzip = true;
    let writer = InfluxWriter::new(settings).expect("valid settings");
    let mut second = Point::with_value("cpu load", -1.25, TIMESTAMP + 1_000);
    second.set_tag("host name", "h,1");
    second.fields.insert("count".into(), FieldValue::Integer(7));
    second
        .fields
        .insert("note".into(), FieldValue::String("say \"hi\"".into()));
    let points = [Point::with_value("cpu", 0.5, TIMESTAMP), second];

    let outcomes = write(&writer, &points).await;
    assert_eq!(outcomes, [ItemOutcome::Delivered, ItemOutcome::Delivered]);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/api/v2/write");
    assert_eq!(request.query.get("org").map(String::as_str), Some("my org"));
    assert_eq!(
        request.query.get("bucket").map(String::as_str),
        Some("metrics")
    );
    assert_eq!(
        request.query.get("precision").map(String::as_str),
        Some("us")
    );
    assert_eq!(request.query.len(), 3);
    assert_eq!(
        request.header("authorization"),
        Some("Token s3cr3t-token-value")
    );
    assert_eq!(request.header("content-encoding"), Some("gzip"));
    assert_eq!(
        request.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        request.body,
        "cpu value=0.5 1700000000123456\n\
         cpu\\ load,host\\ name=h\\,1 count=7i,note=\"say \\\"hi\\\"\",value=-1.25 1700000000123457\n"
    );
}

#[tokio::test]
async fn v1_sends_plain_text_to_write_with_db_rp_precision_and_no_credentials_when_none() {
    let server = RecordingServer::start(|_| Reply::status(204)).await;
    let mut settings = v1_settings(&server.url, None);
    settings.gzip = false;
    settings.precision = Precision::Seconds;
    let writer = InfluxWriter::new(settings).expect("valid settings");
    assert_eq!(
        write(&writer, &points(2)).await,
        [ItemOutcome::Delivered, ItemOutcome::Delivered]
    );

    let request = &server.requests()[0];
    assert_eq!(request.path, "/write");
    assert_eq!(request.query.get("db").map(String::as_str), Some("sluice"));
    assert_eq!(request.query.get("rp").map(String::as_str), Some("short"));
    assert_eq!(
        request.query.get("precision").map(String::as_str),
        Some("s")
    );
    assert_eq!(request.header("content-encoding"), None);
    assert_eq!(request.header("authorization"), None);
    assert_eq!(
        request.body,
        "cpu,host=h0 value=0.5 1700000000\ncpu,host=h1 value=1.5 1700000000\n"
    );
}

#[tokio::test]
async fn v2_429_is_retried_after_the_servers_retry_after() {
    let server = RecordingServer::start(|_| {
        Reply::status(429)
            .with_header("retry-after", "7")
            .with_body(r#"{"code":"too many requests","message":"slow down"}"#)
    })
    .await;
    let writer = InfluxWriter::new(v2_settings(&server.url)).expect("valid settings");
    let outcomes = write(&writer, &points(3)).await;
    assert_eq!(outcomes.len(), 3);
    for outcome in outcomes {
        let ItemOutcome::Retry { after, detail } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(after, Some(Duration::from_secs(7)));
        assert_eq!(detail, "influxdb answered 429: slow down");
    }
}

#[tokio::test]
async fn v2_503_is_retried() {
    let server =
        RecordingServer::start(|_| Reply::status(503).with_body("upstream unavailable")).await;
    let writer = InfluxWriter::new(v2_settings(&server.url)).expect("valid settings");
    let outcomes = write(&writer, &points(2)).await;
    let expected = ItemOutcome::Retry {
        after: None,
        detail: "influxdb answered 503: upstream unavailable".into(),
    };
    assert_eq!(outcomes, [expected.clone(), expected]);
}

#[tokio::test]
async fn v2_404_is_retried_without_creating_anything() {
    let server = RecordingServer::start(|_| {
        Reply::status(404)
            .with_body(r#"{"code":"not found","message":"bucket \"metrics\" not found"}"#)
    })
    .await;
    let writer = InfluxWriter::new(v2_settings(&server.url)).expect("valid settings");
    let outcomes = write(&writer, &points(1)).await;
    assert!(
        matches!(&outcomes[0], ItemOutcome::Retry { detail, .. } if detail.contains("bucket")),
        "{outcomes:?}"
    );
    assert_eq!(server.requests().len(), 1);
    writer.ensure_database().await.expect("a no-op on v2");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn v2_422_is_bisected_down_to_the_refused_line() {
    let server = RecordingServer::start(|request| {
        if request.body.contains("bad") {
            Reply::status(422).with_body(
                r#"{"code":"unprocessable entity","message":"failure writing points to database: partial write: field type conflict: input field \"value\" on measurement \"bad\" is type float, already exists as type string dropped=1"}"#,
            )
        } else {
            Reply::status(204)
        }
    })
    .await;
    let writer = InfluxWriter::new(v2_settings(&server.url)).expect("valid settings");
    let mut points = points(8);
    points[5].measurement = "bad".into();

    let outcomes = write(&writer, &points).await;
    for (index, outcome) in outcomes.iter().enumerate() {
        if index == 5 {
            let ItemOutcome::Reject { reason, detail } = outcome else {
                panic!("{outcome:?}");
            };
            assert_eq!(*reason, "field_type_conflict");
            assert!(
                detail.starts_with("influxdb answered 422: failure writing"),
                "{detail}"
            );
        } else {
            assert_eq!(outcome, &ItemOutcome::Delivered, "item {index}");
        }
    }
    // 8 refused -> 4 written, 4 refused -> 2 refused -> 1 written, 1 refused; 2 written.
    let requests = server.requests();
    assert_eq!(line_counts(&requests), [8, 4, 4, 2, 1, 1, 2]);
    // Every good line landed in a request that was answered 204.
    for (index, point) in points.iter().enumerate().filter(|(index, _)| *index != 5) {
        let host = format!("host=h{index} ");
        assert!(
            requests
                .iter()
                .any(|request| !request.body.contains("bad") && request.body.contains(&host)),
            "{point:?}"
        );
    }
}

#[tokio::test]
async fn too_large_requests_are_split_and_a_lone_oversized_line_rejected() {
    let server = RecordingServer::start(|request| {
        if request.body.len() > 80 {
            Reply::status(413).with_body(r#"{"error":"Request Entity Too Large"}"#)
        } else {
            Reply::status(204)
        }
    })
    .await;
    let writer = InfluxWriter::new(v1_settings(&server.url, None)).expect("valid settings");
    let mut points = points(5);
    points[3]
        .fields
        .insert("blob".into(), FieldValue::String("x".repeat(100)));

    let outcomes = write(&writer, &points).await;
    for (index, outcome) in outcomes.iter().enumerate() {
        if index == 3 {
            assert!(
                matches!(outcome, ItemOutcome::Reject { reason: Reason::TooLarge, detail }
                    if detail.contains("413")),
                "{outcome:?}"
            );
        } else {
            assert_eq!(outcome, &ItemOutcome::Delivered, "item {index}");
        }
    }
}

#[tokio::test]
async fn a_failure_that_is_not_about_the_lines_stops_the_isolation_and_retries_the_rest() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let server = RecordingServer::start(move |_| match counter.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::status(400).with_body(r#"{"error":"partial write: field type conflict"}"#),
        _ => Reply::status(500).with_body(r#"{"error":"timeout"}"#),
    })
    .await;
    let writer = InfluxWriter::new(v1_settings(&server.url, None)).expect("valid settings");
    let outcomes = write(&writer, &points(8)).await;
    for outcome in &outcomes {
        assert!(
            matches!(outcome, ItemOutcome::Retry { detail, .. } if detail == "influxdb answered 500: timeout"),
            "{outcome:?}"
        );
    }
    // The whole batch, then its first half; the second half waited and was not sent.
    assert_eq!(line_counts(&server.requests()), [8, 4]);
}

#[tokio::test]
async fn refused_credentials_hold_the_points_and_no_secret_is_ever_printed() {
    let server = RecordingServer::start(|request| {
        if request.path == "/ping" {
            Reply::status(403).with_body(r#"{"error":"forbidden"}"#)
        } else {
            Reply::status(401)
                .with_body(r#"{"code":"unauthorized","message":"unauthorized access"}"#)
        }
    })
    .await;

    // v2: the token is sent, the points are held, the detail names the status only.
    let settings = v2_settings(&server.url);
    assert!(!format!("{settings:?}").contains(TOKEN));
    let writer = InfluxWriter::new(settings).expect("valid settings");
    assert!(!format!("{writer:?}").contains(TOKEN));
    let outcomes = write(&writer, &points(2)).await;
    let expected = ItemOutcome::Retry {
        after: None,
        detail: "authentication failed (status 401)".into(),
    };
    assert_eq!(outcomes, [expected.clone(), expected]);
    let ping = writer.ping().await.expect_err("403");
    assert!(
        matches!(ping, InfluxError::Authentication { status: 403 }),
        "{ping:?}"
    );

    // v1: basic auth is sent; the failed CREATE DATABASE prints no password.
    let settings = v1_settings(&server.url, Some("writer"));
    assert!(!format!("{settings:?}").contains(PASSWORD));
    let writer = InfluxWriter::new(settings).expect("valid settings");
    let error = writer.ensure_database().await.expect_err("401");
    assert!(
        matches!(error, InfluxError::Authentication { status: 401 }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    let printed = format!("{error} | {error:?} | {writer:?}");
    assert!(!printed.contains(PASSWORD), "{printed}");
    assert_eq!(error.to_string(), "authentication failed (status 401)");
    let outcomes = write(&writer, &points(1)).await;
    assert!(!format!("{outcomes:?}").contains(PASSWORD));

    let requests = server.requests();
    let query = requests
        .iter()
        .find(|request| request.path == "/query")
        .expect("CREATE DATABASE was sent");
    assert!(
        query
            .header("authorization")
            .is_some_and(|value| value.starts_with("Basic "))
    );
    assert_eq!(query.body, "q=CREATE+DATABASE+%22sluice%22");
    let v2_write = &requests[0];
    assert_eq!(
        v2_write.header("authorization"),
        Some("Token s3cr3t-token-value")
    );
}

#[tokio::test]
async fn a_slow_server_times_out_into_retries() {
    let server =
        RecordingServer::start(|_| Reply::status(204).after(Duration::from_secs(10))).await;
    let mut settings = v2_settings(&server.url);
    settings.request_timeout = Duration::from_millis(300);
    let writer = InfluxWriter::new(settings).expect("valid settings");
    let started = Instant::now();
    let outcomes = write(&writer, &points(2)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for outcome in outcomes {
        let ItemOutcome::Retry {
            after: None,
            detail,
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert!(detail.contains("could not reach influxdb"), "{detail}");
        assert!(!detail.contains(TOKEN), "{detail}");
    }
    let error = writer.ping().await.expect_err("times out");
    assert!(
        matches!(
            error,
            InfluxError::Transport {
                timed_out: true,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn credentials_in_the_url_are_refused_without_being_printed() {
    let url: Url = "http://user:url-secret@127.0.0.1:8086/"
        .parse()
        .expect("url");
    let error = InfluxWriter::new(v2_settings(&url)).expect_err("credentials in the url");
    let printed = format!("{error} {error:?}");
    assert!(printed.contains("must not carry credentials"), "{printed}");
    assert!(!printed.contains("url-secret"), "{printed}");
    assert!(!format!("{:?}", v2_settings(&url)).contains("url-secret"));
}

/// `#[tokio::test]` runs on one thread, so the thread-local recorder sees every metric.
#[tokio::test]
async fn requests_are_counted_by_status_and_measured_in_bytes() {
    let server = RecordingServer::start(|request| {
        if request.body.contains("bad") {
            Reply::status(400)
                .with_body(r#"{"error":"unable to parse 'bad': invalid field format"}"#)
        } else {
            Reply::status(204)
        }
    })
    .await;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let mut settings = v1_settings(&server.url, None);
    settings.gzip = false;
    let writer = InfluxWriter::new(settings).expect("valid settings");
    let mut points = points(2);
    points[1].measurement = "bad".into();
    let outcomes = write(&writer, &points).await;
    assert_eq!(outcomes[0], ItemOutcome::Delivered);
    assert!(
        matches!(
            outcomes[1],
            ItemOutcome::Reject {
                reason: Reason::BadLine,
                ..
            }
        ),
        "{outcomes:?}"
    );

    let (counters, histograms) = recorded(&snapshotter);
    assert_eq!(
        counters.get("sluice_influx_requests_total{status=400}"),
        Some(&2)
    );
    assert_eq!(
        counters.get("sluice_influx_requests_total{status=204}"),
        Some(&1)
    );
    assert_eq!(counters.get("sluice_influx_bisections_total{}"), Some(&1));
    let bytes = histograms;
    let sizes: Vec<usize> = server
        .requests()
        .iter()
        .map(|request| request.body.len())
        .collect();
    let recorded_sizes: Vec<usize> = bytes["sluice_influx_request_bytes{}"]
        .iter()
        .map(|size| *size as usize)
        .collect();
    assert_eq!(recorded_sizes, sizes);
}
