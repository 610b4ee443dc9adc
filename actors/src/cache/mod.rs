//! `CacheActor`: the one owner of the cache's state.
//!
//! Every change of what is cached goes through this actor's mailbox and is decided here, in order: blob claims (one
//! leader per digest across all repositories; everyone else follows the leader's transfer), commits of verified
//! blobs, manifests and their reference records, invalidation, damage reported by readers and the scrub, and access
//! times. It is the only writer of the index and the only caller of the store's mutating methods; the writes
//! themselves run on the store's pool through `persist` (ordered per object) and never block a handler. Readers do
//! not come here for a cache hit: they read the index and the store through `Mirror`, and note what they served in
//! `Touches`.
//!
//! A directory that cannot take new files (read-only, permissions) makes the actor refuse writes for
//! `UNWRITABLE_BACKOFF`, logging once per period; meanwhile claims answer `PassThrough`. A blob that does not fit in
//! the free space is passed through on its own, without stopping the caching of anything else, and later claims of
//! it pass it through for `TOO_LARGE_MEMORY` before a fetch tries to cache it again.
//!
//! # The handlers
//! Every message the actor handles (defined in `messages/cache.rs`, which says who sends it), where its handler is,
//! and what it does:
//!
//! | Message | File | What it does |
//! |---|---|---|
//! | `ClaimBlob` | `handlers` | decides who fetches a blob: cached, follow the running transfer, lead, or pass through |
//! | `CommitBlob` | `handlers` | publishes a verified blob: stores and indexes it, ends its claim |
//! | `AwaitBlob` | `handlers` | answers once a blob is cached, or once its claim ends without it |
//! | `ReleaseBlob` | `handlers` | ends a claim without a commit (failed, too large, store error, disk full) |
//! | `PutManifest` | `handlers` | stores a fetched manifest (once) and the reference that named it |
//! | `ImportManifest` | `handlers` | checks an archive's manifest against its digest, then stores it as `PutManifest` |
//! | `LinkReference` | `handlers` | records a tag for a manifest already cached |
//! | `KeepGoneTag` | `handlers` | restarts the TTL of a tag the upstream no longer has (same manifest only) |
//! | `Invalidate` | `handlers` | forgets one reference, so its next pull asks the upstream |
//! | `ReportDamage` | `handlers` | un-indexes a damaged object and moves that version aside |
//! | `BlobVerified` | `handlers` | remembers that a blob's stored version matches its digest |
//! | `Adopt` | `handlers` | indexes an object another replica stored (blob, manifest, reference record) |
//! | `Flush` | `handlers` | writes pending access times now (shutdown) |
//! | `MakeRoom` | `evict` | makes room for a blob about to be written (evicting under the cap or on a full volume) |
//! | `Prune` | `prune` | prunes now by rule, collects what no image needs, reports what went |
//! | `Loaded` | `load` | indexes a batch of the start-up scan, except what the actor changed since |
//! | `LoadDone` | `load` | the index is complete: starts the scrub, the size cap and scheduled pruning |
//!
//! Besides messages, the actor runs timers set in `started` (readers' access notes drained every `ACCESS_DRAIN`,
//! written every `ACCESS_FLUSH`) and, once loaded, the scrub (`scrub`, reporting by `ReportDamage` and
//! `BlobVerified`) and the pruning schedule (`prune`).
//!
//! # Files
//! `handlers` (the messages above that are not tied to one job), `persist` (the ordered write queue), `access`
//! (access times), `scrub` (the background verification), `load` (the index filled from the store in the
//! background at start); the cache's life: `life` (settings, removals), `images` (the cache as images), `evict`
//! (the size cap, a full disk), `prune` (pruning and collection), `pins`.

mod access;
mod evict;
mod handlers;
mod images;
mod life;
mod load;
mod persist;
mod pins;
mod prune;
mod scrub;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use self::access::AccessBook;
pub use self::access::Touches;
pub use self::images::{cached_images, CachedImage};
pub use self::life::{LifecycleSettings, PruneSchedule, LOW_WATERMARK_PERCENT};
use self::persist::{PersistKey, Persister};
pub use self::pins::{PinError, Pins};
pub use self::prune::ORPHAN_AGE_SECS;
pub use self::scrub::ScrubSettings;
use crate::digest::Digest;
use crate::error::StoreError;
pub use crate::messages::{PruneReport, PruneRequest, PruneRule};
use crate::metrics::Metrics;
use crate::store::{now_unix, Store, StoredObject};
use crate::transfer::Transfer;

/// How long the cache refuses writes after finding its directory unwritable.
const UNWRITABLE_BACKOFF: Duration = Duration::from_secs(60);
/// How long a blob found too large for the free space is passed through before a fetch tries to cache it again.
const TOO_LARGE_MEMORY: Duration = Duration::from_secs(60);
/// Most blobs remembered as too large (the digests come from clients; the memory must stay bounded).
const TOO_LARGE_MAX: usize = 1024;
/// How often readers' notes of what they served are drained into the index.
const ACCESS_DRAIN: Duration = Duration::from_secs(5);
/// How often changed access times are written to the store.
const ACCESS_FLUSH: Duration = Duration::from_secs(60);
/// The journal is rewritten once it has this many more lines than twice the objects it describes.
const JOURNAL_SLACK: usize = 10_000;

/// See the module documentation.
pub struct CacheActor {
    store: Store,
    /// Blobs being fetched right now, by digest: the single leader's transfer that everyone else follows.
    claims: HashMap<Digest, Transfer>,
    /// Who waits for a claim to end (`AwaitBlob`), by digest.
    claim_waiters: HashMap<Digest, Vec<tokio::sync::oneshot::Sender<bool>>>,
    /// Blobs that did not fit, with their size and when that was found.
    too_large: HashMap<Digest, (u64, Instant)>,
    /// Until when writes are refused (the directory is not writable).
    unwritable_until: Option<Instant>,
    persister: Persister,
    touches: Arc<Touches>,
    access: AccessBook,
    scrub: ScrubSettings,
    metrics: Arc<Metrics>,
    /// The size cap, pins, pruning, and room reserved for blobs being written (`life`).
    life: life::Life,
    /// The start-up load's findings so far.
    load: load::LoadState,
}

impl CacheActor {
    /// An actor over `store`, whose index it fills from the store's scan in the background once started.
    pub fn new(store: Store, touches: Arc<Touches>, scrub: ScrubSettings, metrics: Arc<Metrics>) -> CacheActor {
        CacheActor {
            store,
            claims: HashMap::new(),
            claim_waiters: HashMap::new(),
            too_large: HashMap::new(),
            unwritable_until: None,
            persister: Persister::default(),
            touches,
            access: AccessBook::default(),
            scrub,
            metrics,
            life: life::Life::default(),
            load: load::LoadState::default(),
        }
    }

    /// Forget `digest`'s claim and tell whoever waits for it whether the blob is cached now.
    fn end_claim(&mut self, digest: &Digest) {
        self.claims.remove(digest);
        let cached = self.store.index().blob(digest).is_some();
        for waiter in self.claim_waiters.remove(digest).unwrap_or_default() {
            let _ = waiter.send(cached);
        }
    }

    /// The same actor, keeping the cache's size and content as `settings` say.
    pub fn with_lifecycle(mut self, settings: LifecycleSettings) -> CacheActor {
        self.metrics.cache_max_bytes.set(settings.max_cache_size.unwrap_or(0) as i64);
        self.life.settings = settings;
        self
    }

    /// Whether writes are taken now (not in the unwritable back-off).
    fn writable(&mut self) -> bool {
        match self.unwritable_until {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                self.unwritable_until = None;
                tracing::info!(dir = %self.store.location(), "retrying writes to the cache");
                true
            }
            None => true,
        }
    }

    /// A write failed: back off if the directory cannot take files at all; a full disk is a matter of size.
    fn storage_failed(&mut self, err: &StoreError) {
        if err.makes_cache_unwritable() {
            if self.unwritable_until.is_none() {
                tracing::error!(
                    error = %err,
                    "cache is not writable; serving cached content and passing new content through uncached for {}s",
                    UNWRITABLE_BACKOFF.as_secs()
                );
            }
            self.unwritable_until = Some(Instant::now() + UNWRITABLE_BACKOFF);
        } else {
            tracing::error!(error = %err, "cache write failed");
        }
    }

    /// Remember that `digest` did not fit (bounded).
    fn remember_too_large(&mut self, digest: Digest, size: u64) {
        if self.too_large.len() >= TOO_LARGE_MAX {
            self.too_large.retain(|_, (_, at)| at.elapsed() < TOO_LARGE_MEMORY);
            if self.too_large.len() >= TOO_LARGE_MAX {
                self.too_large.clear();
            }
        }
        self.too_large.insert(digest, (size, Instant::now()));
    }

    /// Whether `digest` was found too large recently (then it is passed through without a new attempt).
    fn known_too_large(&mut self, digest: &Digest) -> Option<u64> {
        match self.too_large.get(digest) {
            Some((size, at)) if at.elapsed() < TOO_LARGE_MEMORY => Some(*size),
            Some(_) => {
                self.too_large.remove(digest);
                None
            }
            None => None,
        }
    }

    /// Move readers' notes into the index's access times.
    fn drain_touches(&mut self) {
        let now = now_unix();
        let (refs, blobs) = self.touches.drain();
        let index = self.store.index();
        for key in refs {
            if index.set_pulled(&key, now) {
                self.access.changed(StoredObject::Record(key), now);
            }
        }
        for digest in blobs {
            if index.set_accessed(&digest, now) {
                self.access.changed(StoredObject::Blob(digest), now);
            }
        }
    }

    /// Write changed access times (or rewrite the journal when it has grown too long); `then` runs once written.
    fn flush_access(&mut self, ctx: &mut Context<Self>, then: impl FnOnce() + 'static) {
        self.drain_touches();
        let entries = self.access.take();
        let index = self.store.index().clone();
        let live = index.blob_totals().0 + index.ref_count();
        let storage = self.store.storage().clone();
        // Not while the index is loading: it does not hold every object's time yet.
        let rewrite = !index.loading() && self.access.journal_lines + entries.len() > 2 * live + JOURNAL_SLACK;
        let written = entries.len();
        if written == 0 && !rewrite {
            then();
            return;
        }
        self.persist(
            ctx,
            PersistKey::AccessLog,
            async move {
                if rewrite {
                    // The journal's whole content, from the index (which already holds every change).
                    let mut all: Vec<crate::store::AccessEntry> = index
                        .blobs()
                        .into_iter()
                        .map(|(d, _, at)| crate::store::AccessEntry { object: StoredObject::Blob(d), at })
                        .collect();
                    all.extend(
                        index
                            .refs()
                            .into_iter()
                            .map(|r| crate::store::AccessEntry { at: r.pulled, object: StoredObject::Record(r.key()) }),
                    );
                    let lines = all.len();
                    storage.rewrite_access(all).await.map(|()| (true, lines))
                } else {
                    storage.record_access(entries).await.map(|()| (false, written))
                }
            },
            move |act, _ctx, result| {
                match result {
                    Ok((true, lines)) => act.access.journal_lines = lines,
                    Ok((false, lines)) => act.access.journal_lines += lines,
                    Err(e) => tracing::warn!(error = %e, "cannot record access times"),
                }
                then();
            },
        );
    }
}

impl Actor for CacheActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(ACCESS_DRAIN, |act, _ctx| act.drain_touches());
        ctx.run_interval(ACCESS_FLUSH, |act, ctx| act.flush_access(ctx, || {}));
        // The scrub, the size cap and pruning start when the load is done (they need the whole index).
        actix_rt::spawn(load::run(self.store.clone(), ctx.address()));
    }
}

#[cfg(test)]
mod life_tests;
#[cfg(test)]
mod tests;
