//! The transfer's side of pieces fetched ahead (`pieces.rs`): where its own stream has reached a piece, it takes the
//! piece's bytes as they are filled (read back and hashed in order, `BlobWriter::adopt`) and publishes them to its
//! followers like bytes it appended itself; a piece that stopped short or stalls is revoked and the transfer fetches
//! on from where it is (`reopen`).

use std::iter::Peekable;
use std::time::Instant;
use std::vec::IntoIter;

use super::source::Source;
use super::write::Abort;
use crate::body::Body;
use crate::digest::Digest;
use crate::error::MirrorError;
use crate::fetch::context::FetchContext;
use crate::pieces::STALL;
use crate::store::BlobWriter;
use crate::transfer::TransferPublisher;

/// Take the bytes of the pieces that begin where `writer` is, one after the other, until a gap, a piece that
/// stopped short or stalled, or the end.
pub(super) async fn cover(
    writer: &mut BlobWriter,
    publisher: &TransferPublisher,
    total: Option<u64>,
) -> Result<(), Abort> {
    let pieces = publisher.pieces();
    let mut changed = pieces.subscribe();
    // The piece waited on, how far it was filled, and since when (other pieces' progress does not count).
    let mut waiting: Option<(u64, u64, Instant)> = None;
    loop {
        let at = writer.written();
        let Some(piece) = pieces.at(at) else { return Ok(()) };
        if piece.filled > at {
            writer.adopt(piece.filled - at).await.map_err(Abort::store)?;
            publisher.adopted(piece.filled - at, writer.written(), total);
            continue;
        }
        if piece.stopped {
            pieces.revoke(piece.id).await;
            return Ok(());
        }
        let since = match waiting {
            Some((id, filled, since)) if id == piece.id && filled == piece.filled => since,
            _ => Instant::now(),
        };
        waiting = Some((piece.id, piece.filled, since));
        let left = STALL.saturating_sub(since.elapsed());
        if left.is_zero() {
            // Nothing for `STALL` (its client reads slowly, or its upstream stalls): the transfer takes over.
            tracing::debug!(offset = at, "a piece fetched ahead stalled; the transfer fetches its bytes itself");
            pieces.revoke(piece.id).await;
            return Ok(());
        }
        let _ = tokio::time::timeout(left, changed.changed()).await;
    }
}

/// A GET of the blob from `written` on (`If-Range`: still the object of `validator`), from `source` or, when the
/// owning replica has gone, the next of `candidates`: the body, and how many of its bytes to drop (an upstream that
/// ignores `Range` sends the whole blob again).
pub(super) async fn reopen(
    cx: &FetchContext,
    source: &mut Source,
    candidates: &mut Peekable<IntoIter<Source>>,
    digest: &Digest,
    written: u64,
    mut validator: Option<String>,
) -> Result<(Body, u64), Abort> {
    let resp = loop {
        match source.get(cx, Some(written), validator.clone()).await {
            Ok(resp) => break resp,
            // The owning replica went away mid-transfer: the next one (or the upstream) gives the rest. Its
            // validator means nothing there; the digest check at the end guards the whole.
            Err(MirrorError::Upstream(e)) if source.peer && candidates.peek().is_some() && e.is_outage() => {
                tracing::info!(blob = %digest, peer = %source.upstream.base_url, error = %e, "owning replica gone mid-transfer; resuming from the next source");
                if let Some(next) = candidates.next() {
                    *source = next;
                }
                validator = None;
            }
            Err(e) => return Err(e.into()),
        }
    };
    match resp.status {
        206 => Ok((resp.body, 0)),
        200 => Ok((resp.body, written)),
        _ => Err(MirrorError::BlobUnknown(digest.clone()).into()),
    }
}
