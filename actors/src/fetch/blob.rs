//! Blob transfers: the leader streams the upstream body into the store's writer while every follower reads the
//! growing object, resumes a broken connection from the byte reached, verifies the digest and has the cache actor
//! commit the blob. Before writing, the leader asks the cache actor for room (`MakeRoom`: under `maxCacheSize` and on
//! the volume, evicting if needed); a blob that does not fit is not written at all: the leader hands its upstream
//! body to the first waiter, which streams it uncached, and settles `PassThrough`.
//!
//! Every blob is bounded (`bound.rs`): one that announces more than `maxBlobSize` is refused before its body is
//! read, and no body is written past its announced length or, when it announces none, past the largest blob the
//! cache may hold (or `maxBlobSize`): the transfer then stops, its upstream connection is dropped, its partial is
//! removed and every follower sees an error, whether or not any client still waits.

use bytes::{Bytes, BytesMut};

use std::sync::Arc;

use super::bound::Limit;
use super::{blob_path, FetchContext, InFlight};
use crate::body::{Body, BodyEvent};
use crate::claim::Lease;
use crate::digest::Digest;
use crate::error::{MirrorError, StoreError, UpstreamError};
use crate::messages::{CommitBlob, Fetch, MakeRoom, Release, ReleaseBlob, Room, UpstreamResponse};
use crate::outcome::{Outcome, PassReason};
use crate::store::{BlobWriter, CheckedBlob, FinishError};
use crate::transfer::TransferPublisher;
use crate::upstream::auth::pull_scope;
use crate::upstream::Upstream;

/// Resumes in a row that brought no new byte before a broken blob transfer is given up. Resumes that make progress
/// do not count: on an intermittent link a large layer may need many.
const MAX_STALLED_RESUMES: u32 = 3;
/// Most bytes gathered from the body channel into one store write.
const WRITE_BATCH: usize = 1024 * 1024;

/// Where the leader gets a blob's bytes: the upstream, or (several replicas sharing a store) the replica that owns
/// the digest, which fetches it from the upstream once for the whole cluster.
struct Source {
    upstream: Arc<Upstream>,
    path: String,
    /// Another replica: asked without credentials, marked as a peer request.
    peer: bool,
}

impl Source {
    /// GET the blob from `offset` on (resuming: only if still the object with `validator`).
    async fn get(
        &self,
        cx: &FetchContext,
        offset: Option<u64>,
        validator: Option<String>,
    ) -> Result<UpstreamResponse, MirrorError> {
        let scope = (!self.peer).then(|| pull_scope(cx.image.repo().as_str()));
        let fetch = Fetch {
            upstream: self.upstream.clone(),
            path: self.path.clone(),
            head: false,
            accept: None,
            scope,
            range_from: offset,
            if_range: offset.and(validator),
            deadline: None,
            peer: self.peer,
        };
        Ok(cx.pool.send(fetch).await??)
    }
}

/// The sources to try, in order: the replicas that own the digest ahead of this one, then the upstream. A request
/// that came from a peer (`routed` false), or a single replica, goes to the upstream.
fn sources(cx: &FetchContext, digest: &Digest, routed: bool) -> Vec<Source> {
    let upstream = Source { upstream: cx.upstream.clone(), path: blob_path(&cx.image, digest), peer: false };
    let Some(cluster) = cx.cluster.as_ref().filter(|_| routed) else {
        return vec![upstream];
    };
    let path = format!("{}?ns={}", blob_path(&cx.image, digest), cx.image.ns());
    let mut out: Vec<Source> = cluster
        .owners(digest)
        .into_iter()
        .take_while(|peer| !cluster.is_me(peer))
        .map(|peer| Source { upstream: cluster.peer(&peer), path: path.clone(), peer: true })
        .collect();
    out.push(upstream);
    out
}

/// Lead one blob fetch: stream it from the upstream (or the replica that owns it) into the store, publishing
/// progress to every follower, verify it, have it committed. Every path ends with the publisher settled and, unless
/// committed, the claim released. `routed`: the request came from a client, not from another replica.
pub(crate) async fn lead_blob(cx: FetchContext, lease: Lease, routed: bool) {
    let Lease { publisher, transfer } = lease;
    let digest = transfer.digest().clone();
    tracing::info!("pulling blob from upstream: \"{}@{}\"", cx.image, digest);
    let _running = InFlight::start(&cx.metrics, "blob");
    transfer.observe_readers_with(cx.metrics.fetch_waiters.with_label_values(&["blob"]));
    match download(&cx, &digest, &publisher, routed).await {
        Ok(blob) => {
            // Verified: followers finish now. They hold the object open, so they get a good, whole blob whatever
            // the fsync and the commit (a rename on a disk, an upload to a bucket) then do; a request that comes
            // before the commit follows this settled transfer.
            let size = blob.size();
            publisher.settle(Outcome::Done { size });
            let blob = match blob.sync().await {
                Ok(blob) => blob,
                Err(e) => {
                    tracing::warn!(blob = %digest, error = %e, "verified blob could not be made durable");
                    let _ = cx.cache.send(ReleaseBlob { transfer, cause: Release::Store(e) }).await;
                    return;
                }
            };
            match cx.cache.send(CommitBlob { blob }).await {
                Ok(Ok(_)) => tracing::debug!(blob = %digest, size, "blob cached"),
                Ok(Err(e)) => tracing::warn!(blob = %digest, error = %e, "verified blob could not be cached"),
                Err(e) => tracing::warn!(blob = %digest, error = %e, "cache actor unavailable for commit"),
            }
        }
        Err(Abort { outcome, cause }) => {
            match &outcome {
                Outcome::Failed(error) => {
                    cx.count_body_error(error);
                    tracing::warn!(blob = %digest, error = %error, "blob fetch failed");
                }
                Outcome::PassThrough(reason) => {
                    tracing::info!(blob = %digest, "passing blob through uncached: {reason}")
                }
                Outcome::Done { .. } | Outcome::Abandoned => {}
            }
            publisher.settle(outcome);
            let _ = cx.cache.send(ReleaseBlob { transfer, cause }).await;
        }
    }
}

/// How a download ended without a blob to commit: what followers are told, and why the claim ends.
struct Abort {
    outcome: Outcome,
    cause: Release,
}

impl<E: Into<MirrorError>> From<E> for Abort {
    fn from(error: E) -> Abort {
        Abort { outcome: Outcome::Failed(error.into()), cause: Release::Failed }
    }
}

impl Abort {
    /// The store failed while writing.
    fn store(error: StoreError) -> Abort {
        let outcome = Outcome::Failed(MirrorError::Internal(format!("cache write failed: {error}")));
        Abort { outcome, cause: Release::Store(error) }
    }
}

/// How a batch of body events ended, besides its bytes.
enum BatchEnd {
    More,
    End,
    Failed(UpstreamError),
}

/// Wait for the next body event, then gather whatever else is already waiting (up to `WRITE_BATCH`), so a fast
/// upstream costs one store write per megabyte and a slow one is written as each chunk arrives.
async fn next_batch(body: &mut Body, upstream: &str) -> (Bytes, BatchEnd) {
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
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => return (batch.freeze(), BatchEnd::More),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => None,
        };
    }
}

/// Fetch the blob into the store's writer, resuming what an earlier attempt (or an earlier run) left, publishing
/// progress; returns it complete and verified (not yet durable).
async fn download(
    cx: &FetchContext,
    digest: &Digest,
    publisher: &TransferPublisher,
    routed: bool,
) -> Result<CheckedBlob, Abort> {
    let name = cx.name();
    let (mut writer, unwritable) = match cx.store.begin_blob(digest).await {
        Ok(writer) => (Some(writer), None),
        Err(e) => (None, Some(e)),
    };
    let mut resumed = writer.as_ref().map_or(0, BlobWriter::resumed);
    if resumed > 0 {
        tracing::info!(blob = %digest, resumed, "resuming an unfinished download from byte {resumed}");
    }
    if let Some(whole) = writer.take_if(|w| w.resumed_whole()) {
        // Asking for the bytes after the last one would be refused (416) and start the blob over: commit what is here.
        match cx.cache.send(MakeRoom { digest: digest.clone(), size: resumed, held: resumed }).await {
            Ok(Room::Granted) => {
                publisher.attach(whole.reader());
                publisher.running(resumed, Some(resumed));
                return finish(whole, &name, digest).await;
            }
            _ => writer = Some(whole),
        }
    }
    let mut candidates = sources(cx, digest, routed).into_iter().peekable();
    let (mut source, resp) = loop {
        let Some(source) = candidates.next() else {
            return Err(MirrorError::Internal("no source for the blob".into()).into());
        };
        let validator = writer.as_ref().and_then(BlobWriter::validator);
        let got = match source.get(cx, (resumed > 0).then_some(resumed), validator).await {
            // More bytes than the object has: what was kept is not a prefix of it. Start over.
            Err(MirrorError::Upstream(UpstreamError::Status { status: 416, .. })) if resumed > 0 => {
                if let Some(w) = writer.as_mut() {
                    w.restart().await.map_err(Abort::store)?;
                }
                resumed = 0;
                source.get(cx, None, None).await
            }
            other => other,
        };
        match got {
            Ok(resp) => break (source, resp),
            // An owner that cannot be reached: the next replica in the order (or the upstream) takes over.
            Err(MirrorError::Upstream(e)) if source.peer && candidates.peek().is_some() && e.is_outage() => {
                tracing::info!(blob = %digest, peer = %source.upstream.base_url, error = %e, "owning replica unreachable; asking the next");
            }
            Err(MirrorError::Upstream(UpstreamError::CircuitOpen { .. }))
                if source.peer && candidates.peek().is_some() => {}
            Err(e) => return Err(e.into()),
        }
    };
    if resp.status == 404 {
        if let Some(writer) = writer {
            writer.discard().await;
        }
        return Err(MirrorError::BlobUnknown(digest.clone()).into());
    }
    // 206: the rest after what we hold; 200: the whole object (the upstream ignored the range, or the object it
    // serves is not the one the earlier attempt was fetching).
    let partial = resp.status == 206 && resumed > 0;
    let total = resp.content_length.map(|len| if partial { resumed + len } else { len });
    if let Some(max) = cx.bound.max_blob_size().filter(|max| total.is_some_and(|t| t > max.bytes)) {
        // Refused before a byte of the body is read: dropping it closes the upstream connection.
        drop(resp.body);
        if let Some(writer) = writer {
            writer.discard().await;
        }
        return Err(over_limit(cx, digest, max, total.unwrap_or(0)));
    }
    let limit = cx.bound.limit(&cx.store).await;
    let mut writer = match (writer, unwritable) {
        (Some(writer), _) => writer,
        (None, e) => {
            // Passed on uncached: the waiter that takes the body bounds it (`passthrough`), a body without a length
            // too; one nobody takes is dropped, which closes the upstream connection.
            publisher.hand_off(resp.body, total);
            let cause = Release::Store(e.unwrap_or(StoreError::Unwritable));
            return Err(Abort { outcome: Outcome::PassThrough(PassReason::CacheUnwritable), cause });
        }
    };
    if let Some(size) = total {
        // The cache makes room (evicting under its cap or on a full volume) or says the blob cannot be kept; bytes
        // resumed from an earlier attempt are on the volume already.
        let held = if partial { resumed } else { 0 };
        let room = cx.cache.send(MakeRoom { digest: digest.clone(), size, held }).await;
        if room != Ok(Room::Granted) {
            // Not kept: no bytes of it are worth holding on to either. Only a whole body is handed over: the rest
            // after bytes kept from an earlier attempt (206) is not the blob, so the waiter fetches it whole itself.
            writer.discard().await;
            if partial {
                drop(resp.body);
            } else {
                publisher.hand_off(resp.body, total);
            }
            return Err(Abort {
                outcome: Outcome::PassThrough(PassReason::TooLarge { size }),
                cause: Release::TooLarge { size },
            });
        }
    }
    if !partial && resumed > 0 {
        writer.restart().await.map_err(Abort::store)?;
    }
    if let Some(etag) = &resp.etag {
        if writer.validator().as_deref() != Some(etag.as_str()) {
            writer.set_validator(etag).await.map_err(Abort::store)?;
        }
    }
    publisher.attach(writer.reader());
    publisher.running(writer.written(), total);
    let mut body = resp.body;
    // A resumed transfer answered with the whole body (200 instead of 206): bytes we already have, to drop.
    let mut skip: u64 = 0;
    let mut stalled_resumes = 0u32;
    let mut written_at_last_resume = 0u64;
    // A blob of unknown size asks for room as it grows, like one whose size was announced.
    let mut room = UnknownSizeRoom::default();
    loop {
        let (mut data, end) = next_batch(&mut body, &name).await;
        if skip > 0 {
            let n = skip.min(data.len() as u64);
            data = data.slice(n as usize..);
            skip -= n;
        }
        if !data.is_empty() {
            let after = writer.written() + data.len() as u64;
            // Checked before the bytes are written: nothing past the announced length, or past the bound when none.
            if let Some(t) = total.filter(|t| after > *t) {
                writer.discard().await;
                return Err(UpstreamError::LengthMismatch { upstream: name, expected: t, got: after }.into());
            }
            if let Some(limit) = limit.filter(|l| total.is_none() && after > l.bytes) {
                writer.discard().await;
                return Err(over_limit(cx, digest, limit, after));
            }
            if total.is_none() {
                if let Err(abort) = room.cover(cx, digest, after, writer.written(), limit).await {
                    writer.discard().await;
                    return Err(abort);
                }
            }
            write(&mut writer, data, total).await?;
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
                let mut validator = writer.validator();
                let resp = loop {
                    match source.get(cx, Some(written), validator.clone()).await {
                        Ok(resp) => break resp,
                        // The owning replica went away mid-transfer: the next one (or the upstream) gives the rest.
                        // Its validator means nothing there; the digest check at the end guards the whole.
                        Err(MirrorError::Upstream(e))
                            if source.peer && candidates.peek().is_some() && e.is_outage() =>
                        {
                            tracing::info!(blob = %digest, peer = %source.upstream.base_url, error = %e, "owning replica gone mid-transfer; resuming from the next source");
                            source = candidates.next().expect("peeked");
                            validator = None;
                        }
                        Err(e) => return Err(e.into()),
                    }
                };
                match resp.status {
                    206 => skip = 0,
                    200 => skip = written,
                    _ => return Err(MirrorError::BlobUnknown(digest.clone()).into()),
                }
                body = resp.body;
            }
        }
    }
    let size = writer.written();
    if let Some(total) = total.filter(|t| *t != size) {
        // Not a prefix of the blob worth resuming.
        writer.discard().await;
        return Err(UpstreamError::LengthMismatch { upstream: name, expected: total, got: size }.into());
    }
    finish(writer, &name, digest).await
}

/// Room a blob of unknown size grows by at least, ahead of its writes (each step a `MakeRoom`).
const ROOM_STEP: u64 = 16 * 1024 * 1024;

/// The room the cache actor granted a blob of unknown size so far: it is asked for more (a quarter more, at least
/// `ROOM_STEP`, never past the bound; or, when that is refused, just what the next write needs) before a write would
/// pass it, so `maxCacheSize` (evicting) and `minFreeSpace` apply to it as to a blob whose size was announced.
#[derive(Default)]
struct UnknownSizeRoom {
    granted: u64,
}

impl UnknownSizeRoom {
    /// Make sure `after` bytes fit (`held` of them are on the volume already). A refusal ends the transfer: its
    /// followers have part of the bytes, so the blob is passed through uncached for a while, as one that is too large.
    async fn cover(
        &mut self,
        cx: &FetchContext,
        digest: &Digest,
        after: u64,
        held: u64,
        limit: Option<Limit>,
    ) -> Result<(), Abort> {
        if after <= self.granted {
            return Ok(());
        }
        let ahead = after.saturating_add(ROOM_STEP).max(self.granted + self.granted / 4);
        let ahead = limit.map_or(ahead, |l| ahead.min(l.bytes)).max(after);
        // Room ahead of the writes; near a full volume, just what this write needs.
        for want in [ahead, after] {
            if cx.cache.send(MakeRoom { digest: digest.clone(), size: want, held }).await == Ok(Room::Granted) {
                self.granted = want;
                return Ok(());
            }
            if want == after {
                break;
            }
        }
        tracing::warn!(blob = %digest, upstream = %cx.name(), written = held, "no room in the cache for more of a blob of unknown size; transfer stopped, nothing kept");
        let detail = format!("the cache has no room for {digest} past {held} bytes");
        Err(Abort { outcome: Outcome::Failed(MirrorError::Internal(detail)), cause: Release::TooLarge { size: after } })
    }
}

/// A blob that announced, or sent, more than `limit`: logged once with its digest and upstream; the error fails the
/// transfer (counted in `ociregistry_upstream_errors_total{reason="too_large"}`), and the next request tries anew.
fn over_limit(cx: &FetchContext, digest: &Digest, limit: Limit, size: u64) -> Abort {
    let upstream = cx.name();
    tracing::warn!(blob = %digest, %upstream, size, limit = %limit, "blob exceeds the largest blob accepted; transfer stopped, nothing kept");
    UpstreamError::TooLarge { upstream, limit: usize::try_from(limit.bytes).unwrap_or(usize::MAX) }.into()
}

/// Verify the whole blob.
async fn finish(writer: BlobWriter, upstream: &str, digest: &Digest) -> Result<CheckedBlob, Abort> {
    match writer.verify().await {
        Ok(blob) => Ok(blob),
        Err(FinishError::Mismatch(actual)) => {
            Err(UpstreamError::DigestMismatch { upstream: upstream.to_string(), expected: digest.clone(), actual }
                .into())
        }
        Err(FinishError::Store(e)) => Err(Abort::store(e)),
    }
}

/// Append one batch. A full disk ends the transfer (followers already have part of the bytes, so they cannot be
/// switched to an uncached copy); the cache actor then evicts to make room, or passes this blob through for a while
/// when nothing can go.
async fn write(writer: &mut BlobWriter, data: Bytes, total: Option<u64>) -> Result<(), Abort> {
    match writer.append(data).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_disk_full() => {
            let size = total.unwrap_or(0);
            let outcome =
                Outcome::Failed(MirrorError::Internal(format!("the cache filled up while storing the blob: {e}")));
            Err(Abort { outcome, cause: Release::DiskFull { size } })
        }
        Err(e) => Err(Abort::store(e)),
    }
}
