//! The storage trait: everything the server does with bytes at rest, so that a second backend (an S3-compatible
//! object store) is an implementation of these traits and not a change to the actors or the HTTP layer.
//!
//! Shape (after `object_store`'s `ObjectStore`): reads of a range of a committed object (`open_blob` then
//! `ObjectReader::read_range`), reads of the growing object of a running write (`BlobWrite::reader`), a write that is
//! invisible until `commit` (a temporary file renamed into place here; a multipart upload completed there), small
//! whole-object puts for manifests and records, delete and quarantine, the scan that loads the index at start, access
//! times, and capacity.
//!
//! Rules every implementation keeps:
//! - An object appears under its final name only complete: a crash at any point leaves nothing half-written there.
//! - Nothing here decides anything: verification, ordering and cache state belong to the cache actor, which calls
//!   the mutating methods, one object at a time in the order it handled its messages. Readers (the front door, the
//!   fetchers, the scrub) call only `open_blob`, the `read_*` methods, `manifest_version`, `capacity`,
//!   `probe_writable` and `begin_blob`.
//! - The scan runs while the server serves (the index loads in the background): it reports what it finds and moves
//!   aside only what it found unfit and is still the version it found (a copy stored again meanwhile is left alone).
//! - Methods may block only inside the implementation's own blocking pool; the futures they return never block the
//!   thread that polls them (quick metadata calls such as an `open` of a local file excepted).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use crate::digest::Digest;
use crate::error::StoreError;
use crate::store::fs::FileRange;
use crate::store::records::{AccessEntry, Capacity, Inventory, RefKey, RefRecord, StoredObject, Version};

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

/// A committed blob opened for reading: the reader keeps the bytes it opened readable even if the object is removed
/// or replaced meanwhile.
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

/// A blob being written. It becomes visible under its digest only through `commit`. The bytes written so far are
/// kept when it is dropped (or the process dies), so a later `begin_blob` of the same digest resumes them: a broken
/// download of a large layer on an intermittent link, or across a restart, is not started over. `discard` deletes
/// them (bytes that failed verification). Readers that hold `reader()` keep what they can read until they learn the
/// transfer's outcome.
#[async_trait]
pub trait BlobWrite: Send {
    /// A reader of the bytes appended so far, for clients that follow the transfer while it runs.
    fn reader(&self) -> Arc<dyn ObjectReader>;

    /// Bytes already there when the write began (resumed from an earlier attempt).
    fn resumed(&self) -> u64;

    /// The upstream's validator (`ETag`) of the object an earlier attempt was fetching, if it recorded one.
    fn validator(&self) -> Option<String>;

    /// Record the upstream's validator of the object being fetched, for a resumed attempt's `If-Range`.
    async fn set_validator(&mut self, validator: &str) -> Result<(), StoreError>;

    /// Delete the bytes written so far (they failed verification, or the object changed upstream).
    async fn discard(self: Box<Self>);

    /// Forget the bytes written so far and start again from byte 0 (the upstream sent the whole object again).
    async fn restart(&mut self) -> Result<(), StoreError>;

    /// Append bytes. When this returns, `reader()` can read them.
    async fn append(&mut self, data: Bytes) -> Result<(), StoreError>;

    /// Make the appended bytes durable (before `commit`, off the cache actor's path).
    async fn sync(&mut self) -> Result<(), StoreError>;

    /// Publish the bytes under `digest`, atomically. The caller has verified them. Returns the stored copy's version.
    async fn commit(self: Box<Self>, digest: &Digest) -> Result<Version, StoreError>;
}

/// A backend for the cache's bytes at rest. See the module documentation.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Where the store lives, for log lines and errors (`/var/lib/ociregistry`, `s3://bucket/prefix`).
    fn location(&self) -> &str;

    /// Whether other processes (replicas) write to this store too: then what a scan saw may be outdated by the time
    /// it is indexed, and nothing is removed on the strength of it.
    fn shared(&self) -> bool {
        false
    }

    /// Scan everything stored (start-up, while the server already serves), sending what is found to `found` in
    /// batches, in this order: blobs, manifests, reference records (also those whose manifest is missing: the cache
    /// actor decides), then the access journal. Bad entries are moved aside and counted, never sent. Stops early when
    /// `found` is closed. Unfinished writes of an earlier run were removed when the store was opened.
    async fn scan(&self, found: mpsc::Sender<Inventory>);

    /// Open a committed blob. `Ok(None)` when it is not there.
    async fn open_blob(&self, digest: &Digest) -> Result<Option<OpenedBlob>, StoreError>;

    /// Start writing a blob, resuming the bytes an earlier, unfinished write of it left.
    async fn begin_blob(&self, digest: &Digest) -> Result<Box<dyn BlobWrite>, StoreError>;

    /// A committed manifest's bytes, unverified, with the version of the stored copy they were read from. `Ok(None)`
    /// when it is not there.
    async fn read_manifest(&self, digest: &Digest) -> Result<Option<(Bytes, Version)>, StoreError>;

    /// The version of a committed manifest's stored copy, without reading it (a quick metadata call, done inline).
    async fn manifest_version(&self, digest: &Digest) -> Result<Option<Version>, StoreError>;

    /// A committed manifest's media type as stored with it, checked against the manifest's content (a stored type
    /// that does not fit is replaced by the content's); `None` when there is neither.
    async fn read_manifest_type(&self, digest: &Digest) -> Result<Option<String>, StoreError>;

    /// The reference record stored under `key`, if there is one (and it is readable and names that key).
    async fn read_record(&self, key: &RefKey) -> Result<Option<RefRecord>, StoreError>;

    /// Store a verified manifest and its media type, durably and atomically.
    async fn put_manifest(&self, digest: &Digest, media_type: &str, bytes: Bytes) -> Result<(), StoreError>;

    /// Store (or replace) a reference record, durably and atomically.
    async fn put_record(&self, record: &RefRecord) -> Result<(), StoreError>;

    /// Delete an object. Deleting what is not there succeeds.
    async fn remove(&self, object: &StoredObject) -> Result<(), StoreError>;

    /// Move a damaged object aside for inspection (or delete it where that is impossible), logging `why`; only if
    /// the stored copy is still `version` when one is given (a copy stored again since is left alone). Returns
    /// whether something was moved.
    async fn quarantine(&self, object: &StoredObject, version: Option<Version>, why: &str) -> Result<bool, StoreError>;

    /// Record access times (appended; the latest entry of an object wins at the next inventory).
    async fn record_access(&self, entries: Vec<AccessEntry>) -> Result<(), StoreError>;

    /// Replace every recorded access time with exactly these (compaction).
    async fn rewrite_access(&self, entries: Vec<AccessEntry>) -> Result<(), StoreError>;

    /// Free and total space, when the backend has such a notion.
    async fn capacity(&self) -> Option<Capacity>;

    /// Whether a new object can be created now (readiness).
    async fn probe_writable(&self) -> bool;
}
