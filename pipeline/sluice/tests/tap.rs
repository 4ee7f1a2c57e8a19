//! `sluice tap` against a running `sluice` on the real RabbitMQ and InfluxDB: it lists the taps
//! and prints samples of decoded points and of dead letters as JSON lines.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Broker, Sluice, TestNames, diamond, influx_url};
use serde_json::Value;
use sluice_testing::influx::TestDatabase;
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(60);

/// Runs `sluice tap ARGS` against `sluice` and answers its stdout, failing after [`WAIT`].
async fn tap(sluice: &Sluice, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("tap")
        .args(args)
        .args(["--admin", &sluice.admin])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT, output)
        .await
        .expect("sluice tap ends after its --limit")
        .expect("sluice tap runs");
    assert!(
        output.status.success(),
        "sluice tap {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("JSON lines are UTF-8")
}

/// Publishes `body()` again and again until dropped, so a tap that starts listening at any
/// moment sees some.
struct Repeating {
    stop: Arc<AtomicBool>,
}

impl Repeating {
    fn publish(broker: Arc<Broker>, exchange: String, body: fn(i64) -> Vec<u8>) -> Repeating {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut index = 0;
            while !stopped.load(Ordering::Relaxed) {
                broker.publish(&exchange, "nodecellar", &body(index)).await;
                index += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Repeating { stop }
    }
}

impl Drop for Repeating {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_lists_the_stages_and_prints_points_and_dead_letters_as_they_pass() {
    let names = TestNames::new("tap");
    let broker = Arc::new(Broker::connect().await);
    let _influx = TestDatabase::on(&influx_url(), &names.database).await;
    let mut sluice = Sluice::start(&names, &influx_url(), &[]).await;

    // `--admin` takes `admin.listen`'s `host:port` (as `tap` passes it below) or a URL.
    let listed = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["tap", "--admin", &format!("http://{}/", sluice.admin)])
        .output()
        .await
        .expect("sluice tap runs");
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8(listed.stdout).expect("names are UTF-8");
    let listed: Vec<&str> = listed.lines().collect();
    assert!(
        listed.contains(&"points") && listed.contains(&"dead-letters"),
        "{listed:?}"
    );

    let points = {
        let _load = Repeating::publish(Arc::clone(&broker), names.exchange.clone(), |index| {
            diamond(
                "nodecellar",
                "h",
                "disk.io",
                index as f64,
                1_700_000_000 + index,
            )
        });
        tap(&sluice, &["points", "--limit", "3", "--rate", "100"]).await
    };
    let points: Vec<Value> = points
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(points.len(), 3, "--limit 3");
    for point in &points {
        assert_eq!(point["measurement"], "disk.io", "{point}");
        assert_eq!(point["tags"]["deployment_id"], "nodecellar", "{point}");
    }

    let letters = {
        let _load = Repeating::publish(Arc::clone(&broker), names.exchange.clone(), |_| {
            b"{not json".to_vec()
        });
        tap(&sluice, &["dead-letters", "--limit", "1"]).await
    };
    let letter: Value = serde_json::from_str(letters.trim()).expect("one JSON line");
    assert_eq!(letter["reason"], "invalid_json", "{letter}");
    assert_eq!(letter["body"], "{not json", "{letter}");

    let unknown = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["tap", "no-such-stage", "--admin", &sluice.admin])
        .output()
        .await
        .expect("sluice tap runs");
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.contains("points"), "names the taps there are: {said}");
    assert!(sluice.stop(), "clean stop");
    broker.remove(&names).await;
}
