//! The executor against the manager double: requests on the wire, restraints, answers,
//! retries, outcome events and redaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use sluice_core::action::{Action, ActionOrigin, ExecuteWorkflow, Webhook};
use sluice_core::retry::RetryPolicy;
use sluice_http::TlsSettings;
use sluice_rest::{
    Execution, Executor, ManagerApi, ManagerSettings, Outcome, OutcomeEvent, Restraints,
};
use sluice_testing::manager::FakeManager;
use sluice_testing::tls::TestCa;

const NOW_MS: i64 = 1_465_985_600_123;

fn settings(manager: &FakeManager, api: ManagerApi) -> ManagerSettings {
    ManagerSettings {
        url: manager.url(),
        api,
        retry: RetryPolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(40),
        },
        retry_deadline: Duration::from_secs(5),
        ..ManagerSettings::default()
    }
}

fn origin() -> ActionOrigin {
    ActionOrigin {
        group: "web_tier".into(),
        policy: "host_down".into(),
        trigger: "heal".into(),
        node_id: Some("nodejs_host_x7k2p".into()),
        node_name: Some("nodejs_host".into()),
        diagnose: "heart-beat-failure".into(),
        event_time_ms: NOW_MS,
        event: json!({"host": "nodejs_host_x7k2p"}),
    }
}

fn heal(workflow_id: &str) -> Action {
    Action::ExecuteWorkflow(ExecuteWorkflow {
        deployment_id: "nodecellar".into(),
        workflow_id: workflow_id.into(),
        parameters: json!({"node_instance_id": "nodejs_host_x7k2p",
                           "diagnose_value": "heart-beat-failure"}),
        force: false,
        allow_custom_parameters: false,
        socket_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        origin: origin(),
    })
}

fn no_restraints() -> Restraints {
    Restraints {
        is_node_started_before_workflow: false,
        interval_between_workflows: None,
    }
}

async fn started_manager() -> FakeManager {
    let manager = FakeManager::start().await.expect("the double starts");
    manager.set_node_state("nodejs_host_x7k2p", "started");
    manager
}

fn events(execution: &Execution) -> Vec<Value> {
    execution
        .events
        .iter()
        .map(OutcomeEvent::to_value)
        .collect()
}

fn event_types(execution: &Execution) -> Vec<String> {
    events(execution)
        .iter()
        .map(|event| event["event_type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn v3_posts_the_exact_body_to_api_v2_without_auth() {
    let manager = started_manager().await;
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings");
    let execution = executor
        .execute(&heal("heal"), &no_restraints(), NOW_MS)
        .await;
    assert_eq!(
        execution.outcome,
        Outcome::Succeeded {
            execution_id: "exec-v2-1".into()
        }
    );
    let posts = manager.execution_posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].path, "/api/v2/executions");
    assert_eq!(
        posts[0].body,
        r#"{"deployment_id":"nodecellar","workflow_id":"heal","force":false,"allow_custom_parameters":false,"parameters":{"diagnose_value":"heart-beat-failure","node_instance_id":"nodejs_host_x7k2p"}}"#
    );
    assert_eq!(posts[0].headers["content-type"], "application/json");
    assert!(!posts[0].headers.contains_key("api-authentication-token"));
    assert!(!posts[0].headers.contains_key("tenant"));
}

#[tokio::test]
async fn v4_posts_to_api_v3_with_token_and_tenant() {
    let manager = started_manager().await;
    manager.require_auth("s3cret-token", "default_tenant");
    let api = ManagerApi::V4 {
        token: SecretString::from("s3cret-token"),
        tenant: "default_tenant".into(),
    };
    let executor = Executor::new(settings(&manager, api)).expect("valid settings");
    let restraints = Restraints {
        is_node_started_before_workflow: true,
        interval_between_workflows: None,
    };
    let execution = executor.execute(&heal("heal"), &restraints, NOW_MS).await;
    assert_eq!(
        execution.outcome,
        Outcome::Succeeded {
            execution_id: "exec-v3-1".into()
        }
    );
    let requests = manager.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/api/v3/node-instances/nodejs_host_x7k2p");
    assert_eq!(requests[1].path, "/api/v3/executions");
    for request in &requests {
        assert_eq!(request.headers["api-authentication-token"], "s3cret-token");
        assert_eq!(request.headers["tenant"], "default_tenant");
    }
    let body: Value = serde_json::from_str(&requests[1].body).expect("json body");
    assert_eq!(body["parameters"]["node_instance_id"], "nodejs_host_x7k2p");
}

#[tokio::test]
async fn v4_with_a_wrong_token_fails_permanently() {
    let manager = started_manager().await;
    manager.require_auth("right", "default_tenant");
    let api = ManagerApi::V4 {
        token: SecretString::from("wrong"),
        tenant: "default_tenant".into(),
    };
    let executor = Executor::new(settings(&manager, api)).expect("valid settings");
    let execution = executor
        .execute(&heal("heal"), &no_restraints(), NOW_MS)
        .await;
    assert!(matches!(
        execution.outcome,
        Outcome::Failed {
            permanent: true,
            ..
        }
    ));
    assert_eq!(manager.execution_posts().len(), 1, "401 is not retried");
}

#[tokio::test]
async fn a_node_not_started_or_unknown_is_skipped_without_a_post() {
    let manager = started_manager().await;
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings");
    let restraints = Restraints {
        is_node_started_before_workflow: true,
        interval_between_workflows: None,
    };
    manager.set_node_state("nodejs_host_x7k2p", "stopped");
    let stopped = executor.execute(&heal("heal"), &restraints, NOW_MS).await;
    assert_eq!(stopped.outcome, Outcome::SkippedNodeNotStarted);
    assert!(stopped.events.is_empty());

    let Action::ExecuteWorkflow(mut unknown) = heal("heal") else {
        unreachable!()
    };
    unknown.origin.node_id = Some("gone_q1w2e".into());
    let missing = executor
        .execute(&Action::ExecuteWorkflow(unknown), &restraints, NOW_MS)
        .await;
    assert_eq!(missing.outcome, Outcome::SkippedNodeNotStarted);

    let requests = manager.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].path, "/api/v2/node-instances/nodejs_host_x7k2p");
    assert_eq!(requests[1].path, "/api/v2/node-instances/gone_q1w2e");
    assert!(manager.execution_posts().is_empty());
}

#[tokio::test]
async fn a_group_action_without_node_id_skips_the_node_check() {
    let manager = started_manager().await;
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings");
    let Action::ExecuteWorkflow(mut group) = heal("heal") else {
        unreachable!()
    };
    group.origin.node_id = None;
    let execution = executor
        .execute(
            &Action::ExecuteWorkflow(group),
            &Restraints::default(),
            NOW_MS,
        )
        .await;
    assert!(matches!(execution.outcome, Outcome::Succeeded { .. }));
    assert_eq!(manager.requests().len(), 1);
}

#[tokio::test]
async fn the_interval_skips_a_second_trigger_and_allows_one_after_it() {
    let manager = started_manager().await;
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings");
    let restraints = Restraints {
        is_node_started_before_workflow: false,
        interval_between_workflows: Some(Duration::from_secs(300)),
    };
    let first = executor.execute(&heal("heal"), &restraints, NOW_MS).await;
    assert!(matches!(first.outcome, Outcome::Succeeded { .. }));
    manager.finish_all_executions();

    let within = executor
        .execute(&heal("heal"), &restraints, NOW_MS + 299_999)
        .await;
    assert_eq!(within.outcome, Outcome::SkippedInterval);
    assert!(within.events.is_empty());

    let after = executor
        .execute(&heal("heal"), &restraints, NOW_MS + 300_000)
        .await;
    assert!(matches!(after.outcome, Outcome::Succeeded { .. }));
    assert_eq!(manager.execution_posts().len(), 2);
}

#[tokio::test]
async fn interval_records_survive_an_export_and_restore_into_a_new_executor() {
    let manager = started_manager().await;
    let restraints = Restraints {
        is_node_started_before_workflow: false,
        interval_between_workflows: Some(Duration::from_secs(300)),
    };
    let before_restart = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid");
    let first = before_restart
        .execute(&heal("heal"), &restraints, NOW_MS)
        .await;
    assert!(matches!(first.outcome, Outcome::Succeeded { .. }));
    manager.finish_all_executions();
    let saved = before_restart.trigger_times();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].at_ms, NOW_MS);
    assert_eq!(saved[0].interval_ms, 300_000);

    let after_restart = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid");
    after_restart.restore_trigger_times(saved);
    let within = after_restart
        .execute(&heal("heal"), &restraints, NOW_MS + 299_999)
        .await;
    assert_eq!(within.outcome, Outcome::SkippedInterval);
    let after = after_restart
        .execute(&heal("heal"), &restraints, NOW_MS + 300_000)
        .await;
    assert!(matches!(after.outcome, Outcome::Succeeded { .. }));
    assert_eq!(manager.execution_posts().len(), 2);
}

#[tokio::test]
async fn interval_records_whose_interval_passed_are_forgotten() {
    let manager = started_manager().await;
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid");
    let records = |count: usize, at_ms: i64, interval_ms: i64| -> Vec<sluice_rest::TriggerTime> {
        (0..count)
            .map(|index| sluice_rest::TriggerTime {
                deployment_id: format!("deployment-{at_ms}-{index}"),
                node_id: None,
                at_ms,
                interval_ms,
            })
            .collect()
    };
    // 2,000 records with a 1 s interval, then 100 an hour later: the old ones restrain nothing
    // any more and are pruned as the map grows.
    executor.restore_trigger_times(records(2000, NOW_MS, 1000));
    let later = NOW_MS + 3_600_000;
    executor.restore_trigger_times(records(100, later, 300_000));
    let kept = executor.trigger_times();
    assert_eq!(kept.len(), 100, "only the live records are kept");
    assert!(kept.iter().all(|time| time.at_ms == later));
}

#[tokio::test]
async fn the_interval_is_per_deployment_and_node() {
    let manager = started_manager().await;
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings");
    let restraints = Restraints {
        is_node_started_before_workflow: false,
        interval_between_workflows: Some(Duration::from_secs(300)),
    };
    executor.execute(&heal("heal"), &restraints, NOW_MS).await;
    manager.finish_all_executions();
    let Action::ExecuteWorkflow(mut other_node) = heal("heal") else {
        unreachable!()
    };
    other_node.origin.node_id = Some("nodejs_host_b2c3d".into());
    let execution = executor
        .execute(
            &Action::ExecuteWorkflow(other_node),
            &restraints,
            NOW_MS + 1,
        )
        .await;
    assert!(matches!(execution.outcome, Outcome::Succeeded { .. }));
}

#[tokio::test]
async fn the_interval_is_recorded_even_when_the_call_fails() {
    let manager = started_manager().await;
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings");
    let restraints = Restraints {
        is_node_started_before_workflow: false,
        interval_between_workflows: Some(Duration::from_secs(300)),
    };
    let failed = executor
        .execute(&heal("no_such_workflow"), &restraints, NOW_MS)
        .await;
    assert!(matches!(
        failed.outcome,
        Outcome::Failed {
            permanent: true,
            ..
        }
    ));
    let again = executor
        .execute(&heal("heal"), &restraints, NOW_MS + 1000)
        .await;
    assert_eq!(again.outcome, Outcome::SkippedInterval);
    assert_eq!(manager.execution_posts().len(), 1);
}

#[tokio::test]
async fn a_duplicate_of_a_pending_action_is_skipped() {
    let manager = started_manager().await;
    manager.set_delay(Duration::from_millis(200));
    let executor =
        Arc::new(Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings"));
    let action = heal("heal");
    let restraints = no_restraints();
    let (first, second) = tokio::join!(
        executor.execute(&action, &restraints, NOW_MS),
        executor.execute(&action, &restraints, NOW_MS),
    );
    let mut outcomes = [first.outcome, second.outcome];
    outcomes.sort_by_key(|outcome| outcome.label());
    assert!(matches!(outcomes[0], Outcome::SkippedDuplicatePending));
    assert!(matches!(outcomes[1], Outcome::Succeeded { .. }));
    assert_eq!(manager.execution_posts().len(), 1);

    // Once it ended, the same action may run again.
    manager.set_delay(Duration::ZERO);
    manager.finish_all_executions();
    let later = executor.execute(&action, &no_restraints(), NOW_MS).await;
    assert!(matches!(later.outcome, Outcome::Succeeded { .. }));
}

#[tokio::test]
async fn an_active_execution_answers_already_running() {
    let manager = started_manager().await;
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings");
    executor
        .execute(&heal("heal"), &no_restraints(), NOW_MS)
        .await;
    let second = executor
        .execute(&heal("scale"), &no_restraints(), NOW_MS)
        .await;
    assert_eq!(second.outcome, Outcome::AlreadyRunning);
    assert_eq!(
        event_types(&second),
        ["processing_trigger", "trigger_succeeded"]
    );
    assert_eq!(
        events(&second)[1]["message"]["args"]["already_running"],
        true
    );
    assert_eq!(manager.execution_posts().len(), 2, "not retried");
}

#[tokio::test]
async fn a_nonexistent_workflow_fails_permanently_without_retry() {
    let manager = started_manager().await;
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings");
    let execution = executor
        .execute(&heal("no_such_workflow"), &no_restraints(), NOW_MS)
        .await;
    let Outcome::Failed { permanent, detail } = &execution.outcome else {
        panic!("expected a failure, got {:?}", execution.outcome);
    };
    assert!(permanent);
    assert!(detail.contains("nonexistent_workflow_error"), "{detail}");
    assert_eq!(manager.execution_posts().len(), 1);
    assert_eq!(
        event_types(&execution),
        ["processing_trigger", "trigger_failed"]
    );
}

#[tokio::test]
async fn transient_failures_are_retried_until_success() {
    let manager = started_manager().await;
    manager.fail_next(2, 503);
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings");
    let execution = executor
        .execute(&heal("heal"), &no_restraints(), NOW_MS)
        .await;
    assert_eq!(
        execution.outcome,
        Outcome::Succeeded {
            execution_id: "exec-v2-1".into()
        }
    );
    assert_eq!(manager.execution_posts().len(), 3);
    let events = events(&execution);
    assert_eq!(events.len(), 2, "one processing_trigger, one final event");
    assert_eq!(events[1]["message"]["args"]["attempts"], 3);
}

#[tokio::test]
async fn a_failing_manager_fails_transiently_at_the_deadline() {
    let manager = started_manager().await;
    manager.fail_next(1000, 503);
    let mut settings = settings(&manager, ManagerApi::V3);
    settings.retry_deadline = Duration::from_millis(300);
    let executor = Executor::new(settings).expect("valid settings");
    let started = std::time::Instant::now();
    let execution = executor
        .execute(&heal("heal"), &no_restraints(), NOW_MS)
        .await;
    let elapsed = started.elapsed();
    let Outcome::Failed { permanent, detail } = &execution.outcome else {
        panic!("expected a failure, got {:?}", execution.outcome);
    };
    assert!(!permanent);
    assert!(detail.contains("503"), "{detail}");
    assert!(elapsed < Duration::from_millis(800), "took {elapsed:?}");
    assert!(manager.execution_posts().len() >= 3);
    assert_eq!(
        event_types(&execution),
        ["processing_trigger", "trigger_failed"]
    );
    assert_eq!(events(&execution)[1]["message"]["args"]["permanent"], false);
}

#[tokio::test]
async fn a_slow_manager_times_out_and_fails_transiently() {
    let manager = started_manager().await;
    manager.set_delay(Duration::from_secs(5));
    let mut settings = settings(&manager, ManagerApi::V3);
    settings.retry_deadline = Duration::from_millis(250);
    let executor = Executor::new(settings).expect("valid settings");
    let Action::ExecuteWorkflow(mut action) = heal("heal") else {
        unreachable!()
    };
    action.socket_timeout = Duration::from_millis(100);
    let execution = executor
        .execute(&Action::ExecuteWorkflow(action), &no_restraints(), NOW_MS)
        .await;
    assert!(
        matches!(
            execution.outcome,
            Outcome::Failed {
                permanent: false,
                ..
            }
        ),
        "{:?}",
        execution.outcome
    );
}

#[tokio::test]
async fn an_unreachable_manager_fails_transiently() {
    let manager = started_manager().await;
    let mut settings = settings(&manager, ManagerApi::V3);
    drop(manager);
    tokio::time::sleep(Duration::from_millis(20)).await;
    settings.retry_deadline = Duration::from_millis(100);
    let executor = Executor::new(settings).expect("valid settings");
    let execution = executor
        .execute(&heal("heal"), &no_restraints(), NOW_MS)
        .await;
    assert!(matches!(
        execution.outcome,
        Outcome::Failed {
            permanent: false,
            ..
        }
    ));
}

#[tokio::test]
async fn outcome_events_have_the_cloudify_event_shape() {
    let manager = started_manager().await;
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings");
    let execution = executor
        .execute(&heal("heal"), &no_restraints(), NOW_MS)
        .await;
    let events = events(&execution);
    assert_eq!(
        event_types(&execution),
        ["processing_trigger", "trigger_succeeded"]
    );
    for event in &events {
        assert_eq!(event["type"], "cloudify_event");
        assert_eq!(event["message_code"], Value::Null);
        assert!(event["message"]["text"].is_string());
        assert!(event["message"].get("args").is_some());
        assert!(event["message"].get("arguments").is_none());
        let timestamp = event["timestamp"].as_str().expect("a timestamp");
        assert!(timestamp.starts_with("2016-06-15 10:13:2"), "{timestamp}");
        assert_eq!(timestamp.len(), "2016-06-15 10:13:20.123".len());
        let context = &event["context"];
        assert_eq!(
            context,
            &json!({
                "blueprint_id": null, "deployment_id": "nodecellar", "execution_id": null,
                "workflow_id": "heal", "group": "web_tier", "policy": "host_down",
                "trigger": "heal",
                "trigger-parameters": {"node_instance_id": "nodejs_host_x7k2p",
                                       "diagnose_value": "heart-beat-failure"},
                "node_id": "nodejs_host_x7k2p", "node_name": "nodejs_host"
            })
        );
    }
    assert_eq!(events[1]["message"]["args"]["execution_id"], "exec-v2-1");
}

#[tokio::test]
async fn invalid_parameters_fail_permanently_without_a_request() {
    let manager = started_manager().await;
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings");
    let Action::ExecuteWorkflow(mut action) = heal("heal") else {
        unreachable!()
    };
    action.parameters = json!([1, 2]);
    let execution = executor
        .execute(&Action::ExecuteWorkflow(action), &no_restraints(), NOW_MS)
        .await;
    assert!(matches!(
        execution.outcome,
        Outcome::Failed {
            permanent: true,
            ..
        }
    ));
    assert_eq!(event_types(&execution), ["trigger_failed"]);
    assert!(manager.requests().is_empty());
}

#[tokio::test]
async fn the_token_never_shows_in_debug_or_failures() {
    let manager = started_manager().await;
    manager.fail_next(1000, 503);
    let api = ManagerApi::V4 {
        token: SecretString::from("hunter2-token"),
        tenant: "default_tenant".into(),
    };
    let mut settings = settings(&manager, api);
    settings.retry_deadline = Duration::from_millis(50);
    assert!(!format!("{settings:?}").contains("hunter2"));
    let executor = Executor::new(settings).expect("valid settings");
    assert!(!format!("{executor:?}").contains("hunter2"));
    let execution = executor
        .execute(&heal("heal"), &no_restraints(), NOW_MS)
        .await;
    assert!(!format!("{execution:?}").contains("hunter2"));
    assert!(
        execution
            .events
            .iter()
            .all(|event| !event.to_json().contains("hunter2"))
    );

    let bad = ManagerSettings {
        api: ManagerApi::V4 {
            token: SecretString::from("hunter2\nsecret"),
            tenant: "t".into(),
        },
        ..ManagerSettings::default()
    };
    let error = Executor::new(bad).expect_err("a newline cannot be sent");
    assert!(!format!("{error} {error:?}").contains("hunter2"));
}

#[tokio::test]
async fn the_fake_lists_executions_by_deployment() {
    let manager = started_manager().await;
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings");
    executor
        .execute(&heal("heal"), &no_restraints(), NOW_MS)
        .await;
    let url = manager
        .url()
        .join("/api/v2/executions?deployment_id=nodecellar")
        .expect("url");
    let listing: Value = reqwest::get(url)
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(listing["items"][0]["status"], "pending");
    assert_eq!(listing["metadata"]["pagination"]["total"], 1);
}

fn webhook(url: String) -> Action {
    Action::Webhook(Webhook {
        url,
        headers: BTreeMap::from([("X-Api-Key".to_owned(), "hook-secret".to_owned())]),
        body: json!({"alert": "host down"}),
        timeout: Duration::from_secs(1),
        origin: origin(),
    })
}

#[tokio::test]
async fn a_webhook_posts_its_body_and_headers() {
    let manager = started_manager().await;
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings");
    // The double answers 2xx on executions, so point the webhook there.
    let url = format!("{}api/v2/executions?token=query-secret", manager.url());
    let hook = webhook(url);
    let Action::Webhook(hook) = hook else {
        unreachable!()
    };
    let body = r#"{"deployment_id":"hooks","workflow_id":"heal"}"#;
    let hook = Webhook {
        body: serde_json::from_str(body).expect("a JSON body"),
        ..hook
    };
    let execution = executor
        .execute(&Action::Webhook(hook), &Restraints::default(), NOW_MS)
        .await;
    assert!(matches!(execution.outcome, Outcome::Succeeded { .. }));
    let posts = manager.requests();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].path, "/api/v2/executions?token=query-secret");
    assert_eq!(posts[0].body, body);
    assert_eq!(posts[0].headers["x-api-key"], "hook-secret");
    assert_eq!(
        event_types(&execution),
        ["processing_trigger", "trigger_succeeded"]
    );
    assert!(
        execution
            .events
            .iter()
            .all(|event| !event.to_json().contains("secret"))
    );
}

#[tokio::test]
async fn a_webhook_4xx_is_permanent_and_5xx_is_retried() {
    let manager = started_manager().await;
    let executor = Executor::new(settings(&manager, ManagerApi::V3)).expect("valid settings");
    let refused = executor
        .execute(
            &webhook(format!("{}nowhere", manager.url())),
            &Restraints::default(),
            NOW_MS,
        )
        .await;
    assert!(matches!(
        refused.outcome,
        Outcome::Failed {
            permanent: true,
            ..
        }
    ));
    manager.fail_next(1, 500);
    let retried = executor
        .execute(
            &webhook(format!("{}nowhere", manager.url())),
            &Restraints::default(),
            NOW_MS,
        )
        .await;
    assert!(matches!(
        retried.outcome,
        Outcome::Failed {
            permanent: true,
            ..
        }
    ));
    assert_eq!(manager.requests().len(), 3, "one 404, then a 500 and a 404");
}

/// `https` to a manager with a private CA that asks for a client certificate: without the CA
/// the trigger fails (and nothing reaches the manager); with the CA and the client certificate
/// of `[manager.tls]` it is posted as over http.
#[tokio::test]
async fn a_manager_over_https_is_reached_with_the_configured_ca_and_client_certificate() {
    let ca = TestCa::new("manager CA");
    let manager = FakeManager::start_tls(&ca.issue(&["localhost"]), Some(&ca)).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca.cert_pem()).expect("write the CA");
    let (cert_file, key_file) = ca.issue(&["sluice"]).write_to(dir.path(), "client");
    let executor = |tls: TlsSettings| {
        let mut settings = settings(&manager, ManagerApi::V3);
        // Refused handshakes are retried as transient: keep the failing case short.
        settings.retry_deadline = Duration::from_millis(200);
        settings.tls = tls;
        Executor::new(settings).expect("valid settings")
    };

    let untrusted = executor(TlsSettings::default())
        .execute(&heal("heal"), &no_restraints(), NOW_MS)
        .await;
    assert!(
        matches!(untrusted.outcome, Outcome::Failed { .. }),
        "{:?}",
        untrusted.outcome
    );
    assert!(manager.execution_posts().is_empty(), "nothing got through");

    let identified = TlsSettings::from_files(Some(&ca_file), Some(&cert_file), Some(&key_file))
        .expect("PEM files");
    let execution = executor(identified)
        .execute(&heal("heal"), &no_restraints(), NOW_MS)
        .await;
    assert_eq!(
        execution.outcome,
        Outcome::Succeeded {
            execution_id: "exec-v2-1".into()
        }
    );
    assert_eq!(manager.execution_posts().len(), 1);
}
