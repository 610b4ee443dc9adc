//! Streaming an object's bytes to one client: from a committed blob, or behind a running transfer.
//!
//! A reader asks the object (`ObjectReader`, any backend) for the next chunk as far as its limit allows: the whole
//! size of a committed blob, or what the transfer's leader has published so far (minus the last byte until the
//! digest is verified). It waits for progress when it has caught up. A committed blob whose stored version was not
//! verified since start is hashed while it is served (`Check`): its last chunk is held back until the hash matches,
//! so a damaged file never reaches a client as a complete response, and the damage is reported so the next request
//! fetches the blob again. A small committed blob is read whole instead (`read_whole`) and checked the same way
//! before any of it is handed out.
//!
//! A committed blob's stream (`stored_stream`) also asks the store, before its last chunk leaves, whether the stored
//! copy changed since it was opened (`ObjectReader::changed`: one `fstat` per response). The version opened is the
//! one the cache verified (or the one being hashed now); a copy written in place while it was served ends the
//! response short instead, and the change is reported (`OnChange`) so that the copy is moved aside and fetched
//! again. This is the streamed twin of the check a `FileRange` makes before its last piece.
//!
//! What a reader yields depends on what the client's connection can do. A connection that only writes bytes (TLS,
//! anything not plain HTTP) gets a `ByteStream`. One that can send a file itself (plain HTTP, the HTTP layer's kernel
//! copy) gets a `StretchStream`: behind a transfer, whenever at least `REST_WORTH_A_FILE` bytes are readable ahead
//! of the reader (with the last byte still held back until the digest is verified, as for any reader), it yields them
//! as one `Stretch::File`, a range of the file the transfer is writing, which the connection sends in its place
//! before it asks for more. A pull storm's clients, behind the leader or left with most of the blob when the fetch
//! finishes, so take the bytes the way a cached blob is served, with no copy through the process; what trickles in
//! smaller steps is streamed (`Stretch::Bytes`).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream};
use tokio::sync::watch;

use crate::digest::{Digest, Digester};
use crate::outcome::{Outcome, Progress};
use crate::store::{FileRange, ObjectReader, Version};

/// What a client whose connection only writes bytes receives: chunks, or an error that aborts its connection.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// One stretch of a response body, in the order the body goes out, for a connection that can send files itself
/// (plain HTTP: `src/http/kernel_copy.rs`).
#[derive(Debug)]
pub enum Stretch {
    /// Bytes to write.
    Bytes(Bytes),
    /// A range of a local file, for the connection to copy to its socket inside the kernel (`sendfile`) once
    /// everything before it was written, and before anything after it.
    File(FileRange),
}

/// What a client whose connection can send files receives: stretches, or an error that aborts its connection.
pub type StretchStream = BoxStream<'static, Result<Stretch, std::io::Error>>;

/// How much a reader asks the store for at once. Small enough that a chunk, read into the buffer the previous one
/// gave back, stays in the CPU cache while the connection copies it out, and that the HTTP layer's write buffer
/// keeps its memory between chunks (it lets go of anything over 128 KiB); large enough that the per-chunk work is
/// small against the copying. 256 KiB chunks cost a third more CPU per byte served (docs/benchmarks.md).
const READ_CHUNK: u64 = 64 * 1024;

/// Less than this readable ahead is streamed: not worth a file stretch.
const REST_WORTH_A_FILE: u64 = 4 * READ_CHUNK;

/// What a reader's stream is made of: chunks only (`Bytes`), or stretches that may be ranges of a file (`Stretch`).
trait Item: Send + Sized + 'static {
    /// A chunk read through the process.
    fn chunk(bytes: Bytes) -> Self;
    /// The bytes `start..end` of `object` as one item left in its file: `None` if this kind of stream carries no
    /// files or the object is not in a local file.
    fn file(object: &dyn ObjectReader, start: u64, end: u64) -> Option<Self>;
}

impl Item for Bytes {
    fn chunk(bytes: Bytes) -> Self {
        bytes
    }

    fn file(_: &dyn ObjectReader, _: u64, _: u64) -> Option<Self> {
        None
    }
}

impl Item for Stretch {
    fn chunk(bytes: Bytes) -> Self {
        Stretch::Bytes(bytes)
    }

    fn file(object: &dyn ObjectReader, start: u64, end: u64) -> Option<Self> {
        object.file_range(start, end).map(Stretch::File)
    }
}

/// How far a reader may read.
pub(crate) enum Limit {
    /// A committed object of this size.
    Fixed(u64),
    /// A transfer in progress.
    Live(watch::Receiver<Progress>),
}

/// What a verification while serving found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// The bytes match the digest.
    Intact,
    /// They do not (or the object ended early).
    Damaged,
}

/// Hash-while-serving for a committed blob read whole. `report` is awaited before the stream ends.
pub(crate) struct Check {
    pub digest: Digest,
    pub report: Box<dyn FnOnce(Checked) -> BoxFuture<'static, ()> + Send>,
}

/// Told the stored copy's version now when a committed blob's copy is found changed since it was opened; awaited
/// before the stream ends (the copy is un-indexed by then, so a retry fetches it again).
pub(crate) type OnChange = Box<dyn FnOnce(Version) -> BoxFuture<'static, ()> + Send>;

struct Verifier {
    hasher: Digester,
    check: Check,
}

struct Reader {
    object: Option<Arc<dyn ObjectReader>>,
    pos: u64,
    end: Option<u64>,
    limit: Limit,
    verifier: Option<Verifier>,
    /// For a committed blob: the stored copy is checked unchanged before the last chunk leaves.
    on_change: Option<OnChange>,
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

fn outcome_error(outcome: &Outcome) -> std::io::Error {
    match outcome {
        Outcome::Done { .. } => std::io::Error::other("transfer done"),
        Outcome::Failed(e) => std::io::Error::other(e.to_string()),
        Outcome::PassThrough(reason) => std::io::Error::other(format!("transfer passed through uncached: {reason}")),
        Outcome::Abandoned => std::io::Error::other("transfer abandoned by its leader"),
    }
}

impl Reader {
    fn step(&self) -> Result<Step, std::io::Error> {
        let (readable, complete_at) = match &self.limit {
            Limit::Fixed(size) => (*size, Some(*size)),
            Limit::Live(rx) => match &*rx.borrow() {
                Progress::Starting => (0, None),
                // Hold back the last byte until the digest is verified.
                Progress::Running { written, .. } => (written.saturating_sub(1), None),
                Progress::Settled(Outcome::Done { size }) => (*size, Some(*size)),
                Progress::Settled(other) => return Err(outcome_error(other)),
            },
        };
        let stop = match (self.end, complete_at) {
            (Some(end), Some(size)) => Some(end.min(size)),
            (Some(end), None) => Some(end),
            (None, complete) => complete,
        };
        if stop.is_some_and(|stop| self.pos >= stop) {
            return Ok(Step::Eof);
        }
        let upto = self.end.map_or(readable, |end| readable.min(end));
        Ok(if upto > self.pos { Step::ReadTo(upto) } else { Step::Wait })
    }

    /// Behind a transfer, with at least `REST_WORTH_A_FILE` readable ahead (`upto` never includes an unverified last
    /// byte): `pos..upto` as one item left in the object's file, if `T` carries files and the object is in one.
    fn file_ahead<T: Item>(&mut self, upto: u64) -> Option<T> {
        let (Some(object), Limit::Live(_)) = (&self.object, &self.limit) else {
            return None;
        };
        if upto.saturating_sub(self.pos) < REST_WORTH_A_FILE {
            return None;
        }
        let item = T::file(object.as_ref(), self.pos, upto)?;
        self.pos = upto;
        Some(item)
    }

    async fn read(&mut self, upto: u64) -> Result<Bytes, std::io::Error> {
        let object = self.object.clone().ok_or_else(|| std::io::Error::other("transfer has no object to read"))?;
        let len = (upto - self.pos).min(READ_CHUNK) as usize;
        let chunk = object.read_range(self.pos, len).await?;
        if chunk.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "cached object ended early"));
        }
        Ok(chunk)
    }

    /// Where a committed object's stream stops (`None` behind a transfer).
    fn stop(&self) -> Option<u64> {
        match self.limit {
            Limit::Fixed(size) => Some(self.end.map_or(size, |end| end.min(size))),
            Limit::Live(_) => None,
        }
    }

    /// Before the last chunk of a committed blob leaves: whether the stored copy is still the one opened. A changed
    /// copy is reported (with its version now), and the chunk is not delivered.
    async fn recheck(&mut self) -> Result<(), std::io::Error> {
        let (Some(object), Some(_)) = (&self.object, &self.on_change) else {
            return Ok(());
        };
        let Some(now) = object.changed()? else {
            return Ok(());
        };
        self.verifier = None;
        if let Some(report) = self.on_change.take() {
            report(now).await;
        }
        Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "cached blob changed while it was served"))
    }

    /// Hash a chunk; at the object's end, settle the verification (the chunk is delivered only if it passed).
    async fn verify(&mut self, chunk: &Bytes, last: bool) -> Result<(), std::io::Error> {
        let Some(v) = self.verifier.as_mut() else {
            return Ok(());
        };
        v.hasher.update(chunk);
        if !last {
            return Ok(());
        }
        let Some(Verifier { hasher, check }) = self.verifier.take() else {
            return Ok(());
        };
        let intact = hasher.finalize() == check.digest;
        (check.report)(if intact { Checked::Intact } else { Checked::Damaged }).await;
        if intact {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("cached blob {} is damaged; it will be fetched again", check.digest)))
        }
    }

    async fn next<T: Item>(&mut self) -> Option<Result<T, std::io::Error>> {
        loop {
            match self.step() {
                Err(e) => return Some(Err(e)),
                Ok(Step::Eof) => return None,
                Ok(Step::ReadTo(upto)) => {
                    if let Some(file) = self.file_ahead(upto) {
                        return Some(Ok(file));
                    }
                    let chunk = match self.read(upto).await {
                        Ok(chunk) => chunk,
                        Err(e) => {
                            // A copy cut short in place is reported as changed (then with the version that is
                            // there now, so it is the one moved aside).
                            if self.recheck().await.is_ok() {
                                if let Some(Verifier { check, .. }) = self.verifier.take() {
                                    (check.report)(Checked::Damaged).await;
                                }
                            }
                            return Some(Err(e));
                        }
                    };
                    let end = self.pos + chunk.len() as u64;
                    if self.stop().is_some_and(|stop| end >= stop) {
                        if let Err(e) = self.recheck().await {
                            return Some(Err(e));
                        }
                    }
                    let last = matches!(self.limit, Limit::Fixed(size) if end >= size);
                    if let Err(e) = self.verify(&chunk, last).await {
                        return Some(Err(e));
                    }
                    self.pos += chunk.len() as u64;
                    return Some(Ok(T::chunk(chunk)));
                }
                Ok(Step::Wait) => {
                    let Limit::Live(rx) = &mut self.limit else {
                        return None;
                    };
                    if rx.changed().await.is_err() {
                        // The publisher is gone; its Drop published the outcome, so look once more.
                        if matches!(self.step(), Ok(Step::Wait)) {
                            return Some(Err(std::io::Error::other("transfer abandoned by its leader")));
                        }
                    }
                }
            }
        }
    }
}

/// A committed object of `size` bytes read whole into memory (for small blobs only; the caller bounds `size`). With a
/// `check` (its stored version was not verified yet), the bytes are hashed before they are returned and the verdict
/// is reported through it: bytes that do not match, a short object or a failed read are reported as damaged and
/// returned as an error, never as bytes.
pub(crate) async fn read_whole(
    object: &dyn ObjectReader,
    size: u64,
    check: Option<Check>,
) -> Result<Bytes, std::io::Error> {
    let read = read_exact(object, size).await;
    let Some(check) = check else {
        return read;
    };
    let intact = read.as_ref().is_ok_and(|bytes| Digest::of(check.digest.algorithm(), bytes) == check.digest);
    (check.report)(if intact { Checked::Intact } else { Checked::Damaged }).await;
    match read {
        Ok(bytes) if intact => Ok(bytes),
        Ok(_) => {
            Err(std::io::Error::other(format!("cached blob {} is damaged; it will be fetched again", check.digest)))
        }
        Err(e) => Err(e),
    }
}

/// Exactly `size` bytes from offset 0 (an object that ends earlier is an error).
async fn read_exact(object: &dyn ObjectReader, size: u64) -> Result<Bytes, std::io::Error> {
    let len = usize::try_from(size).map_err(std::io::Error::other)?;
    let first = object.read_range(0, len).await?;
    if first.len() == len {
        return Ok(first);
    }
    let mut buf = bytes::BytesMut::from(&first[..]);
    while buf.len() < len {
        let chunk = object.read_range(buf.len() as u64, len - buf.len()).await?;
        if chunk.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "cached object ended early"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The bytes `start..end` (end exclusive; `None` = to the end) of `object` within `limit`, verified against `check`
/// when given (only for a whole committed blob).
pub(crate) fn object_stream(
    object: Option<Arc<dyn ObjectReader>>,
    (start, end): (u64, Option<u64>),
    limit: Limit,
    check: Option<Check>,
) -> ByteStream {
    let verifier = check.map(|check| Verifier { hasher: Digester::new(check.digest.algorithm()), check });
    streaming(Reader { object, pos: start, end, limit, verifier, on_change: None })
}

/// The bytes `start..end` (end exclusive; `None` = to the end) of a transfer's `object` as `progress` allows, for a
/// connection that can send files: each stretch of at least `REST_WORTH_A_FILE` readable at once as a range of the
/// object's file (if it is in one), the rest as chunks.
pub(crate) fn transfer_stretches(
    object: Option<Arc<dyn ObjectReader>>,
    (start, end): (u64, Option<u64>),
    progress: watch::Receiver<Progress>,
) -> StretchStream {
    streaming(Reader { object, pos: start, end, limit: Limit::Live(progress), verifier: None, on_change: None })
}

/// The bytes `start..end` (end exclusive) of a committed blob of `size` bytes: hashed against `check` while served
/// when given (a whole read of a copy not verified yet), and in any case refused before the last chunk if the stored
/// copy changed since it was opened, which `on_change` is told.
pub(crate) fn stored_stream(
    object: Arc<dyn ObjectReader>,
    (start, end): (u64, u64),
    size: u64,
    check: Option<Check>,
    on_change: OnChange,
) -> ByteStream {
    let verifier = check.map(|check| Verifier { hasher: Digester::new(check.digest.algorithm()), check });
    let limit = Limit::Fixed(size);
    let on_change = Some(on_change);
    streaming(Reader { object: Some(object), pos: start, end: Some(end), limit, verifier, on_change })
}

fn streaming<T: Item>(reader: Reader) -> BoxStream<'static, Result<T, std::io::Error>> {
    Box::pin(stream::unfold(reader, |mut r| async move {
        let item = r.next().await?;
        // After an error, end the stream: the error already told the client's connection to abort.
        if item.is_err() {
            r.end = Some(r.pos);
            r.limit = Limit::Fixed(r.pos);
            r.verifier = None;
            r.on_change = None;
        }
        Some((item, r))
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use futures_util::{FutureExt, StreamExt};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    /// A committed object in memory that counts the bytes read from it and can be told its stored copy changed.
    #[derive(Default)]
    pub(crate) struct Held {
        pub bytes: Vec<u8>,
        pub read: AtomicU64,
        pub changed: Mutex<Option<Version>>,
    }

    impl Held {
        pub(crate) fn new(bytes: Vec<u8>) -> Arc<Held> {
            Arc::new(Held { bytes, ..Held::default() })
        }

        pub(crate) fn change(&self, now: Version) {
            *self.changed.lock().expect("lock") = Some(now);
        }
    }

    impl ObjectReader for Held {
        fn read_range(&self, offset: u64, len: usize) -> BoxFuture<'static, std::io::Result<Bytes>> {
            let start = (offset as usize).min(self.bytes.len());
            let out = Bytes::copy_from_slice(&self.bytes[start..(start + len).min(self.bytes.len())]);
            self.read.fetch_add(out.len() as u64, Ordering::Relaxed);
            async move { Ok(out) }.boxed()
        }

        fn changed(&self) -> std::io::Result<Option<Version>> {
            Ok(*self.changed.lock().expect("lock"))
        }
    }

    fn recorder() -> (OnChange, Arc<Mutex<Vec<Version>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let on_change: OnChange = Box::new(move |now| {
            record.lock().expect("lock").push(now);
            async {}.boxed()
        });
        (on_change, seen)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 249) as u8).collect()
    }

    #[tokio::test]
    async fn a_stored_range_arrives_whole_when_its_copy_is_unchanged() {
        let held = Held::new(data(300_000));
        let (on_change, seen) = recorder();
        let items: Vec<_> = stored_stream(held.clone(), (1_000, 250_000), 300_000, None, on_change).collect().await;
        let got: Vec<u8> = items.into_iter().flat_map(|c| c.expect("chunk").to_vec()).collect();
        assert!(got == held.bytes[1_000..250_000]);
        assert!(seen.lock().expect("lock").is_empty());
        assert_eq!(held.read.load(Ordering::Relaxed), 249_000, "only the range is read");
    }

    #[tokio::test]
    async fn a_stored_copy_changed_while_streamed_ends_the_stream_short_before_its_last_chunk() {
        let held = Held::new(data(300_000));
        let (on_change, seen) = recorder();
        let mut s = stored_stream(held.clone(), (0, 300_000), 300_000, None, on_change);
        let mut delivered = s.next().await.expect("a chunk").expect("the first chunk").len();
        held.change(Version(42));
        let mut failed = false;
        while let Some(item) = s.next().await {
            match item {
                Ok(chunk) => delivered += chunk.len(),
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
                    failed = true;
                }
            }
        }
        assert!(failed, "the stream ends with an error");
        assert!(delivered < 300_000, "never the whole body: {delivered}");
        assert_eq!(*seen.lock().expect("lock"), vec![Version(42)], "the change is reported once, as it is now");
    }

    #[tokio::test]
    async fn a_change_while_hashed_is_reported_as_a_change_not_a_verdict() {
        let held = Held::new(data(200_000));
        let digest = Digest::sha256_of(&held.bytes);
        let verdicts = Arc::new(Mutex::new(Vec::new()));
        let record = verdicts.clone();
        let report = Box::new(move |checked: Checked| {
            record.lock().expect("lock").push(checked);
            async {}.boxed()
        });
        let (on_change, seen) = recorder();
        held.change(Version(7));
        let check = Some(Check { digest, report });
        let items: Vec<_> = stored_stream(held.clone(), (0, 200_000), 200_000, check, on_change).collect().await;
        assert!(items.last().expect("items").is_err());
        assert_eq!(*seen.lock().expect("lock"), vec![Version(7)]);
        assert!(verdicts.lock().expect("lock").is_empty(), "a copy that changed is not declared intact");
    }

    #[tokio::test]
    async fn behind_a_transfer_a_connection_that_sends_files_gets_large_stretches_as_ranges_of_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = data(600_000);
        let store = crate::store::Store::new(Arc::new(crate::store::FsStorage::open(dir.path()).expect("open")), 0);
        let mut writer = store.begin_blob(&Digest::sha256_of(&bytes)).await.expect("begin");
        writer.append(Bytes::copy_from_slice(&bytes[..500_000])).await.expect("append");
        let (progress, rx) = watch::channel(Progress::Running { written: 500_000, total: Some(600_000) });
        let mut s = transfer_stretches(Some(writer.reader()), (0, None), rx.clone());
        // All that is readable (the last byte written is held back) is more than `REST_WORTH_A_FILE`: one range.
        match s.next().await {
            Some(Ok(Stretch::File(range))) => assert_eq!(range.remaining(), 499_999),
            other => panic!("a file range first, got {other:?}"),
        }
        // Less than that ahead comes as bytes, in place, and the last byte only once the transfer is done.
        writer.append(Bytes::copy_from_slice(&bytes[500_000..])).await.expect("append");
        progress.send_replace(Progress::Running { written: 600_000, total: Some(600_000) });
        let mut got = Vec::new();
        while got.len() < 100_000 {
            match s.next().await {
                Some(Ok(Stretch::Bytes(chunk))) => got.extend_from_slice(&chunk),
                other => panic!("bytes after the range, got {other:?}"),
            }
        }
        assert!(got == bytes[499_999..599_999]);
        progress.send_replace(Progress::Settled(Outcome::Done { size: 600_000 }));
        match s.next().await {
            Some(Ok(Stretch::Bytes(chunk))) => assert_eq!(chunk[..], bytes[599_999..]),
            other => panic!("the last byte once done, got {other:?}"),
        }
        assert!(s.next().await.is_none());
        // The same reader for a connection that only writes bytes: chunks only, every byte in place.
        let chunks: Vec<Bytes> = object_stream(Some(writer.reader()), (0, None), Limit::Live(rx), None)
            .map(|chunk| chunk.expect("a chunk"))
            .collect()
            .await;
        assert!(chunks.iter().all(|c| c.len() as u64 <= READ_CHUNK));
        assert!(chunks.concat() == bytes);
    }
}
