//! Serving manifests: from the index and the store (a HEAD from memory alone), or fetched once for all concurrent
//! askers by the repository's image actor. A cached manifest is checked against its digest every time it is read
//! (it is small); a missing or damaged one is reported and fetched again in the same request.

use super::{ManifestResponse, Mirror};
use crate::error::{MirrorError, StoreError};
use crate::messages::{Fault, GetManifest};
use crate::reference::{ImageKey, Named, Reference};
use crate::store::{ManifestMeta, ManifestRead, RefKey, StoredObject};

impl Mirror {
    /// The cached manifest a reference names, noting the pull for its access time.
    fn cached_manifest(&self, image: &ImageKey, reference: &Reference) -> Option<ManifestMeta> {
        let key = RefKey { image: image.clone(), reference: reference.clone() };
        match self.index().resolve(&key) {
            Some(meta) => {
                self.inner.touches.reference(&key);
                Some(meta)
            }
            None => match reference {
                Reference::Digest(d) => self.index().manifest(d),
                Reference::Tag(_) => None,
            },
        }
    }

    /// A manifest by tag or digest: from the cache, or fetched once for all concurrent askers. `want_body: false`
    /// (HEAD) answers a cached manifest from memory.
    pub async fn manifest(
        &self,
        image: &ImageKey,
        reference: &Reference,
        want_body: bool,
    ) -> Result<ManifestResponse, MirrorError> {
        let metrics = &self.inner.metrics;
        if let Some(meta) = self.cached_manifest(image, reference) {
            if !want_body {
                metrics.cache_requests.with_label_values(&["manifest", "hit"]).inc();
                metrics.cached_pulls_by_ns.with_label_values(&[image.ns().as_str()]).inc();
                return Ok(ManifestResponse { meta, bytes: None, from_cache: true });
            }
            let fault = match self.inner.store.read_manifest(&meta.digest).await {
                Ok(ManifestRead::Found(bytes)) => {
                    metrics.cache_requests.with_label_values(&["manifest", "hit"]).inc();
                    metrics.cached_pulls_by_ns.with_label_values(&[image.ns().as_str()]).inc();
                    tracing::info!("serving manifest from cache: \"{}\"", Named(image, reference));
                    return Ok(ManifestResponse { meta, bytes: Some(bytes), from_cache: true });
                }
                Ok(ManifestRead::Missing) => Fault::Missing,
                Ok(ManifestRead::Corrupt) => Fault::Corrupt,
                Err(e @ StoreError::Exhausted { .. }) => return Err(MirrorError::Overloaded(e.to_string())),
                Err(e) => Fault::Unreadable(e.to_string()),
            };
            self.report_damage(StoredObject::Manifest(meta.digest), fault, None).await;
        }
        if let Some(resp) = self.manifest_while_loading(image, reference, want_body).await? {
            return Ok(resp);
        }
        metrics.cache_requests.with_label_values(&["manifest", "miss"]).inc();
        let reply = self.ask(image, GetManifest { reference: reference.clone() }).await??;
        Ok(ManifestResponse { meta: reply.meta, bytes: Some(reply.bytes), from_cache: false })
    }
}
