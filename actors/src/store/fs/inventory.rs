//! The start-up scan of a cache directory: what is stored, and what is not fit to be indexed.
//!
//! Rules: anything in `tmp/` is a write that never committed and is deleted; a file under a final path whose name is
//! not a valid digest, a manifest whose bytes do not match its name, or a reference record that cannot be parsed (or
//! sits under the wrong name) is moved to `quarantine/` with one log line; a reference whose manifest is missing is
//! deleted. Blob contents are not hashed here (that would make start-up as slow as reading the whole cache): the
//! cache hashes a blob the first time it serves it, and the scrub hashes every blob in the background. Start-up never
//! fails because of a bad entry.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::files::version_of;
use super::journal;
use super::layout::Layout;
use crate::digest::{Digest, DigestAlgorithm};
use crate::graph::ManifestLinks;
use crate::store::records::{Inventory, ManifestMeta, RefRecord, StoredBlob, StoredManifest};

const ALGORITHMS: [DigestAlgorithm; 2] = [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512];
/// Unfinished blob downloads older than this are deleted at start instead of being resumed.
const PARTIAL_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// A manifest's media type from its own `mediaType` field, for entries stored without one.
pub(crate) fn media_type_of(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(Probe { media_type: Some(mt), .. }) => mt,
        Ok(Probe { manifests: Some(_), .. }) => "application/vnd.oci.image.index.v1+json".into(),
        _ => "application/vnd.oci.image.manifest.v1+json".into(),
    }
}

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

/// Scan the directory (blocking). See the module documentation.
pub(super) fn scan(layout: &Layout) -> Inventory {
    let mut inv = Inventory::default();
    if let Ok(entries) = fs::read_dir(layout.tmp_dir()) {
        for entry in entries.flatten() {
            let path = entry.path();
            // An unfinished blob download is resumed by the next fetch of that blob, unless it is old.
            let name = entry.file_name().to_string_lossy().into_owned();
            let age = entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
            if name.starts_with("partial-") && age.is_some_and(|a| a < PARTIAL_MAX_AGE) {
                if !name.ends_with(".etag") {
                    inv.report.partial_kept += 1;
                }
                continue;
            }
            tracing::info!(file = %path.display(), "removing unfinished write left by an earlier run");
            let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
            inv.report.partial_removed += 1;
        }
    }
    let mut manifests = HashSet::new();
    for alg in ALGORITHMS {
        scan_blobs(layout, alg, &mut inv);
        scan_manifests(layout, alg, &mut inv, &mut manifests);
    }
    scan_records(layout, &mut inv, &manifests);
    let (access, _lines) = journal::read(&layout.access_log());
    inv.access = access;
    inv
}

fn scan_blobs(layout: &Layout, alg: DigestAlgorithm, inv: &mut Inventory) {
    let dir = layout.blobs_dir().join(alg.as_str());
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let parsed: Option<Digest> = format!("{}:{name}", alg.as_str()).parse().ok();
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
                quarantine_file(layout, &path, "not a blob file named by its digest");
                inv.report.quarantined += 1;
            }
        }
    }
}

fn scan_manifests(layout: &Layout, alg: DigestAlgorithm, inv: &mut Inventory, found: &mut HashSet<Digest>) {
    let dir = layout.manifests_dir().join(alg.as_str());
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".type") {
            continue;
        }
        let mut bad = |why: &str| {
            quarantine_file(layout, &path, why);
            inv.report.quarantined += 1;
        };
        let Some(digest) = format!("{}:{name}", alg.as_str()).parse::<Digest>().ok() else {
            bad("not a manifest file named by its digest");
            continue;
        };
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                bad(&format!("unreadable: {e}"));
                continue;
            }
        };
        if Digest::of(alg, &bytes) != digest {
            bad("content does not match its digest");
            continue;
        }
        let media_type = fs::read_to_string(layout.manifest_type(&digest))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| media_type_of(&bytes));
        let links = ManifestLinks::parse_or_empty(&bytes);
        found.insert(digest.clone());
        inv.manifests
            .push(StoredManifest { meta: ManifestMeta { digest, media_type, size: bytes.len() as u64 }, links });
        inv.report.manifests += 1;
    }
}

fn scan_records(layout: &Layout, inv: &mut Inventory, manifests: &HashSet<Digest>) {
    for shard in fs::read_dir(layout.refs_dir()).into_iter().flatten().flatten() {
        for entry in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
            let path = entry.path();
            let record = fs::read(&path).ok().and_then(|b| serde_json::from_slice::<RefRecord>(&b).ok());
            let Some(record) = record else {
                quarantine_file(layout, &path, "unreadable reference record");
                inv.report.quarantined += 1;
                continue;
            };
            if layout.reference(&record.key()) != path {
                quarantine_file(layout, &path, "reference record under the wrong name");
                inv.report.quarantined += 1;
                continue;
            }
            if !manifests.contains(&record.digest) {
                tracing::warn!(file = %path.display(), reference = %record.key(), "removing reference to a missing manifest");
                let _ = fs::remove_file(&path);
                continue;
            }
            inv.records.push(record);
            inv.report.refs += 1;
        }
    }
}
