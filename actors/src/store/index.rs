//! The in-memory index of everything committed to the cache: blobs (size, last access, last verified version),
//! manifests (metadata and the image graph) and reference records (with their last-pulled time), plus the hot
//! manifests (`hot`: the verified bytes of recently served ones).
//!
//! Read concurrently by every HTTP worker through `Mirror` (sharded maps, no global lock: a cache hit takes one shard
//! read lock and no disk access for a manifest HEAD). Written only by the `CacheActor`: the write methods are
//! crate-private and the cache actor is their only caller. Readers record what they used in `Touches`, which the
//! actor drains; they never write here, except that a reader may keep the bytes of an indexed manifest it read and
//! verified in the hot manifests (see `keep_manifest`), which the actor's un-indexing removes again.
//!
//! **Loaded in the background.** At start the index is empty and `loading()` is true while the store's scan feeds it
//! (through the cache actor, `cache/load.rs`); readers that miss meanwhile look in the store directly. Whatever the
//! actor changes while the scan runs (a blob committed, a tag relinked or invalidated, damage un-indexed) is noted,
//! and the scan's older view of those objects is not applied over it (`load`).
//!
//! **Lean entries.** With 100,000 cached images the index is most of the server's memory, so an entry holds no copy
//! of what its key already says and as few allocations as it can: digests are raw bytes (`Digest`); a reference is
//! keyed by one byte string and its entry keeps only the digest and two times (the record is rebuilt from the key);
//! media types are interned; an image graph is one byte string of raw digests (`compact`). Measured: about 365 bytes
//! per cached image of one tag and three links (docs/benchmarks.md, start-up).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dashmap::DashMap;

use super::compact::{key_bytes, key_of, links_bytes, links_of};
use super::hot::HotManifests;
use crate::digest::Digest;
use crate::graph::ManifestLinks;
use crate::store::records::{now_ms, ManifestMeta, RefKey, RefRecord, StoredObject, Version};

/// Distinct media types interned (they come from upstreams; beyond this each manifest keeps its own copy).
const INTERNED_MEDIA_TYPES: usize = 64;

/// A cached blob as the index knows it.
#[derive(Debug)]
struct BlobEntry {
    size: u64,
    /// Last access (unix seconds).
    accessed: AtomicI64,
    /// The version of the stored bytes as last seen, with the lowest bit set when that version was verified against
    /// the digest since start. One word, so a reader never sees a verified flag that belongs to another version.
    state: AtomicU64,
}

fn pack(version: Version, verified: bool) -> u64 {
    (version.0 & !1) | u64::from(verified)
}

#[derive(Debug)]
struct ManifestEntry {
    /// Interned: a handful of media types are shared by every manifest.
    media_type: Arc<str>,
    size: u64,
    /// The image graph, compact (`compact::links_bytes`).
    links: Box<[u8]>,
}

#[derive(Debug)]
struct RefEntry {
    /// The manifest the reference names.
    digest: Digest,
    /// When the record was first stored (unix seconds; 32 bits hold them until 2106, and 100,000 entries are 0.8 MB
    /// smaller than with 64).
    created: u32,
    /// Last pull (unix seconds): the record's, or newer once clients pulled since it was written.
    pulled: AtomicU32,
    /// When the upstream last confirmed this reference names `digest` (milliseconds since the epoch; 0 when
    /// not since start: a tag loaded from disk is checked on its first pull).
    checked: AtomicI64,
}

/// A cached blob: its size, and whether the version of its bytes last seen was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobInfo {
    /// Size in bytes.
    pub size: u64,
    /// The version of the stored bytes as last seen (lowest bit cleared; compare with `Version::same`).
    pub version: Version,
    /// Whether that version was verified against the digest since start.
    pub verified: bool,
}

/// The background load at start: whether it still runs, and what the cache actor changed meanwhile.
#[derive(Debug, Default)]
struct Loading {
    done: AtomicBool,
    /// Objects the actor indexed or un-indexed while the scan ran: the scan's (older) view of them is not applied.
    changed: Mutex<HashSet<StoredObject>>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Index {
    blobs: DashMap<Digest, BlobEntry>,
    manifests: DashMap<Digest, ManifestEntry>,
    /// By the reference key's compact form (`compact::key_bytes`).
    refs: DashMap<Box<[u8]>, RefEntry>,
    media_types: Mutex<Vec<Arc<str>>>,
    hot: HotManifests,
    loading: Loading,
}

impl Index {
    /// Whether the start-up load is still filling the index (a miss may then be in the store all the same).
    pub fn loading(&self) -> bool {
        !self.loading.done.load(Ordering::Acquire)
    }

    /// A blob, if cached.
    pub fn blob(&self, digest: &Digest) -> Option<BlobInfo> {
        self.blobs.get(digest).map(|b| {
            let state = b.state.load(Ordering::Acquire);
            BlobInfo { size: b.size, version: Version(state & !1), verified: state & 1 == 1 }
        })
    }

    /// A manifest's metadata, if cached.
    pub fn manifest(&self, digest: &Digest) -> Option<ManifestMeta> {
        self.manifests.get(digest).map(|m| ManifestMeta {
            digest: digest.clone(),
            media_type: m.media_type.to_string(),
            size: m.size,
        })
    }

    /// Whether a manifest is cached.
    pub fn has_manifest(&self, digest: &Digest) -> bool {
        self.manifests.contains_key(digest)
    }

    /// What a cached manifest references.
    pub fn links(&self, digest: &Digest) -> Option<Arc<ManifestLinks>> {
        self.manifests.get(digest).map(|m| Arc::new(links_of(&m.links)))
    }

    /// The manifest a reference (a tag, or a digest pulled through this repository) names, if it is cached.
    pub fn resolve(&self, key: &RefKey) -> Option<ManifestMeta> {
        self.resolve_checked(key).map(|(meta, _)| meta)
    }

    /// The manifest a reference names, with when the upstream last confirmed it (milliseconds since the epoch, 0 for
    /// never since start).
    pub fn resolve_checked(&self, key: &RefKey) -> Option<(ManifestMeta, i64)> {
        let (digest, checked) = {
            let entry = self.refs.get(&*key_bytes(key))?;
            (entry.digest.clone(), entry.checked.load(Ordering::Relaxed))
        };
        Some((self.manifest(&digest)?, checked))
    }

    /// The tags recorded for `image`, sorted.
    pub fn tags(&self, image: &crate::reference::ImageKey) -> Vec<String> {
        let mut tags: Vec<String> = self
            .refs
            .iter()
            .filter_map(|r| key_of(r.key()))
            .filter(|k| &k.image == image)
            .filter_map(|k| match k.reference {
                crate::reference::Reference::Tag(t) => Some(t.to_string()),
                crate::reference::Reference::Digest(_) => None,
            })
            .collect();
        tags.sort();
        tags
    }

    /// The digest a reference record names.
    pub fn ref_digest(&self, key: &RefKey) -> Option<Digest> {
        self.refs.get(&*key_bytes(key)).map(|r| r.digest.clone())
    }

    /// Number of cached blobs and their total size.
    pub fn blob_totals(&self) -> (usize, u64) {
        let bytes = self.blobs.iter().map(|b| b.size).sum();
        (self.blobs.len(), bytes)
    }

    /// Number of cached manifests and their total size.
    pub fn manifest_totals(&self) -> (usize, u64) {
        let bytes = self.manifests.iter().map(|m| m.size).sum();
        (self.manifests.len(), bytes)
    }

    /// Number of reference records.
    pub fn ref_count(&self) -> usize {
        self.refs.len()
    }

    /// Every reference record, with its current last-pulled time.
    pub fn refs(&self) -> Vec<RefRecord> {
        self.refs.iter().filter_map(|e| Some(record_of(&key_of(e.key())?, e.value()))).collect()
    }

    /// Every cached manifest.
    pub fn manifests(&self) -> Vec<ManifestMeta> {
        self.manifests
            .iter()
            .map(|m| ManifestMeta { digest: m.key().clone(), media_type: m.media_type.to_string(), size: m.size })
            .collect()
    }

    /// Every cached blob with its size and last access.
    pub fn blobs(&self) -> Vec<(Digest, u64, i64)> {
        self.blobs.iter().map(|b| (b.key().clone(), b.size, b.accessed.load(Ordering::Relaxed))).collect()
    }

    /// The verified bytes of a hot manifest, with the version of the stored copy they were read from.
    pub(crate) fn hot_manifest(&self, digest: &Digest) -> Option<(Bytes, Version)> {
        self.hot.get(digest)
    }

    /// Keep the verified bytes of a manifest read from `version` of its stored copy, if the manifest is indexed (any
    /// reader may; the bytes go again when the cache actor un-indexes the manifest). The check and the insertion
    /// happen under the hot manifests' lock, which `remove_manifest` takes after un-indexing, so bytes of a manifest
    /// being un-indexed cannot outlive it.
    pub(crate) fn keep_manifest(&self, digest: &Digest, bytes: Bytes, version: Version) {
        self.hot.put_if(digest, bytes, version, || self.manifests.contains_key(digest));
    }

    // ---- written by the cache actor only ----

    /// Note a change the actor made while the start-up load runs.
    fn changed(&self, object: impl FnOnce() -> StoredObject) {
        if self.loading() {
            self.loading.changed.lock().unwrap_or_else(|p| p.into_inner()).insert(object());
        }
    }

    fn intern(&self, media_type: &str) -> Arc<str> {
        let mut known = self.media_types.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = known.iter().find(|m| &***m == media_type) {
            return found.clone();
        }
        let new: Arc<str> = media_type.into();
        if known.len() < INTERNED_MEDIA_TYPES {
            known.push(new.clone());
        }
        new
    }

    pub(crate) fn insert_blob(&self, digest: Digest, size: u64, accessed: i64, version: Version, verified: bool) {
        self.changed(|| StoredObject::Blob(digest.clone()));
        let state = AtomicU64::new(pack(version, verified));
        self.blobs.insert(digest, BlobEntry { size, accessed: AtomicI64::new(accessed), state });
    }

    pub(crate) fn remove_blob(&self, digest: &Digest) -> bool {
        self.changed(|| StoredObject::Blob(digest.clone()));
        self.blobs.remove(digest).is_some()
    }

    /// Record that `version` of a blob's bytes was verified (it becomes the version last seen).
    pub(crate) fn set_verified(&self, digest: &Digest, version: Version) {
        if let Some(b) = self.blobs.get(digest) {
            b.state.store(pack(version, true), Ordering::Release);
        }
    }

    pub(crate) fn set_accessed(&self, digest: &Digest, at: i64) -> bool {
        self.blobs.get(digest).map(|b| b.accessed.fetch_max(at, Ordering::Relaxed) < at).unwrap_or(false)
    }

    pub(crate) fn insert_manifest(&self, meta: ManifestMeta, links: ManifestLinks) {
        self.changed(|| StoredObject::Manifest(meta.digest.clone()));
        let entry =
            ManifestEntry { media_type: self.intern(&meta.media_type), size: meta.size, links: links_bytes(&links) };
        self.manifests.insert(meta.digest, entry);
    }

    /// Un-index a manifest, and drop its hot bytes.
    pub(crate) fn remove_manifest(&self, digest: &Digest) -> bool {
        self.changed(|| StoredObject::Manifest(digest.clone()));
        let removed = self.manifests.remove(digest).is_some();
        self.hot.remove(digest);
        removed
    }

    /// Set a reference record; its last-pulled time is the later of the record's and the one already known.
    pub(crate) fn set_ref(&self, record: RefRecord) {
        let key = record.key();
        self.changed(|| StoredObject::Record(key.clone()));
        let compact = key_bytes(&key).into_boxed_slice();
        let known = self.refs.get(&compact).map(|r| r.pulled.load(Ordering::Relaxed)).unwrap_or(0);
        let pulled = AtomicU32::new(known.max(secs(record.pulled)));
        let created = secs(record.created);
        let entry = RefEntry { digest: record.digest, created, pulled, checked: AtomicI64::new(0) };
        self.refs.insert(compact, entry);
    }

    pub(crate) fn remove_ref(&self, key: &RefKey) -> Option<RefRecord> {
        self.changed(|| StoredObject::Record(key.clone()));
        self.refs.remove(&*key_bytes(key)).map(|(_, entry)| record_of(key, &entry))
    }

    /// The upstream confirmed the reference now.
    pub(crate) fn set_checked(&self, key: &RefKey) {
        if let Some(r) = self.refs.get(&*key_bytes(key)) {
            r.checked.store(now_ms(), Ordering::Relaxed);
        }
    }

    pub(crate) fn set_pulled(&self, key: &RefKey, at: i64) -> bool {
        let at = secs(at);
        self.refs.get(&*key_bytes(key)).map(|r| r.pulled.fetch_max(at, Ordering::Relaxed) < at).unwrap_or(false)
    }

    // ---- the start-up load, applied by the cache actor ----

    /// Whether the actor changed `object` since the load began (then the scan's view of it is stale).
    pub(crate) fn changed_since_start(&self, object: &StoredObject) -> bool {
        self.loading.changed.lock().unwrap_or_else(|p| p.into_inner()).contains(object)
    }

    /// Index a blob the scan found, unless the actor changed it meanwhile.
    pub(crate) fn load_blob(&self, digest: Digest, size: u64, accessed: i64, version: Version) {
        if !self.blobs.contains_key(&digest) && !self.changed_since_start(&StoredObject::Blob(digest.clone())) {
            let state = AtomicU64::new(pack(version, false));
            self.blobs.insert(digest, BlobEntry { size, accessed: AtomicI64::new(accessed), state });
        }
    }

    /// Index a manifest the scan found, unless the actor changed it meanwhile.
    pub(crate) fn load_manifest(&self, meta: ManifestMeta, links: ManifestLinks) {
        let object = StoredObject::Manifest(meta.digest.clone());
        if !self.manifests.contains_key(&meta.digest) && !self.changed_since_start(&object) {
            let entry = ManifestEntry {
                media_type: self.intern(&meta.media_type),
                size: meta.size,
                links: links_bytes(&links),
            };
            self.manifests.insert(meta.digest, entry);
        }
    }

    /// Index a reference record the scan found, unless the actor changed it meanwhile.
    pub(crate) fn load_ref(&self, record: RefRecord) {
        let key = record.key();
        let compact = key_bytes(&key).into_boxed_slice();
        if !self.refs.contains_key(&compact) && !self.changed_since_start(&StoredObject::Record(key)) {
            let entry = RefEntry {
                digest: record.digest,
                created: secs(record.created),
                pulled: AtomicU32::new(secs(record.pulled)),
                checked: AtomicI64::new(0),
            };
            self.refs.insert(compact, entry);
        }
    }

    /// The load is over: the index holds everything stored.
    pub(crate) fn finish_load(&self) {
        self.loading.done.store(true, Ordering::Release);
        let mut changed = self.loading.changed.lock().unwrap_or_else(|p| p.into_inner());
        *changed = HashSet::new();
    }
}

/// Unix seconds as kept in a reference entry (clamped to what 32 bits hold).
fn secs(at: i64) -> u32 {
    u32::try_from(at.max(0)).unwrap_or(u32::MAX)
}

/// The record a reference entry stands for.
fn record_of(key: &RefKey, entry: &RefEntry) -> RefRecord {
    RefRecord {
        namespace: key.image.ns().clone(),
        repository: key.image.repo().clone(),
        reference: key.reference.clone(),
        digest: entry.digest.clone(),
        created: i64::from(entry.created),
        pulled: i64::from(entry.pulled.load(Ordering::Relaxed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::ImageKey;

    fn record(tag: &str, manifest: &Digest) -> RefRecord {
        let image = ImageKey::new("docker.io".parse().expect("ns"), "library/app".parse().expect("repo"));
        RefRecord { pulled: 2, ..RefRecord::of_tag(&image, tag, manifest) }
    }

    fn meta(digest: &Digest) -> ManifestMeta {
        ManifestMeta { digest: digest.clone(), media_type: "application/vnd.oci.image.index.v1+json".into(), size: 9 }
    }

    #[test]
    fn the_load_never_overrides_what_the_actor_changed_since_start() {
        let index = Index::default();
        let (old, new) = (Digest::sha256_of(b"old"), Digest::sha256_of(b"new"));
        assert!(index.loading());
        // Relinked, and invalidated, while the scan still had the old view of both.
        index.set_ref(record("relinked", &new));
        index.remove_ref(&record("gone", &old).key());
        index.remove_blob(&old);
        index.load_ref(record("relinked", &old));
        index.load_ref(record("gone", &old));
        index.load_blob(old.clone(), 3, 0, Version(2));
        index.load_ref(record("untouched", &old));
        assert_eq!(index.ref_digest(&record("relinked", &old).key()), Some(new.clone()), "the actor's link stays");
        assert_eq!(index.ref_digest(&record("gone", &old).key()), None, "an invalidated tag stays gone");
        assert_eq!(index.blob(&old), None, "a blob found damaged stays un-indexed");
        assert_eq!(index.ref_digest(&record("untouched", &old).key()), Some(old.clone()), "the rest is loaded");
        index.finish_load();
        assert!(!index.loading());
        index.remove_ref(&record("untouched", &old).key());
        assert!(!index.changed_since_start(&StoredObject::Record(record("untouched", &old).key())));
        let listed = index.refs();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].reference.to_string(), &listed[0].digest, listed[0].pulled),
            ("relinked".into(), &new, 2)
        );
    }

    #[test]
    fn manifest_bytes_are_kept_only_while_indexed() {
        let index = Index::default();
        let digest = Digest::sha256_of(b"{}");
        index.keep_manifest(&digest, Bytes::from_static(b"{}"), Version(4));
        assert_eq!(index.hot_manifest(&digest), None, "not indexed: not kept");
        index.insert_manifest(meta(&digest), ManifestLinks::default());
        index.keep_manifest(&digest, Bytes::from_static(b"{}"), Version(4));
        assert_eq!(index.hot_manifest(&digest), Some((Bytes::from_static(b"{}"), Version(4))));
        assert_eq!(index.manifest(&digest), Some(meta(&digest)));
        index.remove_manifest(&digest);
        assert_eq!(index.hot_manifest(&digest), None, "un-indexing drops the bytes");
    }
}
