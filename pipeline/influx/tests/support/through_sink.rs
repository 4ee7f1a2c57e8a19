//! Points written the way the metrics path writes them: validated (the normaliser's job in the
//! path), then encoded by the sink's own encoder and written in one batch. A point refused on
//! the way gets its refusal as its outcome.

use sluice_core::outcome::ItemOutcome;
use sluice_core::point::{Point, PointLimits, ValidPoint};
use sluice_core::rejection::Refusal;
use sluice_influx::InfluxWriter;
use sluice_testing::sink::encode_and_write;

pub(crate) async fn write_points(writer: &InfluxWriter, points: &[&Point]) -> Vec<ItemOutcome> {
    let limits = PointLimits::default();
    let validated = points.iter().map(|point| {
        point
            .borrowed()
            .validated(&limits)
            .map_err(|invalid| Refusal::of(&invalid))
    });
    encode_and_write::<_, ValidPoint<'_>, _>(writer, validated).await
}
