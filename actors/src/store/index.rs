//! The in-memory index of everything committed to the cache: blobs, manifests and reference records.
//!
//! Read concurrently by every HTTP worker through `Mirror` (sharded maps, no global lock: a cache hit takes one
//! shard read lock and no disk access for HEAD); written only by the `CacheActor` after a commit and by the rebuild
//! at start. Last-pulled times are updated in memory on hits and flushed to disk in batches by the cache actor.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::digest::Digest;
use crate::store::{ManifestMeta, RefKey, RefRecord};

/// A reference's record with its mutable last-pulled time.
#[derive(Debug)]
pub struct RefEntry {
    /// The record as last written.
    pub record: RefRecord,
    /// Last time a client pulled through this reference (unix seconds).
    pub pulled: AtomicI64,
    /// `pulled` changed since the record was last written.
    pub dirty: AtomicBool,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Index {
    blobs: DashMap<Digest, u64>,
    manifests: DashMap<Digest, ManifestMeta>,
    refs: DashMap<RefKey, Arc<RefEntry>>,
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

impl Index {
    /// A blob's size, if cached.
    pub fn blob(&self, digest: &Digest) -> Option<u64> {
        self.blobs.get(digest).map(|s| *s)
    }

    /// A manifest's metadata, if cached.
    pub fn manifest(&self, digest: &Digest) -> Option<ManifestMeta> {
        self.manifests.get(digest).map(|m| m.clone())
    }

    /// Resolve a reference (a tag, or a digest pulled through this repository) to its manifest, marking it pulled.
    pub fn resolve(&self, key: &RefKey) -> Option<ManifestMeta> {
        let entry = self.refs.get(key)?.clone();
        let meta = self.manifest(&entry.record.digest)?;
        let now = now_unix();
        if entry.pulled.swap(now, Ordering::Relaxed) != now {
            entry.dirty.store(true, Ordering::Relaxed);
        }
        Some(meta)
    }

    /// Number of cached blobs and their total size.
    pub fn blob_totals(&self) -> (usize, u64) {
        let mut bytes = 0;
        for entry in self.blobs.iter() {
            bytes += *entry.value();
        }
        (self.blobs.len(), bytes)
    }

    /// Number of cached manifests and their total size.
    pub fn manifest_totals(&self) -> (usize, u64) {
        let bytes = self.manifests.iter().map(|m| m.size).sum();
        (self.manifests.len(), bytes)
    }

    /// Number of cached manifests.
    pub fn manifest_count(&self) -> usize {
        self.manifests.len()
    }

    /// Number of reference records.
    pub fn ref_count(&self) -> usize {
        self.refs.len()
    }

    pub(crate) fn insert_blob(&self, digest: Digest, size: u64) {
        self.blobs.insert(digest, size);
    }

    pub(crate) fn remove_blob(&self, digest: &Digest) {
        self.blobs.remove(digest);
    }

    pub(crate) fn insert_manifest(&self, meta: ManifestMeta) {
        self.manifests.insert(meta.digest.clone(), meta);
    }

    pub(crate) fn insert_ref(&self, key: RefKey, record: RefRecord) {
        let pulled = AtomicI64::new(record.pulled);
        self.refs.insert(key, Arc::new(RefEntry { record, pulled, dirty: AtomicBool::new(false) }));
    }

    pub(crate) fn remove_ref(&self, key: &RefKey) -> bool {
        self.refs.remove(key).is_some()
    }

    /// Every reference record, with its current last-pulled time.
    pub fn refs(&self) -> Vec<RefRecord> {
        self.refs
            .iter()
            .map(|e| {
                let mut record = e.record.clone();
                record.pulled = e.pulled.load(Ordering::Relaxed);
                record
            })
            .collect()
    }

    /// Every cached manifest.
    pub fn manifests(&self) -> Vec<ManifestMeta> {
        self.manifests.iter().map(|m| m.value().clone()).collect()
    }

    /// Every cached blob with its size.
    pub fn blobs(&self) -> Vec<(Digest, u64)> {
        self.blobs.iter().map(|b| (b.key().clone(), *b.value())).collect()
    }

    pub(crate) fn has_ref(&self, key: &RefKey) -> Option<Digest> {
        self.refs.get(key).map(|e| e.record.digest.clone())
    }

    /// Records whose last-pulled time changed since they were written; clears their dirty flags.
    pub(crate) fn take_dirty_refs(&self) -> Vec<RefRecord> {
        let mut out = Vec::new();
        for entry in self.refs.iter() {
            if entry.dirty.swap(false, Ordering::Relaxed) {
                let mut record = entry.record.clone();
                record.pulled = entry.pulled.load(Ordering::Relaxed);
                out.push(record);
            }
        }
        out
    }
}
