//! The leader's side of the store: the body gathered into batches, each written after the checks and the room it
//! needs (a blob of unknown size asks for room as it grows), the whole verified at the end; and how a download ends
//! without a blob to commit (`Abort`: what followers are told, why the claim ends).

use bytes::{Bytes, BytesMut};

use crate::body::{Body, BodyEvent};
use crate::digest::Digest;
use crate::error::{MirrorError, StoreError, UpstreamError};
use crate::fetch::bound::Limit;
use crate::fetch::context::FetchContext;
use crate::messages::{MakeRoom, Release, Room};
use crate::outcome::Outcome;
use crate::store::{BlobWriter, CheckedBlob, FinishError};

/// Most bytes gathered from the body channel into one store write.
const WRITE_BATCH: usize = 1024 * 1024;

/// How a download ended without a blob to commit: what followers are told, and why the claim ends.
pub(super) struct Abort {
    pub outcome: Outcome,
    pub cause: Release,
}

impl<E: Into<MirrorError>> From<E> for Abort {
    fn from(error: E) -> Abort {
        Abort { outcome: Outcome::Failed(error.into()), cause: Release::Failed }
    }
}

impl Abort {
    /// The store failed while writing.
    pub(super) fn store(error: StoreError) -> Abort {
        let outcome = Outcome::Failed(MirrorError::Internal(format!("cache write failed: {error}")));
        Abort { outcome, cause: Release::Store(error) }
    }
}

/// How a batch of body events ended, besides its bytes.
pub(super) enum BatchEnd {
    More,
    End,
    Failed(UpstreamError),
}

/// Wait for the next body event, then gather whatever else is already waiting (up to `WRITE_BATCH`), so a fast
/// upstream costs one store write per megabyte and a slow one is written as each chunk arrives.
pub(super) async fn next_batch(body: &mut Body, upstream: &str) -> (Bytes, BatchEnd) {
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

/// Room a blob of unknown size grows by at least, ahead of its writes (each step a `MakeRoom`).
const ROOM_STEP: u64 = 16 * 1024 * 1024;

/// The room the cache actor granted a blob of unknown size so far: it is asked for more (a quarter more, at least
/// `ROOM_STEP`, never past the bound; or, when that is refused, just what the next write needs) before a write would
/// pass it, so `maxCacheSize` (evicting) and `minFreeSpace` apply to it as to a blob whose size was announced.
#[derive(Default)]
pub(super) struct UnknownSizeRoom {
    granted: u64,
}

impl UnknownSizeRoom {
    /// Make sure `after` bytes fit (`held` of them are on the volume already). A refusal ends the transfer: its
    /// followers have part of the bytes, so the blob is passed through uncached for a while, as one that is too large.
    pub(super) async fn cover(
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
pub(super) fn over_limit(cx: &FetchContext, digest: &Digest, limit: Limit, size: u64) -> Abort {
    let upstream = cx.name();
    tracing::warn!(blob = %digest, %upstream, size, limit = %limit, "blob exceeds the largest blob accepted; transfer stopped, nothing kept");
    UpstreamError::TooLarge { upstream, limit: usize::try_from(limit.bytes).unwrap_or(usize::MAX) }.into()
}

/// Verify the whole blob.
pub(super) async fn finish(writer: BlobWriter, upstream: &str, digest: &Digest) -> Result<CheckedBlob, Abort> {
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
pub(super) async fn write(writer: &mut BlobWriter, data: Bytes, total: Option<u64>) -> Result<(), Abort> {
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
