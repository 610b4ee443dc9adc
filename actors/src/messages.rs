//! Every message the actors exchange, in one place. Each names its sender and its reply.
//!
//! Rules: `send().await` for anything that needs a reply or backpressure; `do_send` only for notices we can afford
//! to lose. Handlers never block: long work runs as a spawned future that reports back by message.

use std::sync::Arc;

use actix::Message;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::digest::Digest;
use crate::error::{MirrorError, StoreError, UpstreamError};
use crate::reference::{ImageKey, Reference};
use crate::store::{BlobLease, BlobWriter, ManifestMeta};
use crate::transfer::Transfer;
use crate::upstream::Upstream;

// ---------------------------------------------------------------------------------------------------------------
// To the upstream pool
// ---------------------------------------------------------------------------------------------------------------

/// Image actor or front door -> `UpstreamPool`: send one GET or HEAD to an upstream. Replies with the response head
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

/// One event of an upstream body. The channel ends with `End` or an error; a channel that closes without either
/// is a broken transfer.
#[derive(Debug)]
pub enum BodyEvent {
    /// The next bytes.
    Data(Bytes),
    /// The body is complete.
    End,
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
    pub body: mpsc::Receiver<Result<BodyEvent, UpstreamError>>,
}

// ---------------------------------------------------------------------------------------------------------------
// To the cache actor
// ---------------------------------------------------------------------------------------------------------------

/// Image actor -> `CacheActor`: who fetches this blob? Replies with the blob's state in the cache. The claim table
/// is global, so two repositories pulling the same digest share one fetch.
#[derive(Message)]
#[rtype(result = "BlobClaim")]
pub struct ClaimBlob {
    /// The blob.
    pub digest: Digest,
}

/// The answer to `ClaimBlob`.
pub enum BlobClaim {
    /// Already cached, with this size.
    Cached(u64),
    /// Someone is fetching it: follow that transfer.
    Join(Transfer),
    /// You fetch it: write through this lease, then `CommitBlob` or `ReleaseBlob`.
    Lead(Box<BlobLease>),
    /// The cache takes no writes right now (disk full, unwritable): fetch it without caching.
    Uncacheable,
}

/// Blob leader -> `CacheActor`: the writer's bytes are complete and verified; make them durable and visible.
/// Replies with the committed size, or the storage error (the bytes were still good for the clients reading them).
#[derive(Message)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct CommitBlob {
    /// The finished writer.
    pub writer: BlobWriter,
}

/// Blob leader -> `CacheActor`: the fetch failed; forget the claim so the next request tries again. `storage`
/// says whether the disk was at fault (then the cache stops taking writes for a while).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseBlob {
    /// The blob whose claim ends.
    pub digest: Digest,
    /// The transfer that failed (only that claim is removed).
    pub transfer: Transfer,
    /// A storage failure, if that was the cause.
    pub storage: Option<StoreError>,
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

/// Admin API -> `CacheActor`: forget a reference so its next pull asks the upstream. Replies whether it existed.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct Invalidate {
    /// The reference.
    pub key: crate::store::RefKey,
}

// ---------------------------------------------------------------------------------------------------------------
// To an image actor
// ---------------------------------------------------------------------------------------------------------------

/// Front door -> `ImageActor`: a manifest that is not in the index. Replies once the single upstream fetch for this
/// reference has finished, with the manifest and its bytes.
#[derive(Message)]
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
#[derive(Message)]
#[rtype(result = "Result<BlobReply, MirrorError>")]
pub struct GetBlob {
    /// The blob.
    pub digest: Digest,
}

/// Where a blob's bytes come from.
pub enum BlobReply {
    /// From the cache (it was committed meanwhile), with this size.
    Cached(u64),
    /// From a running transfer, followed from byte 0.
    Transfer(Transfer),
    /// The cache takes no writes: the caller fetches it for itself, uncached.
    Uncached,
}

/// Manifest fetch task -> `ImageActor`: the fetch for `reference` ended; answer its waiters.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ManifestFetched {
    pub reference: Reference,
    pub result: Result<ManifestReply, MirrorError>,
}

/// Claim task -> `ImageActor`: the cache answered the claim for `digest`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct BlobClaimed {
    pub digest: Digest,
    pub outcome: Result<ClaimedBlob, MirrorError>,
}

/// What a claim resolved to, as far as the image actor's waiters are concerned.
pub(crate) enum ClaimedBlob {
    Cached(u64),
    Active(Transfer),
    Uncached,
}

/// Transfer watcher -> `ImageActor`: the transfer for `digest` finished (either way); drop the entry so that later
/// requests go to the index or start a new fetch.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct BlobSettled {
    pub digest: Digest,
    pub transfer: Transfer,
}
