//! `CacheActor`: owns the cache on disk.
//!
//! It is the only writer of `imagePath` and of the index: it hands out blob claims (one leader per digest across
//! all repositories; everyone else joins the leader's transfer), commits verified blobs, stores manifests and their
//! references, and flushes last-pulled times in batches. File I/O runs on the blocking pool, never in a handler.
//! Readers do not come here: they use the index and open committed files through `Mirror`.
//!
//! When a write fails because the disk is full or the directory is unwritable, the actor stops taking writes for
//! `UNWRITABLE_BACKOFF`, logging at most once per backoff period; meanwhile claims answer `Uncacheable` and content
//! is streamed to clients uncached. Messages: `ClaimBlob`, `CommitBlob`, `ReleaseBlob`, `PutManifest`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::digest::Digest;
use crate::error::StoreError;
use crate::messages::{BlobClaim, ClaimBlob, CommitBlob, Invalidate, LinkReference, PutManifest, ReleaseBlob};
use crate::store::{BlobLease, ManifestMeta, Store};
use crate::transfer::{transfer, Transfer};

/// How long the cache stays read-only after a disk-full or unwritable error before trying writes again.
const UNWRITABLE_BACKOFF: Duration = Duration::from_secs(60);
/// How often changed last-pulled times are written.
const FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// See the module documentation.
pub struct CacheActor {
    store: Store,
    /// Blobs being fetched right now, by digest: the single leader's transfer that everyone else follows.
    claims: HashMap<Digest, Transfer>,
    /// Until when writes are refused (disk full or unwritable).
    unwritable_until: Option<Instant>,
}

impl CacheActor {
    /// An actor over an opened, rebuilt store.
    pub fn new(store: Store) -> CacheActor {
        CacheActor { store, claims: HashMap::new(), unwritable_until: None }
    }

    fn writable(&mut self) -> bool {
        match self.unwritable_until {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                self.unwritable_until = None;
                tracing::info!(dir = %self.store.layout().root().display(), "retrying writes to the cache");
                true
            }
            None => true,
        }
    }

    fn storage_failed(&mut self, err: &StoreError) {
        if err.makes_cache_unwritable() {
            if self.unwritable_until.is_none() {
                tracing::error!(
                    error = %err,
                    "cache is not writable (disk full?); serving cached content and passing new content through \
                     uncached for {}s",
                    UNWRITABLE_BACKOFF.as_secs()
                );
            }
            self.unwritable_until = Some(Instant::now() + UNWRITABLE_BACKOFF);
        } else {
            tracing::error!(error = %err, "cache write failed");
        }
    }
}

impl CacheActor {
    /// Run one store write on the blocking pool, unless writes are refused right now; a storage failure starts the
    /// unwritable back-off.
    fn write<T: Send + 'static>(
        &mut self,
        op: &'static str,
        work: impl FnOnce(Store) -> Result<T, StoreError> + Send + 'static,
    ) -> ResponseActFuture<Self, Result<T, StoreError>> {
        if !self.writable() {
            return Box::pin(actix::fut::ready(Err(StoreError::Unwritable)));
        }
        let store = self.store.clone();
        let run = async move {
            tokio::task::spawn_blocking(move || work(store)).await.unwrap_or_else(|e| {
                Err(StoreError::Io { op, path: String::new(), detail: e.to_string(), disk_full: false })
            })
        };
        Box::pin(run.into_actor(self).map(|result, act, _ctx| {
            if let Err(e) = &result {
                act.storage_failed(e);
            }
            result
        }))
    }
}

impl Actor for CacheActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(FLUSH_INTERVAL, |act, _ctx| {
            let store = act.store.clone();
            actix_rt::spawn(async move {
                match tokio::task::spawn_blocking(move || store.flush_pulled()).await {
                    Ok(Ok(n)) if n > 0 => tracing::debug!(records = n, "flushed last-pulled times"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot flush last-pulled times"),
                    _ => {}
                }
            });
        });
    }
}

impl Handler<ClaimBlob> for CacheActor {
    type Result = MessageResult<ClaimBlob>;

    /// Decide who fetches a blob: the cache, a running transfer, a new leader, or nobody (uncached).
    fn handle(&mut self, msg: ClaimBlob, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(size) = self.store.index().blob(&msg.digest) {
            return MessageResult(BlobClaim::Cached(size));
        }
        if let Some(running) = self.claims.get(&msg.digest) {
            if !running.is_settled() {
                return MessageResult(BlobClaim::Join(running.clone()));
            }
            self.claims.remove(&msg.digest);
        }
        if !self.writable() {
            return MessageResult(BlobClaim::Uncacheable);
        }
        if !self.store.has_free_space() {
            let root = self.store.layout().root().to_path_buf();
            let full = StoreError::Io {
                op: "write to",
                path: root.display().to_string(),
                detail: "free space is below the cache's reserve".into(),
                disk_full: true,
            };
            self.storage_failed(&full);
            return MessageResult(BlobClaim::Uncacheable);
        }
        // Creating two empty files is quick; doing it here keeps the claim and the file in one step.
        match self.store.begin_blob(&msg.digest) {
            Ok((writer, reader)) => {
                let (transfer, publisher) = transfer(msg.digest.clone(), reader);
                self.claims.insert(msg.digest, transfer.clone());
                MessageResult(BlobClaim::Lead(Box::new(BlobLease { writer, publisher, transfer })))
            }
            Err(e) => {
                self.storage_failed(&e);
                MessageResult(BlobClaim::Uncacheable)
            }
        }
    }
}

impl Handler<CommitBlob> for CacheActor {
    type Result = ResponseActFuture<Self, Result<u64, StoreError>>;

    /// Make a verified blob durable and visible, then end its claim.
    fn handle(&mut self, msg: CommitBlob, _ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let digest = msg.writer.digest().clone();
        let work = async move {
            tokio::task::spawn_blocking(move || store.commit_blob(msg.writer)).await.unwrap_or_else(|e| {
                Err(StoreError::Io { op: "commit", path: String::new(), detail: e.to_string(), disk_full: false })
            })
        };
        Box::pin(work.into_actor(self).map(move |result, act, _ctx| {
            act.claims.remove(&digest);
            if let Err(e) = &result {
                act.storage_failed(e);
            }
            result
        }))
    }
}

impl Handler<ReleaseBlob> for CacheActor {
    type Result = ();

    /// End a failed fetch's claim (only if it is still that transfer's).
    fn handle(&mut self, msg: ReleaseBlob, _ctx: &mut Self::Context) {
        if self.claims.get(&msg.digest).is_some_and(|t| t.same(&msg.transfer)) {
            self.claims.remove(&msg.digest);
        }
        if let Some(e) = &msg.storage {
            self.storage_failed(e);
        }
    }
}

impl Handler<PutManifest> for CacheActor {
    type Result = ResponseActFuture<Self, Result<ManifestMeta, StoreError>>;

    /// Store a manifest and its reference, unless the cache is refusing writes.
    fn handle(&mut self, msg: PutManifest, _ctx: &mut Self::Context) -> Self::Result {
        self.write("store manifest", move |store| {
            store.put_manifest(&msg.image, &msg.reference, &msg.digest, &msg.media_type, &msg.bytes)
        })
    }
}

impl Handler<LinkReference> for CacheActor {
    type Result = ResponseActFuture<Self, Result<(), StoreError>>;

    /// Record a tag for an already cached manifest.
    fn handle(&mut self, msg: LinkReference, _ctx: &mut Self::Context) -> Self::Result {
        self.write("link reference", move |store| store.link(&msg.image, &msg.reference, &msg.digest))
    }
}

impl Handler<Invalidate> for CacheActor {
    type Result = ResponseFuture<Result<bool, StoreError>>;

    /// Forget one reference (the admin API's invalidate).
    fn handle(&mut self, msg: Invalidate, _ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || store.unlink(&msg.key)).await.unwrap_or_else(|e| {
                Err(StoreError::Io { op: "invalidate", path: String::new(), detail: e.to_string(), disk_full: false })
            })
        })
    }
}
