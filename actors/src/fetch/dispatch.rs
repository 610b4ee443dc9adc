//! Which manifest fetch a request gets, as its leader runs it: the referrers index of a subject (`referrers`), the
//! revalidation of a cached tag whose `tagTtl` ran out (`revalidate`, which may serve it stale), or a fetch of a
//! manifest not cached (`manifest`). It stands above all three; none of them imports it.

use actix::Recipient;

use super::context::{FetchContext, InFlight};
use super::manifest::fetch_fresh;
use super::referrers::fetch_referrers;
use super::revalidate::revalidate;
use crate::digest::Digest;
use crate::error::MirrorError;
use crate::messages::{GetManifest, ManifestReply};
use crate::reference::Reference;
use crate::store::ManifestMeta;

/// Fetch, verify and store one manifest; or, with `cached`, revalidate a cached tag; or, with `referrers_of`, the
/// referrers index of a subject (stored under its referrers tag).
pub(crate) async fn fetch_manifest(
    cx: FetchContext,
    reference: Reference,
    cached: Option<ManifestMeta>,
    referrers_of: Option<Digest>,
    routed: bool,
    actor: Recipient<GetManifest>,
) -> Result<ManifestReply, MirrorError> {
    let _running = InFlight::start(&cx.metrics, "manifest");
    let result = match (referrers_of, cached) {
        (Some(subject), cached) => fetch_referrers(&cx, &reference, &subject, cached).await,
        (None, Some(cached)) => revalidate(&cx, &reference, cached, routed).await,
        (None, None) => fetch_fresh(&cx, &reference, routed, Some(actor)).await,
    };
    if let Err(e) = &result {
        cx.count_body_error(e);
    }
    result
}
