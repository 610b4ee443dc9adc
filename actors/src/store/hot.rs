//! Hot manifests: the verified bytes of recently served manifests, kept in memory so that a manifest GET is a memory
//! hit rather than a read and a hash on the blocking pool.
//!
//! Bounded by bytes (`HOT_MANIFEST_BYTES`), least recently used out first; a manifest larger than an eighth of the
//! bound is never kept. Each entry holds the bytes with the version of the stored copy they were read from (verified
//! against the digest then); `Store::read_manifest` serves a hit only while the stored copy still has that version
//! (one `stat`), so a manifest file replaced, truncated or deleted on disk is read (and checked) again as before.
//! Part of the index (`Index::keep_manifest`, `Index::remove_manifest`): readers add the bytes they read and verified
//! of an indexed manifest; un-indexing a manifest drops its bytes.

use std::sync::Mutex;

use bytes::Bytes;

use crate::digest::Digest;
use crate::store::lru::Lru;
use crate::store::records::Version;

/// Bytes of manifests kept in memory at most.
pub const HOT_MANIFEST_BYTES: usize = 8 * 1024 * 1024;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct HotManifests {
    limit: usize,
    lru: Mutex<Lru<Digest, (Bytes, Version)>>,
}

impl Default for HotManifests {
    fn default() -> Self {
        HotManifests::new(HOT_MANIFEST_BYTES)
    }
}

impl HotManifests {
    pub(crate) fn new(limit: usize) -> HotManifests {
        HotManifests { limit, lru: Mutex::new(Lru::new(limit as u64)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<Digest, (Bytes, Version)>> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bytes and the version they were read from, marking them used.
    pub(crate) fn get(&self, digest: &Digest) -> Option<(Bytes, Version)> {
        self.lock().get(digest).cloned()
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
        let weight = bytes.len() as u64;
        lru.insert(digest.clone(), (bytes, version), weight);
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
        assert!(hot.lock().weight() <= 800);
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
        assert_eq!(hot.lock().weight(), 0);
    }
}
