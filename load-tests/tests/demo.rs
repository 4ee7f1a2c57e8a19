//! The demo feed against the real broker: it publishes exactly what it counts, to the exchanges
//! it names, and every body is one sluice takes (a point, an event, a log).

use bytes::Bytes;
use lapin::options::{QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use sluice_core::ack::SourceMessage;
use sluice_core::point::PointLimits;
use sluice_load::demo::{DemoCounts, DemoSettings, event_body, log_body, metric_body};
use sluice_normalise::{EventDecoder, IndexPattern, Naming, Normalised, Normaliser, TemplateSet};
use sluice_testing::names::unique;
use sluice_testing::services::amqp_url;

async fn bound_queue(channel: &Channel, exchange: &str) -> String {
    let queue = unique("sluice-load.demo-test");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare the test queue");
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind the test queue");
    queue
}

async fn ready(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the test queue exists")
        .message_count()
}

#[tokio::test]
async fn the_feed_publishes_what_it_counts_to_the_exchanges_it_names() {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ is running (deploy/services.sh)");
    let channel = connection.create_channel().await.expect("channel");
    let settings = DemoSettings {
        amqp_url: amqp_url(),
        exchange: unique("sluice-load.demo-monitoring"),
        hosts: 2,
        interval: std::time::Duration::from_millis(10),
        ticks: Some(6),
        events: Some((
            unique("sluice-load.demo-events"),
            unique("sluice-load.demo-logs"),
        )),
    };
    let (events, logs) = settings.events.clone().expect("events");
    // The feed declares its exchanges; declaring them first, as it does, lets the test bind.
    for exchange in [settings.exchange.as_str(), events.as_str(), logs.as_str()] {
        let spec = if exchange == settings.exchange {
            sluice_amqp::topology::ExchangeSpec::cloudify_monitoring(exchange)
        } else {
            sluice_amqp::topology::ExchangeSpec::durable_fanout(exchange)
        };
        sluice_amqp::topology::declare_exchange(&channel, &spec)
            .await
            .expect("declare");
    }
    let queues = [
        bound_queue(&channel, &settings.exchange).await,
        bound_queue(&channel, &events).await,
        bound_queue(&channel, &logs).await,
    ];

    let counts = sluice_load::demo::run(&settings)
        .await
        .expect("the feed runs");

    // 2 deployments x 2 hosts x 10 collectors x 6 ticks; an event and a log at ticks 0 and 5.
    assert_eq!(
        counts,
        DemoCounts {
            metrics: 240,
            events: 2,
            logs: 2
        }
    );
    // Confirmed publishes are enqueued: the queues hold exactly what was counted.
    assert_eq!(ready(&channel, &queues[0]).await, 240);
    assert_eq!(ready(&channel, &queues[1]).await, 2);
    assert_eq!(ready(&channel, &queues[2]).await, 2);
    for queue in &queues {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in [settings.exchange.as_str(), events.as_str(), logs.as_str()] {
        let _ = channel
            .exchange_delete(
                exchange.into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    }
}

#[test]
fn every_body_is_one_sluice_takes() {
    let normaliser = Normaliser::new(
        Naming::Templates(TemplateSet::default_diamond()),
        PointLimits::default(),
    );
    for path in sluice_benches::DIAMOND_PATHS {
        let body = metric_body("shop.prod.eu", 1, path, 3, 1_780_000_000);
        match normaliser.normalise(&body) {
            Ok(Normalised::Point(point)) => assert!(
                point
                    .measurement
                    .contains(path.split('.').next().unwrap_or_default())
            ),
            other => panic!("{path}: {other:?}"),
        }
    }
    let decoder = EventDecoder::new(IndexPattern::default());
    let now = jiff::Timestamp::from_second(1_780_000_000).expect("a time");
    for (exchange, body) in [
        ("cloudify-events", event_body(3, now)),
        ("cloudify-logs", log_body(3, now)),
    ] {
        let message = SourceMessage {
            body: Bytes::from(body.clone()),
            exchange: exchange.to_owned(),
            routing_key: String::new(),
            redelivered: false,
        };
        let document = decoder
            .decode(&mut body.clone(), &message)
            .unwrap_or_else(|error| panic!("{exchange}: {error}"));
        // Both timestamp shapes give the same instant.
        let source: serde_json::Value = serde_json::from_slice(&document.source).expect("json");
        assert_eq!(source["@timestamp"], "2026-05-28T20:26:40.000Z", "{source}");
    }
}
