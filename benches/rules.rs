//! Rule evaluation throughput, as the benchmark-harness issue asks: 10,000 keys and 20 rules,
//! events per second per core, for both engines of `sluice-rules`:
//!
//! - `manager/*`: the manager-policy [`Engine`], one deployment whose groups file has 20
//!   policies (8 threshold, 6 ewma_stabilized, 6 host_failure);
//! - `generic/*`: the standalone tier's [`GenericEngine`], 20 TOML rules keyed by `node_id`.
//!
//! Both are fed the same traffic: 10,000 node instances, each reporting 10 Diamond collector
//! paths every 10 s of event time. Each engine is pre-warmed with several rounds, so every rule
//! already holds its 10,000 keys (and its windows are full) before anything is measured; each
//! measured batch then carries on the stream with advancing times and fresh values. Values stay
//! below the thresholds except one reading in 1,000 and five hot nodes, so a few rules fire per
//! batch and no action storm dominates (the setup prints how many).
//!
//! `cargo bench -p sluice-benches --bench rules`; throughput is reported in events per second
//! on one core (criterion runs single-threaded).

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sluice_core::point::{FieldValue, Point};
use sluice_rules::{
    Engine, EngineLimits, GenericEngine, GenericLimits, Groups, MetricEvent, PolicyKind, RuleSet,
};

/// Keys: node instances, each reporting every path once per interval.
const NODES: usize = 10_000;
/// Events per measured batch of the steady state.
const BATCH: usize = 10_000;
/// New nodes per measured batch of the key-churn benchmarks (10 events each).
const CHURN_NODES: usize = 100;
const INTERVAL_MS: i64 = 10_000;
const START_MS: i64 = 1_466_000_000_000;
/// The caller's clock runs this far behind event time (the pipeline's latency).
const CLOCK_LAG_MS: i64 = 250;
/// Rounds fed before measuring: long enough for every `stability_time` and `for` to elapse.
const WARM_ROUNDS: usize = 6;
const DEPLOYMENT: &str = "nodecellar";
const NODE_NAME: &str = "nodejs_host";

/// The Diamond collector paths every node reports each interval.
const PATHS: [&str; 10] = [
    "cpu.total.user",
    "cpu.total.system",
    "cpu.total.iowait",
    "memory.used",
    "memory.MemFree",
    "loadavg.01",
    "loadavg.05",
    "diskspace.root.byte_percentfree",
    "network.eth0.rx_byte",
    "network.eth0.tx_byte",
];

fn node_id(node: usize) -> String {
    format!("{NODE_NAME}_{node:05x}")
}

fn event_time_ms(node: usize, round: i64) -> i64 {
    // Nodes are spread over the interval, one ms apart, so the stream's event times only grow.
    START_MS + round * INTERVAL_MS + node as i64
}

/// splitmix64 of (node, path, round): deterministic noise.
fn noise(node: usize, path: usize, round: i64) -> u64 {
    let mut mixed = ((node as u64) << 32 ^ (path as u64) << 24 ^ round as u64)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    mixed ^ (mixed >> 31)
}

/// The reading of `PATHS[path]` on `node` in `round` (%, MiB, load, bytes): ordinary values,
/// except one reading in 1,000 that spikes past the thresholds and five hot nodes that stay past
/// the CPU and load thresholds.
fn metric_value(node: usize, path: usize, round: i64) -> f64 {
    let noise = noise(node, path, round);
    let unit = (noise % 10_000) as f64 / 10_000.0;
    let spike = (noise >> 40).is_multiple_of(1_000);
    let hot = node % 2_000 == 7;
    let pick = |spiked: f64, ordinary: f64| if spike { spiked } else { ordinary };
    match PATHS[path] {
        "cpu.total.user" if hot => 97.0,
        "cpu.total.user" => pick(97.0, 5.0 + 55.0 * unit),
        "cpu.total.system" => pick(90.0, 1.0 + 19.0 * unit),
        "cpu.total.iowait" => pick(60.0, 10.0 * unit),
        "memory.used" => pick(9_000.0, 1_000.0 + 5_000.0 * unit),
        "memory.MemFree" => pick(50.0, 500.0 + 3_500.0 * unit),
        "loadavg.01" if hot => 10.0,
        "loadavg.01" => pick(12.0, 3.0 * unit),
        "loadavg.05" => pick(8.0, 3.0 * unit),
        "diskspace.root.byte_percentfree" => pick(3.0, 20.0 + 60.0 * unit),
        // network.eth0.{rx,tx}_byte: counters growing at 0.1 to 5 MB/s.
        _ => {
            let bytes_per_s = 100_000.0 + (node % 50) as f64 * 100_000.0;
            1e9 + (round as f64 + unit * 0.1) * bytes_per_s * (INTERVAL_MS / 1000) as f64
        }
    }
}

/// One interval of traffic (every node reports every path once, node-major), replayed round
/// after round with advancing event times and fresh values.
struct Stream<T> {
    items: Vec<T>,
    next: usize,
    round: i64,
    now_ms: i64,
    stamp: fn(&mut T, i64, f64),
}

impl<T> Stream<T> {
    fn new(item: impl Fn(usize, usize) -> T, stamp: fn(&mut T, i64, f64)) -> Self {
        let items = (0..NODES)
            .flat_map(|node| (0..PATHS.len()).map(move |path| (node, path)))
            .map(|(node, path)| item(node, path))
            .collect();
        Stream {
            items,
            next: 0,
            round: 0,
            now_ms: START_MS,
            stamp,
        }
    }

    fn round_len(&self) -> usize {
        self.items.len()
    }

    /// Hands the next `count` items to `sink`, with the caller's clock.
    fn feed(&mut self, count: usize, mut sink: impl FnMut(&T, i64)) {
        for _ in 0..count {
            let (node, path) = (self.next / PATHS.len(), self.next % PATHS.len());
            let time_ms = event_time_ms(node, self.round);
            let item = &mut self.items[self.next];
            (self.stamp)(item, time_ms, metric_value(node, path, self.round));
            self.now_ms = time_ms + CLOCK_LAG_MS;
            sink(item, self.now_ms);
            self.next += 1;
            if self.next == self.items.len() {
                self.next = 0;
                self.round += 1;
            }
        }
    }
}

fn metric_event(node: usize, path: usize) -> MetricEvent {
    let node_id = node_id(node);
    MetricEvent {
        deployment_id: DEPLOYMENT.to_owned(),
        node_name: NODE_NAME.to_owned(),
        service: format!("{DEPLOYMENT}.{NODE_NAME}.{node_id}.{}", PATHS[path]),
        host: Some(node_id.clone()),
        node_id,
        metric: 0.0,
        time_ms: START_MS,
        ttl: None,
    }
}

fn stamp_event(event: &mut MetricEvent, time_ms: i64, value: f64) {
    event.time_ms = time_ms;
    event.metric = value;
}

/// A point as the default `measurement*` template makes it from a Diamond metric.
fn diamond_point(node: usize, path: usize) -> Point {
    let node_id = node_id(node);
    let tags = [
        ("deployment_id", DEPLOYMENT),
        ("host", &node_id),
        ("metric_type", "GAUGE"),
        ("node_id", &node_id),
        ("node_name", NODE_NAME),
    ];
    Point {
        measurement: PATHS[path].to_owned(),
        tags: tags
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect(),
        fields: [("value".to_owned(), FieldValue::Float(0.0))].into(),
        timestamp: START_MS * 1_000_000,
    }
}

fn stamp_point(point: &mut Point, time_ms: i64, value: f64) {
    point.timestamp = time_ms * 1_000_000;
    if let Some(field) = point.fields.get_mut("value") {
        *field = FieldValue::Float(value);
    }
}

/// The groups file: an `autoscale` group with 8 threshold and 6 ewma_stabilized policies and an
/// `autoheal` group with 6 host_failure policies, both over the one node type. The service
/// regexes are written as blueprints write them (some escaped and anchored, some not); three
/// match no path this traffic has. No host_failure policy matches two paths of a node, so each
/// policy holds at most 10,000 keys and the steady state never evicts.
fn manager_groups() -> Groups {
    let execute = |workflow: &str| {
        json!({"execute": {
            "type": "cloudify.policies.triggers.execute_workflow",
            "parameters": {
                "workflow": workflow,
                "workflow_parameters": {
                    "node_instance_id": {"get_property": ["SELF", "node_id"]},
                    "metric": {"get_property": ["SELF", "metric"]},
                },
            },
        }})
    };
    let threshold = |service: &str, threshold: f64, upper_bound: bool, stability_time: u64| {
        json!({
            "type": "cloudify.policies.types.threshold",
            "properties": {
                "service": service, "threshold": threshold, "upper_bound": upper_bound,
                "stability_time": stability_time,
            },
            "triggers": execute("scale"),
        })
    };
    let ewma = |service: &str, threshold: f64, upper_bound: bool, stability_time: u64, r: f64| {
        json!({
            "type": "cloudify.policies.types.ewma_stabilized",
            "properties": {
                "service": service, "threshold": threshold, "upper_bound": upper_bound,
                "stability_time": stability_time, "ewma_timeless_r": r,
            },
            "triggers": execute("scale"),
        })
    };
    let host_failure = |services: &[&str]| {
        json!({
            "type": "cloudify.policies.types.host_failure",
            "properties": {"service": services},
            "triggers": execute("heal"),
        })
    };
    let groups = json!({
        "autoscale": {
            "members": [NODE_NAME],
            "policies": {
                "cpu_user_high": threshold("cpu.total.user$", 90.0, true, 30),
                "cpu_system_high": threshold(r"cpu\.total\.system$", 80.0, true, 20),
                "iowait_high": threshold(r"cpu\.total\.iowait$", 40.0, true, 30),
                "memory_used_high": threshold(r"memory\.used$", 7_500.0, true, 10),
                "memfree_low": threshold(r"memory\.MemFree$", 100.0, false, 30),
                "load_high": threshold(r"loadavg\.01$", 8.0, true, 60),
                "disk_full": threshold("diskspace.root.byte_percentfree", 5.0, false, 0),
                "swap_high": threshold(r"memory\.SwapUsed$", 1_000.0, true, 30),
                "cpu_user_trend": ewma("cpu.total.user", 80.0, true, 30, 0.3),
                "iowait_trend": ewma(r"cpu\.total\.iowait$", 30.0, true, 20, 0.5),
                "memory_used_trend": ewma(r"memory\.used$", 7_000.0, true, 60, 0.2),
                "memfree_trend": ewma(r"memory\.MemFree$", 200.0, false, 30, 0.3),
                "load5_trend": ewma(r"loadavg\.05$", 6.0, true, 0, 0.5),
                "nginx_connections": ewma(r"nginx\.active_connections$", 1_000.0, true, 0, 0.5),
            },
        },
        "autoheal": {
            "members": [NODE_NAME],
            "policies": {
                "cpu_heartbeat": host_failure(&["cpu.total.user"]),
                "load_heartbeat": host_failure(&[r"loadavg\.01$"]),
                "memory_heartbeat": host_failure(&[r"memory\.used$"]),
                "disk_heartbeat": host_failure(&[r"diskspace\.root\.byte_percentfree$"]),
                "network_heartbeat": host_failure(&[r"network\.eth0\.rx_byte$", r"network\.eth1\.rx_byte$"]),
                "mongo_heartbeat": host_failure(&[r"mongodb\.connections$"]),
            },
        },
    });
    Groups::parse(&groups.to_string()).expect("the benchmark's groups file is valid")
}

/// Keys the manager engine holds once every node reported every path: per policy, the node
/// count (threshold, EWMA) or one series per node and matching path (host_failure).
fn manager_keys(groups: &Groups) -> usize {
    let services: Vec<String> = (0..PATHS.len())
        .map(|path| metric_event(0, path).service)
        .collect();
    let mut keys = 0;
    for policy in groups.groups().iter().flat_map(|group| &group.policies) {
        let matching = services
            .iter()
            .filter(|service| policy_matches(&policy.kind, service))
            .count();
        let policy_keys = match policy.kind {
            PolicyKind::HostFailure { .. } => matching * NODES,
            _ => usize::from(matching > 0) * NODES,
        };
        assert!(policy_keys <= NODES, "policy `{}` would evict", policy.name);
        keys += policy_keys;
    }
    keys
}

fn policy_matches(kind: &PolicyKind, service: &str) -> bool {
    match kind {
        PolicyKind::Threshold(spec) => spec.service.is_match(service),
        PolicyKind::EwmaStabilized { threshold, .. } => threshold.service.is_match(service),
        PolicyKind::HostFailure { services, .. } => {
            services.iter().any(|regex| regex.is_match(service))
        }
    }
}

/// The generic rules: `(name, measurement regex or "" for any, condition)`.
const GENERIC_RULES: [(&str, &str, &str); 20] = [
    (
        "cpu_user_avg_high",
        r"^cpu\.total\.user$",
        r#"{ kind = "threshold", stat = "avg", window = "1m", op = ">", value = 90.0, for = "30s" }"#,
    ),
    (
        "cpu_user_p99_high",
        r"^cpu\.total\.user$",
        r#"{ kind = "threshold", stat = "p99", window = "5m", op = ">", value = 95.0, for = "1m" }"#,
    ),
    (
        "cpu_system_max_high",
        r"^cpu\.total\.system$",
        r#"{ kind = "threshold", stat = "max", window = "1m", op = ">", value = 80.0, for = "30s" }"#,
    ),
    (
        "iowait_avg_high",
        r"^cpu\.total\.iowait$",
        r#"{ kind = "threshold", stat = "avg", window = "2m", op = ">", value = 40.0, for = "30s", recover_for = "30s" }"#,
    ),
    (
        "load1_max_high",
        r"^loadavg\.01$",
        r#"{ kind = "threshold", stat = "max", window = "1m", op = ">", value = 8.0, for = "30s" }"#,
    ),
    (
        "load5_avg_high",
        r"^loadavg\.05$",
        r#"{ kind = "threshold", stat = "avg", window = "5m", op = ">", value = 6.0 }"#,
    ),
    (
        "memfree_min_low",
        r"^memory\.MemFree$",
        r#"{ kind = "threshold", stat = "min", window = "1m", op = "<", value = 100.0, for = "20s" }"#,
    ),
    (
        "memory_used_p95_high",
        r"^memory\.used$",
        r#"{ kind = "threshold", stat = "p95", window = "5m", op = ">", value = 7500.0, for = "1m" }"#,
    ),
    (
        "disk_free_low",
        r"^diskspace\.root\.byte_percentfree$",
        r#"{ kind = "threshold", stat = "last", op = "<", value = 5.0 }"#,
    ),
    (
        "rx_rate_high",
        r"^network\.eth0\.rx_byte$",
        r#"{ kind = "threshold", stat = "rate", window = "1m", op = ">", value = 125000000.0, for = "30s" }"#,
    ),
    (
        "tx_rate_high",
        r"^network\.eth0\.tx_byte$",
        r#"{ kind = "threshold", stat = "rate", window = "5m", op = ">", value = 125000000.0 }"#,
    ),
    (
        "swap_used_high",
        r"^memory\.SwapUsed$",
        r#"{ kind = "threshold", stat = "avg", window = "1m", op = ">", value = 1000.0 }"#,
    ),
    (
        "nginx_connections_high",
        r"^nginx\.",
        r#"{ kind = "threshold", stat = "max", window = "1m", op = ">", value = 1000.0 }"#,
    ),
    (
        "cpu_collector_silent",
        r"^cpu\.total\.user$",
        r#"{ kind = "absence", after = "2m" }"#,
    ),
    ("node_silent", "", r#"{ kind = "absence", after = "5m" }"#),
    (
        "disk_collector_silent",
        r"^diskspace\.",
        r#"{ kind = "absence", after = "10m" }"#,
    ),
    (
        "disk_state",
        r"^diskspace\.root\.byte_percentfree$",
        r#"{ kind = "state_change", stat = "last", op = "<=", value = 10.0 }"#,
    ),
    (
        "load_state",
        r"^loadavg\.01$",
        r#"{ kind = "state_change", stat = "avg", window = "1m", op = ">=", value = 4.0, for = "30s", recover_for = "1m" }"#,
    ),
    (
        "cpu_system_state",
        r"^cpu\.total\.system$",
        r#"{ kind = "state_change", stat = "max", window = "2m", op = ">", value = 60.0 }"#,
    ),
    (
        "memfree_state",
        r"^memory\.MemFree$",
        r#"{ kind = "state_change", stat = "avg", window = "5m", op = "<", value = 200.0 }"#,
    ),
];

/// The 20 generic rules as a TOML file, each keyed by `node_id` with one action (a workflow for
/// the thresholds, a webhook for the others).
fn generic_rules() -> RuleSet {
    let mut text = String::new();
    for (name, measurement, condition) in GENERIC_RULES {
        let _ = writeln!(text, "[[rule]]\nname = \"{name}\"");
        if !measurement.is_empty() {
            let _ = writeln!(text, "measurement = '{measurement}'");
        }
        let _ = writeln!(
            text,
            "by = [\"node_id\"]\ncondition = {condition}\n[[rule.action]]"
        );
        if condition.contains("\"threshold\"") {
            text.push_str(concat!(
                "kind = \"execute_workflow\"\ndeployment_id = \"{{tags.deployment_id}}\"\n",
                "workflow = \"scale\"\n",
                "parameters = { node_instance_id = \"{{tags.node_id}}\", value = \"{{value}}\" }\n",
            ));
        } else {
            text.push_str(concat!(
                "kind = \"webhook\"\nurl = \"http://127.0.0.1:9000/alert\"\n",
                "body = { rule = \"{{rule}}\", key = \"{{key}}\", state = \"{{state}}\", ",
                "value = \"{{value}}\" }\n",
            ));
        }
    }
    RuleSet::parse(&text).expect("the benchmark's rules file is valid")
}

/// Keys the generic engine holds once every node reported every path: the node count for each
/// rule that matches some path.
fn generic_keys(rules: &RuleSet) -> usize {
    let matching_rules = rules
        .rules()
        .iter()
        .filter(|rule| {
            PATHS.iter().any(|path| {
                rule.measurement
                    .as_ref()
                    .is_none_or(|regex| regex.is_match(path))
            })
        })
        .count();
    matching_rules * NODES
}

fn criterion_config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

fn manager(c: &mut Criterion) {
    let groups = manager_groups();
    let keys = manager_keys(&groups);
    let mut stream = Stream::new(metric_event, stamp_event);
    let round = stream.round_len();

    let mut engine = Engine::new(EngineLimits::default());
    engine.load_deployment(DEPLOYMENT, groups.clone());
    let mut fired = 0;
    for _ in 0..WARM_ROUNDS {
        fired = 0;
        stream.feed(round, |event, now_ms| {
            fired += engine.on_metric(event, now_ms).len();
        });
    }
    eprintln!(
        "manager: {keys} keys; {fired} actions in the last warm-up round of {round} events \
         (~{:.1} per batch of {BATCH})",
        (fired * BATCH) as f64 / round as f64
    );

    let mut group = c.benchmark_group("manager");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("on_metric", |b| {
        b.iter(|| {
            let mut fired = 0;
            stream.feed(BATCH, |event, now_ms| {
                fired += black_box(engine.on_metric(event, now_ms)).len();
            });
            fired
        })
    });

    // What the matching alone costs: every policy's service regexes against every event.
    let mut matches = Stream::new(metric_event, stamp_event);
    let policies: Vec<&PolicyKind> = groups
        .groups()
        .iter()
        .flat_map(|group| &group.policies)
        .map(|policy| &policy.kind)
        .collect();
    group.bench_function("service_regexes_only", |b| {
        b.iter(|| {
            let mut matched = 0usize;
            matches.feed(BATCH, |event, _| {
                for kind in &policies {
                    matched += usize::from(policy_matches(kind, black_box(&event.service)));
                }
            });
            matched
        })
    });

    // The 5 s sweep over the full state: nothing has expired, nothing is idle (every series
    // reported within the last interval), so it only walks the keys.
    group.throughput(Throughput::Elements(keys as u64));
    let now_ms = stream.now_ms;
    let swept = engine.sweep(now_ms).len();
    assert_eq!(swept, 0, "the steady state has no silent host");
    group.bench_function("sweep", |b| {
        b.iter(|| black_box(engine.sweep(now_ms)).len())
    });
    drop(engine);

    // At the key limit: every policy full (10,000 keys), then nodes never seen before, as when a
    // deployment scales past the limit or heals into new instance ids.
    let mut full = Engine::new(EngineLimits::default());
    full.load_deployment(DEPLOYMENT, groups);
    let mut warm = Stream::new(metric_event, stamp_event);
    warm.feed(round, |event, now_ms| {
        black_box(full.on_metric(event, now_ms));
    });
    let mut next_node = NODES;
    let clock_ms = warm.now_ms;
    group.throughput(Throughput::Elements((CHURN_NODES * PATHS.len()) as u64));
    group.bench_function("on_metric_new_keys_at_limit", |b| {
        b.iter_batched_ref(
            || {
                let events = new_nodes(next_node, clock_ms, metric_event, stamp_event);
                next_node += CHURN_NODES;
                events
            },
            |events| {
                let mut fired = 0;
                for (event, now_ms) in events.iter() {
                    fired += black_box(full.on_metric(event, *now_ms)).len();
                }
                fired
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The events of `CHURN_NODES` nodes never seen before, from `first_node` on, each with the
/// caller's clock: one interval after `clock_ms` per batch of new nodes.
fn new_nodes<T>(
    first_node: usize,
    clock_ms: i64,
    item: fn(usize, usize) -> T,
    stamp: fn(&mut T, i64, f64),
) -> Vec<(T, i64)> {
    let batch = ((first_node - NODES) / CHURN_NODES) as i64;
    (first_node..first_node + CHURN_NODES)
        .flat_map(|node| (0..PATHS.len()).map(move |path| (node, path)))
        .map(|(node, path)| {
            let time_ms = clock_ms + (batch + 1) * INTERVAL_MS + (node % NODES) as i64;
            let mut event = item(node, path);
            stamp(&mut event, time_ms, metric_value(node, path, batch));
            (event, time_ms + CLOCK_LAG_MS)
        })
        .collect()
}

fn generic(c: &mut Criterion) {
    let rules = generic_rules();
    let keys = generic_keys(&rules);
    let mut stream = Stream::new(diamond_point, stamp_point);
    let round = stream.round_len();

    let mut engine = GenericEngine::new(rules.clone(), GenericLimits::default());
    let mut fired = 0;
    for _ in 0..WARM_ROUNDS {
        fired = 0;
        stream.feed(round, |point, now_ms| {
            fired += engine.on_point(point, now_ms).len();
        });
    }
    eprintln!(
        "generic: {keys} keys; {fired} actions in the last warm-up round of {round} points \
         (~{:.1} per batch of {BATCH})",
        (fired * BATCH) as f64 / round as f64
    );

    let mut group = c.benchmark_group("generic");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("on_point", |b| {
        b.iter(|| {
            let mut fired = 0;
            stream.feed(BATCH, |point, now_ms| {
                fired += black_box(engine.on_point(point, now_ms)).len();
            });
            fired
        })
    });

    // What the filters alone cost: every rule's measurement regex against every point.
    let mut matches = Stream::new(diamond_point, stamp_point);
    group.bench_function("measurement_regexes_only", |b| {
        b.iter(|| {
            let mut matched = 0usize;
            matches.feed(BATCH, |point, _| {
                for rule in rules.rules() {
                    let measurement = black_box(point.measurement.as_str());
                    matched += usize::from(
                        rule.measurement
                            .as_ref()
                            .is_none_or(|regex| regex.is_match(measurement)),
                    );
                }
            });
            matched
        })
    });

    group.throughput(Throughput::Elements(keys as u64));
    let now_ms = stream.now_ms;
    assert_eq!(
        engine.sweep(now_ms).len(),
        0,
        "the steady state has no silent key"
    );
    group.bench_function("sweep", |b| {
        b.iter(|| black_box(engine.sweep(now_ms)).len())
    });
    drop(engine);

    let mut full = GenericEngine::new(rules, GenericLimits::default());
    let mut warm = Stream::new(diamond_point, stamp_point);
    warm.feed(round, |point, now_ms| {
        black_box(full.on_point(point, now_ms));
    });
    let mut next_node = NODES;
    let clock_ms = warm.now_ms;
    group.throughput(Throughput::Elements((CHURN_NODES * PATHS.len()) as u64));
    group.bench_function("on_point_new_keys_at_limit", |b| {
        b.iter_batched_ref(
            || {
                let points = new_nodes(next_node, clock_ms, diamond_point, stamp_point);
                next_node += CHURN_NODES;
                points
            },
            |points| {
                let mut fired = 0;
                for (point, now_ms) in points.iter() {
                    fired += black_box(full.on_point(point, *now_ms)).len();
                }
                fired
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = manager, generic
}
criterion_main!(benches);
