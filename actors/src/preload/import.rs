//! Entering an archive's blobs and manifests into the cache, verified, through the cache actor: a blob is claimed
//! like any fetch (so a client asking for it meanwhile follows this import instead of going upstream), given room
//! (`MakeRoom`), written through the store's hashing writer and committed (`CommitBlob`) only if it matches its
//! digest; a manifest is checked against its digest by the cache actor itself (`ImportManifest`).

use actix::Addr;
use bytes::Bytes;

use super::archive::Entry;
use super::error::{Fault, Object, PreloadError};
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
) -> Result<(), PreloadError> {
    let blob = |fault: Fault| PreloadError::object(Object::Blob(digest.clone()), fault);
    for _ in 0..3 {
        let reply = cache.send(ClaimBlob { digest: digest.clone() }).await.map_err(|e| blob(e.into()))?;
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
                return Err(PreloadError::CannotCache { digest: digest.clone(), reason })
            }
            ClaimReply::Lead(lease) => return lead(cache, store, digest, entry, lease).await,
        }
    }
    Err(PreloadError::GaveUp { digest: digest.clone() })
}

async fn lead(
    cache: &Addr<CacheActor>,
    store: &Store,
    digest: &Digest,
    entry: &Entry,
    lease: Lease,
) -> Result<(), PreloadError> {
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
                Err(PreloadError::object(Object::Blob(digest.clone()), e))
            }
            Err(e) => {
                publisher.settle(Outcome::Failed(MirrorError::Internal(e.to_string())));
                Err(PreloadError::object(Object::Blob(digest.clone()), e))
            }
        },
        Err(Failed { why, outcome, cause }) => {
            publisher.settle(outcome.unwrap_or_else(|| Outcome::Failed(MirrorError::Internal(why.to_string()))));
            let _ = cache.send(ReleaseBlob { transfer, cause }).await;
            Err(why)
        }
    }
}

/// Why a blob's import ended without a commit: the message, what followers are told (a failure unless said), why the
/// claim ends.
struct Failed {
    why: PreloadError,
    outcome: Option<Outcome>,
    cause: Release,
}

/// `digest` failed with `fault`; the claim ends for `cause`.
fn failed(digest: &Digest, fault: impl Into<Fault>, cause: Release) -> Failed {
    Failed { why: PreloadError::object(Object::Blob(digest.clone()), fault), outcome: None, cause }
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
            why: PreloadError::DoesNotFit { digest: digest.clone(), size },
            outcome: Some(Outcome::PassThrough(PassReason::TooLarge { size })),
            cause: Release::TooLarge { size },
        });
    }
    let mut writer = store.begin_blob(digest).await.map_err(|e| failed(digest, e.clone(), Release::Store(e)))?;
    publisher.attach(writer.reader());
    publisher.running(0, Some(size));
    let mut pos = 0u64;
    while pos < size {
        let (part, at) = (entry.clone(), pos);
        let chunk = match tokio::task::spawn_blocking(move || part.read_at(at, CHUNK)).await {
            Ok(Ok(chunk)) if !chunk.is_empty() => chunk,
            Ok(Ok(_)) => return Err(failed(digest, Fault::EndsEarly, Release::Failed)),
            Ok(Err(e)) => return Err(failed(digest, Fault::ReadArchive(e), Release::Failed)),
            Err(e) => return Err(failed(digest, e, Release::Failed)),
        };
        pos += chunk.len() as u64;
        if let Err(e) = writer.append(Bytes::from(chunk)).await {
            let cause = if e.is_disk_full() { Release::DiskFull { size } } else { Release::Store(e.clone()) };
            return Err(failed(digest, e, cause));
        }
        publisher.running(pos, Some(size));
    }
    match writer.finish().await {
        Ok(blob) => Ok(blob),
        Err(FinishError::Mismatch(actual)) => Err(failed(digest, Fault::Mismatch { actual }, Release::Failed)),
        Err(FinishError::Store(e)) => Err(failed(digest, e.clone(), Release::Store(e))),
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
) -> Result<(), PreloadError> {
    let msg = ImportManifest {
        image: image.clone(),
        reference,
        digest: digest.clone(),
        media_type: media_type.to_string(),
        bytes: Bytes::from(bytes),
    };
    match cache.send(msg).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(PreloadError::object(Object::Manifest(digest.clone()), e)),
        Err(e) => Err(PreloadError::object(Object::Manifest(digest.clone()), e)),
    }
}
