//! `sluice top`: the status page's figures in a terminal. Reads `GET /status` of a running
//! sluice every second and draws one frame with ratatui: per path its sources (received rate,
//! unacked), decode, batch and sink (written rate, in flight, write latency), a sparkline of the
//! last minute's received rate, then acks, dead letters by reason, the rule stage and the last
//! warnings and errors. `--once` draws one frame into a buffer and prints it as plain text, for
//! scripts and tests (no terminal needed).
//!
//! crossterm is used through ratatui's re-export, so the two can never disagree on its version.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use ratatui::Frame;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Sparkline, Wrap};

use crate::status::figures::{PathFigures, Status};

/// The admin endpoint `sluice run` listens on by default.
const DEFAULT_ADMIN: &str = "http://127.0.0.1:9598";
const REFRESH: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The admin endpoint of the sluice to watch (its `admin.listen`).
    #[arg(long, default_value = DEFAULT_ADMIN, env = "SLUICE_TOP_ADMIN")]
    admin: String,
    /// Print one frame as plain text and exit, instead of a live view.
    #[arg(long)]
    once: bool,
    /// The frame's width with `--once`.
    #[arg(long, default_value_t = 120)]
    width: u16,
    /// The frame's height with `--once`.
    #[arg(long, default_value_t = 48)]
    height: u16,
}

pub fn run(args: &TopArgs) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|runtime| {
            let client = StatusClient::new(&args.admin)?;
            if args.once {
                once(&runtime, &client, args.width, args.height)
            } else {
                live(&runtime, &client)
            }
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

struct StatusClient {
    client: reqwest::Client,
    url: String,
    admin: String,
}

impl StatusClient {
    fn new(admin: &str) -> anyhow::Result<Self> {
        let admin = crate::admin::base_url(admin);
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            client,
            url: format!("{admin}/status"),
            admin,
        })
    }

    async fn fetch(&self) -> anyhow::Result<Status> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .with_context(|| format!("reading {} (is sluice running there?)", self.url))?;
        let response = response
            .error_for_status()
            .with_context(|| format!("reading {}", self.url))?;
        response
            .json()
            .await
            .with_context(|| format!("{} is not a sluice status", self.url))
    }
}

fn once(
    runtime: &tokio::runtime::Runtime,
    client: &StatusClient,
    width: u16,
    height: u16,
) -> anyhow::Result<()> {
    let status = runtime.block_on(client.fetch())?;
    let mut terminal =
        Terminal::new(TestBackend::new(width, height)).context("setting up the frame buffer")?;
    terminal
        .draw(|frame| draw(frame, &client.admin, Ok(&status)))
        .context("drawing the frame")?;
    let text = buffer_text(terminal.backend().buffer());
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing the frame to stdout")
}

fn live(runtime: &tokio::runtime::Runtime, client: &StatusClient) -> anyhow::Result<()> {
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let outcome = (|| -> anyhow::Result<()> {
        let mut last: Option<Status> = None;
        loop {
            let fetched = runtime.block_on(client.fetch());
            let error = match fetched {
                Ok(status) => {
                    last = Some(status);
                    None
                }
                Err(error) => Some(format!("{error:#}")),
            };
            let shown = match (&last, &error) {
                (Some(status), None) => Ok(status),
                (_, Some(error)) => Err(error.as_str()),
                (None, None) => Err("no status yet"),
            };
            terminal
                .draw(|frame| draw(frame, &client.admin, shown))
                .context("drawing")?;
            // Keys are answered at once; the next sample is read when the second is up.
            let next = Instant::now() + REFRESH;
            while let Some(left) = next.checked_duration_since(Instant::now()) {
                if !event::poll(left).context("reading the keyboard")? {
                    break;
                }
                if let Event::Key(key) = event::read().context("reading the keyboard")?
                    && key.kind == KeyEventKind::Press
                    && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
                        || (key.code == KeyCode::Char('c')
                            && key.modifiers.contains(KeyModifiers::CONTROL)))
                {
                    return Ok(());
                }
            }
        }
    })();
    ratatui::try_restore().context("restoring the terminal")?;
    outcome
}

/// The buffer's cells as lines of text, without trailing blanks.
fn buffer_text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut text = String::new();
    for y in area.top()..area.bottom() {
        let mut line = String::new();
        for x in area.left()..area.right() {
            line.push_str(buffer[(x, y)].symbol());
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn draw(frame: &mut Frame<'_>, admin: &str, status: Result<&Status, &str>) {
    let area = frame.area();
    let status = match status {
        Ok(status) => status,
        Err(error) => {
            let block = Block::bordered().title(format!(" sluice top: {admin} "));
            frame.render_widget(
                Paragraph::new(error.to_owned())
                    .wrap(Wrap { trim: true })
                    .block(block),
                area,
            );
            return;
        }
    };
    let header = Line::from(vec![
        Span::styled("sluice ", Style::new().bold()),
        Span::raw(format!(
            "{}  {admin}  up {}  (q quits)",
            status.version,
            humantime::format_duration(Duration::from_secs(status.uptime_s))
        )),
    ]);
    let path_rows: Vec<Constraint> = status.paths.iter().map(|_| Constraint::Length(7)).collect();
    let mut constraints = vec![Constraint::Length(1)];
    constraints.extend(path_rows);
    constraints.push(Constraint::Length(2));
    constraints.push(Constraint::Min(6));
    let rows = Layout::vertical(constraints).split(area);
    frame.render_widget(Paragraph::new(header), rows[0]);
    for (index, path) in status.paths.iter().enumerate() {
        draw_path(frame, path, rows[index + 1]);
    }
    let acks = &status.acks;
    frame.render_widget(
        Paragraph::new(Line::from(format!(
            " acker: acked {}  ({} since start)   requeued {}   dead letters {} (to {})",
            rate(acks.acked_per_s),
            acks.acked_total,
            rate(acks.requeued_per_s),
            rate(status.dead_letters.dead_lettered_per_s),
            status.dead_letters.exchange,
        ))),
        rows[status.paths.len() + 1],
    );
    let bottom = rows[status.paths.len() + 2];
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Fill(1)]).areas(bottom);
    let [dead_area, rules_area] =
        Layout::vertical([Constraint::Percentage(40), Constraint::Fill(1)]).areas(left);
    draw_dead_letters(frame, status, dead_area);
    draw_rules(frame, status, rules_area);
    draw_errors(frame, status, right);
}

fn draw_path(frame: &mut Frame<'_>, path: &PathFigures, area: Rect) {
    let state = if path.consuming {
        Span::styled("consuming", Style::new().fg(Color::Green))
    } else {
        Span::styled("not consuming", Style::new().fg(Color::Red))
    };
    let block = Block::bordered().title(Line::from(vec![
        Span::styled(format!(" {} path ", path.name), Style::new().bold()),
        state,
        Span::raw(" "),
    ]));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [text_area, spark_area] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(28)]).areas(inner);
    let mut lines = Vec::new();
    for source in &path.sources {
        // The figures first, the long names last: a narrow terminal cuts the names.
        lines.push(Line::from(format!(
            "source {:<9} received {:>8}  unacked {:>6}  reconnects {}  queue {}  {}",
            source.name,
            rate(source.received_per_s),
            count(source.unacked),
            source.reconnects_total,
            source.queue,
            source.broker
        )));
    }
    let decode = &path.decode;
    lines.push(Line::from(format!(
        "decode {:<9} decoded  {:>8}  rejected {}",
        decode.stage,
        rate(decode.decoded_per_s),
        rate(decode.rejected_per_s)
    )));
    let batch = &path.batch;
    lines.push(Line::from(format!(
        "batch  {:<9} batches  {:>8}  items p50 {} p99 {}  bytes p50 {} p99 {}",
        path.sink.name,
        rate(batch.batches_per_s),
        optional(batch.items_p50, count),
        optional(batch.items_p99, count),
        optional(batch.bytes_p50, bytes),
        optional(batch.bytes_p99, bytes)
    )));
    let sink = &path.sink;
    lines.push(Line::from(format!(
        "sink   {:<9} written  {:>8}  write p50 {} p99 {}  in flight {}  retried {}  {}",
        sink.name,
        rate(sink.written_per_s),
        optional(sink.write_p50_ms, milliseconds),
        optional(sink.write_p99_ms, milliseconds),
        count(sink.in_flight),
        rate(sink.retried_per_s),
        sink.url
    )));
    frame.render_widget(Paragraph::new(lines), text_area);
    // Whole messages per second: the sparkline draws integers.
    let history: Vec<u64> = path
        .received_history
        .iter()
        .map(|value| value.max(0.0).round() as u64)
        .collect();
    let shown = history
        .len()
        .saturating_sub(usize::from(spark_area.width.saturating_sub(2)));
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(" received/s, 1 min "))
            .data(&history[shown..])
            .style(Style::new().fg(Color::Cyan)),
        spark_area,
    );
}

fn draw_dead_letters(frame: &mut Frame<'_>, status: &Status, area: Rect) {
    let dead = &status.dead_letters;
    let mut lines: Vec<Line<'_>> = dead
        .by_reason
        .iter()
        .map(|reason| {
            Line::from(format!(
                "{:>7}  {:>8}  {}.{}",
                reason.total,
                rate(reason.per_s),
                reason.stage,
                reason.reason
            ))
        })
        .collect();
    for failure in &dead.failures {
        lines.push(Line::from(Span::styled(
            format!(
                "{:>7}  not taken by the broker: {}",
                failure.total, failure.label
            ),
            Style::new().fg(Color::Red),
        )));
    }
    if lines.is_empty() {
        lines.push(Line::from("none"));
    }
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" dead letters by reason ")),
        area,
    );
}

fn draw_rules(frame: &mut Frame<'_>, status: &Status, area: Rect) {
    let block = Block::bordered().title(" rule stage ");
    let Some(rules) = &status.rules else {
        frame.render_widget(Paragraph::new("not running").block(block), area);
        return;
    };
    let activity = &rules.activity;
    let deployments: Vec<String> = activity
        .deployments
        .iter()
        .map(|deployment| format!("{} ({})", deployment.deployment_id, deployment.policies))
        .collect();
    let mut lines = vec![
        Line::from(format!(
            "fired {} ({} since start)  manager {}",
            rate(rules.fired_per_s),
            rules.fired_total,
            rules.manager
        )),
        Line::from(format!(
            "deployments loaded: {}{}",
            activity.deployments.len(),
            if deployments.is_empty() {
                String::new()
            } else {
                format!("  {}", deployments.join(", "))
            }
        )),
    ];
    for trigger in &activity.triggers {
        lines.push(Line::from(format!(
            "{}  {}/{}  {} {}  {}",
            clock(trigger.fired_at_ms),
            trigger.group,
            trigger.policy,
            trigger.target,
            trigger.node_id.as_deref().unwrap_or(""),
            trigger.outcome.as_deref().unwrap_or("running")
        )));
    }
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(block),
        area,
    );
}

fn draw_errors(frame: &mut Frame<'_>, status: &Status, area: Rect) {
    let lines: Vec<Line<'_>> = if status.errors.is_empty() {
        vec![Line::from("none")]
    } else {
        status
            .errors
            .iter()
            .map(|entry| {
                let colour = if entry.level == "ERROR" {
                    Color::Red
                } else {
                    Color::Yellow
                };
                let fields: Vec<String> = entry
                    .fields
                    .iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect();
                let repeats = if entry.repeats > 1 {
                    format!(" (x{})", entry.repeats)
                } else {
                    String::new()
                };
                Line::from(vec![
                    Span::raw(format!("{} ", clock(entry.time_ms))),
                    Span::styled(
                        format!("{:<5} ", entry.level),
                        Style::new().fg(colour).add_modifier(Modifier::BOLD),
                    ),
                    Span::raw(format!(
                        "{}{repeats} {} [{}]",
                        entry.message,
                        fields.join(" "),
                        entry.target
                    )),
                ])
            })
            .collect()
    };
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" last warnings and errors ")),
        area,
    );
}

/// `12.3k/s`.
fn rate(per_second: f64) -> String {
    format!("{}/s", count(per_second))
}

fn count(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if magnitude >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if magnitude >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn bytes(value: f64) -> String {
    if value >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", value / (1024.0 * 1024.0))
    } else if value >= 1024.0 {
        format!("{:.1} KiB", value / 1024.0)
    } else {
        format!("{value:.0} B")
    }
}

fn milliseconds(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0} ms")
    } else {
        format!("{value:.1} ms")
    }
}

fn optional(value: Option<f64>, format: fn(f64) -> String) -> String {
    value.map_or_else(|| "-".to_owned(), format)
}

/// The UTC time of day of a Unix-milliseconds stamp, `HH:MM:SS`.
fn clock(time_ms: i64) -> String {
    let seconds = time_ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::figures::{SinkFigures, SourceFigures};

    #[test]
    fn figures_are_short_and_readable() {
        assert_eq!(rate(0.0), "0/s");
        assert_eq!(rate(12.25), "12.2/s");
        assert_eq!(rate(1234.0), "1234/s");
        assert_eq!(rate(56_789.0), "56.8k/s");
        assert_eq!(bytes(2048.0), "2.0 KiB");
        assert_eq!(optional(None, milliseconds), "-");
        assert_eq!(clock(3_723_000), "01:02:03");
    }

    #[test]
    fn a_frame_shows_each_path_and_its_figures() {
        let status = Status {
            version: "0.1.0 (commit abc)".into(),
            paths: vec![PathFigures {
                name: "metrics".into(),
                consuming: true,
                sources: vec![SourceFigures {
                    name: "metrics".into(),
                    queue: "sluice.metrics".into(),
                    received_per_s: 250.0,
                    unacked: 40.0,
                    ..SourceFigures::default()
                }],
                sink: SinkFigures {
                    name: "influx".into(),
                    written_per_s: 249.0,
                    write_p99_ms: Some(3.5),
                    ..SinkFigures::default()
                },
                received_history: vec![0.0, 100.0, 250.0],
                ..PathFigures::default()
            }],
            ..Status::default()
        };
        let mut terminal = Terminal::new(TestBackend::new(140, 40)).expect("a buffer");
        terminal
            .draw(|frame| draw(frame, "http://127.0.0.1:9598", Ok(&status)))
            .expect("drawn");
        let text = buffer_text(terminal.backend().buffer());
        for expected in [
            "metrics path",
            "consuming",
            "received    250/s",
            "unacked     40",
            "written     249/s",
            "p99 3.5 ms",
            "dead letters by reason",
            "rule stage",
            "not running",
        ] {
            assert!(text.contains(expected), "{expected:?} in:\n{text}");
        }
    }
}
