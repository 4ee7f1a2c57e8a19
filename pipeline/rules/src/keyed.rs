//! [`KeyedStates`]: a policy's per-key state, bounded, that finds its least recently seen key in
//! O(log n) instead of scanning every key.
//!
//! Why: a policy at its key limit evicts a key for every new one. A scan of 10,000 keys per
//! event made such a policy ~100 times slower than one below its limit, which a host_failure
//! policy matching many paths per node reaches in normal operation (its keys are series).
//!
//! The index (`by_stamp`) is derived from the states and is not serialised: a checkpoint holds
//! the plain map, exactly as before, and the index is rebuilt when it is read back.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// What orders keys for eviction: the smaller, the sooner a key goes.
pub(crate) trait Stamped {
    fn stamp(&self) -> i64;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    from = "BTreeMap<String, V>",
    into = "BTreeMap<String, V>",
    bound(
        serialize = "V: Serialize + Clone",
        deserialize = "V: Deserialize<'de> + Stamped"
    )
)]
pub(crate) struct KeyedStates<V> {
    states: BTreeMap<String, V>,
    /// Stamp -> the keys with that stamp; ties go in key order.
    by_stamp: BTreeMap<i64, BTreeSet<String>>,
}

impl<V> Default for KeyedStates<V> {
    fn default() -> Self {
        Self {
            states: BTreeMap::new(),
            by_stamp: BTreeMap::new(),
        }
    }
}

impl<V: PartialEq> PartialEq for KeyedStates<V> {
    fn eq(&self, other: &Self) -> bool {
        self.states == other.states
    }
}

impl<V: Stamped> From<BTreeMap<String, V>> for KeyedStates<V> {
    fn from(states: BTreeMap<String, V>) -> Self {
        let mut by_stamp: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
        for (key, state) in &states {
            by_stamp
                .entry(state.stamp())
                .or_default()
                .insert(key.clone());
        }
        Self { states, by_stamp }
    }
}

impl<V> From<KeyedStates<V>> for BTreeMap<String, V> {
    fn from(keyed: KeyedStates<V>) -> Self {
        keyed.states
    }
}

impl<V: Stamped> KeyedStates<V> {
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        // Callers may not change stamps through this (sweeps only flip flags).
        self.states.values_mut()
    }

    /// Applies `change` to `key`'s state, made by `make` when new; a new key beyond `max_keys`
    /// first evicts the least recently stamped one (ties: the first in key order).
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
                self.restamp(key, before, after);
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
        self.by_stamp
            .entry(state.stamp())
            .or_default()
            .insert(key.to_owned());
        self.states.insert(key.to_owned(), state);
        result
    }

    /// Keeps the states `keep` answers true for.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let before = self.states.len();
        self.states.retain(|_, state| keep(state));
        if self.states.len() != before {
            let states = std::mem::take(&mut self.states);
            *self = Self::from(states);
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

    fn restamp(&mut self, key: &str, before: i64, after: i64) {
        let owned = match self.by_stamp.get_mut(&before) {
            Some(keys) => {
                let owned = keys.take(key);
                if keys.is_empty() {
                    self.by_stamp.remove(&before);
                }
                owned
            }
            None => None,
        };
        self.by_stamp
            .entry(after)
            .or_default()
            .insert(owned.unwrap_or_else(|| key.to_owned()));
    }

    fn evict_oldest(&mut self) -> bool {
        let Some(mut oldest) = self.by_stamp.first_entry() else {
            return false;
        };
        let key = oldest.get_mut().pop_first();
        if oldest.get().is_empty() {
            oldest.remove();
        }
        match key {
            Some(key) => {
                self.states.remove(&key);
                true
            }
            None => false,
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
                if !model.contains_key(&key) && model.len() >= max_keys {
                    let oldest = model
                        .iter()
                        .min_by_key(|(_, seen)| seen.0)
                        .map(|(key, _)| key.clone());
                    if let Some(oldest) = oldest {
                        model.remove(&oldest);
                    }
                }
                model.insert(key.clone(), Seen(stamp));
                keyed.update(&key, max_keys, || Seen(stamp), |seen| seen.0 = stamp);
                proptest::prop_assert_eq!(&keyed.states, &model);
            }
        }
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
    }
}
