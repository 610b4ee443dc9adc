//! File primitives of the filesystem store: atomic writes (temporary file, fsync, rename, directory fsync), the
//! blocking-pool bridge, blob writers and the version of a file. Positioned reads are in `reader.rs`.

use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::layout::Layout;
use super::reader::FileReader;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::store::backend::{BlobWrite, ObjectReader};
use crate::store::records::Version;

/// An `io::Error` on `path` while doing `op`, as a `StoreError`.
pub(super) fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |e| StoreError::io(op, path, &e)
}

/// Run blocking file work on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    op: &'static str,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| Err(StoreError::Task { op, detail: e.to_string() }))
}

/// A fresh, unique path in `tmp/`.
pub(super) fn tmp_path(layout: &Layout, suffix: &str) -> PathBuf {
    layout.tmp_dir().join(format!("{:016x}.{suffix}", rand::random::<u64>()))
}

/// fsync a directory so a rename into it survives a crash.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync", dir))
}

/// Write `bytes` to `dest` atomically: a temporary file in the same filesystem, renamed into place; fsynced (file and
/// directory) when `durable`.
pub(super) fn write_atomic(layout: &Layout, dest: &Path, bytes: &[u8], durable: bool) -> Result<(), StoreError> {
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

/// Remove a file; one that is not there is fine.
pub(super) fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io("remove", path, &e)),
        _ => Ok(()),
    }
}

/// A file's version: its device, inode, size, modification and change time. Any write, truncation or replacement
/// changes it.
pub(super) fn version_of(meta: &fs::Metadata) -> Version {
    Stamp::of(meta).version()
}

/// What a file's metadata says of its bytes, kept by a reader of a committed blob from the moment it opened it, so
/// that it can tell before the last of them leaves whether they may have changed since (`changed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub(super) fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The version these metadata name (`version_of`).
    pub(super) fn version(&self) -> Version {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.dev, self.ino, self.size, self.ctime.0, self.ctime.1, self.mtime.0, self.mtime.1).hash(&mut h);
        Version(h.finish())
    }

    /// The version of `file` now (one `fstat` of the open descriptor) when its bytes may have changed since this
    /// stamp was taken; `None` when they have not. A write or truncation changes the size or the modification
    /// time, and resetting the modification time by hand changes the change time. The change time alone also moves
    /// when the file is renamed or unlinked: a blob evicted (or replaced by a fresh copy) while a client reads it is
    /// unlinked, and its bytes, which nothing can reach any more, are unchanged. So a change time that moved while
    /// the file lost its last name does not count; one that moved while the file is still in the cache does (a
    /// quarantine moves only damaged files).
    pub(super) fn changed(&self, file: &File) -> std::io::Result<Option<Version>> {
        let meta = file.metadata()?;
        let now = Stamp::of(&meta);
        let same_bytes = now.dev == self.dev && now.ino == self.ino && now.size == self.size && now.mtime == self.mtime;
        let unchanged = same_bytes && (now.ctime == self.ctime || meta.nlink() == 0);
        Ok((!unchanged).then(|| now.version()))
    }
}

/// A whole file's bytes with the version of the copy they were read from (the version of the open file, so a rename
/// over the path meanwhile cannot pair one copy's bytes with another's version).
pub(super) fn read_versioned(path: &Path) -> std::io::Result<(Vec<u8>, Version)> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)?;
    Ok((bytes, version_of(&meta)))
}

/// A blob being written to `tmp/partial-<alg>-<hex>`, renamed into `blobs/` by `commit`; what it holds is resumed
/// by the next write of the same digest.
pub(super) struct FileBlobWrite {
    layout: Arc<Layout>,
    path: PathBuf,
    validator_path: PathBuf,
    /// Opened read-write: appends go to the file offset, readers use positioned reads on the same handle.
    file: Arc<File>,
    resumed: u64,
    validator: Option<String>,
    /// Committed or discarded: nothing to clean up on drop.
    done: bool,
}

impl Drop for FileBlobWrite {
    /// A write that stopped keeps its bytes for the next attempt, unless there are none.
    fn drop(&mut self) {
        if !self.done && self.file.metadata().is_ok_and(|m| m.len() == 0) {
            let _ = fs::remove_file(&self.path);
            let _ = fs::remove_file(&self.validator_path);
        }
    }
}

impl FileBlobWrite {
    pub(super) fn open(layout: Arc<Layout>, digest: &Digest) -> Result<FileBlobWrite, StoreError> {
        let path = layout.partial(digest);
        let validator_path = layout.partial_validator(digest);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io("create", &path))?;
        let resumed = file.metadata().map_err(io("stat", &path))?.len();
        let validator = if resumed > 0 {
            fs::read_to_string(&validator_path).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
        } else {
            None
        };
        Ok(FileBlobWrite { layout, path, validator_path, file: Arc::new(file), resumed, validator, done: false })
    }
}

#[async_trait]
impl BlobWrite for FileBlobWrite {
    fn reader(&self) -> Arc<dyn ObjectReader> {
        Arc::new(FileReader::new(self.file.clone()))
    }

    fn resumed(&self) -> u64 {
        self.resumed
    }

    fn validator(&self) -> Option<String> {
        self.validator.clone()
    }

    async fn set_validator(&mut self, validator: &str) -> Result<(), StoreError> {
        let (path, value) = (self.validator_path.clone(), validator.to_string());
        self.validator = Some(value.clone());
        blocking("write", move || fs::write(&path, value).map_err(io("write", &path))).await
    }

    async fn append(&mut self, data: Bytes) -> Result<(), StoreError> {
        let (file, path) = (self.file.clone(), self.path.clone());
        blocking("write", move || (&*file).write_all(&data).map_err(io("write", &path))).await
    }

    async fn sync(&mut self) -> Result<(), StoreError> {
        let (file, path) = (self.file.clone(), self.path.clone());
        blocking("fsync", move || file.sync_all().map_err(io("fsync", &path))).await
    }

    async fn restart(&mut self) -> Result<(), StoreError> {
        let (file, path) = (self.file.clone(), self.path.clone());
        self.resumed = 0;
        blocking("truncate", move || file.set_len(0).map_err(io("truncate", &path))).await
    }

    async fn discard(mut self: Box<Self>) {
        self.done = true;
        let (path, validator) = (self.path.clone(), self.validator_path.clone());
        let _ = blocking("remove", move || {
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(&validator);
            Ok(())
        })
        .await;
    }

    async fn commit(mut self: Box<Self>, digest: &Digest) -> Result<Version, StoreError> {
        self.done = true;
        let dest = self.layout.blob(digest);
        let (file, path, validator) = (self.file.clone(), self.path.clone(), self.validator_path.clone());
        blocking("rename", move || {
            fs::rename(&path, &dest).map_err(io("rename", &dest))?;
            let _ = fs::remove_file(&validator);
            if let Some(parent) = dest.parent() {
                sync_dir(parent)?;
            }
            let meta = file.metadata().map_err(io("stat", &dest))?;
            Ok(version_of(&meta))
        })
        .await
    }
}
