//! Hot manifests: the verified bytes of recently served manifests, kept in memory so that a manifest GET is a memory
//! hit rather than a read and a hash on the blocking pool.
//!
//! Bounded by bytes (`HOT_MANIFEST_BYTES`), least recently used out first; a manifest larger than an eighth of the
//! bound is never kept. Each entry holds the bytes with the version of the stored copy they were read from (verified
//! against the digest then); `Store::read_manifest` serves a hit only while the stored copy still has that version
//! (one `stat`), so a manifest file replaced, truncated or deleted on disk is read (and checked) again as before.
//! Part of the index (`Index::keep_manifest`, `Index::remove_manifest`): readers add the bytes they read and verified
//! of an indexed manifest; un-indexing a manifest drops its bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;

use crate::digest::Digest;
use crate::store::records::Version;

/// Bytes of manifests kept in memory at most.
pub const HOT_MANIFEST_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug)]
struct Hot {
    bytes: Bytes,
    version: Version,
    /// When it was last used (a tick of `Lru::clock`).
    used: u64,
}

#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<Digest, Hot>,
    /// Entries by last use, oldest first.
    order: BTreeMap<u64, Digest>,
    clock: u64,
    bytes: usize,
}

impl Lru {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn remove(&mut self, digest: &Digest) {
        if let Some(old) = self.entries.remove(digest) {
            self.order.remove(&old.used);
            self.bytes -= old.bytes.len();
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct HotManifests {
    limit: usize,
    lru: Mutex<Lru>,
}

impl Default for HotManifests {
    fn default() -> Self {
        HotManifests::new(HOT_MANIFEST_BYTES)
    }
}

impl HotManifests {
    pub(crate) fn new(limit: usize) -> HotManifests {
        HotManifests { limit, lru: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bytes and the version they were read from, marking them used.
    pub(crate) fn get(&self, digest: &Digest) -> Option<(Bytes, Version)> {
        let mut lru = self.lock();
        let now = lru.tick();
        let hot = lru.entries.get_mut(digest)?;
        let (was, found) = (std::mem::replace(&mut hot.used, now), (hot.bytes.clone(), hot.version));
        lru.order.remove(&was);
        lru.order.insert(now, digest.clone());
        Some(found)
    }

    /// Keep `bytes` (read from `version`) if `allowed()` says so, under the lock; the oldest entries make room.
    pub(crate) fn put_if(&self, digest: &Digest, bytes: Bytes, version: Version, allowed: impl FnOnce() -> bool) {
        if bytes.len() > self.limit / 8 {
            return;
        }
        let mut lru = self.lock();
        if !allowed() {
            return;
        }
        lru.remove(digest);
        while lru.bytes + bytes.len() > self.limit {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if let Some(old) = lru.entries.remove(&oldest) {
                lru.bytes -= old.bytes.len();
            }
        }
        let used = lru.tick();
        lru.bytes += bytes.len();
        lru.order.insert(used, digest.clone());
        lru.entries.insert(digest.clone(), Hot { bytes, version, used });
    }

    /// Forget a manifest's bytes.
    pub(crate) fn remove(&self, digest: &Digest) {
        self.lock().remove(digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(n: usize, len: usize) -> (Digest, Bytes) {
        let bytes = Bytes::from(format!("{n:0len$}"));
        (Digest::sha256_of(&bytes), bytes)
    }

    #[test]
    fn bounded_by_bytes_least_recently_used_out_first() {
        let hot = HotManifests::new(8 * 100);
        let (a, b, c) = (manifest(1, 100), manifest(2, 100), manifest(3, 100));
        for (d, bytes) in [&a, &b, &c] {
            hot.put_if(d, bytes.clone(), Version(2), || true);
        }
        assert!(hot.get(&a.0).is_some(), "a is used again: b is now the oldest");
        for n in 4..=9 {
            let (d, bytes) = manifest(n, 100);
            hot.put_if(&d, bytes, Version(2), || true);
        }
        assert!(hot.get(&b.0).is_none(), "the least recently used made room");
        assert_eq!(hot.get(&a.0), Some((a.1.clone(), Version(2))));
        assert!(hot.get(&c.0).is_some());
        assert!(hot.lock().bytes <= 800);
    }

    #[test]
    fn kept_only_when_allowed_and_never_when_too_large() {
        let hot = HotManifests::new(8 * 100);
        let (d, bytes) = manifest(1, 100);
        hot.put_if(&d, bytes.clone(), Version(2), || false);
        assert!(hot.get(&d).is_none(), "not allowed (no longer indexed)");
        let (big, big_bytes) = manifest(2, 101);
        hot.put_if(&big, big_bytes, Version(2), || true);
        assert!(hot.get(&big).is_none(), "larger than an eighth of the bound");
        hot.put_if(&d, bytes, Version(2), || true);
        hot.remove(&d);
        assert!(hot.get(&d).is_none());
        assert_eq!(hot.lock().bytes, 0);
    }
}
