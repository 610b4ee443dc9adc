//! What the front door hands the HTTP layer: a manifest with its bytes, or a blob whose bytes stream from the store,
//! from a running transfer, or straight from the upstream.

use bytes::Bytes;

use crate::read::{object_stream, ByteStream, Check, Limit};
use crate::store::{ManifestMeta, OpenedBlob};
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

    /// The bytes `start..end` (end exclusive; `None` = to the end). Offsets are ignored for uncached blobs.
    pub fn stream(self, start: u64, end: Option<u64>) -> ByteStream {
        match self.source {
            BlobSource::Stored { opened, check } => {
                let size = opened.size;
                let end = end.unwrap_or(size).min(size);
                // Only a whole read can be verified; a range of an unverified blob is left to the scrub.
                let check = check.filter(|_| start == 0 && end == size);
                object_stream(Some(opened.reader), start, Some(end), Limit::Fixed(size), check)
            }
            BlobSource::Transfer(t) => t.stream(start, end),
            BlobSource::Uncached(s) => s,
        }
    }
}
