//! Taps: a sample of what passes a stage (decoded points, documents, dead letters), as JSON
//! lines, for `sluice tap` to read from a running process.
//!
//! A tap costs the stage one relaxed atomic load per item while nobody listens. While someone
//! does, it keeps at most [`MAX_SAMPLES_PER_SECOND`] items a second, so that even a listener
//! on a path doing a million items a second adds a few hundred serialisations, not a million.
//! Listeners that fall behind lose samples (they are samples) rather than holding the stage.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::broadcast;

/// The most items a tap samples a second, whatever its listeners ask for.
pub const MAX_SAMPLES_PER_SECOND: u64 = 100;
/// Samples waiting for the slowest listener before it starts losing them.
const BACKLOG: usize = 256;

static TAPS: LazyLock<Mutex<BTreeMap<&'static str, Arc<Tap>>>> = LazyLock::new(Mutex::default);
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// One stage's tap. Stages hold it from their start; [`listen`] finds it by name.
#[derive(Debug)]
pub struct Tap {
    name: &'static str,
    listeners: AtomicUsize,
    /// Nanoseconds since [`EPOCH`] before which no sample is taken.
    next_sample_at: AtomicU64,
    samples: broadcast::Sender<Arc<str>>,
}

/// The tap called `name`, made on first use. Every stage of that name shares it.
pub fn named(name: &'static str) -> Arc<Tap> {
    let mut taps = TAPS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(taps.entry(name).or_insert_with(|| {
        Arc::new(Tap {
            name,
            listeners: AtomicUsize::new(0),
            next_sample_at: AtomicU64::new(0),
            samples: broadcast::channel(BACKLOG).0,
        })
    }))
}

/// The names of the taps the running stages opened.
pub fn names() -> Vec<&'static str> {
    let taps = TAPS.lock().unwrap_or_else(PoisonError::into_inner);
    taps.keys().copied().collect()
}

/// Starts listening to the tap called `name`; `None` when no stage opened one.
pub fn listen(name: &str) -> Option<TapListener> {
    let tap = {
        let taps = TAPS.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(taps.get(name)?)
    };
    let samples = tap.samples.subscribe();
    tap.listeners.fetch_add(1, Ordering::Relaxed);
    Some(TapListener { tap, samples })
}

impl Tap {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether anyone listens: the one check a stage pays per item.
    #[inline]
    pub fn is_open(&self) -> bool {
        self.listeners.load(Ordering::Relaxed) > 0
    }

    /// Samples an item: `record` (its JSON) is made only when someone listens and the rate
    /// allows, so a stage may pass a closure that allocates.
    #[inline]
    pub fn offer(&self, record: impl FnOnce() -> serde_json::Value) {
        if self.is_open() {
            self.offer_to_listeners(record);
        }
    }

    fn offer_to_listeners(&self, record: impl FnOnce() -> serde_json::Value) {
        let now = u64::try_from(EPOCH.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let due = self.next_sample_at.load(Ordering::Relaxed);
        let next = now.saturating_add(1_000_000_000 / MAX_SAMPLES_PER_SECOND);
        // Of the stages sharing this tap, one wins each slot; the others go on at once.
        if now < due
            || self
                .next_sample_at
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        // No receiver left (the last listener went between the check and here): nothing to do.
        let _ = self.samples.send(Arc::from(record().to_string()));
    }
}

/// A listener's end of a tap; the tap closes again when the last one is dropped.
#[derive(Debug)]
pub struct TapListener {
    tap: Arc<Tap>,
    samples: broadcast::Receiver<Arc<str>>,
}

impl TapListener {
    /// The next sample, one JSON object. Samples lost to a slow reader are skipped over.
    pub async fn next(&mut self) -> Arc<str> {
        loop {
            match self.samples.recv().await {
                Ok(sample) => return sample,
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                // The tap holds the sender for as long as this listener holds the tap.
                Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
            }
        }
    }

    pub fn tap_name(&self) -> &'static str {
        self.tap.name
    }
}

impl Drop for TapListener {
    fn drop(&mut self) {
        self.tap.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_closed_tap_never_makes_a_record() {
        let tap = named("test-closed");
        tap.offer(|| unreachable!("nobody listens"));
        assert!(!tap.is_open());
    }

    #[tokio::test]
    async fn a_listener_gets_samples_at_the_capped_rate_and_closing_it_closes_the_tap() {
        let tap = named("test-rate");
        assert!(listen("no-such-tap").is_none());
        let mut listener = listen("test-rate").expect("opened above");
        assert!(tap.is_open());
        let mut made = 0;
        for index in 0..10_000 {
            tap.offer(|| {
                made += 1;
                serde_json::json!({ "index": index })
            });
        }
        // A burst far faster than the cap: the first item is sampled, the rest fall within
        // its slot (10 ms) unless this machine paused for that long.
        assert!((1..=10).contains(&made), "{made} records made");
        let first = tokio::time::timeout(Duration::from_secs(1), listener.next())
            .await
            .expect("a sample");
        assert_eq!(&*first, r#"{"index":0}"#);
        assert!(names().contains(&"test-rate"));
        drop(listener);
        assert!(!tap.is_open());
    }
}
