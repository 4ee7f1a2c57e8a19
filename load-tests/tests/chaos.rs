//! Chaos rounds against the real RabbitMQ and InfluxDB on loopback, and the real `sluice`
//! binary: two rounds of each fault with a small load, each of which must lose nothing and
//! leave its queue empty with no consumer. Every wait is bounded by the scenario's timeouts
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_and_severed_connections_lose_nothing_and_leave_nothing_queued() {
    let environment = ChaosEnvironment {
        sluice_bin: sluice_binary(),
        amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
        influx_url: "http://127.0.0.1:8086".to_owned(),
        work_dir: std::env::temp_dir().join("sluice-chaos-test"),
    };
    let scenario = ChaosScenario {
        name: "ci".to_owned(),
        description: String::new(),
        faults: vec![Fault::Kill9, Fault::CloseConnection],
        rounds: 2,
        messages: 300,
        rate: 300.0,
        fault_window: [0.2, 0.6],
        drain_timeout: Duration::from_secs(20),
        env: [("SLUICE_INFLUX__BATCH_LINGER".to_owned(), "20ms".to_owned())].into(),
    };
    scenario.validate().expect("a valid scenario");
    // A fixed seed: the same fault moments every run, so a failure can be replayed with
    // `sluice-load chaos --seed <the round's seed> --rounds 1`.
    let started = Instant::now();
    let rounds = chaos::run(&environment, &scenario, 20_261_204, |round| {
        eprintln!("{}", round.line());
    })
    .await
    .expect("the chaos rounds ran");
    eprintln!("{}", chaos::table(&chaos::summarise(&rounds)));
    eprintln!("took {:?}", started.elapsed());

    assert_eq!(rounds.len(), 4, "two rounds of each fault");
    for round in &rounds {
        // At least the 300, and more while a slow fault (rabbitmqctl) is taking effect.
        assert!(round.published >= 300, "{round:?}");
        assert!(
            round.published > round.fault_effect_after,
            "a load went on after the fault: {round:?}"
        );
        assert_eq!(
            round.confirmed, round.published,
            "the broker confirmed every publish: {round:?}"
        );
        assert_eq!(round.missing, 0, "confirmed messages were lost: {round:?}");
        assert_eq!(round.stored, round.confirmed, "{round:?}");
        assert_eq!(round.left_in_queue, 0, "messages stayed queued: {round:?}");
        assert_eq!(
            round.consumers_left, 0,
            "a consumer outlived sluice: {round:?}"
        );
        assert_eq!(
            round.dead_lettered, 0,
            "good messages were dead-lettered: {round:?}"
        );
        assert_eq!(
            round.duplicates, 0,
            "a message was stored under a second key: {round:?}"
        );
        assert!(
            round.recovery_seconds.is_some(),
            "writes never resumed after the fault: {round:?}"
        );
        assert!(round.passed(), "{round:?}");
    }
}
