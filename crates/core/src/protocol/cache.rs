//! A small, bounded, expiring map for what an isolate may remember between requests.
//! Time is passed in, so expiry is testable.

use std::collections::HashMap;

pub struct TtlCache<V> {
    entries: HashMap<String, (V, u64)>,
    capacity: usize,
}

impl<V> TtlCache<V> {
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            entries: HashMap::new(),
            capacity,
        }
    }

    /// The value for `key` if it has not expired at `now_ms`.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<&V> {
        match self.entries.get(key) {
            Some((v, expires)) if now_ms < *expires => Some(v),
            _ => None,
        }
    }

    /// Remembers `value` until `now_ms + ttl_ms`. When full, expired entries go first; if none
    /// have expired, everything goes: the cache stays bounded whatever keys callers invent.
    pub fn insert(&mut self, key: String, value: V, now_ms: u64, ttl_ms: u64) {
        if ttl_ms == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (_, expires)| now_ms < *expires);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries
            .insert(key, (value, now_ms.saturating_add(ttl_ms)));
    }

    /// Forgets `key`: the next `get` misses.
    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
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
        }
        assert_eq!(c.get("k999", 1), Some(&999));
    }

    #[test]
    fn zero_ttl_disables_caching() {
        let mut c = TtlCache::new(8);
        c.insert("a".into(), 1, 0, 0);
        assert!(c.is_empty());
    }
}
