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
use crate::read::{stored_stream, ByteStream, Check, FileRest, OnChange};
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
    /// Hash the opened copy whole (sharing a hash of the same copy already running) and report the verdict; true
    /// when it is intact.
    fn verify(&self, opened: &OpenedBlob) -> BoxFuture<'static, bool>;
    /// The blob again, once its stored copy was found damaged and reported: from the transfer fetching it.
    fn refetch(&self) -> BoxFuture<'static, Result<BlobResponse, MirrorError>>;
}

pub(super) enum BlobSource {
    /// A small committed blob read whole (see `SMALL_BLOB`), verified if its stored version was not verified yet.
    Memory(Bytes),
    /// A committed blob; `check` hashes it while it is served whole (its stored version was not verified yet).
    Stored { opened: OpenedBlob, check: Option<Check>, custody: Arc<dyn Custody> },
    /// The transfer fetching it now.
    Transfer(Transfer),
    /// Straight from the upstream, verified as it passes.
    Uncached(ByteStream),
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

    /// The bytes `start..end` (end exclusive) as a range of the local file that holds them, for the HTTP layer to copy
    /// to the client's socket inside the kernel: only for a committed blob whose stored version is verified (one
    /// that still has to be hashed while served streams instead) and whose file has the indexed size, in a backend
    /// that keeps blobs in local files. `None` otherwise: then `stream` serves it.
    ///
    /// The range fails before its last piece if the file changed since it was opened (`FileRange::send_to`), and
    /// the change is reported then.
    pub fn file_range(&self, start: u64, end: u64) -> Option<FileRange> {
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

    /// For a blob behind a running transfer: its bytes `start..end` (end exclusive) as they arrive, where each stretch
    /// of at least 256 KiB readable at once is instead left in the returned `FileRest` as a range of the file the
    /// transfer writes, announced by an empty chunk (if the backend keeps a local file). `Err(self)` for any other
    /// blob.
    pub fn stream_then_file(self, start: u64, end: u64) -> Result<(ByteStream, FileRest), BlobResponse> {
        match &self.source {
            BlobSource::Transfer(t) => {
                let rest = FileRest::default();
                Ok((t.stream(start, Some(end), Some(rest.clone())), rest))
            }
            _ => Err(self),
        }
    }

    /// The bytes `start..end` (end exclusive; `None` = to the end). Offsets are ignored for uncached blobs.
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
                        stored_stream(opened.reader, (start, end), size, check, on_change)
                    }
                }
            }
            BlobSource::Transfer(t) => t.stream(start, end, None),
            BlobSource::Uncached(s) => s,
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
        if custody.verify(&opened).await {
            let on_change = on_change(&custody);
            return stored_stream(opened.reader, (start, end), opened.size, None, on_change);
        }
        let failed =
            |why: String| -> ByteStream { Box::pin(futures_util::stream::iter([Err(std::io::Error::other(why))])) };
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
