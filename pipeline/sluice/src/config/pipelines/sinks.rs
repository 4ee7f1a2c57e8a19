//! `[sinks.<name>]`: where a pipeline's points are written. Every sink encodes points as line
//! protocol: InfluxDB 1.x, 2.x and 3.x take it, and the `amqp` sink publishes it for another
//! tier to read with the `line_protocol` decoder.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_core::path::PathLimits;
use sluice_core::point::PointLimits;
use sluice_influx::InfluxSettings;

use super::super::influx::{InfluxSink, RawInflux};

#[derive(Deserialize, Serialize, JsonSchema)]
pub struct RawSink {
    /// The sources and transforms whose points this sink writes.
    pub inputs: Vec<String>,
    #[serde(flatten)]
    pub kind: RawSinkKind,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RawSinkKind {
    /// InfluxDB: the same settings as `[influx]`; `api` picks 1.x, 2.x or 3.x.
    Influxdb(RawInflux),
}

/// A checked sink.
pub struct SinkSpec {
    pub name: String,
    pub kind: SinkKind,
    pub limits: PathLimits,
}

pub enum SinkKind {
    Influx {
        settings: InfluxSettings,
        create_database: bool,
    },
}

impl RawSink {
    pub(super) fn validate(
        &self,
        name: &str,
        fail: &mut impl FnMut(&str, String),
    ) -> Option<SinkSpec> {
        match &self.kind {
            RawSinkKind::Influxdb(influx) => {
                // `[influx]`'s checks name `influx.<key>`; here the field is this sink's.
                let mut renamed = |field: &str, message: String| {
                    let key = field.strip_prefix("influx.").unwrap_or(field);
                    fail(&format!("sinks.{name}.{key}"), message);
                };
                let InfluxSink {
                    settings,
                    create_database,
                    limits,
                } = influx.validate(PointLimits::default(), &mut renamed)?;
                Some(SinkSpec {
                    name: name.to_owned(),
                    kind: SinkKind::Influx {
                        settings,
                        create_database,
                    },
                    limits,
                })
            }
        }
    }
}
