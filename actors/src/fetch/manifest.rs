//! Manifest fetches: one GET (after a HEAD for tags, which may find the digest already cached), digest checked
//! against what was asked or announced, stored with the reference that named it.

use super::{collect, manifest_path, FetchContext, InFlight, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES};
use crate::digest::{Digest, DigestAlgorithm};
use crate::error::{MirrorError, UpstreamError};
use crate::messages::{Fault, LinkReference, ManifestReply, PutManifest, ReportDamage};
use crate::reference::{Named, Reference};
use crate::store::{media_type_of, ManifestMeta, ManifestRead, StoredObject};

/// The media type to store for a manifest: the upstream's `Content-Type` when it names a manifest type, else what
/// the manifest says of itself.
fn manifest_media_type(content_type: Option<&str>, bytes: &[u8]) -> String {
    let declared = content_type.map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match declared {
        Some(ct) if ct.starts_with("application/vnd.") => ct,
        _ => media_type_of(bytes),
    }
}

/// Fetch, verify and store one manifest.
pub(crate) async fn fetch_manifest(cx: FetchContext, reference: Reference) -> Result<ManifestReply, MirrorError> {
    let _running = InFlight::start(&cx.metrics, "manifest");
    let result = fetch_manifest_inner(&cx, reference).await;
    if let Err(e) = &result {
        cx.count_body_error(e);
    }
    result
}

async fn fetch_manifest_inner(cx: &FetchContext, reference: Reference) -> Result<ManifestReply, MirrorError> {
    let cx = cx.clone();
    let name = cx.name();
    if let Reference::Tag(_) = &reference {
        if let Some(reply) = resolve_tag_to_cached(&cx, &reference).await? {
            return Ok(reply);
        }
    }
    tracing::info!("pulling manifest from upstream: \"{}\"", Named(&cx.image, &reference));
    let resp = cx.request(manifest_path(&cx.image, &reference), false, Some(MANIFEST_ACCEPT), None).await?;
    if resp.status == 404 {
        return Err(MirrorError::ManifestUnknown(Named(&cx.image, &reference).to_string()));
    }
    cx.metrics.upstream_pulls_by_ns.with_label_values(&[&name]).inc();
    let content_type = resp.content_type.clone();
    let announced = resp.docker_digest.clone();
    let expected_len = resp.content_length;
    let bytes = collect(&name, resp.body, MAX_MANIFEST_BYTES).await?;
    if let Some(n) = expected_len {
        if n != bytes.len() as u64 {
            return Err(UpstreamError::LengthMismatch { upstream: name, expected: n, got: bytes.len() as u64 }.into());
        }
    }
    let digest = match &reference {
        Reference::Digest(wanted) => {
            let actual = Digest::of(wanted.algorithm(), &bytes);
            if &actual != wanted {
                return Err(UpstreamError::DigestMismatch { upstream: name, expected: wanted.clone(), actual }.into());
            }
            wanted.clone()
        }
        Reference::Tag(_) => {
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
    Ok(ManifestReply { meta, bytes })
}

/// HEAD a tag upstream (a HEAD does not count against Docker Hub's pull limit); when the digest it names is already
/// cached, record the tag and answer from the cache. `None`: the manifest must be fetched.
async fn resolve_tag_to_cached(cx: &FetchContext, reference: &Reference) -> Result<Option<ManifestReply>, MirrorError> {
    let resp = match cx.request(manifest_path(&cx.image, reference), true, Some(MANIFEST_ACCEPT), None).await {
        Ok(resp) => resp,
        // A registry that does not answer HEAD properly still gets the GET.
        Err(MirrorError::Upstream(UpstreamError::Status { .. })) => return Ok(None),
        Err(e) => return Err(e),
    };
    if resp.status == 404 {
        return Err(MirrorError::ManifestUnknown(Named(&cx.image, reference).to_string()));
    }
    let Some(digest) = resp.docker_digest.and_then(|d| d.parse::<Digest>().ok()) else {
        return Ok(None);
    };
    let Some(meta) = cx.store.index().manifest(&digest) else {
        return Ok(None);
    };
    let bytes = match cx.store.read_manifest(&digest).await {
        Ok(ManifestRead::Found(bytes)) => bytes,
        Ok(found) => {
            let fault = if matches!(found, ManifestRead::Missing) { Fault::Missing } else { Fault::Corrupt };
            let report = ReportDamage { object: StoredObject::Manifest(digest), fault, version: None };
            cx.cache.send(report).await?;
            return Ok(None);
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read cached manifest {digest}; fetching it again");
            return Ok(None);
        }
    };
    let link = LinkReference { image: cx.image.clone(), reference: reference.clone(), digest: meta.digest.clone() };
    if let Ok(Err(e)) = cx.cache.send(link).await {
        tracing::warn!(error = %e, "cannot record tag {}", Named(&cx.image, reference));
    }
    tracing::info!("tag resolved by HEAD to a cached manifest: \"{}\" -> {}", Named(&cx.image, reference), meta.digest);
    Ok(Some(ManifestReply { meta, bytes }))
}
