//! Blob transfers: the leader streams the upstream body into the cache's writer while every reader follows the
//! file, resumes a broken connection from the byte reached, verifies the digest and commits.

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::{blob_path, FetchContext, InFlight};
use crate::error::{MirrorError, StoreError, UpstreamError};
use crate::messages::{BodyEvent, CommitBlob, ReleaseBlob};
use crate::store::{BlobLease, BlobWriter};
use crate::transfer::TransferPublisher;

/// Resumes in a row that brought no new byte before a broken blob transfer is given up. Resumes that make progress
/// do not count: on an intermittent link a large layer may need many.
const MAX_STALLED_RESUMES: u32 = 3;
/// Most bytes gathered from the body channel into one disk write.
const WRITE_BATCH: usize = 1024 * 1024;

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
