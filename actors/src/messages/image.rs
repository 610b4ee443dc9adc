//! Messages to an `ImageActor`: manifests, blobs and tag lists a cache hit could not answer, the retirement sweep,
//! and what its own spawned fetches report back.

use actix::Message;
use bytes::Bytes;

use crate::claim::BlobClaim;
use crate::digest::Digest;
use crate::error::MirrorError;
use crate::reference::Reference;
use crate::store::ManifestMeta;
use crate::transfer::Transfer;

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
