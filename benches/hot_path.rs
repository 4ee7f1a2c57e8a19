//! The hot paths without I/O: Diamond metrics (decode -> normalise -> line-protocol encode) and
//! Cloudify events (decode -> document -> bulk encode).
//!
//! `cargo bench -p sluice-benches --bench hot_path`; throughput is reported in messages per
//! second on one core (criterion runs single-threaded).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_core::ack::SourceMessage;
use sluice_core::point::PointLimits;
use sluice_elasticsearch::encode_document;
use sluice_influx::{Precision, encode_point};
use sluice_normalise::{EventDecoder, IndexPattern, Naming, Normalised, Normaliser, TemplateSet};

const BATCH: usize = 1000;

fn hot_path(c: &mut Criterion) {
    let bodies = sluice_benches::diamond_bodies(BATCH);
    let limits = PointLimits::default();
    let normaliser = Normaliser::new(Naming::Templates(TemplateSet::default_diamond()), limits);
    let legacy = Normaliser::new(Naming::CloudifyLegacy, limits);

    let mut group = c.benchmark_group("diamond");
    group.throughput(Throughput::Elements(BATCH as u64));

    // What the pipeline does per message: copy the body into scratch (simd-json parses in
    // place), normalise, encode into the batch's request buffer.
    let mut scratch = Vec::new();
    let mut request = Vec::with_capacity(256 * BATCH);
    for (name, normaliser) in [
        ("decode_normalise_encode", &normaliser),
        ("legacy_decode_normalise_encode", &legacy),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                request.clear();
                for body in &bodies {
                    scratch.clear();
                    scratch.extend_from_slice(body);
                    if let Ok(Normalised::Point(point)) = normaliser.normalise(&mut scratch) {
                        let _ = encode_point(&mut request, &point, Precision::Nanoseconds, &limits);
                    }
                }
                black_box(request.len())
            })
        });
    }

    group.bench_function("decode_normalise", |b| {
        b.iter(|| {
            let mut points = 0usize;
            for body in &bodies {
                scratch.clear();
                scratch.extend_from_slice(body);
                if let Ok(Normalised::Point(point)) = normaliser.normalise(&mut scratch) {
                    points += black_box(&point).fields.len();
                }
            }
            points
        })
    });

    let points: Vec<_> = bodies
        .iter()
        .filter_map(|body| match normaliser.normalise(&mut body.clone()) {
            Ok(Normalised::Point(point)) => Some(point),
            _ => None,
        })
        .collect();
    group.bench_function("encode", |b| {
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
