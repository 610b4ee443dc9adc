//! Bytes at rest, behind the storage trait.
//!
//! - `backend`: the seam, `Backend` (and `Upload`, `ObjectReader`): what a backend writes, shaped like an object
//!   store (open for ranged reads, get, head, put, an appendable upload, delete, list) with a few optional hooks.
//! - `storage`: the `Storage` trait the server uses, provided once for every backend on top of the seam, with
//!   `keys` (the objects' names), `scan` (the start-up inventory), `type_check` (a manifest's `.type` judged against
//!   its content) and `journal` (access times).
//! - `fs`: the filesystem backend over `imagePath`, the embedded default; `s3`: a bucket shared by replicas, with a
//!   local disk tier (an `fs` store) in front; `memory` (tests): an in-memory backend, the test double of the
//!   coalescer's and the cache actor's unit tests.
//! - `send` (`FileRange`) and `stamp`: a local file's range copied to a socket in the kernel, and the metadata stamp
//!   that tells whether its bytes changed since it was opened; used by every backend that keeps local files.
//! - `writer`: hashing, resume and validators on top of any backend's uploads; only verified bytes can be committed.
//! - `lru`: the byte-bounded least-recently-used bookkeeping of the hot manifests and of the S3 disk tier.
//! - `index`: the in-memory index every reader consults, written only by the cache actor; `hot`: the verified bytes
//!   of recently served manifests, kept with it; `compact`: the compact forms of its keys and image graphs.
//! - `records`: the values stored and handed back.
//! - `mediatype`: the manifest media types, and what a manifest's bytes say it is (a type kept beside them is
//!   checked against that wherever it is read from the store).
//! - `verify`: hashing a committed blob's stored copy whole before a range of it is served, one hash per copy.
//!
//! `Store` ties a backend to the index and the free-space reserve. Anyone may read through it (open a blob, read a
//! manifest verified against its digest, ask for room; while the index loads at start, look a reference up in the
//! store itself); every change of what is stored goes through the cache actor,
//! which is the only caller of the backend's mutating methods (`Store::storage`). Nothing outside this module opens,
//! stats or renames a file of the cache.

mod backend;
mod compact;
mod fs;
mod hot;
mod index;
mod journal;
mod keys;
mod lru;
mod mediatype;
#[cfg(test)]
pub(crate) mod memory;
mod records;
mod s3;
mod scan;
mod send;
mod stamp;
mod storage;
mod type_check;
mod verify;
mod writer;

use std::sync::Arc;

use bytes::Bytes;

pub use self::backend::{ObjectReader, OpenedBlob, Patch};
pub use self::fs::FsStorage;
pub use self::index::{BlobInfo, Index};
pub(crate) use self::mediatype::{for_new_manifest, ManifestType};
pub(crate) use self::records::{now_ms, now_unix};
pub use self::records::{
    AccessEntry, Capacity, Inventory, ManifestMeta, RebuildReport, RefKey, RefRecord, StoredObject, Version,
};
pub use self::s3::{S3Settings, S3Storage};
pub use self::send::FileRange;
pub use self::storage::Storage;
pub use self::verify::Verdict;
use self::verify::Verifications;
pub use self::writer::{BlobWriter, CheckedBlob, FinishError, VerifiedBlob};

use crate::digest::Digest;
use crate::error::StoreError;
use crate::reference::Reference;

/// Everything a store's scan finds, in one inventory (tests).
#[cfg(test)]
pub(crate) async fn inventory(storage: &dyn Storage) -> Inventory {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let collect = async move {
        let mut all = Inventory::default();
        while let Some(batch) = rx.recv().await {
            all.absorb(batch);
        }
        all
    };
    futures_util::future::join(storage.scan(tx), collect).await.1
}

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
    /// Stored copies being hashed whole now (`verify_whole`).
    verifications: Arc<Verifications>,
}

impl Store {
    /// A store over `storage`, with an empty index (filled from the inventory by whoever starts the cache actor).
    pub fn new(storage: Arc<dyn Storage>, min_free: u64) -> Store {
        Store { storage, index: Arc::new(Index::default()), min_free, verifications: Arc::default() }
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

    /// Hash an opened blob's stored copy whole (off the caller's thread), sharing the hash with any request for the
    /// same copy already running; the verdict says whether the copy matched and stayed unchanged while read. The
    /// caller reports it to the cache actor.
    pub fn verify_whole(&self, digest: &Digest, opened: &OpenedBlob) -> impl std::future::Future<Output = Verdict> {
        self.verifications.verify(digest, opened)
    }

    /// Read a manifest and check it against its digest. A hot manifest is answered from memory while its stored copy
    /// is the version its bytes were read (and verified) from; bytes read from the store are kept hot.
    pub async fn read_manifest(&self, digest: &Digest) -> Result<ManifestRead, StoreError> {
        if let Some((bytes, version)) = self.index.hot_manifest(digest) {
            if self.storage.manifest_version(digest).await?.is_some_and(|now| now.same(version)) {
                return Ok(ManifestRead::Found(bytes));
            }
        }
        Ok(match self.storage.read_manifest(digest).await? {
            None => ManifestRead::Missing,
            Some((bytes, version)) if &Digest::of(digest.algorithm(), &bytes) == digest => {
                self.index.keep_manifest(digest, bytes.clone(), version);
                ManifestRead::Found(bytes)
            }
            Some(_) => ManifestRead::Corrupt,
        })
    }

    /// The manifest a reference names, straight from the store (not the index), checked against its digest: for
    /// requests that miss while the index is still loading at start. A tag is looked up in its reference record; a
    /// digest names the manifest itself.
    pub async fn lookup_manifest(&self, key: &RefKey) -> Result<Option<(ManifestMeta, Bytes)>, StoreError> {
        let digest = match &key.reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(_) => match self.storage.read_record(key).await? {
                Some(record) => record.digest,
                None => return Ok(None),
            },
        };
        let Some((bytes, _)) = self.storage.read_manifest(&digest).await? else {
            return Ok(None);
        };
        if Digest::of(digest.algorithm(), &bytes) != digest {
            return Ok(None);
        }
        // The backend checks a type it keeps against the content; `None` is no type, or content of no known type.
        let media_type = match self.storage.read_manifest_type(&digest).await? {
            Some(media_type) => media_type,
            None => match ManifestType::of_content(&bytes) {
                Some(t) => t.as_str().to_string(),
                None => return Ok(None),
            },
        };
        Ok(Some((ManifestMeta { digest, media_type, size: bytes.len() as u64 }, bytes)))
    }

    /// Start writing a blob, resuming what an earlier attempt left (the leader of its fetch does this).
    pub async fn begin_blob(&self, digest: &Digest) -> Result<BlobWriter, StoreError> {
        BlobWriter::new(digest.clone(), self.storage.clone(), self.storage.begin_blob(digest).await?).await
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
