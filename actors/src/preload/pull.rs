//! Preloading one image from a list: through the front door, as a client pulls it. The manifest by its tag (or
//! digest); for an index, each platform manifest the filter accepts, by digest; then every blob, read to its end,
//! four at a time. A blob the cache could not keep (it was passed through) fails the image: it is not cached.
//! Background work spends no pull budget a client may need: while the upstream's last answer left `rateLimitReserve`
//! pulls or fewer, a cached manifest is taken as it is and an uncached one waits (`manifest`).

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::archive::{is_index, AnyManifest};
use super::error::{Fault, Object, PreloadError};
use super::platform::PlatformFilter;
use super::LoadEvent;
use crate::digest::Digest;
use crate::error::MirrorError;
use crate::messages::AwaitBlob;
use crate::mirror::{ManifestResponse, Mirror};
use crate::reference::{ImageKey, Named, Reference};

/// Blobs of one image fetched at once.
const PARALLEL_BLOBS: usize = 4;

/// How often a load waiting for the pull budget looks again (a client's pull may bring an answer with budget).
const BUDGET_POLL: Duration = Duration::from_secs(1);

/// Pull one image into the cache; returns the bytes of its blobs.
pub(super) async fn pull_image(
    mirror: &Mirror,
    image: &ImageKey,
    reference: &Reference,
    platform: &PlatformFilter,
    progress: &dyn Fn(LoadEvent),
) -> Result<u64, PreloadError> {
    let top = manifest(mirror, image, reference, progress).await?;
    let top_bytes = top.bytes.clone().unwrap_or_default();
    let mut manifests = Vec::new();
    if is_index(&top.meta.media_type) {
        let in_index = |fault: Fault| PreloadError::object(Object::Index(top.meta.digest.clone()), fault);
        let index: AnyManifest = serde_json::from_slice(&top_bytes).map_err(|e| in_index(e.into()))?;
        for child in index.manifests.iter().filter(|c| platform.accepts(c.platform.as_ref())) {
            let digest = child.digest.parse::<Digest>().map_err(|e| in_index(e.into()))?;
            let resp = manifest(mirror, image, &Reference::Digest(digest.clone()), progress).await?;
            manifests.push((digest, resp.bytes.unwrap_or_default()));
        }
        if manifests.is_empty() {
            return Err(PreloadError::NoPlatform { platform: platform.clone() });
        }
    } else {
        manifests.push((top.meta.digest.clone(), top_bytes));
    }
    let mut blobs: Vec<Digest> = Vec::new();
    for (digest, bytes) in &manifests {
        let in_manifest = |fault: Fault| PreloadError::object(Object::Manifest(digest.clone()), fault);
        let m: AnyManifest = serde_json::from_slice(bytes).map_err(|e| in_manifest(e.into()))?;
        for d in m.config.iter().chain(&m.layers) {
            let blob = d.digest.parse::<Digest>().map_err(|e| in_manifest(e.into()))?;
            if !blobs.contains(&blob) {
                blobs.push(blob);
            }
        }
    }
    let mut total = 0;
    for batch in blobs.chunks(PARALLEL_BLOBS) {
        let results = futures_util::future::join_all(batch.iter().map(|d| pull_blob(mirror, image, d))).await;
        for result in results {
            total += result?;
        }
    }
    Ok(total)
}

/// Read one blob to its end through the front door; Ok with its size once the cache has it.
/// A manifest as a client would get it, except while the upstream keeps its pull budget for clients: a cached one is
/// then taken by its digest as it is (no check, no GET), and an uncached one waits until the window has passed or a
/// later answer shows budget again; the wait is logged, counted and reported once per manifest.
async fn manifest(
    mirror: &Mirror,
    image: &ImageKey,
    reference: &Reference,
    progress: &dyn Fn(LoadEvent),
) -> Result<ManifestResponse, MirrorError> {
    let mut told = false;
    while let Some(hold) = mirror.pull_budget_hold(image).await {
        if let Some(digest) = mirror.cached_digest(image, reference) {
            return mirror.manifest(image, &Reference::Digest(digest), true).await;
        }
        let left = hold.until.saturating_duration_since(Instant::now());
        if !told {
            told = true;
            let ns = image.ns().as_str();
            let reason = format!(
                "{ns} has {} pulls left, at or below rateLimitReserve {}: waiting up to {}s for its window",
                hold.remaining,
                hold.reserve,
                left.as_secs()
            );
            tracing::info!("{} waits: {reason}", Named(image, reference));
            mirror.metrics().ratelimit_deferred.with_label_values(&[ns]).inc();
            progress(LoadEvent::Waiting { image: Named(image, reference).to_string(), reason });
        }
        tokio::time::sleep(left.min(BUDGET_POLL)).await;
    }
    mirror.manifest(image, reference, true).await
}

async fn pull_blob(mirror: &Mirror, image: &ImageKey, digest: &Digest) -> Result<u64, PreloadError> {
    let blob = |fault: Fault| PreloadError::object(Object::Blob(digest.clone()), fault);
    let resp = mirror.blob(image, digest).await.map_err(|e| blob(e.into()))?;
    let mut stream = resp.stream(0, None);
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        size += chunk.map_err(|e| blob(e.into()))?.len() as u64;
    }
    // The last byte comes before the blob is durable and committed (an fsync, an upload to a bucket): wait for that.
    let cached = mirror.cache().send(AwaitBlob { digest: digest.clone() }).await.unwrap_or(false);
    if !cached {
        return Err(PreloadError::NotKept { digest: digest.clone() });
    }
    Ok(size)
}
