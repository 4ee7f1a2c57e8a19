//! Points written the way the metrics path writes them: validated (the normaliser's job in the
//! path), encoded by the sink's own encoder, then written in one batch. A point refused on the
//! way gets its refusal as its outcome.

use sluice_core::outcome::ItemOutcome;
use sluice_core::path::{Encode, Sink};
use sluice_core::point::{Point, PointLimits};
use sluice_core::rejection::Refusal;
use sluice_influx::InfluxWriter;

pub(crate) async fn write_points(writer: &InfluxWriter, points: &[&Point]) -> Vec<ItemOutcome> {
    let limits = PointLimits::default();
    let mut encoder = writer.encoder();
    let mut outcomes = Vec::with_capacity(points.len());
    let mut lines = Vec::new();
    for point in points {
        let encoded = point
            .borrowed()
            .validated(&limits)
            .map_err(|invalid| Refusal::of(&invalid))
            .and_then(|valid| writer.encode(&mut encoder, &valid));
        match encoded {
            Ok(line) => {
                outcomes.push(None);
                lines.push(line);
            }
            Err(refusal) => outcomes.push(Some(ItemOutcome::from(refusal))),
        }
    }
    let mut written = writer
        .write(&lines.iter().collect::<Vec<_>>())
        .await
        .into_iter();
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome
                .or_else(|| written.next())
                .expect("one outcome each")
        })
        .collect()
}
