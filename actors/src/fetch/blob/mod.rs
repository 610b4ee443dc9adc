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
//!
//! Files: this one leads (the claim settled, the source chosen, resumes, the commit); `source` (the upstream, or the
//! replicas owning the digest), `write` (batches into the store, room for a blob of unknown size, the verification,
//! and `Abort`, how a download ends without a blob).

mod cover;
mod source;
mod write;

use self::cover::{cover, reopen};
use self::source::sources;
use self::write::{finish, next_batch, over_limit, write, Abort, BatchEnd, UnknownSizeRoom};
use super::context::{FetchContext, InFlight};
use crate::claim::Lease;
use crate::digest::Digest;
use crate::error::{MirrorError, StoreError, UpstreamError};
use crate::messages::{CommitBlob, MakeRoom, Release, ReleaseBlob, Room};
use crate::outcome::{Outcome, PassReason};
use crate::store::{BlobWriter, CheckedBlob};
use crate::transfer::TransferPublisher;

/// Resumes in a row that brought no new byte before a broken blob transfer is given up. Resumes that make progress
/// do not count: on an intermittent link a large layer may need many.
const MAX_STALLED_RESUMES: u32 = 3;

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
    publisher.pieces().attach(writer.patcher(), writer.written());
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
        // Up to a piece fetched ahead (`pieces.rs`), if one begins within this batch.
        let own = publisher.pieces().sequential_room(writer.written(), data.len() as u64);
        let at_piece = own < data.len() as u64;
        data.truncate(own as usize);
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
        if at_piece {
            // This connection has brought what the piece does not: stop it, take the pieces' bytes, fetch on after.
            drop(body);
            cover(&mut writer, publisher, total).await?;
            let written = writer.written();
            if total.is_some_and(|t| written >= t) {
                break;
            }
            (body, skip) = reopen(cx, &mut source, &mut candidates, digest, written, writer.validator()).await?;
            continue;
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
                (body, skip) = reopen(cx, &mut source, &mut candidates, digest, written, writer.validator()).await?;
            }
        }
    }
    let size = writer.written();
    if let Some(total) = total.filter(|t| *t != size) {
        // Not a prefix of the blob worth resuming.
        writer.discard().await;
        return Err(UpstreamError::LengthMismatch { upstream: name, expected: total, got: size }.into());
    }
    // No piece writes a byte more: what is hashed is what is committed.
    publisher.pieces().close().await;
    finish(writer, &name, digest).await
}
