//! Messages to the `CacheActor`: claims, commits and releases of blobs, manifests and references, room, pruning,
//! imports, invalidation, damage, adoption, the access-time flush and the start-up load. Its payload types live
//! here too (`Release`, `Room`, `ImportError`, `Fault`; the prune request and report in `prune`), so the cache
//! imports its messages and the messages never import the cache.

use actix::Message;
use bytes::Bytes;

use super::prune::{PruneReport, PruneRequest};
use crate::claim::ClaimReply;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::reference::{ImageKey, Reference};
use crate::store::{Inventory, ManifestMeta, RefKey, RefRecord, StoredObject, VerifiedBlob, Version};
use crate::transfer::Transfer;

/// Image actor -> `CacheActor`: who fetches this blob? The claim table is global, so two repositories pulling the
/// same digest share one fetch. Replies with the lead or the claim.
#[derive(Message)]
#[rtype(result = "ClaimReply")]
pub struct ClaimBlob {
    /// The blob.
    pub digest: Digest,
}

/// Blob leader -> `CacheActor`: the bytes are complete, verified and durable; publish them. Replies with the
/// committed size, or the storage error (the bytes were still good for the clients reading them).
#[derive(Message)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct CommitBlob {
    /// The verified blob.
    pub blob: VerifiedBlob,
}

/// Why a blob's claim ends without a commit.
#[derive(Debug)]
pub enum Release {
    /// The fetch failed (upstream, verification); the next request tries again.
    Failed,
    /// The blob does not fit: later claims pass it through until there is room for `size` bytes.
    TooLarge {
        /// Its size.
        size: u64,
    },
    /// The store failed while writing it.
    Store(StoreError),
    /// The volume filled up while writing it (`size` when known, else 0): the cache evicts to make room, and passes
    /// the blob through only when nothing can go.
    DiskFull {
        /// Its size.
        size: u64,
    },
}

/// Blob leader -> `CacheActor`: the fetch ended without a commit; forget the claim (only if it is still this
/// transfer's). Replies when done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseBlob {
    /// The transfer whose claim ends.
    pub transfer: Transfer,
    /// Why.
    pub cause: Release,
}

/// Preload -> `CacheActor`: reply once the blob is cached (`true`), or once its claim has ended without a commit or
/// when nothing claims it (`false`). The leader settles its readers before the blob is durable and committed, so a
/// reader that must know the blob is kept asks this.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct AwaitBlob {
    /// The blob.
    pub digest: Digest,
}

/// Manifest fetch -> `CacheActor`: store a verified manifest and the reference that named it. Replies with the
/// stored metadata, or the storage error (the caller still serves the bytes it has).
#[derive(Message)]
#[rtype(result = "Result<ManifestMeta, StoreError>")]
pub struct PutManifest {
    /// The repository it was pulled for.
    pub image: ImageKey,
    /// The tag or digest the client asked for.
    pub reference: Reference,
    /// The manifest's digest (verified).
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its bytes, exactly as the upstream sent them.
    pub bytes: Bytes,
}

/// Manifest fetch -> `CacheActor`: a tag resolved (by a HEAD upstream) to a manifest that is already cached; record
/// the tag. Replies with the storage result.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct LinkReference {
    /// The repository.
    pub image: ImageKey,
    /// The tag.
    pub reference: Reference,
    /// The cached manifest it names.
    pub digest: Digest,
}

/// Manifest fetch -> `CacheActor`: the upstream says a cached tag no longer exists, and its cached manifest was served
/// stale; start the tag's `tagTtl` again (its confirmation time only) if it still names `digest`, so the next pulls
/// do not ask again before the TTL runs out. Never changes what the tag names. Replies when done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct KeepGoneTag {
    /// The repository.
    pub image: ImageKey,
    /// The tag.
    pub reference: Reference,
    /// The cached manifest that was served for it.
    pub digest: Digest,
}

/// Blob leader -> `CacheActor`: the upstream answered with this blob's size; make room for it (evicting under
/// `maxCacheSize`, or on a full volume) before a byte is written. Replies whether to write it or pass it through.
#[derive(Message)]
#[rtype(result = "Room")]
pub struct MakeRoom {
    /// The blob.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Bytes of it already on the volume (resumed from an earlier attempt).
    pub held: u64,
}

/// The cache actor's answer to `MakeRoom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Write it: the room is reserved until its commit or release.
    Granted,
    /// It does not fit, and not enough can be evicted: pass it through uncached.
    TooLarge,
}

/// `Mirror::prune` (the `prune` command, the admin API) -> `CacheActor`: prune now. Replies with what was removed,
/// once the store has removed it.
#[derive(Message)]
#[rtype(result = "PruneReport")]
pub struct Prune {
    /// What to prune.
    pub request: PruneRequest,
}

/// Preload -> `CacheActor`: store a manifest read from an archive (checked here against `digest`) and record
/// `reference` for it. Replies with its metadata, or why not.
#[derive(Message)]
#[rtype(result = "Result<ManifestMeta, ImportError>")]
pub struct ImportManifest {
    /// The repository it is loaded into.
    pub image: ImageKey,
    /// The tag, or its own digest for the platform manifests of an index.
    pub reference: Reference,
    /// Its digest, as the archive names it.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its bytes.
    pub bytes: Bytes,
}

/// Why an imported object was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImportError {
    /// The bytes do not match the digest the archive names.
    #[error("content does not match its digest {expected} (it hashes to {actual})")]
    Mismatch {
        /// The digest named.
        expected: Digest,
        /// The digest of the bytes.
        actual: Digest,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Admin API (through `Mirror`) -> `CacheActor`: forget a reference so its next pull asks the upstream. Replies
/// whether it existed.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct Invalidate {
    /// The reference.
    pub key: RefKey,
}

/// What is wrong with a stored object that a reader found.
#[derive(Debug, Clone)]
pub enum Fault {
    /// It is not in the store.
    Missing,
    /// Its bytes do not match its digest.
    Corrupt,
    /// It has `found` bytes where the index says `expected`.
    WrongSize {
        /// Size in the store.
        found: u64,
        /// Size in the index.
        expected: u64,
    },
    /// The store could not open or read it.
    Unreadable(String),
    /// Its stored copy changed in place after it was verified (found while it was served, or before a range of it
    /// was): its bytes can no longer be trusted.
    Changed,
}

/// Front door, scrub or a verifying reader -> `CacheActor`: a stored object is damaged. The actor un-indexes it and
/// moves it aside, so the next request fetches it again. Replies once the index no longer has it (the reporting
/// request then fetches the object itself).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReportDamage {
    /// The blob or manifest.
    pub object: StoredObject,
    /// What is wrong.
    pub fault: Fault,
    /// The version of the bytes found damaged, when known (a blob committed again meanwhile is left alone).
    pub version: Option<Version>,
}

/// A verifying reader or the scrub -> `CacheActor`: this version of a blob's bytes matches its digest. A notice
/// (`do_send`): if it is lost, the blob is only hashed again on its next full read.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BlobVerified {
    /// The blob.
    pub digest: Digest,
    /// The version that was hashed.
    pub version: Version,
}

/// Front door or fetch -> `CacheActor` (`send`): an object the index lacks is in the store (another replica stored
/// it); index it so it is served from there.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Adopt {
    /// A committed blob (its bytes are verified when first served).
    Blob {
        /// Its digest.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The version of the stored copy.
        version: Version,
    },
    /// A manifest, verified against its digest.
    Manifest {
        /// Its metadata.
        meta: ManifestMeta,
        /// Its bytes (for the image graph).
        bytes: Bytes,
    },
    /// A reference record whose manifest is indexed (adopted first).
    Record(RefRecord),
}

/// Shutdown (through `Mirror`) -> `CacheActor`: record pending access times now. Replies when written.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

/// The start-up load (`cache/load.rs`) -> `CacheActor` (`send`, for backpressure): a batch of what the store's scan
/// found, to index unless the actor changed those objects since start.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Loaded(pub Inventory);

/// The start-up load -> `CacheActor` (`send`): the scan is over; the index now holds everything stored. Carries how
/// long the scan took.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct LoadDone(pub std::time::Duration);
