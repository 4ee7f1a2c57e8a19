//! The writer's settings for a test database on the real InfluxDB 1.x (the database itself is
//! `sluice_testing::influx::TestDatabase`).

use sluice_influx::{InfluxApi, InfluxSettings};
use sluice_testing::influx::TestDatabase;

pub(crate) trait WriterSettings {
    /// The v1 write API into this database, without credentials.
    fn settings(&self) -> InfluxSettings;
}

impl WriterSettings for TestDatabase {
    fn settings(&self) -> InfluxSettings {
        InfluxSettings::new(
            self.url.clone(),
            InfluxApi::V1 {
                database: self.name.clone(),
                retention_policy: None,
                username: None,
                password: None,
            },
        )
    }
}
