//! Serving manifests: from the index and the store (a HEAD from memory alone), or fetched once for all concurrent
//! askers by the repository's image actor. A cached tag whose `tagTtl` ran out is revalidated first (by the image
//! actor, one check per tag at a time, within `revalidateTimeout`); while the upstream's circuit breaker is open it is
//! served at once without a check. A cached manifest is checked against its digest every time it is read (it is
//! small); a missing or damaged one is reported and fetched again in the same request. Air-gapped, nothing is ever
//! asked upstream: a miss is `MANIFEST_UNKNOWN` at once.

use std::time::Duration;

use super::{ManifestResponse, Mirror};
use crate::digest::Digest;
use crate::error::{MirrorError, StoreError};
use crate::fetch::referrers::{empty_index, referrers_tag};
use crate::freshness::StaleReason;
use crate::messages::{Adopt, Fault, GetManifest, ManifestOrigin};
use crate::reference::{ImageKey, Named, Reference};
use crate::store::{now_ms, ManifestMeta, ManifestRead, RefKey, StoredObject};
use crate::upstream::pull_budget::Hold;

impl Mirror {
    /// The cached manifest a reference names, with when the upstream last confirmed it (a digest never expires),
    /// noting the pull for its access time.
    fn cached_manifest(&self, image: &ImageKey, reference: &Reference) -> Option<(ManifestMeta, Option<i64>)> {
        let key = RefKey { image: image.clone(), reference: reference.clone() };
        match self.index().resolve_checked(&key) {
            Some((meta, checked)) => {
                self.inner.touches.reference(&key);
                let checked = matches!(reference, Reference::Tag(_)).then_some(checked);
                Some((meta, checked))
            }
            None => match reference {
                Reference::Digest(d) => self.index().manifest(d).map(|meta| (meta, None)),
                Reference::Tag(_) => None,
            },
        }
    }

    /// A tag the index lacks but a shared store has (another replica cached it, and this one has not finished listing
    /// the bucket): its manifest and record adopted into the index, then answered as any cached tag.
    async fn adopt_tag(&self, image: &ImageKey, reference: &Reference) -> Option<(ManifestMeta, Option<i64>)> {
        if !self.inner.shared || !matches!(reference, Reference::Tag(_)) {
            return None;
        }
        let key = RefKey { image: image.clone(), reference: reference.clone() };
        let record = match self.inner.store.storage().read_record(&key).await {
            Ok(found) => found?,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for {} in the shared store", Named(image, reference));
                return None;
            }
        };
        let by_digest = RefKey { image: image.clone(), reference: Reference::Digest(record.digest.clone()) };
        let (meta, bytes) = self.inner.store.lookup_manifest(&by_digest).await.ok().flatten()?;
        self.inner.cache.send(Adopt::Manifest { meta, bytes }).await.ok()?;
        self.inner.cache.send(Adopt::Record(record)).await.ok()?;
        self.cached_manifest(image, reference)
    }

    /// The digest a reference names in the cache now, asking no upstream.
    pub(crate) fn cached_digest(&self, image: &ImageKey, reference: &Reference) -> Option<Digest> {
        self.cached_manifest(image, reference).map(|(meta, _)| meta.digest)
    }

    /// Whether background work must wait before a manifest GET to `image`'s upstream, which keeps what is left of its
    /// pull budget for clients (`rateLimitReserve`); `None`: it may go ahead.
    pub(crate) async fn pull_budget_hold(&self, image: &ImageKey) -> Option<Hold> {
        let upstream = self.inner.admission.upstream(image.ns()).await.ok()?;
        upstream.pull_budget.held(std::time::Instant::now())
    }

    /// Whether a cached tag confirmed at `checked` (ms) must be asked about again before it is served.
    async fn needs_check(&self, image: &ImageKey, reference: &Reference, checked: i64) -> bool {
        let Reference::Tag(tag) = reference else {
            return false;
        };
        if self.inner.air_gapped {
            return false;
        }
        // A namespace no longer allowed to be dialled keeps what it cached.
        let registry = self.inner.admission.listed.get(image.ns()).and_then(|u| u.tag_ttl);
        let age = Duration::from_millis(now_ms().saturating_sub(checked).max(0) as u64);
        self.inner.freshness.ttl_for(tag, registry).expired(age)
    }

    /// A manifest by tag or digest: from the cache (a tag checked with the upstream once its `tagTtl` ran out), or
    /// fetched once for all concurrent askers. `want_body: false` (HEAD) answers a fresh cached manifest from memory.
    pub async fn manifest(
        &self,
        image: &ImageKey,
        reference: &Reference,
        want_body: bool,
    ) -> Result<ManifestResponse, MirrorError> {
        self.manifest_for(image, reference, want_body, None, false).await
    }

    /// [`Mirror::manifest`], asked by another replica (`from_peer`): a fetch it starts goes to the upstream, never
    /// to a peer.
    pub async fn manifest_from(
        &self,
        image: &ImageKey,
        reference: &Reference,
        want_body: bool,
        from_peer: bool,
    ) -> Result<ManifestResponse, MirrorError> {
        self.manifest_for(image, reference, want_body, None, from_peer).await
    }

    /// The referrers index of `subject` (OCI 1.1), unfiltered: cached under its referrers tag like any tag. Air-gapped
    /// or with nothing known, an empty index.
    pub async fn referrers(&self, image: &ImageKey, subject: &Digest) -> Result<ManifestResponse, MirrorError> {
        let empty = || {
            let reply = empty_index();
            Ok(ManifestResponse { meta: reply.meta, bytes: Some(reply.bytes), from_cache: true })
        };
        self.admit(image)?;
        let Some(tag) = referrers_tag(subject) else {
            return empty();
        };
        match self.manifest_for(image, &Reference::Tag(tag), true, Some(subject.clone()), false).await {
            Err(MirrorError::ManifestUnknown(_)) => empty(),
            Ok(index) => Ok(self.with_artifact_types(image, index).await),
            Err(e) => Err(e),
        }
    }

    /// Fill in the `artifactType` of index entries that lack it (an index pushed under the referrers tag by an older
    /// tool), from each referrer's own `artifactType` or config media type, as the referrers API reports it.
    async fn with_artifact_types(&self, image: &ImageKey, mut index: ManifestResponse) -> ManifestResponse {
        let Some(bytes) = &index.bytes else {
            return index;
        };
        let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            return index;
        };
        let Some(entries) = json.get_mut("manifests").and_then(|m| m.as_array_mut()) else {
            return index;
        };
        let mut changed = false;
        for entry in entries.iter_mut().filter(|e| e.get("artifactType").is_none()) {
            let Some(digest) = entry.get("digest").and_then(|d| d.as_str()).and_then(|d| d.parse::<Digest>().ok())
            else {
                continue;
            };
            let Ok(found) = self.manifest(image, &Reference::Digest(digest), true).await else {
                continue;
            };
            let referrer: serde_json::Value =
                found.bytes.and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
            let kind = referrer.get("artifactType").or_else(|| referrer.pointer("/config/mediaType")).cloned();
            if let Some(kind) = kind {
                entry["artifactType"] = kind;
                changed = true;
            }
        }
        if changed {
            if let Ok(bytes) = serde_json::to_vec(&json) {
                index.meta.size = bytes.len() as u64;
                index.bytes = Some(bytes.into());
            }
        }
        index
    }

    /// Every manifest request: refused first when the registry's lists refuse the repository (cached or not).
    async fn manifest_for(
        &self,
        image: &ImageKey,
        reference: &Reference,
        want_body: bool,
        referrers_of: Option<Digest>,
        from_peer: bool,
    ) -> Result<ManifestResponse, MirrorError> {
        self.admit(image)?;
        self.counted(self.admitted_manifest(image, reference, want_body, referrers_of, from_peer).await)
    }

    async fn admitted_manifest(
        &self,
        image: &ImageKey,
        reference: &Reference,
        want_body: bool,
        referrers_of: Option<Digest>,
        from_peer: bool,
    ) -> Result<ManifestResponse, MirrorError> {
        let metrics = &self.inner.metrics;
        let cached = match self.cached_manifest(image, reference) {
            Some(cached) => Some(cached),
            None => self.adopt_tag(image, reference).await,
        };
        if let Some((meta, checked)) = cached {
            if let Some(checked) = checked {
                if self.needs_check(image, reference, checked).await {
                    if let Some(resp) =
                        self.revalidate(image, reference, &meta, referrers_of.clone(), from_peer).await?
                    {
                        return Ok(resp);
                    }
                }
            }
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
        if self.inner.air_gapped {
            return Err(MirrorError::ManifestUnknown(format!("{} (air-gapped: not cached)", Named(image, reference))));
        }
        metrics.cache_requests.with_label_values(&["manifest", "miss"]).inc();
        let ask = GetManifest { reference: reference.clone(), cached: None, referrers_of, from_peer };
        let reply = self.ask(image, ask).await??;
        Ok(ManifestResponse { meta: reply.meta, bytes: Some(reply.bytes), from_cache: false })
    }

    /// Check a cached tag with the upstream through its image actor; `None` means serve the cached manifest as it is
    /// (the breaker is open, so no check is made).
    async fn revalidate(
        &self,
        image: &ImageKey,
        reference: &Reference,
        meta: &ManifestMeta,
        referrers_of: Option<Digest>,
        from_peer: bool,
    ) -> Result<Option<ManifestResponse>, MirrorError> {
        if let Ok(upstream) = self.inner.admission.upstream(image.ns()).await {
            if upstream.breaker.is_open() {
                let key = RefKey { image: image.clone(), reference: reference.clone() };
                self.inner.stale.serve(&key, image.ns().as_str(), StaleReason::BreakerOpen, &self.inner.metrics);
                return Ok(None);
            }
        } else {
            return Ok(None);
        }
        let ask = GetManifest { reference: reference.clone(), cached: Some(meta.clone()), referrers_of, from_peer };
        let reply = self.ask(image, ask).await??;
        let from_cache = reply.origin != ManifestOrigin::Upstream;
        let result = if from_cache { "hit" } else { "miss" };
        self.inner.metrics.cache_requests.with_label_values(&["manifest", result]).inc();
        Ok(Some(ManifestResponse { meta: reply.meta, bytes: Some(reply.bytes), from_cache }))
    }
}
