//! The start-up scan of a cache directory: what is stored, and what is not fit to be indexed. It runs on a blocking
//! thread while the server already serves, and sends what it finds in batches (`BATCH` objects) for the cache actor
//! to index.
//!
//! Rules: anything in `tmp/` is a write that never committed and is deleted when the store is opened, before anything
//! is served (`remove_unfinished`); a file under a final path whose name is not a valid digest, a manifest whose bytes
//! do not match its name, a manifest's `.type` that does not fit its content (written again from the content, see
//! `type_file`), or a reference record that cannot be parsed (or sits under the wrong name) is moved to
//! `quarantine/` with one log line, if it is still the copy that was found unfit (the cache may have stored it again
//! meanwhile). Reference records are all reported; the cache actor drops those whose manifest is not there. Blob
//! contents are not hashed here (that would make start-up as slow as reading the whole cache): the cache hashes a blob
//! the first time it serves it, and the scrub hashes every blob in the background. Start-up never fails because of a
//! bad entry.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tokio::sync::mpsc;

use super::files::{read_versioned, version_of};
use super::journal;
use super::layout::Layout;
use super::type_file::{self, Checked};
use crate::digest::{Digest, DigestAlgorithm};
use crate::graph::ManifestLinks;
use crate::store::records::{Inventory, ManifestMeta, RefRecord, StoredBlob, StoredManifest, Version};

const ALGORITHMS: [DigestAlgorithm; 2] = [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512];
/// Unfinished blob downloads older than this are deleted at start instead of being resumed.
const PARTIAL_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Objects per batch sent to the cache actor: small enough to keep the scan's own memory low, large enough that the
/// actor's mailbox sees few messages.
const BATCH: usize = 512;

/// Move a file aside into `quarantine/` (deleting it if that fails), with one log line; true when it existed.
pub(super) fn quarantine_file(layout: &Layout, path: &Path, why: &str) -> bool {
    let name = path
        .strip_prefix(layout.root())
        .map(|p| p.to_string_lossy().replace('/', "_"))
        .unwrap_or_else(|_| "unknown".into());
    let dest = layout.quarantine_dir().join(format!("{name}.{:08x}", rand::random::<u32>()));
    match fs::rename(path, &dest) {
        Ok(()) => {
            tracing::warn!(file = %path.display(), moved_to = %dest.display(), "quarantined cache file: {why}");
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot quarantine cache file ({why}); deleting it");
            let _ = fs::remove_file(path);
            true
        }
    }
}

/// Remove what earlier runs left in `tmp/` (blocking; before anything is served). Returns how many.
pub(super) fn remove_unfinished(layout: &Layout) -> usize {
    let mut removed = 0;
    if let Ok(entries) = fs::read_dir(layout.tmp_dir()) {
        for entry in entries.flatten() {
            let path = entry.path();
            // An unfinished blob download is resumed by the next fetch of that blob, unless it is old.
            let name = entry.file_name().to_string_lossy().into_owned();
            let age = entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
            if name.starts_with("partial-") && age.is_some_and(|a| a < PARTIAL_MAX_AGE) {
                if !name.ends_with(".etag") {
                    tracing::info!(file = %path.display(), "keeping an unfinished download to resume");
                }
                continue;
            }
            tracing::info!(file = %path.display(), "removing unfinished write left by an earlier run");
            let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
            removed += 1;
        }
    }
    removed
}

/// Quarantine `path` if it is still the copy of `version` that was found unfit.
pub(super) fn quarantine_unchanged(layout: &Layout, path: &Path, version: Version, why: &str) -> bool {
    match fs::metadata(path) {
        Ok(meta) if version_of(&meta).same(version) => quarantine_file(layout, path, why),
        _ => false,
    }
}

/// Batches on their way to the cache actor.
struct Sender<'a> {
    out: &'a mpsc::Sender<Inventory>,
    batch: Inventory,
    /// The receiver is gone (the server is stopping): scan no further.
    closed: bool,
}

impl Sender<'_> {
    fn full(&self) -> bool {
        self.batch.blobs.len() + self.batch.manifests.len() + self.batch.records.len() >= BATCH
    }

    /// Send the batch if it is full (or `force`); false once nobody listens.
    fn flush(&mut self, force: bool) -> bool {
        if (force || self.full()) && !self.closed {
            let batch = std::mem::take(&mut self.batch);
            self.closed = self.out.blocking_send(batch).is_err();
        }
        !self.closed
    }
}

/// Scan the directory (blocking), sending batches to `out`. See the module documentation.
pub(super) fn scan(layout: &Layout, partial_removed: usize, out: &mpsc::Sender<Inventory>) {
    let mut tx = Sender { out, batch: Inventory::default(), closed: false };
    tx.batch.report.partial_removed = partial_removed;
    for alg in ALGORITHMS {
        if !scan_blobs(layout, alg, &mut tx) {
            return;
        }
    }
    for alg in ALGORITHMS {
        if !scan_manifests(layout, alg, &mut tx) {
            return;
        }
    }
    if !scan_records(layout, &mut tx) {
        return;
    }
    let (access, lines) = journal::read(&layout.access_log());
    tx.batch.access = access;
    tx.batch.report.journal_lines = lines;
    tx.flush(true);
}

fn scan_blobs(layout: &Layout, alg: DigestAlgorithm, tx: &mut Sender<'_>) -> bool {
    let dir = layout.blobs_dir().join(alg.as_str());
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let parsed: Option<Digest> = format!("{}:{name}", alg.as_str()).parse().ok();
        let inv = &mut tx.batch;
        match (parsed, entry.metadata()) {
            (Some(digest), Ok(meta)) if meta.is_file() => {
                inv.report.blobs += 1;
                inv.report.blob_bytes += meta.len();
                inv.blobs.push(StoredBlob {
                    digest,
                    size: meta.len(),
                    stored: meta.mtime(),
                    version: version_of(&meta),
                });
            }
            _ => {
                // Not named by a digest: nothing of this server writes such a name, so nothing races this.
                quarantine_file(layout, &path, "not a blob file named by its digest");
                inv.report.quarantined += 1;
            }
        }
        if !tx.flush(false) {
            return false;
        }
    }
    true
}

fn scan_manifests(layout: &Layout, alg: DigestAlgorithm, tx: &mut Sender<'_>) -> bool {
    let dir = layout.manifests_dir().join(alg.as_str());
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".type") {
            continue;
        }
        let inv = &mut tx.batch;
        let parsed = format!("{}:{name}", alg.as_str()).parse::<Digest>().ok();
        // Only regular files are read: opening anything else (a FIFO) could block the scan for ever.
        let Some(digest) = parsed.filter(|_| entry.file_type().is_ok_and(|t| t.is_file())) else {
            quarantine_file(layout, &path, "not a manifest file named by its digest");
            inv.report.quarantined += 1;
            continue;
        };
        match read_versioned(&path) {
            // Gone since the listing (un-indexed and removed by the cache meanwhile): nothing to index.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                quarantine_file(layout, &path, &format!("unreadable: {e}"));
                inv.report.quarantined += 1;
            }
            Ok((bytes, version)) if Digest::of(alg, &bytes) != digest => {
                if quarantine_unchanged(layout, &path, version, "content does not match its digest") {
                    inv.report.quarantined += 1;
                }
            }
            Ok((bytes, version)) => match type_file::check(layout, &digest, &bytes, version) {
                Checked::Type { media_type, quarantined } => {
                    inv.report.quarantined += usize::from(quarantined);
                    let links = ManifestLinks::parse_or_empty(&bytes);
                    let meta =
                        ManifestMeta { digest, media_type: media_type.as_str().into(), size: bytes.len() as u64 };
                    inv.manifests.push(StoredManifest { meta, links });
                    inv.report.manifests += 1;
                }
                Checked::Damaged { quarantined } => inv.report.quarantined += quarantined,
            },
        }
        if !tx.flush(false) {
            return false;
        }
    }
    true
}

fn scan_records(layout: &Layout, tx: &mut Sender<'_>) -> bool {
    for shard in fs::read_dir(layout.refs_dir()).into_iter().flatten().flatten() {
        for entry in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                quarantine_file(layout, &path, "not a reference record file");
                tx.batch.report.quarantined += 1;
                continue;
            }
            let Ok((bytes, version)) = read_versioned(&path) else {
                continue;
            };
            let inv = &mut tx.batch;
            let Some(record) = serde_json::from_slice::<RefRecord>(&bytes).ok() else {
                if quarantine_unchanged(layout, &path, version, "unreadable reference record") {
                    inv.report.quarantined += 1;
                }
                continue;
            };
            if layout.reference(&record.key()) != path {
                if quarantine_unchanged(layout, &path, version, "reference record under the wrong name") {
                    inv.report.quarantined += 1;
                }
                continue;
            }
            inv.records.push(record);
            inv.report.refs += 1;
            if !tx.flush(false) {
                return false;
            }
        }
    }
    true
}
