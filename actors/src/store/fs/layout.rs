//! Where everything lives under `imagePath`. The one place that turns digests and references into paths.
//!
//! ```text
//! <imagePath>/
//!   .lock                          flock'd while a server uses the directory
//!   blobs/<alg>/<hex>              blob bytes, content-addressed
//!   manifests/<alg>/<hex>          manifest bytes exactly as the upstream sent them
//!   manifests/<alg>/<hex>.type     the manifest's media type (one line)
//!   refs/<xx>/<sha256 of key>.json one record per (namespace, repository, tag or digest) -> manifest digest
//!   access.log                     access times, appended in batches: `b <unix> <digest>`,
//!                                  `r <unix> <namespace> <repository> <tag|digest>`; the last line of an object wins
//!   tmp/                           files being written; emptied at start, except unfinished blob downloads
//!     partial-<alg>-<hex>[.etag]   (resumed by the next fetch of that blob; dropped after a week)
//!   quarantine/                    damaged files moved aside, for inspection
//! ```
//! Every file appears under its final name only by an atomic rename of a complete, fsynced, verified file from
//! `tmp/`, so nothing half-written is ever at a final path.

use std::path::{Path, PathBuf};

use crate::digest::Digest;
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

    /// The lock file.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// Directory of blobs.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Directory of manifests.
    pub fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }

    /// Directory of reference records.
    pub fn refs_dir(&self) -> PathBuf {
        self.root.join("refs")
    }

    /// The access-time journal.
    pub fn access_log(&self) -> PathBuf {
        self.root.join("access.log")
    }

    /// Directory of files being written.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Directory of quarantined files.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// The bytes of an unfinished blob write, kept across attempts and restarts to be resumed.
    pub fn partial(&self, digest: &Digest) -> PathBuf {
        self.tmp_dir().join(format!("partial-{}-{}", digest.algorithm().as_str(), digest.hex()))
    }

    /// The upstream's validator (`ETag`) of an unfinished blob write.
    pub fn partial_validator(&self, digest: &Digest) -> PathBuf {
        self.tmp_dir().join(format!("partial-{}-{}.etag", digest.algorithm().as_str(), digest.hex()))
    }

    /// A blob's final path.
    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.algorithm().as_str()).join(digest.hex())
    }

    /// A manifest's final path.
    pub fn manifest(&self, digest: &Digest) -> PathBuf {
        self.manifests_dir().join(digest.algorithm().as_str()).join(digest.hex())
    }

    /// The file holding a manifest's media type.
    pub fn manifest_type(&self, digest: &Digest) -> PathBuf {
        self.manifests_dir().join(digest.algorithm().as_str()).join(format!("{}.type", digest.hex()))
    }

    /// The record file of a reference. Keys are hashed so that any repository name maps to one flat, safe file name.
    pub fn reference(&self, key: &RefKey) -> PathBuf {
        let hashed = Digest::sha256_of(key.to_string().as_bytes());
        let hex = hashed.hex();
        self.refs_dir().join(&hex[..2]).join(format!("{hex}.json"))
    }

    /// Every directory the store needs.
    pub fn dirs(&self) -> Vec<PathBuf> {
        vec![
            self.root.clone(),
            self.blobs_dir().join("sha256"),
            self.blobs_dir().join("sha512"),
            self.manifests_dir().join("sha256"),
            self.manifests_dir().join("sha512"),
            self.refs_dir(),
            self.tmp_dir(),
            self.quarantine_dir(),
        ]
    }
}
