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
use crate::store::{Inventory, ManifestMeta, RefKey, StoredObject, VerifiedBlob, Version};
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
}

/// A manifest as pulled.
#[derive(Debug, Clone)]
pub struct ManifestReply {
    /// Its metadata.
    pub meta: ManifestMeta,
    /// Its bytes.
    pub bytes: Bytes,
}

/// Front door -> `ImageActor`: a blob that is not in the index. Replies as soon as it is known where the bytes will
/// come from (before they have arrived).
#[derive(Message, Clone)]
#[rtype(result = "Result<BlobClaim, MirrorError>")]
pub struct GetBlob {
    /// The blob.
    pub digest: Digest,
}

/// Image-actor registry -> `ImageActor`: stop if idle for at least `idle_for` with nothing in flight. Replies
/// whether it stops. A notice (`do_send`): an actor that misses it is asked again by the next sweep.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Retire {
    pub idle_for: std::time::Duration,
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
