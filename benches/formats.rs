//! The many-point decoders of AMQP sources (`sluice_normalise::formats`): one body of 1000
//! Graphite lines, of 1000 line-protocol lines, and a JSON array of 1000 objects, each decoded
//! to validated points. One group per decoder, throughput in body bytes.
//!
//! `cargo bench -p sluice-benches --bench formats` (single-threaded, as criterion runs).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_core::ack::SourceMessage;
use sluice_core::path::{Decoded, Decoder};
use sluice_core::point::{PointLimits, ValidPoint};
use sluice_normalise::{
    GraphiteLinesDecoder, JsonDecoder, JsonMappingSettings, LineProtocolDecoder, MeasurementSource,
    TemplateSet, TimeFormat, TimestampPrecision,
};

const POINTS: usize = 1000;

fn message(body: String) -> SourceMessage {
    SourceMessage {
        body: body.into(),
        ..SourceMessage::default()
    }
}

/// Decodes `message` and counts its points, as the encode stage would hand each on.
fn count_points<D>(decoder: &mut D, message: &SourceMessage) -> usize
where
    D: for<'a> Decoder<Item<'a> = ValidPoint<'a>, Control = Infallible>,
{
    let mut points = 0;
    decoder.decode_each(message, &mut |decoded| {
        if let Decoded::Item(point) = decoded {
            black_box(&point);
            points += 1;
        }
    });
    points
}

fn bench_decoder<D>(c: &mut Criterion, group_name: &str, decoder: &mut D, body: String)
where
    D: for<'a> Decoder<Item<'a> = ValidPoint<'a>, Control = Infallible>,
{
    let message = message(body);
    assert_eq!(
        count_points(decoder, &message),
        POINTS,
        "every line is valid"
    );
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Bytes(message.body.len() as u64));
    group.bench_function("decode_each", |b| {
        b.iter(|| black_box(count_points(decoder, &message)))
    });
    group.finish();
}

fn graphite_lines(c: &mut Criterion) {
    let templates = TemplateSet::parse(".", &["servers.* .host.measurement.field*".to_owned()])
        .expect("valid templates");
    let mut decoder = GraphiteLinesDecoder::new(
        templates,
        [("source".to_owned(), "graphite".to_owned())],
        PointLimits::default(),
    );
    let body: String = (0..POINTS)
        .map(|index| {
            format!(
                "servers.web{:03}.cpu.total.user {}.25 {}\n",
                index % 100,
                index,
                1_700_000_000 + index
            )
        })
        .collect();
    bench_decoder(c, "graphite_lines", &mut decoder, body);
}

fn line_protocol(c: &mut Criterion) {
    let mut decoder =
        LineProtocolDecoder::new(TimestampPrecision::Nanoseconds, PointLimits::default());
    let body: String = (0..POINTS)
        .map(|index| {
            format!(
                "cpu,host=web{:03},region=eu-west usage_user={}.5,usage_system=3i,up=true {}\n",
                index % 100,
                index,
                1_700_000_000_000_000_000_i64 + index as i64
            )
        })
        .collect();
    bench_decoder(c, "line_protocol", &mut decoder, body);
}

fn json_mapping(c: &mut Criterion) {
    let mapping = JsonMappingSettings {
        measurement: MeasurementSource::Pointer("/name".into()),
        tags: BTreeMap::from([("host".into(), "/host".into())]),
        fields: BTreeMap::from([
            ("user".into(), "/cpu/user".into()),
            ("system".into(), "/cpu/system".into()),
        ]),
        time: "/time".into(),
        time_format: TimeFormat::UnixMs,
    }
    .validate()
    .expect("valid mapping");
    let mut decoder = JsonDecoder::new(mapping, PointLimits::default());
    let objects: Vec<serde_json::Value> = (0..POINTS)
        .map(|index| {
            serde_json::json!({
                "name": "cpu",
                "host": format!("web{:03}", index % 100),
                "cpu": {"user": index as f64 + 0.5, "system": 3},
                "time": 1_700_000_000_000_i64 + index as i64,
            })
        })
        .collect();
    let body = serde_json::Value::Array(objects).to_string();
    bench_decoder(c, "json_mapping", &mut decoder, body);
}

criterion_group!(benches, graphite_lines, line_protocol, json_mapping);
criterion_main!(benches);
