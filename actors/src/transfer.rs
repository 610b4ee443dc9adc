//! A blob on its way from the upstream to the disk, and the readers that follow it.
//!
//! The leader writes the bytes to a temporary file and publishes its progress through a `watch` channel; every
//! client reading the blob holds a `Transfer` and reads the file with positioned reads, from byte 0 or from its
//! range, as far as the progress allows, then waits for more. Readers never get the blob's last byte before the
//! digest has been verified: on a mismatch they get an error instead, which aborts their connection, so a client
//! can never mistake bad bytes for a complete response. The final state is always an explicit `Done` or `Failed`;
//! a publisher dropped without one reads as `Failed` (pingora's lesson: a closed channel is not a finished write).
//!
//! `file_stream` serves committed files through the same reader.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream};
use tokio::sync::{mpsc, watch};

use crate::digest::{Digest, Digester};
use crate::error::{MirrorError, UpstreamError};
use crate::messages::BodyEvent;

/// How much a reader asks the disk for at once.
const READ_CHUNK: u64 = 256 * 1024;

/// The state of a transfer, as published to its readers.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The upstream has not answered yet.
    Starting,
    /// Bytes are arriving: `written` are in the file; `total` is the announced size, when known.
    Running {
        /// Bytes in the file so far.
        written: u64,
        /// The announced size.
        total: Option<u64>,
    },
    /// Complete and verified; `size` bytes.
    Done {
        /// The blob's size.
        size: u64,
    },
    /// Failed; readers abort.
    Failed(MirrorError),
}

/// A reader's handle on a running transfer. Cheap to clone.
#[derive(Clone)]
pub struct Transfer {
    shared: Arc<Shared>,
}

struct Shared {
    digest: Digest,
    /// A read handle on the temporary file; it stays valid when the file is renamed into place or unlinked.
    file: Arc<File>,
    progress: watch::Receiver<Progress>,
    /// Client streams opened on this transfer (for the coalescing metric).
    readers: std::sync::atomic::AtomicUsize,
    /// Where the reader count goes once every handle is gone (set by the leader).
    waiters_metric: std::sync::OnceLock<prometheus::Histogram>,
}

impl Drop for Shared {
    /// Every handle is gone, so no client can still join: the count of readers is final.
    fn drop(&mut self) {
        if let Some(histogram) = self.waiters_metric.get() {
            histogram.observe(*self.readers.get_mut() as f64);
        }
    }
}

/// The leader's side: publishes progress. Dropping it without `done` or `fail` fails the transfer.
pub struct TransferPublisher {
    tx: watch::Sender<Progress>,
    finished: bool,
}

/// Create a transfer for `digest` whose bytes will appear in `file`.
pub fn transfer(digest: Digest, file: File) -> (Transfer, TransferPublisher) {
    let (tx, rx) = watch::channel(Progress::Starting);
    let shared = Shared {
        digest,
        file: Arc::new(file),
        progress: rx,
        readers: Default::default(),
        waiters_metric: Default::default(),
    };
    (Transfer { shared: Arc::new(shared) }, TransferPublisher { tx, finished: false })
}

impl TransferPublisher {
    /// Report bytes written so far (and the announced size).
    pub fn running(&self, written: u64, total: Option<u64>) {
        self.tx.send_replace(Progress::Running { written, total });
    }

    /// The blob is complete and verified.
    pub fn done(mut self, size: u64) {
        self.finished = true;
        self.tx.send_replace(Progress::Done { size });
    }

    /// The transfer failed.
    pub fn fail(mut self, error: MirrorError) {
        self.finished = true;
        self.tx.send_replace(Progress::Failed(error));
    }
}

impl Drop for TransferPublisher {
    fn drop(&mut self) {
        if !self.finished {
            self.tx.send_replace(Progress::Failed(MirrorError::Internal("transfer abandoned by its leader".into())));
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

    /// Whether the transfer has reached `Done` or `Failed`.
    pub fn is_settled(&self) -> bool {
        matches!(*self.shared.progress.borrow(), Progress::Done { .. } | Progress::Failed(_))
    }

    /// Wait until the upstream has answered; returns the blob's size when known.
    pub async fn wait_started(&self) -> Result<Option<u64>, MirrorError> {
        let mut rx = self.shared.progress.clone();
        loop {
            match &*rx.borrow_and_update() {
                Progress::Starting => {}
                Progress::Running { total, .. } => return Ok(*total),
                Progress::Done { size } => return Ok(Some(*size)),
                Progress::Failed(e) => return Err(e.clone()),
            }
            if rx.changed().await.is_err() {
                return Err(MirrorError::Internal("transfer vanished".into()));
            }
        }
    }

    /// Wait until the transfer is `Done` or `Failed`; true when done.
    pub async fn settled(&self) -> bool {
        let mut rx = self.shared.progress.clone();
        loop {
            match &*rx.borrow_and_update() {
                Progress::Done { .. } => return true,
                Progress::Failed(_) => return false,
                _ => {}
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Record the final number of readers in `histogram` when the last handle on this transfer is dropped.
    pub fn observe_readers_with(&self, histogram: prometheus::Histogram) {
        let _ = self.shared.waiters_metric.set(histogram);
    }

    /// How many client streams have been opened on this transfer.
    pub fn readers(&self) -> usize {
        self.shared.readers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The bytes `start..end` (end exclusive; `None` = to the end), as they become available.
    pub fn stream(&self, start: u64, end: Option<u64>) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
        self.shared.readers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        read_stream(self.shared.file.clone(), start, end, Limit::Live(self.shared.progress.clone()))
    }
}

/// The bytes `start..end` of a committed file of `size` bytes.
pub fn file_stream(file: File, size: u64, start: u64, end: u64) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
    read_stream(Arc::new(file), start, Some(end.min(size)), Limit::Fixed(size))
}

enum Limit {
    Fixed(u64),
    Live(watch::Receiver<Progress>),
}

struct Reader {
    file: Arc<File>,
    pos: u64,
    end: Option<u64>,
    limit: Limit,
}

/// What a reader may do next.
enum Step {
    /// Read up to this offset.
    ReadTo(u64),
    /// Finished cleanly.
    Eof,
    /// Wait for progress.
    Wait,
}

fn io_error(e: &MirrorError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Reader {
    fn step(&mut self) -> Result<Step, std::io::Error> {
        let (readable, complete_at) = match &self.limit {
            Limit::Fixed(size) => (*size, Some(*size)),
            Limit::Live(rx) => match &*rx.borrow() {
                Progress::Starting => (0, None),
                // Hold back the last byte until the digest is verified.
                Progress::Running { written, .. } => (written.saturating_sub(1), None),
                Progress::Done { size } => (*size, Some(*size)),
                Progress::Failed(e) => return Err(io_error(e)),
            },
        };
        let stop = match (self.end, complete_at) {
            (Some(end), Some(size)) => Some(end.min(size)),
            (Some(end), None) => Some(end),
            (None, complete) => complete,
        };
        if let Some(stop) = stop {
            if self.pos >= stop {
                return Ok(Step::Eof);
            }
        }
        let upto = match self.end {
            Some(end) => readable.min(end),
            None => readable,
        };
        if upto > self.pos {
            Ok(Step::ReadTo(upto))
        } else {
            Ok(Step::Wait)
        }
    }

    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            match self.step() {
                Err(e) => return Some(Err(e)),
                Ok(Step::Eof) => return None,
                Ok(Step::ReadTo(upto)) => {
                    let len = (upto - self.pos).min(READ_CHUNK) as usize;
                    let file = self.file.clone();
                    let pos = self.pos;
                    let read = tokio::task::spawn_blocking(move || {
                        let mut buf = BytesMut::zeroed(len);
                        let n = file.read_at(&mut buf, pos)?;
                        buf.truncate(n);
                        Ok::<_, std::io::Error>(buf.freeze())
                    })
                    .await
                    .map_err(std::io::Error::other);
                    return match read {
                        Ok(Ok(chunk)) if chunk.is_empty() => {
                            Some(Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "cache file shrank")))
                        }
                        Ok(Ok(chunk)) => {
                            self.pos += chunk.len() as u64;
                            Some(Ok(chunk))
                        }
                        Ok(Err(e)) | Err(e) => Some(Err(e)),
                    };
                }
                Ok(Step::Wait) => {
                    let Limit::Live(rx) = &mut self.limit else {
                        return None;
                    };
                    if rx.changed().await.is_err() {
                        // The publisher is gone; its Drop published the outcome, so look once more.
                        if matches!(self.step(), Ok(Step::Wait)) {
                            return Some(Err(std::io::Error::other("transfer abandoned")));
                        }
                    }
                }
            }
        }
    }
}

fn read_stream(
    file: Arc<File>,
    start: u64,
    end: Option<u64>,
    limit: Limit,
) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
    let reader = Reader { file, pos: start, end, limit };
    Box::pin(stream::unfold(reader, |mut r| async move {
        let item = r.next_chunk().await?;
        let failed = item.is_err();
        // After an error, end the stream: the error already told the client's connection to abort.
        if failed {
            r.end = Some(r.pos);
            r.limit = Limit::Fixed(r.pos);
        }
        Some((item, r))
    }))
}

/// An upstream body streamed straight to one client without touching the disk (the cache takes no writes). The
/// digest and length are checked as bytes pass; the last chunk is held back until the check has passed.
pub fn verified_passthrough(
    digest: Digest,
    expected_len: Option<u64>,
    upstream: String,
    body: mpsc::Receiver<Result<BodyEvent, UpstreamError>>,
) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
    struct State {
        digest: Digest,
        expected_len: Option<u64>,
        upstream: String,
        body: mpsc::Receiver<Result<BodyEvent, UpstreamError>>,
        hasher: Option<Digester>,
        held: Option<Bytes>,
        seen: u64,
        done: bool,
    }
    let hasher = Some(Digester::new(digest.algorithm()));
    let state = State { digest, expected_len, upstream, body, hasher, held: None, seen: 0, done: false };
    Box::pin(stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            let event = s.body.recv().await;
            match event {
                Some(Ok(BodyEvent::Data(chunk))) => {
                    s.seen += chunk.len() as u64;
                    if let Some(h) = s.hasher.as_mut() {
                        h.update(&chunk);
                    }
                    if let Some(prev) = s.held.replace(chunk) {
                        return Some((Ok(prev), s));
                    }
                }
                Some(Ok(BodyEvent::End)) => {
                    s.done = true;
                    let actual = s.hasher.take().map(Digester::finalize);
                    let length_ok = s.expected_len.is_none_or(|n| n == s.seen);
                    if actual.as_ref() == Some(&s.digest) && length_ok {
                        let last = s.held.take().unwrap_or_default();
                        return Some((Ok(last), s));
                    }
                    let err = match actual {
                        Some(actual) if actual != s.digest => UpstreamError::DigestMismatch {
                            upstream: s.upstream.clone(),
                            expected: s.digest.clone(),
                            actual,
                        },
                        _ => UpstreamError::LengthMismatch {
                            upstream: s.upstream.clone(),
                            expected: s.expected_len.unwrap_or(0),
                            got: s.seen,
                        },
                    };
                    tracing::warn!(error = %err, "uncached blob failed verification; aborting the client's download");
                    return Some((Err(std::io::Error::other(err.to_string())), s));
                }
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(std::io::Error::other(e.to_string())), s));
                }
                None => {
                    s.done = true;
                    return Some((Err(std::io::Error::other("upstream body ended without completing")), s));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::io::Write;
    use std::time::Duration;

    fn temp_pair() -> (tempfile::NamedTempFile, File) {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        let reader = File::open(f.path()).expect("reopen");
        (f, reader)
    }

    fn digest() -> Digest {
        Digest::sha256_of(b"x")
    }

    async fn next(s: &mut BoxStream<'static, Result<Bytes, std::io::Error>>) -> Option<Result<Bytes, std::io::Error>> {
        tokio::time::timeout(Duration::from_secs(5), s.next()).await.expect("reader stalled")
    }

    #[tokio::test]
    async fn reader_follows_writer_but_holds_back_the_last_byte_until_done() {
        let (mut w, r) = temp_pair();
        let (t, publisher) = transfer(digest(), r);
        let mut s = t.stream(0, None);
        w.write_all(b"hello").expect("write");
        publisher.running(5, Some(10));
        assert_eq!(next(&mut s).await.expect("chunk").expect("ok"), Bytes::from_static(b"hell"));
        // The fifth byte is held back while running.
        let pending = tokio::time::timeout(Duration::from_millis(100), s.next()).await;
        assert!(pending.is_err(), "reader must wait, got {pending:?}");
        w.write_all(b"world").expect("write");
        publisher.running(10, Some(10));
        assert_eq!(next(&mut s).await.expect("chunk").expect("ok"), Bytes::from_static(b"oworl"));
        publisher.done(10);
        assert_eq!(next(&mut s).await.expect("chunk").expect("ok"), Bytes::from_static(b"d"));
        assert!(next(&mut s).await.is_none(), "clean end after done");
    }

    #[tokio::test]
    async fn late_reader_starts_from_byte_zero_and_ranges_work() {
        let (mut w, r) = temp_pair();
        let (t, publisher) = transfer(digest(), r);
        w.write_all(b"0123456789").expect("write");
        publisher.running(10, Some(10));
        let mut late = t.stream(0, None);
        assert_eq!(next(&mut late).await.expect("chunk").expect("ok"), Bytes::from_static(b"012345678"));
        let mut ranged = t.stream(2, Some(5));
        assert_eq!(next(&mut ranged).await.expect("chunk").expect("ok"), Bytes::from_static(b"234"));
        assert!(next(&mut ranged).await.is_none(), "a range that ends before the held-back byte completes");
        publisher.done(10);
        assert_eq!(next(&mut late).await.expect("chunk").expect("ok"), Bytes::from_static(b"9"));
    }

    #[tokio::test]
    async fn failure_reaches_readers_as_an_error_never_a_clean_end() {
        let (mut w, r) = temp_pair();
        let (t, publisher) = transfer(digest(), r);
        let mut s = t.stream(0, None);
        w.write_all(b"abc").expect("write");
        publisher.running(3, Some(3));
        assert_eq!(next(&mut s).await.expect("chunk").expect("ok"), Bytes::from_static(b"ab"));
        publisher.fail(MirrorError::Internal("digest mismatch".into()));
        assert!(next(&mut s).await.expect("an item").is_err(), "failure must surface as an error");
        assert!(next(&mut s).await.is_none(), "stream ends after the error");
    }

    #[tokio::test]
    async fn dropped_publisher_fails_the_transfer() {
        let (_w, r) = temp_pair();
        let (t, publisher) = transfer(digest(), r);
        let mut s = t.stream(0, None);
        let handle = std::thread::spawn(move || {
            // Dropping outside a panic trips the debug assertion; do it in a thread that expects to panic.
            drop(publisher);
        });
        let _ = handle.join();
        assert!(next(&mut s).await.expect("an item").is_err());
        assert!(t.wait_started().await.is_err());
        assert!(!t.settled().await);
    }

    #[tokio::test]
    async fn passthrough_verifies_and_holds_back_the_last_chunk() {
        let good = Bytes::from_static(b"some blob bytes");
        let d = Digest::sha256_of(&good);
        for (payload, ok) in [(good.clone(), true), (Bytes::from_static(b"some blob bytez"), false)] {
            let (tx, rx) = mpsc::channel(4);
            tx.send(Ok(BodyEvent::Data(payload.slice(..5)))).await.expect("send");
            tx.send(Ok(BodyEvent::Data(payload.slice(5..)))).await.expect("send");
            tx.send(Ok(BodyEvent::End)).await.expect("send");
            let items: Vec<_> = verified_passthrough(d.clone(), Some(15), "up".into(), rx).collect().await;
            let clean = items.iter().all(|i| i.is_ok());
            assert_eq!(clean, ok, "payload {payload:?}");
            if !ok {
                let delivered: usize = items.iter().filter_map(|i| i.as_ref().ok()).map(|b| b.len()).sum();
                assert!(delivered < 15, "a bad body must never be delivered whole");
            }
        }
    }
}
