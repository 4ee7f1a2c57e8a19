//! Graphite plaintext bodies (what the Graphite intake publishes, a timestamp on every line)
//! named by Graphite templates, as a pipeline's `graphite` decoder reads them.
//!
//! The input is `<templates> NUL <body>`, the templates being a separator line and then one
//! template per line (the configuration's `separator` and `templates`); or a body alone, named
//! by a fixed set in the InfluxDB documentation's style. A template set that does not parse is
//! checked no further. For a body:
//!
//! - no more outcomes than lines;
//! - a point encodes to one line that InfluxDB's parser reads back as the same point, and
//!   carries every extra tag that no template set;
//! - a refusal names its line by number, and carries that line as the part to dead-letter.

use std::sync::LazyLock;

use bytes::Bytes;
use sluice_core::ack::SourceMessage;
use sluice_core::path::{Decoded, Decoder as _};
use sluice_core::point::PointLimits;
use sluice_influx::{LineEncoder, Precision};
use sluice_normalise::{GraphiteLinesDecoder, TemplateSet};

use crate::line_protocol::assert_encodes_to_one_line;
use crate::split_at_nul;

/// The extra tags of the decoder, as a pipeline's `tags` setting adds them.
const EXTRA_TAGS: [(&str, &str); 2] = [("datacenter", "eu-1"), ("host", "intake")];

static DEFAULT_TEMPLATES: LazyLock<TemplateSet> = LazyLock::new(|| {
    let templates = [
        "servers.* .host.resource.measurement*",
        "stats.*.counters .measurement.field* type=counter",
        "*.app env.service.measurement.field",
        "measurement.measurement*",
    ];
    TemplateSet::parse("_", &templates.map(str::to_owned))
        .expect("the fuzz target's templates parse")
});

/// Decodes `data` as a Graphite body; panics when a property above does not hold.
pub fn graphite(data: &[u8]) {
    let (templates, body) = match split_at_nul(data) {
        Some((templates, body)) => {
            let Some(templates) = parse_templates(templates) else {
                return;
            };
            (templates, body)
        }
        None => (DEFAULT_TEMPLATES.clone(), data),
    };
    let extra_tags = EXTRA_TAGS.map(|(key, value)| (key.to_owned(), value.to_owned()));
    let mut decoder = GraphiteLinesDecoder::new(templates, extra_tags, PointLimits::default());
    let mut encoder = LineEncoder::new(Precision::Nanoseconds, PointLimits::default());
    let message = SourceMessage {
        body: Bytes::copy_from_slice(body),
        exchange: "graphite".to_owned(),
        routing_key: "graphite".to_owned(),
        redelivered: false,
    };
    let lines: Vec<&[u8]> = body.split(|byte| *byte == b'\n').collect();
    let mut outcomes = 0;
    decoder.decode_each(&message, &mut |decoded| {
        outcomes += 1;
        match decoded {
            Decoded::Item(point) => {
                for (key, value) in EXTRA_TAGS {
                    assert!(
                        point.tags.iter().any(|(tag, _)| tag.as_ref() == key),
                        "extra tag {key}={value} missing from {point:?}"
                    );
                }
                assert_encodes_to_one_line(&mut encoder, &point);
            }
            Decoded::Refused(refusal) => {
                let Some(part) = &refusal.part else {
                    panic!("a refusal without its line: {}", refusal.detail);
                };
                let named = refused_line(&refusal.detail).and_then(|number| lines.get(number - 1));
                let Some(line) = named else {
                    panic!("a refusal names no line of the body: {}", refusal.detail);
                };
                assert_eq!(
                    line.strip_suffix(b"\r").unwrap_or(line),
                    &part[..],
                    "the refused part is not the line named: {}",
                    refusal.detail
                );
            }
            Decoded::Control(never) => match never {},
        }
    });
    assert!(
        outcomes <= lines.len(),
        "{outcomes} outcomes for {} lines",
        lines.len()
    );
}

/// The 1-based line number a refusal's detail starts with (`line 3: ...`).
fn refused_line(detail: &str) -> Option<usize> {
    let (number, _) = detail.strip_prefix("line ")?.split_once(':')?;
    number.parse().ok().filter(|number| *number > 0)
}

/// A separator line, then one template per line; `None` when the set does not parse.
fn parse_templates(text: &[u8]) -> Option<TemplateSet> {
    let text = std::str::from_utf8(text).ok()?;
    let mut lines = text.split('\n');
    let separator = lines.next()?;
    let templates: Vec<String> = lines.map(str::to_owned).collect();
    TemplateSet::parse(separator, &templates).ok()
}
