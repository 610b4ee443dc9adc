//! Fetching a manifest that is not cached: one GET (after a HEAD for tags, which may find the digest already
//! cached), from the replica that owns its digest when replicas share a store, the digest checked against what was
//! asked or announced, stored with the reference that named it. The leaf fetches: `revalidate`, `referrers` and
//! the dispatcher (`dispatch`) build on them; this file imports none of those.

use actix::Recipient;
use bytes::Bytes;

use super::context::{collect, manifest_path, FetchContext, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES};
use crate::digest::{Digest, DigestAlgorithm};
use crate::error::{MirrorError, UpstreamError};
use crate::messages::{
    Adopt, Fault, Fetch, GetManifest, LinkReference, ManifestOrigin, ManifestReply, PutManifest, ReportDamage,
    UpstreamResponse,
};
use crate::reference::{Named, Reference};
use crate::store::{for_new_manifest, ManifestMeta, ManifestRead, RefKey, StoredObject};

/// The media type to store for a manifest: the upstream's `Content-Type` when it fits the content, else what the
/// content says of itself (`store::mediatype`).
fn manifest_media_type(content_type: Option<&str>, bytes: &[u8]) -> String {
    for_new_manifest(content_type, bytes).as_str().to_string()
}

/// A manifest not cached: from the store (shared with other replicas), from the replica that owns its digest
/// (`routed`: the request came from a client, not from another replica), or from the upstream. With replicas, a tag
/// whose digest a HEAD told is fetched by that digest through `actor` (this repository's image actor), so that it
/// joins the fetch other replicas asked this one for: one upstream GET per manifest across the cluster.
pub(super) async fn fetch_fresh(
    cx: &FetchContext,
    reference: &Reference,
    routed: bool,
    actor: Option<Recipient<GetManifest>>,
) -> Result<ManifestReply, MirrorError> {
    if let Reference::Digest(digest) = reference {
        if let Some(meta) = adopt_manifest(cx, digest).await? {
            if let Some(bytes) = read_cached(cx, &meta).await? {
                return Ok(ManifestReply { meta, bytes, origin: ManifestOrigin::Confirmed });
            }
        }
        if let Some(reply) = from_owner(cx, reference, digest, routed).await? {
            return Ok(reply);
        }
    }
    if let Reference::Tag(_) = reference {
        match head_tag(cx, reference, None).await? {
            TagHead::Missing => return Err(MirrorError::ManifestUnknown(Named(&cx.image, reference).to_string())),
            TagHead::Names(digest) => {
                if let Some(reply) = link_cached(cx, reference, &digest).await? {
                    return Ok(reply);
                }
                if let Some(actor) = actor.filter(|_| cx.cluster.is_some()) {
                    return by_digest(cx, reference, digest, routed, actor).await;
                }
            }
            TagHead::Unknown => {}
        }
    }
    get_manifest(cx, reference, None).await
}

/// A tag's manifest fetched by its `digest` through the image actor (coalesced with every other ask for that digest,
/// routed to the replica that owns it), then recorded under the tag.
async fn by_digest(
    cx: &FetchContext,
    reference: &Reference,
    digest: Digest,
    routed: bool,
    actor: Recipient<GetManifest>,
) -> Result<ManifestReply, MirrorError> {
    let ask = GetManifest {
        reference: Reference::Digest(digest.clone()),
        cached: None,
        referrers_of: None,
        from_peer: !routed,
    };
    let reply = actor.send(ask).await??;
    let link = LinkReference { image: cx.image.clone(), reference: reference.clone(), digest };
    if let Ok(Err(e)) = cx.cache.send(link).await {
        tracing::warn!(error = %e, "cannot record tag {}", Named(&cx.image, reference));
    }
    Ok(reply)
}

/// With replicas sharing a store, the manifest `digest` from the replica that owns it (which fetches it from the
/// upstream once for the whole cluster), verified and stored under `reference`. `None`: this replica is the owner,
/// or no replica ahead of it answered; the upstream is asked.
pub(super) async fn from_owner(
    cx: &FetchContext,
    reference: &Reference,
    digest: &Digest,
    routed: bool,
) -> Result<Option<ManifestReply>, MirrorError> {
    let Some(cluster) = cx.cluster.as_ref().filter(|_| routed) else {
        return Ok(None);
    };
    let by_digest = Reference::Digest(digest.clone());
    let path = format!("{}?ns={}", manifest_path(&cx.image, &by_digest), cx.image.ns());
    for peer in cluster.owners(digest).into_iter().take_while(|peer| !cluster.is_me(peer)) {
        let fetch = Fetch {
            upstream: cluster.peer(&peer),
            path: path.clone(),
            head: false,
            accept: Some(MANIFEST_ACCEPT),
            scope: None,
            range_from: None,
            range_end: None,
            range_suffix: None,
            if_range: None,
            deadline: None,
            peer: true,
        };
        match cx.pool.send(fetch).await? {
            Ok(resp) if resp.status == 200 => {
                tracing::info!("manifest {} from replica {peer}", Named(&cx.image, reference));
                return accept_manifest(cx, reference, Some(digest), resp, &peer).await.map(Some);
            }
            Ok(resp) => tracing::warn!("replica {peer} answered {} for manifest {digest}", resp.status),
            Err(e) => tracing::warn!(error = %e, "replica {peer} could not give manifest {digest}"),
        }
    }
    Ok(None)
}

/// What a HEAD of a tag said.
pub(super) enum TagHead {
    /// It names this digest.
    Names(Digest),
    /// 404.
    Missing,
    /// No digest in the answer (or a registry that does not answer HEAD properly): a GET will tell.
    Unknown,
}

/// HEAD a tag upstream (a HEAD does not count against Docker Hub's pull limit), its head due within `deadline`
/// when given.
pub(super) async fn head_tag(
    cx: &FetchContext,
    reference: &Reference,
    deadline: Option<std::time::Duration>,
) -> Result<TagHead, MirrorError> {
    let path = manifest_path(&cx.image, reference);
    let resp = match cx.request_within(path, true, Some(MANIFEST_ACCEPT), None, deadline).await {
        Ok(resp) => resp,
        // A registry that does not answer HEAD properly (405, 400, 501) still gets the GET; a failing one does not.
        Err(MirrorError::Upstream(UpstreamError::Status { status, .. })) if status < 500 || status == 501 => {
            return Ok(TagHead::Unknown)
        }
        Err(e) => return Err(e),
    };
    if resp.status == 404 {
        return Ok(TagHead::Missing);
    }
    Ok(resp.docker_digest.and_then(|d| d.parse::<Digest>().ok()).map_or(TagHead::Unknown, TagHead::Names))
}

/// When `digest` is cached (and intact), record that `reference` names it and answer from the cache. `None`: the
/// manifest must be fetched.
pub(super) async fn link_cached(
    cx: &FetchContext,
    reference: &Reference,
    digest: &Digest,
) -> Result<Option<ManifestReply>, MirrorError> {
    let Some(meta) = adopt_manifest(cx, digest).await? else {
        return Ok(None);
    };
    let Some(bytes) = read_cached(cx, &meta).await? else {
        return Ok(None);
    };
    let link = LinkReference { image: cx.image.clone(), reference: reference.clone(), digest: meta.digest.clone() };
    if let Ok(Err(e)) = cx.cache.send(link).await {
        tracing::warn!(error = %e, "cannot record tag {}", Named(&cx.image, reference));
    }
    tracing::info!("tag confirmed by HEAD, served from cache: \"{}\" -> {}", Named(&cx.image, reference), meta.digest);
    Ok(Some(ManifestReply { meta, bytes, origin: ManifestOrigin::Confirmed }))
}

/// A manifest's metadata from the index, or, with a store shared with other replicas, from the store (verified, then
/// indexed): one replica's fetch serves them all.
async fn adopt_manifest(cx: &FetchContext, digest: &Digest) -> Result<Option<ManifestMeta>, MirrorError> {
    if let Some(meta) = cx.store.index().manifest(digest) {
        return Ok(Some(meta));
    }
    if !cx.shared {
        return Ok(None);
    }
    let key = RefKey { image: cx.image.clone(), reference: Reference::Digest(digest.clone()) };
    let Ok(Some((meta, bytes))) = cx.store.lookup_manifest(&key).await else {
        return Ok(None);
    };
    cx.cache.send(Adopt::Manifest { meta: meta.clone(), bytes }).await?;
    Ok(Some(meta))
}

/// A cached manifest's bytes, verified; a missing or damaged one is reported (and `None`).
pub(super) async fn read_cached(cx: &FetchContext, meta: &ManifestMeta) -> Result<Option<Bytes>, MirrorError> {
    match cx.store.read_manifest(&meta.digest).await {
        Ok(ManifestRead::Found(bytes)) => Ok(Some(bytes)),
        Ok(found) => {
            let fault = if matches!(found, ManifestRead::Missing) { Fault::Missing } else { Fault::Corrupt };
            let report = ReportDamage { object: StoredObject::Manifest(meta.digest.clone()), fault, version: None };
            cx.cache.send(report).await?;
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read cached manifest {}; fetching it again", meta.digest);
            Ok(None)
        }
    }
}

/// GET a manifest, verify it, store it with the reference; its response head due within `deadline` when given.
pub(super) async fn get_manifest(
    cx: &FetchContext,
    reference: &Reference,
    deadline: Option<std::time::Duration>,
) -> Result<ManifestReply, MirrorError> {
    let name = cx.name();
    tracing::info!("pulling manifest from upstream: \"{}\"", Named(&cx.image, reference));
    let path = manifest_path(&cx.image, reference);
    let resp = cx.request_within(path, false, Some(MANIFEST_ACCEPT), None, deadline).await?;
    if resp.status == 404 {
        return Err(MirrorError::ManifestUnknown(Named(&cx.image, reference).to_string()));
    }
    cx.metrics.upstream_pulls_by_ns.with_label_values(&[&name]).inc();
    let wanted = match reference {
        Reference::Digest(digest) => Some(digest),
        Reference::Tag(_) => None,
    };
    accept_manifest(cx, reference, wanted, resp, &name).await
}

/// Read a manifest response (from the upstream or another replica, `name`d in errors), check it is `wanted` (or what
/// the response announced), and store it with `reference`.
async fn accept_manifest(
    cx: &FetchContext,
    reference: &Reference,
    wanted: Option<&Digest>,
    resp: UpstreamResponse,
    name: &str,
) -> Result<ManifestReply, MirrorError> {
    let name = name.to_string();
    let content_type = resp.content_type.clone();
    let announced = resp.docker_digest.clone();
    let expected_len = resp.content_length;
    let bytes = collect(&name, resp.body, MAX_MANIFEST_BYTES).await?;
    if let Some(n) = expected_len {
        if n != bytes.len() as u64 {
            return Err(UpstreamError::LengthMismatch { upstream: name, expected: n, got: bytes.len() as u64 }.into());
        }
    }
    let digest = match wanted {
        Some(wanted) => {
            let actual = Digest::of(wanted.algorithm(), &bytes);
            if &actual != wanted {
                return Err(UpstreamError::DigestMismatch { upstream: name, expected: wanted.clone(), actual }.into());
            }
            wanted.clone()
        }
        None => {
            let actual = Digest::sha256_of(&bytes);
            if let Some(announced) = announced.and_then(|d| d.parse::<Digest>().ok()) {
                let check = if announced.algorithm() == DigestAlgorithm::Sha256 {
                    actual.clone()
                } else {
                    Digest::of(announced.algorithm(), &bytes)
                };
                if check != announced {
                    return Err(
                        UpstreamError::DigestMismatch { upstream: name, expected: announced, actual: check }.into()
                    );
                }
            }
            actual
        }
    };
    let media_type = manifest_media_type(content_type.as_deref(), &bytes);
    let put = PutManifest {
        image: cx.image.clone(),
        reference: reference.clone(),
        digest: digest.clone(),
        media_type: media_type.clone(),
        bytes: bytes.clone(),
    };
    let meta = match cx.cache.send(put).await {
        Ok(Ok(meta)) => meta,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "serving manifest {} uncached", digest);
            ManifestMeta { digest, media_type, size: bytes.len() as u64 }
        }
        Err(e) => return Err(e.into()),
    };
    Ok(ManifestReply { meta, bytes, origin: ManifestOrigin::Upstream })
}
