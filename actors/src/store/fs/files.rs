//! File primitives of the filesystem store: atomic writes (temporary file, fsync, rename, directory fsync), the
//! blocking-pool bridge and uploads (a partial file in `tmp/`, renamed into place). Positioned reads are in
//! `reader.rs`; a file's version is its `Stamp` (`store::stamp`).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;

use super::layout::Layout;
use super::reader::FileReader;
use crate::error::StoreError;
use crate::store::backend::{ObjectReader, Patch, Upload};
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
    /// Opened read-write: appends are positioned writes at `pos`, readers use positioned reads on the same handle.
    file: Arc<File>,
    /// Where the next append goes: the bytes before it are the object's. Pieces fetched ahead may lie after it.
    pos: Arc<AtomicU64>,
    /// `<path>.ahead`, see `FilePatch`.
    ahead_path: PathBuf,
    /// A piece was written ahead: each append records the new prefix in `ahead_path`.
    marked: Arc<AtomicBool>,
    /// Set (under the write lock) once the upload ends: a piece's write, holding the read lock, then stops.
    closed: Arc<RwLock<bool>>,
    resumed: u64,
    /// Committed or discarded: nothing to clean up on drop.
    done: bool,
}

impl Drop for FileUpload {
    /// A write that stopped keeps its bytes for the next attempt, unless there are none.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Pieces written ahead of the appends are not kept: the next attempt resumes the bytes appended.
        let _closed = self.close();
        let pos = self.pos.load(Ordering::Acquire);
        if self.file.metadata().is_ok_and(|m| m.len() > pos) {
            let _ = self.file.set_len(pos);
        }
        let _ = fs::remove_file(&self.ahead_path);
        if pos == 0 {
            let _ = fs::remove_file(&self.path);
            let _ = fs::remove_file(&self.validator_path);
        }
    }
}

impl FileUpload {
    /// Begin (or resume) the upload of `dest`, staged at `path`.
    pub(super) fn open(dest: PathBuf, path: PathBuf) -> Result<FileUpload, StoreError> {
        let validator_path = PathBuf::from(format!("{}.etag", path.display()));
        let ahead_path = PathBuf::from(format!("{}.ahead", path.display()));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io("create", &path))?;
        // A run that stopped without cleaning up (killed) may have left pieces ahead of its appends: only the bytes
        // before the first of them are the object's prefix.
        if let Some(prefix) = fs::read_to_string(&ahead_path).ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            file.set_len(prefix).map_err(io("truncate", &path))?;
        }
        let _ = fs::remove_file(&ahead_path);
        let resumed = file.metadata().map_err(io("stat", &path))?.len();
        let pos = Arc::new(AtomicU64::new(resumed));
        let closed = Arc::default();
        Ok(FileUpload {
            dest,
            path,
            validator_path,
            file: Arc::new(file),
            pos,
            ahead_path,
            marked: Arc::default(),
            closed,
            resumed,
            done: false,
        })
    }

    /// No piece writes from now on (one under way has finished when this returns; the guard keeps others out).
    fn close(&self) -> std::sync::RwLockWriteGuard<'_, bool> {
        let mut closed = self.closed.write().unwrap_or_else(|p| p.into_inner());
        *closed = true;
        closed
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
        let (at, len) = (self.pos.load(Ordering::Acquire), data.len() as u64);
        // With pieces ahead, the prefix a kill would leave grows with the appends (an older value is safe too).
        let ahead = self.marked.load(Ordering::Acquire).then(|| self.ahead_path.clone());
        blocking("write", move || {
            file.write_all_at(&data, at).map_err(io("write", &path))?;
            match ahead {
                Some(ahead) => fs::write(&ahead, (at + len).to_string()).map_err(io("write", &ahead)),
                None => Ok(()),
            }
        })
        .await?;
        self.pos.store(at + len, Ordering::Release);
        Ok(())
    }

    fn patcher(&self) -> Option<Arc<dyn Patch>> {
        Some(Arc::new(FilePatch {
            file: self.file.clone(),
            path: self.path.clone(),
            pos: self.pos.clone(),
            ahead_path: self.ahead_path.clone(),
            marked: self.marked.clone(),
            closed: self.closed.clone(),
        }))
    }

    fn skip(&mut self, len: u64) {
        self.pos.fetch_add(len, Ordering::AcqRel);
    }

    async fn sync(&mut self) -> Result<(), StoreError> {
        let (file, path) = (self.file.clone(), self.path.clone());
        blocking("fsync", move || file.sync_all().map_err(io("fsync", &path))).await
    }

    async fn truncate(&mut self) -> Result<(), StoreError> {
        let (file, path) = (self.file.clone(), self.path.clone());
        self.resumed = 0;
        self.pos.store(0, Ordering::Release);
        self.marked.store(false, Ordering::Release);
        let ahead = self.ahead_path.clone();
        blocking("truncate", move || {
            let _ = fs::remove_file(&ahead);
            file.set_len(0).map_err(io("truncate", &path))
        })
        .await
    }

    async fn abort(mut self: Box<Self>) {
        self.done = true;
        drop(self.close());
        let (path, validator, ahead) = (self.path.clone(), self.validator_path.clone(), self.ahead_path.clone());
        let _ = blocking("remove", move || {
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(&validator);
            let _ = fs::remove_file(&ahead);
            Ok(())
        })
        .await;
    }

    async fn complete(mut self: Box<Self>) -> Result<Version, StoreError> {
        self.done = true;
        drop(self.close());
        let (file, path, dest, ahead) =
            (self.file.clone(), self.path.clone(), self.dest.clone(), self.ahead_path.clone());
        blocking("rename", move || {
            fs::rename(&path, &dest).map_err(io("rename", &dest))?;
            let _ = fs::remove_file(&ahead);
            if let Some(parent) = dest.parent() {
                sync_dir(parent)?;
            }
            let meta = file.metadata().map_err(io("stat", &dest))?;
            Ok(version_of(&meta))
        })
        .await
    }
}

/// Pieces of an upload written ahead of its appends (`Patch`). Before the first, the append position is recorded in
/// `<partial>.ahead`, and again after each append from then on, so that a run killed before it cleaned up resumes
/// only the bytes appended, never a piece or a hole (`open`); a run that stops cleanly cuts the pieces off itself
/// (`Drop`).
struct FilePatch {
    file: Arc<File>,
    path: PathBuf,
    pos: Arc<AtomicU64>,
    ahead_path: PathBuf,
    marked: Arc<AtomicBool>,
    closed: Arc<RwLock<bool>>,
}

#[async_trait]
impl Patch for FilePatch {
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<(), StoreError> {
        let mark = (!self.marked.swap(true, Ordering::AcqRel)).then(|| (self.ahead_path.clone(), self.pos.clone()));
        let (file, path, closed) = (self.file.clone(), self.path.clone(), self.closed.clone());
        blocking("write", move || {
            let closed = closed.read().unwrap_or_else(|p| p.into_inner());
            if *closed {
                return Err(StoreError::Task { op: "write ahead", detail: "the upload has ended".into() });
            }
            if let Some((ahead, pos)) = mark {
                let prefix = pos.load(Ordering::Acquire);
                fs::write(&ahead, prefix.to_string()).map_err(io("write", &ahead))?;
            }
            file.write_all_at(&data, offset).map_err(io("write", &path))
        })
        .await
    }
}
