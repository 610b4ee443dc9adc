//! Bytes at rest, behind the storage trait.
//!
//! - `backend`: the `Storage` trait (and `ObjectReader`, `BlobWrite`): the operations any backend provides.
//! - `fs`: the filesystem backend over `imagePath`, the embedded default.
//! - `memory` (tests): an in-memory backend, the test double of the coalescer's unit tests.
//! - `writer`: hashing on top of any backend's blob writes; only verified bytes can be committed.
//! - `index`: the in-memory index every reader consults, written only by the cache actor.
//! - `records`: the values stored and handed back.
//!
//! `Store` ties a backend to the index and the free-space reserve. Anyone may read through it (open a blob, read a
//! manifest verified against its digest, ask for room); every change of what is stored goes through the cache actor,
//! which is the only caller of the backend's mutating methods (`Store::storage`). Nothing outside this module opens,
//! stats or renames a file of the cache.

mod backend;
mod fs;
mod index;
#[cfg(test)]
pub(crate) mod memory;
mod records;
mod s3;
mod writer;

use std::sync::Arc;

use bytes::Bytes;

pub use self::backend::{ObjectReader, OpenedBlob, Storage};
pub(crate) use self::fs::media_type_of;
pub use self::fs::FsStorage;
pub use self::index::{BlobInfo, Index};
pub(crate) use self::records::{now_ms, now_unix};
pub use self::records::{
    AccessEntry, Capacity, Inventory, ManifestMeta, RebuildReport, RefKey, RefRecord, StoredObject, Version,
};
pub use self::s3::{S3Settings, S3Storage};
pub use self::writer::{BlobWriter, FinishError, VerifiedBlob};

use crate::digest::Digest;
use crate::error::StoreError;

/// A manifest read back from the store, checked against its digest.
#[derive(Debug)]
pub enum ManifestRead {
    /// The bytes, verified.
    Found(Bytes),
    /// Not in the store.
    Missing,
    /// In the store, but the bytes do not match the digest.
    Corrupt,
}

/// A backend, the index, and the free-space reserve. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    storage: Arc<dyn Storage>,
    index: Arc<Index>,
    /// Bytes left free on the volume: a blob that would eat into them is passed through uncached (`minFreeSpace`).
    min_free: u64,
}

impl Store {
    /// A store over `storage`, with an empty index (filled from the inventory by whoever starts the cache actor).
    pub fn new(storage: Arc<dyn Storage>, min_free: u64) -> Store {
        Store { storage, index: Arc::new(Index::default()), min_free }
    }

    /// The in-memory index.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// Where the store lives (for messages).
    pub fn location(&self) -> &str {
        self.storage.location()
    }

    /// The backend, for the cache actor's changes.
    pub(crate) fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Open a committed blob for reading. `Ok(None)` when it is not in the store.
    pub async fn open_blob(&self, digest: &Digest) -> Result<Option<OpenedBlob>, StoreError> {
        self.storage.open_blob(digest).await
    }

    /// Read a manifest and check it against its digest.
    pub async fn read_manifest(&self, digest: &Digest) -> Result<ManifestRead, StoreError> {
        Ok(match self.storage.read_manifest(digest).await? {
            None => ManifestRead::Missing,
            Some(bytes) if &Digest::of(digest.algorithm(), &bytes) == digest => ManifestRead::Found(bytes),
            Some(_) => ManifestRead::Corrupt,
        })
    }

    /// Start writing a blob, resuming what an earlier attempt left (the leader of its fetch does this).
    pub async fn begin_blob(&self, digest: &Digest) -> Result<BlobWriter, StoreError> {
        BlobWriter::new(digest.clone(), self.storage.begin_blob(digest).await?).await
    }

    /// Bytes left free on the volume (`minFreeSpace`).
    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    /// Free and total space of the backend, when it has such a notion.
    pub async fn capacity(&self) -> Option<Capacity> {
        self.storage.capacity().await
    }

    /// Whether a new object can be created now (readiness).
    pub async fn probe_writable(&self) -> bool {
        self.storage.probe_writable().await
    }
}
