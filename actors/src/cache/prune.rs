//! Pruning: removing images by rule (the Go server's `prune` command and `pruneConfig`), and collecting what no image
//! needs any more.
//!
//! A prune selects the images that match every rule given (not pulled for a while, created before a date or more
//! than a while ago, named by one of a list of regular expressions), least recently pulled first, at most `limit`
//! of them, never a pinned one. With them go their references and every manifest and blob no other image needs.
//! Then the collection: manifests that no reference reaches any more, and blobs that no remaining manifest
//! references and that were not used for `ORPHAN_AGE_SECS`. A dry run decides the same and removes nothing; the log
//! says what would go. Pruning never looks at upstreams: an image is never removed because its upstream is gone.

use std::collections::HashSet;

use actix::prelude::*;

use super::evict::take_image;
use super::images::{CachedImage, ImageGraph};
use super::life::Removal;
use super::pins::Pins;
use super::CacheActor;
use crate::digest::Digest;
use crate::messages::{Prune, PruneReport, PruneRequest, PruneRule};
use crate::store::{now_unix, Index};

/// Blobs no manifest references are collected once unused for this long (they may belong to a pull or a load still
/// under way).
pub const ORPHAN_AGE_SECS: i64 = 3600;

impl PruneRule {
    fn holds(&self, image: &CachedImage, now: i64) -> bool {
        match self {
            PruneRule::NotPulledFor(d) => image.pulled < now - d.as_secs() as i64,
            PruneRule::CreatedMoreThan(d) => image.root.created < now - d.as_secs() as i64,
            PruneRule::CreatedBefore(t) => image.root.created < *t,
            PruneRule::Matches(patterns) => {
                let name = image.name();
                patterns.iter().any(|p| p.is_match(&name))
            }
        }
    }
}

/// Plan a prune. See the module documentation.
pub(super) fn plan_prune(index: &Index, pins: &Pins, request: &PruneRequest, now: i64) -> Removal {
    let mut graph = ImageGraph::build(index);
    let mut removal = Removal::default();
    if !request.rules.is_empty() {
        let mut chosen: Vec<_> = std::mem::take(&mut graph.images)
            .into_iter()
            .filter(|image| !pins.matches(&image.name()) && request.rules.iter().all(|r| r.holds(image, now)))
            .collect();
        chosen.sort_by_key(|image| image.pulled);
        chosen.truncate(request.limit.unwrap_or(usize::MAX));
        for image in chosen {
            take_image(index, &mut graph, &mut removal, image);
        }
    }
    // Collection: manifests nothing reaches, and blobs no remaining manifest references and nobody used lately.
    let taken_manifests: HashSet<Digest> = removal.manifests.iter().cloned().collect();
    let taken_blobs: HashSet<Digest> = removal.blobs.iter().cloned().collect();
    let mut referenced = HashSet::new();
    for meta in index.manifests() {
        if graph.manifest_users.contains_key(&meta.digest) {
            if let Some(links) = index.links(&meta.digest) {
                referenced.extend(links.blobs.iter().cloned());
            }
        } else if !taken_manifests.contains(&meta.digest) {
            removal.bytes += meta.size;
            removal.manifests.push(meta.digest);
        }
    }
    for (digest, size, accessed) in index.blobs() {
        if !referenced.contains(&digest) && accessed < now - ORPHAN_AGE_SECS && !taken_blobs.contains(&digest) {
            removal.bytes += size;
            removal.blobs.push(digest);
        }
    }
    removal
}

impl CacheActor {
    /// Run one prune; `done` gets the report once the store has removed everything (at once for a dry run).
    pub(super) fn prune(
        &mut self,
        ctx: &mut Context<Self>,
        request: &PruneRequest,
        done: impl FnOnce(PruneReport) + 'static,
    ) {
        self.drain_touches();
        let removal = plan_prune(self.store.index(), &self.life.settings.pins, request, now_unix());
        let report = PruneReport {
            dry_run: request.dry_run,
            images: removal.images.iter().map(|i| i.name()).collect(),
            manifests: removal.manifests.len(),
            blobs: removal.blobs.len(),
            bytes: removal.bytes,
        };
        let verb = if request.dry_run { "would prune" } else { "pruning" };
        for image in &removal.images {
            tracing::info!(image = %image.name(), pulled = image.pulled, created = image.root.created, bytes = image.bytes, "{verb} image");
        }
        tracing::info!(
            dry_run = request.dry_run,
            images = report.images.len(),
            manifests = report.manifests,
            blobs = report.blobs,
            bytes = report.bytes,
            "prune {}",
            if request.dry_run { "(dry run): nothing removed" } else { "done" }
        );
        if request.dry_run || removal.is_empty() {
            done(report);
            return;
        }
        let removed = self.apply(ctx, removal, "prune");
        ctx.spawn(
            async move {
                let _ = removed.await;
                done(report);
            }
            .into_actor(self),
        );
    }

    /// Start the background pruning, if configured.
    pub(super) fn schedule_prune(&mut self, ctx: &mut Context<Self>) {
        let Some(schedule) = self.life.settings.prune.clone() else { return };
        ctx.run_interval(schedule.every, move |act, ctx| {
            act.prune(ctx, &schedule.request, |_| {});
        });
    }
}

impl Handler<Prune> for CacheActor {
    type Result = ResponseFuture<PruneReport>;

    /// Prune now (the `prune` command, the admin API).
    fn handle(&mut self, msg: Prune, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.prune(ctx, &msg.request, move |report| {
            let _ = tx.send(report);
        });
        Box::pin(async move { rx.await.unwrap_or_default() })
    }
}
