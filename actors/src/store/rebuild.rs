//! Rebuilding the index from disk at start, and the background scrub of blob contents.
//!
//! Rules: anything in `tmp/` is a write that never committed and is deleted; a file under a final path whose name
//! is not a valid digest, whose bytes do not match its name (manifests are checked at start, blobs by the scrub
//! right after), or a reference record that cannot be parsed is moved to `quarantine/` with one log line; a
//! reference whose manifest is missing is deleted. Start-up never fails because of a bad entry.

use std::fs;
use std::io::Read;
use std::path::Path;

use crate::digest::{Digest, DigestAlgorithm, Digester};
use crate::store::{ManifestMeta, RefRecord, Store};

/// What the rebuild found.
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
    /// Files moved to quarantine.
    pub quarantined: usize,
}

const ALGORITHMS: [DigestAlgorithm; 2] = [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512];

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

impl Store {
    fn quarantine(&self, path: &Path, why: &str, report: &mut RebuildReport) {
        let name = path
            .strip_prefix(self.layout.root())
            .map(|p| p.to_string_lossy().replace('/', "_"))
            .unwrap_or_else(|_| "unknown".into());
        let dest = self.layout.quarantine_dir().join(format!("{name}.{:08x}", rand::random::<u32>()));
        match fs::rename(path, &dest) {
            Ok(()) => {
                tracing::warn!(file = %path.display(), moved_to = %dest.display(), "quarantined cache file: {why}")
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot quarantine cache file ({why}); deleting it");
                let _ = fs::remove_file(path);
            }
        }
        report.quarantined += 1;
    }

    /// Rebuild the index from disk (blocking). See the module documentation.
    pub fn rebuild(&self) -> RebuildReport {
        let mut report = RebuildReport::default();
        if let Ok(entries) = fs::read_dir(self.layout.tmp_dir()) {
            for entry in entries.flatten() {
                let path = entry.path();
                tracing::info!(file = %path.display(), "removing unfinished write left by an earlier run");
                let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
                report.partial_removed += 1;
            }
        }
        for alg in ALGORITHMS {
            let dir = self.layout.blobs_dir().join(alg.as_str());
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let parsed: Option<Digest> = format!("{}:{name}", alg.as_str()).parse().ok();
                match (parsed, entry.metadata()) {
                    (Some(digest), Ok(meta)) if meta.is_file() => {
                        report.blobs += 1;
                        report.blob_bytes += meta.len();
                        self.index.insert_blob(digest, meta.len());
                    }
                    _ => self.quarantine(&path, "not a blob file named by its digest", &mut report),
                }
            }
            let dir = self.layout.manifests_dir().join(alg.as_str());
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".type") {
                    continue;
                }
                let Some(digest) = format!("{}:{name}", alg.as_str()).parse::<Digest>().ok() else {
                    self.quarantine(&path, "not a manifest file named by its digest", &mut report);
                    continue;
                };
                let bytes = match fs::read(&path) {
                    Ok(b) => b,
                    Err(e) => {
                        self.quarantine(&path, &format!("unreadable: {e}"), &mut report);
                        continue;
                    }
                };
                if Digest::of(alg, &bytes) != digest {
                    self.quarantine(&path, "content does not match its digest", &mut report);
                    continue;
                }
                let media_type = fs::read_to_string(self.layout.manifest_type(&digest))
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| media_type_of(&bytes));
                self.index.insert_manifest(ManifestMeta { digest, media_type, size: bytes.len() as u64 });
                report.manifests += 1;
            }
        }
        for shard in fs::read_dir(self.layout.refs_dir()).into_iter().flatten().flatten() {
            for entry in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                let path = entry.path();
                let record = fs::read(&path).ok().and_then(|b| serde_json::from_slice::<RefRecord>(&b).ok());
                let Some(record) = record else {
                    self.quarantine(&path, "unreadable reference record", &mut report);
                    continue;
                };
                if self.layout.reference(&record.key()) != path {
                    self.quarantine(&path, "reference record under the wrong name", &mut report);
                    continue;
                }
                if self.index.manifest(&record.digest).is_none() {
                    tracing::warn!(file = %path.display(), reference = %record.key(), "removing reference to a missing manifest");
                    let _ = fs::remove_file(&path);
                    continue;
                }
                self.index.insert_ref(record.key(), record);
                report.refs += 1;
            }
        }
        report
    }

    /// Verify every blob's bytes against its name (blocking; run in the background after start). A mismatching
    /// blob leaves the index and goes to quarantine, so the next request fetches it again. Returns how many were bad.
    pub fn scrub_blobs(&self) -> usize {
        let mut report = RebuildReport::default();
        for alg in ALGORITHMS {
            let dir = self.layout.blobs_dir().join(alg.as_str());
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let Ok(digest) = format!("{}:{}", alg.as_str(), entry.file_name().to_string_lossy()).parse::<Digest>()
                else {
                    continue;
                };
                match hash_file(&path, alg) {
                    Ok(actual) if actual == digest => {}
                    Ok(_) => {
                        self.index.remove_blob(&digest);
                        self.quarantine(&path, "content does not match its digest", &mut report);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        self.index.remove_blob(&digest);
                        self.quarantine(&path, &format!("unreadable: {e}"), &mut report);
                    }
                }
            }
        }
        report.quarantined
    }
}

fn hash_file(path: &Path, alg: DigestAlgorithm) -> std::io::Result<Digest> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Digester::new(alg);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}
