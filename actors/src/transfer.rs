//! A blob on its way from the upstream into the store, the readers that follow it, and how it ends.
//!
//! The leader appends the bytes to the store's writer and publishes its progress through a `watch` channel; every
//! client reading the blob holds a `Transfer` and reads the growing object, from byte 0 or from its range, as far as
//! the progress allows, then waits for more. Readers never get the blob's last byte before the digest has been
//! verified. Every transfer ends in exactly one explicit `Outcome`, which every reader sees: `Done`, `Failed` (with
//! the error, whose kind maps to an HTTP status), `PassThrough` (the bytes cannot be cached; fetch them uncached) or
//! `Abandoned` (the leader went away without an outcome: its publisher's `Drop` says so, since a closed channel is
//! not a finished write).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::watch;

use crate::body::Body;
use crate::digest::Digest;
use crate::error::MirrorError;
use crate::outcome::{Outcome, PassReason, Progress};
use crate::pace::Pace;
use crate::pieces::{Piece, Pieces};
use crate::read::{object_stream, transfer_stretches, ByteStream, Limit, StretchStream};
use crate::store::ObjectReader;

/// What a request that joined a transfer does next.
#[derive(Debug)]
pub enum Joined {
    /// Stream from the transfer (running, or already done); the size when known.
    Stream {
        /// The announced (or final) size.
        total: Option<u64>,
    },
    /// Fetch the bytes uncached.
    PassThrough(PassReason),
    /// Fail with this error.
    Failed(MirrorError),
    /// Ask again.
    Abandoned,
}

/// A reader's handle on a transfer. Cheap to clone.
#[derive(Clone)]
pub struct Transfer {
    shared: Arc<Shared>,
    /// This handle was given out after the blob was verified (while it is committed): whoever follows it asks the
    /// upstream for nothing, as with a cache hit.
    verified_when_joined: bool,
}

struct Shared {
    digest: Digest,
    /// The growing object, attached by the leader before it publishes the first bytes.
    object: OnceLock<Arc<dyn ObjectReader>>,
    progress: watch::Receiver<Progress>,
    /// The upstream body of a blob found too large to cache, for the first waiter to stream uncached.
    handoff: Mutex<Option<(Body, Option<u64>)>>,
    /// Client streams opened on this transfer (for the coalescing metric).
    readers: AtomicUsize,
    /// Where the reader count goes once every handle is gone (set by the leader).
    waiters_metric: OnceLock<prometheus::Histogram>,
    /// How fast the bytes arrive (for a range ahead of them: wait, or fetch it on its own).
    pace: Pace,
    /// Ranges fetched ahead, whose bytes the transfer takes instead of fetching them again.
    pieces: Arc<Pieces>,
}

impl Drop for Shared {
    /// Every handle is gone, so no client can still join: the count of readers is final.
    fn drop(&mut self) {
        if let Some(histogram) = self.waiters_metric.get() {
            histogram.observe(*self.readers.get_mut() as f64);
        }
    }
}

/// The leader's side. Dropping it without `settle` settles the transfer as `Abandoned`.
pub struct TransferPublisher {
    tx: watch::Sender<Progress>,
    shared: Arc<Shared>,
    settled: bool,
}

/// A new transfer of `digest`.
pub fn transfer(digest: Digest) -> (Transfer, TransferPublisher) {
    let (tx, rx) = watch::channel(Progress::Starting);
    let shared = Arc::new(Shared {
        digest,
        object: OnceLock::new(),
        progress: rx,
        handoff: Mutex::new(None),
        readers: AtomicUsize::new(0),
        waiters_metric: OnceLock::new(),
        pace: Pace::default(),
        pieces: Arc::default(),
    });
    (Transfer { shared: shared.clone(), verified_when_joined: false }, TransferPublisher { tx, shared, settled: false })
}

impl TransferPublisher {
    /// Where readers find the bytes (before the first `running`).
    pub fn attach(&self, object: Arc<dyn ObjectReader>) {
        let _ = self.shared.object.set(object);
    }

    /// The pieces fetched ahead of this transfer (`pieces`).
    pub fn pieces(&self) -> &Pieces {
        &self.shared.pieces
    }

    /// Report `len` bytes taken at once from pieces fetched ahead (`pieces`), now `written` in all: published like
    /// any progress, but not counted in the transfer's own rate.
    pub fn adopted(&self, len: u64, written: u64, total: Option<u64>) {
        self.shared.pace.leap(len);
        self.running(written, total);
    }

    /// Report bytes stored so far (and the announced size).
    pub fn running(&self, written: u64, total: Option<u64>) {
        self.shared.pace.note(written, Instant::now());
        self.tx.send_replace(Progress::Running { written, total });
    }

    /// Offer the upstream body to the first waiter that passes the blob through (before settling `PassThrough`).
    pub fn hand_off(&self, body: Body, len: Option<u64>) {
        *self.shared.handoff.lock().unwrap_or_else(|p| p.into_inner()) = Some((body, len));
    }

    /// End the transfer.
    pub fn settle(mut self, outcome: Outcome) {
        self.settled = true;
        self.tx.send_replace(Progress::Settled(outcome));
    }
}

impl Drop for TransferPublisher {
    fn drop(&mut self) {
        if !self.settled {
            self.tx.send_replace(Progress::Settled(Outcome::Abandoned));
            debug_assert!(std::thread::panicking(), "transfer publisher dropped without an outcome");
        }
    }
}

impl Transfer {
    /// The blob being transferred.
    pub fn digest(&self) -> &Digest {
        &self.shared.digest
    }

    /// Whether two handles follow the same transfer.
    pub fn same(&self, other: &Transfer) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Whether the transfer has ended.
    pub fn is_settled(&self) -> bool {
        matches!(*self.shared.progress.borrow(), Progress::Settled(_))
    }

    /// Whether the transfer ended with the whole blob verified (it may still be being committed).
    pub fn is_done(&self) -> bool {
        matches!(*self.shared.progress.borrow(), Progress::Settled(Outcome::Done { .. }))
    }

    /// A handle for a request that joins this transfer once it is verified (see `served_verified`).
    pub fn joined_verified(&self) -> Transfer {
        Transfer { shared: self.shared.clone(), verified_when_joined: true }
    }

    /// Whether this handle was given out after the blob was verified: its follower is served like a cache hit.
    pub fn served_verified(&self) -> bool {
        self.verified_when_joined
    }

    /// Whether this transfer has delivered byte `offset`, or will within about a second at its current pace
    /// (`pace`): a range starting there waits for it rather than being fetched on its own. True once it has ended.
    pub fn reaches_soon(&self, offset: u64) -> bool {
        match &*self.shared.progress.borrow() {
            Progress::Starting => false,
            Progress::Running { written, .. } => self.shared.pace.reaches_soon(*written, offset, Instant::now()),
            Progress::Settled(_) => true,
        }
    }

    /// Claim `start..end` for a range fetched ahead of this transfer: its bytes go into the download (`pieces`).
    pub fn claim_piece(&self, start: u64, end: u64) -> Option<Piece> {
        self.shared.pieces.claim(start, end)
    }

    /// Wait until the upstream has answered (or the transfer ended), and say what to do.
    pub async fn join(&self) -> Joined {
        let mut rx = self.shared.progress.clone();
        loop {
            match &*rx.borrow_and_update() {
                Progress::Starting => {}
                Progress::Running { total, .. } => return Joined::Stream { total: *total },
                Progress::Settled(Outcome::Done { size }) => return Joined::Stream { total: Some(*size) },
                Progress::Settled(Outcome::Failed(e)) => return Joined::Failed(e.clone()),
                Progress::Settled(Outcome::PassThrough(r)) => return Joined::PassThrough(r.clone()),
                Progress::Settled(Outcome::Abandoned) => return Joined::Abandoned,
            }
            if rx.changed().await.is_err() {
                return Joined::Abandoned;
            }
        }
    }

    /// Wait for the outcome.
    pub async fn outcome(&self) -> Outcome {
        let mut rx = self.shared.progress.clone();
        loop {
            if let Progress::Settled(outcome) = &*rx.borrow_and_update() {
                return outcome.clone();
            }
            if rx.changed().await.is_err() {
                return Outcome::Abandoned;
            }
        }
    }

    /// Take the leader's upstream body of a blob that is passed through, if no other waiter took it.
    pub fn take_handoff(&self) -> Option<(Body, Option<u64>)> {
        self.shared.handoff.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Record the final number of readers in `histogram` when the last handle on this transfer is dropped.
    pub fn observe_readers_with(&self, histogram: prometheus::Histogram) {
        let _ = self.shared.waiters_metric.set(histogram);
    }

    /// The bytes `start..end` (end exclusive; `None` = to the end), as they become available.
    pub fn stream(&self, start: u64, end: Option<u64>) -> ByteStream {
        let object = self.reader();
        object_stream(object, (start, end), Limit::Live(self.shared.progress.clone()), None)
    }

    /// The same for a connection that can send files: large stretches come as ranges of the file the transfer writes
    /// (`read::Stretch`).
    pub fn stretches(&self, start: u64, end: Option<u64>) -> StretchStream {
        let object = self.reader();
        transfer_stretches(object, (start, end), self.shared.progress.clone())
    }

    /// The object a new reader reads, counting the reader.
    fn reader(&self) -> Option<Arc<dyn ObjectReader>> {
        // A reader that joined once the blob was verified is a cache hit, not a waiter on the fetch.
        if !self.verified_when_joined {
            self.shared.readers.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.object.get().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{object_stream, read_whole, Check, Checked};
    use bytes::Bytes;
    use futures_util::future::BoxFuture;
    use futures_util::{FutureExt, StreamExt};
    use std::time::Duration;

    /// A growing object in memory.
    #[derive(Clone, Default)]
    struct Grow(Arc<Mutex<Vec<u8>>>);

    impl Grow {
        fn push(&self, bytes: &[u8]) {
            self.0.lock().expect("lock").extend_from_slice(bytes);
        }
    }

    impl ObjectReader for Grow {
        fn read_range(&self, offset: u64, len: usize) -> BoxFuture<'static, std::io::Result<Bytes>> {
            let buf = self.0.lock().expect("lock");
            let start = (offset as usize).min(buf.len());
            let out = Bytes::copy_from_slice(&buf[start..(start + len).min(buf.len())]);
            async move { Ok(out) }.boxed()
        }
    }

    fn started(grow: &Grow) -> (Transfer, TransferPublisher) {
        let (t, p) = transfer(Digest::sha256_of(b"x"));
        p.attach(Arc::new(grow.clone()));
        (t, p)
    }

    async fn next(s: &mut ByteStream) -> Option<Result<Bytes, std::io::Error>> {
        tokio::time::timeout(Duration::from_secs(5), s.next()).await.expect("reader stalled")
    }

    #[tokio::test]
    async fn a_reader_follows_the_writer_but_gets_the_last_byte_only_when_done() {
        let grow = Grow::default();
        let (t, publisher) = started(&grow);
        grow.push(b"hello");
        publisher.running(5, Some(10));
        assert!(matches!(t.join().await, Joined::Stream { total: Some(10) }));
        let mut s = t.stream(0, None);
        assert_eq!(next(&mut s).await.expect("chunk").expect("ok"), Bytes::from_static(b"hell"));
        let pending = tokio::time::timeout(Duration::from_millis(100), s.next()).await;
        assert!(pending.is_err(), "the fifth byte is held back while running, got {pending:?}");
        grow.push(b"world");
        publisher.running(10, Some(10));
        assert_eq!(next(&mut s).await.expect("chunk").expect("ok"), Bytes::from_static(b"oworl"));
        publisher.settle(Outcome::Done { size: 10 });
        assert_eq!(next(&mut s).await.expect("chunk").expect("ok"), Bytes::from_static(b"d"));
        assert!(next(&mut s).await.is_none(), "clean end after done");
    }

    #[tokio::test]
    async fn late_readers_start_from_byte_zero_and_ranges_work() {
        let grow = Grow::default();
        let (t, publisher) = started(&grow);
        grow.push(b"0123456789");
        publisher.running(10, Some(10));
        let mut late = t.stream(0, None);
        assert_eq!(next(&mut late).await.expect("chunk").expect("ok"), Bytes::from_static(b"012345678"));
        let mut ranged = t.stream(2, Some(5));
        assert_eq!(next(&mut ranged).await.expect("chunk").expect("ok"), Bytes::from_static(b"234"));
        assert!(next(&mut ranged).await.is_none(), "a range that ends before the held-back byte completes");
        publisher.settle(Outcome::Done { size: 10 });
        assert_eq!(next(&mut late).await.expect("chunk").expect("ok"), Bytes::from_static(b"9"));
    }

    #[tokio::test]
    async fn every_outcome_but_done_reaches_readers_as_an_error_never_a_clean_end() {
        for outcome in [
            Outcome::Failed(MirrorError::Internal("digest mismatch".into())),
            Outcome::PassThrough(PassReason::CacheUnwritable),
        ] {
            let grow = Grow::default();
            let (t, publisher) = started(&grow);
            let mut s = t.stream(0, None);
            grow.push(b"abc");
            publisher.running(3, Some(3));
            assert_eq!(next(&mut s).await.expect("chunk").expect("ok"), Bytes::from_static(b"ab"));
            publisher.settle(outcome.clone());
            assert!(next(&mut s).await.expect("an item").is_err(), "{outcome:?} must surface as an error");
            assert!(next(&mut s).await.is_none(), "the stream ends after the error");
        }
    }

    #[tokio::test]
    async fn a_dropped_publisher_is_abandoned() {
        let grow = Grow::default();
        let (t, publisher) = started(&grow);
        let mut s = t.stream(0, None);
        // Dropping outside a panic trips the debug assertion; do it in a thread that expects to panic.
        let _ = std::thread::spawn(move || drop(publisher)).join();
        assert!(next(&mut s).await.expect("an item").is_err());
        assert!(matches!(t.join().await, Joined::Abandoned));
        assert!(matches!(t.outcome().await, Outcome::Abandoned));
    }

    #[tokio::test]
    async fn a_stored_blob_read_whole_is_verified_and_a_damaged_one_never_ends_cleanly() {
        for (stored, intact) in [(&b"the stored blob"[..], true), (&b"the stored blox"[..], false)] {
            let grow = Grow::default();
            grow.push(stored);
            let seen = Arc::new(Mutex::new(None));
            let record = seen.clone();
            let report = Box::new(move |checked: Checked| {
                *record.lock().expect("lock") = Some(checked);
                async {}.boxed()
            });
            let check = Check { digest: Digest::sha256_of(b"the stored blob"), report };
            let size = stored.len() as u64;
            let items: Vec<_> =
                object_stream(Some(Arc::new(grow)), (0, Some(size)), Limit::Fixed(size), Some(check)).collect().await;
            let delivered: usize = items.iter().filter_map(|i| i.as_ref().ok()).map(|b| b.len()).sum();
            assert_eq!(items.iter().all(|i| i.is_ok()), intact);
            assert_eq!(delivered == stored.len(), intact, "a damaged blob is never delivered whole");
            let expected = if intact { Checked::Intact } else { Checked::Damaged };
            assert_eq!(*seen.lock().expect("lock"), Some(expected));
        }
    }

    #[tokio::test]
    async fn a_small_blob_read_whole_is_returned_only_if_intact_and_the_verdict_is_reported() {
        let want = &b"the stored blob"[..];
        // Intact, damaged in place, and short (the object ends early).
        for (stored, intact) in [(want, true), (&b"the stored blox"[..], false), (&b"the stored"[..], false)] {
            let grow = Grow::default();
            grow.push(stored);
            let seen = Arc::new(Mutex::new(None));
            let record = seen.clone();
            let report = Box::new(move |checked: Checked| {
                *record.lock().expect("lock") = Some(checked);
                async {}.boxed()
            });
            let check = Check { digest: Digest::sha256_of(want), report };
            let read = read_whole(&grow, want.len() as u64, Some(check)).await;
            match read {
                Ok(bytes) => assert!(intact && bytes == want, "only the intact blob is returned: {bytes:?}"),
                Err(e) => assert!(!intact, "the intact blob failed: {e}"),
            }
            let expected = if intact { Checked::Intact } else { Checked::Damaged };
            assert_eq!(*seen.lock().expect("lock"), Some(expected), "{stored:?}");
        }
        // A verified blob (no check) is read as it is, and nothing is reported.
        let grow = Grow::default();
        grow.push(want);
        assert_eq!(read_whole(&grow, want.len() as u64, None).await.expect("read"), want);
    }
}
