//! The `.type` object beside a manifest, for every backend: read without trusting it (a filesystem backend reads
//! nothing but a regular file, opened without waiting), judged against the manifest's content
//! (`store::mediatype`), and repaired: a type that contradicts the content, or is no manifest type at all, is moved
//! to `quarantine/` (if it is still the copy read) and the content's type written in its place; a missing one is
//! written. A manifest whose content fits no known type and that has no valid `.type` is damaged: both are moved
//! aside, and the next pull fetches it again. This runs wherever a `.type` is read from the store: the start-up scan,
//! and a lookup while the index loads. Cached manifests are served from the index, which holds the checked type;
//! nothing here is on that path. Replicas sharing a bucket judge the same content-addressed bytes the same way, so
//! repairs by two at once agree.

use crate::digest::Digest;
use crate::error::StoreError;
use crate::store::backend::Backend;
use crate::store::keys;
use crate::store::mediatype::{self, ManifestType, Verdict};
use crate::store::records::Version;

/// The longest `.type` read: every manifest type's name is far shorter.
const MAX_TYPE_LEN: u64 = 255;

/// What the check of a manifest's `.type` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// The manifest's type, as served from now on; `quarantined`: a wrong `.type` was moved aside.
    Type { media_type: ManifestType, quarantined: bool },
    /// Neither the content nor the `.type` says what the manifest is; both were moved aside (`quarantined` of them).
    Damaged { quarantined: usize },
}

/// The `.type` as kept (its text, or why it has none that could be a type) with the version of the copy read;
/// `None` when there is none. Read through `get`, off the caller's thread (the scan runs beside the cache actor).
async fn kept<B: Backend>(backend: &B, key: &str) -> Option<(String, Option<Version>)> {
    match backend.get(key).await {
        Ok(None) => None,
        Ok(Some((bytes, version))) if bytes.len() as u64 > MAX_TYPE_LEN => {
            Some((format!("({} bytes: too long for a media type)", bytes.len()), Some(version)))
        }
        Ok(Some((bytes, version))) => Some((String::from_utf8_lossy(&bytes).trim().to_string(), Some(version))),
        // Not a regular file, or unreadable: judged as no type, moved aside whatever its version.
        Err(e) => Some((format!("(unreadable: {e})"), None)),
    }
}

/// Check (and repair) the `.type` of the manifest `digest`, whose verified bytes are `bytes` and were read from the
/// copy `version`. See the module documentation.
pub(crate) async fn check<B: Backend>(
    backend: &B,
    digest: &Digest,
    bytes: &[u8],
    version: Version,
) -> Result<Checked, StoreError> {
    let key = keys::manifest_type(digest);
    let found = kept(backend, &key).await;
    match mediatype::check(found.as_ref().map(|(text, _)| text.as_str()), bytes) {
        Verdict::Agrees(media_type) => Ok(Checked::Type { media_type, quarantined: false }),
        Verdict::Missing(media_type) => {
            rewrite(backend, &key, digest, media_type).await;
            Ok(Checked::Type { media_type, quarantined: false })
        }
        Verdict::Wrong { kept, content } => {
            let type_version = found.and_then(|(_, v)| v);
            let why = format!("media type {kept:?} does not fit the manifest {digest}, which is a {content}");
            // Changed since it was read: the store wrote it again meanwhile (with a type that fits), left alone.
            let quarantined = move_aside(backend, &key, type_version, &why).await?;
            if quarantined {
                rewrite(backend, &key, digest, content).await;
            }
            Ok(Checked::Type { media_type: content, quarantined })
        }
        Verdict::Unknown => {
            let why = format!("the manifest {digest} fits no known manifest type, and its media type file names none");
            let manifest = keys::manifest(digest);
            let mut quarantined = usize::from(move_aside(backend, &manifest, Some(version), &why).await?);
            if quarantined > 0 && found.is_some() {
                quarantined += usize::from(move_aside(backend, &key, None, &why).await?);
            }
            Ok(Checked::Damaged { quarantined })
        }
    }
}

/// Move `key` aside (if still `version`), with one log line when it was.
pub(crate) async fn move_aside<B: Backend>(
    backend: &B,
    key: &str,
    version: Option<Version>,
    why: &str,
) -> Result<bool, StoreError> {
    let aside = keys::quarantine(key);
    let moved = backend.quarantine(key, version, &aside).await?;
    if moved {
        tracing::warn!(store = %backend.location(), object = %key, moved_to = %aside, "quarantined: {why}");
    }
    Ok(moved)
}

/// Write the type the content says; a store that cannot be written keeps serving the checked type from memory.
async fn rewrite<B: Backend>(backend: &B, key: &str, digest: &Digest, media_type: ManifestType) {
    match backend.put(key, media_type.as_str().as_bytes().to_vec().into(), true).await {
        Ok(()) => {
            tracing::info!(manifest = %digest, media_type = %media_type, "wrote the manifest's media type from its content")
        }
        Err(e) => tracing::warn!(manifest = %digest, error = %e, "cannot write the manifest's media type"),
    }
}
