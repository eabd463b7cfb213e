//! A map whose entries are forgotten a fixed time after they were first
//! inserted, and the oldest first when it is full: the memory of things a
//! flood can create (fragment verdicts, SYNs bridged to a down backend),
//! bounded in entries and time. Time is passed in; nothing here reads a
//! clock.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

#[derive(Debug)]
pub struct ExpiringMap<K, V> {
    /// Value and first insertion time.
    entries: HashMap<K, (V, u64)>,
    /// Keys in insertion order with their insertion time; a key removed
    /// (and perhaps inserted again since) leaves a stale pair, skipped.
    order: VecDeque<(K, u64)>,
    ttl_ms: u64,
    capacity: usize,
}

impl<K: Copy + Eq + Hash, V> ExpiringMap<K, V> {
    pub fn new(ttl_ms: u64, capacity: usize) -> Self {
        ExpiringMap {
            entries: HashMap::new(),
            order: VecDeque::new(),
            ttl_ms,
            capacity,
        }
    }

    /// Insert or replace `key`'s value; a replaced one keeps its first
    /// insertion time (so an entry cannot be kept alive by repeating it).
    pub fn insert(&mut self, now_ms: u64, key: K, value: V) {
        self.expire(now_ms);
        if let Some(e) = self.entries.get_mut(&key) {
            e.0 = value;
            return;
        }
        self.entries.insert(key, (value, now_ms));
        self.order.push_back((key, now_ms));
        while self.entries.len() > self.capacity {
            self.pop_oldest();
        }
    }

    pub fn get(&mut self, now_ms: u64, key: &K) -> Option<&V> {
        self.expire(now_ms);
        self.entries.get(key).map(|(v, _)| v)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|(v, _)| v)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn expire(&mut self, now_ms: u64) {
        while self
            .order
            .front()
            .is_some_and(|&(_, at)| at + self.ttl_ms <= now_ms)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        while let Some((key, at)) = self.order.pop_front() {
            if self
                .entries
                .get(&key)
                .is_some_and(|&(_, first)| first == at)
            {
                self.entries.remove(&key);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_first_insertion() {
        let mut m = ExpiringMap::new(1000, 10);
        m.insert(0, 1, "a");
        m.insert(900, 1, "b");
        assert_eq!(m.get(999, &1), Some(&"b"));
        assert_eq!(m.get(1000, &1), None, "1000 ms after the first insert");
    }

    #[test]
    fn the_oldest_goes_first_when_full_and_removed_keys_leave_no_trace() {
        let mut m = ExpiringMap::new(1000, 2);
        m.insert(0, 1, ());
        m.insert(1, 2, ());
        m.remove(&1);
        m.insert(2, 1, ());
        m.insert(3, 3, ());
        // Full at 2: key 2 (oldest live) went, not key 1's new entry.
        assert!(m.get(3, &1).is_some() && m.get(3, &2).is_none() && m.get(3, &3).is_some());
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(1001, &1), Some(&()), "re-inserted at 2, not 0");
        assert!(m.get(1002, &1).is_none());
    }
}
