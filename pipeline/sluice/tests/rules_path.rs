//! End to end on the real RabbitMQ (and InfluxDB, which the metrics path writes): the rule
//! stage as a drop-in for the manager's Riemann. The manager's REST API is the double from
//! `sluice-rest` (the manager cannot run here), which answers as the manager does.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Broker, Sluice, TestNames, diamond, eventually, influx_url, unique};
use serde_json::{Value, json};
use sluice_testing::manager::{FakeManager, RecordedRequest, scale_and_heal_groups};

const WAIT: Duration = Duration::from_secs(60);
const CONTROL_ROUTING_KEY: &str = "manager-riemann";

fn control(state: &str, deployment: &str, config_path: &Path) -> Vec<u8> {
    json!({"service": "cloudify.configuration", "state": state,
           "config_path": config_path, "deployment_id": deployment, "time": now_s()})
    .to_string()
    .into_bytes()
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// The execution POSTs for `workflow` on node `node_id`, with their bodies parsed.
fn posts_for(manager: &FakeManager, workflow: &str, node_id: &str) -> Vec<Value> {
    manager
        .execution_posts()
        .iter()
        .map(|request: &RecordedRequest| {
            serde_json::from_str::<Value>(&request.body).expect("JSON")
        })
        .filter(|body| {
            body["workflow_id"] == workflow
                && (body["parameters"]["node_id"] == node_id
                    || body["parameters"]["node_instance_id"] == node_id)
        })
        .collect()
}

/// Everything a rules test shares: the manager double, the broker, the test's names, the
/// deployment's config directory, and a queue that receives the rule stage's events.
struct Setup {
    manager: FakeManager,
    broker: Broker,
    names: TestNames,
    deployment: String,
    config_dir: tempfile::TempDir,
    state_dir: tempfile::TempDir,
    events_exchange: String,
    events_queue: String,
}

impl Setup {
    async fn new(test: &str, ttl_seconds: u64) -> Setup {
        let manager = FakeManager::start()
            .await
            .expect("the manager double starts");
        for node in ["vm_a", "vm_b", "vm_h"] {
            manager.set_node_state(node, "started");
        }
        let broker = Broker::connect().await;
        let names = TestNames::new(test);
        let config_dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(
            config_dir.path().join("groups"),
            scale_and_heal_groups(ttl_seconds),
        )
        .expect("write groups");
        let events_exchange = unique(&format!("{test}.events"));
        let events_queue = unique(&format!("{test}.events-seen"));
        broker.declare_fanout_exchange(&events_exchange).await;
        broker.bind_queue(&events_queue, &events_exchange, "").await;
        Setup {
            manager,
            broker,
            names,
            deployment: unique("dep"),
            config_dir,
            state_dir: tempfile::tempdir().expect("temporary directory"),
            events_exchange,
            events_queue,
        }
    }

    async fn start_sluice(&self) -> Sluice {
        self.start_sluice_with(&[]).await
    }

    async fn start_sluice_with(&self, extra: &[(&str, &str)]) -> Sluice {
        let manager_url = self.manager.url().to_string();
        let state_dir = self.state_dir.path().to_string_lossy().into_owned();
        let mut overrides = vec![
            ("SLUICE_MANAGER__URL", manager_url.as_str()),
            ("SLUICE_MANAGER__RETRY_INITIAL_DELAY", "50ms"),
            ("SLUICE_RULES__STATE_DIR", state_dir.as_str()),
            ("SLUICE_RULES__SWEEP_INTERVAL", "500ms"),
            ("SLUICE_RULES__CHECKPOINT_INTERVAL", "200ms"),
            ("SLUICE_RULES__STARTUP_GRACE", "1s"),
            (
                "SLUICE_RULES__EVENTS_EXCHANGE",
                self.events_exchange.as_str(),
            ),
            ("SLUICE_RULES__EVENTS_ROUTING_KEY", ""),
        ];
        overrides.extend_from_slice(extra);
        Sluice::start(&self.names, &influx_url(), &overrides).await
    }

    async fn publish_metric(&self, node_id: &str, path: &str, value: f64) {
        let body = diamond(&self.deployment, node_id, path, value, now_s());
        self.broker
            .publish(&self.names.exchange, &self.deployment, &body)
            .await;
    }

    /// A `memory.used` metric of `node_id` with event time `time` (seconds) and, when given,
    /// the body's own `ttl` (seconds).
    async fn publish_memory(&self, node_id: &str, time: i64, ttl: Option<u64>) {
        let mut body: Value = serde_json::from_slice(&diamond(
            &self.deployment,
            node_id,
            "memory.used",
            1.0,
            time,
        ))
        .expect("JSON");
        if let Some(ttl) = ttl {
            body["ttl"] = json!(ttl);
        }
        self.broker
            .publish(
                &self.names.exchange,
                &self.deployment,
                body.to_string().as_bytes(),
            )
            .await;
    }

    /// Sends the manager's `start` and waits for the `ok` file it waits for.
    async fn start_policies(&self) {
        let ok_file = self.config_dir.path().join("ok");
        self.broker
            .publish(
                &self.names.exchange,
                CONTROL_ROUTING_KEY,
                &control("start", &self.deployment, self.config_dir.path()),
            )
            .await;
        eventually("the ok file", WAIT, || async {
            ok_file.exists().then_some(())
        })
        .await;
    }

    /// Breaches `cpu_high` on `node_id` and waits for its scale POST: the rule stage handles
    /// its input in order, so everything published before has been evaluated by then.
    async fn breach_and_wait(&self, node_id: &str) {
        self.publish_metric(node_id, "cpu.total.user", 97.0).await;
        eventually(&format!("the scale POST for {node_id}"), WAIT, || async {
            (!posts_for(&self.manager, "scale", node_id).is_empty()).then_some(())
        })
        .await;
    }

    async fn event_types_seen(&self, count: usize) -> Vec<Value> {
        self.broker
            .take(&self.events_queue, count, WAIT)
            .await
            .iter()
            .map(|message| serde_json::from_slice::<Value>(&message.body).expect("event JSON"))
            .collect()
    }

    async fn clean_up(&self) {
        self.broker.remove(&self.names).await;
        self.broker.delete_queue(&self.events_queue).await;
        self.broker.delete_exchange(&self.events_exchange).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_message_loads_policies_and_a_breach_posts_exactly_once_with_the_managers_body() {
    let setup = Setup::new("rules-breach", 60).await;
    let mut sluice = setup.start_sluice().await;
    setup.start_policies().await;
    assert_eq!(
        std::fs::read(setup.config_dir.path().join("ok")).expect("ok file"),
        b"",
        "the ok file is empty, as the manager expects"
    );

    // Below, then above the threshold, and above again: one transition, one trigger.
    setup.publish_metric("vm_a", "cpu.total.user", 50.0).await;
    setup.publish_metric("vm_a", "cpu.total.user", 95.0).await;
    setup.publish_metric("vm_a", "cpu.total.user", 99.0).await;
    setup.publish_metric("vm_a", "cpu.total.user", 98.0).await;
    // A metric of a deployment without policies, and one of another collector: no trigger.
    let other = diamond("no-policies", "vm_a", "cpu.total.user", 99.0, now_s());
    setup
        .broker
        .publish(&setup.names.exchange, "no-policies", &other)
        .await;
    setup.breach_and_wait("vm_b").await;

    let posts = posts_for(&setup.manager, "scale", "vm_a");
    assert_eq!(posts.len(), 1, "exactly one trigger for vm_a: {posts:?}");
    assert_eq!(
        posts[0],
        json!({"deployment_id": setup.deployment, "workflow_id": "scale", "force": false,
               "allow_custom_parameters": false,
               "parameters": {"node_id": "vm_a", "delta": 1}})
    );
    let requests = setup.manager.requests();
    let node_checks = requests
        .iter()
        .filter(|request| request.method == "GET" && request.path == "/api/v2/node-instances/vm_a")
        .count();
    assert_eq!(
        node_checks, 1,
        "the node-started check ran before the trigger"
    );
    let post = setup
        .manager
        .execution_posts()
        .into_iter()
        .find(|request| request.body.contains("\"vm_a\""))
        .expect("the POST");
    assert_eq!(post.path, "/api/v2/executions", "the 3.x API by default");
    assert_eq!(post.headers["content-type"], "application/json");

    // The manager's own events for both triggers: policy, processing_trigger, then the outcome
    // (the second one meets the first's running execution: already running, not a failure).
    let events = setup.event_types_seen(6).await;
    let for_vm_a: Vec<&str> = events
        .iter()
        .filter(|event| event["context"]["node_id"] == "vm_a")
        .map(|event| event["event_type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        for_vm_a,
        vec!["policy", "processing_trigger", "trigger_succeeded"]
    );
    for event in &events {
        assert_eq!(event["type"], "cloudify_event");
        assert_eq!(event["context"]["deployment_id"], setup.deployment.as_str());
        assert_eq!(event["context"]["group"], "web_tier");
        assert_eq!(event["context"]["policy"], "cpu_high");
    }

    // The status page shows the loaded deployment and both triggers with their outcomes. Which
    // of vm_a and vm_b reaches the manager first is a race: the other one is already running.
    let finished = ["succeeded", "already_running"];
    let activity = eventually("both triggers' outcomes on /status", WAIT, || async {
        let (_, body) = sluice.get("/status").await;
        let status: Value = serde_json::from_str(&body).ok()?;
        let activity = status["rules"]["activity"].clone();
        let triggers = activity["triggers"].as_array()?;
        let outcomes: Vec<&str> = triggers
            .iter()
            .filter_map(|trigger| trigger["outcome"].as_str())
            .collect();
        (outcomes.len() == 2 && outcomes.iter().all(|outcome| finished.contains(outcome)))
            .then_some(activity)
    })
    .await;
    assert_eq!(
        activity["deployments"],
        json!([{"deployment_id": setup.deployment, "groups": 1, "policies": 2}])
    );
    let trigger = activity["triggers"]
        .as_array()
        .and_then(|triggers| triggers.iter().find(|trigger| trigger["node_id"] == "vm_a"))
        .expect("vm_a's trigger");
    assert_eq!(
        (
            &trigger["group"],
            &trigger["policy"],
            &trigger["kind"],
            &trigger["target"]
        ),
        (
            &json!("web_tier"),
            &json!("cpu_high"),
            &json!("execute_workflow"),
            &json!("scale")
        )
    );
    assert_eq!(sluice.counter("sluice_rule_deployments_loaded").await, 1.0);

    // `stop` unloads: a new breach of a fresh node triggers nothing.
    setup
        .broker
        .publish(
            &setup.names.exchange,
            CONTROL_ROUTING_KEY,
            &control("stop", &setup.deployment, setup.config_dir.path()),
        )
        .await;
    eventually("the stop to be handled", WAIT, || async {
        (sluice.counter("sluice_rule_deployments_total").await >= 2.0).then_some(())
    })
    .await;
    assert_eq!(sluice.counter("sluice_rule_deployments_loaded").await, 0.0);
    setup.publish_metric("vm_h", "cpu.total.user", 99.0).await;
    assert!(sluice.stop(), "clean stop");
    assert!(posts_for(&setup.manager, "scale", "vm_h").is_empty());
    let (ready, _) = setup.broker.queue_counts(&setup.names.queue).await;
    assert_eq!(ready, 0, "every message, control ones too, was acked");
    setup.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_metrics_stop_is_healed_within_ttl_and_a_sweep() {
    const TTL_MS: i64 = 2000;
    const SWEEP_MS: i64 = 500;
    let setup = Setup::new("rules-heal", (TTL_MS / 1000) as u64).await;
    let mut sluice = setup.start_sluice().await;
    setup.start_policies().await;

    // The engine sees event times in whole seconds (Diamond's `time`), and the series expires
    // `ttl` after its newest one. One time for all three, read once: reading the clock again
    // after publishing could fall in the next second and make an on-time heal look early.
    let last_event_s = now_s();
    for _ in 0..3 {
        setup.publish_memory("vm_h", last_event_s, None).await;
    }
    let last_event_ms = last_event_s * 1000;
    let heal = eventually("the heal POST", WAIT, || async {
        posts_for(&setup.manager, "heal", "vm_h").into_iter().next()
    })
    .await;
    let healed_at_ms = now_ms();
    assert_eq!(
        heal,
        json!({"deployment_id": setup.deployment, "workflow_id": "heal", "force": false,
               "allow_custom_parameters": false,
               "parameters": {"node_instance_id": "vm_h",
                              "diagnose_value": "heart-beat-failure"}})
    );
    assert!(
        healed_at_ms > last_event_ms + TTL_MS,
        "not before the ttl passed: healed {} ms after the last event",
        healed_at_ms - last_event_ms
    );
    // One ttl and one sweep, plus the first sweep's start-up grace margin and slack for a
    // loaded machine: a heal that waited for another ttl would miss this.
    assert!(
        healed_at_ms <= last_event_ms + 1000 + TTL_MS + SWEEP_MS + 1500,
        "healed {} ms after the last event",
        healed_at_ms - last_event_ms
    );
    assert!(sluice.stop(), "clean stop");
    assert_eq!(posts_for(&setup.manager, "heal", "vm_h").len(), 1);
    setup.clean_up().await;
}

/// The received time of the first heal POST for `node_id`, in Unix ms.
fn heal_posted_at_ms(manager: &FakeManager, node_id: &str) -> Option<i64> {
    manager.execution_posts().iter().find_map(|request| {
        let body: Value = serde_json::from_str(&request.body).ok()?;
        (body["workflow_id"] == "heal" && body["parameters"]["node_instance_id"] == node_id).then(
            || {
                request
                    .received_at
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |elapsed| elapsed.as_millis() as i64)
            },
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_start_heals_a_host_by_its_metrics_own_ttl_without_waiting_for_the_grace() {
    // The policy's ttl and the start-up grace are both 60 s: only the body's `ttl` of 10 s, and
    // a first sweep that judges at once, can heal within the bound below.
    const BODY_TTL_MS: i64 = 10_000;
    const SWEEP_MS: i64 = 500;
    let setup = Setup::new("rules-body-ttl", 60).await;
    let mut sluice = setup
        .start_sluice_with(&[("SLUICE_RULES__STARTUP_GRACE", "60s")])
        .await;
    setup.start_policies().await;

    // Event times are whole seconds; the series expires `ttl` after its newest one.
    let last_event_s = now_s();
    for node in ["vm_h", "vm_a"] {
        for time in [last_event_s - 1, last_event_s] {
            let ttl = (node == "vm_h").then_some((BODY_TTL_MS / 1000) as u64);
            setup.publish_memory(node, time, ttl).await;
        }
    }
    let healed_at_ms = eventually("vm_h's heal POST", WAIT, || async {
        heal_posted_at_ms(&setup.manager, "vm_h")
    })
    .await;
    let deadline_ms = last_event_s * 1000 + BODY_TTL_MS;
    assert!(
        healed_at_ms > deadline_ms,
        "not before the body's ttl passed: healed {} ms before it",
        deadline_ms - healed_at_ms
    );
    // One sweep after the deadline, and slack for a loaded machine: far below the policy's and
    // the grace's 60 s.
    assert!(
        healed_at_ms <= deadline_ms + SWEEP_MS + 2000,
        "healed {} ms after the body's ttl passed",
        healed_at_ms - deadline_ms
    );
    assert_eq!(
        posts_for(&setup.manager, "heal", "vm_h")[0]["parameters"],
        json!({"node_instance_id": "vm_h", "diagnose_value": "heart-beat-failure"})
    );
    // vm_a's metrics carry no ttl: the policy's 60 s applies, and it is still alive.
    assert!(
        posts_for(&setup.manager, "heal", "vm_a").is_empty(),
        "vm_a keeps the policy's ttl"
    );
    assert!(sluice.stop(), "clean stop");
    assert_eq!(posts_for(&setup.manager, "heal", "vm_h").len(), 1);
    setup.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_backlog_heals_no_host_whose_metrics_are_in_it() {
    const POLICY_TTL_S: i64 = 4;
    const PADDING: usize = 2000;
    let setup = Setup::new("rules-backlog", POLICY_TTL_S as u64).await;
    let mut first = setup.start_sluice().await;
    setup.start_policies().await;
    // vm_a reports, is checkpointed, and sluice stops within its ttl.
    let vm_a_seen_s = now_s();
    setup.publish_memory("vm_a", vm_a_seen_s, None).await;
    eventually("the checkpoint after vm_a reported", WAIT, || async {
        let text = std::fs::read_to_string(setup.state_dir.path().join("rules.json")).ok()?;
        text.contains("vm_a").then_some(())
    })
    .await;
    assert!(first.stop(), "clean stop");
    assert!(posts_for(&setup.manager, "heal", "vm_a").is_empty());

    // While sluice is down: vm_h's oldest metric is long stale, then a run of other metrics,
    // then fresh metrics of both hosts (a ttl of their own, so they stay fresh whatever the
    // machine's pace). Judged before the backlog has arrived, vm_h (seen only in the backlog)
    // and vm_a (restored from the checkpoint) would both look dead.
    setup
        .publish_memory("vm_h", now_s() - 10 * POLICY_TTL_S, None)
        .await;
    for _ in 0..PADDING {
        setup.publish_metric("vm_b", "cpu.total.user", 10.0).await;
    }
    // The down time outlasts vm_a's ttl: this is time passing, nothing to wait on.
    let vm_a_stale_at =
        UNIX_EPOCH + Duration::from_millis(((vm_a_seen_s + POLICY_TTL_S) * 1000 + 500) as u64);
    if let Ok(left) = vm_a_stale_at.duration_since(SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
    for node in ["vm_a", "vm_h"] {
        setup.publish_memory(node, now_s(), Some(60)).await;
    }
    let (queued, _) = setup.broker.queue_counts(&setup.names.queue).await;
    assert_eq!(queued as usize, PADDING + 3, "the backlog is queued");

    // A sweep every 20 ms and a grace of 60 s: a hold that ended before the backlog arrived
    // would sweep many times on the way, and a hold waiting for the grace would not sweep below.
    let mut second = setup
        .start_sluice_with(&[
            ("SLUICE_RULES__SWEEP_INTERVAL", "20ms"),
            ("SLUICE_RULES__STARTUP_GRACE", "60s"),
        ])
        .await;
    // The rule stage takes its input in order: once this breach (sent after the backlog) has
    // posted, the whole backlog has been evaluated.
    setup.breach_and_wait("vm_b").await;
    eventually(
        "sweeps that judge, long before the grace",
        Duration::from_secs(30),
        || async {
            (second
                .counter_with("sluice_rule_sweeps_total", "held=\"false\"")
                .await
                >= 5.0)
                .then_some(())
        },
    )
    .await;
    for node in ["vm_a", "vm_h"] {
        assert!(
            posts_for(&setup.manager, "heal", node).is_empty(),
            "no false heal for {node}, whose metrics were in the backlog"
        );
    }
    assert!(second.stop(), "clean stop");
    setup.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_neither_refires_a_trigger_nor_forgets_a_silent_host() {
    let setup = Setup::new("rules-restart", 6).await;
    let mut first = setup.start_sluice().await;
    setup.start_policies().await;
    setup.breach_and_wait("vm_a").await;
    setup.publish_metric("vm_h", "memory.used", 1.0).await;
    eventually("the checkpoint after the host reported", WAIT, || async {
        let text = std::fs::read_to_string(setup.state_dir.path().join("rules.json")).ok()?;
        text.contains("vm_h").then_some(())
    })
    .await;
    assert!(first.stop(), "clean stop");
    assert!(
        posts_for(&setup.manager, "heal", "vm_h").is_empty(),
        "stopped well within the ttl"
    );

    let mut second = setup.start_sluice().await;
    // Still breached: no new transition, so no new trigger (and the interval would hold it).
    setup.publish_metric("vm_a", "cpu.total.user", 99.0).await;
    setup.breach_and_wait("vm_b").await;
    assert_eq!(
        posts_for(&setup.manager, "scale", "vm_a").len(),
        1,
        "the restart did not re-fire vm_a's trigger"
    );
    // vm_h never reports again: the restored series expires and heals.
    eventually("the heal POST after the restart", WAIT, || async {
        (!posts_for(&setup.manager, "heal", "vm_h").is_empty()).then_some(())
    })
    .await;
    assert!(second.stop(), "clean stop");
    setup.clean_up().await;
}

/// A kill right after a trigger, with no periodic checkpoint in between (its interval is an
/// hour): the stage wrote the checkpoint before the request, so the restart knows the breach
/// and its interval record, and a breach that goes on across the crash fires once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_right_after_a_trigger_does_not_fire_it_again() {
    let setup = Setup::new("rules-kill-after-trigger", 60).await;
    let no_periodic_checkpoint = [("SLUICE_RULES__CHECKPOINT_INTERVAL", "1h")];
    let mut first = setup.start_sluice_with(&no_periodic_checkpoint).await;
    setup.start_policies().await;
    setup.breach_and_wait("vm_a").await;
    first.kill();

    let mut second = setup.start_sluice_with(&no_periodic_checkpoint).await;
    // The breach goes on; then another node's breach, handled after it, shows it was evaluated.
    setup.publish_metric("vm_a", "cpu.total.user", 99.0).await;
    setup.breach_and_wait("vm_b").await;
    assert_eq!(
        posts_for(&setup.manager, "scale", "vm_a").len(),
        1,
        "the breach that spanned the kill fired once"
    );
    assert!(second.stop(), "clean stop");
    setup.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_groups_file_is_dead_lettered_and_no_ok_file_is_written() {
    let setup = Setup::new("rules-invalid", 60).await;
    std::fs::write(
        setup.config_dir.path().join("groups"),
        r#"{"g": {"members": ["n"], "policies": {"p": {"type": "cloudify.policies.types.nope"}}}}"#,
    )
    .expect("write groups");
    let mut sluice = setup.start_sluice().await;
    setup
        .broker
        .publish(
            &setup.names.exchange,
            CONTROL_ROUTING_KEY,
            &control("start", &setup.deployment, setup.config_dir.path()),
        )
        .await;
    let letters = setup
        .broker
        .take(&setup.names.dead_letter_queue, 1, WAIT)
        .await;
    assert_eq!(letters[0].routing_key, "rules.invalid_groups");
    assert!(
        letters[0].headers["x-sluice-error"].contains("cloudify.policies.types.nope"),
        "{:?}",
        letters[0].headers
    );
    assert!(!setup.config_dir.path().join("ok").exists());
    assert!(sluice.stop(), "clean stop");
    setup.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_rules_file_triggers_on_points_of_the_metrics_path() {
    let setup = Setup::new("rules-generic", 60).await;
    let rules_file = setup.config_dir.path().join("standalone.toml");
    std::fs::write(
        &rules_file,
        r#"
[[rule]]
name = "cpu_hot"
measurement = "^cpu\\.total\\.user$"
by = ["node_id"]
condition = { kind = "threshold", stat = "max", window = "1m", op = ">=", value = 90.0 }
[[rule.action]]
kind = "execute_workflow"
deployment_id = "{{tags.deployment_id}}"
workflow = "scale"
parameters = { node_id = "{{tags.node_id}}", peak = "{{value}}" }
"#,
    )
    .expect("write rules");
    let files = format!("[\"{}\"]", rules_file.display());
    let mut sluice = setup
        .start_sluice_with(&[("SLUICE_RULES__FILES", files.as_str())])
        .await;
    // No control message: generic rules see every point, whatever its deployment.
    setup.publish_metric("vm_a", "cpu.total.user", 50.0).await;
    setup.publish_metric("vm_a", "cpu.total.user", 93.0).await;
    setup.publish_metric("vm_a", "cpu.total.user", 99.0).await;
    setup.publish_metric("vm_a", "memory.used", 99.0).await;
    setup.breach_and_wait("vm_b").await;
    let posts = posts_for(&setup.manager, "scale", "vm_a");
    assert_eq!(posts.len(), 1, "one breach, one trigger: {posts:?}");
    assert_eq!(
        posts[0]["parameters"],
        json!({"node_id": "vm_a", "peak": 93.0})
    );
    let requests = setup.manager.requests();
    assert!(
        requests.iter().all(|request| request.method == "POST"),
        "generic rules skip the manager's node check: {requests:?}"
    );
    assert!(sluice.stop(), "clean stop");
    let checkpoint_path = setup.state_dir.path().join("rules.json");
    let checkpoint = std::fs::read_to_string(&checkpoint_path).expect("checkpoint");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&checkpoint_path)
            .expect("metadata")
            .permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "the checkpoint is readable by its owner only"
    );
    assert!(
        checkpoint.contains("cpu_hot"),
        "the generic rules' state is checkpointed"
    );
    setup.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_events_survive_a_severed_publisher_connection() {
    let setup = Setup::new("rules-sever", 60).await;
    let mut sluice = setup.start_sluice().await;
    setup.start_policies().await;
    let severed = eventually("the event publisher's connection", WAIT, || async {
        let closed = sluice.sever_broker_connection("events-publisher");
        (closed > 0).then_some(closed)
    })
    .await;
    assert_eq!(severed, 1);
    setup.breach_and_wait("vm_a").await;
    let events = setup.event_types_seen(3).await;
    let types: Vec<&str> = events
        .iter()
        .map(|event| event["event_type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        vec!["policy", "processing_trigger", "trigger_succeeded"]
    );
    assert!(sluice.stop(), "clean stop");
    setup.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rule_stages_events_land_in_elasticsearch_through_the_events_path() {
    let setup = Setup::new("rules-es", 60).await;
    let es = sluice_testing::elasticsearch::FakeElasticsearch::start().await;
    let es_url = es.url().to_string();
    // sluice's own events queue on the same exchange the rule stage publishes to, as on a 4.x
    // manager where both are `cloudify-events`.
    let sluice_events_queue = unique("rules-es.sluice-events");
    let exchanges = format!(r#"["{}"]"#, setup.events_exchange);
    let queues = format!(r#"["{sluice_events_queue}"]"#);
    let mut sluice = setup
        .start_sluice_with(&[
            ("SLUICE_EVENTS__ENABLED", "true"),
            ("SLUICE_EVENTS__MANAGER", "4.x"),
            ("SLUICE_EVENTS__EXCHANGES", exchanges.as_str()),
            ("SLUICE_EVENTS__QUEUES", queues.as_str()),
            ("SLUICE_ELASTICSEARCH__URL", es_url.as_str()),
        ])
        .await;
    setup.start_policies().await;
    setup.breach_and_wait("vm_a").await;

    let documents = eventually("the rule stage's events in Elasticsearch", WAIT, || async {
        let documents = es.documents("*");
        (documents.len() >= 3).then_some(documents)
    })
    .await;
    let mut types: Vec<&str> = documents
        .iter()
        .map(|document| document["event_type"].as_str().unwrap_or_default())
        .collect();
    types.sort_unstable();
    assert_eq!(
        types,
        vec!["policy", "processing_trigger", "trigger_succeeded"]
    );
    let started = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(10);
    for document in &documents {
        assert_eq!(document["type"], "cloudify_event");
        assert_eq!(document["context"]["policy"], "cpu_high");
        assert_eq!(document["context"]["node_id"], "vm_a");
        let timestamp: jiff::Timestamp = document["@timestamp"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .expect("@timestamp is RFC 3339");
        assert!(
            timestamp > started,
            "{timestamp} is the policy engine's time, now"
        );
        // The daily index of its own @timestamp, beside the manager's events of that day.
        let index = timestamp.strftime("logstash-%Y.%m.%d").to_string();
        let in_index = es.documents(&index);
        assert!(
            in_index.iter().any(|stored| stored == document),
            "stored in {index}"
        );
    }
    assert!(sluice.stop(), "clean stop");
    setup.broker.delete_queue(&sluice_events_queue).await;
    setup.clean_up().await;
}
