//! The writer against failures a real Elasticsearch cannot be told to produce: per-item 429s,
//! whole-request 413/503/429/400, refused connections, a stop and restart, slow answers,
//! refused credentials. Every test here runs against the fake only, whatever `ES_URL` says,
//! because each needs the fake's fault injection.

#[path = "support/target.rs"]
mod target;

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use sluice_core::outcome::ItemOutcome;
use sluice_elasticsearch::{EsAuth, EsError, EsSettings, EsWriter};

use target::{Target, assert_all_delivered, document, event, write};

fn retry_detail(outcome: &ItemOutcome) -> (Option<Duration>, &str) {
    match outcome {
        ItemOutcome::Retry { after, detail } => (*after, detail.as_str()),
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[tokio::test]
async fn a_mixed_answer_maps_each_item_in_place_and_only_the_retried_are_written_again() {
    // Fake only: the 429 of one item is injected.
    let mut target = Target::fake().await;
    let index = target.index("mixed");
    let writer = target.writer();
    // `count` becomes a long, and "existing" is stored.
    assert_all_delivered(
        &write(
            &writer,
            &[document(
                &index,
                "existing",
                r#"{"count":1,"text":"first"}"#,
            )],
        )
        .await,
        1,
    );
    target
        .fake_server()
        .fail_items_with_429(["throttled".to_owned()], 1);
    let batch = [
        document(&index, "new", r#"{"count":2,"text":"created: 201"}"#),
        document(&index, "existing", r#"{"count":1,"text":"first"}"#),
        document(&index, "throttled", r#"{"count":3,"text":"429 once"}"#),
        document(&index, "conflict", r#"{"count":"three","text":"400"}"#),
    ];

    let outcomes = write(&writer, &batch).await;

    assert_eq!(outcomes[0], ItemOutcome::Delivered, "201");
    assert_eq!(outcomes[1], ItemOutcome::Delivered, "409");
    let (after, detail) = retry_detail(&outcomes[2]);
    assert_eq!(after, None);
    assert!(
        detail.starts_with(
            "es_rejected_execution_exception: rejected execution of primary operation"
        ),
        "{detail}"
    );
    let ItemOutcome::Reject { reason, detail } = &outcomes[3] else {
        panic!("{outcomes:?}");
    };
    assert_eq!(*reason, "mapping_conflict");
    assert_eq!(
        detail,
        "document_parsing_exception: [1:10] failed to parse field [count] of type [long] in \
         document with id 'conflict'. Preview of field's value: 'three'"
    );

    // What deliver_batch does next: write only the retried subset.
    assert_all_delivered(&write(&writer, &batch[2..3]).await, 1);
    assert_eq!(target.count(&index).await, 3);
    let stored = target.fake_server().documents(&index);
    assert_eq!(stored.len(), 3);
    assert_eq!(target.fake_server().bulk_log()[2].actions(), 1);
}

#[tokio::test]
async fn a_413_splits_the_request_in_halves_until_it_fits() {
    // Fake only: the 413 is injected.
    let mut target = Target::fake().await;
    let index = target.index("split");
    let writer = target.writer();
    target.fake_server().respond_whole_request(413, 2);
    let documents: Vec<_> = (0..8).map(|number| event(&index, number)).collect();

    assert_all_delivered(&write(&writer, &documents).await, 8);

    let sizes: Vec<usize> = target
        .fake_server()
        .bulk_log()
        .iter()
        .map(|record| record.actions())
        .collect();
    // 8 refused, its first half 4 refused, then 2 + 2, then the second half 4.
    assert_eq!(sizes, [8, 4, 2, 2, 4]);
    let statuses: Vec<u16> = target
        .fake_server()
        .bulk_log()
        .iter()
        .map(|record| record.status)
        .collect();
    assert_eq!(statuses, [413, 413, 200, 200, 200]);
    assert_eq!(target.count(&index).await, 8);
}

#[tokio::test]
async fn a_document_too_large_alone_is_rejected_and_the_others_delivered() {
    // Fake only: http.max_content_length is set low.
    let mut target = Target::fake().await;
    let index = target.index("large");
    let mut settings = target.settings();
    settings.gzip = false;
    let writer = EsWriter::new(settings).expect("valid settings");
    target.fake_server().set_max_content_length(2_000);
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(3_000));
    let documents = [
        event(&index, 1),
        event(&index, 2),
        document(&index, "big", &big),
        event(&index, 3),
    ];

    let outcomes = write(&writer, &documents).await;

    assert_eq!(outcomes[0], ItemOutcome::Delivered);
    assert_eq!(outcomes[1], ItemOutcome::Delivered);
    assert_eq!(outcomes[3], ItemOutcome::Delivered);
    let ItemOutcome::Reject { reason, detail } = &outcomes[2] else {
        panic!("{outcomes:?}");
    };
    assert_eq!(*reason, "too_large");
    assert!(detail.contains("413"), "{detail}");
    assert_eq!(target.count(&index).await, 3);
}

#[tokio::test]
async fn a_503_retries_every_document_after_the_retry_after() {
    // Fake only: the 503 is injected.
    let mut target = Target::fake().await;
    let index = target.index("unavailable");
    let writer = target.writer();
    target.fake_server().respond_whole_request(503, 1);
    target
        .fake_server()
        .set_retry_after(Some(Duration::from_secs(7)));
    let documents: Vec<_> = (0..4).map(|number| event(&index, number)).collect();

    let outcomes = write(&writer, &documents).await;

    assert_eq!(outcomes.len(), 4);
    for outcome in &outcomes {
        let (after, detail) = retry_detail(outcome);
        assert_eq!(after, Some(Duration::from_secs(7)));
        assert_eq!(
            detail,
            "elasticsearch answered 503: cluster_block_exception: blocked by: \
             [SERVICE_UNAVAILABLE/2/no master];"
        );
    }
    assert!(target.fake_server().documents(&index).is_empty());
    // It passes: the next write lands.
    assert_all_delivered(&write(&writer, &documents).await, 4);
}

#[tokio::test]
async fn whole_request_429_and_400_are_retried_not_dead_lettered() {
    // Fake only: the statuses are injected.
    let mut target = Target::fake().await;
    let index = target.index("refused");
    let writer = target.writer();
    target.fake_server().respond_whole_request(429, 1);
    target.fake_server().respond_whole_request(400, 1);
    let documents: Vec<_> = (0..3).map(|number| event(&index, number)).collect();

    let outcomes = write(&writer, &documents).await;
    for outcome in &outcomes {
        let (_, detail) = retry_detail(outcome);
        assert!(
            detail.starts_with("elasticsearch answered 429: es_rejected_execution_exception"),
            "{detail}"
        );
    }
    let outcomes = write(&writer, &documents).await;
    for outcome in &outcomes {
        let (_, detail) = retry_detail(outcome);
        assert!(
            detail.starts_with("elasticsearch answered 400: illegal_argument_exception"),
            "{detail}"
        );
    }
    assert_all_delivered(&write(&writer, &documents).await, 3);
}

#[tokio::test]
async fn a_refused_connection_retries_every_document() {
    // Fake only: the server is stopped.
    let mut target = Target::fake().await;
    let index = target.index("refused");
    let writer = target.writer();
    target.fake_server().stop().await;

    let outcomes = write(&writer, &[event(&index, 1), event(&index, 2)]).await;

    for outcome in &outcomes {
        let (after, detail) = retry_detail(outcome);
        assert_eq!(after, None);
        assert!(
            detail.starts_with("could not reach elasticsearch at"),
            "{detail}"
        );
    }
    let error = writer.ping().await.expect_err("nothing listens");
    assert!(
        matches!(
            error,
            EsError::Transport {
                timed_out: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_stop_and_restart_loses_nothing_stored_and_the_held_documents_land_after() {
    // Fake only: the server is stopped and restarted.
    let mut target = Target::fake().await;
    let index = target.index("restart");
    let writer = target.writer();
    let first: Vec<_> = (0..10).map(|number| event(&index, number)).collect();
    assert_all_delivered(&write(&writer, &first).await, 10);

    target.fake_server().stop().await;
    let held: Vec<_> = (10..15).map(|number| event(&index, number)).collect();
    let outcomes = write(&writer, &held).await;
    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, ItemOutcome::Retry { .. })),
        "{outcomes:?}"
    );

    target.fake_server().restart().await;
    assert_eq!(target.fake_server().documents(&index).len(), 10);
    assert_all_delivered(&write(&writer, &held).await, 5);
    // A redelivery of everything after the restart stores nothing twice.
    let everything: Vec<_> = (0..15).map(|number| event(&index, number)).collect();
    assert_all_delivered(&write(&writer, &everything).await, 15);
    assert_eq!(target.count(&index).await, 15);
}

#[tokio::test]
async fn a_slow_answer_times_out_into_retries() {
    // Fake only: the answers are delayed.
    let mut target = Target::fake().await;
    let index = target.index("slow");
    target
        .fake_server()
        .delay_responses(Duration::from_secs(10));
    let mut settings = target.settings();
    settings.request_timeout = Duration::from_millis(300);
    let writer = EsWriter::new(settings).expect("valid settings");
    let started = Instant::now();

    let outcomes = write(&writer, &[event(&index, 1)]).await;

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (_, detail) = retry_detail(&outcomes[0]);
    assert!(
        detail.starts_with("could not reach elasticsearch"),
        "{detail}"
    );
    let error = writer.ping().await.expect_err("times out");
    assert!(
        matches!(
            error,
            EsError::Transport {
                timed_out: true,
                ..
            }
        ),
        "{error:?}"
    );
}

const PASSWORD: &str = "hunter2-password-value";
const API_KEY: &str = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";

/// Log lines written while a test runs, to look for secrets in.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn basic_auth_and_api_keys_are_sent_and_no_secret_is_ever_printed_or_logged() {
    // Fake only: security is switched on in the fake.
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut target = Target::fake().await;
    let index = target.index("auth");
    target.fake_server().require_basic_auth("writer", PASSWORD);
    target.fake_server().require_api_key(API_KEY);
    let settings_with = |auth: EsAuth| {
        let mut settings = EsSettings::new(target.url());
        settings.auth = auth;
        settings
    };
    let basic = |password: &str| EsAuth::Basic {
        username: "writer".into(),
        password: SecretString::from(password),
    };

    // Wrong credentials: every document held, the ping says why, no secret anywhere.
    let wrong = settings_with(basic("wrong-password-value"));
    let printed_settings = format!("{wrong:?}");
    let writer = EsWriter::new(wrong).expect("valid settings");
    let outcomes = write(&writer, &[event(&index, 1), event(&index, 2)]).await;
    let expected = ItemOutcome::Retry {
        after: None,
        detail: "authentication failed (status 401)".into(),
    };
    assert_eq!(outcomes, [expected.clone(), expected]);
    let error = writer.ping().await.expect_err("401");
    assert!(
        matches!(error, EsError::Authentication { status: 401 }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    let wrong_key = EsWriter::new(settings_with(EsAuth::ApiKey(SecretString::from(
        "wrong-api-key-value",
    ))))
    .expect("valid settings");
    let key_outcomes = write(&wrong_key, &[event(&index, 3)]).await;
    assert!(matches!(key_outcomes[0], ItemOutcome::Retry { .. }));
    let printed = format!(
        "{printed_settings} {writer:?} {wrong_key:?} {error} {error:?} {outcomes:?} \
         {key_outcomes:?}"
    );
    for secret in ["wrong-password-value", "wrong-api-key-value"] {
        assert!(!printed.contains(secret), "{printed}");
    }

    // Right credentials, both kinds.
    let settings = settings_with(basic(PASSWORD));
    assert!(!format!("{settings:?}").contains(PASSWORD));
    let writer = EsWriter::new(settings).expect("valid settings");
    assert!(!format!("{writer:?}").contains(PASSWORD));
    writer.ping().await.expect("ping with basic auth");
    assert_all_delivered(&write(&writer, &[event(&index, 1)]).await, 1);
    let settings = settings_with(EsAuth::ApiKey(SecretString::from(API_KEY)));
    assert!(!format!("{settings:?}").contains(API_KEY));
    let writer = EsWriter::new(settings).expect("valid settings");
    assert!(!format!("{writer:?}").contains(API_KEY));
    writer.ping().await.expect("ping with an api key");
    assert_all_delivered(&write(&writer, &[event(&index, 2)]).await, 1);

    let _ = logs.clone().flush();
    let logged = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(
        logged.contains("elasticsearch refused the credentials"),
        "the misconfiguration is logged: {logged}"
    );
    for secret in [
        PASSWORD,
        API_KEY,
        "wrong-password-value",
        "wrong-api-key-value",
    ] {
        assert!(!logged.contains(secret), "{logged}");
    }
}

#[tokio::test]
async fn credentials_in_the_url_are_refused_without_being_printed() {
    let url = "http://user:url-secret@127.0.0.1:9200/"
        .parse()
        .expect("url");
    let settings = EsSettings::new(url);
    assert!(!format!("{settings:?}").contains("url-secret"));
    let error = EsWriter::new(settings).expect_err("credentials in the url");
    let printed = format!("{error} {error:?}");
    assert!(printed.contains("must not carry credentials"), "{printed}");
    assert!(!printed.contains("url-secret"), "{printed}");
}

#[tokio::test]
async fn requests_are_ndjson_and_gzipped_when_asked() {
    // Fake only: it records the requests.
    let mut target = Target::fake().await;
    let index = target.index("headers");
    let writer = target.writer();
    assert_all_delivered(&write(&writer, &[event(&index, 1)]).await, 1);
    let mut settings = target.settings();
    settings.gzip = false;
    let plain = EsWriter::new(settings).expect("valid settings");
    assert_all_delivered(&write(&plain, &[event(&index, 2)]).await, 1);

    let log = target.fake_server().bulk_log();
    assert_eq!(log[0].content_type.as_deref(), Some("application/x-ndjson"));
    assert_eq!(log[0].content_encoding.as_deref(), Some("gzip"));
    assert!(log[0].wire_bytes < log[0].body.len(), "compressed");
    assert_eq!(log[1].content_encoding, None);
    assert_eq!(log[1].wire_bytes, log[1].body.len());
    let first_line = log[1].body.lines().next().expect("an action line");
    assert_eq!(
        first_line,
        format!(r#"{{"create":{{"_index":"{index}","_id":"event-0002"}}}}"#)
    );
}

/// Regression: the template was put only at start, when Elasticsearch answered; one that came
/// up later got its first daily index made by a document, without the template, for good.
#[tokio::test]
async fn no_document_is_written_before_the_writers_template_is_installed() {
    // Fake only: it is stopped.
    let mut target = Target::fake().await;
    let index = target.index("precondition");
    let template = target.template_name("precondition");
    let writer = target.writer().with_index_template(
        &template,
        vec![index.clone()],
        sluice_elasticsearch::TemplateOptions::default(),
    );
    let iso = document(
        &index,
        "iso",
        r#"{"type":"cloudify_log","timestamp":"2016-06-15T10:13:20.123Z","@timestamp":"2016-06-15T10:13:20.123Z"}"#,
    );

    target.fake_server().stop().await;
    let outcomes = write(&writer, std::slice::from_ref(&iso)).await;
    let (_, detail) = retry_detail(&outcomes[0]);
    assert!(detail.contains("index template"), "{detail}");

    target.fake_server().restart().await;
    assert_all_delivered(&write(&writer, &[iso]).await, 1);
    let mapping = target.mapping(&index).await;
    assert_eq!(
        mapping["properties"]["timestamp"]["type"], "keyword",
        "the index was made with the template: {mapping}"
    );
}
