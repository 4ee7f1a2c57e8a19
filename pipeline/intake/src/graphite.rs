//! Graphite's plaintext protocol (`path value timestamp\n`), over TCP and UDP, in front of the
//! broker.
//!
//! Lines are batched (at most `batch_max_lines` lines and `batch_max_bytes` bytes, and no
//! longer than `linger` after the first) and each batch is published as one message: the
//! lines as sent, newline-separated. A line without a timestamp, or with Graphite's `-1`
//! ("now"), gets the time it was received (in seconds) written in, because the consumer must
//! not assign times: a redelivered message would otherwise write its points a second time.
//!
//! - **TCP**: each connection batches and publishes its own lines, and does not read its
//!   socket while a publish is outstanding or being retried (with backoff, until it is
//!   confirmed). A slow broker or pipeline so fills the sender's TCP window instead of this
//!   process's memory. At most `max_connections` connections are served at once; more wait
//!   in the listen backlog.
//! - **UDP** cannot be slowed down, so batches go through a queue of `udp_queue_batches`
//!   batches to one publishing task; a batch that finds the queue full is dropped and counted
//!   (`sluice_intake_dropped_total{input="graphite_udp", reason="overloaded"}`).
//!
//! A line longer than `max_line_bytes` is discarded up to its newline, counted
//! (`refused{reason="line_too_long"}`) and logged at most once a minute; a line that is not
//! `path value [timestamp]` with a numeric value and timestamp is counted as
//! `refused{reason="malformed"}`.
//!
//! On shutdown the listeners stop accepting, every connection publishes what it holds (one
//! attempt, since a Graphite sender has no acknowledgement to wait for) and closes.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use sluice_amqp::confirmed::ConfirmedPublisher;
use sluice_core::retry::RetryPolicy;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::telemetry::{self, RateLimitedLog};

/// The `input` labels of this input's metrics.
pub const TCP_INPUT: &str = "graphite_tcp";
pub const UDP_INPUT: &str = "graphite_udp";
/// The content type of the published messages.
pub const CONTENT_TYPE: &str = "text/plain; format=graphite";

/// The bytes read from a TCP socket at once, and the largest UDP datagram.
const READ_CHUNK_BYTES: usize = 64 * 1024;

static OVERLONG_LOG: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(60));
static MALFORMED_LOG: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(60));

#[derive(Debug, Clone)]
pub struct GraphiteSettings {
    /// Where to listen for TCP; `None` for no TCP listener.
    pub tcp: Option<SocketAddr>,
    /// Where to listen for UDP; `None` for no UDP socket.
    pub udp: Option<SocketAddr>,
    /// The routing key of every published message.
    pub routing_key: String,
    /// TCP connections served at once.
    pub max_connections: NonZeroUsize,
    /// Longer lines are discarded.
    pub max_line_bytes: NonZeroUsize,
    pub batch_max_lines: NonZeroUsize,
    pub batch_max_bytes: NonZeroUsize,
    /// How long a batch waits for more lines after its first.
    pub linger: Duration,
    /// Backoff between attempts to publish a batch the broker did not take.
    pub publish_retry: RetryPolicy,
    /// UDP batches waiting to be published; past this, batches are dropped (and counted).
    pub udp_queue_batches: NonZeroUsize,
}

impl GraphiteSettings {
    /// The defaults, with no listener yet (set `tcp` and `udp`): 1024 connections, lines of at
    /// most 4 KiB, batches of 5000 lines or 1 MiB or 100 ms, retries from 100 ms up to 10 s,
    /// 16 UDP batches queued.
    pub fn new(routing_key: impl Into<String>) -> Self {
        Self {
            tcp: None,
            udp: None,
            routing_key: routing_key.into(),
            max_connections: NonZeroUsize::new(1024).expect("non-zero"),
            max_line_bytes: NonZeroUsize::new(4096).expect("non-zero"),
            batch_max_lines: NonZeroUsize::new(5000).expect("non-zero"),
            batch_max_bytes: NonZeroUsize::new(1 << 20).expect("non-zero"),
            linger: Duration::from_millis(100),
            publish_retry: RetryPolicy::default(),
            udp_queue_batches: NonZeroUsize::new(16).expect("non-zero"),
        }
    }
}

/// The listeners, bound but not yet serving: bind first to learn the ports (tests bind port 0).
#[derive(Debug)]
pub struct GraphiteListeners {
    tcp: Option<TcpListener>,
    udp: Option<UdpSocket>,
}

impl GraphiteListeners {
    pub async fn bind(settings: &GraphiteSettings) -> anyhow::Result<Self> {
        let tcp = match settings.tcp {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding the Graphite TCP listener to {address}"))?,
            ),
            None => None,
        };
        let udp = match settings.udp {
            Some(address) => Some(
                UdpSocket::bind(address)
                    .await
                    .with_context(|| format!("binding the Graphite UDP socket to {address}"))?,
            ),
            None => None,
        };
        Ok(Self { tcp, udp })
    }

    pub fn tcp_address(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|tcp| tcp.local_addr().ok())
    }

    pub fn udp_address(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|udp| udp.local_addr().ok())
    }

    /// Serves until `shutdown`, then flushes every connection's lines and returns.
    pub async fn run(
        self,
        settings: GraphiteSettings,
        publisher: ConfirmedPublisher,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let settings = Arc::new(settings);
        let mut tasks = JoinSet::new();
        if let Some(listener) = self.tcp {
            tasks.spawn(accept_tcp(
                listener,
                Arc::clone(&settings),
                publisher.for_input(TCP_INPUT),
                shutdown.clone(),
            ));
        }
        if let Some(socket) = self.udp {
            tasks.spawn(receive_udp(
                socket,
                Arc::clone(&settings),
                publisher.for_input(UDP_INPUT),
                shutdown.clone(),
            ));
        }
        while let Some(finished) = tasks.join_next().await {
            finished.context("a Graphite listener task panicked")??;
        }
        Ok(())
    }
}

/// Binds the configured listeners and serves them until `shutdown`.
pub async fn run_graphite(
    settings: GraphiteSettings,
    publisher: ConfirmedPublisher,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    GraphiteListeners::bind(&settings)
        .await?
        .run(settings, publisher, shutdown)
        .await
}

async fn accept_tcp(
    listener: TcpListener,
    settings: Arc<GraphiteSettings>,
    publisher: ConfirmedPublisher,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(settings.max_connections.get()));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.context("the connection bound closed")?,
            () = shutdown.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: the next accept may succeed.
                tracing::warn!(%error, "accepting a Graphite connection failed");
                continue;
            }
        };
        let settings = Arc::clone(&settings);
        let publisher = publisher.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            serve_connection(stream, &settings, &publisher, &shutdown).await;
            tracing::debug!(%peer, "graphite connection closed");
            drop(permit);
        });
        // Reap finished connections so the set does not grow with every connection ever made.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve_connection(
    mut stream: TcpStream,
    settings: &GraphiteSettings,
    publisher: &ConfirmedPublisher,
    shutdown: &CancellationToken,
) {
    let mut splitter = LineSplitter::new(settings.max_line_bytes.get());
    let mut batch = Batch::default();
    let mut chunk = vec![0; READ_CHUNK_BYTES];
    loop {
        let deadline = batch.deadline(settings.linger);
        let read = tokio::select! {
            // Shutdown first: once it is asked for, no more is read.
            biased;
            () = shutdown.cancelled() => break,
            read = stream.read(&mut chunk) => read,
            () = sleep_until(deadline) => {
                publish_until_taken(&mut batch, settings, publisher, shutdown, TCP_INPUT).await;
                continue;
            }
        };
        let received = match read {
            Ok(0) => {
                splitter.finish(|piece| batch.take_piece(piece, TCP_INPUT));
                break;
            }
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(%error, "reading a graphite connection failed");
                break;
            }
        };
        let mut full = false;
        splitter.push(&chunk[..received], |piece| {
            batch.take_piece(piece, TCP_INPUT);
            full |= batch.is_full(settings);
        });
        if full || batch.is_full(settings) {
            // Not reading while this publishes is the backpressure: see the module docs.
            publish_until_taken(&mut batch, settings, publisher, shutdown, TCP_INPUT).await;
        }
    }
    publish_until_taken(&mut batch, settings, publisher, shutdown, TCP_INPUT).await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Publishes the batch, retrying with backoff until the broker confirmed it; after `shutdown`,
/// one attempt only, and what it could not publish is counted as dropped.
async fn publish_until_taken(
    batch: &mut Batch,
    settings: &GraphiteSettings,
    publisher: &ConfirmedPublisher,
    shutdown: &CancellationToken,
    input: &'static str,
) {
    let Some((body, lines)) = batch.take() else {
        return;
    };
    publish_with_retries(body, lines, settings, publisher, shutdown, input).await;
}

async fn publish_with_retries(
    body: Bytes,
    lines: usize,
    settings: &GraphiteSettings,
    publisher: &ConfirmedPublisher,
    shutdown: &CancellationToken,
    input: &'static str,
) {
    let mut attempt = 0;
    loop {
        match publisher
            .publish(&settings.routing_key, body.clone(), CONTENT_TYPE)
            .await
        {
            Ok(()) => {
                telemetry::received(input, lines);
                return;
            }
            Err(error) if shutdown.is_cancelled() => {
                tracing::warn!(%error, input, "graphite lines not published at shutdown");
                telemetry::dropped(input, "shutdown", lines);
                return;
            }
            Err(error) => {
                let delay = settings.publish_retry.delay(attempt, None);
                attempt = attempt.saturating_add(1);
                tracing::debug!(%error, input, retry_in_ms = delay.as_millis() as u64, "graphite batch not published; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => {}
                }
            }
        }
    }
}

async fn receive_udp(
    socket: UdpSocket,
    settings: Arc<GraphiteSettings>,
    publisher: ConfirmedPublisher,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (batches_tx, mut batches_rx) =
        mpsc::channel::<(Bytes, usize)>(settings.udp_queue_batches.get());
    let publishing = {
        let settings = Arc::clone(&settings);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            while let Some((body, lines)) = batches_rx.recv().await {
                publish_with_retries(body, lines, &settings, &publisher, &shutdown, UDP_INPUT)
                    .await;
            }
        })
    };
    let mut batch = Batch::default();
    let mut datagram = vec![0; READ_CHUNK_BYTES];
    let hand_on = |batch: &mut Batch| {
        if let Some((body, lines)) = batch.take()
            && batches_tx.try_send((body, lines)).is_err()
        {
            telemetry::dropped(UDP_INPUT, "overloaded", lines);
        }
    };
    loop {
        let deadline = batch.deadline(settings.linger);
        let received = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            received = socket.recv_from(&mut datagram) => received,
            () = sleep_until(deadline) => {
                hand_on(&mut batch);
                continue;
            }
        };
        let received = match received {
            Ok((received, _peer)) => received,
            Err(error) => {
                tracing::debug!(%error, "receiving a graphite datagram failed");
                continue;
            }
        };
        // Each datagram holds whole lines: nothing carries over to the next one.
        let mut splitter = LineSplitter::new(settings.max_line_bytes.get());
        let mut full = false;
        let mut on_piece = |piece: Piece<'_>| {
            batch.take_piece(piece, UDP_INPUT);
            full |= batch.is_full(&settings);
        };
        splitter.push(&datagram[..received], &mut on_piece);
        splitter.finish(&mut on_piece);
        if full {
            hand_on(&mut batch);
        }
    }
    hand_on(&mut batch);
    drop(batches_tx);
    publishing
        .await
        .context("the Graphite UDP publishing task panicked")?;
    Ok(())
}

/// What a [`LineSplitter`] hands on.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    /// A whole line, without its newline.
    Line(&'a [u8]),
    /// A line longer than the limit was discarded.
    TooLong,
}

/// Cuts a byte stream into lines, whatever the reads' boundaries, holding at most one partial
/// line of at most `max_line_bytes`.
#[derive(Debug)]
struct LineSplitter {
    partial: Vec<u8>,
    max_line_bytes: usize,
    /// Inside a line already found too long: skipping to its newline.
    discarding: bool,
}

impl LineSplitter {
    fn new(max_line_bytes: usize) -> Self {
        Self {
            partial: Vec::new(),
            max_line_bytes,
            discarding: false,
        }
    }

    fn push(&mut self, mut data: &[u8], mut on_piece: impl FnMut(Piece<'_>)) {
        while let Some(newline) = data.iter().position(|&byte| byte == b'\n') {
            let segment = &data[..newline];
            data = &data[newline + 1..];
            if self.discarding {
                self.discarding = false;
            } else if self.partial.len() + segment.len() > self.max_line_bytes {
                self.partial.clear();
                on_piece(Piece::TooLong);
            } else if self.partial.is_empty() {
                on_piece(Piece::Line(segment));
            } else {
                self.partial.extend_from_slice(segment);
                on_piece(Piece::Line(&self.partial));
                self.partial.clear();
            }
        }
        if self.discarding {
            return;
        }
        if self.partial.len() + data.len() > self.max_line_bytes {
            self.partial.clear();
            self.discarding = true;
            on_piece(Piece::TooLong);
        } else {
            self.partial.extend_from_slice(data);
        }
    }

    /// The end of the stream: a last line without its newline is still a line.
    fn finish(&mut self, mut on_piece: impl FnMut(Piece<'_>)) {
        if !self.partial.is_empty() {
            on_piece(Piece::Line(&self.partial));
            self.partial.clear();
        }
        self.discarding = false;
    }
}

/// Lines waiting to be published together.
#[derive(Debug, Default)]
struct Batch {
    body: BytesMut,
    lines: usize,
    /// When the first line came, for the linger deadline.
    opened_at: Option<Instant>,
}

impl Batch {
    fn take_piece(&mut self, piece: Piece<'_>, input: &'static str) {
        match piece {
            Piece::TooLong => {
                telemetry::refused(input, "line_too_long", 1);
                if OVERLONG_LOG.allow() {
                    tracing::warn!(
                        input,
                        "discarded a graphite line longer than the limit (logged once a minute)"
                    );
                }
            }
            Piece::Line(line) => match stamp_line(&mut self.body, line, now_seconds()) {
                Ok(false) => {}
                Ok(true) => {
                    self.lines += 1;
                    self.opened_at.get_or_insert_with(Instant::now);
                }
                Err(reason) => {
                    telemetry::refused(input, reason, 1);
                    if MALFORMED_LOG.allow() {
                        tracing::warn!(input, reason, line = %String::from_utf8_lossy(&line[..line.len().min(200)]), "refused a graphite line (logged once a minute)");
                    }
                }
            },
        }
    }

    fn is_full(&self, settings: &GraphiteSettings) -> bool {
        self.lines >= settings.batch_max_lines.get()
            || self.body.len() >= settings.batch_max_bytes.get()
    }

    fn deadline(&self, linger: Duration) -> Option<Instant> {
        self.opened_at.map(|opened| opened + linger)
    }

    fn take(&mut self) -> Option<(Bytes, usize)> {
        if self.lines == 0 {
            return None;
        }
        let lines = std::mem::take(&mut self.lines);
        self.opened_at = None;
        Some((self.body.split().freeze(), lines))
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Appends `line` to `body` with its newline, the timestamp filled in with `now` when it has
/// none or `-1`. `Ok(false)` for a blank line (nothing appended); `Err(reason)` for a line
/// that is not `path value [timestamp]` (nothing appended).
fn stamp_line(body: &mut BytesMut, line: &[u8], now: u64) -> Result<bool, &'static str> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(false);
    }
    let text = std::str::from_utf8(line).map_err(|_| "invalid_utf8")?;
    let mut tokens = text.split_ascii_whitespace();
    let (Some(_path), Some(value)) = (tokens.next(), tokens.next()) else {
        return Err("malformed");
    };
    let timestamp = tokens.next();
    if tokens.next().is_some() || value.parse::<f64>().is_err() {
        return Err("malformed");
    }
    let mut now_text = itoa::Buffer::new();
    match timestamp {
        None => {
            body.extend_from_slice(line);
            body.extend_from_slice(b" ");
            body.extend_from_slice(now_text.format(now).as_bytes());
        }
        Some("-1") => {
            let without = text[..text.len() - 2].trim_end();
            body.extend_from_slice(without.as_bytes());
            body.extend_from_slice(b" ");
            body.extend_from_slice(now_text.format(now).as_bytes());
        }
        Some(timestamp) => {
            if !timestamp.parse::<f64>().is_ok_and(f64::is_finite) {
                return Err("malformed");
            }
            body.extend_from_slice(line);
        }
    }
    body.extend_from_slice(b"\n");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(splitter: &mut LineSplitter, data: &[u8]) -> Vec<String> {
        let mut pieces = Vec::new();
        splitter.push(data, |piece| {
            pieces.push(match piece {
                Piece::Line(line) => String::from_utf8_lossy(line).into_owned(),
                Piece::TooLong => "<too long>".to_owned(),
            });
        });
        pieces
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut splitter = LineSplitter::new(100);
        assert_eq!(split(&mut splitter, b"a.b 1 10\na.c"), ["a.b 1 10"]);
        assert_eq!(split(&mut splitter, b" 2"), Vec::<String>::new());
        assert_eq!(split(&mut splitter, b" 20\n"), ["a.c 2 20"]);
    }

    #[test]
    fn an_overlong_line_is_discarded_to_its_newline_once() {
        let mut splitter = LineSplitter::new(8);
        assert_eq!(split(&mut splitter, b"0123456789"), ["<too long>"]);
        assert_eq!(split(&mut splitter, b"more of it"), Vec::<String>::new());
        assert_eq!(split(&mut splitter, b" end\nok 1 2\n"), ["ok 1 2"]);
        assert_eq!(
            split(&mut splitter, b"x 1\n0123456789\n"),
            ["x 1", "<too long>"]
        );
    }

    fn stamped(line: &str) -> Result<String, &'static str> {
        let mut body = BytesMut::new();
        stamp_line(&mut body, line.as_bytes(), 1_700_000_000)?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn missing_and_now_timestamps_are_filled_in() {
        assert_eq!(stamped("a.b 1.5\r").as_deref(), Ok("a.b 1.5 1700000000\n"));
        assert_eq!(stamped("a.b 1.5 -1").as_deref(), Ok("a.b 1.5 1700000000\n"));
        assert_eq!(
            stamped("a.b 1.5 1600000000").as_deref(),
            Ok("a.b 1.5 1600000000\n")
        );
        assert_eq!(stamped("  ").as_deref(), Ok(""));
    }

    #[test]
    fn malformed_lines_are_refused() {
        assert_eq!(stamped("only.a.path"), Err("malformed"));
        assert_eq!(stamped("a.b notanumber 1"), Err("malformed"));
        assert_eq!(stamped("a.b 1 soon"), Err("malformed"));
        assert_eq!(stamped("a.b 1 2 3"), Err("malformed"));
    }
}
