//! A small, bounded, expiring map for what an isolate may remember between requests.
//! Time is passed in, so expiry is testable.
//!
//! When full, an insert of a new key evicts one entry: an expired one if there is any, else the
//! least recently used. Two ordered indexes (by expiry, by last use) make that O(log n) with no
//! scan and no full clear, so a flood of invented keys pushes out cold entries one at a time
//! while an entry that keeps being read stays.

use std::collections::{BTreeMap, HashMap};

struct Entry<V> {
    value: V,
    expires: u64,
    /// When it was last inserted or read, as a tick of `TtlCache::clock`: unique per entry.
    used: u64,
}

pub struct TtlCache<V> {
    entries: HashMap<String, Entry<V>>,
    /// (expiry, last use) → key: the first one is the entry that expires soonest.
    by_expiry: BTreeMap<(u64, u64), String>,
    /// Last use → key: the first one is the least recently used entry.
    by_use: BTreeMap<u64, String>,
    clock: u64,
    capacity: usize,
}

impl<V> TtlCache<V> {
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            entries: HashMap::new(),
            by_expiry: BTreeMap::new(),
            by_use: BTreeMap::new(),
            clock: 0,
            capacity,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock = self.clock.wrapping_add(1);
        self.clock
    }

    /// The value for `key` if it has not expired at `now_ms`; a hit counts as a use, so the
    /// entry is the last to be evicted.
    pub fn get(&mut self, key: &str, now_ms: u64) -> Option<&V> {
        let used = self.tick();
        let entry = self.entries.get_mut(key)?;
        if now_ms >= entry.expires {
            return None;
        }
        let before = std::mem::replace(&mut entry.used, used);
        let expires = entry.expires;
        if let Some(k) = self.by_use.remove(&before) {
            self.by_use.insert(used, k);
        }
        if let Some(k) = self.by_expiry.remove(&(expires, before)) {
            self.by_expiry.insert((expires, used), k);
        }
        self.entries.get(key).map(|e| &e.value)
    }

    /// Remembers `value` until `now_ms + ttl_ms`. When full, one entry makes room: an expired
    /// one first, else the least recently used. The cache never holds more than its capacity,
    /// whatever keys callers invent.
    pub fn insert(&mut self, key: String, value: V, now_ms: u64, ttl_ms: u64) {
        if ttl_ms == 0 || self.capacity == 0 {
            return;
        }
        self.remove(&key);
        while self.entries.len() >= self.capacity {
            if !self.evict_one(now_ms) {
                break;
            }
        }
        let used = self.tick();
        let expires = now_ms.saturating_add(ttl_ms);
        self.by_use.insert(used, key.clone());
        self.by_expiry.insert((expires, used), key.clone());
        self.entries.insert(
            key,
            Entry {
                value,
                expires,
                used,
            },
        );
    }

    /// Evicts the soonest-expiring entry if it has expired, else the least recently used one.
    fn evict_one(&mut self, now_ms: u64) -> bool {
        let expired = self
            .by_expiry
            .first_key_value()
            .filter(|((expires, _), _)| now_ms >= *expires)
            .map(|(_, k)| k.clone());
        let victim = expired.or_else(|| self.by_use.first_key_value().map(|(_, k)| k.clone()));
        match victim {
            Some(k) => {
                self.remove(&k);
                true
            }
            None => false,
        }
    }

    /// Forgets `key`: the next `get` misses.
    pub fn remove(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            self.by_use.remove(&e.used);
            self.by_expiry.remove(&(e.expires, e.used));
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_at_their_ttl() {
        let mut c = TtlCache::new(4);
        c.insert("a".into(), 1, 1_000, 500);
        assert_eq!(c.get("a", 1_000), Some(&1));
        assert_eq!(c.get("a", 1_499), Some(&1));
        assert_eq!(c.get("a", 1_500), None);
    }

    #[test]
    fn cache_stays_bounded_under_unique_keys() {
        let mut c = TtlCache::new(8);
        for i in 0..1_000 {
            c.insert(format!("k{i}"), i, 0, 60_000);
            assert!(c.len() <= 8);
            assert_eq!(c.by_use.len(), c.len());
            assert_eq!(c.by_expiry.len(), c.len());
        }
        assert_eq!(c.get("k999", 1), Some(&999));
        // Only the oldest went: the last eight are all still there.
        for i in 992..1_000 {
            assert_eq!(c.get(&format!("k{i}"), 1), Some(&i));
        }
    }

    #[test]
    fn a_flood_of_new_keys_evicts_one_entry_at_a_time_never_all() {
        let mut c = TtlCache::new(4);
        for i in 0..4 {
            c.insert(format!("good{i}"), i, 0, 60_000);
        }
        c.insert("flood0".into(), 100, 1, 60_000);
        assert_eq!(c.len(), 4);
        // The least recently used went, the other three good entries stayed.
        assert_eq!(c.get("good0", 2), None);
        for i in 1..4 {
            assert_eq!(c.get(&format!("good{i}"), 2), Some(&i));
        }
    }

    #[test]
    fn a_hot_entry_survives_a_flood_of_new_keys() {
        let mut c = TtlCache::new(16);
        c.insert("hot".into(), 7, 0, 60_000);
        for i in 0..10_000u64 {
            c.insert(format!("invented{i}"), 0, 1, 60_000);
            assert!(c.len() <= 16);
            if i % 8 == 0 {
                assert_eq!(c.get("hot", 1), Some(&7), "evicted after {i} new keys");
            }
        }
        assert_eq!(c.get("hot", 1), Some(&7));
    }

    #[test]
    fn expired_entries_are_evicted_before_live_ones() {
        let mut c = TtlCache::new(3);
        c.insert("live-old".into(), 1, 0, 60_000);
        c.insert("short".into(), 2, 0, 10);
        c.insert("live-new".into(), 3, 0, 60_000);
        // "short" has expired: it makes room, although "live-old" is used less recently.
        c.insert("next".into(), 4, 100, 60_000);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("live-old", 100), Some(&1));
        assert_eq!(c.get("live-new", 100), Some(&3));
        assert_eq!(c.get("next", 100), Some(&4));
    }

    #[test]
    fn inserting_a_key_again_replaces_it_without_evicting_another() {
        let mut c = TtlCache::new(2);
        c.insert("a".into(), 1, 0, 1_000);
        c.insert("b".into(), 2, 0, 1_000);
        c.insert("a".into(), 3, 0, 5_000);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("b", 1), Some(&2));
        assert_eq!(c.get("a", 2_000), Some(&3));
        c.remove("a");
        assert_eq!(c.get("a", 1), None);
        assert_eq!(c.by_use.len(), 1);
        assert_eq!(c.by_expiry.len(), 1);
    }

    #[test]
    fn zero_ttl_disables_caching() {
        let mut c = TtlCache::new(8);
        c.insert("a".into(), 1, 0, 0);
        assert!(c.is_empty());
    }
}
