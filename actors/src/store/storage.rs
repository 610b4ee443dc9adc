//! The storage trait the rest of the server uses (`Storage`), provided once for every `Backend`: manifests with
//! their checked `.type`, reference records, removal and quarantine, the access journal, the scan, and the resumable
//! blob writes with their validators. No backend implements it by hand.
//!
//! Callers: the cache actor is the only caller of the mutating methods, one object at a time in the order it handled
//! its messages. Readers (the front door, the fetchers, the scrub) call only `open_blob`, the `read_*` methods,
//! `manifest_version`, `capacity`, `probe_writable` and `begin_blob` (through `Store`).

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::digest::Digest;
use crate::error::StoreError;
use crate::store::backend::{Backend, OpenedBlob, Upload};
use crate::store::records::{AccessEntry, Capacity, Inventory, RefKey, RefRecord, StoredObject, Version};
use crate::store::type_check::{self, move_aside, Checked};
use crate::store::{journal, keys, scan};

/// A blob write begun: the backend's upload, and the upstream's validator an earlier attempt recorded for the bytes
/// it resumes.
pub(crate) struct Begun {
    pub(crate) upload: Box<dyn Upload>,
    pub(crate) validator: Option<String>,
}

/// The store's operations, as the server uses them. See the module documentation.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Where the store lives, for log lines and errors.
    fn location(&self) -> &str;

    /// Whether other processes (replicas) write to this store too (see `Backend::shared`).
    fn shared(&self) -> bool;

    /// Scan everything stored (start-up, while the server already serves): see `scan`.
    async fn scan(&self, found: mpsc::Sender<Inventory>);

    /// Open a committed blob. `Ok(None)` when it is not there.
    async fn open_blob(&self, digest: &Digest) -> Result<Option<OpenedBlob>, StoreError>;

    /// Start writing a blob, resuming the bytes an earlier, unfinished write of it left.
    async fn begin_blob(&self, digest: &Digest) -> Result<Begun, StoreError>;

    /// Record the upstream's validator of the blob being written, for a resumed attempt's `If-Range`.
    async fn set_validator(&self, digest: &Digest, validator: &str) -> Result<(), StoreError>;

    /// Forget the validator of a blob write that ended (committed or discarded).
    async fn clear_validator(&self, digest: &Digest);

    /// A committed manifest's bytes, unverified, with the version of the stored copy they were read from.
    async fn read_manifest(&self, digest: &Digest) -> Result<Option<(Bytes, Version)>, StoreError>;

    /// The version of a committed manifest's stored copy, without reading it (a quick check, done inline).
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
    /// the stored copy is still `version` when one is given. Returns whether something was moved.
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

#[async_trait]
impl<B: Backend> Storage for B {
    fn location(&self) -> &str {
        Backend::location(self)
    }

    fn shared(&self) -> bool {
        Backend::shared(self)
    }

    async fn scan(&self, found: mpsc::Sender<Inventory>) {
        scan::scan(self, found).await;
    }

    async fn open_blob(&self, digest: &Digest) -> Result<Option<OpenedBlob>, StoreError> {
        self.open(&keys::blob(digest)).await
    }

    async fn begin_blob(&self, digest: &Digest) -> Result<Begun, StoreError> {
        let upload = self.upload(&keys::blob(digest)).await?;
        // A validator is kept only beside bytes to resume.
        let validator = if upload.resumed() > 0 {
            let kept = self.get(&keys::validator(digest)).await.ok().flatten();
            kept.map(|(v, _)| String::from_utf8_lossy(&v).trim().to_string()).filter(|v| !v.is_empty())
        } else {
            None
        };
        Ok(Begun { upload, validator })
    }

    async fn set_validator(&self, digest: &Digest, validator: &str) -> Result<(), StoreError> {
        self.put(&keys::validator(digest), Bytes::copy_from_slice(validator.as_bytes()), false).await
    }

    async fn clear_validator(&self, digest: &Digest) {
        let _ = self.delete(&keys::validator(digest)).await;
    }

    async fn read_manifest(&self, digest: &Digest) -> Result<Option<(Bytes, Version)>, StoreError> {
        self.get(&keys::manifest(digest)).await
    }

    async fn manifest_version(&self, digest: &Digest) -> Result<Option<Version>, StoreError> {
        self.current_version(&keys::manifest(digest)).await
    }

    async fn read_manifest_type(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        let Some((bytes, version)) = self.get(&keys::manifest(digest)).await? else {
            return Ok(None);
        };
        // Bytes that do not match their digest are the reader's to report; no type is told for them.
        if Digest::of(digest.algorithm(), &bytes) != *digest {
            return Ok(None);
        }
        Ok(match type_check::check(self, digest, &bytes, version).await? {
            Checked::Type { media_type, .. } => Some(media_type.as_str().to_string()),
            Checked::Damaged { .. } => None,
        })
    }

    async fn read_record(&self, key: &RefKey) -> Result<Option<RefRecord>, StoreError> {
        let Some((bytes, _)) = self.get(&keys::record(key)).await? else {
            return Ok(None);
        };
        // A record for another key (a hash collision of the key name) or an unreadable one is no record.
        Ok(serde_json::from_slice::<RefRecord>(&bytes).ok().filter(|r| &r.key() == key))
    }

    async fn put_manifest(&self, digest: &Digest, media_type: &str, bytes: Bytes) -> Result<(), StoreError> {
        let media_type = Bytes::copy_from_slice(media_type.as_bytes());
        self.put(&keys::manifest_type(digest), media_type, true).await?;
        self.put(&keys::manifest(digest), bytes, true).await
    }

    async fn put_record(&self, record: &RefRecord) -> Result<(), StoreError> {
        let key = keys::record(&record.key());
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| StoreError::io("encode", std::path::Path::new(&key), &std::io::Error::other(e.to_string())))?;
        self.put(&key, json.into(), true).await
    }

    async fn remove(&self, object: &StoredObject) -> Result<(), StoreError> {
        self.delete(&keys::object(object)).await?;
        match object {
            StoredObject::Manifest(d) => self.delete(&keys::manifest_type(d)).await,
            _ => Ok(()),
        }
    }

    async fn quarantine(&self, object: &StoredObject, version: Option<Version>, why: &str) -> Result<bool, StoreError> {
        move_aside(self, &keys::object(object), version, why).await
    }

    async fn record_access(&self, entries: Vec<AccessEntry>) -> Result<(), StoreError> {
        journal::record(self, &entries).await
    }

    async fn rewrite_access(&self, entries: Vec<AccessEntry>) -> Result<(), StoreError> {
        journal::rewrite(self, &entries).await
    }

    async fn capacity(&self) -> Option<Capacity> {
        Backend::capacity(self).await
    }

    async fn probe_writable(&self) -> bool {
        Backend::probe_writable(self).await
    }
}
