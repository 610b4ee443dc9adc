//! Where everything lives under `imagePath`: each object's key (`store::keys`) joined to the root, plus the
//! directories and files only the filesystem store has.
//!
//! ```text
//! <imagePath>/
//!   .lock                          flock'd while a server uses the directory
//!   blobs/ manifests/ refs/        the objects, named by their keys (`store::keys`)
//!   access.log                     access times, appended in batches (`store::journal`)
//!   tmp/                           files being written; emptied at start, except unfinished blob downloads
//!     partial-<alg>-<hex>[.etag]   (resumed by the next fetch of that blob; dropped after a week)
//!   quarantine/                    damaged files moved aside, for inspection
//! ```
//! Every file appears under its final name only by an atomic rename of a complete, fsynced, verified file from
//! `tmp/`, so nothing half-written is ever at a final path.

use std::path::{Path, PathBuf};

#[cfg(test)]
use crate::digest::Digest;
use crate::store::keys;
#[cfg(test)]
use crate::store::records::RefKey;

/// The directory layout of one cache.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout rooted at `root` (`imagePath`).
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    /// `imagePath` itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of the object `key` (one allocation of the right size: a blob's path is made on every cache hit).
    pub fn path(&self, key: &str) -> PathBuf {
        let mut path = PathBuf::with_capacity(self.root.as_os_str().len() + 1 + key.len());
        path.push(&self.root);
        path.push(key);
        path
    }

    /// The lock file.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// Directory of files being written.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Every directory the store needs.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.root.clone()];
        for top in ["blobs", "manifests"] {
            dirs.extend(keys::ALGORITHMS.iter().map(|alg| self.root.join(top).join(alg.as_str())));
        }
        dirs.extend(["refs", "tmp", "quarantine"].map(|d| self.root.join(d)));
        dirs
    }
}

#[cfg(test)]
impl Layout {
    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.path(&keys::blob(digest))
    }

    pub fn manifest(&self, digest: &Digest) -> PathBuf {
        self.path(&keys::manifest(digest))
    }

    pub fn manifest_type(&self, digest: &Digest) -> PathBuf {
        self.path(&keys::manifest_type(digest))
    }

    pub fn reference(&self, key: &RefKey) -> PathBuf {
        self.path(&keys::record(key))
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantine")
    }
}
