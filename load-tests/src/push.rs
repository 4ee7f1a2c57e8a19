//! Push inputs under load: batches of line protocol POSTed to an InfluxDB write endpoint (sluice's
//! `influxdb_write` source, or InfluxDB itself), or Graphite plaintext written to a TCP listener.
//!
//! Two paces:
//!
//! - **Open loop** ([`Pace::Open`]): request `i` is due at `t0 + i / rate` on a fixed clock
//!   ([`crate::schedule`]), and is sent then whether or not earlier requests were answered. Its
//!   latency runs from that intended time to its answer, so a target that stalls is charged for
//!   every request that waited behind the stall (no coordinated omission). At most
//!   `max_in_flight` requests are unanswered at once, which keeps the run bounded: when that
//!   many are waiting the next one is sent late, and its latency shows it.
//! - **Closed loop** ([`Pace::Closed`]): `concurrency` senders, each sending its next request as
//!   soon as the last was answered; the fastest the target takes them. Latency here is each
//!   request's own round trip, since there is no schedule to fall behind.
//!
//! The lines are [`Lines`]: `hosts x collectors` series, each reporting once per second of
//! timestamps, so that every line is a point of its own in InfluxDB and a run's points can be
//! counted there. Graphite has no answer: a batch counts as sent once the socket took it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

use crate::latency::{LatencyHistogram, LatencySummary};
use crate::schedule::{EpochClock, Schedule, latency_micros};

/// The first request is due this long after the run starts, so that it is not late already.
const LEAD: Duration = Duration::from_millis(20);

/// The generated lines: line `n` is series `n % (hosts x collectors)` at second
/// `base_seconds + n / (hosts x collectors)`, with `value = n`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lines {
    /// The measurement (line protocol) or first path node (Graphite) of every line: a run's
    /// phases use one each, so that their points can be counted apart in one database.
    pub measurement: String,
    pub hosts: usize,
    pub collectors: usize,
    /// Lines per request.
    pub batch: usize,
    /// The first line's timestamp, in seconds since the Unix epoch.
    pub base_seconds: u64,
}

impl Lines {
    fn series(&self) -> u64 {
        (self.hosts * self.collectors).max(1) as u64
    }

    /// Lines in the first `requests` requests.
    pub fn lines_in(&self, requests: u64) -> u64 {
        requests * self.batch as u64
    }

    fn line_parts(&self, line: u64) -> (usize, usize, u64) {
        let series = line % self.series();
        let host = series as usize % self.hosts.max(1);
        let collector = series as usize / self.hosts.max(1);
        (host, collector, self.base_seconds + line / self.series())
    }

    /// Request `request`'s body as line protocol, timestamps in seconds (`precision=s`):
    /// `push,host=host_00001,collector=c003 value=1 1780000000`.
    pub fn line_protocol(&self, request: u64) -> String {
        let mut body = String::with_capacity(self.batch * 64);
        for line in self.batch_range(request) {
            let (host, collector, seconds) = self.line_parts(line);
            // A field without a suffix is a float in line protocol.
            body.push_str(&format!(
                "{},host=host_{host:05},collector=c{collector:03} value={line} {seconds}\n",
                self.measurement
            ));
        }
        body
    }

    /// Request `request`'s body as Graphite plaintext: `push.host_00001.c003 1 1780000000`.
    pub fn graphite(&self, request: u64) -> String {
        let mut body = String::with_capacity(self.batch * 48);
        for line in self.batch_range(request) {
            let (host, collector, seconds) = self.line_parts(line);
            body.push_str(&format!(
                "{}.host_{host:05}.c{collector:03} {line} {seconds}\n",
                self.measurement
            ));
        }
        body
    }

    fn batch_range(&self, request: u64) -> std::ops::Range<u64> {
        let first = request * self.batch as u64;
        first..first + self.batch as u64
    }
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// `rate` requests per second on a fixed schedule, at most `max_in_flight` unanswered.
    Open { rate: f64, max_in_flight: usize },
    /// `concurrency` senders, each waiting for its answer before its next request.
    Closed { concurrency: usize },
}

impl Pace {
    pub fn describe(&self) -> String {
        match self {
            Pace::Open {
                rate,
                max_in_flight,
            } => format!("open loop at {rate:.0} req/s (at most {max_in_flight} in flight)"),
            Pace::Closed { concurrency } => format!("closed loop, {concurrency} in flight"),
        }
    }
}

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The HTTP status it was answered with.
    Answered(u16),
    /// Written to a socket that gives no answer (Graphite).
    Sent,
    /// No answer: the connection failed, or the request timed out.
    Failed,
}

/// Requests by what happened to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statuses {
    /// 204: InfluxDB wrote the lines; sluice's broker confirmed them.
    pub no_content: u64,
    /// 429: sluice's publisher was busy.
    pub too_many_requests: u64,
    /// 503: sluice's broker was unavailable or refused the publish (a full queue).
    pub unavailable: u64,
    /// Any other status.
    pub other: u64,
    /// Graphite batches the socket took.
    pub sent: u64,
    /// No answer at all.
    pub failed: u64,
}

impl Statuses {
    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Answered(204) => self.no_content += 1,
            Outcome::Answered(429) => self.too_many_requests += 1,
            Outcome::Answered(503) => self.unavailable += 1,
            Outcome::Answered(_) => self.other += 1,
            Outcome::Sent => self.sent += 1,
            Outcome::Failed => self.failed += 1,
        }
    }

    fn add(&mut self, other: &Statuses) {
        self.no_content += other.no_content;
        self.too_many_requests += other.too_many_requests;
        self.unavailable += other.unavailable;
        self.other += other.other;
        self.sent += other.sent;
        self.failed += other.failed;
    }

    /// Requests the target took: answered 204, or (Graphite) written.
    pub fn accepted(&self) -> u64 {
        self.no_content + self.sent
    }

    pub fn total(&self) -> u64 {
        self.accepted() + self.too_many_requests + self.unavailable + self.other + self.failed
    }

    pub fn line(&self) -> String {
        let mut line = format!(
            "204: {}, 429: {}, 503: {}, other: {}, no answer: {}",
            self.no_content, self.too_many_requests, self.unavailable, self.other, self.failed
        );
        if self.sent > 0 {
            line = format!("sent (no answer expected): {}, {line}", self.sent);
        }
        line
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "204": self.no_content,
            "429": self.too_many_requests,
            "503": self.unavailable,
            "other": self.other,
            "sent": self.sent,
            "failed": self.failed,
        })
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct PushReport {
    pub pace: Pace,
    pub requests: u64,
    pub lines_per_request: usize,
    pub statuses: Statuses,
    /// Open loop: intended send to answer; closed loop: send to answer.
    pub latency: LatencySummary,
    /// From the first request's intended send (open loop) or actual send (closed loop) to the
    /// last answer, in epoch microseconds.
    pub started_micros: u64,
    pub finished_micros: u64,
}

impl PushReport {
    pub fn elapsed(&self) -> Duration {
        Duration::from_micros(self.finished_micros.saturating_sub(self.started_micros))
    }

    /// Requests answered per second, from the first send to the last answer.
    pub fn requests_per_second(&self) -> f64 {
        self.statuses.total() as f64 / self.elapsed().as_secs_f64().max(1e-9)
    }

    /// Lines the target took, per second, from the first send to the last answer.
    pub fn accepted_lines_per_second(&self) -> f64 {
        self.accepted_lines() as f64 / self.elapsed().as_secs_f64().max(1e-9)
    }

    pub fn accepted_lines(&self) -> u64 {
        self.statuses.accepted() * self.lines_per_request as u64
    }

    pub fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "{}: {} requests of {} lines in {:.2}s ({:.0} req/s, {:.0} lines/s accepted)",
                self.pace.describe(),
                self.requests,
                self.lines_per_request,
                self.elapsed().as_secs_f64(),
                self.requests_per_second(),
                self.accepted_lines_per_second()
            ),
            format!("answers: {}", self.statuses.line()),
            format!("latency: {}", self.latency.line_of("requests")),
        ]
    }

    pub fn to_json(&self) -> serde_json::Value {
        let pace = match self.pace {
            Pace::Open {
                rate,
                max_in_flight,
            } => json!({ "open_loop": { "rate": rate, "max_in_flight": max_in_flight } }),
            Pace::Closed { concurrency } => {
                json!({ "closed_loop": { "concurrency": concurrency } })
            }
        };
        json!({
            "pace": pace,
            "requests": self.requests,
            "lines_per_request": self.lines_per_request,
            "statuses": self.statuses.to_json(),
            "latency": self.latency.to_json(),
            "seconds": self.elapsed().as_secs_f64(),
            "requests_per_second": self.requests_per_second(),
            "accepted_lines": self.accepted_lines(),
            "accepted_lines_per_second": self.accepted_lines_per_second(),
        })
    }
}

/// Where the requests go.
#[derive(Debug, Clone)]
pub enum Target {
    /// An InfluxDB write URL with its query, e.g. `http://127.0.0.1:8186/write?db=x&precision=s`.
    Http(String),
    /// A Graphite plaintext TCP listener, written to over `connections` connections.
    GraphiteTcp {
        address: SocketAddr,
        connections: usize,
    },
}

/// What a run sends, how fast and where.
#[derive(Debug, Clone)]
pub struct PushSettings {
    pub target: Target,
    pub lines: Lines,
    pub requests: u64,
    pub pace: Pace,
    /// An HTTP request without an answer by then counts as failed.
    pub request_timeout: Duration,
}

/// Runs `settings` to the end and reports it. A run that could not start (a bad rate, a
/// Graphite listener that refuses connections) is an error; requests that fail are counted.
pub async fn run(settings: &PushSettings, clock: EpochClock) -> anyhow::Result<PushReport> {
    if settings.lines.batch == 0 {
        bail!("a request needs at least one line");
    }
    if settings.lines.hosts == 0 || settings.lines.collectors == 0 {
        bail!("the lines need at least one host and one collector");
    }
    let lines = Arc::new(settings.lines.clone());
    let collected = match &settings.target {
        Target::Http(url) => {
            let client = reqwest::Client::builder()
                .timeout(settings.request_timeout)
                .build()
                .context("building the HTTP client")?;
            let url: Arc<str> = Arc::from(url.as_str());
            let send = move |request: u64| {
                let (client, url, lines) = (client.clone(), Arc::clone(&url), Arc::clone(&lines));
                async move {
                    let body = lines.line_protocol(request);
                    match client.post(&*url).body(body).send().await {
                        // The body is read so that the connection goes back to the pool.
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let _ = response.bytes().await;
                            Outcome::Answered(status)
                        }
                        Err(_) => Outcome::Failed,
                    }
                }
            };
            drive(settings, clock, send).await?
        }
        Target::GraphiteTcp {
            address,
            connections,
        } => {
            let mut streams = Vec::with_capacity(*connections);
            for _ in 0..(*connections).max(1) {
                let stream = TcpStream::connect(address)
                    .await
                    .with_context(|| format!("connecting to the Graphite listener {address}"))?;
                streams.push(Mutex::new(stream));
            }
            let streams = Arc::new(streams);
            let pool = Arc::clone(&streams);
            // Request i always goes to connection i % n, whose lock queues writes in order.
            let send = move |request: u64| {
                let (streams, lines) = (Arc::clone(&pool), Arc::clone(&lines));
                async move {
                    let body = lines.graphite(request);
                    let mut stream = streams[request as usize % streams.len()].lock().await;
                    match stream.write_all(body.as_bytes()).await {
                        Ok(()) => Outcome::Sent,
                        Err(_) => Outcome::Failed,
                    }
                }
            };
            let collected = drive(settings, clock, send).await?;
            // Closed, so that the listener reads every line to its end.
            for stream in streams.iter() {
                let _ = stream.lock().await.shutdown().await;
            }
            collected
        }
    };
    Ok(PushReport {
        pace: settings.pace,
        requests: settings.requests,
        lines_per_request: settings.lines.batch,
        statuses: collected.statuses,
        latency: collected.latency.summary(),
        started_micros: collected.started_micros,
        finished_micros: collected.finished_micros,
    })
}

/// What the senders recorded.
struct Collected {
    latency: LatencyHistogram,
    statuses: Statuses,
    started_micros: u64,
    finished_micros: u64,
}

impl Collected {
    fn new(started_micros: u64) -> anyhow::Result<Self> {
        Ok(Self {
            latency: LatencyHistogram::new()?,
            statuses: Statuses::default(),
            started_micros,
            finished_micros: started_micros,
        })
    }

    fn record(&mut self, from_micros: u64, outcome: Outcome, answered_micros: u64) {
        self.latency
            .record_micros(latency_micros(from_micros, answered_micros));
        self.statuses.record(outcome);
        self.finished_micros = self.finished_micros.max(answered_micros);
    }

    fn add(&mut self, other: &Collected) -> anyhow::Result<()> {
        self.latency.add(&other.latency)?;
        self.statuses.add(&other.statuses);
        self.started_micros = self.started_micros.min(other.started_micros);
        self.finished_micros = self.finished_micros.max(other.finished_micros);
        Ok(())
    }
}

async fn drive<F, Fut>(
    settings: &PushSettings,
    clock: EpochClock,
    send: F,
) -> anyhow::Result<Collected>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    match settings.pace {
        Pace::Open {
            rate,
            max_in_flight,
        } => open_loop(settings.requests, rate, max_in_flight, clock, send).await,
        Pace::Closed { concurrency } => {
            closed_loop(settings.requests, concurrency, clock, send).await
        }
    }
}

async fn open_loop<F, Fut>(
    requests: u64,
    rate: f64,
    max_in_flight: usize,
    clock: EpochClock,
    send: F,
) -> anyhow::Result<Collected>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    if max_in_flight == 0 {
        bail!("the open loop needs room for at least one request in flight");
    }
    let start = clock.now_micros() + LEAD.as_micros() as u64;
    let schedule = Schedule::new(start, rate, requests)?;
    let mut collected = Collected::new(start)?;
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let mut tasks = JoinSet::new();
    for request in 0..requests {
        let intended = schedule.intended_micros(request);
        tokio::time::sleep_until(clock.instant_at(intended).into()).await;
        // When max_in_flight requests are unanswered, this waits for one of them: the request
        // goes out late, and its latency (from `intended`) counts the wait.
        let permit = Arc::clone(&in_flight)
            .acquire_owned()
            .await
            .context("the in-flight limit closed")?;
        let sending = send(request);
        tasks.spawn(async move {
            let outcome = sending.await;
            drop(permit);
            (intended, outcome, clock.now_micros())
        });
        // Answers already in are recorded now, so that finished tasks do not pile up.
        while let Some(done) = tasks.try_join_next() {
            let (intended, outcome, answered) = done.context("a request task panicked")?;
            collected.record(intended, outcome, answered);
        }
    }
    while let Some(done) = tasks.join_next().await {
        let (intended, outcome, answered) = done.context("a request task panicked")?;
        collected.record(intended, outcome, answered);
    }
    Ok(collected)
}

async fn closed_loop<F, Fut>(
    requests: u64,
    concurrency: usize,
    clock: EpochClock,
    send: F,
) -> anyhow::Result<Collected>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    if concurrency == 0 {
        bail!("the closed loop needs at least one sender");
    }
    let started = clock.now_micros();
    let next = Arc::new(AtomicU64::new(0));
    let mut senders = JoinSet::new();
    for _ in 0..concurrency {
        let (next, send) = (Arc::clone(&next), send.clone());
        senders.spawn(async move {
            let mut collected = Collected::new(started)?;
            loop {
                let request = next.fetch_add(1, Ordering::Relaxed);
                if request >= requests {
                    return anyhow::Ok(collected);
                }
                let sent = clock.now_micros();
                let outcome = send(request).await;
                collected.record(sent, outcome, clock.now_micros());
            }
        });
    }
    let mut all = Collected::new(started)?;
    while let Some(done) = senders.join_next().await {
        all.add(&done.context("a sender panicked")??)?;
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Lines {
        Lines {
            measurement: "push".to_owned(),
            hosts: 2,
            collectors: 3,
            batch: 4,
            base_seconds: 1_780_000_000,
        }
    }

    #[test]
    fn each_line_is_a_point_of_its_own() {
        let lines = lines();
        // Six series: lines 0..6 at the first second, 6..12 at the next.
        let body = lines.line_protocol(1);
        let written: Vec<&str> = body.lines().collect();
        assert_eq!(
            written,
            [
                "push,host=host_00000,collector=c002 value=4 1780000000",
                "push,host=host_00001,collector=c002 value=5 1780000000",
                "push,host=host_00000,collector=c000 value=6 1780000001",
                "push,host=host_00001,collector=c000 value=7 1780000001",
            ]
        );
        let points: std::collections::BTreeSet<(String, String)> = (0..30)
            .flat_map(|request| {
                lines
                    .line_protocol(request)
                    .lines()
                    .map(|line| {
                        let (series, rest) = line.split_once(' ').expect("fields");
                        let (_, time) = rest.split_once(' ').expect("time");
                        (series.to_owned(), time.to_owned())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(points.len(), 120, "distinct (series, time) for every line");
        assert_eq!(lines.lines_in(30), 120);
    }

    #[test]
    fn every_line_parses_as_line_protocol() {
        let body = lines().line_protocol(7);
        let parsed: Vec<_> = influxdb_line_protocol::parse_lines(&body).collect();
        assert_eq!(parsed.len(), 4);
        assert!(parsed.iter().all(Result::is_ok), "{parsed:?}");
    }

    #[test]
    fn graphite_lines_name_the_same_series() {
        assert_eq!(
            lines().graphite(0).lines().next(),
            Some("push.host_00000.c000 0 1780000000")
        );
    }

    #[test]
    fn statuses_sort_the_answers() {
        let mut statuses = Statuses::default();
        for outcome in [
            Outcome::Answered(204),
            Outcome::Answered(204),
            Outcome::Answered(429),
            Outcome::Answered(503),
            Outcome::Answered(400),
            Outcome::Failed,
        ] {
            statuses.record(outcome);
        }
        assert_eq!(statuses.accepted(), 2);
        assert_eq!(statuses.total(), 6);
        assert_eq!(
            statuses.line(),
            "204: 2, 429: 1, 503: 1, other: 1, no answer: 1"
        );
    }
}
