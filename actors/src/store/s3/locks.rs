//! Per-digest exclusion in the S3 store's tier: one task at a time downloads a digest into the tier or starts
//! writing it (`Busy::hold`), and a digest being written is marked (`Writing`) so that a reader finds nothing at once
//! instead of waiting for the write to end.

use std::sync::Arc;

use dashmap::DashMap;

use crate::digest::Digest;

/// The digests held now, each by one task (others wait their turn).
#[derive(Default)]
pub(super) struct Busy(Arc<DashMap<Digest, Arc<tokio::sync::Mutex<()>>>>);

impl Busy {
    /// Wait until no other task holds `digest`; the guard holds it.
    pub(super) async fn hold(&self, digest: &Digest) -> DigestGuard {
        let lock = self.0.entry(digest.clone()).or_default().clone();
        let guard = lock.lock_owned().await;
        DigestGuard { digest: digest.clone(), busy: self.0.clone(), guard: Some(guard) }
    }
}

/// Exclusive use of one digest in the tier, released on drop (and forgotten when nobody else waits).
pub(super) struct DigestGuard {
    digest: Digest,
    busy: Arc<DashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for DigestGuard {
    fn drop(&mut self) {
        self.guard = None;
        self.busy.remove_if(&self.digest, |_, lock| Arc::strong_count(lock) == 1);
    }
}

/// The digests being written (fetched from the upstream).
#[derive(Default)]
pub(super) struct Writing(Arc<DashMap<Digest, ()>>);

impl Writing {
    /// Mark `digest` as being written until the mark is dropped.
    pub(super) fn mark(&self, digest: &Digest) -> WritingMark {
        self.0.insert(digest.clone(), ());
        WritingMark { digest: digest.clone(), writing: self.0.clone() }
    }

    pub(super) fn contains(&self, digest: &Digest) -> bool {
        self.0.contains_key(digest)
    }
}

/// A digest marked as being written, unmarked on drop.
pub(super) struct WritingMark {
    digest: Digest,
    writing: Arc<DashMap<Digest, ()>>,
}

impl Drop for WritingMark {
    fn drop(&mut self) {
        self.writing.remove(&self.digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_nothing_kept_after() {
        let busy = Busy::default();
        let d = Digest::sha256_of(b"x");
        let first = busy.hold(&d).await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), busy.hold(&d)).await;
        assert!(waiting.is_err(), "a second holder waits");
        drop(first);
        drop(busy.hold(&d).await);
        assert!(busy.0.is_empty(), "a digest nobody holds is forgotten");
        let writing = Writing::default();
        let mark = writing.mark(&d);
        assert!(writing.contains(&d));
        drop(mark);
        assert!(!writing.contains(&d));
    }
}
