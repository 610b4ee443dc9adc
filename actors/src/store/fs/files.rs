//! File primitives of the filesystem store: atomic writes (temporary file, fsync, rename, directory fsync), the
//! blocking-pool bridge and uploads (a partial file in `tmp/`, renamed into place). Positioned reads are in
//! `reader.rs`; a file's version is its `Stamp` (`store::stamp`).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::layout::Layout;
use super::reader::FileReader;
use crate::error::StoreError;
use crate::store::backend::{ObjectReader, Upload};
use crate::store::records::Version;
use crate::store::stamp::version_of;

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

/// A whole regular file's bytes with the version of the copy they were read from (the version of the open file, so a
/// rename over the path meanwhile cannot pair one copy's bytes with another's version). Anything else (a FIFO) is an
/// error, found without waiting.
pub(super) fn read_versioned(path: &Path) -> std::io::Result<(Vec<u8>, Version)> {
    use std::io::Read;
    let mut file = open_nonblocking(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)?;
    Ok((bytes, version_of(&meta)))
}

/// Open `path` for reading without waiting: opening a FIFO for reading would otherwise wait for a writer (a regular
/// file is read as without the flag).
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32).open(path)
}

/// A blob being written to `tmp/partial-<alg>-<hex>`, renamed into `blobs/` by `commit`; what it holds is resumed
/// by the next write of the same digest.
pub(super) struct FileUpload {
    /// The object's final path.
    dest: PathBuf,
    path: PathBuf,
    /// The upstream's validator kept beside the partial file by the writer (`keys::validator`), removed with it.
    validator_path: PathBuf,
    /// Opened read-write: appends go to the file offset, readers use positioned reads on the same handle.
    file: Arc<File>,
    resumed: u64,
    /// Committed or discarded: nothing to clean up on drop.
    done: bool,
}

impl Drop for FileUpload {
    /// A write that stopped keeps its bytes for the next attempt, unless there are none.
    fn drop(&mut self) {
        if !self.done && self.file.metadata().is_ok_and(|m| m.len() == 0) {
            let _ = fs::remove_file(&self.path);
            let _ = fs::remove_file(&self.validator_path);
        }
    }
}

impl FileUpload {
    /// Begin (or resume) the upload of `dest`, staged at `path`.
    pub(super) fn open(dest: PathBuf, path: PathBuf) -> Result<FileUpload, StoreError> {
        let validator_path = PathBuf::from(format!("{}.etag", path.display()));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io("create", &path))?;
        let resumed = file.metadata().map_err(io("stat", &path))?.len();
        Ok(FileUpload { dest, path, validator_path, file: Arc::new(file), resumed, done: false })
    }
}

#[async_trait]
impl Upload for FileUpload {
    fn reader(&self) -> Arc<dyn ObjectReader> {
        Arc::new(FileReader::new(self.file.clone()))
    }

    fn resumed(&self) -> u64 {
        self.resumed
    }

    async fn append(&mut self, data: Bytes) -> Result<(), StoreError> {
        let (file, path) = (self.file.clone(), self.path.clone());
        blocking("write", move || (&*file).write_all(&data).map_err(io("write", &path))).await
    }

    async fn sync(&mut self) -> Result<(), StoreError> {
        let (file, path) = (self.file.clone(), self.path.clone());
        blocking("fsync", move || file.sync_all().map_err(io("fsync", &path))).await
    }

    async fn truncate(&mut self) -> Result<(), StoreError> {
        let (file, path) = (self.file.clone(), self.path.clone());
        self.resumed = 0;
        blocking("truncate", move || file.set_len(0).map_err(io("truncate", &path))).await
    }

    async fn abort(mut self: Box<Self>) {
        self.done = true;
        let (path, validator) = (self.path.clone(), self.validator_path.clone());
        let _ = blocking("remove", move || {
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(&validator);
            Ok(())
        })
        .await;
    }

    async fn complete(mut self: Box<Self>) -> Result<Version, StoreError> {
        self.done = true;
        let (file, path, dest) = (self.file.clone(), self.path.clone(), self.dest.clone());
        blocking("rename", move || {
            fs::rename(&path, &dest).map_err(io("rename", &dest))?;
            if let Some(parent) = dest.parent() {
                sync_dir(parent)?;
            }
            let meta = file.metadata().map_err(io("stat", &dest))?;
            Ok(version_of(&meta))
        })
        .await
    }
}
