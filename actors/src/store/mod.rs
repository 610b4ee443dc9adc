//! The on-disk store behind the `CacheActor`: content-addressed blobs and manifests, reference records, atomic
//! writes, the directory lock and the rebuild at start. Everything here is blocking file I/O, called by the cache
//! actor on the blocking pool (and by a blob leader for its own writer); nothing else in the program touches
//! `imagePath`. Layout: see `layout`.

mod index;
mod layout;
mod rebuild;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use index::Index;
pub use layout::Layout;
pub(crate) use rebuild::media_type_of;
pub use rebuild::RebuildReport;
pub use writer::{BlobLease, BlobWriter};

use crate::digest::Digest;
use crate::error::StoreError;
use crate::reference::{ImageKey, Reference};

/// What the cache knows of a manifest without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestMeta {
    /// Its digest.
    pub digest: Digest,
    /// Its media type (served as `Content-Type`).
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A reference under one repository: `docker.io/library/alpine:3.20` or `...@sha256:...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefKey {
    /// The repository.
    pub image: ImageKey,
    /// The tag or digest.
    pub reference: Reference,
}

impl fmt::Display for RefKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::reference::Named(&self.image, &self.reference).fmt(f)
    }
}

/// A reference record as stored in `refs/`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RefRecord {
    /// Upstream namespace.
    pub namespace: crate::reference::Namespace,
    /// Repository.
    pub repository: crate::reference::RepoName,
    /// The tag or digest it was pulled by.
    pub reference: Reference,
    /// The manifest it resolved to.
    pub digest: Digest,
    /// When it was first stored (unix seconds).
    pub created: i64,
    /// When a client last pulled through it (unix seconds).
    pub pulled: i64,
}

impl RefRecord {
    /// The key this record is stored under.
    pub fn key(&self) -> RefKey {
        RefKey {
            image: ImageKey::new(self.namespace.clone(), self.repository.clone()),
            reference: self.reference.clone(),
        }
    }
}

/// Holds the directory lock for as long as it lives.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// The store: layout plus index. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    layout: Arc<Layout>,
    index: Arc<Index>,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |e| StoreError::io(op, path, &e)
}

/// A fresh, unique path in `tmp/`.
pub(crate) fn tmp_path(layout: &Layout, suffix: &str) -> PathBuf {
    layout.tmp_dir().join(format!("{:016x}.{suffix}", rand::random::<u64>()))
}

/// Space left free on the cache filesystem: a blob that would eat into it is passed through uncached instead.
const FREE_SPACE_RESERVE: u64 = 16 * 1024 * 1024;

/// Whether the filesystem holding `path` has room for `more` bytes plus the reserve (`statvfs`). A blob that would
/// fill the disk is better passed through uncached than failed half-way.
pub(crate) fn has_room_for(path: &Path, more: u64) -> bool {
    match rustix::fs::statvfs(path) {
        Ok(st) => st.f_bavail.saturating_mul(st.f_frsize) >= more.saturating_add(FREE_SPACE_RESERVE),
        Err(_) => true,
    }
}

/// fsync a directory so a rename into it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync", dir))
}

/// Write `bytes` to `dest` atomically: a temporary file in the same filesystem, fsynced, renamed into place.
fn write_atomic(layout: &Layout, dest: &Path, bytes: &[u8], durable: bool) -> Result<(), StoreError> {
    let tmp = tmp_path(layout, "part");
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        if durable {
            f.sync_all().map_err(io("fsync", &tmp))?;
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io("create directory", parent))?;
        }
        fs::rename(&tmp, dest).map_err(io("rename", dest))?;
        if durable {
            if let Some(parent) = dest.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl Store {
    /// Lock `root` and create its directories. Fails if another server holds the lock.
    pub fn open(root: &Path) -> Result<(Store, DirLock), StoreError> {
        let layout = Layout::new(root);
        for dir in layout.dirs() {
            if let Err(e) = fs::create_dir_all(&dir) {
                // A cache directory that exists but cannot be written (a read-only volume) is still served from;
                // new content then passes through uncached.
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
        let store = Store { layout: Arc::new(layout), index: Arc::new(Index::default()) };
        Ok((store, DirLock { _file: file }))
    }

    /// The in-memory index.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Open a committed blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> std::io::Result<File> {
        File::open(self.layout.blob(digest))
    }

    /// Read a committed manifest.
    pub fn read_manifest(&self, digest: &Digest) -> std::io::Result<Vec<u8>> {
        fs::read(self.layout.manifest(digest))
    }

    /// Whether the cache filesystem has at least its free-space reserve left.
    pub fn has_free_space(&self) -> bool {
        has_room_for(&self.layout.tmp_dir(), 0)
    }

    /// Start writing a blob: a temporary file plus a second handle for readers that follow the transfer.
    pub fn begin_blob(&self, digest: &Digest) -> Result<(BlobWriter, File), StoreError> {
        BlobWriter::create(&self.layout, digest)
    }

    /// Make a verified blob durable and visible (blocking: fsync + rename).
    pub fn commit_blob(&self, writer: BlobWriter) -> Result<u64, StoreError> {
        let (digest, size) = writer.commit(&self.layout)?;
        self.index.insert_blob(digest, size);
        Ok(size)
    }

    /// Store a verified manifest and the reference it was pulled by (blocking).
    pub fn put_manifest(
        &self,
        image: &ImageKey,
        reference: &Reference,
        digest: &Digest,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<ManifestMeta, StoreError> {
        let meta =
            ManifestMeta { digest: digest.clone(), media_type: media_type.to_string(), size: bytes.len() as u64 };
        if self.index.manifest(digest).is_none() {
            write_atomic(&self.layout, &self.layout.manifest_type(digest), media_type.as_bytes(), true)?;
            write_atomic(&self.layout, &self.layout.manifest(digest), bytes, true)?;
            self.index.insert_manifest(meta.clone());
        }
        self.link(image, reference, digest)?;
        Ok(meta)
    }

    /// Record that `reference` in `image` names the cached manifest `digest` (blocking).
    pub fn link(&self, image: &ImageKey, reference: &Reference, digest: &Digest) -> Result<(), StoreError> {
        let key = RefKey { image: image.clone(), reference: reference.clone() };
        if self.index.has_ref(&key).as_ref() != Some(digest) {
            let now = index::now_unix();
            let record = RefRecord {
                namespace: image.ns().clone(),
                repository: image.repo().clone(),
                reference: reference.clone(),
                digest: digest.clone(),
                created: now,
                pulled: now,
            };
            self.write_ref(&record, true)?;
            self.index.insert_ref(key, record);
        }
        Ok(())
    }

    /// Forget a reference (blocking): its record file and index entry. The manifest and blobs stay cached; the next
    /// pull of the reference asks the upstream again. False when there was no such reference.
    pub fn unlink(&self, key: &RefKey) -> Result<bool, StoreError> {
        let path = self.layout.reference(key);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("remove", &path, &e)),
        }
        Ok(self.index.remove_ref(key))
    }

    /// Whether a file can be created in the cache directory now (for readiness).
    pub fn probe_writable(&self) -> bool {
        let path = tmp_path(&self.layout, "probe");
        let ok = File::create(&path).is_ok();
        let _ = fs::remove_file(&path);
        ok
    }

    fn write_ref(&self, record: &RefRecord, durable: bool) -> Result<(), StoreError> {
        let path = self.layout.reference(&record.key());
        let json = serde_json::to_vec_pretty(record).map_err(|e| StoreError::Io {
            op: "encode",
            path: path.display().to_string(),
            detail: e.to_string(),
            disk_full: false,
        })?;
        write_atomic(&self.layout, &path, &json, durable)
    }

    /// Write the last-pulled times that changed since the previous flush (blocking). Not fsynced: losing a pulled
    /// time in a crash is harmless.
    pub fn flush_pulled(&self) -> Result<usize, StoreError> {
        let dirty = self.index.take_dirty_refs();
        let n = dirty.len();
        for record in dirty {
            self.write_ref(&record, false)?;
        }
        Ok(n)
    }
}
