//! Chaos rounds against the real RabbitMQ and InfluxDB on loopback (and private `influxd`s to
//! kill and stall), and the real `sluice` binary: two rounds of each fault with a small load,
//! each of which must lose nothing and leave its queue empty with no consumer. Every wait is bounded by the scenario's timeouts
//! (sluice's start, the drain), so a stuck round fails with its report instead of hanging.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sluice_load::chaos::{self, ChaosEnvironment, ChaosScenario, Fault};

/// The `sluice` binary of this build: `SLUICE_BIN`, else beside this test's own profile
/// directory (`target/<profile>/sluice`), which `cargo test --workspace` builds.
fn sluice_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_BIN") {
        return path.into();
    }
    let test = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/chaos-<hash> -> target/<profile>/sluice
    let profile = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let binary = profile.join("sluice");
    assert!(
        binary.is_file(),
        "no sluice binary at {}: `cargo build -p sluice` (or run the workspace's tests), or set SLUICE_BIN",
        binary.display()
    );
    binary
}

/// The most sluice's RSS may reach during a stall. 64 MiB is the bound for the release build
/// (the full run's); a debug build's code alone keeps about 33 MiB resident (`RssFile` in
/// `/proc/<pid>/status`), so a test of this profile allows for it.
const STALL_RSS_BOUND_MIB: f64 = if cfg!(debug_assertions) { 96.0 } else { 64.0 };

/// Two rounds of every fault, with events and a share of malformed bodies in every load, the
/// rule stage's triggers and heals counted where the fault touches it, and the run's secrets
/// searched for in everything sluice printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_loses_nothing_leaks_nothing_and_leaves_nothing_queued() {
    let environment = ChaosEnvironment {
        sluice_bin: sluice_binary(),
        amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
        influx_url: "http://127.0.0.1:8086".to_owned(),
        work_dir: std::env::temp_dir().join("sluice-chaos-test"),
    };
    let mut scenario = ChaosScenario::new("ci", Fault::ALL.to_vec(), 2, 300, 300.0);
    scenario.fault_window = [0.2, 0.6];
    scenario.drain_timeout = Duration::from_secs(20);
    scenario.outage = Duration::from_secs(2);
    // The full run stalls InfluxDB for a minute; the bound on memory shows in seconds too, as
    // sluice holds no more than its prefetch whatever the stall's length.
    scenario.stall = Duration::from_secs(10);
    scenario.es_outage = Duration::from_secs(5);
    scenario.malformed_share = 0.05;
    scenario.max_stall_rss_mib = STALL_RSS_BOUND_MIB;
    scenario.env = [("SLUICE_INFLUX__BATCH_LINGER".to_owned(), "20ms".to_owned())].into();
    scenario.validate().expect("a valid scenario");
    // A fixed seed: the same fault moments every run, so a failure can be replayed with
    // `sluice-load chaos --seed <the round's seed> --rounds 1 --faults <the fault>`.
    let started = Instant::now();
    let rounds = chaos::run(&environment, &scenario, 20_261_204, |round| {
        eprintln!("{}", round.line());
    })
    .await
    .expect("the chaos rounds ran");
    eprintln!("{}", chaos::table(&chaos::summarise(&rounds)));
    eprintln!("took {:?}", started.elapsed());

    assert_eq!(
        rounds.len(),
        2 * Fault::ALL.len(),
        "two rounds of each fault"
    );
    for round in &rounds {
        // At least the 300, and more while a slow fault (rabbitmqctl, a stall) is on.
        assert!(round.published >= 300, "{round:?}");
        assert!(
            round.published > round.fault_effect_after,
            "a load went on after the fault: {round:?}"
        );
        if round.fault != Fault::BrokerRestart {
            // A broker going away takes the confirms of what was in flight with it.
            assert_eq!(
                round.confirmed, round.published,
                "the broker confirmed every publish: {round:?}"
            );
        }
        assert!(
            round.malformed > 0,
            "the load held malformed bodies: {round:?}"
        );
        assert_eq!(round.missing, 0, "confirmed messages were lost: {round:?}");
        // A publish whose confirm the broker restart took may still have been queued, and
        // stored: more can be stored than was confirmed, never less.
        let confirmed_good = round.confirmed - round.malformed - round.events;
        if round.fault == Fault::BrokerRestart {
            assert!(round.stored >= confirmed_good, "{round:?}");
            assert!(round.events_stored >= round.events, "{round:?}");
        } else {
            assert_eq!(round.stored, confirmed_good, "{round:?}");
            assert_eq!(round.events_stored, round.events, "{round:?}");
        }
        assert!(round.events > 0, "the load held events: {round:?}");
        assert_eq!(
            round.events_missing, 0,
            "confirmed events were lost: {round:?}"
        );
        assert_eq!(
            round.events_stored_twice, 0,
            "an event was stored twice: {round:?}"
        );
        if round.fault == Fault::Es429 {
            assert!(
                round.es_items_rejected_429 > 0,
                "the double answered 429s: {round:?}"
            );
        }
        assert_eq!(
            round.malformed_missing, 0,
            "malformed bodies were not dead-lettered: {round:?}"
        );
        assert!(round.dead_lettered >= round.malformed, "{round:?}");
        assert_eq!(
            round.wrong_reasons, 0,
            "dead letters with the wrong reason: {round:?}"
        );
        assert_eq!(round.left_in_queue, 0, "messages stayed queued: {round:?}");
        assert_eq!(
            round.consumers_left, 0,
            "a consumer outlived sluice: {round:?}"
        );
        assert_eq!(
            round.duplicates, 0,
            "a message was stored under a second key: {round:?}"
        );
        assert_eq!(
            round.secrets_leaked, 0,
            "sluice printed a secret: {round:?}"
        );
        assert!(
            round.recovery_seconds.is_some(),
            "writes never resumed after the fault: {round:?}"
        );
        match (round.fault.rules_probe(), &round.rules) {
            (None, None) => {}
            (Some(_), Some(rules)) => assert!(
                rules.passed(),
                "the rule stage lost, repeated or misplaced a trigger: {}: {round:?}",
                rules.summary()
            ),
            _ => {
                panic!("the rules probe ran where it should not, or not where it should: {round:?}")
            }
        }
        if round.fault == Fault::InfluxStall {
            let peak = round
                .peak_rss_mib
                .expect("a stall measures sluice's memory");
            assert!(
                peak <= STALL_RSS_BOUND_MIB,
                "sluice grew to {peak:.1} MiB during the stall: {round:?}"
            );
        }
        assert!(round.passed(), "{round:?}");
    }
}
