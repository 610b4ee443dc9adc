//! A byte-bounded least-recently-used map: the bookkeeping of the hot manifests (`hot`) and of the S3 store's disk
//! tier. Each entry has a weight (its bytes); inserting past the bound evicts the least recently used entries, never
//! the one just inserted, and hands them back (the tier deletes their files). A use is a tick of a counter; the
//! entries are ordered by their last tick in a `BTreeMap`, so finding the oldest is a lookup, not a scan.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

struct Entry<V> {
    value: V,
    weight: u64,
    /// When it was last used (a tick of `clock`).
    used: u64,
}

/// See the module documentation.
pub(crate) struct Lru<K, V> {
    entries: HashMap<K, Entry<V>>,
    /// Keys by last use, oldest first.
    order: BTreeMap<u64, K>,
    clock: u64,
    weight: u64,
    limit: u64,
}

impl<K, V> std::fmt::Debug for Lru<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lru").field("entries", &self.entries.len()).field("weight", &self.weight).finish()
    }
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// An empty map holding at most `limit` of weight (bar the one entry last inserted, whatever its weight).
    pub(crate) fn new(limit: u64) -> Self {
        Lru { entries: HashMap::new(), order: BTreeMap::new(), clock: 0, weight: 0, limit }
    }

    /// The total weight held.
    #[cfg(test)]
    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// The value of `key`, marking it used.
    pub(crate) fn get(&mut self, key: &K) -> Option<&V> {
        self.clock += 1;
        let entry = self.entries.get_mut(key)?;
        let was = std::mem::replace(&mut entry.used, self.clock);
        self.order.remove(&was);
        self.order.insert(self.clock, key.clone());
        Some(&entry.value)
    }

    /// Insert (or replace) `key`, most recently used, and evict the least recently used others until the weight is
    /// within the bound: the evicted entries.
    pub(crate) fn insert(&mut self, key: K, value: V, weight: u64) -> Vec<(K, V)> {
        self.remove(&key);
        let mut evicted = Vec::new();
        while self.weight + weight > self.limit {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(old) = self.entries.remove(&oldest) {
                self.weight -= old.weight;
                evicted.push((oldest, old.value));
            }
        }
        self.clock += 1;
        self.weight += weight;
        self.order.insert(self.clock, key.clone());
        self.entries.insert(key, Entry { value, weight, used: self.clock });
        evicted
    }

    /// Forget `key`.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let old = self.entries.remove(key)?;
        self.order.remove(&old.used);
        self.weight -= old.weight;
        Some(old.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_weight_least_recently_used_out_first() {
        let mut lru = Lru::new(300);
        for k in ["a", "b", "c"] {
            assert!(lru.insert(k, k.len(), 100).is_empty());
        }
        assert!(lru.get(&"a").is_some(), "a is used again: b is now the oldest");
        let evicted: Vec<_> = lru.insert("d", 1, 100).into_iter().map(|(k, _)| k).collect();
        assert_eq!(evicted, ["b"]);
        let evicted: Vec<_> = lru.insert("e", 1, 150).into_iter().map(|(k, _)| k).collect();
        assert_eq!(evicted, ["c", "a"], "oldest first, until the new entry fits");
        assert_eq!(lru.weight(), 250);
        assert!(lru.get(&"b").is_none());
    }

    #[test]
    fn replacing_and_removing_keep_the_weight_right() {
        let mut lru = Lru::new(1000);
        lru.insert("a", (), 400);
        lru.insert("a", (), 100);
        assert_eq!(lru.weight(), 100, "a replaced entry's weight is not counted twice");
        assert_eq!(lru.remove(&"a"), Some(()));
        assert_eq!((lru.weight(), lru.remove(&"a")), (0, None));
    }

    #[test]
    fn an_entry_heavier_than_the_bound_stays_alone() {
        let mut lru = Lru::new(100);
        lru.insert("small", (), 50);
        let evicted = lru.insert("huge", (), 500);
        assert_eq!(evicted.len(), 1, "everything else makes room");
        assert!(lru.get(&"huge").is_some(), "the entry just inserted is never evicted");
        let evicted: Vec<_> = lru.insert("next", (), 10).into_iter().map(|(k, _)| k).collect();
        assert_eq!(evicted, ["huge"], "and goes at the next insert");
    }

    #[test]
    fn eviction_does_not_scan_every_entry() {
        // 100k entries: a linear scan per insert would make this quadratic (minutes); ordered, it is instant.
        let mut lru = Lru::new(50_000);
        let start = std::time::Instant::now();
        for k in 0..100_000u64 {
            lru.insert(k, (), 1);
        }
        assert_eq!(lru.weight(), 50_000);
        assert!(lru.get(&49_999).is_none() && lru.get(&50_000).is_some());
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
