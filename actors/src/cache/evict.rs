//! Eviction: keeping the cache under `maxCacheSize` and making room on a full disk, by removing the least recently
//! pulled images.
//!
//! Who decides: the cache actor, in the order of its mailbox. A blob leader asks for room (`MakeRoom`) once the
//! upstream has answered with the blob's size, before writing a byte; every commit and manifest is followed by a
//! check of the cap. So eviction only ever happens because new content arrived from an upstream that answered:
//! an unreachable upstream, or a failed pull, removes nothing.
//!
//! What goes, in this order, until enough bytes are freed:
//! 1. content no image needs (manifests no reference reaches; blobs no image reaches, not used for
//!    `ORPHAN_GRACE`), oldest access first;
//! 2. images, least recently pulled first, pinned ones never: the image's references, then every manifest and
//!    blob no other image still needs (a blob shared with a kept image stays);
//! 3. recently used content no image needs.
//!
//! Under the cap, eviction runs once the cap would be exceeded and goes down to the low watermark
//! (`LOW_WATERMARK_PERCENT` of the cap). On a full disk it frees what the blob needs plus `minFreeSpace`. When not
//! enough can go (everything left is pinned, or the blob alone is larger than the cap), nothing is evicted for it and
//! the blob is passed through uncached.

use std::collections::HashSet;

use actix::prelude::*;

use super::images::{CachedImage, ImageGraph};
use super::life::Removal;
use super::pins::Pins;
use super::CacheActor;
use crate::digest::Digest;
use crate::messages::{MakeRoom, Room};
use crate::store::{now_unix, Index};

/// Content no image needs is left alone by eviction, until other choices are used up, for this long after its
/// last use: a blob whose manifest is still to come (an archive being loaded) or one fetched on its own.
const ORPHAN_GRACE_SECS: i64 = 600;
/// Most bytes freed at once after a write met a full disk whose blob size was unknown.
const DISK_FULL_FREE: u64 = 64 * 1024 * 1024;

/// Plan the removal of at least `need` bytes (less when not enough can go). See the module documentation.
pub(super) fn plan_eviction(index: &Index, pins: &Pins, need: u64, now: i64) -> Removal {
    let mut graph = ImageGraph::build(index);
    let mut removal = Removal::default();
    let mut chosen: HashSet<Digest> = HashSet::new();
    let (mut old_blobs, mut recent_blobs): (Vec<_>, Vec<_>) = index
        .blobs()
        .into_iter()
        .filter(|(d, _, _)| !graph.blob_users.contains_key(d))
        .partition(|(_, _, accessed)| *accessed < now - ORPHAN_GRACE_SECS);
    old_blobs.sort_by_key(|(_, _, at)| *at);
    recent_blobs.sort_by_key(|(_, _, at)| *at);
    for meta in index.manifests() {
        if removal.bytes >= need {
            break;
        }
        if !graph.manifest_users.contains_key(&meta.digest) {
            removal.bytes += meta.size;
            removal.manifests.push(meta.digest);
        }
    }
    let mut take_blobs = |removal: &mut Removal, blobs: Vec<(Digest, u64, i64)>| {
        for (digest, size, _) in blobs {
            if removal.bytes >= need {
                break;
            }
            if chosen.insert(digest.clone()) {
                removal.bytes += size;
                removal.blobs.push(digest);
            }
        }
    };
    take_blobs(&mut removal, old_blobs);
    if removal.bytes < need {
        let mut images = std::mem::take(&mut graph.images);
        images.retain(|image| !pins.matches(&image.name()));
        images.sort_by_key(|image| image.pulled);
        for image in images {
            if removal.bytes >= need {
                break;
            }
            take_image(index, &mut graph, &mut removal, image);
        }
    }
    take_blobs(&mut removal, recent_blobs);
    removal
}

/// Add one image to a removal: its references, and every manifest and blob it was the last image to need.
pub(super) fn take_image(index: &Index, graph: &mut ImageGraph, removal: &mut Removal, image: CachedImage) {
    removal.refs.extend(image.refs());
    for digest in &image.manifests {
        if release(&mut graph.manifest_users, digest) {
            removal.bytes += index.manifest(digest).map_or(0, |m| m.size);
            removal.manifests.push(digest.clone());
        }
    }
    for digest in &image.blobs {
        if release(&mut graph.blob_users, digest) {
            removal.bytes += index.blob(digest).map_or(0, |b| b.size);
            removal.blobs.push(digest.clone());
        }
    }
    removal.images.push(image);
}

/// One image less needs `digest`; true when none does any more.
fn release(users: &mut std::collections::HashMap<Digest, usize>, digest: &Digest) -> bool {
    match users.get_mut(digest) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        Some(_) => {
            users.remove(digest);
            true
        }
        None => false,
    }
}

impl CacheActor {
    /// Log and apply an eviction; the receiver fires once the store has removed it all.
    fn evict(&mut self, ctx: &mut Context<Self>, removal: Removal, reason: &'static str, why: String) {
        self.evict_then(ctx, removal, reason, why);
    }

    fn evict_then(
        &mut self,
        ctx: &mut Context<Self>,
        removal: Removal,
        reason: &'static str,
        why: String,
    ) -> tokio::sync::oneshot::Receiver<()> {
        for image in &removal.images {
            tracing::info!(
                image = %image.name(),
                pulled = image.pulled,
                bytes = image.bytes,
                "evicting image ({why})"
            );
        }
        tracing::info!(
            images = removal.images.len(),
            manifests = removal.manifests.len(),
            blobs = removal.blobs.len(),
            bytes = removal.bytes,
            "evicted from the cache ({why})"
        );
        self.apply(ctx, removal, reason)
    }

    /// After new content was indexed: evict down to the low watermark if the cache is over its cap.
    pub(super) fn enforce_cap(&mut self, ctx: &mut Context<Self>) {
        let (Some(cap), Some(low)) = (self.life.settings.max_cache_size, self.life.settings.low_watermark()) else {
            return;
        };
        let used = self.used_bytes();
        if used <= cap {
            return;
        }
        self.drain_touches();
        let removal = plan_eviction(self.store.index(), &self.life.settings.pins, used - low, now_unix());
        if removal.is_empty() {
            tracing::warn!(used, cap, "the cache is over maxCacheSize and nothing more can be evicted (pinned)");
            return;
        }
        self.evict(ctx, removal, "cap", format!("{used} bytes cached, over maxCacheSize {cap}"));
    }

    /// A write met a full disk: free what the blob needs (or `DISK_FULL_FREE` when its size is unknown). False when
    /// nothing could go.
    pub(super) fn evict_for_full_disk(&mut self, ctx: &mut Context<Self>, size: u64) -> bool {
        let need = if size == 0 { DISK_FULL_FREE } else { size.saturating_add(self.store.min_free()) };
        self.drain_touches();
        let removal = plan_eviction(self.store.index(), &self.life.settings.pins, need, now_unix());
        if removal.is_empty() {
            return false;
        }
        self.evict(ctx, removal, "disk", "the cache volume is full".into());
        true
    }
}

impl Handler<MakeRoom> for CacheActor {
    type Result = ResponseActFuture<Self, Room>;

    /// Make room for a blob about to be written: under the cap, and on the volume. Reserves its size until its
    /// commit or release.
    fn handle(&mut self, msg: MakeRoom, ctx: &mut Self::Context) -> Self::Result {
        let MakeRoom { digest, size, held } = msg;
        let mut removed = Vec::new();
        if let (Some(cap), Some(low)) = (self.life.settings.max_cache_size, self.life.settings.low_watermark()) {
            if size > cap {
                tracing::info!(blob = %digest, size, cap, "blob is larger than maxCacheSize; passing it through");
                self.remember_too_large(digest, size);
                return Box::pin(fut::ready(Room::TooLarge));
            }
            // A blob asking again (one of unknown size, growing) replaces its own reservation: not counted twice.
            let used = self.used_bytes().saturating_sub(self.life.reserved.get(&digest).copied().unwrap_or(0));
            if used + size > cap {
                self.drain_touches();
                let removal =
                    plan_eviction(self.store.index(), &self.life.settings.pins, used + size - low, now_unix());
                if removal.bytes < used + size - cap {
                    tracing::warn!(blob = %digest, size, used, cap, "no room under maxCacheSize (the rest is pinned or being written); passing the blob through");
                    return Box::pin(fut::ready(Room::TooLarge));
                }
                let why = format!("{used} bytes cached, {size} more would exceed maxCacheSize {cap}");
                removed.push(self.evict_then(ctx, removal, "cap", why));
            }
        }
        self.life.reserved.insert(digest.clone(), size);
        let storage = self.store.storage().clone();
        let settled = async move {
            for done in removed {
                let _ = done.await;
            }
            storage.capacity().await
        };
        Box::pin(settled.into_actor(self).then(move |capacity, act, ctx| {
            let min_free = act.store.min_free();
            let needed = size.saturating_sub(held).saturating_add(min_free);
            let short = match capacity {
                Some(c) if c.free < needed => needed - c.free,
                _ => return Box::pin(fut::ready(Room::Granted)) as ResponseActFuture<Self, Room>,
            };
            act.drain_touches();
            let removal = plan_eviction(act.store.index(), &act.life.settings.pins, short, now_unix());
            if removal.bytes < short {
                act.release_room(&digest);
                act.remember_too_large(digest, size);
                return Box::pin(fut::ready(Room::TooLarge));
            }
            let done = act.evict_then(ctx, removal, "disk", format!("the cache volume lacks {short} bytes"));
            Box::pin(
                async move {
                    let _ = done.await;
                    Room::Granted
                }
                .into_actor(act),
            )
        }))
    }
}
