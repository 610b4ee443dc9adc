//! The most bytes one blob may take: `maxBlobSize`, and the largest blob the cache may hold (`maxCacheSize` when
//! set, else the volume's size less `minFreeSpace`). A blob leader refuses a blob that announces more before a byte
//! is fetched, and stops (removing its partial) one whose body grows past it, whether or not a client still waits;
//! `load` bounds what it decompresses by the same numbers. A blob passed through uncached is bounded too
//! (`pass_through_limit`): no disk is at stake, but an endless body must not stream to a client forever.

use std::fmt;

use crate::store::Store;

/// What bounds blobs; fixed at start. See the module documentation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobBound {
    /// `maxBlobSize`; `None`: no cap of its own.
    max_blob_size: Option<u64>,
    /// `maxCacheSize`; `None`: the volume bounds the cache.
    max_cache_size: Option<u64>,
}

/// The setting that gives a limit (for messages and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitBy {
    /// `maxBlobSize`.
    MaxBlobSize,
    /// `maxCacheSize`.
    MaxCacheSize,
    /// The cache volume's size less `minFreeSpace`.
    Volume,
}

impl fmt::Display for LimitBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitBy::MaxBlobSize => "maxBlobSize",
            LimitBy::MaxCacheSize => "maxCacheSize",
            LimitBy::Volume => "the cache volume's size less minFreeSpace",
        })
    }
}

/// The largest blob accepted now, and which setting says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Bytes.
    pub bytes: u64,
    /// Why.
    pub by: LimitBy,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes ({})", self.bytes, self.by)
    }
}

impl BlobBound {
    /// The bound of `maxBlobSize` (0 or `None`: none of its own) and `maxCacheSize`.
    pub fn new(max_blob_size: Option<u64>, max_cache_size: Option<u64>) -> BlobBound {
        BlobBound { max_blob_size: max_blob_size.filter(|n| *n > 0), max_cache_size: max_cache_size.filter(|n| *n > 0) }
    }

    /// `maxBlobSize` alone: a blob announcing more is refused outright (one above the cache's bound but within this
    /// is passed through uncached, as before).
    pub fn max_blob_size(&self) -> Option<Limit> {
        self.max_blob_size.map(|bytes| Limit { bytes, by: LimitBy::MaxBlobSize })
    }

    /// The largest blob the cache may hold: `maxCacheSize`, else the volume (`total` bytes, when the backend has a
    /// notion of it) less `min_free`.
    pub fn cache_limit(&self, total: Option<u64>, min_free: u64) -> Option<Limit> {
        match (self.max_cache_size, total) {
            (Some(bytes), _) => Some(Limit { bytes, by: LimitBy::MaxCacheSize }),
            (None, Some(total)) => Some(Limit { bytes: total.saturating_sub(min_free), by: LimitBy::Volume }),
            (None, None) => None,
        }
    }

    /// The tighter of `maxBlobSize` and the cache's bound, given the volume's size and `minFreeSpace`.
    pub fn limit_for(&self, total: Option<u64>, min_free: u64) -> Option<Limit> {
        [self.max_blob_size(), self.cache_limit(total, min_free)].into_iter().flatten().min_by_key(|l| l.bytes)
    }

    /// The most bytes of a body without a length passed through uncached, given the volume's size and
    /// `minFreeSpace`: `maxBlobSize` (the cache's bound is often why the blob is passed through), else the cache's.
    pub fn pass_through_limit_for(&self, total: Option<u64>, min_free: u64) -> Option<Limit> {
        self.max_blob_size().or_else(|| self.cache_limit(total, min_free))
    }

    /// `pass_through_limit_for` on this store now (one `statvfs` on a disk, and only without `maxBlobSize`).
    pub async fn pass_through_limit(&self, store: &Store) -> Option<Limit> {
        if let Some(max) = self.max_blob_size() {
            return Some(max);
        }
        let total = store.capacity().await.map(|c| c.total);
        self.pass_through_limit_for(total, store.min_free())
    }

    /// The tighter of `maxBlobSize` and the cache's bound on this store now (one `statvfs` on a disk).
    pub async fn limit(&self, store: &Store) -> Option<Limit> {
        let total = store.capacity().await.map(|c| c.total);
        self.limit_for(total, store.min_free())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_setting_bounds_a_blob() {
        let gib = 1u64 << 30;
        let both = BlobBound::new(Some(16 * gib), Some(10 * gib));
        assert_eq!(both.limit_for(Some(100 * gib), gib), Some(Limit { bytes: 10 * gib, by: LimitBy::MaxCacheSize }));
        let blob = BlobBound::new(Some(gib), None);
        assert_eq!(blob.limit_for(Some(100 * gib), gib), Some(Limit { bytes: gib, by: LimitBy::MaxBlobSize }));
        let volume = BlobBound::new(Some(16 * gib), None);
        assert_eq!(volume.limit_for(Some(8 * gib), gib), Some(Limit { bytes: 7 * gib, by: LimitBy::Volume }));
    }

    #[test]
    fn zero_means_no_cap_of_its_own_and_a_bucket_without_capacity_may_be_unbounded() {
        let none = BlobBound::new(Some(0), None);
        assert_eq!(none.max_blob_size(), None);
        assert_eq!(none.limit_for(None, 1 << 20), None);
        assert_eq!(none.limit_for(Some(5 << 20), 1 << 20), Some(Limit { bytes: 4 << 20, by: LimitBy::Volume }));
        // minFreeSpace larger than the volume: nothing fits.
        assert_eq!(none.limit_for(Some(1 << 20), 2 << 20).map(|l| l.bytes), Some(0));
    }

    #[test]
    fn a_pass_through_is_bounded_by_max_blob_size_else_by_the_cache() {
        let gib = 1u64 << 30;
        let blob = BlobBound::new(Some(16 * gib), Some(gib));
        assert_eq!(blob.pass_through_limit_for(Some(100 * gib), gib).map(|l| l.by), Some(LimitBy::MaxBlobSize));
        let cache = BlobBound::new(None, Some(gib));
        assert_eq!(cache.pass_through_limit_for(None, 0), Some(Limit { bytes: gib, by: LimitBy::MaxCacheSize }));
        assert_eq!(BlobBound::new(None, None).pass_through_limit_for(None, 0), None);
    }
}
