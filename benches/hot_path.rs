//! The hot paths without I/O: Diamond metrics (decode -> normalise -> line-protocol encode) and
//! Cloudify events (decode -> document -> bulk encode).
//!
//! `cargo bench -p sluice-benches --bench hot_path`; throughput is reported in messages per
//! second on one core (criterion runs single-threaded).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_core::ack::SourceMessage;
use sluice_core::path::{Decoded, Decoder, Encode, Sink};
use sluice_core::point::PointLimits;
use sluice_elasticsearch::encode_document;
use sluice_influx::{
    InfluxApi, InfluxSettings, InfluxWriter, LineEncoder, Precision, encode_point,
};
use sluice_normalise::{
    DiamondDecoder, EventDecoder, IndexPattern, Naming, Normalised, NormalisedRef, Normaliser,
    Scratch, TemplateSet,
};

const BATCH: usize = 1000;

fn hot_path(c: &mut Criterion) {
    let bodies = sluice_benches::diamond_bodies(BATCH);
    let limits = PointLimits::default();
    let normaliser = Normaliser::new(Naming::Templates(TemplateSet::default_diamond()), limits);

    let mut group = c.benchmark_group("diamond");
    group.throughput(Throughput::Elements(BATCH as u64));

    // What the metrics path's encode stage does per message (`sluice_core::path`): the Diamond
    // decoder copies the body into its scratch (simd-json parses in place), decodes and
    // normalises it into a borrowed point, and the InfluxDB sink encodes that into a line cut
    // from a shared buffer. The lines are kept until the batch is done, as the batcher keeps
    // them.
    let messages: Vec<SourceMessage> = bodies
        .iter()
        .map(|body| SourceMessage {
            body: body.clone().into(),
            ..SourceMessage::default()
        })
        .collect();
    let url = "http://127.0.0.1:8086".parse().expect("a url");
    let api = InfluxApi::V1 {
        database: "bench".into(),
        retention_policy: None,
        username: None,
        password: None,
    };
    let mut settings = InfluxSettings::new(url, api);
    settings.precision = Precision::Nanoseconds;
    let sink = InfluxWriter::new(settings).expect("valid settings");
    let mut lines = Vec::with_capacity(BATCH);
    for (name, naming) in [
        (
            "decode_normalise_encode",
            Naming::Templates(TemplateSet::default_diamond()),
        ),
        ("legacy_decode_normalise_encode", Naming::CloudifyLegacy),
    ] {
        let mut decoder = DiamondDecoder::new(Normaliser::new(naming, limits), ());
        let mut encoder = sink.encoder();
        group.bench_function(name, |b| {
            b.iter(|| {
                lines.clear();
                for message in &messages {
                    if let Decoded::Item(point) = decoder.decode(message)
                        && let Ok(line) = sink.encode(&mut encoder, &point)
                    {
                        lines.push(line);
                    }
                }
                black_box(lines.len())
            })
        });
    }

    // The same loop through the encode stage's tap (`sluice tap points`): closed, as it is
    // while nobody taps, and open, with a listener that never reads (samples are dropped for
    // it, as for a slow reader). Compare both with `decode_normalise_encode` of the same run.
    let mut decoder = DiamondDecoder::new(
        Normaliser::new(Naming::Templates(TemplateSet::default_diamond()), limits),
        (),
    );
    let mut encoder = sink.encoder();
    let tap = sluice_core::tap::named("bench-points");
    for (name, listening) in [
        ("decode_normalise_encode_tap_closed", false),
        ("decode_normalise_encode_tap_open", true),
    ] {
        let listener = listening.then(|| sluice_core::tap::listen("bench-points"));
        group.bench_function(name, |b| {
            b.iter(|| {
                lines.clear();
                for message in &messages {
                    if let Decoded::Item(point) = decoder.decode(message) {
                        tap.offer(|| DiamondDecoder::<()>::tap_record(&point));
                        if let Ok(line) = sink.encode(&mut encoder, &point) {
                            lines.push(line);
                        }
                    }
                }
                black_box(lines.len())
            })
        });
        drop(listener);
    }

    let mut scratch = Scratch::default();
    group.bench_function("decode_normalise", |b| {
        b.iter(|| {
            let mut tags = 0usize;
            for body in &bodies {
                if let Ok(NormalisedRef::Point(point)) =
                    normaliser.normalise_borrowed(body, &mut scratch, |_| {})
                {
                    tags += black_box(&point).tags.len();
                }
            }
            tags
        })
    });

    let points: Vec<_> = bodies
        .iter()
        .filter_map(|body| match normaliser.normalise(body) {
            Ok(Normalised::Point(point)) => Some(point),
            _ => None,
        })
        .collect();
    // The line encoder against the builder alone (`encode_point`), on the same points.
    let mut request = Vec::with_capacity(256 * BATCH);
    let mut encoder = LineEncoder::new(Precision::Nanoseconds, limits);
    group.bench_function("encode", |b| {
        b.iter(|| {
            request.clear();
            for point in &points {
                let _ = encoder.encode(&mut request, &point.borrowed());
            }
            black_box(request.len())
        })
    });
    group.bench_function("encode_builder_only", |b| {
        b.iter(|| {
            request.clear();
            for point in &points {
                let _ = encode_point(&mut request, point, Precision::Nanoseconds, &limits);
            }
            black_box(request.len())
        })
    });
    group.finish();
}

fn events_path(c: &mut Criterion) {
    let bodies = sluice_benches::cloudify_event_bodies(BATCH);
    let decoder = EventDecoder::new(IndexPattern::logstash_daily());
    let message = SourceMessage {
        exchange: "cloudify-events".into(),
        ..SourceMessage::default()
    };

    let mut group = c.benchmark_group("events");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut scratch = Vec::new();
    let mut request = Vec::with_capacity(700 * BATCH);
    group.bench_function("decode_document_bulk_encode", |b| {
        b.iter(|| {
            request.clear();
            for body in &bodies {
                scratch.clear();
                scratch.extend_from_slice(body);
                if let Ok(document) = decoder.decode(&mut scratch, &message) {
                    encode_document(&mut request, &document);
                }
            }
            black_box(request.len())
        })
    });
    group.finish();
}

criterion_group!(benches, hot_path, events_path);
criterion_main!(benches);
