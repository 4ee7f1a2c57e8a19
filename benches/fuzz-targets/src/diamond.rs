//! Diamond metric bodies (wire formats, section 1), as the metrics path normalises them.
//!
//! The whole input is one message body. Each body goes through three normalisers: the default
//! templates, templates that make tags and a field, and the old consumer's naming. For each:
//!
//! - the hot path (a reused scratch, as `DiamondDecoder` decodes) and the owned path (the CLI)
//!   agree, point for point and error for error;
//! - a point is valid under the normaliser's limits and encodes to one line that InfluxDB's
//!   parser reads back as the same point;
//! - a control message serialises to JSON;
//! - a refusal's text does not quote the whole body.

use std::sync::LazyLock;

use sluice_core::point::PointLimits;
use sluice_core::rejection::Rejection as _;
use sluice_influx::{LineEncoder, Precision};
use sluice_normalise::{Naming, Normalised, NormalisedRef, Normaliser, Scratch, TemplateSet};

use crate::line_protocol::assert_encodes_to_one_line;

/// Bodies at least this long are long enough that an error quoting all of it is a leak, not a
/// coincidence of a short body being one short field.
const QUOTED_BODY_MIN_BYTES: usize = 128;

static NORMALISERS: LazyLock<Vec<Normaliser>> = LazyLock::new(|| {
    let tagging = TemplateSet::parse(
        ".",
        &[
            "cpu.* measurement.field*".to_owned(),
            "*.memory measurement.host.field* unit=bytes".to_owned(),
            "measurement.measurement.field*".to_owned(),
        ],
    )
    .expect("the fuzz target's templates parse");
    [
        Naming::default(),
        Naming::Templates(tagging),
        Naming::CloudifyLegacy,
    ]
    .into_iter()
    .map(|naming| Normaliser::new(naming, PointLimits::default()))
    .collect()
});

/// Normalises `data` as one Diamond body; panics when a property above does not hold.
pub fn diamond(data: &[u8]) {
    let mut scratch = Scratch::default();
    for normaliser in NORMALISERS.iter() {
        let owned = normaliser.normalise(data);
        // The scratch still holds the previous normaliser's body: the hot path reuses it so.
        let borrowed = normaliser.normalise_borrowed(data, &mut scratch, |_| {});
        match (borrowed, owned) {
            (Ok(NormalisedRef::Point(point)), Ok(Normalised::Point(owned))) => {
                assert_eq!(point.to_point(), owned, "hot and owned paths differ");
                assert!(
                    owned.validate(&PointLimits::default()).is_ok(),
                    "an invalid point came out: {owned:?}"
                );
                let mut encoder = LineEncoder::new(Precision::Nanoseconds, PointLimits::default());
                assert_encodes_to_one_line(&mut encoder, &point);
            }
            (Ok(NormalisedRef::Control(control)), Ok(Normalised::Control(owned))) => {
                assert_eq!(control, owned, "hot and owned paths differ");
                if let Err(error) = serde_json::to_string(&control) {
                    panic!("a control message does not serialise: {error}: {control:?}");
                }
            }
            (Err(error), Err(owned)) => {
                let text = error.to_string();
                assert_eq!(text, owned.to_string(), "hot and owned paths differ");
                assert_eq!(error.reason(), owned.reason());
                if data.len() >= QUOTED_BODY_MIN_BYTES
                    && let Ok(body) = std::str::from_utf8(data)
                {
                    assert!(!text.contains(body), "the error quotes the body: {text}");
                }
            }
            (borrowed, owned) => {
                panic!("hot and owned paths differ: {borrowed:?} and {owned:?}")
            }
        }
    }
}
