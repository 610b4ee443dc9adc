//! What a local file's metadata says of its bytes (`Stamp`), and the `Version` derived from it: any write,
//! truncation or replacement of the file changes it. Kept by a reader of a committed blob's local file (and by a
//! `FileRange` of it) from the moment it opened it, so that it can tell before the last of the bytes leave whether
//! they may have changed since (`changed`). Used by every backend that keeps objects in local files (the filesystem
//! store, the S3 store's disk tier).

use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;

use crate::store::records::Version;

/// See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub(crate) fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The version these metadata name: the file's device, inode, size, modification and change time.
    pub(crate) fn version(&self) -> Version {
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
    pub(crate) fn changed(&self, file: &File) -> std::io::Result<Option<Version>> {
        let meta = file.metadata()?;
        let now = Stamp::of(&meta);
        let same_bytes = now.dev == self.dev && now.ino == self.ino && now.size == self.size && now.mtime == self.mtime;
        let unchanged = same_bytes && (now.ctime == self.ctime || meta.nlink() == 0);
        Ok((!unchanged).then(|| now.version()))
    }
}

/// A file's version (`Stamp::version` of its metadata).
pub(crate) fn version_of(meta: &fs::Metadata) -> Version {
    Stamp::of(meta).version()
}

/// An open temporary file holding `bytes` (tests of readers and file ranges).
#[cfg(test)]
pub(crate) fn file_of(bytes: &[u8]) -> std::sync::Arc<File> {
    use std::io::Write;
    let mut file = tempfile::tempfile().expect("temp file");
    file.write_all(bytes).expect("write");
    std::sync::Arc::new(file)
}
