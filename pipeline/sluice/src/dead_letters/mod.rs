//! `sluice dead-letters list | show | replay`: reading and repairing what sluice refused.
//!
//! - [`queue`]: reading the dead-letter queue with every letter left in it (unacked, then
//!   requeued in place), and republishing with confirms before a letter is removed.
//! - [`letter`]: one letter's headers decoded, and its `list` and `show` forms.
//! - [`edit`]: the `--set`/`--delete` JSON pointer edits `replay` applies to a body.
//!
//! `replay --dry-run` also runs each copy bound for the metrics exchange through the
//! configuration's naming ([`Preview`]), so a corrected template is seen at work before anything
//! is replayed.
//!
//! The broker URL and the queue come from the configuration (`amqp.url`, `dead_letter.queue`),
//! as `sluice run` uses them, so the command needs nothing but `--config`.

mod edit;
mod letter;
mod queue;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::{Value, json};
use sluice_core::rejection::Rejection;
use sluice_normalise::{Normalised, Normaliser};

use crate::config::{RawConfig, Settings};
use edit::Edit;
use letter::Letter;
use queue::DeadLetterQueue;

/// The header a replayed message carries: `<stage>.<reason>` of the letter it was.
const REPLAYED_FROM_HEADER: &str = "x-sluice-replayed-from";

#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// One line per letter; every letter stays in the queue, in order.
    ///
    /// Each line: position, id, stage.reason, attempts, rejection time, where it was first
    /// published, and the error (cut short). The letters are read with `basic.get`, left
    /// unacked while they are printed, then all returned to their places: reading takes
    /// nothing, and a command that dies returns them too.
    #[command(after_help = LIST_EXAMPLES)]
    List {
        #[command(flatten)]
        queue: QueueArgs,
        #[command(flatten)]
        select: Selection,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The letters in full as JSON lines; every letter stays in the queue, in order.
    ///
    /// One JSON object per line: every header, the whole error, and the body (`body_encoding`
    /// "utf8": its exact text, "hex" when it is not UTF-8). Read as `list` reads: nothing is
    /// taken.
    #[command(after_help = SHOW_EXAMPLES)]
    Show {
        #[command(flatten)]
        queue: QueueArgs,
        #[command(flatten)]
        select: Selection,
    },
    /// Republish chosen letters, optionally fixed; each leaves the queue once its copy is
    /// confirmed.
    #[command(long_about = REPLAY_ABOUT, after_help = REPLAY_EXAMPLES)]
    Replay {
        #[command(flatten)]
        queue: QueueArgs,
        #[command(flatten)]
        select: Selection,
        /// Replay every letter read (up to --limit); needed when no --stage, --reason or --id
        /// chooses letters.
        #[arg(long)]
        all: bool,
        /// Publish to this exchange instead of the letter's original one ("" is the default
        /// exchange).
        #[arg(long)]
        exchange: Option<String>,
        /// Publish with this routing key instead of the letter's original one.
        #[arg(long)]
        routing_key: Option<String>,
        /// Set the value at a JSON pointer (RFC 6901) of the body, e.g. `/metric=42` or
        /// `'/service="a.b.c"'` (strings keep their JSON quotes). Repeatable; applied in order,
        /// before the deletes.
        #[arg(long = "set", value_name = "POINTER=JSON", value_parser = edit::parse_set)]
        sets: Vec<Edit>,
        /// Remove the member or element at a JSON pointer of the body, e.g. `/unit`. Repeatable.
        #[arg(long = "delete", value_name = "POINTER", value_parser = edit::parse_delete)]
        deletes: Vec<Edit>,
        /// Print what would be published (target and edited body) and, for copies to the
        /// metrics exchange, what the configuration's templates make of them (`normalised`, as
        /// `sluice normalise` prints it); leave every letter in the queue.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Where the letters are, and how many to read.
#[derive(Args)]
pub struct QueueArgs {
    /// A TOML configuration file, as `sluice run` uses (`amqp.url`, `dead_letter.queue`).
    #[arg(long, short, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// The dead-letter queue; by default the configuration's `dead_letter.queue`.
    #[arg(long)]
    queue: Option<String>,
    /// Read at most this many letters from the head of the queue (filters choose among them).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
}

/// Which of the letters read the command is about; all of them when none is given.
#[derive(Args)]
pub struct Selection {
    /// Only letters rejected by this stage (`normalise`, `events`, `influx`, `elasticsearch`, `rules`).
    /// Repeatable.
    #[arg(long)]
    stage: Vec<String>,
    /// Only letters with this reason (`field_type_conflict`, `invalid_json`...). Repeatable.
    #[arg(long)]
    reason: Vec<String>,
    /// Only the letter with this id (as `list` prints it). Repeatable.
    #[arg(long)]
    id: Vec<String>,
}

impl Selection {
    fn is_empty(&self) -> bool {
        self.stage.is_empty() && self.reason.is_empty() && self.id.is_empty()
    }

    fn matches(&self, letter: &Letter) -> bool {
        let allows = |wanted: &[String], value: &str| {
            wanted.is_empty() || wanted.iter().any(|one| one == value)
        };
        allows(&self.stage, &letter.stage)
            && allows(&self.reason, &letter.reason)
            && allows(&self.id, &letter.id)
    }
}

const LIST_EXAMPLES: &str = "Examples:
  sluice dead-letters list
  sluice dead-letters list --stage influx --reason field_type_conflict --json
  sluice dead-letters list --config /etc/sluice/sluice.toml --limit 1000";

const SHOW_EXAMPLES: &str = "Examples:
  sluice dead-letters show --id 3f2a9c41d07be865
  sluice dead-letters show --reason invalid_json | jq -r .body";

const REPLAY_ABOUT: &str = "Republish the chosen letters to their original exchange and \
routing key (or --exchange/--routing-key), and remove each from the dead-letter queue only once \
the broker confirmed its copy (publisher confirms, mandatory: an unroutable copy counts as not \
taken). Letters not chosen, and letters that could not be republished, stay where they were, in \
order. Choose letters with --stage, --reason and --id, or --all.

The copy is the letter's body, byte for byte unless edited, persistent, without the letter's \
x-sluice-* and x-original-* headers (it is a fresh message to sluice, its attempts start again) \
and with x-sluice-replayed-from: <stage>.<reason>.

Fixing a letter: --set and --delete edit a JSON body at JSON pointers (RFC 6901) before it is \
republished. This is deliberately not jq: a repair changes a field or two, a pointer names \
exactly which, and an edit whose place does not exist fails that letter (it stays in the queue) \
rather than doing nothing. An edited body is re-encoded (same JSON, keys sorted, no spaces). \
To replay through a corrected template, fix the configuration, check with `replay --dry-run \
--config FILE` (each copy to the metrics exchange shows the point it becomes under FILE's \
templates, as `normalised`), restart sluice on it, and replay the letters unchanged: they are \
normalised afresh.

Prints one JSON line per chosen letter: its position, id, stage, reason, target and outcome \
(\"replayed\", \"would_replay\" with --dry-run, or \"failed\" with the error). Exits 0 when \
every chosen letter was republished, 1 otherwise (or on any other error).";

const REPLAY_EXAMPLES: &str = "Examples:
  sluice dead-letters replay --reason field_type_conflict --dry-run
  sluice dead-letters replay --id 3f2a9c41d07be865 --set '/service=\"dep.node.host.disk.free_bytes\"'
  sluice dead-letters replay --stage normalise --reason wrong_type --set /metric=0 --delete /unit
  sluice dead-letters replay --all --exchange cloudify-monitoring --routing-key nodecellar";

/// Runs a `dead-letters` subcommand to its exit code.
pub fn run(command: DeadLettersCommand) -> ExitCode {
    crate::on_one_thread(async {
        match run_async(command).await {
            Ok(code) => code,
            Err(error) => {
                eprintln!("error: {}", describe(&error));
                ExitCode::FAILURE
            }
        }
    })
}

async fn run_async(command: DeadLettersCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeadLettersCommand::List {
            queue,
            select,
            json,
        } => {
            look(&queue, &select, |letter| {
                if json {
                    letter.summary_json().to_string()
                } else {
                    letter.summary_line()
                }
            })
            .await
        }
        DeadLettersCommand::Show { queue, select } => {
            look(&queue, &select, |letter| letter.full_json().to_string()).await
        }
        DeadLettersCommand::Replay {
            queue,
            select,
            all,
            exchange,
            routing_key,
            sets,
            deletes,
            dry_run,
        } => {
            if select.is_empty() && !all {
                return Err(anyhow!(
                    "choose the letters to replay with --stage, --reason or --id, or replay \
                     every letter read with --all"
                ));
            }
            let target = Target {
                exchange,
                routing_key,
                edits: sets.into_iter().chain(deletes).collect(),
            };
            replay(&queue, &select, &target, dry_run).await
        }
    }
}

/// The queue's connection and name, from the configuration and `--queue`.
async fn open(args: &QueueArgs) -> anyhow::Result<DeadLetterQueue> {
    open_with_settings(args).await.map(|(queue, _)| queue)
}

/// [`open`], also answering the validated configuration.
async fn open_with_settings(args: &QueueArgs) -> anyhow::Result<(DeadLetterQueue, Settings)> {
    let settings = RawConfig::load(args.config.as_deref())
        .and_then(|raw| raw.validate())
        .map_err(|errors| anyhow!("{errors}"))?;
    let queue = args
        .queue
        .clone()
        .or_else(|| settings.dead_letter.queue.clone())
        .ok_or_else(|| {
            anyhow!(
                "dead_letter.queue is \"\" (sluice declares no dead-letter queue): name the \
                 queue you bound to {:?} with --queue",
                settings.dead_letter.exchange
            )
        })?;
    let queue = DeadLetterQueue::open(&settings.dead_letter.url, &queue).await?;
    Ok((queue, settings))
}

/// What a copy sent to the metrics exchange becomes under the configuration's naming (its
/// templates): shown by `replay --dry-run`, so a corrected template can be checked before
/// anything is replayed.
struct Preview {
    metrics_exchange: String,
    normaliser: Normaliser,
}

impl Preview {
    fn from_settings(settings: Settings) -> Option<Preview> {
        let metrics = settings.metrics?;
        Some(Preview {
            metrics_exchange: metrics.source.topology.exchange?.name,
            normaliser: Normaliser::new(metrics.naming, metrics.point_limits),
        })
    }

    /// The point (as `sluice normalise` prints it), the control message or the error; `None`
    /// for a copy that does not go to the metrics exchange.
    fn of(&self, exchange: &str, body: &[u8]) -> Option<Value> {
        if exchange != self.metrics_exchange {
            return None;
        }
        Some(match self.normaliser.normalise(body) {
            Ok(Normalised::Point(point)) => serde_json::to_value(&point).unwrap_or_default(),
            Ok(Normalised::Control(control)) => json!({ "control": control }),
            Err(error) => json!({ "error": {
                "reason": error.reason().as_str(),
                "message": error.to_string(),
            } }),
        })
    }
}

/// `list` and `show`: print each chosen letter, then return every letter to the queue.
async fn look(
    args: &QueueArgs,
    select: &Selection,
    render: impl Fn(&Letter) -> String,
) -> anyhow::Result<ExitCode> {
    let queue = open(args).await?;
    let printed = print_chosen(&queue, args, select, render).await;
    // Whatever happened, the letters go back before anything is reported.
    queue.close().await?;
    let (reading, shown) = printed?;
    report_reading(&reading, shown, "shown");
    Ok(ExitCode::SUCCESS)
}

async fn print_chosen(
    queue: &DeadLetterQueue,
    args: &QueueArgs,
    select: &Selection,
    render: impl Fn(&Letter) -> String,
) -> anyhow::Result<(queue::Reading, usize)> {
    let reading = queue.read(limit(args)).await?;
    let mut out = std::io::stdout().lock();
    let mut shown = 0;
    for letter in reading
        .letters
        .iter()
        .filter(|letter| select.matches(letter))
    {
        match writeln!(out, "{}", render(letter)) {
            Ok(()) => shown += 1,
            // `| head`: the reader has seen enough.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(error) => return Err(error).context("writing to stdout"),
        }
    }
    Ok((reading, shown))
}

/// Where `replay` sends the chosen letters, and what it changes in them.
struct Target {
    exchange: Option<String>,
    routing_key: Option<String>,
    edits: Vec<Edit>,
}

impl Target {
    /// The exchange, routing key and body a letter's copy is published with.
    fn copy_of(&self, letter: &Letter) -> Result<(String, String, Vec<u8>), String> {
        let exchange = self
            .exchange
            .clone()
            .or_else(|| letter.original_exchange.clone())
            .ok_or("the letter has no x-original-exchange header: give --exchange")?;
        let routing_key = self
            .routing_key
            .clone()
            .or_else(|| letter.original_routing_key.clone())
            .ok_or("the letter has no x-original-routing-key header: give --routing-key")?;
        let body = if self.edits.is_empty() {
            letter.body.clone()
        } else {
            edit::apply(&self.edits, &letter.body)?
        };
        Ok((exchange, routing_key, body))
    }
}

async fn replay(
    args: &QueueArgs,
    select: &Selection,
    target: &Target,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let (mut queue, settings) = open_with_settings(args).await?;
    let preview = Preview::from_settings(settings);
    let reading = match queue.read(limit(args)).await {
        Ok(reading) => reading,
        Err(error) => {
            queue.close().await?;
            return Err(error);
        }
    };
    let mut out = std::io::stdout().lock();
    let (mut chosen, mut replayed) = (0, 0);
    for letter in reading
        .letters
        .iter()
        .filter(|letter| select.matches(letter))
    {
        chosen += 1;
        let mut line = json!({
            "position": letter.position,
            "id": letter.id,
            "stage": letter.stage,
            "reason": letter.reason,
        });
        let outcome = match target.copy_of(letter) {
            Err(error) => Err(anyhow!(error)),
            Ok((exchange, routing_key, body)) => {
                line["exchange"] = json!(exchange);
                line["routing_key"] = json!(routing_key);
                if dry_run {
                    line["body"] = json!(letter::body_text(&body).0);
                    if let Some(normalised) = preview
                        .as_ref()
                        .and_then(|preview| preview.of(&exchange, &body))
                    {
                        line["normalised"] = normalised;
                    }
                    Ok("would_replay")
                } else if !queue.is_reading() {
                    // Its copy could not be acked away: publishing it would only duplicate it.
                    Err(anyhow!(
                        "not republished: the channel reading the dead-letter queue closed, \
                         and the letter went back to the queue"
                    ))
                } else {
                    republish_then_remove(&mut queue, letter, &exchange, &routing_key, &body)
                        .await
                        .map(|()| "replayed")
                }
            }
        };
        match outcome {
            Ok(outcome) => {
                replayed += 1;
                line["outcome"] = json!(outcome);
            }
            Err(error) => {
                line["outcome"] = json!("failed");
                line["error"] = json!(describe(&error));
            }
        }
        if let Err(error) = writeln!(out, "{line}") {
            queue.close().await?;
            return Err(error).context("writing to stdout");
        }
    }
    drop(out);
    queue.close().await?;
    let verb = if dry_run { "would replay" } else { "replayed" };
    eprintln!(
        "{verb} {replayed} of {chosen} chosen letter(s); {} read, the rest left in the queue",
        reading.letters.len()
    );
    report_reading(&reading, chosen, "chosen");
    Ok(if replayed == chosen {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn republish_then_remove(
    queue: &mut DeadLetterQueue,
    letter: &Letter,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    queue
        .republish(exchange, routing_key, replay_properties(letter), body)
        .await
        .context("not republished; the letter stays in the queue")?;
    queue
        .remove(letter)
        .await
        .context("republished, but not removed from the queue: a later replay would send it again")
}

/// The copy's properties: the letter's, persistent, with sluice's dead-letter headers replaced
/// by `x-sluice-replayed-from`.
fn replay_properties(letter: &Letter) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(original) = letter.properties.headers() {
        for (key, value) in original {
            let name = key.as_str();
            if !name.starts_with("x-sluice-") && !name.starts_with("x-original-") {
                headers.insert(key.clone(), value.clone());
            }
        }
    }
    headers.insert(
        REPLAYED_FROM_HEADER.into(),
        AMQPValue::LongString(LongString::from(format!(
            "{}.{}",
            letter.stage, letter.reason
        ))),
    );
    letter
        .properties
        .clone()
        .with_delivery_mode(2)
        .with_headers(headers)
}

/// An error and its causes, each said once: lapin's errors repeat their source in their text.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn limit(args: &QueueArgs) -> usize {
    usize::try_from(args.limit).unwrap_or(usize::MAX)
}

/// Tells stderr how much of the queue the command saw, so a bounded read is never mistaken
/// for the whole queue.
fn report_reading(reading: &queue::Reading, matched: usize, verb: &str) {
    if reading.unread > 0 {
        eprintln!(
            "{matched} {verb} of the first {} letter(s); {} more are behind them, not read \
             (raise --limit)",
            reading.letters.len(),
            reading.unread
        );
    }
}

#[cfg(test)]
mod tests {
    use lapin::message::Delivery;

    use super::*;

    fn letter(headers: &[(&str, &str)]) -> Letter {
        let mut table = FieldTable::default();
        for (key, value) in headers {
            table.insert(
                (*key).into(),
                AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
            );
        }
        let mut delivery = Delivery::mock(
            7,
            "dlx".into(),
            "influx.field_type_conflict".into(),
            false,
            b"{\"metric\":1}".to_vec(),
        );
        delivery.properties = BasicProperties::default().with_headers(table);
        Letter::from_delivery(1, delivery)
    }

    #[test]
    fn a_copy_keeps_other_headers_and_drops_the_dead_letter_ones() {
        let letter = letter(&[
            ("x-sluice-stage", "influx"),
            ("x-sluice-reason", "field_type_conflict"),
            ("x-original-exchange", "monitoring"),
            ("x-original-routing-key", "dep"),
            ("trace-id", "abc"),
        ]);
        let properties = replay_properties(&letter);
        let headers = properties.headers().clone().expect("headers");
        let names: Vec<&str> = headers.inner().keys().map(|key| key.as_str()).collect();
        assert_eq!(names, ["trace-id", REPLAYED_FROM_HEADER]);
        assert_eq!(
            letter::table_json(&headers)[REPLAYED_FROM_HEADER],
            "influx.field_type_conflict"
        );
        assert_eq!(properties.delivery_mode(), &Some(2));
    }

    #[test]
    fn the_target_is_the_origin_unless_overridden() {
        let letter = letter(&[
            ("x-original-exchange", "monitoring"),
            ("x-original-routing-key", "dep"),
        ]);
        let original = Target {
            exchange: None,
            routing_key: None,
            edits: Vec::new(),
        };
        assert_eq!(
            original.copy_of(&letter),
            Ok((
                "monitoring".into(),
                "dep".into(),
                b"{\"metric\":1}".to_vec()
            ))
        );
        let elsewhere = Target {
            exchange: Some("other".into()),
            routing_key: Some("key".into()),
            edits: vec![edit::parse_set("/metric=2").expect("edit")],
        };
        assert_eq!(
            elsewhere.copy_of(&letter),
            Ok(("other".into(), "key".into(), b"{\"metric\":2}".to_vec()))
        );
    }

    #[test]
    fn a_letter_without_its_origin_needs_a_target() {
        let letter = letter(&[]);
        let target = Target {
            exchange: None,
            routing_key: None,
            edits: Vec::new(),
        };
        let error = target.copy_of(&letter).expect_err("no origin");
        assert!(error.contains("--exchange"), "{error}");
        // Stage and reason come from the routing key when the headers are missing.
        assert_eq!(
            (letter.stage.as_str(), letter.reason.as_str()),
            ("influx", "field_type_conflict")
        );
    }

    #[test]
    fn selection_combines_its_filters() {
        let letter = letter(&[
            ("x-sluice-stage", "influx"),
            ("x-sluice-reason", "conflict"),
        ]);
        let select = |stage: &[&str], reason: &[&str], id: &[&str]| Selection {
            stage: stage.iter().map(ToString::to_string).collect(),
            reason: reason.iter().map(ToString::to_string).collect(),
            id: id.iter().map(ToString::to_string).collect(),
        };
        assert!(select(&[], &[], &[]).matches(&letter));
        assert!(select(&["normalise", "influx"], &["conflict"], &[]).matches(&letter));
        assert!(!select(&["influx"], &["invalid_json"], &[]).matches(&letter));
        assert!(select(&[], &[], &[&letter.id]).matches(&letter));
        assert!(!select(&[], &[], &["0000000000000000"]).matches(&letter));
    }
}
