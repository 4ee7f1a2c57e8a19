//! [`KeyedStates`]: a rule's or policy's per-key state, bounded, that finds its least recently
//! stamped key in O(log n) instead of scanning every key. Both engines keep their keys in it: the
//! manager's policies (`crate::engine`) and the generic rules (`crate::generic`).
//!
//! Why: a rule at its key limit evicts a key for every new one. A scan of 10,000 keys per
//! event made such a rule ~100 times slower than one below its limit, which a host_failure
//! policy matching many paths per node reaches in normal operation (its keys are series).
//!
//! The index (`by_stamp`, one `(stamp, key)` entry per key) is derived from the states and is not
//! serialised: a checkpoint holds the plain map, exactly as before, and the index is rebuilt when
//! it is read back. Every method that adds, removes or restamps a key moves its entry with it.
//!
//! Per observation the cost is one borrowed lookup of the key and, when its stamp changed, one
//! remove and one insert in the index that reuse the entry's key text: a known key is never
//! copied. Idle keys are the least recently stamped, so forgetting them
//! ([`KeyedStates::forget_oldest_while`]) reads only the front of the index.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize, Serializer};

/// What orders keys for eviction: the smaller, the sooner a key goes.
pub(crate) trait Stamped {
    fn stamp(&self) -> i64;
}

#[derive(Debug, Clone, Deserialize)]
#[serde(
    from = "BTreeMap<String, V>",
    bound(deserialize = "V: Deserialize<'de> + Stamped")
)]
pub(crate) struct KeyedStates<V> {
    states: BTreeMap<String, V>,
    /// Each key at its stamp, ordered by stamp and then key: the first is the one to evict.
    by_stamp: BTreeSet<StampEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct StampEntry {
    stamp: i64,
    key: String,
}

/// A borrowed `(stamp, key)`, so that finding a [`StampEntry`] does not copy its key. Ordered
/// exactly as [`StampEntry`] is (its derived order: stamp, then key text).
trait StampProbe {
    fn parts(&self) -> (i64, &str);
}

impl StampProbe for StampEntry {
    fn parts(&self) -> (i64, &str) {
        (self.stamp, &self.key)
    }
}

impl StampProbe for (i64, &str) {
    fn parts(&self) -> (i64, &str) {
        *self
    }
}

impl<'a> Borrow<dyn StampProbe + 'a> for StampEntry {
    fn borrow(&self) -> &(dyn StampProbe + 'a) {
        self
    }
}

impl PartialEq for dyn StampProbe + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn StampProbe + '_ {}

impl PartialOrd for dyn StampProbe + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn StampProbe + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

impl<V> Default for KeyedStates<V> {
    fn default() -> Self {
        Self {
            states: BTreeMap::new(),
            by_stamp: BTreeSet::new(),
        }
    }
}

impl<V: PartialEq> PartialEq for KeyedStates<V> {
    fn eq(&self, other: &Self) -> bool {
        self.states == other.states
    }
}

/// The plain map, as before the index existed (and without copying it).
impl<V: Serialize> Serialize for KeyedStates<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.states.serialize(serializer)
    }
}

impl<V: Stamped> From<BTreeMap<String, V>> for KeyedStates<V> {
    fn from(states: BTreeMap<String, V>) -> Self {
        let by_stamp = states
            .iter()
            .map(|(key, state)| StampEntry {
                stamp: state.stamp(),
                key: key.clone(),
            })
            .collect();
        Self { states, by_stamp }
    }
}

impl<V> From<KeyedStates<V>> for BTreeMap<String, V> {
    fn from(keyed: KeyedStates<V>) -> Self {
        keyed.states
    }
}

impl<V> KeyedStates<V> {
    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    /// The plain map: what a checkpoint holds.
    pub(crate) fn as_map(&self) -> &BTreeMap<String, V> {
        &self.states
    }
}

impl<V: Stamped> KeyedStates<V> {
    /// The states in key order. Callers may not change stamps through this (sweeps only flip
    /// flags and trim windows).
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.states.values_mut()
    }

    /// Applies `change` to `key`'s state, made by `make` when new; a new key beyond `max_keys`
    /// first evicts the least recently stamped one (ties: the first in key order). The key is
    /// looked up borrowed and copied only when it is new.
    pub(crate) fn update<R>(
        &mut self,
        key: &str,
        max_keys: usize,
        make: impl FnOnce() -> V,
        change: impl FnOnce(&mut V) -> R,
    ) -> R {
        if let Some(state) = self.states.get_mut(key) {
            let before = state.stamp();
            let result = change(state);
            let after = state.stamp();
            if before != after {
                restamp(&mut self.by_stamp, key, before, after);
            }
            return result;
        }
        while self.states.len() >= max_keys.max(1) {
            if !self.evict_oldest() {
                break;
            }
        }
        let mut state = make();
        let result = change(&mut state);
        self.by_stamp.insert(StampEntry {
            stamp: state.stamp(),
            key: key.to_owned(),
        });
        self.states.insert(key.to_owned(), state);
        result
    }

    /// Keeps the states `keep` answers true for.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let by_stamp = &mut self.by_stamp;
        self.states.retain(|key, state| {
            let kept = keep(state);
            if !kept {
                let probe: &dyn StampProbe = &(state.stamp(), key.as_str());
                by_stamp.remove(probe);
            }
            kept
        });
    }

    /// Forgets the least recently stamped keys for as long as `forget` answers true for the
    /// oldest stamp left: all the keys `forget` is true for, when it holds for every stamp below
    /// one it holds for (such as "older than a cutoff"). Reads only the front of the index.
    pub(crate) fn forget_oldest_while(&mut self, mut forget: impl FnMut(i64) -> bool) {
        while self
            .by_stamp
            .first()
            .is_some_and(|oldest| forget(oldest.stamp))
        {
            if !self.evict_oldest() {
                break;
            }
        }
    }

    /// Evicts the least recently stamped keys until at most `max_keys` are left.
    pub(crate) fn truncate(&mut self, max_keys: usize) {
        while self.states.len() > max_keys {
            if !self.evict_oldest() {
                break;
            }
        }
    }

    fn evict_oldest(&mut self) -> bool {
        match self.by_stamp.pop_first() {
            Some(oldest) => {
                self.states.remove(&oldest.key);
                true
            }
            None => false,
        }
    }

    /// The index holds exactly each key at its stamp.
    #[cfg(test)]
    pub(crate) fn index_in_step(&self) -> bool {
        let expected: BTreeSet<StampEntry> = self
            .states
            .iter()
            .map(|(key, state)| StampEntry {
                stamp: state.stamp(),
                key: key.clone(),
            })
            .collect();
        expected == self.by_stamp
    }
}

/// Moves `key` from `before` to `after`, reusing its entry's key text.
fn restamp(by_stamp: &mut BTreeSet<StampEntry>, key: &str, before: i64, after: i64) {
    let probe: &dyn StampProbe = &(before, key);
    match by_stamp.take(probe) {
        Some(mut entry) => {
            entry.stamp = after;
            by_stamp.insert(entry);
        }
        // Not reachable while the index is kept in step; stay consistent anyway.
        None => {
            by_stamp.insert(StampEntry {
                stamp: after,
                key: key.to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Seen(i64);

    impl Stamped for Seen {
        fn stamp(&self) -> i64 {
            self.0
        }
    }

    /// The plain-map model of eviction: the least recently stamped key, the first in key order.
    fn model_evict_oldest(model: &mut BTreeMap<String, Seen>) {
        let oldest = model
            .iter()
            .min_by_key(|(_, seen)| seen.0)
            .map(|(key, _)| key.clone());
        if let Some(oldest) = oldest {
            model.remove(&oldest);
        }
    }

    /// The plain-map model of [`KeyedStates::update`] setting `key`'s stamp.
    fn model_update(model: &mut BTreeMap<String, Seen>, key: &str, stamp: i64, max_keys: usize) {
        if !model.contains_key(key) && model.len() >= max_keys {
            model_evict_oldest(model);
        }
        model.insert(key.to_owned(), Seen(stamp));
    }

    #[test]
    fn a_new_key_at_the_limit_evicts_the_least_recently_stamped_first_in_key_order() {
        let mut keyed = KeyedStates::default();
        keyed.update("b", 3, || Seen(5), |_| ());
        keyed.update("a", 3, || Seen(5), |_| ());
        keyed.update("c", 3, || Seen(1), |_| ());
        keyed.update("c", 3, || Seen(0), |seen| seen.0 = 9); // c is now the newest
        keyed.update("d", 3, || Seen(10), |_| ()); // evicts a (5, first in key order)
        let keys: Vec<&String> = keyed.states.keys().collect();
        assert_eq!(keys, ["b", "c", "d"]);
        keyed.update("e", 3, || Seen(11), |_| ()); // evicts b
        let keys: Vec<&String> = keyed.states.keys().collect();
        assert_eq!(keys, ["c", "d", "e"]);
    }

    proptest::proptest! {
        /// The index evicts exactly what a scan for the least recently stamped key (first in key
        /// order) would, whatever the updates.
        #[test]
        fn evicts_as_a_full_scan_would(
            updates in proptest::collection::vec((0u8..12, 0i64..20), 1..200),
            max_keys in 1usize..6,
        ) {
            let mut keyed = KeyedStates::default();
            let mut model: BTreeMap<String, Seen> = BTreeMap::new();
            for (key, stamp) in updates {
                let key = format!("k{key}");
                model_update(&mut model, &key, stamp, max_keys);
                keyed.update(&key, max_keys, || Seen(stamp), |seen| seen.0 = stamp);
                proptest::prop_assert_eq!(&keyed.states, &model);
                proptest::prop_assert!(keyed.index_in_step());
            }
        }

        /// The index stays in step with the states, and each change does to the states what its
        /// plain-map version would, through updates (stamps going back too), retains, idle
        /// forgetting and truncation.
        #[test]
        fn the_index_stays_in_step_through_every_change(
            steps in proptest::collection::vec((0u8..4, 0u8..10, 0i64..30), 1..200),
            max_keys in 1usize..6,
        ) {
            let mut keyed = KeyedStates::default();
            let mut model: BTreeMap<String, Seen> = BTreeMap::new();
            for (change, key, stamp) in steps {
                match change {
                    0 | 1 => {
                        let key = format!("k{key}");
                        keyed.update(&key, max_keys, || Seen(stamp), |seen| seen.0 = stamp);
                        model_update(&mut model, &key, stamp, max_keys);
                    }
                    2 => {
                        let odd = |seen: &Seen| seen.0 % 2 == 1 || seen.0 > stamp;
                        keyed.retain(odd);
                        model.retain(|_, seen| odd(seen));
                    }
                    _ => {
                        keyed.forget_oldest_while(|oldest| oldest < stamp);
                        model.retain(|_, seen| seen.0 >= stamp);
                        keyed.truncate(usize::from(key));
                        while model.len() > usize::from(key) {
                            model_evict_oldest(&mut model);
                        }
                    }
                }
                proptest::prop_assert_eq!(&keyed.states, &model);
                proptest::prop_assert!(keyed.index_in_step());
            }
        }
    }

    #[test]
    fn restoring_beyond_the_key_limit_drops_the_least_recently_stamped() {
        let states: BTreeMap<String, Seen> = [("w", 4), ("x", 3), ("y", 1), ("z", 3)]
            .into_iter()
            .map(|(key, stamp)| (key.to_owned(), Seen(stamp)))
            .collect();
        let mut keyed = KeyedStates::from(states);
        keyed.truncate(2);
        assert_eq!(
            keyed.states.keys().collect::<Vec<_>>(),
            ["w", "z"],
            "y, then x (tie, key order)"
        );
        assert!(keyed.index_in_step());
    }

    #[test]
    fn forgetting_idle_keys_takes_them_from_the_front_only_while_the_oldest_is_idle() {
        let mut keyed = KeyedStates::default();
        for (key, stamp) in [("a", 7), ("b", 2), ("c", 5), ("d", 2)] {
            keyed.update(key, 10, || Seen(stamp), |_| ());
        }
        keyed.forget_oldest_while(|oldest| oldest < 5);
        assert_eq!(keyed.states.keys().collect::<Vec<_>>(), ["a", "c"]);
        keyed.forget_oldest_while(|_| false);
        assert_eq!(keyed.len(), 2);
        keyed.forget_oldest_while(|_| true);
        assert_eq!(keyed.len(), 0);
        assert!(keyed.index_in_step());
    }

    #[test]
    fn the_index_is_rebuilt_from_a_checkpoint_and_after_retain() {
        let mut keyed = KeyedStates::default();
        for (key, stamp) in [("x", 3), ("y", 1), ("z", 2)] {
            keyed.update(key, 10, || Seen(stamp), |_| ());
        }
        let text = serde_json::to_string(&keyed).expect("serialises");
        assert_eq!(text, r#"{"x":3,"y":1,"z":2}"#, "a plain map, as before");
        let mut restored: KeyedStates<Seen> = serde_json::from_str(&text).expect("parses");
        assert_eq!(restored, keyed);
        restored.truncate(2); // y goes
        restored.retain(|seen| seen.0 != 3); // x goes
        restored.update("w", 1, || Seen(0), |_| ()); // z goes to make room
        let keys: Vec<&String> = restored.states.keys().collect();
        assert_eq!(keys, ["w"]);
        assert!(restored.index_in_step());
    }
}
