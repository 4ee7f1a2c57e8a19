//! CI's smoke run of the load harness (`sluice-load`), not a benchmark: 2,000 Diamond messages
//! in open loop at 1,000 msg/s through the real sluice, the real RabbitMQ and the real InfluxDB,
//! with sluice writing through the harness's latency proxy. Every good message's latency must be
//! recorded, the bad ones dead-lettered, and sluice's counters scraped. No timing is asserted:
//! this machine is shared.

mod common;

use std::time::Duration;

use common::{Broker, Sluice, TestNames, influx_url};
use sluice_load::latency_proxy::LatencyProxy;
use sluice_load::open_loop::{self, OpenLoopSettings, Traffic};
use sluice_load::schedule::EpochClock;
use sluice_load::scrape::{Scraper, StageDeltas};
use sluice_testing::influx::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_records_every_good_message_and_dead_letters_the_bad() {
    let names = TestNames::new("load_smoke");
    // Dropped (with the database) when the test ends.
    let _database = TestDatabase::on(&influx_url(), &names.database).await;
    let clock = EpochClock::new().expect("clock");
    let proxy = LatencyProxy::start_on_free_port(&influx_url(), clock)
        .await
        .expect("the latency proxy");
    let broker = Broker::connect().await;
    let mut sluice = Sluice::start(
        &names,
        &proxy.url(),
        &[("SLUICE_INFLUX__BATCH_LINGER", "20ms")],
    )
    .await;
    let scraper = Scraper::start(
        &format!("http://{}/metrics", sluice.admin),
        Duration::from_secs(1),
    )
    .await
    .expect("sluice's counters");

    let settings = OpenLoopSettings {
        exchange: names.exchange.clone(),
        rate: 1_000.0,
        count: 2_000,
        traffic: Traffic {
            hosts: 20,
            collectors: 10,
            bad_every: 100,
        },
        confirm_window: 500,
        drain_timeout: Duration::from_secs(20),
    };
    let report = open_loop::run(&broker.channel, &settings, &proxy.recorder, clock).await;
    let dead_letters = broker
        .take(&names.dead_letter_queue, 20, Duration::from_secs(20))
        .await;
    let scrapes = scraper.finish().await.expect("scrapes");
    assert!(sluice.stop(), "sluice stops cleanly");
    broker.remove(&names).await;

    let report = report.expect("the open loop ran");
    assert_eq!((report.good, report.bad), (1_980, 20));
    assert_eq!(
        report.written, 1_980,
        "every good message's point was written"
    );
    assert_eq!(report.latency.count, 1_980, "and its latency recorded");
    assert!(report.latency.p50_ms > 0.0 && report.latency.p50_ms <= report.latency.max_ms);
    assert_eq!(report.written_per_second.iter().sum::<u64>(), 1_980);
    assert_eq!(report.proxy.writes_failed, 0);
    assert_eq!(
        dead_letters.len(),
        20,
        "every bad message was dead-lettered"
    );
    assert!(
        dead_letters
            .iter()
            .all(|letter| letter.routing_key == "normalise.invalid_json"),
        "{:?}",
        dead_letters
            .iter()
            .map(|letter| &letter.routing_key)
            .collect::<Vec<_>>()
    );
    let stages = StageDeltas::between(&scrapes);
    assert_eq!(stages.delta("sluice_received_total"), 2_000.0);
    assert!(stages.delta("sluice_written_total") >= 1_980.0);
}
