//! Bounded rings of what happened last: [`Ring`], and [`RecentLogs`], the last warnings and
//! errors, which a `tracing` layer ([`RecentLogs::layer`]) fills beside the log output.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// How many warnings and errors the status page keeps.
pub const RECENT_LOGS: usize = 30;

/// The newest `capacity` items, newest first.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Ring<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            items: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds `item` as the newest, forgetting the oldest when full.
    pub fn push(&mut self, item: T) {
        if self.capacity == 0 {
            return;
        }
        if self.items.len() == self.capacity {
            self.items.pop_back();
        }
        self.items.push_front(item);
    }

    pub fn newest_mut(&mut self) -> Option<&mut T> {
        self.items.front_mut()
    }

    /// Newest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

/// One warning or error as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Unix milliseconds of the last occurrence.
    pub time_ms: i64,
    /// `WARN` or `ERROR`.
    pub level: String,
    pub target: String,
    pub message: String,
    pub fields: BTreeMap<String, String>,
    /// Times it was logged in a row (a store that is down logs the same retry over and over;
    /// one line with a count keeps the others in view).
    pub repeats: u64,
}

/// The last warnings and errors. Cheap to share; [`RecentLogs::layer`] writes into it.
#[derive(Debug, Clone)]
pub struct RecentLogs {
    ring: Arc<Mutex<Ring<LogEntry>>>,
}

impl Default for RecentLogs {
    fn default() -> Self {
        Self::new(RECENT_LOGS)
    }
}

impl RecentLogs {
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: Arc::new(Mutex::new(Ring::new(capacity))),
        }
    }

    /// Newest first.
    pub fn entries(&self) -> Vec<LogEntry> {
        self.ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Keeps `entry`, or counts it as a repeat of the newest one when only its time and fields
    /// differ.
    pub fn record(&self, entry: LogEntry) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(newest) = ring.newest_mut()
            && newest.level == entry.level
            && newest.target == entry.target
            && newest.message == entry.message
        {
            newest.repeats += 1;
            newest.time_ms = entry.time_ms;
            newest.fields = entry.fields;
            return;
        }
        ring.push(entry);
    }

    /// A layer that records every WARN and ERROR event, whatever `RUST_LOG` lets through to the
    /// log output: the page should show a warning even when the logs are turned down.
    pub fn layer<S: Subscriber>(&self) -> impl Layer<S> {
        RecentLogsLayer { logs: self.clone() }
    }
}

struct RecentLogsLayer {
    logs: RecentLogs,
}

impl<S: Subscriber> Layer<S> for RecentLogsLayer {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut fields = FieldsText::default();
        event.record(&mut fields);
        self.logs.record(LogEntry {
            time_ms: now_ms(),
            level: level.to_string(),
            target: event.metadata().target().to_owned(),
            message: fields.message,
            fields: fields.others,
            repeats: 1,
        });
    }
}

#[derive(Default)]
struct FieldsText {
    message: String,
    others: BTreeMap<String, String>,
}

impl Visit for FieldsText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else {
            self.others
                .insert(field.name().to_owned(), value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.others.insert(field.name().to_owned(), text);
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn a_ring_keeps_the_newest_first_and_no_more_than_its_capacity() {
        let mut ring = Ring::new(3);
        for item in 1..=5 {
            ring.push(item);
        }
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), vec![5, 4, 3]);
        assert_eq!(ring.len(), 3);
        let mut none = Ring::new(0);
        none.push(1);
        assert_eq!(none.len(), 0);
    }

    #[test]
    fn warnings_and_errors_are_kept_with_their_fields_and_repeats_are_counted() {
        let logs = RecentLogs::new(4);
        let subscriber = tracing_subscriber::registry().with(logs.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not kept");
            tracing::warn!(sink = "influx", attempt = 1, "write failed, retrying");
            tracing::warn!(sink = "influx", attempt = 2, "write failed, retrying");
            tracing::error!(target: "sluice_amqp", "broker connection lost");
        });
        let entries = logs.entries();
        assert_eq!(entries.len(), 2, "{entries:#?}");
        assert_eq!(entries[0].level, "ERROR");
        assert_eq!(entries[0].target, "sluice_amqp");
        assert_eq!(entries[0].message, "broker connection lost");
        assert_eq!(entries[1].message, "write failed, retrying");
        assert_eq!(entries[1].repeats, 2);
        assert_eq!(entries[1].fields["attempt"], "2", "the last one's fields");
        assert_eq!(entries[1].fields["sink"], "influx");
    }
}
