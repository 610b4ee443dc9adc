//! An in-memory backend of the storage trait, for tests: the coalescer's and the cache actor's unit tests run over
//! it, and it shows the trait holds for a store that is not a filesystem. Tests can damage objects and set the
//! free space.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::mpsc;

use crate::digest::Digest;
use crate::error::StoreError;
use crate::store::backend::{BlobWrite, ObjectReader, OpenedBlob, Storage};
use crate::store::records::{
    AccessEntry, Capacity, Inventory, ManifestMeta, RefKey, RefRecord, StoredBlob, StoredManifest, StoredObject,
    Version,
};

type Buf = Arc<Mutex<Vec<u8>>>;

#[derive(Debug, Default)]
struct State {
    blobs: HashMap<Digest, (Buf, Version)>,
    manifests: HashMap<Digest, (String, Bytes, Version)>,
    records: HashMap<RefKey, RefRecord>,
    /// Unfinished writes, resumed by the next write of the digest.
    partials: HashMap<Digest, (Buf, Option<String>)>,
    access: Vec<AccessEntry>,
    capacity: Option<Capacity>,
    next_version: u64,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct MemoryStorage {
    state: Mutex<State>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryStorage {
    /// Report this much free space of `total`.
    pub(crate) fn set_capacity(&self, free: u64, total: u64) {
        lock(&self.state).capacity = Some(Capacity { free, total });
    }

    /// A committed blob's bytes.
    pub(crate) fn blob_bytes(&self, digest: &Digest) -> Option<Vec<u8>> {
        let state = lock(&self.state);
        state.blobs.get(digest).map(|(b, _)| b.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Replace a committed blob's bytes (a new version), as a disk fault would.
    pub(crate) fn damage_blob(&self, digest: &Digest, bytes: &[u8]) {
        let mut state = lock(&self.state);
        state.next_version += 2; // the index keeps the lowest bit for itself
        let version = Version(state.next_version);
        state.blobs.insert(digest.clone(), (Arc::new(Mutex::new(bytes.to_vec())), version));
    }

    /// Lose a committed blob.
    pub(crate) fn lose_blob(&self, digest: &Digest) {
        lock(&self.state).blobs.remove(digest);
    }

    /// The reference records stored.
    pub(crate) fn records(&self) -> Vec<RefRecord> {
        lock(&self.state).records.values().cloned().collect()
    }
}

struct BufReader(Buf);

impl ObjectReader for BufReader {
    fn read_range(&self, offset: u64, len: usize) -> BoxFuture<'static, std::io::Result<Bytes>> {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let start = (offset as usize).min(buf.len());
        let end = start.saturating_add(len).min(buf.len());
        let out = Bytes::copy_from_slice(&buf[start..end]);
        async move { Ok(out) }.boxed()
    }
}

struct MemoryWrite {
    store: Arc<MemoryStorage>,
    digest: Digest,
    buf: Buf,
    resumed: u64,
    validator: Option<String>,
}

#[async_trait]
impl BlobWrite for MemoryWrite {
    fn reader(&self) -> Arc<dyn ObjectReader> {
        Arc::new(BufReader(self.buf.clone()))
    }

    fn resumed(&self) -> u64 {
        self.resumed
    }

    fn validator(&self) -> Option<String> {
        self.validator.clone()
    }

    async fn set_validator(&mut self, validator: &str) -> Result<(), StoreError> {
        self.validator = Some(validator.to_string());
        let mut state = lock(&self.store.state);
        if let Some(p) = state.partials.get_mut(&self.digest) {
            p.1 = self.validator.clone();
        }
        Ok(())
    }

    async fn discard(self: Box<Self>) {
        lock(&self.store.state).partials.remove(&self.digest);
    }

    async fn restart(&mut self) -> Result<(), StoreError> {
        self.resumed = 0;
        self.buf.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }

    async fn append(&mut self, data: Bytes) -> Result<(), StoreError> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&data);
        Ok(())
    }

    async fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn commit(self: Box<Self>, digest: &Digest) -> Result<Version, StoreError> {
        let mut state = lock(&self.store.state);
        state.next_version += 2; // the index keeps the lowest bit for itself
        let version = Version(state.next_version);
        state.partials.remove(digest);
        state.blobs.insert(digest.clone(), (self.buf.clone(), version));
        Ok(version)
    }
}

/// The memory store behind an `Arc`, as the trait object the cache uses and the handle a test keeps.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedMemory(pub(crate) Arc<MemoryStorage>);

impl SharedMemory {
    /// Everything stored, as the scan reports it.
    fn snapshot(&self) -> Inventory {
        let state = lock(&self.0.state);
        let mut inv = Inventory::default();
        for (digest, (buf, version)) in &state.blobs {
            let size = buf.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
            inv.blobs.push(StoredBlob { digest: digest.clone(), size, stored: 0, version: *version });
        }
        for (digest, (media_type, bytes, _)) in &state.manifests {
            let meta =
                ManifestMeta { digest: digest.clone(), media_type: media_type.clone(), size: bytes.len() as u64 };
            let links = crate::graph::ManifestLinks::parse_or_empty(bytes);
            inv.manifests.push(StoredManifest { meta, links });
        }
        inv.records = state.records.values().cloned().collect();
        inv.access = state.access.clone();
        inv
    }
}

#[async_trait]
impl Storage for SharedMemory {
    fn location(&self) -> &str {
        "memory"
    }

    async fn scan(&self, found: mpsc::Sender<Inventory>) {
        let inv = self.snapshot();
        let _ = found.send(inv).await;
    }

    async fn open_blob(&self, digest: &Digest) -> Result<Option<OpenedBlob>, StoreError> {
        let state = lock(&self.0.state);
        Ok(state.blobs.get(digest).map(|(buf, version)| OpenedBlob {
            size: buf.lock().unwrap_or_else(|p| p.into_inner()).len() as u64,
            reader: Arc::new(BufReader(buf.clone())),
            version: *version,
        }))
    }

    async fn begin_blob(&self, digest: &Digest) -> Result<Box<dyn BlobWrite>, StoreError> {
        let (buf, validator) =
            lock(&self.0.state).partials.entry(digest.clone()).or_insert_with(|| (Buf::default(), None)).clone();
        let resumed = buf.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
        let store = self.0.clone();
        Ok(Box::new(MemoryWrite { store, digest: digest.clone(), buf, resumed, validator }))
    }

    async fn read_manifest(&self, digest: &Digest) -> Result<Option<(Bytes, Version)>, StoreError> {
        Ok(lock(&self.0.state).manifests.get(digest).map(|(_, b, v)| (b.clone(), *v)))
    }

    async fn manifest_version(&self, digest: &Digest) -> Result<Option<Version>, StoreError> {
        Ok(lock(&self.0.state).manifests.get(digest).map(|(_, _, v)| *v))
    }

    async fn read_manifest_type(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        Ok(lock(&self.0.state).manifests.get(digest).map(|(t, _, _)| t.clone()))
    }

    async fn read_record(&self, key: &RefKey) -> Result<Option<RefRecord>, StoreError> {
        Ok(lock(&self.0.state).records.get(key).cloned())
    }

    async fn put_manifest(&self, digest: &Digest, media_type: &str, bytes: Bytes) -> Result<(), StoreError> {
        let mut state = lock(&self.0.state);
        state.next_version += 2; // the index keeps the lowest bit for itself
        let version = Version(state.next_version);
        state.manifests.insert(digest.clone(), (media_type.to_string(), bytes, version));
        Ok(())
    }

    async fn put_record(&self, record: &RefRecord) -> Result<(), StoreError> {
        lock(&self.0.state).records.insert(record.key(), record.clone());
        Ok(())
    }

    async fn remove(&self, object: &StoredObject) -> Result<(), StoreError> {
        let mut state = lock(&self.0.state);
        match object {
            StoredObject::Blob(d) => drop(state.blobs.remove(d)),
            StoredObject::Manifest(d) => drop(state.manifests.remove(d)),
            StoredObject::Record(k) => drop(state.records.remove(k)),
        }
        Ok(())
    }

    async fn quarantine(
        &self,
        object: &StoredObject,
        version: Option<Version>,
        _why: &str,
    ) -> Result<bool, StoreError> {
        if let (StoredObject::Blob(d), Some(v)) = (object, version) {
            if !lock(&self.0.state).blobs.get(d).is_some_and(|(_, stored)| stored.same(v)) {
                return Ok(false);
            }
        }
        self.remove(object).await.map(|()| true)
    }

    async fn record_access(&self, entries: Vec<AccessEntry>) -> Result<(), StoreError> {
        lock(&self.0.state).access.extend(entries);
        Ok(())
    }

    async fn rewrite_access(&self, entries: Vec<AccessEntry>) -> Result<(), StoreError> {
        lock(&self.0.state).access = entries;
        Ok(())
    }

    async fn capacity(&self) -> Option<Capacity> {
        lock(&self.0.state).capacity
    }

    async fn probe_writable(&self) -> bool {
        true
    }
}
