//! Where the real services are: the environment's `AMQP_URL` and `INFLUX_URL`, or the local
//! ones that `deploy/services.sh` starts.

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Without a trailing slash, as configuration files write it.
pub fn influx_url() -> String {
    std::env::var("INFLUX_URL").unwrap_or_else(|_| "http://127.0.0.1:8086".into())
}

/// Has the broker close every connection whose client properties contain `marker` (sluice
/// names its connections `sluice <role> pid=<pid>`), as a broker restart or a network cut
/// would. Answers how many it closed.
pub fn close_broker_connections(marker: &str) -> usize {
    use std::process::Command;
    let listing = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl is needed to sever connections: install rabbitmq-server");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let mut closed = 0;
    for line in listing.lines().filter(|line| line.contains(marker)) {
        let Some(connection) = line.split_whitespace().next() else {
            continue;
        };
        let status = Command::new("rabbitmqctl")
            .args(["-q", "close_connection", connection, "severed by a test"])
            .status()
            .expect("rabbitmqctl");
        assert!(status.success(), "close_connection {connection}");
        closed += 1;
    }
    closed
}
