//! The S3 store's local disk tier: a filesystem store (`FsStorage`, which also holds the directory lock of this
//! replica's `imagePath`) holding hot blobs, at most `cap` bytes of them (least recently used go first; a file being
//! read stays readable after it is removed). Blobs enter it when downloaded from the bucket or spooled by a write.

use std::sync::Mutex;

use crate::digest::Digest;
use crate::error::StoreError;
use crate::store::backend::{Backend, OpenedBlob};
use crate::store::fs::FsStorage;
use crate::store::keys;
use crate::store::lru::Lru;

/// See the module documentation.
#[derive(Debug)]
pub(super) struct Tier {
    local: FsStorage,
    held: Mutex<Lru<Digest, ()>>,
}

impl Tier {
    pub(super) fn new(local: FsStorage, cap: u64) -> Tier {
        Tier { local, held: Mutex::new(Lru::new(cap)) }
    }

    /// The local store.
    pub(super) fn local(&self) -> &FsStorage {
        &self.local
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Lru<Digest, ()>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open a blob the tier holds, marking it used.
    pub(super) async fn open(&self, digest: &Digest) -> Result<Option<OpenedBlob>, StoreError> {
        let opened = self.local.open(&keys::blob(digest)).await?;
        if let Some(opened) = &opened {
            self.note(digest, opened.size).await;
        }
        Ok(opened)
    }

    /// Note a blob in the tier (most recently used), and trim the tier to its cap.
    pub(super) async fn note(&self, digest: &Digest, size: u64) {
        let evicted = self.held().insert(digest.clone(), (), size);
        for (digest, ()) in evicted {
            let _ = self.local.delete(&keys::blob(&digest)).await;
        }
    }

    /// Forget a blob (it is deleted or moved aside by the caller).
    pub(super) fn forget(&self, digest: &Digest) {
        self.held().remove(digest);
    }

    /// Note every blob the local store holds (at start, before the bucket is scanned).
    pub(super) async fn load(&self) {
        use futures_util::StreamExt;
        let mut listing = self.local.list("blobs/");
        while let Some(Ok(listed)) = listing.next().await {
            if let Some(digest) = keys::digest_in(&listed.key).filter(|_| listed.plain) {
                self.note(&digest, listed.size).await;
            }
        }
    }

    /// The bytes the tier holds (tests).
    #[cfg(test)]
    pub(super) fn used(&self) -> u64 {
        self.held().weight()
    }
}

#[cfg(test)]
#[path = "tier_tests.rs"]
mod tests;
