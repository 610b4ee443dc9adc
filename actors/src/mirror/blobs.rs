//! Serving blobs: from the store (hashed while served whole when its stored version was not verified yet), from the
//! transfer already fetching it, from a new single fetch, or passed through uncached. A blob found missing, short or
//! unreadable in the store is reported (un-indexed) and fetched again in the same request; one found corrupt while
//! served aborts that response before its last byte, and the next request fetches it again.
//!
//! A small committed blob (up to `SMALL_BLOB`) is read whole and, when its stored version was not verified yet,
//! checked before any byte is handed out: the HTTP layer then answers it with a sized body that leaves in one write
//! with the response head, and a damaged one is reported and fetched again within the same request. A verified one
//! is checked unchanged (one `fstat`) after it was read, since the read came after the version was compared.
//!
//! A larger one is handed over with its `Custody` (`StoredCustody`): the version re-check before its last bytes
//! leave reports a copy changed meanwhile through it, and a range of a copy not verified in the version opened is
//! hashed whole through it first, then served from the copy, or from the blob fetched again (see `response`).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::response::{BlobResponse, BlobSource, Custody};
use super::Mirror;
use crate::body::Body;
use crate::claim::BlobClaim;
use crate::digest::Digest;
use crate::error::UpstreamError;
use crate::error::{MirrorError, StoreError};
use crate::fetch::blob_path;
use crate::messages::{Adopt, BlobVerified, Fault, Fetch, GetBlob, ReportDamage};
use crate::metrics::error_reason;
use crate::outcome::PassReason;
use crate::passthrough::{verified_passthrough, Expected};
use crate::read::{read_whole, Check, Checked};
use crate::reference::ImageKey;
use crate::store::{BlobInfo, OpenedBlob, StoredObject, Verdict, Version};
use crate::transfer::Joined;
use crate::upstream::auth::pull_scope;
use crate::upstream::Upstream;

/// Attempts at getting a blob when its fetch is abandoned or it vanishes from the cache between two looks.
const BLOB_ATTEMPTS: usize = 3;

/// Committed blobs up to this size are read whole into memory for their response (configs, small layers). The one
/// exception to "no blob is held whole in memory": it is no more than the 64 KiB chunk a streamed blob holds per read
/// anyway, so a response never holds more than a streamed one does, and it is released once written.
pub const SMALL_BLOB: u64 = 64 * 1024;

impl Mirror {
    /// A blob: from the cache, from the transfer already fetching it, or from a new single fetch.
    pub async fn blob(&self, image: &ImageKey, digest: &Digest) -> Result<BlobResponse, MirrorError> {
        self.blob_for(image, digest, false).await
    }

    /// A blob asked for by another replica (`from_peer`): a fetch it starts goes to the upstream, never to a peer.
    pub async fn blob_for(
        &self,
        image: &ImageKey,
        digest: &Digest,
        from_peer: bool,
    ) -> Result<BlobResponse, MirrorError> {
        self.admit(image)?;
        let resp = self.counted(self.blob_from_anywhere(image, digest, from_peer).await);
        if let Ok(resp) = &resp {
            // Counted by where the bytes finally came from: a request that found the blob committed by the time its
            // claim was answered is a hit too.
            let result = if resp.from_cache { "hit" } else { "miss" };
            self.inner.metrics.cache_requests.with_label_values(&["blob", result]).inc();
        }
        resp
    }

    async fn blob_from_anywhere(
        &self,
        image: &ImageKey,
        digest: &Digest,
        from_peer: bool,
    ) -> Result<BlobResponse, MirrorError> {
        if let Some(resp) = self.cached_blob(image, digest, from_peer).await? {
            return Ok(resp);
        }
        if self.inner.air_gapped {
            return Err(MirrorError::BlobUnknown(digest.clone()));
        }
        for _ in 0..BLOB_ATTEMPTS {
            match self.ask(image, GetBlob { digest: digest.clone(), from_peer }).await?? {
                BlobClaim::Cached => {
                    if let Some(resp) = self.cached_blob(image, digest, from_peer).await? {
                        return Ok(resp);
                    }
                }
                BlobClaim::Follow(transfer) => match transfer.join().await {
                    Joined::Stream { total } => {
                        // Joined once verified (its commit still under way): nothing asked of the upstream for this
                        // request, so a hit, as it would be a moment later from the index.
                        let from_cache = transfer.served_verified();
                        return Ok(BlobResponse { size: total, from_cache, source: BlobSource::Transfer(transfer) });
                    }
                    Joined::PassThrough(reason) => {
                        return self.uncached_blob(image, digest, &reason, transfer.take_handoff()).await
                    }
                    Joined::Failed(e) => return Err(e),
                    Joined::Abandoned => {}
                },
                BlobClaim::PassThrough(reason) => return self.uncached_blob(image, digest, &reason, None).await,
            }
        }
        Err(MirrorError::Abandoned(format!("blob {digest}")))
    }

    /// The indexed blob opened from the store, if the store has it whole; damage found is reported (and un-indexed).
    /// A server out of file descriptors or memory is not damage: that is an error for this request only.
    async fn open_stored(&self, digest: &Digest) -> Result<Option<(OpenedBlob, BlobInfo)>, MirrorError> {
        let Some(info) = self.index().blob(digest) else {
            // A shared bucket may have it from another replica (indexed once found); a local store may have it
            // while the index still loads.
            if self.inner.shared {
                return self.adopt_blob(digest).await;
            }
            return self.open_while_loading(digest).await;
        };
        let (fault, version) = match self.inner.store.open_blob(digest).await {
            Ok(Some(opened)) if opened.size == info.size => return Ok(Some((opened, info))),
            Ok(Some(opened)) => (Fault::WrongSize { found: opened.size, expected: info.size }, Some(opened.version)),
            Ok(None) => (Fault::Missing, None),
            Err(e @ StoreError::Exhausted { .. }) => return Err(MirrorError::Overloaded(e.to_string())),
            Err(e) => (Fault::Unreadable(e.to_string()), None),
        };
        self.report_damage(StoredObject::Blob(digest.clone()), fault, version).await;
        Ok(None)
    }

    /// A blob the index lacks but a shared store has (another replica stored it): indexed, then served (hashed
    /// while served, as any blob not verified since start).
    async fn adopt_blob(&self, digest: &Digest) -> Result<Option<(OpenedBlob, BlobInfo)>, MirrorError> {
        if !self.inner.shared {
            return Ok(None);
        }
        let opened = match self.inner.store.open_blob(digest).await {
            Ok(Some(opened)) => opened,
            Ok(None) => return Ok(None),
            Err(e @ StoreError::Exhausted { .. }) => return Err(MirrorError::Overloaded(e.to_string())),
            Err(e) => {
                tracing::warn!(blob = %digest, error = %e, "cannot look for the blob in the shared store");
                return Ok(None);
            }
        };
        let adopt = Adopt::Blob { digest: digest.clone(), size: opened.size, version: opened.version };
        self.inner.cache.send(adopt).await?;
        let info = BlobInfo { size: opened.size, version: opened.version, verified: false };
        Ok(Some((opened, info)))
    }

    /// The blob from the store, hashed while served whole unless this version of it was verified already. A small one
    /// is read whole (and checked) here; one found damaged then is reported, and `None` sends the request on to fetch.
    /// A larger one carries what it needs to fetch itself again for `image` (see `response`).
    async fn cached_blob(
        &self,
        image: &ImageKey,
        digest: &Digest,
        from_peer: bool,
    ) -> Result<Option<BlobResponse>, MirrorError> {
        let Some((opened, info)) = self.open_stored(digest).await? else {
            return Ok(None);
        };
        let verified = info.verified && opened.version.same(info.version);
        let check = (!verified).then(|| self.check(digest, opened.version));
        if info.size <= SMALL_BLOB {
            let checked = check.is_some();
            let read = match read_whole(&*opened.reader, info.size, check).await {
                // Read after the version was compared: the copy must not have changed in between.
                Ok(bytes) if !checked => match opened.reader.changed() {
                    Ok(None) => Ok(bytes),
                    Ok(Some(now)) => Err((Fault::Changed, now)),
                    Err(e) => Err((Fault::Unreadable(e.to_string()), opened.version)),
                },
                Ok(bytes) => Ok(bytes),
                // Reported through the check already.
                Err(_) if checked => return Ok(None),
                Err(e) => Err((Fault::Unreadable(e.to_string()), opened.version)),
            };
            match read {
                Ok(bytes) => {
                    self.inner.touches.blob(digest);
                    return Ok(Some(BlobResponse {
                        size: Some(info.size),
                        from_cache: true,
                        source: BlobSource::Memory(bytes),
                    }));
                }
                Err((fault, version)) => {
                    self.report_damage(StoredObject::Blob(digest.clone()), fault, Some(version)).await;
                    return Ok(None);
                }
            }
        }
        self.inner.touches.blob(digest);
        let custody =
            Arc::new(StoredCustody { mirror: self.clone(), image: image.clone(), digest: digest.clone(), from_peer });
        let source = BlobSource::Stored { opened, check: check.map(Box::new), custody };
        Ok(Some(BlobResponse { size: Some(info.size), from_cache: true, source }))
    }

    /// Hash-while-serving for one version of a blob, reporting what it finds to the cache actor.
    fn check(&self, digest: &Digest, version: Version) -> Check {
        let (cache, reported) = (self.inner.cache.clone(), digest.clone());
        let report = Box::new(move |checked: Checked| {
            async move {
                match checked {
                    // A notice: if lost, the blob is only hashed again on its next full read.
                    Checked::Intact => cache.do_send(BlobVerified { digest: reported, version }),
                    Checked::Damaged => {
                        let object = StoredObject::Blob(reported);
                        let _ =
                            cache.send(ReportDamage { object, fault: Fault::Corrupt, version: Some(version) }).await;
                    }
                }
            }
            .boxed()
        });
        Check { digest: digest.clone(), report }
    }

    /// The blob straight from the upstream (the leader's own response when it handed one off), verified as it passes
    /// and bounded: one announced over `maxBlobSize` is refused before its body is read, and one without a length is
    /// cut past `BlobBound::pass_through_limit` (see `passthrough`).
    async fn uncached_blob(
        &self,
        image: &ImageKey,
        digest: &Digest,
        reason: &PassReason,
        handoff: Option<(Body, Option<u64>)>,
    ) -> Result<BlobResponse, MirrorError> {
        tracing::debug!(blob = %digest, "serving blob uncached: {reason}");
        let upstream = self.inner.admission.upstream(image.ns()).await?;
        let name = upstream.namespace.to_string();
        let (body, size) = match handoff {
            Some(handed) => handed,
            None => {
                let resp = self.inner.pool.send(blob_fetch(upstream, image, digest, false)).await??;
                if resp.status == 404 {
                    return Err(MirrorError::BlobUnknown(digest.clone()));
                }
                (resp.body, resp.content_length)
            }
        };
        let errors = self.inner.metrics.upstream_errors.clone();
        if let Some(max) = self.inner.bound.max_blob_size().filter(|max| size.is_some_and(|s| s > max.bytes)) {
            // Dropping the body closes the upstream connection at once (the pump stops with its receiver).
            drop(body);
            let limit = usize::try_from(max.bytes).unwrap_or(usize::MAX);
            let error = UpstreamError::TooLarge { upstream: name.clone(), limit };
            errors.with_label_values(&[&name, error_reason(&error)]).inc();
            tracing::warn!(blob = %digest, size = size.unwrap_or(0), limit = %max, error = %error, "uncached blob exceeds the largest blob accepted; refused");
            return Err(error.into());
        }
        let limit = if size.is_none() { self.inner.bound.pass_through_limit(&self.inner.store).await } else { None };
        let expected = Expected { digest: digest.clone(), len: size, limit, upstream: name, errors };
        let stream = verified_passthrough(expected, body);
        Ok(BlobResponse { size, from_cache: false, source: BlobSource::Uncached(stream) })
    }

    /// A blob's size without its bytes: from the index when the store still has it whole, else a HEAD to the
    /// upstream (nothing is fetched or cached).
    pub async fn blob_size(&self, image: &ImageKey, digest: &Digest) -> Result<Option<u64>, MirrorError> {
        self.admit(image)?;
        self.counted(self.admitted_blob_size(image, digest).await)
    }

    async fn admitted_blob_size(&self, image: &ImageKey, digest: &Digest) -> Result<Option<u64>, MirrorError> {
        if let Some((opened, _)) = self.open_stored(digest).await? {
            return Ok(Some(opened.size));
        }
        if self.inner.air_gapped {
            return Err(MirrorError::BlobUnknown(digest.clone()));
        }
        let upstream = self.inner.admission.upstream(image.ns()).await?;
        let resp = self.inner.pool.send(blob_fetch(upstream, image, digest, true)).await??;
        if resp.status == 404 {
            return Err(MirrorError::BlobUnknown(digest.clone()));
        }
        Ok(resp.content_length)
    }
}

/// A stored blob's custody (see `response::Custody`): reports go to the cache actor, a fetch again goes the way of
/// any request for the blob.
struct StoredCustody {
    mirror: Mirror,
    image: ImageKey,
    digest: Digest,
    from_peer: bool,
}

impl StoredCustody {
    fn damage(&self, fault: Fault, version: Version) -> ReportDamage {
        ReportDamage { object: StoredObject::Blob(self.digest.clone()), fault, version: Some(version) }
    }
}

impl Custody for StoredCustody {
    fn changed(&self, version: Version) -> BoxFuture<'static, ()> {
        // Sent now (queued in the mailbox), awaited by the stream before it ends.
        let sent = self.mirror.inner.cache.send(self.damage(Fault::Changed, version));
        async move {
            let _ = sent.await;
        }
        .boxed()
    }

    fn changed_now(&self, version: Version) {
        self.mirror.inner.cache.do_send(self.damage(Fault::Changed, version));
    }

    fn verify(&self, opened: &OpenedBlob) -> BoxFuture<'static, std::io::Result<bool>> {
        let hashed = self.mirror.inner.store.verify_whole(&self.digest, opened);
        let (cache, digest, opened_as) = (self.mirror.inner.cache.clone(), self.digest.clone(), opened.version);
        let damage = move |fault, version| ReportDamage { object: StoredObject::Blob(digest), fault, version };
        let verified = self.digest.clone();
        async move {
            let (fault, version) = match hashed.await {
                Verdict::Intact => {
                    cache.do_send(BlobVerified { digest: verified, version: opened_as });
                    return Ok(true);
                }
                Verdict::Corrupt => (Fault::Corrupt, opened_as),
                Verdict::Changed(now) => (Fault::Changed, now),
                Verdict::Unreadable(e) => (Fault::Unreadable(e), opened_as),
                Verdict::Unknown(e) => return Err(std::io::Error::other(e)),
            };
            let _ = cache.send(damage(fault, Some(version))).await;
            Ok(false)
        }
        .boxed()
    }

    fn refetch(&self) -> BoxFuture<'static, Result<BlobResponse, MirrorError>> {
        let (mirror, image, digest, from_peer) =
            (self.mirror.clone(), self.image.clone(), self.digest.clone(), self.from_peer);
        async move { mirror.blob_from_anywhere(&image, &digest, from_peer).await }.boxed()
    }
}

/// A GET or HEAD of a blob that the front door sends itself (uncached pass-through, blob HEAD).
pub(super) fn blob_fetch(upstream: Arc<Upstream>, image: &ImageKey, digest: &Digest, head: bool) -> Fetch {
    let path = blob_path(image, digest);
    let scope = Some(pull_scope(image.repo().as_str()));
    Fetch {
        upstream,
        path,
        head,
        accept: None,
        scope,
        range_from: None,
        range_end: None,
        range_suffix: None,
        if_range: None,
        deadline: None,
        peer: false,
    }
}
