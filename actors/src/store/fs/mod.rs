//! The filesystem store: the embedded default backend of the storage trait, over `imagePath`.
//!
//! Layout in `layout`; atomic writes, readers and blob writers in `files`; the start-up scan in `inventory`; the
//! access-time journal in `journal`. The directory is `flock`ed for as long as the store lives, so a second server
//! on the same directory refuses to start; once locked, writes an earlier run left unfinished in `tmp/` are removed
//! (before anything is served, so the scan that follows never races a write of this run). A directory that exists but cannot be written (a read-only volume) is
//! still opened: it is served from, and writes fail (the cache then passes new content through uncached).

mod files;
mod inventory;
pub(crate) mod journal;
mod layout;
mod reader;
mod send;
#[cfg(test)]
mod tests;
mod type_file;
#[cfg(test)]
mod type_file_tests;

use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use self::files::{
    blocking, io, read_versioned, remove_if_present, tmp_path, version_of, write_atomic, FileBlobWrite, Stamp,
};
pub(crate) use self::journal::{encode as encode_journal, parse_text as parse_journal};
use self::layout::Layout;
use self::reader::FileReader;
pub use self::send::FileRange;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::store::backend::{BlobWrite, OpenedBlob, Storage};
use crate::store::records::{AccessEntry, Capacity, Inventory, RefKey, RefRecord, StoredObject, Version};

/// See the module documentation.
#[derive(Debug)]
pub struct FsStorage {
    layout: Arc<Layout>,
    /// `imagePath` as text, for messages.
    location: String,
    /// Holds the directory lock for as long as the store lives.
    _lock: File,
    /// Unfinished writes of an earlier run removed at open, reported by the scan.
    partial_removed: usize,
}

impl FsStorage {
    /// Lock `root` and create its directories. Fails if another server holds the lock or `root` cannot be made.
    pub fn open(root: &Path) -> Result<FsStorage, StoreError> {
        let layout = Layout::new(root);
        for dir in layout.dirs() {
            if let Err(e) = fs::create_dir_all(&dir) {
                if root.is_dir() {
                    tracing::warn!(dir = %dir.display(), error = %e, "cache directory not writable; serving it read-only");
                } else {
                    return Err(StoreError::io("create directory", &dir, &e));
                }
            }
        }
        let lock_path = layout.lock_file();
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .or_else(|_| File::open(&lock_path))
            .or_else(|_| File::open(root))
            .map_err(io("open", &lock_path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(root.display().to_string())),
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::io("lock", &lock_path, &e)),
        }
        let partial_removed = inventory::remove_unfinished(&layout);
        Ok(FsStorage { layout: Arc::new(layout), location: root.display().to_string(), _lock: file, partial_removed })
    }

    fn path_of(&self, object: &StoredObject) -> std::path::PathBuf {
        match object {
            StoredObject::Blob(d) => self.layout.blob(d),
            StoredObject::Manifest(d) => self.layout.manifest(d),
            StoredObject::Record(k) => self.layout.reference(k),
        }
    }
}

#[async_trait]
impl Storage for FsStorage {
    fn location(&self) -> &str {
        &self.location
    }

    async fn scan(&self, found: mpsc::Sender<Inventory>) {
        let (layout, partial_removed) = (self.layout.clone(), self.partial_removed);
        let _ = tokio::task::spawn_blocking(move || inventory::scan(&layout, partial_removed, &found)).await;
    }

    async fn open_blob(&self, digest: &Digest) -> Result<Option<OpenedBlob>, StoreError> {
        // Opening a local file is a quick metadata operation: done inline, so a cache hit costs no thread hop.
        let path = self.layout.blob(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("open", &path, &e)),
        };
        let meta = file.metadata().map_err(io("stat", &path))?;
        if !meta.is_file() {
            return Err(StoreError::io("open", &path, &std::io::Error::other("not a regular file")));
        }
        let stamp = Stamp::of(&meta);
        let reader = Arc::new(FileReader::committed(Arc::new(file), stamp));
        Ok(Some(OpenedBlob { reader, size: meta.len(), version: stamp.version() }))
    }

    async fn begin_blob(&self, digest: &Digest) -> Result<Box<dyn BlobWrite>, StoreError> {
        let (layout, digest) = (self.layout.clone(), digest.clone());
        let write = blocking("create", move || FileBlobWrite::open(layout, &digest)).await?;
        Ok(Box::new(write))
    }

    async fn read_manifest(&self, digest: &Digest) -> Result<Option<(Bytes, Version)>, StoreError> {
        let path = self.layout.manifest(digest);
        blocking("read", move || match read_versioned(&path) {
            Ok((bytes, version)) => Ok(Some((Bytes::from(bytes), version))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", &path, &e)),
        })
        .await
    }

    async fn manifest_version(&self, digest: &Digest) -> Result<Option<Version>, StoreError> {
        // A quick metadata call, done inline: a hot manifest costs no thread hop.
        let path = self.layout.manifest(digest);
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(version_of(&meta))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("stat", &path, &e)),
        }
    }

    /// The `.type` is checked against the manifest's content (and repaired) on every read: see `type_file`.
    async fn read_manifest_type(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        let (layout, digest) = (self.layout.clone(), digest.clone());
        blocking("read", move || {
            let path = layout.manifest(&digest);
            let (bytes, version) = match read_versioned(&path) {
                Ok(read) => read,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(StoreError::io("read", &path, &e)),
            };
            // Bytes that do not match their digest are the reader's to report; no type is told for them.
            if Digest::of(digest.algorithm(), &bytes) != digest {
                return Ok(None);
            }
            Ok(match type_file::check(&layout, &digest, &bytes, version) {
                type_file::Checked::Type { media_type, .. } => Some(media_type.as_str().to_string()),
                type_file::Checked::Damaged { .. } => None,
            })
        })
        .await
    }

    async fn read_record(&self, key: &RefKey) -> Result<Option<RefRecord>, StoreError> {
        let path = self.layout.reference(key);
        let key = key.clone();
        blocking("read", move || match fs::read(&path) {
            Ok(bytes) => Ok(serde_json::from_slice::<RefRecord>(&bytes).ok().filter(|r| r.key() == key)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", &path, &e)),
        })
        .await
    }

    async fn put_manifest(&self, digest: &Digest, media_type: &str, bytes: Bytes) -> Result<(), StoreError> {
        let layout = self.layout.clone();
        let (digest, media_type) = (digest.clone(), media_type.to_string());
        blocking("store manifest", move || {
            write_atomic(&layout, &layout.manifest_type(&digest), media_type.as_bytes(), true)?;
            write_atomic(&layout, &layout.manifest(&digest), &bytes, true)
        })
        .await
    }

    async fn put_record(&self, record: &RefRecord) -> Result<(), StoreError> {
        let layout = self.layout.clone();
        let path = layout.reference(&record.key());
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| StoreError::io("encode", &path, &std::io::Error::other(e.to_string())))?;
        blocking("store reference", move || write_atomic(&layout, &path, &json, true)).await
    }

    async fn remove(&self, object: &StoredObject) -> Result<(), StoreError> {
        let path = self.path_of(object);
        let type_file = match object {
            StoredObject::Manifest(d) => Some(self.layout.manifest_type(d)),
            _ => None,
        };
        blocking("remove", move || {
            remove_if_present(&path)?;
            type_file.map_or(Ok(()), |t| remove_if_present(&t))
        })
        .await
    }

    async fn quarantine(&self, object: &StoredObject, version: Option<Version>, why: &str) -> Result<bool, StoreError> {
        let (layout, path, why) = (self.layout.clone(), self.path_of(object), why.to_string());
        blocking("quarantine", move || {
            if let Some(version) = version {
                match fs::metadata(&path) {
                    Ok(meta) if version_of(&meta).same(version) => {}
                    _ => return Ok(false),
                }
            }
            Ok(inventory::quarantine_file(&layout, &path, &why))
        })
        .await
    }

    async fn record_access(&self, entries: Vec<AccessEntry>) -> Result<(), StoreError> {
        let path = self.layout.access_log();
        blocking("record access times", move || journal::append(&path, &entries)).await
    }

    async fn rewrite_access(&self, entries: Vec<AccessEntry>) -> Result<(), StoreError> {
        let layout = self.layout.clone();
        blocking("rewrite access times", move || {
            write_atomic(&layout, &layout.access_log(), journal::encode(&entries).as_bytes(), false)
        })
        .await
    }

    async fn capacity(&self) -> Option<Capacity> {
        let st = rustix::fs::statvfs(self.layout.root()).ok()?;
        Some(Capacity { free: st.f_bavail.saturating_mul(st.f_frsize), total: st.f_blocks.saturating_mul(st.f_frsize) })
    }

    async fn probe_writable(&self) -> bool {
        let path = tmp_path(&self.layout, "probe");
        blocking("probe", move || {
            let ok = File::create(&path).is_ok();
            let _ = fs::remove_file(&path);
            Ok(ok)
        })
        .await
        .unwrap_or(false)
    }
}
