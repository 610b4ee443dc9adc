//! Pieces of a blob fetched ahead of its transfer (issue 25): a range passed through from the upstream
//! (`mirror/ahead.rs`) writes the bytes it brings into the blob's partial download at their offset (`store::Patch`),
//! and the transfer does not fetch them again. Its sequential stream stops where a piece begins
//! (`sequential_room`); it then takes the piece's bytes as they are filled, reading them back and hashing them in order
//! (`BlobWriter::adopt`), and fetches on with a ranged request after the piece. A piece that stops short (its client
//! left, its upstream broke) or brings nothing for `STALL` is revoked, and the transfer fetches the rest itself.
//!
//! Soundness: a piece never writes before the transfer's position. A claim is refused when it starts before what
//! the transfer has taken for its own stream, and each piece write holds the piece's gate, under which the transfer
//! revokes it: once revoked (or once the transfer closes every piece, before it verifies the blob), a piece writes
//! nothing more, so no byte changes after it was hashed. Overlapping claims are refused (the second range is then
//! passed through without being kept).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::store::Patch;

/// How long the transfer waits for a piece that brings nothing before it fetches the bytes itself.
pub const STALL: Duration = Duration::from_secs(2);

/// The pieces of one transfer. See the module documentation.
#[derive(Default)]
pub struct Pieces {
    state: Mutex<State>,
    /// Where pieces write; set by the leader when its writer can take them.
    patch: OnceLock<Arc<dyn Patch>>,
    /// Bumped on every piece's progress or end.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// The transfer has taken the bytes before this for its own stream: no piece may start before it.
    sequential: u64,
    pieces: Vec<Entry>,
    next_id: u64,
    /// The transfer is verifying or has ended: no more claims.
    closed: bool,
}

struct Entry {
    id: u64,
    start: u64,
    end: u64,
    /// Written up to here (absolute offset).
    filled: u64,
    /// The piece will write nothing more.
    stopped: bool,
    /// Held for each write; `true` once revoked.
    gate: Arc<tokio::sync::Mutex<bool>>,
}

/// A piece as the transfer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub id: u64,
    pub start: u64,
    pub end: u64,
    pub filled: u64,
    pub stopped: bool,
}

/// A range's claim on `start..end`: what it writes goes into the partial download. Dropping it stops the piece.
pub struct Piece {
    pieces: Arc<Pieces>,
    id: u64,
    next: u64,
    gate: Arc<tokio::sync::Mutex<bool>>,
    patch: Arc<dyn Patch>,
}

impl Pieces {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The leader's writer can take pieces (`patch`); it holds `written` bytes so far.
    pub fn attach(&self, patch: Option<Arc<dyn Patch>>, written: u64) {
        if let Some(patch) = patch {
            self.lock().sequential = written;
            let _ = self.patch.set(patch);
        }
    }

    /// Claim `start..end` for a range fetched ahead, unless the transfer has taken that far, another piece overlaps
    /// it, pieces are not kept, or the transfer is closing.
    pub fn claim(self: &Arc<Self>, start: u64, end: u64) -> Option<Piece> {
        let patch = self.patch.get()?.clone();
        let mut state = self.lock();
        if state.closed || start < state.sequential || start >= end {
            return None;
        }
        if state.pieces.iter().any(|p| p.start < end && start < p.end) {
            return None;
        }
        let id = state.next_id;
        state.next_id += 1;
        let gate = Arc::new(tokio::sync::Mutex::new(false));
        state.pieces.push(Entry { id, start, end, filled: start, stopped: false, gate: gate.clone() });
        Some(Piece { pieces: self.clone(), id, next: start, gate, patch })
    }

    /// How many of `want` bytes after `written` the transfer may take from its own stream: up to the next piece.
    pub fn sequential_room(&self, written: u64, want: u64) -> u64 {
        let mut state = self.lock();
        let next = state.pieces.iter().map(|p| p.start).filter(|s| *s >= written).min();
        let room = next.map_or(want, |s| want.min(s - written));
        state.sequential = state.sequential.max(written + room);
        room
    }

    /// The piece that holds byte `written`, forgetting those the transfer has passed (in the same step as it
    /// refuses claims before `written`: no piece ever starts among bytes the transfer has hashed).
    pub fn at(&self, written: u64) -> Option<View> {
        let mut state = self.lock();
        state.sequential = state.sequential.max(written);
        state.pieces.retain(|p| p.end > written);
        state.pieces.iter().find(|p| p.start <= written).map(|p| View {
            id: p.id,
            start: p.start,
            end: p.end,
            filled: p.filled,
            stopped: p.stopped,
        })
    }

    /// A receiver that sees every piece's progress.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Stop piece `id` from writing (waiting for a write under way) and forget it: the transfer fetches its bytes.
    pub async fn revoke(&self, id: u64) {
        let gate = {
            let mut state = self.lock();
            let Some(i) = state.pieces.iter().position(|p| p.id == id) else { return };
            state.pieces.remove(i).gate
        };
        *gate.lock().await = true;
    }

    /// No more claims, and no piece writes anything more (the transfer is about to verify the blob, or ends).
    pub async fn close(&self) {
        let gates: Vec<_> = {
            let mut state = self.lock();
            state.closed = true;
            state.pieces.drain(..).map(|p| p.gate).collect()
        };
        for gate in gates {
            *gate.lock().await = true;
        }
    }

    fn note(&self, id: u64, filled: Option<u64>) {
        {
            let mut state = self.lock();
            if let Some(p) = state.pieces.iter_mut().find(|p| p.id == id) {
                match filled {
                    Some(f) => p.filled = f,
                    None => p.stopped = true,
                }
            }
            // A piece that stopped before its first byte (its upstream's answer was refused) is no stretch to stop at.
            state.pieces.retain(|p| !(p.stopped && p.filled == p.start));
        }
        self.bump();
    }
}

impl Piece {
    /// Write the next bytes of the piece; `false` once it writes nothing more (revoked, or the write failed): the
    /// caller goes on without it.
    pub async fn write(&mut self, data: Bytes) -> bool {
        let len = data.len() as u64;
        let gate = self.gate.lock().await;
        if *gate {
            return false;
        }
        if let Err(e) = self.patch.write_at(self.next, data).await {
            tracing::debug!(error = %e, "a piece fetched ahead could not be kept; the transfer fetches it itself");
            return false;
        }
        self.next += len;
        self.pieces.note(self.id, Some(self.next));
        true
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        self.pieces.note(self.id, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StoreError;
    use async_trait::async_trait;

    #[derive(Default)]
    struct Writes(Mutex<Vec<(u64, usize)>>);

    #[async_trait]
    impl Patch for Writes {
        async fn write_at(&self, offset: u64, data: Bytes) -> Result<(), StoreError> {
            self.0.lock().expect("lock").push((offset, data.len()));
            Ok(())
        }
    }

    fn pieces() -> (Arc<Pieces>, Arc<Writes>) {
        let (pieces, writes) = (Arc::new(Pieces::default()), Arc::new(Writes::default()));
        pieces.attach(Some(writes.clone()), 0);
        (pieces, writes)
    }

    #[tokio::test]
    async fn the_transfer_stops_where_a_piece_begins_and_sees_it_fill() {
        let (pieces, writes) = pieces();
        let mut piece = pieces.claim(100, 200).expect("claimed");
        assert!(pieces.claim(150, 250).is_none(), "overlapping");
        assert_eq!(pieces.sequential_room(0, 64), 64);
        assert_eq!(pieces.sequential_room(64, 64), 36, "up to the piece");
        assert!(pieces.claim(90, 99).is_none(), "behind what the transfer took");
        assert!(piece.write(Bytes::from(vec![0; 60])).await);
        assert_eq!(pieces.at(100), Some(View { id: 0, start: 100, end: 200, filled: 160, stopped: false }));
        drop(piece);
        assert!(pieces.at(160).expect("still there").stopped);
        drop(pieces.claim(300, 400).expect("claimed"));
        assert_eq!(pieces.sequential_room(200, 200), 200, "a piece that brought nothing is forgotten");
        assert!(pieces.at(200).is_none(), "passed");
        assert!(pieces.claim(150, 180).is_none(), "among bytes the transfer has taken over");
        assert_eq!(*writes.0.lock().expect("lock"), vec![(100, 60)]);
    }

    #[tokio::test]
    async fn a_revoked_or_closed_piece_writes_nothing_more() {
        let (pieces, writes) = pieces();
        let mut piece = pieces.claim(10, 20).expect("claimed");
        pieces.revoke(0).await;
        assert!(!piece.write(Bytes::from_static(b"x")).await);
        let mut other = pieces.claim(30, 40).expect("claimed");
        pieces.close().await;
        assert!(!other.write(Bytes::from_static(b"x")).await);
        assert!(pieces.claim(50, 60).is_none(), "closed");
        assert!(writes.0.lock().expect("lock").is_empty());
    }

    #[test]
    fn without_a_patch_nothing_is_claimed() {
        let pieces = Arc::new(Pieces::default());
        pieces.attach(None, 0);
        assert!(pieces.claim(10, 20).is_none());
    }
}
