//! While the index loads at start (`cache/load.rs`), a request that misses it may still be for something stored: it
//! is looked up in the store itself before anything is fetched, so cached content is served from the first moment,
//! never answered 404 and never fetched again because the load has not reached it yet. Manifests found this way are
//! checked against their digest like any other read; blobs are hashed on their first full read, as every blob is after
//! a start.

use super::{ManifestResponse, Mirror};
use crate::digest::Digest;
use crate::error::{MirrorError, StoreError};
use crate::reference::{ImageKey, Reference};
use crate::store::{BlobInfo, OpenedBlob, RefKey};

impl Mirror {
    /// A manifest that missed the index, from the store, while the index loads. `None` after the load, or when the
    /// store does not have it (whole and intact): then it is fetched.
    pub(super) async fn manifest_while_loading(
        &self,
        image: &ImageKey,
        reference: &Reference,
        want_body: bool,
    ) -> Result<Option<ManifestResponse>, MirrorError> {
        if !self.index().loading() {
            return Ok(None);
        }
        let key = RefKey { image: image.clone(), reference: reference.clone() };
        match self.inner.store.lookup_manifest(&key).await {
            Ok(Some((meta, bytes))) => {
                self.inner.touches.reference(&key);
                let metrics = &self.inner.metrics;
                metrics.cache_requests.with_label_values(&["manifest", "hit"]).inc();
                metrics.cached_pulls_by_ns.with_label_values(&[image.ns().as_str()]).inc();
                Ok(Some(ManifestResponse { meta, bytes: want_body.then_some(bytes), from_cache: true }))
            }
            Ok(None) => Ok(None),
            Err(e @ StoreError::Exhausted { .. }) => Err(MirrorError::Overloaded(e.to_string())),
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up {key} in the store; fetching it");
                Ok(None)
            }
        }
    }

    /// A blob that missed the index, opened from the store, while the index loads; its bytes are not verified yet.
    pub(super) async fn open_while_loading(
        &self,
        digest: &Digest,
    ) -> Result<Option<(OpenedBlob, BlobInfo)>, MirrorError> {
        if !self.index().loading() {
            return Ok(None);
        }
        match self.inner.store.open_blob(digest).await {
            Ok(Some(opened)) => {
                let info = BlobInfo { size: opened.size, version: opened.version, verified: false };
                Ok(Some((opened, info)))
            }
            Ok(None) => Ok(None),
            Err(e @ StoreError::Exhausted { .. }) => Err(MirrorError::Overloaded(e.to_string())),
            Err(_) => Ok(None),
        }
    }
}
