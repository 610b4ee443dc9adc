//! The single upstream fetch of a manifest or a blob, as run by its leader: ask the pool, verify, hand the result to
//! the cache actor. These run as spawned futures on the image actor's thread and report back by message; each one
//! is the only fetch of its object in flight.

use std::sync::Arc;

use actix::Addr;
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::cache::CacheActor;
use crate::digest::{Digest, DigestAlgorithm};
use crate::error::{MirrorError, StoreError, UpstreamError};
use crate::messages::{BodyEvent, CommitBlob, Fetch, LinkReference, ManifestReply, PutManifest, ReleaseBlob};
use crate::metrics::{error_reason, Metrics};
use crate::reference::{ImageKey, Reference};
use crate::store::{media_type_of, BlobLease, BlobWriter, ManifestMeta, Store};
use crate::transfer::TransferPublisher;
use crate::upstream::pool::UpstreamPool;
use crate::upstream::Upstream;

/// Every manifest type we can serve; upstream manifest requests ask for all of them.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest accepted from an upstream (the spec asks registries to take at least 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 8 * 1024 * 1024;
/// Resumes in a row that brought no new byte before a broken blob transfer is given up. Resumes that make progress
/// do not count: on an intermittent link a large layer may need many.
const MAX_STALLED_RESUMES: u32 = 3;
/// Most bytes gathered from the body channel into one disk write.
const WRITE_BATCH: usize = 1024 * 1024;

/// What a fetch needs to know about where it runs.
#[derive(Clone)]
pub(crate) struct FetchContext {
    pub pool: Addr<UpstreamPool>,
    pub cache: Addr<CacheActor>,
    pub upstream: Arc<Upstream>,
    pub image: ImageKey,
    /// Read-only use: the index and committed manifests, to answer a tag whose digest is already cached.
    pub store: Store,
    pub metrics: Arc<Metrics>,
}

/// Counts a fetch in `ociregistry_fetches_in_flight` for as long as it lives.
struct InFlight(Arc<Metrics>, &'static str);

impl InFlight {
    fn start(metrics: &Arc<Metrics>, kind: &'static str) -> InFlight {
        metrics.fetches_in_flight.with_label_values(&[kind]).inc();
        InFlight(metrics.clone(), kind)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetches_in_flight.with_label_values(&[self.1]).dec();
    }
}

impl FetchContext {
    /// Count an error this fetch found in a body (the pool counts the ones it sees itself).
    fn count_body_error(&self, err: &MirrorError) {
        if let MirrorError::Upstream(
            e @ (UpstreamError::DigestMismatch { .. }
            | UpstreamError::LengthMismatch { .. }
            | UpstreamError::TooLarge { .. }),
        ) = err
        {
            self.metrics.upstream_errors.with_label_values(&[&self.name(), error_reason(e)]).inc();
        }
    }
}

impl FetchContext {
    fn name(&self) -> String {
        self.upstream.namespace.to_string()
    }

    pub(crate) async fn request(
        &self,
        path: String,
        head: bool,
        accept: Option<&'static str>,
    ) -> Result<crate::messages::UpstreamResponse, MirrorError> {
        let scope = Some(crate::upstream::auth::pull_scope(self.image.repo().as_str()));
        let fetch = Fetch { upstream: self.upstream.clone(), path, head, accept, scope, range_from: None };
        Ok(self.pool.send(fetch).await??)
    }

    /// GET a blob from `offset` on, to resume a broken transfer.
    async fn request_from(&self, path: String, offset: u64) -> Result<crate::messages::UpstreamResponse, MirrorError> {
        let scope = Some(crate::upstream::auth::pull_scope(self.image.repo().as_str()));
        let fetch =
            Fetch { upstream: self.upstream.clone(), path, head: false, accept: None, scope, range_from: Some(offset) };
        Ok(self.pool.send(fetch).await??)
    }
}

fn blob_path(image: &ImageKey, digest: &Digest) -> String {
    format!("/v2/{}/blobs/{}", image.repo(), digest)
}

fn manifest_path(image: &ImageKey, reference: &Reference) -> String {
    format!("/v2/{}/manifests/{}", image.repo(), reference)
}

/// Receive a whole body, up to `limit` bytes.
async fn collect(
    upstream: &str,
    mut body: mpsc::Receiver<Result<BodyEvent, UpstreamError>>,
    limit: usize,
) -> Result<Bytes, UpstreamError> {
    let mut buf = BytesMut::new();
    loop {
        match body.recv().await {
            Some(Ok(BodyEvent::Data(chunk))) => {
                if buf.len() + chunk.len() > limit {
                    return Err(UpstreamError::TooLarge { upstream: upstream.into(), limit });
                }
                buf.extend_from_slice(&chunk);
            }
            Some(Ok(BodyEvent::End)) => return Ok(buf.freeze()),
            Some(Err(e)) => return Err(e),
            None => return Err(UpstreamError::Broken { upstream: upstream.into(), detail: "body ended early".into() }),
        }
    }
}

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
    tracing::info!("pulling manifest from upstream: \"{}{}\"", cx.image, ref_suffix(&reference));
    let resp = cx.request(manifest_path(&cx.image, &reference), false, Some(MANIFEST_ACCEPT)).await?;
    if resp.status == 404 {
        return Err(MirrorError::ManifestUnknown(format!("{}{}", cx.image, ref_suffix(&reference))));
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
    let resp = match cx.request(manifest_path(&cx.image, reference), true, Some(MANIFEST_ACCEPT)).await {
        Ok(resp) => resp,
        // A registry that does not answer HEAD properly still gets the GET.
        Err(MirrorError::Upstream(UpstreamError::Status { .. })) => return Ok(None),
        Err(e) => return Err(e),
    };
    if resp.status == 404 {
        return Err(MirrorError::ManifestUnknown(format!("{}{}", cx.image, ref_suffix(reference))));
    }
    let Some(digest) = resp.docker_digest.and_then(|d| d.parse::<Digest>().ok()) else {
        return Ok(None);
    };
    let Some(meta) = cx.store.index().manifest(&digest) else {
        return Ok(None);
    };
    let store = cx.store.clone();
    let bytes = match tokio::task::spawn_blocking(move || store.read_manifest(&digest)).await {
        Ok(Ok(bytes)) => Bytes::from(bytes),
        _ => return Ok(None),
    };
    let link = LinkReference { image: cx.image.clone(), reference: reference.clone(), digest: meta.digest.clone() };
    if let Ok(Err(e)) = cx.cache.send(link).await {
        tracing::warn!(error = %e, "cannot record tag {}{}", cx.image, ref_suffix(reference));
    }
    tracing::info!(
        "tag resolved by HEAD to a cached manifest: \"{}{}\" -> {}",
        cx.image,
        ref_suffix(reference),
        meta.digest
    );
    Ok(Some(ManifestReply { meta, bytes }))
}

fn ref_suffix(reference: &Reference) -> String {
    match reference {
        Reference::Tag(t) => format!(":{t}"),
        Reference::Digest(d) => format!("@{d}"),
    }
}

/// Lead one blob fetch: stream it from the upstream into the lease's writer, publishing progress to every reader,
/// verify it, commit it. Every path ends with the publisher told `done` or `fail` and the claim ended.
pub(crate) async fn lead_blob(cx: FetchContext, lease: BlobLease) {
    let BlobLease { writer, publisher, transfer } = lease;
    let digest = writer.digest().clone();
    tracing::info!("pulling blob from upstream: \"{}@{}\"", cx.image, digest);
    let _running = InFlight::start(&cx.metrics, "blob");
    transfer.observe_readers_with(cx.metrics.fetch_waiters.with_label_values(&["blob"]));
    let outcome = download(&cx, writer, &publisher).await;
    if let Err(abort) = &outcome {
        cx.count_body_error(&abort.error);
    }
    match outcome {
        Ok(writer) => {
            let size = writer.written();
            match cx.cache.send(CommitBlob { writer }).await {
                Ok(Ok(_)) => tracing::debug!(blob = %digest, size, "blob cached"),
                // The bytes were verified and readers hold the file open: they still get a good, complete blob.
                Ok(Err(e)) => tracing::warn!(blob = %digest, error = %e, "verified blob could not be cached"),
                Err(e) => tracing::warn!(blob = %digest, error = %e, "cache actor unavailable for commit"),
            }
            publisher.done(size);
        }
        Err(Abort { error, storage }) => {
            tracing::warn!(blob = %digest, error = %error, "blob fetch failed");
            publisher.fail(error);
            let _ = cx.cache.send(ReleaseBlob { digest, transfer, storage }).await;
        }
    }
}

/// Why a blob download stopped; the writer (and its temporary file) is gone by the time this is seen.
struct Abort {
    error: MirrorError,
    /// Set when the disk was at fault, so the cache backs off.
    storage: Option<StoreError>,
}

impl<E: Into<MirrorError>> From<E> for Abort {
    fn from(error: E) -> Abort {
        Abort { error: error.into(), storage: None }
    }
}

/// How a batch of body events ended, besides its bytes.
enum BatchEnd {
    More,
    End,
    Failed(UpstreamError),
}

/// Wait for the next body event, then gather whatever else is already waiting (up to `WRITE_BATCH`), so a fast
/// upstream costs one disk write per megabyte and a slow one is written as each chunk arrives.
async fn next_batch(body: &mut mpsc::Receiver<Result<BodyEvent, UpstreamError>>, upstream: &str) -> (Bytes, BatchEnd) {
    let early = || UpstreamError::Broken { upstream: upstream.into(), detail: "body ended early".into() };
    let mut batch = BytesMut::new();
    let mut event = body.recv().await;
    loop {
        match event {
            Some(Ok(BodyEvent::Data(chunk))) => batch.extend_from_slice(&chunk),
            Some(Ok(BodyEvent::End)) => return (batch.freeze(), BatchEnd::End),
            Some(Err(e)) => return (batch.freeze(), BatchEnd::Failed(e)),
            None => return (batch.freeze(), BatchEnd::Failed(early())),
        }
        if batch.len() >= WRITE_BATCH {
            return (batch.freeze(), BatchEnd::More);
        }
        event = match body.try_recv() {
            Ok(next) => Some(next),
            Err(mpsc::error::TryRecvError::Empty) => return (batch.freeze(), BatchEnd::More),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
        };
    }
}

/// Fetch the blob into `writer`, publishing progress; returns the writer complete and verified.
async fn download(
    cx: &FetchContext,
    mut writer: BlobWriter,
    publisher: &TransferPublisher,
) -> Result<BlobWriter, Abort> {
    let digest = writer.digest().clone();
    let name = cx.name();
    let resp = cx.request(blob_path(&cx.image, &digest), false, None).await?;
    if resp.status == 404 {
        return Err(MirrorError::BlobUnknown(digest).into());
    }
    let total = resp.content_length;
    if let Some(total) = total {
        if !writer.has_room_for(total) {
            let full = StoreError::Io {
                op: "reserve space for",
                path: format!("blob {digest} ({total} bytes)"),
                detail: "not enough free space in the cache directory".into(),
                disk_full: true,
            };
            // Readers see `Uncacheable` and fetch the blob for themselves, uncached; the cache backs off.
            return Err(Abort { error: MirrorError::Uncacheable, storage: Some(full) });
        }
    }
    let mut body = resp.body;
    publisher.running(0, total);
    // A resumed transfer answered with the whole body (200 instead of 206): bytes we already have, to drop.
    let mut skip: u64 = 0;
    let mut stalled_resumes = 0u32;
    let mut written_at_last_resume = 0u64;
    loop {
        let (mut data, end) = next_batch(&mut body, &name).await;
        if skip > 0 {
            let n = skip.min(data.len() as u64);
            data = data.slice(n as usize..);
            skip -= n;
        }
        if !data.is_empty() {
            let (w, written) = tokio::task::spawn_blocking(move || {
                let r = writer.write(&data);
                (writer, r)
            })
            .await
            .map_err(|e| MirrorError::Internal(format!("writer task: {e}")))?;
            writer = w;
            if let Err(e) = written {
                return Err(Abort {
                    error: MirrorError::Internal(format!("cache write failed: {e}")),
                    storage: Some(e),
                });
            }
            if total.is_some_and(|t| writer.written() > t) {
                break;
            }
            publisher.running(writer.written(), total);
        }
        // A body that ends short of its announced length is a connection that closed early: resume it too.
        let end = match (end, total) {
            (BatchEnd::End, Some(t)) if writer.written() < t => BatchEnd::Failed(UpstreamError::Broken {
                upstream: name.clone(),
                detail: format!("connection closed after {} of {t} bytes", writer.written()),
            }),
            (end, _) => end,
        };
        match end {
            BatchEnd::More => {}
            BatchEnd::End => break,
            BatchEnd::Failed(e) => {
                // A connection that broke or went idle mid-body is resumed from where it stopped (edge links
                // drop); a corrupt or refused answer is not.
                let written = writer.written();
                if written > written_at_last_resume {
                    stalled_resumes = 0;
                }
                let resumable = matches!(e, UpstreamError::Broken { .. } | UpstreamError::Idle { .. })
                    && stalled_resumes < MAX_STALLED_RESUMES
                    && total.is_none_or(|t| written < t);
                if !resumable {
                    return Err(e.into());
                }
                stalled_resumes += 1;
                written_at_last_resume = written;
                tracing::warn!(blob = %digest, written, error = %e, "upstream transfer broke; resuming from byte {written}");
                let resp = cx.request_from(blob_path(&cx.image, &digest), written).await?;
                match resp.status {
                    206 => skip = 0,
                    200 => skip = written,
                    _ => return Err(MirrorError::BlobUnknown(digest).into()),
                }
                body = resp.body;
            }
        }
    }
    let size = writer.written();
    if let Some(total) = total.filter(|t| *t != size) {
        return Err(UpstreamError::LengthMismatch { upstream: name, expected: total, got: size }.into());
    }
    if let Err(actual) = writer.verify() {
        return Err(UpstreamError::DigestMismatch { upstream: name, expected: digest, actual }.into());
    }
    Ok(writer)
}
