//! The Grafana dashboards of `deploy/grafana/dashboards/` against what sluice really serves and
//! writes:
//! - `sluice.json` (Prometheus): every metric its queries read is one that the real sluice's
//!   `/metrics` serves once traffic has gone through every path the dashboard shows, and every
//!   label it groups by is one those metrics carry;
//! - `cloudify-deployment.json` (InfluxDB): every InfluxQL query, with its template variables
//!   filled as Grafana fills them, returns series from what the real sluice wrote from the
//!   manager's Diamond bodies into the real InfluxDB.
//!
//! There is no Grafana here, so the JSON model itself is checked too: it parses, every panel
//! names a data source through the dashboard's data-source variable and has a target.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Broker, Sluice, TestNames, eventually, influx_url, unique};
use serde_json::{Value, json};
use sluice_testing::elasticsearch::FakeElasticsearch;
use sluice_testing::influx::TestDatabase;
use sluice_testing::manager::FakeManager;

const WAIT: Duration = Duration::from_secs(60);

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

fn dashboard(name: &str) -> Value {
    let path = repo_path(&format!("deploy/grafana/dashboards/{name}"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

/// A panel that is not a row, with the `repeat` variable of the row it sits under (Grafana
/// repeats an expanded row with the panels that follow it, up to the next row).
struct PanelInRow<'a> {
    panel: &'a Value,
    repeat: Option<String>,
}

fn panels(dashboard: &Value) -> Vec<PanelInRow<'_>> {
    let mut found = Vec::new();
    let mut repeat = None;
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            repeat = panel["repeat"].as_str().map(str::to_owned);
            // A collapsed row keeps its panels inside it.
            for inner in panel["panels"].as_array().into_iter().flatten() {
                found.push(PanelInRow {
                    panel: inner,
                    repeat: repeat.clone(),
                });
            }
            continue;
        }
        found.push(PanelInRow {
            panel,
            repeat: repeat.clone(),
        });
    }
    found
}

fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .map(|list| list.iter().collect())
        .unwrap_or_default()
}

/// The text of a variable's query: a string, or Grafana 10's `{ "query": ... }` object.
fn variable_query(variable: &Value) -> &str {
    variable["query"]
        .as_str()
        .or_else(|| variable["query"]["query"].as_str())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The JSON model

/// What Grafana needs of each dashboard: a uid, a schema version, unique panel ids and grid
/// positions, and for each panel a data source that is the dashboard's data-source variable of
/// the right plugin, and targets in that plugin's shape.
fn model_errors(dashboard: &Value, plugin: &str, datasource_variable: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let title = dashboard["title"].as_str().unwrap_or("?");
    if dashboard["uid"].as_str().is_none_or(str::is_empty) {
        errors.push(format!("{title}: no uid"));
    }
    if dashboard["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
        errors.push(format!("{title}: schemaVersion is not a recent one"));
    }
    let declared = variables(dashboard).into_iter().any(|variable| {
        variable["name"] == datasource_variable
            && variable["type"] == "datasource"
            && variable["query"] == plugin
    });
    if !declared {
        errors.push(format!(
            "{title}: no data-source variable {datasource_variable} for {plugin}"
        ));
    }
    let expected_datasource = json!({"type": plugin, "uid": format!("${{{datasource_variable}}}")});
    let mut ids = BTreeSet::new();
    for top in dashboard["panels"].as_array().into_iter().flatten() {
        if !ids.insert(top["id"].as_u64().unwrap_or(0)) {
            errors.push(format!("{title}: panel id {} twice", top["id"]));
        }
        if top["gridPos"]["w"].as_u64().is_none() || top["gridPos"]["h"].as_u64().is_none() {
            errors.push(format!("{title}: panel {} has no gridPos", top["title"]));
        }
    }
    for PanelInRow { panel, .. } in panels(dashboard) {
        let name = panel["title"].as_str().unwrap_or("?");
        if !["timeseries", "stat", "table"].contains(&panel["type"].as_str().unwrap_or("")) {
            errors.push(format!("{title} / {name}: type {}", panel["type"]));
        }
        if panel["datasource"] != expected_datasource {
            errors.push(format!(
                "{title} / {name}: datasource {} (want {expected_datasource})",
                panel["datasource"]
            ));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            errors.push(format!("{title} / {name}: no target"));
        }
        let mut ref_ids = BTreeSet::new();
        for target in &targets {
            if !ref_ids.insert(target["refId"].as_str().unwrap_or("").to_owned()) {
                errors.push(format!("{title} / {name}: a refId missing or twice"));
            }
            let shaped = match plugin {
                "prometheus" => target["expr"].as_str().is_some_and(|expr| !expr.is_empty()),
                _ => {
                    target["rawQuery"] == true
                        && target["query"]
                            .as_str()
                            .is_some_and(|query| !query.is_empty())
                }
            };
            if !shaped {
                errors.push(format!(
                    "{title} / {name}: a target not in {plugin}'s shape"
                ));
            }
        }
    }
    errors
}

#[test]
fn both_dashboards_parse_and_every_panel_has_its_data_source_and_a_target() {
    let sluice = dashboard("sluice.json");
    let deployment = dashboard("cloudify-deployment.json");
    let mut errors = model_errors(&sluice, "prometheus", "DS_PROMETHEUS");
    errors.extend(model_errors(&deployment, "influxdb", "DS_INFLUXDB"));
    assert!(errors.is_empty(), "{errors:#?}");
    assert_ne!(sluice["uid"], deployment["uid"]);
    assert!(
        panels(&sluice).len() >= 15,
        "the sluice dashboard has its panels"
    );
    assert!(panels(&deployment).len() >= 6, "the deployment one too");

    // The provisioning files name the folder, the data sources' uids and the database.
    let datasources = std::fs::read_to_string(repo_path(
        "deploy/grafana/provisioning/datasources/sluice.yaml",
    ))
    .expect("datasources provisioning");
    for needle in [
        "uid: sluice-prometheus",
        "uid: cloudify-influxdb",
        "type: prometheus",
        "type: influxdb",
        "dbName: cloudify",
        "url: http://127.0.0.1:8086",
    ] {
        assert!(datasources.contains(needle), "datasources: {needle}");
    }
    let providers = std::fs::read_to_string(repo_path(
        "deploy/grafana/provisioning/dashboards/sluice.yaml",
    ))
    .expect("dashboards provisioning");
    assert!(providers.contains("type: file") && providers.contains("path: "));
    let scrape = std::fs::read_to_string(repo_path("deploy/prometheus/prometheus.yml"))
        .expect("prometheus configuration");
    assert!(
        scrape.contains("127.0.0.1:9598"),
        "Prometheus scrapes sluice"
    );
    for (dashboard, variable, uid) in [
        (&sluice, "DS_PROMETHEUS", "sluice-prometheus"),
        (&deployment, "DS_INFLUXDB", "cloudify-influxdb"),
    ] {
        let default = variables(dashboard)
            .into_iter()
            .find(|candidate| candidate["name"] == variable)
            .map(|found| found["current"]["value"].clone());
        assert_eq!(
            default,
            Some(json!(uid)),
            "{variable} defaults to the provisioned one"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// PromQL: the metric names and grouping labels of an expression

/// The functions and aggregations a dashboard may call; an unknown one is an error, so a typo
/// in a function name is not taken for a metric.
const PROMQL_FUNCTIONS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "histogram_quantile",
    "clamp_min",
];
const AGGREGATIONS: &[&str] = &["sum", "max", "min", "avg", "count", "topk", "bottomk"];
const GROUPING_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const OPERATOR_KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset"];

#[derive(Debug, Default, PartialEq)]
struct PromNames {
    metrics: BTreeSet<String>,
    grouping_labels: BTreeSet<String>,
    /// The labels that selectors match on (`{quantile="0.99"}`).
    matcher_labels: BTreeSet<String>,
}

/// Reads the identifiers of a PromQL expression: metric names are identifiers outside label
/// matchers (`{...}`), ranges (`[...]`) and strings that are neither followed by `(` (functions)
/// nor keywords; the label lists after `by (...)` and the like are grouping labels, and the
/// names inside `{...}` are matcher labels.
fn prom_names(expr: &str) -> Result<PromNames, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = PromNames::default();
    let mut index = 0;
    let skip_to = |from: usize, close: char| -> Result<usize, String> {
        let mut at = from + 1;
        while at < chars.len() {
            if chars[at] == '"' {
                at = skip_string(&chars, at)?;
                continue;
            }
            if chars[at] == close {
                return Ok(at + 1);
            }
            at += 1;
        }
        Err(format!("{expr}: unclosed {}", chars[from]))
    };
    while index < chars.len() {
        let current = chars[index];
        if current == '{' {
            let end = skip_to(index, '}')?;
            let mut at = index + 1;
            while at < end - 1 {
                if chars[at].is_whitespace() || chars[at] == ',' {
                    at += 1;
                    continue;
                }
                let start = at;
                while at < end - 1 && is_identifier_char(chars[at]) {
                    at += 1;
                }
                if start == at {
                    return Err(format!("{expr}: a label matcher without a label name"));
                }
                names
                    .matcher_labels
                    .insert(chars[start..at].iter().collect());
                // The operator, then the quoted value.
                while at < end - 1 && chars[at] != '"' {
                    at += 1;
                }
                if at < end - 1 {
                    at = skip_string(&chars, at)?;
                }
            }
            index = end;
        } else if current == '[' {
            index = skip_to(index, ']')?;
        } else if current == '"' || current == '\'' {
            index = skip_string(&chars, index)?;
        } else if current == '$' {
            index += 1;
            while index < chars.len() && is_identifier_char(chars[index]) {
                index += 1;
            }
        } else if current.is_ascii_digit() {
            while index < chars.len()
                && (chars[index].is_ascii_alphanumeric() || chars[index] == '.')
            {
                index += 1;
            }
        } else if current.is_ascii_alphabetic() || current == '_' || current == ':' {
            let start = index;
            while index < chars.len() && is_identifier_char(chars[index]) {
                index += 1;
            }
            let identifier: String = chars[start..index].iter().collect();
            let mut next = index;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            if GROUPING_KEYWORDS.contains(&identifier.as_str()) {
                if !called {
                    return Err(format!("{expr}: `{identifier}` without a label list"));
                }
                let close = skip_to(next, ')')?;
                let list: String = chars[next + 1..close - 1].iter().collect();
                names.grouping_labels.extend(
                    list.split(',')
                        .map(str::trim)
                        .filter(|label| !label.is_empty())
                        .map(str::to_owned),
                );
                index = close;
            } else if OPERATOR_KEYWORDS.contains(&identifier.as_str())
                || AGGREGATIONS.contains(&identifier.as_str())
            {
                // `sum by (label) (...)`: an aggregation is a keyword, called or not.
            } else if called {
                if !PROMQL_FUNCTIONS.contains(&identifier.as_str()) {
                    return Err(format!("{expr}: unknown function `{identifier}`"));
                }
            } else {
                names.metrics.insert(identifier);
            }
        } else {
            index += 1;
        }
    }
    Ok(names)
}

fn is_identifier_char(character: char) -> bool {
    character.is_ascii_alphanumeric() || character == '_' || character == ':'
}

/// The index just past the string literal that starts at `start`.
fn skip_string(chars: &[char], start: usize) -> Result<usize, String> {
    let quote = chars[start];
    let mut at = start + 1;
    while at < chars.len() {
        if chars[at] == '\\' {
            at += 2;
            continue;
        }
        if chars[at] == quote {
            return Ok(at + 1);
        }
        at += 1;
    }
    Err("an unclosed string".to_owned())
}

#[test]
fn the_promql_reader_finds_metrics_and_grouping_labels_and_nothing_else() {
    let names = prom_names(
        r#"sum by (sink, reason) (rate(sluice_written_total{instance=~"$instance", x="a}b"}[$__rate_interval])) / on (sink) sum(sluice_b_count) > bool 0.5e3"#,
    )
    .expect("reads");
    assert_eq!(
        names.metrics,
        BTreeSet::from([
            "sluice_written_total".to_owned(),
            "sluice_b_count".to_owned()
        ])
    );
    assert_eq!(
        names.grouping_labels,
        BTreeSet::from(["sink".to_owned(), "reason".to_owned()])
    );
    assert_eq!(
        names.matcher_labels,
        BTreeSet::from(["instance".to_owned(), "x".to_owned()])
    );
    assert!(
        prom_names("sum(rat(sluice_a_total[5m]))").is_err(),
        "a misspelt function"
    );
    assert!(
        prom_names("sum(sluice_a_total{a=\"b\"").is_err(),
        "an unclosed matcher"
    );
}

/// Every expression of a Prometheus dashboard, with where it is: the panels' targets and the
/// query variables (`label_values(metric, label)`).
fn prom_expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut expressions = Vec::new();
    for PanelInRow { panel, .. } in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            expressions.push((
                format!("{} / {}", panel["title"], target["refId"]),
                target["expr"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    for variable in variables(dashboard) {
        if variable["type"] != "query" {
            continue;
        }
        // `label_values(metric, label)` reads `label` of `metric`: the same as grouping by it.
        let query = variable_query(variable);
        let expr = match query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|arguments| arguments.rsplit_once(','))
        {
            Some((metric, label)) => format!("max by ({}) ({metric})", label.trim()),
            None => query.to_owned(),
        };
        expressions.push((format!("variable {}", variable["name"]), expr));
    }
    expressions
}

/// The samples a `/metrics` text serves: each sample name with the label names it carries.
fn served_samples(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut served: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = served.entry(line[..name_end].to_owned()).or_default();
        let Some(matchers) = line[name_end..].strip_prefix('{') else {
            continue;
        };
        let chars: Vec<char> = matchers.chars().collect();
        let mut at = 0;
        while at < chars.len() && chars[at] != '}' {
            let start = at;
            while at < chars.len() && chars[at] != '=' {
                at += 1;
            }
            labels.insert(
                chars[start..at]
                    .iter()
                    .collect::<String>()
                    .trim()
                    .to_owned(),
            );
            match skip_string(&chars, at + 1) {
                Ok(after) => at = after,
                Err(_) => break,
            }
            if chars.get(at) == Some(&',') {
                at += 1;
            }
        }
    }
    served
}

/// Labels Prometheus itself adds to every scraped series.
const TARGET_LABELS: &[&str] = &["instance", "job"];

/// What a dashboard reads that the scrape does not serve: each as "where: what".
fn unserved(dashboard: &Value, served: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (place, expr) in prom_expressions(dashboard) {
        let names = match prom_names(&expr) {
            Ok(names) => names,
            Err(error) => {
                problems.push(format!("{place}: {error}"));
                continue;
            }
        };
        if names.metrics.is_empty() {
            problems.push(format!("{place}: reads no metric: {expr}"));
        }
        let mut labels_served = BTreeSet::new();
        for metric in &names.metrics {
            match served.get(metric) {
                Some(labels) => labels_served.extend(labels.iter().cloned()),
                None => problems.push(format!("{place}: {metric} is not served")),
            }
        }
        for label in names.grouping_labels.union(&names.matcher_labels) {
            if !labels_served.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                problems.push(format!("{place}: no metric of it has the label {label}"));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// sluice.json against the real sluice's /metrics

fn groups_json() -> String {
    json!({"web_tier": {"members": ["nodejs_host"], "policies": {"cpu_high": {
        "type": "cloudify.policies.types.threshold",
        "properties": {"service": "cpu.total.user", "threshold": 90, "upper_bound": true,
                       "stability_time": 0, "policy_operates_on_group": false,
                       "is_node_started_before_workflow": true,
                       "interval_between_workflows": 300},
        "triggers": {"scale": {"type": "cloudify.policies.triggers.execute_workflow",
            "parameters": {"workflow": "scale",
                           "workflow_parameters": {"node_id": {"get_property": ["SELF", "node_id"]}}}}}
    }}}})
    .to_string()
}

fn event_body(number: u32) -> Vec<u8> {
    json!({
        "type": "cloudify_event", "event_type": "task_started", "message_code": null,
        "timestamp": format!("2016-06-15 10:13:{number:02}.000+0000"),
        "message": {"text": format!("event {number}"), "arguments": null},
        "context": {"deployment_id": "d", "execution_id": "e", "workflow_id": "install"},
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_sluice_dashboard_reads_is_served_by_a_running_sluice() {
    let sluice_dashboard = dashboard("sluice.json");
    let names = TestNames::new("dash-sluice");
    let broker = Broker::connect().await;
    let manager = FakeManager::start().await.expect("the manager double");
    manager.set_node_state("vm_a", "started");
    let es = FakeElasticsearch::start().await;
    let influx = TestDatabase::on(&influx_url(), &names.database).await;
    influx
        .try_query(&format!("CREATE DATABASE \"{}\"", names.database))
        .await
        .expect("create");
    // `disk.free` already holds a string `value`: sluice's float one conflicts, and the batch
    // it came in is bisected.
    influx
        .write_lines(&format!("disk.free value=\"full\" {}\n", now_s() - 60))
        .await;
    let config_dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(config_dir.path().join("groups"), groups_json()).expect("groups");
    let (events_exchange, logs_exchange) = (unique("dash-events"), unique("dash-logs"));
    let (events_queue, logs_queue) = (unique("dash.events"), unique("dash.logs"));
    let rule_events_exchange = unique("dash-rule-events");
    let rule_events_queue = unique("dash.rule-events");
    broker.declare_fanout_exchange(&rule_events_exchange).await;
    broker
        .bind_queue(&rule_events_queue, &rule_events_exchange, "")
        .await;
    let exchanges = format!(r#"["{events_exchange}","{logs_exchange}"]"#);
    let queues = format!(r#"["{events_queue}","{logs_queue}"]"#);
    let es_url = es.url().to_string();
    let manager_url = manager.url().to_string();
    let mut sluice = Sluice::start(
        &names,
        &influx_url(),
        &[
            // No dead-letter queue at first: the first dead letter is unroutable, fails and
            // its delivery is requeued until the test binds a queue, as an operator would.
            ("SLUICE_DEAD_LETTER__QUEUE", ""),
            ("SLUICE_INFLUX__BATCH_LINGER", "300ms"),
            ("SLUICE_EVENTS__ENABLED", "true"),
            ("SLUICE_EVENTS__MANAGER", "4.x"),
            ("SLUICE_EVENTS__EXCHANGES", &exchanges),
            ("SLUICE_EVENTS__QUEUES", &queues),
            ("SLUICE_ELASTICSEARCH__URL", &es_url),
            ("SLUICE_ELASTICSEARCH__RETRY_INITIAL_DELAY", "50ms"),
            ("SLUICE_MANAGER__URL", &manager_url),
            ("SLUICE_MANAGER__RETRY_INITIAL_DELAY", "50ms"),
            ("SLUICE_RULES__CHECKPOINT_INTERVAL", "200ms"),
            ("SLUICE_RULES__STARTUP_GRACE", "1s"),
            ("SLUICE_RULES__EVENTS_EXCHANGE", &rule_events_exchange),
            ("SLUICE_RULES__EVENTS_ROUTING_KEY", ""),
        ],
    )
    .await;
    let deployment = unique("dep");

    // The rule stage: the manager's start message, then a breach that triggers a workflow,
    // whose first REST call fails once and is retried.
    let control = json!({"service": "cloudify.configuration", "state": "start",
        "config_path": config_dir.path(), "deployment_id": deployment, "time": now_s()});
    broker
        .publish(
            &names.exchange,
            "manager-riemann",
            control.to_string().as_bytes(),
        )
        .await;
    let ok_file = config_dir.path().join("ok");
    eventually("the ok file", WAIT, || async {
        ok_file.exists().then_some(())
    })
    .await;
    manager.fail_next(1, 503);
    for (path, value) in [("cpu.total.user", 50.0), ("cpu.total.user", 97.0)] {
        let body = common::diamond(&deployment, "vm_a", path, value, now_s());
        broker.publish(&names.exchange, &deployment, &body).await;
    }

    // A bad body, dead-lettered once a queue is bound to the dead-letter exchange.
    broker
        .publish(&names.exchange, &deployment, b"{not json")
        .await;
    eventually("an unroutable dead letter", WAIT, || async {
        (sluice.counter("sluice_dead_letter_failures_total").await > 0.0).then_some(())
    })
    .await;
    broker
        .bind_queue(&names.dead_letter_queue, &names.dead_letter_exchange, "#")
        .await;
    eventually("a confirmed dead letter", WAIT, || async {
        (sluice.counter("sluice_dead_lettered_total").await > 0.0).then_some(())
    })
    .await;

    // A field type conflict among good points: InfluxDB refuses part of a batch.
    for index in 0..6i32 {
        let path = if index == 3 {
            "disk.free"
        } else {
            "memory.MemFree"
        };
        let body = common::diamond(
            &deployment,
            "vm_a",
            path,
            f64::from(index),
            now_s() - i64::from(index),
        );
        broker.publish(&names.exchange, &deployment, &body).await;
    }

    // The events path, with one item Elasticsearch throttles once.
    let throttled = event_body(2);
    es.fail_items_with_429(
        [sluice_normalise::document_id(
            &events_exchange,
            "",
            &throttled,
        )],
        1,
    );
    for body in [event_body(1), throttled] {
        broker.publish(&events_exchange, "", &body).await;
    }
    let log = br#"{"type":"cloudify_log","logger":"ctx","level":"info","message":{"text":"hello"},"context":{"deployment_id":"d","execution_id":"e","workflow_id":"install"},"timestamp":"2016-06-15 10:13:20.123+0000","message_code":null}"#;
    broker.publish(&logs_exchange, "", log).await;

    // A broker connection cut: the metrics source reconnects.
    eventually("the metrics connection severed", WAIT, || async {
        (sluice.sever_broker_connection("metrics") > 0).then_some(())
    })
    .await;

    let all_served = tokio::time::timeout(
        WAIT,
        eventually("every dashboard metric served", Duration::MAX, || async {
            let text = sluice.metrics_text().await?;
            unserved(&sluice_dashboard, &served_samples(&text))
                .is_empty()
                .then_some(())
        }),
    )
    .await;
    let text = sluice.metrics_text().await.unwrap_or_default();
    let served = served_samples(&text);
    if all_served.is_err() {
        panic!(
            "the sluice dashboard reads what /metrics does not serve:\n{:#?}\n/metrics:\n{text}",
            unserved(&sluice_dashboard, &served)
        );
    }

    // The check can fail: a misspelt metric or grouping label in the dashboard is found.
    let misspelt: Value = serde_json::from_str(
        &serde_json::to_string(&sluice_dashboard)
            .expect("text")
            .replace("sluice_acked_total", "sluice_ackd_total")
            .replace("by (sink)", "by (sinks)")
            .replace(r#"quantile=\"0.99\""#, r#"le=\"0.99\""#),
    )
    .expect("json");
    let problems = unserved(&misspelt, &served);
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("sluice_ackd_total is not served"))
            && problems
                .iter()
                .any(|problem| problem.contains("label sinks"))
            && problems.iter().any(|problem| problem.contains("label le")),
        "{problems:#?}"
    );

    assert!(sluice.stop(), "clean stop");
    broker.remove(&names).await;
    for queue in [&events_queue, &logs_queue, &rule_events_queue] {
        broker.delete_queue(queue).await;
    }
    for exchange in [&events_exchange, &logs_exchange, &rule_events_exchange] {
        broker.delete_exchange(exchange).await;
    }
    let _ = influx
        .try_query(&format!("DROP DATABASE \"{}\"", names.database))
        .await;
}

// ---------------------------------------------------------------------------------------------
// cloudify-deployment.json against what the real sluice writes

/// The Diamond collectors' metrics the dashboard shows, as the agents name them (collector,
/// path under it).
const COLLECTOR_METRICS: &[(&str, &str)] = &[
    ("cpu", "total.user"),
    ("cpu", "total.system"),
    ("cpu", "total.iowait"),
    ("cpu", "total.idle"),
    ("memory", "MemTotal"),
    ("memory", "MemFree"),
    ("memory", "Buffers"),
    ("memory", "Cached"),
    ("memory", "SwapFree"),
    ("loadavg", "01"),
    ("loadavg", "05"),
    ("loadavg", "15"),
    ("iostat", "vda.read_byte_per_second"),
    ("iostat", "vda.write_byte_per_second"),
    ("iostat", "vda.util_percentage"),
    ("network", "eth0.rx_byte"),
    ("network", "eth0.tx_byte"),
];

/// Two deployments (one with dots in its id, as the fixtures have) of two node instances each.
const DEPLOYMENTS: &[&str] = &["nodecellar", "prod.eu-west.nodecellar"];
const NODE_INSTANCES: &[(&str, &str)] = &[
    ("nodejs_host", "nodejs_host_x7k2p"),
    ("mongod_host", "mongod_host_q9w8e"),
];

/// The golden Diamond bodies of `schemas/fixtures/diamond/` (not the control messages).
fn fixture_bodies() -> Vec<Value> {
    let folder = repo_path("schemas/fixtures/diamond");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&folder)
        .expect("fixtures")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            name.ends_with(".json")
                && !name.ends_with(".point.json")
                && !name.ends_with(".control.json")
                && !name.starts_with("control_")
        })
        .collect();
    paths.sort();
    let bodies: Vec<Value> = paths
        .iter()
        .map(|path| serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json"))
        .collect();
    assert!(bodies.len() >= 5, "the Diamond fixtures are there");
    bodies
}

/// The fixtures' example body with another deployment, node instance and collector metric.
fn collector_body(
    template: &Value,
    deployment: &str,
    node: (&str, &str),
    metric: (&str, &str),
    value: f64,
    time: i64,
) -> Value {
    let (node_name, node_id) = node;
    let (collector, path) = metric;
    let mut body = template.clone();
    body["deployment_id"] = json!(deployment);
    body["node_name"] = json!(node_name);
    body["node_id"] = json!(node_id);
    body["host"] = json!(node_id);
    body["name"] = json!(collector);
    body["path"] = json!(path.replace('.', "_"));
    body["service"] = json!(format!(
        "{deployment}.{node_name}.{node_id}.{collector}.{path}"
    ));
    body["metric"] = json!(value);
    body["time"] = json!(time);
    body
}

/// A value as Grafana's InfluxDB data source puts it into a regex: special characters escaped.
fn regex_escaped(value: &str) -> String {
    let mut escaped = String::new();
    for character in value.chars() {
        if "\\^$*+?.()|[]{}/".contains(character) {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// A multi-value selection as Grafana formats it for a regex: one value bare, several as
/// `(a|b)`.
fn regex_selection(values: &[String]) -> String {
    let escaped: Vec<String> = values.iter().map(|value| regex_escaped(value)).collect();
    match escaped.as_slice() {
        [one] => one.clone(),
        _ => format!("({})", escaped.join("|")),
    }
}

/// Replaces each `$name` of `query` by its value; an unknown variable is an error.
fn interpolate(query: &str, values: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = query;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let length = after
            .find(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
            .unwrap_or(after.len());
        let name = &after[..length];
        if name.is_empty() {
            // The `$` that closes a regex `/^...$/`.
            out.push('$');
        } else {
            let value = values
                .get(name)
                .ok_or_else(|| format!("{query}: unknown variable ${name}"))?;
            out.push_str(value);
        }
        rest = &after[length..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The values a `SHOW TAG VALUES` answers.
async fn tag_values(influx: &TestDatabase, statement: &str) -> Vec<String> {
    let rows = influx
        .rows(statement)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let mut values: Vec<String> = rows
        .iter()
        .filter_map(|row| row.get("value").and_then(Value::as_str).map(str::to_owned))
        .collect();
    values.sort();
    values.dedup();
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_of_the_deployment_dashboard_reads_series_that_sluice_writes() {
    let deployment_dashboard = dashboard("cloudify-deployment.json");
    let names = TestNames::new("dash-deployment");
    let broker = Broker::connect().await;
    let sluice = Sluice::start(&names, &influx_url(), &[("SLUICE_RULES__ENABLED", "false")]).await;
    let influx = TestDatabase::on(&influx_url(), &names.database).await;

    // The fixtures' manager bodies as they are (a few seconds ago), and the example body turned
    // into every collector metric the dashboard shows, for every node instance.
    let fixtures = fixture_bodies();
    let template = fixtures
        .iter()
        .find(|body| body["service"] == "nodecellar.nodejs_host.nodejs_host_x7k2p.cpu.total.user")
        .expect("the example body")
        .clone();
    let now = now_s();
    let mut bodies: Vec<Value> = fixtures
        .into_iter()
        .map(|mut body| {
            body["time"] = json!(now - 30);
            body
        })
        .collect();
    for deployment in DEPLOYMENTS {
        for node in NODE_INSTANCES {
            for (index, metric) in COLLECTOR_METRICS.iter().enumerate() {
                bodies.push(collector_body(
                    &template,
                    deployment,
                    *node,
                    *metric,
                    index as f64 + 0.5,
                    now - 5,
                ));
            }
        }
    }
    for body in &bodies {
        let routing_key = body["deployment_id"].as_str().expect("deployment id");
        broker
            .publish(&names.exchange, routing_key, body.to_string().as_bytes())
            .await;
    }
    let published = bodies.len() as f64;
    eventually("every body written and acked", WAIT, || async {
        (sluice.counter("sluice_written_total").await == published
            && sluice.counter("sluice_acked_total").await == published)
            .then_some(())
    })
    .await;

    let variable = |name: &str| {
        variables(&deployment_dashboard)
            .into_iter()
            .find(|variable| variable["name"] == name)
            .unwrap_or_else(|| panic!("variable {name}"))
            .clone()
    };
    let (deployment_variable, node_variable, instance_variable) = (
        variable("deployment"),
        variable("node"),
        variable("node_instance"),
    );
    let mut queries_run = 0;
    for deployment in DEPLOYMENTS {
        let mut values: BTreeMap<&str, String> = BTreeMap::from([
            ("timeFilter", "time > now() - 1h".to_owned()),
            ("__interval", "10s".to_owned()),
        ]);
        // The variables, each from the one before, as Grafana resolves them.
        let deployments = tag_values(&influx, variable_query(&deployment_variable)).await;
        assert!(
            deployments.contains(&(*deployment).to_owned()),
            "{deployments:?}"
        );
        values.insert("deployment", regex_escaped(deployment));
        let node_query = interpolate(variable_query(&node_variable), &values).expect("node");
        let nodes = tag_values(&influx, &node_query).await;
        let expected_nodes: Vec<String> = {
            let mut expected: Vec<String> = NODE_INSTANCES
                .iter()
                .map(|(node, _)| (*node).to_owned())
                .collect();
            expected.sort();
            expected
        };
        assert_eq!(nodes, expected_nodes, "{node_query}");
        // "All" is the variable's allValue; a selection of every value is the same series.
        let all_nodes = node_variable["allValue"]
            .as_str()
            .expect("allValue")
            .to_owned();
        values.insert("node", all_nodes);
        let instance_query =
            interpolate(variable_query(&instance_variable), &values).expect("instance");
        let instances = tag_values(&influx, &instance_query).await;
        assert_eq!(
            instances.len(),
            NODE_INSTANCES.len(),
            "{instance_query}: {instances:?}"
        );

        for PanelInRow { panel, repeat } in panels(&deployment_dashboard) {
            // A repeated row is drawn once per node instance, each with that one value; other
            // panels see the whole selection.
            let selections: Vec<String> = if repeat.as_deref() == Some("node_instance") {
                instances
                    .iter()
                    .map(|instance| regex_escaped(instance))
                    .collect()
            } else {
                vec![regex_selection(&instances)]
            };
            for selection in selections {
                values.insert("node_instance", selection.clone());
                for target in panel["targets"].as_array().into_iter().flatten() {
                    let query = interpolate(target["query"].as_str().unwrap_or_default(), &values)
                        .unwrap_or_else(|error| panic!("{error}"));
                    let answer = influx
                        .try_query(&query)
                        .await
                        .unwrap_or_else(|error| panic!("{}: {error}", panel["title"]));
                    let series = answer["results"][0]["series"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    assert!(
                        !series.is_empty(),
                        "{} / {} reads nothing sluice wrote for {deployment}, {selection}: {query}",
                        panel["title"],
                        target["refId"]
                    );
                    queries_run += 1;
                }
            }
        }
    }
    assert!(queries_run >= 20, "{queries_run} queries run");

    // The check can fail: a measurement sluice does not write reads nothing.
    let values = BTreeMap::from([
        ("timeFilter", "time > now() - 1h".to_owned()),
        ("__interval", "10s".to_owned()),
        ("deployment", "nodecellar".to_owned()),
        ("node", ".*".to_owned()),
        ("node_instance", ".*".to_owned()),
    ]);
    let first_query = panels(&deployment_dashboard)[1].panel["targets"][0]["query"]
        .as_str()
        .expect("a query")
        .replace("cpu.total.user", "cpu_total_user");
    let answer = influx
        .query(&interpolate(&first_query, &values).expect("interpolates"))
        .await;
    assert!(answer["results"][0]["series"].is_null(), "{answer}");

    broker.remove(&names).await;
    drop(sluice);
    let _ = influx
        .try_query(&format!("DROP DATABASE \"{}\"", names.database))
        .await;
}
