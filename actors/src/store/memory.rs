//! An in-memory backend, for tests: the coalescer's and the cache actor's unit tests run over it, and it shows what
//! a backend writes (the seam, `backend.rs`) for a store that is not a filesystem. Tests can damage objects, share
//! the store and set the free space.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use crate::digest::Digest;
use crate::store::backend::{Backend, BytesReader, Listed, ObjectReader, Res, Upload};
use crate::store::keys;
use crate::store::records::{Capacity, RefRecord, Version};

type Buf = Arc<Mutex<Vec<u8>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Objects, unfinished uploads (resumed by the next upload of the key), and what tests set.
#[derive(Debug, Default)]
struct State {
    objects: HashMap<String, (Bytes, Version)>,
    partials: HashMap<String, Buf>,
    capacity: Option<Capacity>,
    shared: bool,
    next_version: u64,
}

impl State {
    fn store(&mut self, key: &str, bytes: Bytes) -> Version {
        self.next_version += 2; // the index keeps the lowest bit for itself
        self.objects.insert(key.to_string(), (bytes, Version(self.next_version)));
        Version(self.next_version)
    }
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct MemoryStorage(Mutex<State>);

impl MemoryStorage {
    /// Report this much free space of `total`.
    pub(crate) fn set_capacity(&self, free: u64, total: u64) {
        lock(&self.0).capacity = Some(Capacity { free, total });
    }
    /// Behave as a store shared with other replicas.
    pub(crate) fn set_shared(&self) {
        lock(&self.0).shared = true;
    }

    /// Store an object as it is, bypassing every check (a damaged or foreign object).
    pub(crate) fn plant(&self, key: &str, bytes: &[u8]) {
        lock(&self.0).store(key, Bytes::copy_from_slice(bytes));
    }
    /// The keys stored under `prefix`.
    pub(crate) fn keys(&self, prefix: &str) -> Vec<String> {
        lock(&self.0).objects.keys().filter(|k| k.starts_with(prefix)).cloned().collect()
    }
    /// A committed blob's bytes.
    pub(crate) fn blob_bytes(&self, digest: &Digest) -> Option<Vec<u8>> {
        lock(&self.0).objects.get(&keys::blob(digest)).map(|(b, _)| b.to_vec())
    }
    /// Replace a committed blob's bytes (a new version), as a disk fault would.
    pub(crate) fn damage_blob(&self, digest: &Digest, bytes: &[u8]) {
        self.plant(&keys::blob(digest), bytes);
    }
    /// Lose a committed blob.
    pub(crate) fn lose_blob(&self, digest: &Digest) {
        lock(&self.0).objects.remove(&keys::blob(digest));
    }

    /// The reference records stored.
    pub(crate) fn records(&self) -> Vec<RefRecord> {
        let state = lock(&self.0);
        let refs = state.objects.iter().filter(|(k, _)| k.starts_with("refs/"));
        refs.filter_map(|(_, (b, _))| serde_json::from_slice(b).ok()).collect()
    }
}

struct BufReader(Buf);

impl ObjectReader for BufReader {
    fn read_range(&self, offset: u64, len: usize) -> BoxFuture<'static, std::io::Result<Bytes>> {
        let buf = lock(&self.0);
        let start = (offset as usize).min(buf.len());
        BytesReader(Bytes::copy_from_slice(&buf[start..start.saturating_add(len).min(buf.len())])).read_range(0, len)
    }
}

struct MemoryUpload(Arc<MemoryStorage>, String, Buf, u64);

#[async_trait]
impl Upload for MemoryUpload {
    fn reader(&self) -> Arc<dyn ObjectReader> {
        Arc::new(BufReader(self.2.clone()))
    }
    fn resumed(&self) -> u64 {
        self.3
    }
    async fn append(&mut self, data: Bytes) -> Res<()> {
        lock(&self.2).extend_from_slice(&data);
        Ok(())
    }
    async fn truncate(&mut self) -> Res<()> {
        self.3 = 0;
        lock(&self.2).clear();
        Ok(())
    }
    async fn complete(self: Box<Self>) -> Res<Version> {
        let mut state = lock(&self.0 .0);
        state.partials.remove(&self.1);
        Ok(state.store(&self.1, Bytes::copy_from_slice(&lock(&self.2))))
    }
    async fn abort(self: Box<Self>) {
        lock(&self.0 .0).partials.remove(&self.1);
    }
}

/// The memory store behind an `Arc`, as the trait object the cache uses and the handle a test keeps.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedMemory(pub(crate) Arc<MemoryStorage>);

impl Backend for SharedMemory {
    fn location(&self) -> &str {
        "memory"
    }
    async fn get(&self, key: &str) -> Res<Option<(Bytes, Version)>> {
        Ok(lock(&self.0 .0).objects.get(key).cloned())
    }
    async fn head(&self, key: &str) -> Res<Option<Version>> {
        Ok(lock(&self.0 .0).objects.get(key).map(|(_, v)| *v))
    }
    async fn put(&self, key: &str, bytes: Bytes, _durable: bool) -> Res<()> {
        lock(&self.0 .0).store(key, bytes);
        Ok(())
    }
    async fn upload(&self, key: &str) -> Res<Box<dyn Upload>> {
        let buf = lock(&self.0 .0).partials.entry(key.to_string()).or_default().clone();
        let resumed = lock(&buf).len() as u64;
        Ok(Box::new(MemoryUpload(self.0.clone(), key.to_string(), buf, resumed)))
    }
    async fn delete(&self, key: &str) -> Res<()> {
        lock(&self.0 .0).objects.remove(key);
        Ok(())
    }
    fn list(&self, prefix: &str) -> BoxStream<'static, Res<Listed>> {
        let state = lock(&self.0 .0);
        let found = state.objects.iter().filter(|(k, _)| k.starts_with(prefix));
        let listed = found.map(|(key, (b, version))| {
            Ok(Listed { key: key.clone(), size: b.len() as u64, stored: 0, version: *version, plain: true })
        });
        futures_util::stream::iter(listed.collect::<Vec<_>>()).boxed()
    }
    fn shared(&self) -> bool {
        lock(&self.0 .0).shared
    }
    async fn capacity(&self) -> Option<Capacity> {
        lock(&self.0 .0).capacity
    }
}
