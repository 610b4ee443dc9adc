//! The cache's life: what it keeps and for how long. Settings (`maxCacheSize`, `pinned`, `pruneConfig`), the state
//! the cache actor keeps for them (room reserved for blobs being written), and the one way anything leaves the
//! cache: a `Removal`, decided by the actor (eviction in `evict`, pruning in `prune`), applied to the index at once
//! and to the store through `persist`, reference records first, then manifests, then blobs, so that a crash
//! half-way leaves at worst unreferenced blobs (collected later), never a reference to a missing manifest.
//!
//! Readers are never cut: a reader that has a blob open keeps reading it after its removal (the store's readers
//! hold an open handle; the filesystem backend reads an unlinked file to its end), a reader that finds it gone
//! fetches it again like any miss, and blobs still being written are not in the index, so nothing can decide to
//! remove them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::images::CachedImage;
use super::persist::PersistKey;
use super::pins::Pins;
use super::CacheActor;
use crate::digest::Digest;
use crate::messages::PruneRequest;
use crate::store::{RefKey, StoredObject};

/// Eviction brings the cache down to this share of `maxCacheSize` (percent), so that it does not run again for
/// every new blob once the cap is reached.
pub const LOW_WATERMARK_PERCENT: u64 = 90;

/// When and what the background pruning removes (`pruneConfig`).
#[derive(Debug, Clone)]
pub struct PruneSchedule {
    /// What to remove each time.
    pub request: PruneRequest,
    /// Time between two runs (`frequency`); the first runs this long after start.
    pub every: Duration,
}

/// How the cache's size and content are managed.
#[derive(Debug, Clone, Default)]
pub struct LifecycleSettings {
    /// Blobs plus manifests are kept under this many bytes (`maxCacheSize`); `None`: no cap.
    pub max_cache_size: Option<u64>,
    /// Images never evicted or pruned (`pinned`).
    pub pins: Pins,
    /// Background pruning (`pruneConfig` when enabled).
    pub prune: Option<PruneSchedule>,
}

impl LifecycleSettings {
    /// The size eviction brings the cache down to, under a cap.
    pub fn low_watermark(&self) -> Option<u64> {
        self.max_cache_size.map(|cap| cap / 100 * LOW_WATERMARK_PERCENT + cap % 100 * LOW_WATERMARK_PERCENT / 100)
    }
}

/// The cache actor's state for its life.
#[derive(Debug, Default)]
pub(super) struct Life {
    pub settings: LifecycleSettings,
    /// Bytes granted to blobs being written (`MakeRoom`), until their commit or release: they count against the cap.
    pub reserved: HashMap<Digest, u64>,
}

/// What leaves the cache in one decision.
#[derive(Debug, Default)]
pub(super) struct Removal {
    /// The images removed whole (for logs and counts).
    pub images: Vec<CachedImage>,
    pub refs: Vec<RefKey>,
    pub manifests: Vec<Digest>,
    pub blobs: Vec<Digest>,
    /// Bytes of the manifests and blobs.
    pub bytes: u64,
}

impl Removal {
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty() && self.manifests.is_empty() && self.blobs.is_empty()
    }
}

type Then = Box<dyn FnOnce(&mut CacheActor, &mut Context<CacheActor>)>;

impl CacheActor {
    /// Bytes counted against the cap: cached blobs and manifests, and room granted to blobs being written.
    pub(super) fn used_bytes(&self) -> u64 {
        let index = self.store.index();
        index.blob_totals().1 + index.manifest_totals().1 + self.life.reserved.values().sum::<u64>()
    }

    /// A blob's write ended (committed or not): its reserved room is released.
    pub(super) fn release_room(&mut self, digest: &Digest) {
        self.life.reserved.remove(digest);
    }

    /// Remove what `removal` names: from the index now, from the store in order. `reason` labels the metrics
    /// (`cap`, `disk`, `prune`). The receiver fires once the store has done it all.
    pub(super) fn apply(&mut self, ctx: &mut Context<Self>, removal: Removal, reason: &str) -> oneshot::Receiver<()> {
        let index = self.store.index().clone();
        for key in &removal.refs {
            index.remove_ref(key);
        }
        for digest in &removal.manifests {
            index.remove_manifest(digest);
        }
        for digest in &removal.blobs {
            index.remove_blob(digest);
        }
        self.metrics.evictions.with_label_values(&[reason]).inc_by(removal.images.len() as u64);
        self.metrics.evicted_bytes.with_label_values(&[reason]).inc_by(removal.bytes);
        let idle = self.metrics.eviction_idle.with_label_values(&[reason]);
        let now = crate::store::now_unix();
        for image in &removal.images {
            idle.observe(now.saturating_sub(image.pulled).max(0) as f64);
        }
        let records: Vec<StoredObject> = removal.refs.into_iter().map(StoredObject::Record).collect();
        let manifests: Vec<StoredObject> = removal.manifests.into_iter().map(StoredObject::Manifest).collect();
        let blobs: Vec<StoredObject> = removal.blobs.into_iter().map(StoredObject::Blob).collect();
        for object in records.iter().chain(&manifests).chain(&blobs) {
            self.access.forget(object);
        }
        let (tx, rx) = oneshot::channel();
        let last: Then = Box::new(move |_, _| {
            let _ = tx.send(());
        });
        let blobs_stage: Then = Box::new(move |act, ctx| act.remove_all(ctx, blobs, last));
        let manifests_stage: Then = Box::new(move |act, ctx| act.remove_all(ctx, manifests, blobs_stage));
        self.remove_all(ctx, records, manifests_stage);
        rx
    }

    /// Delete `objects` from the store (each in order after earlier writes of it), then run `then`.
    fn remove_all(&mut self, ctx: &mut Context<Self>, objects: Vec<StoredObject>, then: Then) {
        if objects.is_empty() {
            then(self, ctx);
            return;
        }
        let pending = Rc::new(RefCell::new((objects.len(), Some(then))));
        for object in objects {
            let storage = self.store.storage().clone();
            let pending = pending.clone();
            let target = object.clone();
            self.persist(
                ctx,
                PersistKey::Object(object),
                async move { storage.remove(&target).await },
                move |act, ctx, result| {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "cannot remove from the cache store");
                    }
                    let next = {
                        let mut p = pending.borrow_mut();
                        p.0 -= 1;
                        if p.0 == 0 {
                            p.1.take()
                        } else {
                            None
                        }
                    };
                    if let Some(next) = next {
                        next(act, ctx);
                    }
                },
            );
        }
    }
}
