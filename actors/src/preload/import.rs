//! Entering an archive's blobs and manifests into the cache, verified, through the cache actor: a blob is claimed
//! like any fetch (so a client asking for it meanwhile follows this import instead of going upstream), given room
//! (`MakeRoom`), written through the store's hashing writer and committed (`CommitBlob`) only if it matches its
//! digest; a manifest is checked against its digest by the cache actor itself (`ImportManifest`).

use actix::Addr;
use bytes::Bytes;

use super::archive::Entry;
use crate::cache::CacheActor;
use crate::claim::{BlobClaim, ClaimReply, Lease};
use crate::digest::Digest;
use crate::error::MirrorError;
use crate::messages::{ClaimBlob, CommitBlob, ImportManifest, MakeRoom, Release, ReleaseBlob, Room};
use crate::outcome::{Outcome, PassReason};
use crate::reference::{ImageKey, Reference};
use crate::store::{FinishError, Store, VerifiedBlob};
use crate::transfer::TransferPublisher;

/// Bytes read from the archive and written at once.
const CHUNK: usize = 1024 * 1024;

/// Enter one blob from `entry` (which must hold exactly the blob). Ok when the cache has it afterwards.
pub(crate) async fn import_blob(
    cache: &Addr<CacheActor>,
    store: &Store,
    digest: &Digest,
    entry: &Entry,
) -> Result<(), String> {
    for _ in 0..3 {
        let reply = cache.send(ClaimBlob { digest: digest.clone() }).await.map_err(|e| e.to_string())?;
        match reply {
            ClaimReply::Claim(BlobClaim::Cached) => return Ok(()),
            ClaimReply::Claim(BlobClaim::Follow(transfer)) => {
                // A client's fetch of the same blob is running: its outcome decides.
                if let Outcome::Done { .. } = transfer.outcome().await {
                    if store.index().blob(digest).is_some() {
                        return Ok(());
                    }
                }
            }
            ClaimReply::Claim(BlobClaim::PassThrough(reason)) => {
                return Err(format!("blob {digest} cannot be cached: {reason}"))
            }
            ClaimReply::Lead(lease) => return lead(cache, store, digest, entry, lease).await,
        }
    }
    Err(format!("blob {digest}: gave up after three attempts"))
}

async fn lead(
    cache: &Addr<CacheActor>,
    store: &Store,
    digest: &Digest,
    entry: &Entry,
    lease: Lease,
) -> Result<(), String> {
    let Lease { publisher, transfer } = lease;
    let size = entry.size;
    match write(cache, store, digest, entry, &publisher).await {
        Ok(blob) => match cache.send(CommitBlob { blob }).await {
            Ok(Ok(_)) => {
                publisher.settle(Outcome::Done { size });
                Ok(())
            }
            // The commit ended the claim; the cache lacks the blob.
            Ok(Err(e)) => {
                publisher.settle(Outcome::Failed(MirrorError::Internal(e.to_string())));
                Err(format!("blob {digest}: {e}"))
            }
            Err(e) => {
                publisher.settle(Outcome::Failed(MirrorError::Internal(e.to_string())));
                Err(format!("blob {digest}: {e}"))
            }
        },
        Err(Failed { why, outcome, cause }) => {
            publisher.settle(outcome.unwrap_or_else(|| Outcome::Failed(MirrorError::Internal(why.clone()))));
            let _ = cache.send(ReleaseBlob { transfer, cause }).await;
            Err(why)
        }
    }
}

/// Why a blob's import ended without a commit: the message, what followers are told (a failure unless said), why the
/// claim ends.
struct Failed {
    why: String,
    outcome: Option<Outcome>,
    cause: Release,
}

fn failed(why: String, cause: Release) -> Failed {
    Failed { why, outcome: None, cause }
}

/// Get room, write and verify the blob, publishing progress to followers.
async fn write(
    cache: &Addr<CacheActor>,
    store: &Store,
    digest: &Digest,
    entry: &Entry,
    publisher: &TransferPublisher,
) -> Result<VerifiedBlob, Failed> {
    let size = entry.size;
    if cache.send(MakeRoom { digest: digest.clone(), size, held: 0 }).await != Ok(Room::Granted) {
        return Err(Failed {
            why: format!("blob {digest} ({size} bytes) does not fit in the cache"),
            outcome: Some(Outcome::PassThrough(PassReason::TooLarge { size })),
            cause: Release::TooLarge { size },
        });
    }
    let mut writer =
        store.begin_blob(digest).await.map_err(|e| failed(format!("blob {digest}: {e}"), Release::Store(e)))?;
    publisher.attach(writer.reader());
    publisher.running(0, Some(size));
    let mut pos = 0u64;
    while pos < size {
        let (part, at) = (entry.clone(), pos);
        let chunk = match tokio::task::spawn_blocking(move || part.read_at(at, CHUNK)).await {
            Ok(Ok(chunk)) if !chunk.is_empty() => chunk,
            Ok(Ok(_)) => return Err(failed(format!("blob {digest}: the archive entry ends early"), Release::Failed)),
            Ok(Err(e)) => return Err(failed(format!("blob {digest}: reading the archive: {e}"), Release::Failed)),
            Err(e) => return Err(failed(format!("blob {digest}: {e}"), Release::Failed)),
        };
        pos += chunk.len() as u64;
        if let Err(e) = writer.append(Bytes::from(chunk)).await {
            let cause = if e.is_disk_full() { Release::DiskFull { size } } else { Release::Store(e.clone()) };
            return Err(failed(format!("blob {digest}: {e}"), cause));
        }
        publisher.running(pos, Some(size));
    }
    match writer.finish().await {
        Ok(blob) => Ok(blob),
        Err(FinishError::Mismatch(actual)) => Err(failed(
            format!("blob {digest}: content does not match its digest (it hashes to {actual})"),
            Release::Failed,
        )),
        Err(FinishError::Store(e)) => Err(failed(format!("blob {digest}: {e}"), Release::Store(e))),
    }
}

/// Enter one manifest, verified by the cache actor, recorded as `image:reference`.
pub(crate) async fn import_manifest(
    cache: &Addr<CacheActor>,
    image: &ImageKey,
    reference: Reference,
    digest: &Digest,
    media_type: &str,
    bytes: Vec<u8>,
) -> Result<(), String> {
    let msg = ImportManifest {
        image: image.clone(),
        reference,
        digest: digest.clone(),
        media_type: media_type.to_string(),
        bytes: Bytes::from(bytes),
    };
    match cache.send(msg).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("manifest {digest}: {e}")),
        Err(e) => Err(format!("manifest {digest}: {e}")),
    }
}
