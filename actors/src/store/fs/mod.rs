//! The filesystem store: the embedded default backend, over `imagePath`. Objects are files named by their keys
//! (`layout`); a put is an atomic write and an upload a partial file in `tmp/` renamed into place (`files`); a
//! committed object is read through positioned reads of the open file (`reader`), and sent with `sendfile`
//! (`FileRange`); quarantine is a rename into `quarantine/`; the access journal is appended to.
//!
//! The directory is `flock`ed for as long as the store lives, so a second server on the same directory refuses to
//! start; once locked, writes an earlier run left unfinished in `tmp/` are removed (before anything is served, so the
//! scan that follows never races a write of this run: `list`). A directory that exists but cannot be written (a
//! read-only volume) is still opened: it is served from, and writes fail (the cache then passes new content through
//! uncached).

mod files;
mod layout;
mod list;
mod reader;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod type_file_tests;

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;

use self::files::{blocking, io, read_versioned, remove_if_present, tmp_path, write_atomic, FileUpload};
use self::layout::Layout;
use self::reader::FileReader;
use crate::error::StoreError;
use crate::store::backend::{Backend, Listed, OpenedBlob, Res, Upload};
use crate::store::keys;
use crate::store::records::{Capacity, Version};
use crate::store::stamp::{version_of, Stamp};

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
        let partial_removed = list::remove_unfinished(&layout);
        Ok(FsStorage { layout: Arc::new(layout), location: root.display().to_string(), _lock: file, partial_removed })
    }
}

impl Backend for FsStorage {
    fn location(&self) -> &str {
        &self.location
    }

    async fn open(&self, key: &str) -> Res<Option<OpenedBlob>> {
        // Opening a local file is a quick metadata operation: done inline, so a cache hit costs no thread hop.
        let path = self.layout.path(key);
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

    async fn get(&self, key: &str) -> Res<Option<(Bytes, Version)>> {
        let path = self.layout.path(key);
        blocking("read", move || match read_versioned(&path) {
            Ok((bytes, version)) => Ok(Some((Bytes::from(bytes), version))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", &path, &e)),
        })
        .await
    }

    async fn head(&self, key: &str) -> Res<Option<Version>> {
        // A quick metadata call, done inline: a hot manifest costs no thread hop.
        let path = self.layout.path(key);
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(version_of(&meta))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("stat", &path, &e)),
        }
    }

    async fn put(&self, key: &str, bytes: Bytes, durable: bool) -> Res<()> {
        let (layout, path) = (self.layout.clone(), self.layout.path(key));
        blocking("store", move || write_atomic(&layout, &path, &bytes, durable)).await
    }

    async fn upload(&self, key: &str) -> Res<Box<dyn Upload>> {
        let (dest, staging) = (self.layout.path(key), self.layout.path(&keys::staging(key)));
        let upload = blocking("create", move || FileUpload::open(dest, staging)).await?;
        Ok(Box::new(upload))
    }

    async fn delete(&self, key: &str) -> Res<()> {
        let path = self.layout.path(key);
        blocking("remove", move || remove_if_present(&path)).await
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Res<Listed>> {
        list::list(self.layout.root(), prefix)
    }

    async fn quarantine(&self, key: &str, version: Option<Version>, aside: &str) -> Res<bool> {
        let (path, dest) = (self.layout.path(key), self.layout.path(aside));
        blocking("quarantine", move || {
            if let Some(version) = version {
                match fs::metadata(&path) {
                    Ok(meta) if version_of(&meta).same(version) => {}
                    _ => return Ok(false),
                }
            }
            Ok(match fs::rename(&path, &dest) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot quarantine cache file; deleting it");
                    let _ = fs::remove_file(&path);
                    true
                }
            })
        })
        .await
    }

    async fn append(&self, key: &str, bytes: Bytes) -> Res<()> {
        let path = self.layout.path(key);
        blocking("append", move || {
            let mut f = fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io("open", &path))?;
            f.write_all(&bytes).map_err(io("write", &path))
        })
        .await
    }

    async fn prepare_scan(&self) -> usize {
        self.partial_removed
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
