//! Every message the actors exchange, in one place. Each names its sender and its reply.
//!
//! Rules: `send().await` for anything that needs a reply or backpressure, and for every reply a waiter depends on;
//! `do_send` only for notices we can afford to lose (each such use says why). Handlers never block: long work runs as
//! a spawned future that reports back by message.

use std::sync::Arc;

use actix::Message;
use bytes::Bytes;

use crate::body::Body;
use crate::claim::{BlobClaim, ClaimReply};
use crate::digest::Digest;
use crate::error::{MirrorError, StoreError, UpstreamError};
use crate::reference::{ImageKey, Reference};
use crate::store::{Inventory, ManifestMeta, RefKey, RefRecord, StoredObject, VerifiedBlob, Version};
use crate::transfer::Transfer;
use crate::upstream::Upstream;

// ---------------------------------------------------------------------------------------------------------------
// To the upstream pool
// ---------------------------------------------------------------------------------------------------------------

/// Fetch leader or front door -> `UpstreamPool`: send one GET or HEAD to an upstream. Replies with the response head
/// and a channel carrying the body, or the failure. 200, 206 and 404 are answers; other statuses are errors.
#[derive(Message)]
#[rtype(result = "Result<UpstreamResponse, UpstreamError>")]
pub struct Fetch {
    /// Which registry.
    pub upstream: Arc<Upstream>,
    /// Path and query below the registry's base URL, e.g. `/v2/library/alpine/manifests/3.20`.
    pub path: String,
    /// HEAD instead of GET.
    pub head: bool,
    /// The `Accept` header to send, if any.
    pub accept: Option<&'static str>,
    /// The auth scope the request needs (`repository:<name>:pull`), for bearer tokens.
    pub scope: Option<String>,
    /// Ask for the body from this offset on (`Range: bytes=N-`), to resume a broken transfer.
    pub range_from: Option<u64>,
    /// With `range_from`: only if the object is still this one (`If-Range`, the `ETag` of the earlier attempt).
    pub if_range: Option<String>,
    /// The response head must arrive within this (retries included) instead of `pullTimeout`: a revalidation
    /// answers within `revalidateTimeout`, and gives up a retry it has no time for.
    pub deadline: Option<std::time::Duration>,
    /// A request to another replica (`X-Ociregistry-Peer`), which fetches from its upstream and never forwards.
    pub peer: bool,
}

/// The head of an upstream response plus its body channel.
#[derive(Debug)]
pub struct UpstreamResponse {
    /// HTTP status: 200, 206 or 404.
    pub status: u16,
    /// `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// `Content-Length`, if sent.
    pub content_length: Option<u64>,
    /// `Docker-Content-Digest`, if sent (unparsed).
    pub docker_digest: Option<String>,
    /// `Link`, if sent (a tag list's next page).
    pub link: Option<String>,
    /// `ETag`, if sent (the validator a resumed download sends back in `If-Range`).
    pub etag: Option<String>,
    /// The body, pumped by the pool.
    pub body: Body,
}

// ---------------------------------------------------------------------------------------------------------------
// To the cache actor
// ---------------------------------------------------------------------------------------------------------------

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
#[rtype(result = "crate::cache::PruneReport")]
pub struct Prune {
    /// What to prune.
    pub request: crate::cache::PruneRequest,
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

// ---------------------------------------------------------------------------------------------------------------
// To an image actor
// ---------------------------------------------------------------------------------------------------------------

/// Front door -> `ImageActor`: a manifest that is not in the index. Replies once the single upstream fetch for this
/// reference has finished, with the manifest and its bytes.
#[derive(Message, Clone)]
#[rtype(result = "Result<ManifestReply, MirrorError>")]
pub struct GetManifest {
    /// The tag or digest.
    pub reference: Reference,
    /// The cached manifest of a tag whose `tagTtl` ran out: revalidate it (and serve it if the check fails).
    pub cached: Option<ManifestMeta>,
    /// The reference is the referrers tag (`sha256-<hex>`) of this subject: ask the upstream's referrers API first,
    /// and fall back to the tag.
    pub referrers_of: Option<Digest>,
    /// Asked by another replica: a fetch it starts goes to the upstream, never to a peer (no forwarding loops).
    pub from_peer: bool,
}

/// Where a manifest reply's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestOrigin {
    /// Fetched from the upstream now.
    Upstream,
    /// From the cache, the upstream having just confirmed the tag.
    Confirmed,
    /// From the cache, unconfirmed: the check failed for this reason.
    Stale(crate::freshness::StaleReason),
}

/// A manifest as pulled.
#[derive(Debug, Clone)]
pub struct ManifestReply {
    /// Its metadata.
    pub meta: ManifestMeta,
    /// Its bytes.
    pub bytes: Bytes,
    /// Where they come from.
    pub origin: ManifestOrigin,
}

/// Front door -> `ImageActor`: a blob that is not in the index. Replies as soon as it is known where the bytes will
/// come from (before they have arrived).
#[derive(Message, Clone)]
#[rtype(result = "Result<BlobClaim, MirrorError>")]
pub struct GetBlob {
    /// The blob.
    pub digest: Digest,
    /// Asked by another replica: if this request leads the fetch, it goes to the upstream, never to a peer.
    pub from_peer: bool,
}

/// Image-actor registry -> `ImageActor`: stop if idle for at least `idle_for` with nothing in flight. Replies
/// whether it stops. A notice (`do_send`): an actor that misses it is asked again by the next sweep.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Retire {
    pub idle_for: std::time::Duration,
}

/// Front door -> `ImageActor`: one page of the repository's tag list (`n`, `last` as the client asked). Replies with
/// the upstream's page (one request for all concurrent askers, remembered for the tag TTL), or the tags known
/// locally when the upstream cannot be asked.
#[derive(Message, Clone)]
#[rtype(result = "Result<TagPage, MirrorError>")]
pub struct GetTags {
    /// At most this many tags.
    pub n: Option<u32>,
    /// Tags after this one.
    pub last: Option<String>,
}

/// One page of a tag list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPage {
    /// The tags, in the upstream's order (lexical for the local list).
    pub tags: Vec<String>,
    /// Whether more follow (the upstream sent a `Link`).
    pub more: bool,
    /// From what the cache knows, not from the upstream.
    pub local: bool,
}

/// Tag-list task -> `ImageActor` (`send`): the page for `query` arrived; answer its waiters.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct TagsFetched {
    pub query: (Option<u32>, Option<String>),
    pub result: Result<TagPage, MirrorError>,
}

/// Manifest fetch task -> `ImageActor` (`send`): the fetch for `reference` ended; answer its waiters.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ManifestFetched {
    pub reference: Reference,
    pub result: Result<ManifestReply, MirrorError>,
}

/// Claim task -> `ImageActor` (`send`): the cache answered the claim for `digest`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct BlobClaimed {
    pub digest: Digest,
    pub result: Result<BlobClaim, MirrorError>,
}

/// Transfer watcher -> `ImageActor`: the transfer for `digest` ended; drop the entry so that later requests go to the
/// index or start a new fetch. A notice (`do_send`): an entry left behind is replaced by the next request, which
/// sees the transfer settled.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct BlobSettled {
    pub digest: Digest,
    pub transfer: Transfer,
}
