//! What the front door hands the HTTP layer: a manifest with its bytes, or a blob whose bytes are in memory (a small
//! committed blob, verified), stream from the store, from a running transfer, or straight from the upstream.

use bytes::Bytes;

use crate::read::{object_stream, ByteStream, Check, FileRest, Limit};
use crate::store::{FileRange, ManifestMeta, OpenedBlob};
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

pub(super) enum BlobSource {
    /// A small committed blob read whole (see `SMALL_BLOB`), verified if its stored version was not verified yet.
    Memory(Bytes),
    /// A committed blob; `check` hashes it while it is served whole (its stored version was not verified yet).
    Stored { opened: OpenedBlob, check: Option<Check> },
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
    pub fn file_range(&self, start: u64, end: u64) -> Option<FileRange> {
        match &self.source {
            BlobSource::Stored { opened, check: None } if Some(opened.size) == self.size && end <= opened.size => {
                opened.reader.file_range(start, end)
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
            BlobSource::Stored { opened, check } => {
                let size = opened.size;
                let end = end.unwrap_or(size).min(size);
                // Only a whole read can be verified; a range of an unverified blob is left to the scrub.
                let check = check.filter(|_| start == 0 && end == size);
                object_stream(Some(opened.reader), (start, Some(end)), Limit::Fixed(size), check, None)
            }
            BlobSource::Transfer(t) => t.stream(start, end, None),
            BlobSource::Uncached(s) => s,
        }
    }
}

/// `bytes[start..end]`, clamped to what there is.
fn slice(bytes: &Bytes, start: u64, end: Option<u64>) -> Bytes {
    let len = bytes.len();
    let end = end.map_or(len, |e| usize::try_from(e).unwrap_or(usize::MAX).min(len));
    let start = usize::try_from(start).unwrap_or(usize::MAX).min(end);
    bytes.slice(start..end)
}
