//! The revalidation of a cached tag whose `tagTtl` ran out: a HEAD within `revalidateTimeout`, then the cached
//! manifest (confirmed), the new one (the tag moved), or the cached one served stale when the check failed for any
//! reason (`stale_reason` names which). A tag the upstream no longer has (`gone`) starts its TTL again when served
//! stale; the other failures leave it run out, so the next pull checks again (the breaker spares an outage that).

use super::context::FetchContext;
use super::manifest::{from_owner, get_manifest, head_tag, link_cached, read_cached, TagHead};
use crate::error::{MirrorError, UpstreamError};
use crate::freshness::StaleReason;
use crate::messages::{KeepGoneTag, ManifestOrigin, ManifestReply};
use crate::reference::{Named, Reference};
use crate::store::{ManifestMeta, RefKey};

/// Why a failed check means serving the cached tag.
pub(super) fn stale_reason(err: &MirrorError) -> StaleReason {
    match err {
        MirrorError::Upstream(e) => match e {
            UpstreamError::HeadTimeout { .. } | UpstreamError::Idle { .. } => StaleReason::Timeout,
            UpstreamError::TooManyRequests { .. } => StaleReason::RateLimited,
            UpstreamError::Status { .. } => StaleReason::ServerError,
            UpstreamError::Unauthorized { .. }
            | UpstreamError::Credentials { .. }
            | UpstreamError::TokenEndpoint { .. } => StaleReason::Auth,
            UpstreamError::CircuitOpen { .. } => StaleReason::BreakerOpen,
            UpstreamError::Connect { .. }
            | UpstreamError::Refused { .. }
            | UpstreamError::Tls { .. }
            | UpstreamError::Broken { .. } => StaleReason::Unreachable,
            UpstreamError::TooLarge { .. }
            | UpstreamError::DigestMismatch { .. }
            | UpstreamError::LengthMismatch { .. } => StaleReason::FetchFailed,
        },
        MirrorError::ManifestUnknown(_) => StaleReason::Gone,
        _ => StaleReason::FetchFailed,
    }
}

/// Revalidate a cached tag: confirmed, moved (fetch the new manifest), or stale when the check fails.
pub(super) async fn revalidate(
    cx: &FetchContext,
    reference: &Reference,
    cached: ManifestMeta,
    routed: bool,
) -> Result<ManifestReply, MirrorError> {
    let within = cx.freshness.revalidate_timeout;
    // The pool gives up within the same deadline with the upstream's own answer (a 429, say); the timeout here also
    // covers waiting for a connection slot.
    let head = tokio::time::timeout(within + within / 4, head_tag(cx, reference, Some(within))).await;
    let moved_to = match head {
        Err(_) => {
            // The pool's request runs on and records its own result; this counts the wait that was cut short.
            cx.upstream.breaker.failure();
            return serve_stale(cx, reference, cached, StaleReason::Timeout).await;
        }
        Ok(Err(e)) => return serve_stale(cx, reference, cached, stale_reason(&e)).await,
        Ok(Ok(TagHead::Missing)) => return serve_stale(cx, reference, cached, StaleReason::Gone).await,
        Ok(Ok(TagHead::Names(digest))) => {
            if let Some(reply) = link_cached(cx, reference, &digest).await? {
                return Ok(reply);
            }
            Some(digest)
        }
        Ok(Ok(TagHead::Unknown)) => None,
    };
    if let Some(new) = &moved_to {
        tracing::info!("tag moved upstream: \"{}\" {} -> {new}", Named(&cx.image, reference), cached.digest);
        match from_owner(cx, reference, new, routed).await {
            Ok(Some(reply)) => return Ok(reply),
            Ok(None) => {}
            Err(e) => return serve_stale(cx, reference, cached, stale_reason(&e)).await,
        }
    }
    match get_manifest(cx, reference, Some(within)).await {
        Ok(reply) => Ok(reply),
        Err(e) => serve_stale(cx, reference, cached, stale_reason(&e)).await,
    }
}

/// Serve the cached manifest of a tag the upstream could not confirm; one it no longer has is not asked about again
/// before its TTL runs out again (a 404 is an answer, so the breaker would not spare the next pulls the check), while
/// it keeps naming the cached manifest.
pub(super) async fn serve_stale(
    cx: &FetchContext,
    reference: &Reference,
    cached: ManifestMeta,
    reason: StaleReason,
) -> Result<ManifestReply, MirrorError> {
    let key = RefKey { image: cx.image.clone(), reference: reference.clone() };
    let Some(bytes) = read_cached(cx, &cached).await? else {
        return Err(MirrorError::Unavailable(Named(&cx.image, reference).to_string()));
    };
    cx.stale.serve(&key, cx.upstream.namespace.as_str(), reason, &cx.metrics);
    if reason == StaleReason::Gone {
        let keep = KeepGoneTag { image: cx.image.clone(), reference: reference.clone(), digest: cached.digest.clone() };
        if let Err(e) = cx.cache.send(keep).await {
            tracing::warn!(error = %e, "cannot restart the TTL of {}", Named(&cx.image, reference));
        }
    }
    Ok(ManifestReply { meta: cached, bytes, origin: ManifestOrigin::Stale(reason) })
}
