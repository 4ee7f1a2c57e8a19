//! `fake-influxdb3 [ADDRESS]`: the InfluxDB 3 Core double ([`FakeInfluxDb3`]) as a process, on
//! `ADDRESS` (default `127.0.0.1:8181`, 3 Core's port), so that the example tier
//! (`deploy/run.sh --tier`) has a v3 sink to write to on a machine where 3 Core cannot be
//! installed. It is a test double: it keeps what it is written in memory only, and answers
//! `GET /api/v3/query_sql?db=..&q=SELECT * FROM <table>` and nothing else of SQL. It runs until
//! it is killed.

use std::net::SocketAddr;

use sluice_testing::influx3::FakeInfluxDb3;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let text = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8181".to_owned());
    let address: SocketAddr = match text.parse() {
        Ok(address) => address,
        Err(error) => {
            eprintln!("fake-influxdb3: {text:?} is not host:port: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let server = match FakeInfluxDb3::start_on(address).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("fake-influxdb3: cannot listen on {address}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!(
        "fake-influxdb3: the InfluxDB 3 Core test double listens on {} (in memory only; \
         GET /api/v3/query_sql?db=DB&q=SELECT * FROM TABLE reads it back)",
        server.url
    );
    std::future::pending::<()>().await;
    std::process::ExitCode::SUCCESS
}
