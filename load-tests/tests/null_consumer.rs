//! The null consumer against the real RabbitMQ (`deploy/services.sh`; `AMQP_URL` overrides the
//! local default): it drains exactly what was pre-loaded, acks all of it and leaves the queue
//! empty. No timing is asserted: this machine is shared.

use std::time::Duration;

use lapin::options::{ConfirmSelectOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use sluice_load::baseline::{self, NullConsumerSettings};
use sluice_load::broker;
use sluice_load::publish::publish_confirmed;

fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

#[tokio::test]
async fn drains_every_preloaded_message_and_leaves_the_queue_empty() {
    let url = amqp_url();
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|error| {
            panic!("RabbitMQ is not reachable at {url} ({error}): run deploy/services.sh")
        });
    let channel = connection.create_channel().await.expect("channel");
    let queue = format!("sluice-load.test.null-consumer.{}", std::process::id());
    let exchange = format!("sluice-load.test.null-consumer.{}", std::process::id());
    // sluice's own queue, bound as sluice binds it; the baseline queue is bound beside it only
    // for the pre-load.
    let sluice_queue = format!("{queue}.sluice");
    broker::declare_metrics_queue(&channel, &exchange, &sluice_queue)
        .await
        .expect("declare the exchange and sluice's queue");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let bodies = sluice_benches::diamond_bodies(2_000);
    let publish = || {
        publish_confirmed(
            &channel,
            bodies
                .iter()
                .map(|body| (exchange.as_str(), "nodecellar", body.as_slice())),
        )
    };
    baseline::preload_beside(&channel, &exchange, &queue, publish)
        .await
        .expect("pre-load");
    // Unbound after the pre-load: what is published later does not reach the baseline queue.
    publish_confirmed(
        &channel,
        [(exchange.as_str(), "nodecellar", b"late".as_slice())],
    )
    .await
    .expect("publish after the pre-load");
    assert_eq!(
        baseline::passive_depth(&channel, &queue)
            .await
            .expect("depth"),
        2_000
    );
    assert_eq!(
        baseline::passive_depth(&channel, &sluice_queue)
            .await
            .expect("depth"),
        2_001
    );
    broker::delete_queue(&channel, &sluice_queue)
        .await
        .expect("delete sluice's test queue");

    // A prefetch below the count and an ack batch that does not divide it: the final partial
    // batch must still be acked, or the broker would stop after 1,500 unacked.
    let settings = NullConsumerSettings {
        amqp_url: url,
        queue: queue.clone(),
        count: 2_000,
        prefetch: 1_500,
        ack_every: 750,
        timeout: Duration::from_secs(60),
    };
    let drained = baseline::drain(&settings).await;
    let left_after_close = baseline::passive_depth(&channel, &queue).await;
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete the test queue");

    let report = drained.expect("drain");
    assert_eq!(report.figures.messages, 2_000);
    assert_eq!(report.ack_frames, 3);
    assert_eq!(report.left_in_queue, 0);
    // Nothing came back once the null consumer's connection closed: everything had been acked.
    assert_eq!(left_after_close.expect("queue still there"), 0);
    assert!(report.figures.cpu.is_some());
}

#[tokio::test]
async fn a_missing_baseline_queue_says_how_to_preload_it() {
    let settings = NullConsumerSettings {
        amqp_url: amqp_url(),
        queue: format!("sluice-load.test.absent.{}", std::process::id()),
        count: 10,
        prefetch: 5000,
        ack_every: 1000,
        timeout: Duration::from_secs(10),
    };
    let error = baseline::drain(&settings).await.expect_err("no such queue");
    assert!(format!("{error:#}").contains("--publish-only --baseline-queue"));
}
