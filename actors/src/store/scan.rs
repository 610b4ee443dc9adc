//! The start-up scan, for every backend: what is stored, and what is not fit to be indexed. It runs while the server
//! already serves, and sends what it finds in batches (`BATCH` objects) for the cache actor to index, in this order:
//! blobs, manifests, reference records (also those whose manifest is missing: the cache actor decides), then the
//! access journal. Stops early when the receiver is gone.
//!
//! Rules: an object under `blobs/` or `manifests/` whose name is not a valid digest, or that is not a plain object,
//! a manifest whose bytes do not match its name, a manifest's `.type` that does not fit its content (written again
//! from the content, see `type_check`), or a reference record that cannot be parsed (or sits under the wrong name) is
//! moved to `quarantine/` with one log line, if it is still the copy that was found unfit (the cache may have stored
//! it again meanwhile). On a store shared with other replicas nothing but a `.type` is moved aside on the strength of
//! the scan: what is unfit is only left out. Blob contents are not hashed here (that would make start-up as slow as
//! reading the whole cache): the cache hashes a blob the first time it serves it, and the scrub hashes every blob in
//! the background. Start-up never fails because of a bad entry.

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::digest::Digest;
use crate::graph::ManifestLinks;
use crate::store::backend::{Backend, Listed};
use crate::store::mediatype::ManifestType;
use crate::store::records::{Inventory, ManifestMeta, RefRecord, StoredBlob, StoredManifest};
use crate::store::type_check::{self, move_aside, Checked};
use crate::store::{journal, keys};

/// Objects per batch sent to the cache actor: small enough to keep the scan's own memory low, large enough that the
/// actor's mailbox sees few messages.
const BATCH: usize = 512;

/// Batches on their way to the cache actor.
struct Sender<'a> {
    out: &'a mpsc::Sender<Inventory>,
    batch: Inventory,
}

impl Sender<'_> {
    /// Send the batch if it is full (or `force`); false once nobody listens.
    async fn flush(&mut self, force: bool) -> bool {
        let b = &self.batch;
        if force || b.blobs.len() + b.manifests.len() + b.records.len() >= BATCH {
            return self.out.send(std::mem::take(&mut self.batch)).await.is_ok();
        }
        true
    }
}

/// Scan everything `backend` stores, sending batches to `found`. See the module documentation.
pub(crate) async fn scan<B: Backend>(backend: &B, found: mpsc::Sender<Inventory>) {
    let mut tx = Sender { out: &found, batch: Inventory::default() };
    tx.batch.report.partial_removed = backend.prepare_scan().await;
    for alg in keys::ALGORITHMS {
        if !blobs(backend, &format!("blobs/{}/", alg.as_str()), &mut tx).await {
            return;
        }
    }
    for alg in keys::ALGORITHMS {
        if !manifests(backend, &format!("manifests/{}/", alg.as_str()), &mut tx).await {
            return;
        }
    }
    if !records(backend, &mut tx).await {
        return;
    }
    let (access, lines) = journal::read(backend).await;
    tx.batch.access = access;
    tx.batch.report.journal_lines = lines;
    tx.flush(true).await;
}

/// Move an unfit object aside (unless the store is shared), with one log line: whether it was.
async fn unfit<B: Backend>(backend: &B, listed: &Listed, check_version: bool, why: &str) -> bool {
    if backend.shared() {
        tracing::warn!(store = %backend.location(), object = %listed.key, "left out of the index: {why}");
        return false;
    }
    let version = check_version.then_some(listed.version);
    move_aside(backend, &listed.key, version, why).await.unwrap_or_else(|e| {
        tracing::warn!(object = %listed.key, error = %e, "cannot move an unfit object aside");
        false
    })
}

async fn blobs<B: Backend>(backend: &B, prefix: &str, tx: &mut Sender<'_>) -> bool {
    let mut listing = backend.list(prefix);
    while let Some(listed) = next(backend, &mut listing).await {
        match keys::digest_in(&listed.key).filter(|_| listed.plain) {
            Some(digest) => {
                let (size, stored, version) = (listed.size, listed.stored, listed.version);
                tx.batch.report.blobs += 1;
                tx.batch.report.blob_bytes += size;
                tx.batch.blobs.push(StoredBlob { digest, size, stored, version });
            }
            None => {
                // Not named by a digest: nothing of this server writes such a name, so nothing races this.
                unfit(backend, &listed, false, "not a blob file named by its digest").await;
                tx.batch.report.quarantined += usize::from(!backend.shared());
            }
        }
        if !tx.flush(false).await {
            return false;
        }
    }
    true
}

async fn manifests<B: Backend>(backend: &B, prefix: &str, tx: &mut Sender<'_>) -> bool {
    let mut listing = backend.list(prefix);
    while let Some(listed) = next(backend, &mut listing).await {
        if listed.key.ends_with(".type") {
            continue;
        }
        // Only plain objects are read: opening anything else (a FIFO) could block the scan for ever.
        let Some(digest) = keys::digest_in(&listed.key).filter(|_| listed.plain) else {
            unfit(backend, &listed, false, "not a manifest file named by its digest").await;
            tx.batch.report.quarantined += usize::from(!backend.shared());
            continue;
        };
        let counted = |moved: bool| usize::from(moved);
        match backend.get(&listed.key).await {
            // Gone since the listing (un-indexed and removed by the cache meanwhile): nothing to index.
            Ok(None) => {}
            Err(e) => {
                unfit(backend, &listed, false, &format!("unreadable: {e}")).await;
                tx.batch.report.quarantined += usize::from(!backend.shared());
            }
            Ok(Some((bytes, version))) if Digest::of(digest.algorithm(), &bytes) != digest => {
                let listed = Listed { version, ..listed };
                let moved = unfit(backend, &listed, true, "content does not match its digest").await;
                tx.batch.report.quarantined += counted(moved);
            }
            Ok(Some((bytes, version))) => {
                let media_type = match type_check::check(backend, &digest, &bytes, version).await {
                    Ok(Checked::Type { media_type, quarantined }) => {
                        tx.batch.report.quarantined += counted(quarantined);
                        media_type
                    }
                    Ok(Checked::Damaged { quarantined }) => {
                        tx.batch.report.quarantined += quarantined;
                        continue;
                    }
                    Err(e) => match ManifestType::of_content(&bytes) {
                        Some(t) => {
                            tracing::warn!(manifest = %digest, error = %e, "cannot check the manifest's media type; using its content's");
                            t
                        }
                        None => continue,
                    },
                };
                let links = ManifestLinks::parse_or_empty(&bytes);
                let meta = ManifestMeta { digest, media_type: media_type.as_str().into(), size: bytes.len() as u64 };
                tx.batch.manifests.push(StoredManifest { meta, links });
                tx.batch.report.manifests += 1;
            }
        }
        if !tx.flush(false).await {
            return false;
        }
    }
    true
}

async fn records<B: Backend>(backend: &B, tx: &mut Sender<'_>) -> bool {
    let mut listing = backend.list("refs/");
    while let Some(listed) = next(backend, &mut listing).await {
        if !listed.plain {
            unfit(backend, &listed, false, "not a reference record file").await;
            tx.batch.report.quarantined += usize::from(!backend.shared());
            continue;
        }
        let Ok(Some((bytes, version))) = backend.get(&listed.key).await else {
            continue;
        };
        let listed = Listed { version, ..listed };
        let Some(record) = serde_json::from_slice::<RefRecord>(&bytes).ok() else {
            let moved = unfit(backend, &listed, true, "unreadable reference record").await;
            tx.batch.report.quarantined += usize::from(moved);
            continue;
        };
        if keys::record(&record.key()) != listed.key {
            let moved = unfit(backend, &listed, true, "reference record under the wrong name").await;
            tx.batch.report.quarantined += usize::from(moved);
            continue;
        }
        tx.batch.records.push(record);
        tx.batch.report.refs += 1;
        if !tx.flush(false).await {
            return false;
        }
    }
    true
}

/// The next object listed; a failed listing ends it with a warning (the index is then partial).
async fn next<B: Backend>(
    backend: &B,
    listing: &mut futures_util::stream::BoxStream<'static, Result<Listed, crate::error::StoreError>>,
) -> Option<Listed> {
    match listing.next().await? {
        Ok(listed) => Some(listed),
        Err(e) => {
            tracing::warn!(error = %e, store = %backend.location(), "listing the store failed; the index is partial");
            None
        }
    }
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
