//! The start-up load: the index is filled in the background while the server already serves.
//!
//! The store's scan runs on a blocking thread and sends what it finds in batches (`Loaded`); this actor indexes each
//! batch like any other change of the index, in mailbox order, so the load and the actor's own decisions never race:
//! an object the actor changed since start (a blob committed or found damaged, a tag linked or invalidated) keeps the
//! actor's state, and the scan's older view of it is dropped (`Index::load_*`). A reference record whose manifest is
//! not indexed (the scan sends every manifest before any record) names nothing and is deleted, unless the actor
//! changed it meanwhile. Access times recorded in the journal are applied last, as the later of each object's times.
//!
//! Until `LoadDone`, `Index::loading` is true and a request that misses the index looks in the store directly
//! (`Store::lookup_manifest`, `Store::open_blob`), so nothing cached is answered 404 or fetched again while the load
//! runs, and every manifest is still checked against its digest when read. The scrub starts once the load is done,
//! and the access journal is not compacted before (the index does not yet hold every object's time).

use std::time::Instant;

use actix::prelude::*;
use tokio::sync::mpsc;

use super::persist::PersistKey;
use super::CacheActor;
use crate::messages::{LoadDone, Loaded};
use crate::store::{Inventory, RebuildReport, Store, StoredObject};

/// Batches in flight between the scan and the actor: the scan stays just ahead of the indexing, and its memory small.
const BATCHES_AHEAD: usize = 2;

/// What the load has found so far, for the summary logged at its end.
#[derive(Debug, Default)]
pub(super) struct LoadState {
    report: RebuildReport,
    /// Reference records dropped because their manifest is not in the store.
    orphans: usize,
}

/// Scan the store and feed the actor until done, then tell it.
pub(super) async fn run(store: Store, cache: Addr<CacheActor>) {
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel(BATCHES_AHEAD);
    let storage = store.storage().clone();
    let feed = async {
        while let Some(batch) = rx.recv().await {
            if cache.send(Loaded(batch)).await.is_err() {
                // The actor is gone (shutdown): dropping the receiver stops the scan.
                return;
            }
        }
    };
    futures_util::future::join(storage.scan(tx), feed).await;
    let _ = cache.send(LoadDone(started.elapsed())).await;
}

impl Handler<Loaded> for CacheActor {
    type Result = ();

    /// Index a batch of what the scan found, leaving alone what the actor changed since start.
    fn handle(&mut self, Loaded(batch): Loaded, ctx: &mut Self::Context) {
        let Inventory { blobs, manifests, records, access, report } = batch;
        let index = self.store.index().clone();
        for blob in blobs {
            index.load_blob(blob.digest, blob.size, blob.stored, blob.version);
        }
        for manifest in manifests {
            index.load_manifest(manifest.meta, manifest.links);
        }
        for record in records {
            if index.has_manifest(&record.digest) {
                index.load_ref(record);
                continue;
            }
            let object = StoredObject::Record(record.key());
            // In a bucket other replicas write, the manifest may have been stored after the listing passed it: the
            // record is left for a request to find (`Mirror::adopt_tag`), never deleted here.
            if index.changed_since_start(&object) || self.store.storage().shared() {
                continue;
            }
            tracing::warn!(reference = %record.key(), manifest = %record.digest, "removing reference to a missing manifest");
            self.load.orphans += 1;
            let storage = self.store.storage().clone();
            let target = object.clone();
            self.persist(ctx, PersistKey::Object(object), async move { storage.remove(&target).await }, |_, _, r| {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot remove a reference to a missing manifest");
                }
            });
        }
        for entry in access {
            match &entry.object {
                StoredObject::Blob(d) => drop(index.set_accessed(d, entry.at)),
                StoredObject::Record(k) => drop(index.set_pulled(k, entry.at)),
                StoredObject::Manifest(_) => {}
            }
        }
        self.access.journal_lines += report.journal_lines;
        self.load.report.add(&report);
    }
}

impl Handler<LoadDone> for CacheActor {
    type Result = ();

    /// The index holds everything stored: say so, and start the scrub.
    fn handle(&mut self, LoadDone(took): LoadDone, ctx: &mut Self::Context) {
        let index = self.store.index();
        index.finish_load();
        let report = &self.load.report;
        let (blobs, blob_bytes) = index.blob_totals();
        tracing::info!(
            manifests = index.manifest_totals().0,
            refs = index.ref_count(),
            blobs,
            blob_mb = format!("{:.1}", blob_bytes as f64 / 1e6),
            took_ms = took.as_millis() as u64,
            "cache index loaded"
        );
        if report.partial_removed > 0 || report.quarantined > 0 || self.load.orphans > 0 {
            tracing::warn!(
                partial_removed = report.partial_removed,
                quarantined = report.quarantined,
                orphan_refs_removed = self.load.orphans,
                "cache loaded with repairs"
            );
        }
        actix_rt::spawn(super::scrub::run(self.store.clone(), ctx.address(), self.scrub));
        self.enforce_cap(ctx);
        self.schedule_prune(ctx);
    }
}
