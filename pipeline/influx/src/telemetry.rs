//! The one place where what happens to InfluxDB requests is both logged and counted, so the
//! two never drift apart.
//!
//! Metrics:
//! - `sluice_influx_requests_total{status}`: write requests by answer, `status` being the HTTP
//!   status code or `error` when no answer came (connection refused, timeout).
//! - `sluice_influx_request_bytes`: histogram of write request bodies as sent (after gzip).
//! - `sluice_influx_bisections_total`: refused requests that were split to isolate bad lines.

/// A write request is about to be sent with a body of `bytes` bytes.
pub(crate) fn write_request_sent(bytes: usize) {
    metrics::histogram!("sluice_influx_request_bytes").record(bytes as f64);
}

/// A write request was answered with `status`.
pub(crate) fn write_request_answered(status: u16) {
    metrics::counter!("sluice_influx_requests_total", "status" => status.to_string()).increment(1);
}

/// A write request got no answer.
pub(crate) fn write_request_failed(endpoint: &str, detail: &str) {
    metrics::counter!("sluice_influx_requests_total", "status" => "error").increment(1);
    tracing::debug!(endpoint, error = detail, "influxdb write request failed");
}

/// The server refused the credentials. Logged at error level on every occurrence: it is
/// misconfiguration, and the deliveries stay held (retried, not dead-lettered) until it is fixed.
pub(crate) fn authentication_failed(endpoint: &str, status: u16) {
    tracing::error!(
        endpoint,
        status,
        "influxdb refused the credentials; writes are held until the username/password or \
         token is fixed"
    );
}

/// A request of `lines` lines was refused, and is split in halves to find the bad ones.
pub(crate) fn refused_request_bisected(lines: usize, status: u16, message: &str) {
    metrics::counter!("sluice_influx_bisections_total").increment(1);
    tracing::debug!(
        lines,
        status,
        error = message,
        "influxdb refused a request, splitting it"
    );
}

/// InfluxDB 3 wrote a request of `lines` lines but for `refused`, which it named.
pub(crate) fn partial_write(lines: usize, refused: usize) {
    tracing::debug!(
        lines,
        refused,
        "influxdb wrote a request in part and named the refused lines"
    );
}

/// InfluxDB 3 (`accept_partial=false`) refused a request whole for the line at `line`; the
/// others are sent again.
pub(crate) fn refused_whole(lines: usize, line: usize) {
    tracing::debug!(
        lines,
        line = line + 1,
        "influxdb refused a request for one line; sending the others again"
    );
}

/// The database (v1, v3) does not exist; the writer creates it and retries.
pub(crate) fn database_missing(database: &str) {
    tracing::warn!(database, "influxdb database not found; creating it");
}

/// Creating the missing database failed; the writes stay held and try again.
pub(crate) fn database_creation_failed(database: &str, error: &crate::InfluxError) {
    tracing::warn!(database, error = %error, "could not create the influxdb database");
}
