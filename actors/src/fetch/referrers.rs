//! Referrers (OCI 1.1): the index of the manifests that name a subject. Asked of the upstream's referrers API first;
//! an upstream without one (404, as distribution 2.8) is asked for the tag-schema fallback, the referrers tag
//! `<alg>-<hex>`; a subject with neither gets an empty index. What is found is stored as a manifest under the
//! referrers tag, so it is served (and revalidated after its TTL, stale on error) like any cached tag.

use bytes::Bytes;

use super::context::{collect, FetchContext, MAX_MANIFEST_BYTES};
use super::manifest::fetch_fresh;
use super::revalidate::{revalidate, serve_stale, stale_reason};
use crate::digest::Digest;
use crate::error::MirrorError;
use crate::graph::ManifestLinks;
use crate::messages::{ManifestOrigin, ManifestReply, PutManifest};
use crate::reference::{Reference, Tag};
use crate::store::ManifestMeta;

/// The media type of a referrers index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The tag of the referrers tag schema: `<alg>-<hex>`, cut to the longest tag allowed.
pub fn referrers_tag(subject: &Digest) -> Option<Tag> {
    let mut tag = format!("{}-{}", subject.algorithm(), subject.hex());
    tag.truncate(crate::reference::MAX_TAG_LEN);
    tag.parse().ok()
}

/// An index with no manifests, for a subject nobody refers to.
pub fn empty_index() -> ManifestReply {
    let bytes = Bytes::from_static(
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
    );
    let meta =
        ManifestMeta { digest: Digest::sha256_of(&bytes), media_type: OCI_INDEX.into(), size: bytes.len() as u64 };
    ManifestReply { meta, bytes, origin: ManifestOrigin::Upstream }
}

/// The referrers index of `subject`, stored under `reference` (its referrers tag).
pub(crate) async fn fetch_referrers(
    cx: &FetchContext,
    reference: &Reference,
    subject: &Digest,
    cached: Option<ManifestMeta>,
) -> Result<ManifestReply, MirrorError> {
    let deadline = cached.as_ref().map(|_| cx.freshness.revalidate_timeout);
    let path = format!("/v2/{}/referrers/{subject}", cx.image.repo());
    let resp = match cx.request_within(path, false, Some(OCI_INDEX), None, deadline).await {
        Ok(resp) => resp,
        Err(e) => {
            return match cached {
                Some(meta) => serve_stale(cx, reference, meta, stale_reason(&e)).await,
                None => Err(e),
            }
        }
    };
    if resp.status != 200 {
        // No referrers API: the tag schema.
        let found = match cached {
            Some(meta) => revalidate(cx, reference, meta, false).await,
            None => fetch_fresh(cx, reference, false, None).await,
        };
        return match found {
            Err(MirrorError::ManifestUnknown(_)) => Ok(empty_index()),
            other => other,
        };
    }
    let bytes = match collect(&cx.name(), resp.body, MAX_MANIFEST_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return match cached {
                Some(meta) => serve_stale(cx, reference, meta, stale_reason(&e.into())).await,
                None => Err(e.into()),
            }
        }
    };
    if ManifestLinks::parse(&bytes).is_err() {
        return Err(MirrorError::Upstream(crate::error::UpstreamError::Broken {
            upstream: cx.name(),
            detail: "the referrers answer is not an index".into(),
        }));
    }
    let digest = Digest::sha256_of(&bytes);
    let put = PutManifest {
        image: cx.image.clone(),
        reference: reference.clone(),
        digest: digest.clone(),
        media_type: OCI_INDEX.into(),
        bytes: bytes.clone(),
    };
    let meta = match cx.cache.send(put).await? {
        Ok(meta) => meta,
        Err(e) => {
            tracing::warn!(error = %e, "serving the referrers of {subject} uncached");
            ManifestMeta { digest, media_type: OCI_INDEX.into(), size: bytes.len() as u64 }
        }
    };
    Ok(ManifestReply { meta, bytes, origin: ManifestOrigin::Upstream })
}
