//! Where the real services are: the environment's `AMQP_URL` and `INFLUX_URL`, or the local
//! ones that `deploy/services.sh` starts.

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Without a trailing slash, as configuration files write it.
pub fn influx_url() -> String {
    std::env::var("INFLUX_URL").unwrap_or_else(|_| "http://127.0.0.1:8086".into())
}
