//! The values the store keeps and hands back: what is known of a manifest, reference keys and records, the identity
//! of stored bytes (`Version`), free space (`Capacity`), access times, and the inventory read at start.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::graph::ManifestLinks;
use crate::reference::{ImageKey, Named, Namespace, Reference, RepoName};

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
        Named(&self.image, &self.reference).fmt(f)
    }
}

/// A reference record: which manifest a tag (or a digest pulled through a repository) names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RefRecord {
    /// Upstream namespace.
    pub namespace: Namespace,
    /// Repository.
    pub repository: RepoName,
    /// The tag or digest it was pulled by.
    pub reference: Reference,
    /// The manifest it resolved to.
    pub digest: Digest,
    /// When it was first stored (unix seconds).
    pub created: i64,
    /// When a client last pulled through it (unix seconds), as of the last write of the record.
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

    /// A record of `image:tag` resolving to `digest`, created and pulled at second 1 (tests).
    #[cfg(test)]
    pub(crate) fn of_tag(image: &ImageKey, tag: &str, digest: &Digest) -> RefRecord {
        let reference = tag.parse::<Reference>().expect("tag");
        let (namespace, repository) = (image.ns().clone(), image.repo().clone());
        RefRecord { namespace, repository, reference, digest: digest.clone(), created: 1, pulled: 1 }
    }
}

/// One stored object, as the store names it for removal, quarantine and access times.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StoredObject {
    /// A blob, content-addressed.
    Blob(Digest),
    /// A manifest (with its media type), content-addressed.
    Manifest(Digest),
    /// A reference record.
    Record(RefKey),
}

impl fmt::Display for StoredObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoredObject::Blob(d) => write!(f, "blob {d}"),
            StoredObject::Manifest(d) => write!(f, "manifest {d}"),
            StoredObject::Record(k) => write!(f, "reference {k}"),
        }
    }
}

/// The identity of one stored copy of an object's bytes: it changes whenever the bytes could have changed (the
/// filesystem store derives it from the file's inode and change time; an object store would use its ETag). The
/// cache remembers the version it last verified, so a blob whose version is unchanged is served without hashing it
/// again, and one whose version changed is hashed while it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(pub u64);

impl Version {
    /// Whether two versions name the same bytes (the index keeps one bit of a version for itself).
    pub fn same(self, other: Version) -> bool {
        self.0 & !1 == other.0 & !1
    }
}

/// Free and total bytes where the store keeps its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Bytes that may still be written (for unprivileged users).
    pub free: u64,
    /// Size of the volume.
    pub total: u64,
}

/// When an object was last used, in unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// A blob or a reference record.
    pub object: StoredObject,
    /// Unix seconds.
    pub at: i64,
}

/// A committed blob as found at start.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    /// Its digest (the name it is stored under).
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// When it was stored (unix seconds); the access time until one is recorded.
    pub stored: i64,
    /// The version of the stored bytes.
    pub version: Version,
}

/// A verified manifest as found at start, with what it references.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Digest, media type, size.
    pub meta: ManifestMeta,
    /// The blobs and child manifests it names.
    pub links: ManifestLinks,
}

/// Everything the store holds, or a batch of it, read at start to load the index. Bad entries never make it here: the
/// store moves them aside and counts them in `report`.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Committed blobs.
    pub blobs: Vec<StoredBlob>,
    /// Verified manifests.
    pub manifests: Vec<StoredManifest>,
    /// Reference records (only those whose manifest is present).
    pub records: Vec<RefRecord>,
    /// The last recorded access of each object, where one was recorded.
    pub access: Vec<AccessEntry>,
    /// What the scan found.
    pub report: RebuildReport,
}

#[cfg(test)]
impl Inventory {
    /// Add a later batch of the same scan.
    pub fn absorb(&mut self, batch: Inventory) {
        self.blobs.extend(batch.blobs);
        self.manifests.extend(batch.manifests);
        self.records.extend(batch.records);
        self.access.extend(batch.access);
        self.report.add(&batch.report);
    }
}

/// What the start-up scan found.
#[derive(Debug, Default, Clone)]
pub struct RebuildReport {
    /// Blobs indexed.
    pub blobs: usize,
    /// Total bytes of those blobs.
    pub blob_bytes: u64,
    /// Manifests indexed.
    pub manifests: usize,
    /// Reference records indexed.
    pub refs: usize,
    /// Unfinished temporary files deleted.
    pub partial_removed: usize,
    /// Unfinished blob downloads kept to be resumed.
    pub partial_kept: usize,
    /// Files moved to quarantine.
    pub quarantined: usize,
    /// Lines in the access journal.
    pub journal_lines: usize,
}

impl RebuildReport {
    /// Add a later batch's counts.
    pub fn add(&mut self, other: &RebuildReport) {
        self.blobs += other.blobs;
        self.blob_bytes += other.blob_bytes;
        self.manifests += other.manifests;
        self.refs += other.refs;
        self.partial_removed += other.partial_removed;
        self.quarantined += other.quarantined;
        self.journal_lines += other.journal_lines;
    }
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// Seconds since the epoch, now.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}
