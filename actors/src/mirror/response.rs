//! What the front door hands the HTTP layer: a manifest with its bytes, or a blob whose bytes are in memory (a small
//! committed blob, verified), stream from the store, from a running transfer, or straight from the upstream.
//!
//! A stored blob is trusted for exactly the version of its stored copy that was verified. Served from that version,
//! it goes out from its file (or streams) with one re-check of the version before its last bytes leave; a copy
//! changed meanwhile ends the response short and is reported (`Custody`). A copy whose version was not verified is
//! hashed while it is served whole, and hashed whole before a range of it is served (`verified_first`): the range
//! then comes from the copy if it is intact, else from the blob fetched again within the same request.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;

use crate::error::MirrorError;
use crate::read::{stored_stream, ByteStream, Check, OnChange, Stretch, StretchStream};
use crate::store::{FileRange, ManifestMeta, OpenedBlob, Version};
use crate::transfer::Transfer;

/// A manifest ready to serve.
#[derive(Debug, Clone)]
pub struct ManifestResponse {
    /// Digest, media type, size.
    pub meta: ManifestMeta,
    /// The bytes (absent when only the head was asked for and the manifest was cached).
    pub bytes: Option<Bytes>,
    /// Served from the cache rather than fetched now.
    pub from_cache: bool,
}

/// What a stored blob's response needs of the mirror besides its bytes: where to report its stored copy changed,
/// how to verify the copy before a range of it is served, and how to fetch the blob again.
pub(super) trait Custody: Send + Sync {
    /// The stored copy changed since it was opened (it is `version` now): un-index it and move it aside. Reported
    /// when called; resolves once the blob is un-indexed.
    fn changed(&self, version: Version) -> BoxFuture<'static, ()>;
    /// The same, as a notice, from where nothing can wait (a `FileRange` being sent).
    fn changed_now(&self, version: Version);
    /// Hash the opened copy whole (sharing a hash of the same copy already running) and report the verdict: whether
    /// it is intact, or an error when the hash could not run to its end (nothing is reported then).
    fn verify(&self, opened: &OpenedBlob) -> BoxFuture<'static, std::io::Result<bool>>;
    /// The blob again, once its stored copy was found damaged and reported: from the transfer fetching it.
    fn refetch(&self) -> BoxFuture<'static, Result<BlobResponse, MirrorError>>;
}

pub(super) enum BlobSource {
    /// A small committed blob read whole (see `SMALL_BLOB`), verified if its stored version was not verified yet.
    Memory(Bytes),
    /// A committed blob; `check` hashes it while it is served whole (its stored version was not verified yet).
    Stored { opened: OpenedBlob, check: Option<Box<Check>>, custody: Arc<dyn Custody> },
    /// The transfer fetching it now.
    Transfer(Transfer),
    /// Straight from the upstream, verified as it passes.
    Uncached(ByteStream),
    /// A range fetched from the upstream ahead of the blob's transfer (`ahead`): exactly its bytes, not verified.
    Ranged(ByteStream),
}

/// A blob ready to serve.
pub struct BlobResponse {
    /// Its size, when known.
    pub size: Option<u64>,
    /// Served from the cache rather than fetched now.
    pub from_cache: bool,
    pub(super) source: BlobSource,
}

impl BlobResponse {
    /// Whether `stream` can start at an offset (not for a blob passed through uncached).
    pub fn supports_range(&self) -> bool {
        !matches!(self.source, BlobSource::Uncached(_)) && self.size.is_some()
    }

    /// The bytes `start..end` (end exclusive; `None` = to the end) when the blob is held in memory (a small committed
    /// blob, already verified): the HTTP layer answers them with a sized body, which leaves in one write with the
    /// response head. `None` for a blob that streams.
    pub fn in_memory(&self, start: u64, end: Option<u64>) -> Option<Bytes> {
        match &self.source {
            BlobSource::Memory(bytes) => Some(slice(bytes, start, end)),
            _ => None,
        }
    }

    /// The bytes `start..end` (end exclusive) for a connection that can send files itself (`Stretch`), when some of
    /// them can leave from a local file: `Err(self)` otherwise, and then `stream` serves them.
    /// - A committed blob whose stored version is verified (one that still has to be hashed while served streams
    ///   instead) and whose file has the indexed size, in a backend that keeps blobs in local files, is one
    ///   `Stretch::File`. That range fails before its last piece if the file changed since it was opened
    ///   (`FileRange::send_to`), and the change is reported then.
    /// - A blob behind a running transfer comes as its bytes arrive, each stretch of at least 256 KiB readable at
    ///   once as a range of the file the transfer writes (if the backend keeps a local file), the rest as chunks.
    pub fn stretches(self, start: u64, end: u64) -> Result<StretchStream, BlobResponse> {
        if let Some(range) = self.file_range(start, end) {
            return Ok(Box::pin(futures_util::stream::iter([Ok(Stretch::File(range))])));
        }
        match &self.source {
            BlobSource::Transfer(t) => Ok(t.stretches(start, Some(end))),
            _ => Err(self),
        }
    }

    /// A verified committed blob's bytes `start..end` as a range of its local file (see `stretches`).
    fn file_range(&self, start: u64, end: u64) -> Option<FileRange> {
        match &self.source {
            BlobSource::Stored { opened, check: None, custody }
                if Some(opened.size) == self.size && end <= opened.size =>
            {
                let custody = custody.clone();
                let range = opened.reader.file_range(start, end)?;
                Some(range.on_change(move |now| custody.changed_now(now)))
            }
            _ => None,
        }
    }

    /// The bytes `start..end` (end exclusive; `None` = to the end). Offsets are ignored for uncached blobs and for a
    /// range passed through, which is the range already.
    pub fn stream(self, start: u64, end: Option<u64>) -> ByteStream {
        match self.source {
            BlobSource::Memory(bytes) => {
                let chunk = slice(&bytes, start, end);
                Box::pin(futures_util::stream::iter((!chunk.is_empty()).then_some(Ok(chunk))))
            }
            BlobSource::Stored { opened, check, custody } => {
                let size = opened.size;
                let end = end.unwrap_or(size).min(size);
                let start = start.min(end);
                match check {
                    // Hashed while served whole; a range of a copy not verified yet is hashed whole first.
                    Some(_) if start != 0 || end != size => verified_first(opened, custody, (start, end)),
                    check => {
                        let on_change = on_change(&custody);
                        stored_stream(opened.reader, (start, end), size, check.map(|c| *c), on_change)
                    }
                }
            }
            BlobSource::Transfer(t) => t.stream(start, end),
            BlobSource::Uncached(s) | BlobSource::Ranged(s) => s,
        }
    }
}

/// A stored stream's report of its copy changed, to `custody`.
fn on_change(custody: &Arc<dyn Custody>) -> OnChange {
    let custody = custody.clone();
    Box::new(move |now| custody.changed(now))
}

/// The bytes `start..end` of a stored blob whose copy was not verified in the version opened: the copy is hashed
/// whole first (off the HTTP worker); intact, the range comes from it (with the usual re-check before its last
/// chunk), damaged (reported by then), from the blob fetched again. The client waits for the hash before its first
/// byte, and never gets a byte of a copy that does not match its digest.
fn verified_first(opened: OpenedBlob, custody: Arc<dyn Custody>, (start, end): (u64, u64)) -> ByteStream {
    let serve = async move {
        let failed =
            |why: String| -> ByteStream { Box::pin(futures_util::stream::iter([Err(std::io::Error::other(why))])) };
        match custody.verify(&opened).await {
            Ok(true) => {
                let on_change = on_change(&custody);
                return stored_stream(opened.reader, (start, end), opened.size, None, on_change);
            }
            Ok(false) => {}
            Err(e) => return failed(format!("the blob's stored copy could not be verified: {e}")),
        }
        match custody.refetch().await {
            Ok(again) if again.supports_range() && again.size == Some(opened.size) => again.stream(start, Some(end)),
            Ok(_) => failed("the blob fetched again cannot be served by range".into()),
            Err(e) => failed(format!("the blob's stored copy is damaged and fetching it again failed: {e}")),
        }
    };
    futures_util::stream::once(serve).flatten().boxed()
}

/// `bytes[start..end]`, clamped to what there is.
fn slice(bytes: &Bytes, start: u64, end: Option<u64>) -> Bytes {
    let len = bytes.len();
    let end = end.map_or(len, |e| usize::try_from(e).unwrap_or(usize::MAX).min(len));
    let start = usize::try_from(start).unwrap_or(usize::MAX).min(end);
    bytes.slice(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::read::tests::Held;
    use crate::read::Checked;
    use futures_util::FutureExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// A custody that counts verifications and fetches again, answering them as told.
    struct Fake {
        intact: bool,
        whole: Bytes,
        verified: AtomicUsize,
        refetched: AtomicUsize,
        changed: Mutex<Vec<Version>>,
    }

    impl Custody for Fake {
        fn changed(&self, version: Version) -> BoxFuture<'static, ()> {
            self.changed.lock().expect("lock").push(version);
            async {}.boxed()
        }
        fn changed_now(&self, version: Version) {
            self.changed.lock().expect("lock").push(version);
        }
        fn verify(&self, _opened: &OpenedBlob) -> BoxFuture<'static, std::io::Result<bool>> {
            self.verified.fetch_add(1, Ordering::Relaxed);
            futures_util::future::ready(Ok(self.intact)).boxed()
        }
        fn refetch(&self) -> BoxFuture<'static, Result<BlobResponse, MirrorError>> {
            self.refetched.fetch_add(1, Ordering::Relaxed);
            let whole = self.whole.clone();
            let size = Some(whole.len() as u64);
            async move { Ok(BlobResponse { size, from_cache: false, source: BlobSource::Memory(whole) }) }.boxed()
        }
    }

    /// A stored blob of 3 MiB, verified in the version opened or not, whose custody verifies it as `intact`.
    fn stored(verified: bool, intact: bool) -> (BlobResponse, Arc<Held>, Arc<Fake>) {
        let bytes: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 239) as u8).collect();
        let whole = Bytes::from(bytes.clone());
        let held = Held::new(bytes);
        let fake = Arc::new(Fake {
            intact,
            whole,
            verified: AtomicUsize::new(0),
            refetched: AtomicUsize::new(0),
            changed: Mutex::default(),
        });
        let size = held.bytes.len() as u64;
        let opened = OpenedBlob { reader: held.clone(), size, version: Version(4) };
        let check = (!verified)
            .then(|| Check { digest: Digest::sha256_of(&held.bytes), report: Box::new(|_: Checked| async {}.boxed()) });
        let source = BlobSource::Stored { opened, check: check.map(Box::new), custody: fake.clone() };
        (BlobResponse { size: Some(size), from_cache: true, source }, held, fake)
    }

    async fn collect(stream: ByteStream) -> Result<Vec<u8>, std::io::Error> {
        let mut out = Vec::new();
        let mut stream = stream;
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_range_of_a_copy_verified_in_the_version_opened_reads_only_the_range_and_hashes_nothing() {
        let (resp, held, fake) = stored(true, true);
        let got = collect(resp.stream(3_000_000, Some(3_000_030))).await.expect("the range");
        assert!(got == held.bytes[3_000_000..3_000_030]);
        assert_eq!(fake.verified.load(Ordering::Relaxed), 0, "no hash");
        assert_eq!(held.read.load(Ordering::Relaxed), 30, "only the range's bytes are read");
    }

    #[tokio::test]
    async fn a_range_of_a_copy_not_verified_in_the_version_opened_is_served_after_it_is_verified_whole() {
        let (resp, held, fake) = stored(false, true);
        assert!(resp.file_range(0, 10).is_none(), "not sent from its file unverified");
        let got = collect(resp.stream(3_000_000, Some(3_000_030))).await.expect("the range");
        assert!(got == held.bytes[3_000_000..3_000_030]);
        assert_eq!(fake.verified.load(Ordering::Relaxed), 1, "verified first");
        assert_eq!(fake.refetched.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_range_of_a_damaged_copy_comes_from_the_blob_fetched_again() {
        let (resp, held, fake) = stored(false, false);
        let got = collect(resp.stream(3_000_000, Some(3_000_030))).await.expect("the range");
        assert!(got == fake.whole[3_000_000..3_000_030]);
        assert_eq!(fake.refetched.load(Ordering::Relaxed), 1);
        assert_eq!(held.read.load(Ordering::Relaxed), 0, "nothing of the damaged copy is served");
    }

    #[tokio::test]
    async fn a_stored_stream_whose_copy_changed_ends_short_and_tells_its_custody() {
        let (resp, held, fake) = stored(true, true);
        held.change(Version(77));
        let err = collect(resp.stream(0, None)).await.expect_err("the stream fails");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(*fake.changed.lock().expect("lock"), vec![Version(77)]);
    }
}
