//! The storage seam: what a backend writes, shaped like an object store (after `object_store`'s `ObjectStore`).
//! Everything else the server does with bytes at rest (the scan into an `Inventory`, manifests and their `.type`,
//! reference records, quarantine, the access-time journal, resumed writes and their validators) is provided on top,
//! once, by `storage.rs` for every `Backend`.
//!
//! A backend stores objects under keys (`keys`): it opens one for ranged reads (`open`, then
//! `ObjectReader::read_range`), reads a small one whole (`get`), tells an object's version (`head`), puts one
//! (`put`), writes a large one as an appendable upload that is invisible until completed and whose bytes survive an
//! interruption to be resumed (`upload`: a temporary file renamed into place, a multipart upload completed), deletes
//! one (`delete`) and lists a prefix (`list`). A few hooks have defaults: a shared store, quarantine as a move,
//! appending to an object, how access times are journalled, work before the scan, capacity and readiness.
//!
//! Rules every backend keeps:
//! - An object appears under its key only complete: a crash at any point leaves nothing half-written there.
//! - Nothing here decides anything: verification, ordering and cache state belong to the cache actor.
//! - The futures never block the thread that polls them (quick metadata calls such as an `open` of a local file
//!   excepted); blocking work runs on the backend's own blocking pool.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::FutureExt;

use crate::error::StoreError;
use crate::store::records::{Capacity, Version};
use crate::store::send::FileRange;

/// Random access to one object's bytes: a committed blob, or the object a running write is producing.
pub trait ObjectReader: Send + Sync {
    /// Up to `len` bytes at `offset`. A shorter answer means the object (so far) ends there; an empty one, that
    /// nothing is at `offset`.
    fn read_range(&self, offset: u64, len: usize) -> BoxFuture<'static, std::io::Result<Bytes>>;

    /// The bytes `start..end` as a range of a local file that can be copied to a socket inside the kernel
    /// (`FileRange`), when the backend keeps the object in one; `None` (the default) otherwise.
    fn file_range(&self, _start: u64, _end: u64) -> Option<FileRange> {
        None
    }

    /// For a committed blob: the stored copy's version now if its bytes may have changed since it was opened (a
    /// file written in place), `None` if they have not or the backend cannot tell (the default). Cheap (one `fstat`
    /// of the open file): asked once per response, before its last bytes leave. A `FileRange` of the object asks
    /// the same itself.
    fn changed(&self) -> std::io::Result<Option<Version>> {
        Ok(None)
    }
}

/// Bytes held in memory, as an `ObjectReader` (an object read whole).
pub(crate) struct BytesReader(pub(crate) Bytes);

impl ObjectReader for BytesReader {
    fn read_range(&self, offset: u64, len: usize) -> BoxFuture<'static, std::io::Result<Bytes>> {
        let start = (offset.min(self.0.len() as u64)) as usize;
        let end = start.saturating_add(len).min(self.0.len());
        futures_util::future::ready(Ok(self.0.slice(start..end))).boxed()
    }
}

/// An object opened for reading: the reader keeps the bytes it opened readable even if the object is removed or
/// replaced meanwhile.
#[derive(Clone)]
pub struct OpenedBlob {
    /// Where to read.
    pub reader: Arc<dyn ObjectReader>,
    /// The stored object's size (which may differ from the index's if the store was damaged).
    pub size: u64,
    /// The identity of these bytes (see `Version`).
    pub version: Version,
}

impl fmt::Debug for OpenedBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedBlob").field("size", &self.size).field("version", &self.version).finish()
    }
}

/// An object found by `list`.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// When it was stored (unix seconds).
    pub stored: i64,
    /// The version of its bytes.
    pub version: Version,
    /// False for something that cannot be an object (a FIFO or a device on a filesystem): never opened, moved aside.
    pub plain: bool,
}

/// An appendable upload of one object (`Backend::upload`). It becomes visible under its key only through
/// `complete`. The bytes appended are kept when it is dropped (or the process dies), so the next upload of the same
/// key resumes them; `abort` deletes them.
#[async_trait]
pub trait Upload: Send {
    /// A reader of the bytes appended so far, for clients that follow the transfer while it runs.
    fn reader(&self) -> Arc<dyn ObjectReader>;

    /// Bytes there when the upload began (resumed from an earlier one) or since `truncate`.
    fn resumed(&self) -> u64;

    /// Append bytes. When this returns, `reader()` can read them.
    async fn append(&mut self, data: Bytes) -> Result<(), StoreError>;

    /// Forget the bytes appended so far and start again from byte 0.
    async fn truncate(&mut self) -> Result<(), StoreError>;

    /// Where pieces of the object fetched ahead of the appends are written at their offsets (`Patch`), if this
    /// upload can take them; `None`: pieces ahead are not kept.
    fn patcher(&self) -> Option<Arc<dyn Patch>> {
        None
    }

    /// Take the next `len` bytes after those appended as appended: a piece written there through `patcher` filled
    /// them. Only called on an upload that gave a patcher.
    fn skip(&mut self, _len: u64) {}

    /// Make the appended bytes durable (before `complete`).
    async fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Publish the bytes under the key, atomically. Returns the stored copy's version.
    async fn complete(self: Box<Self>) -> Result<Version, StoreError>;

    /// Delete the bytes appended so far.
    async fn abort(self: Box<Self>);
}

/// Writes of an upload's bytes ahead of its appends, at their offsets (a range of a blob fetched ahead of its
/// transfer, `pieces.rs`). They never change a byte before the appended ones: whoever writes a piece stops before the
/// appends reach it (the transfer revokes the piece first).
#[async_trait]
pub trait Patch: Send + Sync {
    /// Write `data` at `offset`.
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<(), StoreError>;
}

/// How a backend keeps access times (`journal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Journal {
    /// One object, `access.log`, appended to (`Backend::append`) and rewritten whole.
    Appended,
    /// One object per batch under `access/<writer>/` (a bucket cannot append; each replica writes its own).
    Batches {
        /// This writer's key segment.
        writer: String,
    },
}

/// A result a backend's future gives.
pub type Res<T> = Result<T, StoreError>;

/// A backend for the cache's bytes at rest. See the module documentation. Required: `location`, `get`, `head`,
/// `put`, `upload`, `delete`, `list` (and `Upload`'s `reader`, `resumed`, `append`, `truncate`, `complete`,
/// `abort`); everything else has a default.
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Where the store lives, for log lines and errors (`/var/lib/ociregistry`, `s3://bucket/prefix`).
    fn location(&self) -> &str;

    /// Open an object for ranged reads. `Ok(None)` when it is not there. The default reads it whole (`get`) and
    /// serves the ranges from memory: a backend that holds large objects (blobs) opens them for real reads.
    fn open(&self, key: &str) -> impl Future<Output = Res<Option<OpenedBlob>>> + Send {
        async move {
            let got = self.get(key).await?;
            Ok(got.map(|(b, version)| OpenedBlob { size: b.len() as u64, reader: Arc::new(BytesReader(b)), version }))
        }
    }

    /// A (small) object's bytes whole, with the version of the copy they were read from.
    fn get(&self, key: &str) -> impl Future<Output = Res<Option<(Bytes, Version)>>> + Send;

    /// An object's version, without reading it.
    fn head(&self, key: &str) -> impl Future<Output = Res<Option<Version>>> + Send;

    /// Store (or replace) an object atomically; durably (synced) when `durable`.
    fn put(&self, key: &str, bytes: Bytes, durable: bool) -> impl Future<Output = Res<()>> + Send;

    /// Begin (or resume) an appendable upload of the object `key`.
    fn upload(&self, key: &str) -> impl Future<Output = Res<Box<dyn Upload>>> + Send;

    /// Delete an object. Deleting what is not there succeeds.
    fn delete(&self, key: &str) -> impl Future<Output = Res<()>> + Send;

    /// Every object under `prefix` (recursively), in no particular order. An error ends the listing.
    fn list(&self, prefix: &str) -> BoxStream<'static, Res<Listed>>;

    /// Whether other processes (replicas) write to this store too: then what a scan saw may be outdated by the time
    /// it is indexed, and nothing is moved aside on the strength of it.
    fn shared(&self) -> bool {
        false
    }

    /// The version of an object as a reader that read it earlier should compare (a quick check, done inline); the
    /// default asks `head`.
    fn current_version(&self, key: &str) -> impl Future<Output = Res<Option<Version>>> + Send {
        self.head(key)
    }

    /// Move the object `key` aside to `aside`, if it is still `version` when one is given: whether something was
    /// moved. The default deletes it (a store where a move is impossible).
    fn quarantine(&self, key: &str, version: Option<Version>, _aside: &str) -> impl Future<Output = Res<bool>> + Send {
        async move {
            match self.head(key).await? {
                Some(now) if version.is_none_or(|v| now.same(v)) => self.delete(key).await.map(|()| true),
                _ => Ok(false),
            }
        }
    }

    /// How access times are journalled (`Journal::Appended`, the default, or `Batches`).
    fn journal(&self) -> Journal {
        Journal::Appended
    }

    /// Append bytes to an object (created if missing); not synced. The default reads it and puts it back.
    fn append(&self, key: &str, bytes: Bytes) -> impl Future<Output = Res<()>> + Send {
        async move {
            let mut all = self.get(key).await?.map(|(b, _)| b.to_vec()).unwrap_or_default();
            all.extend_from_slice(&bytes);
            self.put(key, all.into(), false).await
        }
    }

    /// Work done once before the scan lists anything; the number of unfinished writes of an earlier run removed.
    fn prepare_scan(&self) -> impl Future<Output = usize> + Send {
        async { 0 }
    }

    /// Free and total space, when the backend has such a notion (none by default).
    fn capacity(&self) -> impl Future<Output = Option<Capacity>> + Send {
        async { None }
    }

    /// Whether a new object can be created now (readiness; yes by default).
    fn probe_writable(&self) -> impl Future<Output = bool> + Send {
        async { true }
    }
}
