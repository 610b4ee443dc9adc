//! The cache actor's messages. Each handler decides at once, in mailbox order, and changes the index then; the store
//! writes it starts run through `persist`, and replies that depend on them are sent when they finish.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::persist::PersistKey;
use super::CacheActor;
use crate::claim::{BlobClaim, ClaimReply, Lease};
use crate::digest::Digest;
use crate::error::StoreError;
use crate::graph::ManifestLinks;
use crate::messages::{
    Adopt, AwaitBlob, BlobVerified, ClaimBlob, CommitBlob, Fault, Flush, ImportError, ImportManifest, Invalidate,
    KeepGoneTag, LinkReference, PutManifest, Release, ReleaseBlob, ReportDamage,
};
use crate::outcome::PassReason;
use crate::reference::{ImageKey, Reference};
use crate::store::{now_unix, ManifestMeta, RefKey, RefRecord, StoredObject};
use crate::transfer::transfer;

/// A reply that a store write will send later, and the future the handler returns for it.
fn later<T: Send + 'static>(gone: T) -> (oneshot::Sender<T>, ResponseFuture<T>) {
    let (tx, rx) = oneshot::channel();
    (tx, Box::pin(async move { rx.await.unwrap_or(gone) }))
}

fn stopped() -> StoreError {
    StoreError::Task { op: "cache", detail: "the cache actor stopped".into() }
}

impl CacheActor {
    /// Record that `key` names `digest` as the upstream just confirmed (writing the record if it changed), then call
    /// `done` with the write's result.
    fn link(
        &mut self,
        ctx: &mut Context<Self>,
        image: &ImageKey,
        reference: &Reference,
        digest: &Digest,
        done: impl FnOnce(Result<(), StoreError>) + 'static,
    ) {
        let key = RefKey { image: image.clone(), reference: reference.clone() };
        let index = self.store.index();
        if index.ref_digest(&key).as_ref() == Some(digest) {
            index.set_checked(&key);
            done(Ok(()));
            return;
        }
        let now = now_unix();
        let record = RefRecord {
            namespace: image.ns().clone(),
            repository: image.repo().clone(),
            reference: reference.clone(),
            digest: digest.clone(),
            created: now,
            pulled: now,
        };
        index.set_ref(record.clone());
        index.set_checked(&key);
        let storage = self.store.storage().clone();
        self.persist(
            ctx,
            PersistKey::Object(StoredObject::Record(key)),
            async move { storage.put_record(&record).await },
            move |act, _ctx, result| {
                if let Err(e) = &result {
                    act.storage_failed(e);
                }
                done(result);
            },
        );
    }
}

impl Handler<ClaimBlob> for CacheActor {
    type Result = MessageResult<ClaimBlob>;

    /// Decide who fetches a blob: the cache has it, a running transfer, a new leader, or nobody (pass it through).
    fn handle(&mut self, msg: ClaimBlob, _ctx: &mut Self::Context) -> Self::Result {
        if self.store.index().blob(&msg.digest).is_some() {
            return MessageResult(ClaimReply::Claim(BlobClaim::Cached));
        }
        if let Some(running) = self.claims.get(&msg.digest) {
            // Running, or verified and being committed (its bytes are whole and readable): follow it.
            if !running.is_settled() {
                return MessageResult(ClaimReply::Claim(BlobClaim::Follow(running.clone())));
            }
            if running.is_done() {
                return MessageResult(ClaimReply::Claim(BlobClaim::Follow(running.joined_verified())));
            }
            self.end_claim(&msg.digest);
        }
        if !self.writable() {
            return MessageResult(ClaimReply::Claim(BlobClaim::PassThrough(PassReason::CacheUnwritable)));
        }
        if let Some(size) = self.known_too_large(&msg.digest) {
            return MessageResult(ClaimReply::Claim(BlobClaim::PassThrough(PassReason::TooLarge { size })));
        }
        let (transfer, publisher) = transfer(msg.digest.clone());
        self.claims.insert(msg.digest, transfer.clone());
        MessageResult(ClaimReply::Lead(Lease { publisher, transfer }))
    }
}

impl Handler<CommitBlob> for CacheActor {
    type Result = ResponseFuture<Result<u64, StoreError>>;

    /// Publish a verified blob, index it, end its claim.
    fn handle(&mut self, msg: CommitBlob, ctx: &mut Self::Context) -> Self::Result {
        let (tx, reply) = later(Err(stopped()));
        let blob = msg.blob;
        let (digest, size) = (blob.digest().clone(), blob.size());
        let key = PersistKey::Object(StoredObject::Blob(digest.clone()));
        self.persist(ctx, key, blob.commit(), move |act, ctx, result| {
            act.release_room(&digest);
            let _ = tx.send(match result {
                Ok(version) => {
                    act.store.index().insert_blob(digest.clone(), size, now_unix(), version, true);
                    act.enforce_cap(ctx);
                    Ok(size)
                }
                Err(e) => {
                    act.storage_failed(&e);
                    Err(e)
                }
            });
            act.end_claim(&digest);
        });
        reply
    }
}

impl Handler<AwaitBlob> for CacheActor {
    type Result = ResponseFuture<bool>;

    /// Answer now if the blob is cached or unclaimed, else when its claim ends.
    fn handle(&mut self, msg: AwaitBlob, _ctx: &mut Self::Context) -> Self::Result {
        let cached = self.store.index().blob(&msg.digest).is_some();
        if cached || !self.claims.contains_key(&msg.digest) {
            return Box::pin(std::future::ready(cached));
        }
        let (tx, reply) = later(false);
        self.claim_waiters.entry(msg.digest).or_default().push(tx);
        reply
    }
}

impl Handler<ReleaseBlob> for CacheActor {
    type Result = ();

    /// End a fetch's claim without a commit (only if it is still that transfer's).
    fn handle(&mut self, msg: ReleaseBlob, ctx: &mut Self::Context) {
        let digest = msg.transfer.digest().clone();
        if self.claims.get(&digest).is_some_and(|t| t.same(&msg.transfer)) {
            self.end_claim(&digest);
            self.release_room(&digest);
        }
        match msg.cause {
            Release::Failed => {}
            Release::TooLarge { size } => {
                tracing::info!(blob = %digest, size, "blob does not fit in the cache's free space; passing it through");
                self.remember_too_large(digest, size);
            }
            Release::Store(e) => {
                if e.is_disk_full() && !self.evict_for_full_disk(ctx, 0) {
                    self.remember_too_large(digest, 0);
                }
                self.storage_failed(&e);
            }
            Release::DiskFull { size } => {
                if !self.evict_for_full_disk(ctx, size) {
                    tracing::info!(blob = %digest, "the cache volume is full and nothing can be evicted; passing the blob through");
                    self.remember_too_large(digest, size);
                }
            }
        }
    }
}

impl Handler<PutManifest> for CacheActor {
    type Result = ResponseFuture<Result<ManifestMeta, StoreError>>;

    /// Store a manifest (unless it is stored already) and the reference it was pulled by.
    fn handle(&mut self, msg: PutManifest, ctx: &mut Self::Context) -> Self::Result {
        let meta = ManifestMeta {
            digest: msg.digest.clone(),
            media_type: msg.media_type.clone(),
            size: msg.bytes.len() as u64,
        };
        if !self.writable() {
            return Box::pin(async { Err(StoreError::Unwritable) });
        }
        let (tx, reply) = later(Err(stopped()));
        if self.store.index().manifest(&msg.digest).is_some() {
            self.link(ctx, &msg.image, &msg.reference, &msg.digest, move |r| {
                let _ = tx.send(r.map(|()| meta));
            });
            return reply;
        }
        let storage = self.store.storage().clone();
        let key = PersistKey::Object(StoredObject::Manifest(msg.digest.clone()));
        let links = ManifestLinks::parse_or_empty(&msg.bytes);
        let PutManifest { image, reference, digest, media_type, bytes } = msg;
        let write_digest = digest.clone();
        self.persist(
            ctx,
            key,
            async move { storage.put_manifest(&write_digest, &media_type, bytes).await },
            move |act, ctx, result| match result {
                Ok(()) => {
                    act.store.index().insert_manifest(meta.clone(), links);
                    act.link(ctx, &image, &reference, &digest, move |r| {
                        let _ = tx.send(r.map(|()| meta));
                    });
                    act.enforce_cap(ctx);
                }
                Err(e) => {
                    act.storage_failed(&e);
                    let _ = tx.send(Err(e));
                }
            },
        );
        reply
    }
}

impl Handler<ImportManifest> for CacheActor {
    type Result = ResponseFuture<Result<ManifestMeta, ImportError>>;

    /// Store a manifest read from an archive, if its bytes match its digest, with the reference it is loaded as.
    fn handle(&mut self, msg: ImportManifest, ctx: &mut Self::Context) -> Self::Result {
        let actual = Digest::of(msg.digest.algorithm(), &msg.bytes);
        if actual != msg.digest {
            return Box::pin(async move { Err(ImportError::Mismatch { expected: msg.digest, actual }) });
        }
        let put = PutManifest {
            image: msg.image,
            reference: msg.reference,
            digest: msg.digest,
            media_type: msg.media_type,
            bytes: msg.bytes,
        };
        let stored = <Self as Handler<PutManifest>>::handle(self, put, ctx);
        Box::pin(async move { stored.await.map_err(ImportError::Store) })
    }
}

impl Handler<LinkReference> for CacheActor {
    type Result = ResponseFuture<Result<(), StoreError>>;

    /// Record a tag for an already cached manifest.
    fn handle(&mut self, msg: LinkReference, ctx: &mut Self::Context) -> Self::Result {
        if !self.writable() {
            return Box::pin(async { Err(StoreError::Unwritable) });
        }
        let (tx, reply) = later(Err(stopped()));
        self.link(ctx, &msg.image, &msg.reference, &msg.digest, move |r| {
            let _ = tx.send(r);
        });
        reply
    }
}

impl Handler<KeepGoneTag> for CacheActor {
    type Result = ();

    /// Start a gone tag's TTL again, in mailbox order with every link: only while it still names the manifest that
    /// was served (a tag relinked since keeps its own confirmation time), and with no store write (the time is kept
    /// in memory, as for a confirmed tag).
    fn handle(&mut self, msg: KeepGoneTag, _ctx: &mut Self::Context) {
        let key = RefKey { image: msg.image, reference: msg.reference };
        let index = self.store.index();
        if index.ref_digest(&key).as_ref() == Some(&msg.digest) {
            index.set_checked(&key);
        }
    }
}

impl Handler<Invalidate> for CacheActor {
    type Result = ResponseFuture<Result<bool, StoreError>>;

    /// Forget one reference (the admin API's invalidate): gone from the index now, from the store in order after any
    /// earlier write of its record.
    fn handle(&mut self, msg: Invalidate, ctx: &mut Self::Context) -> Self::Result {
        let index = self.store.index();
        let existed = index.remove_ref(&msg.key).is_some();
        // While the index loads, the record may be stored without being indexed yet: the store tells.
        let ask_store = !existed && index.loading();
        let object = StoredObject::Record(msg.key.clone());
        self.access.forget(&object);
        let (tx, reply) = later(Err(stopped()));
        let storage = self.store.storage().clone();
        let (target, key) = (object.clone(), msg.key);
        let work = async move {
            let stored = ask_store && matches!(storage.read_record(&key).await, Ok(Some(_)));
            storage.remove(&target).await.map(|()| existed || stored)
        };
        self.persist(ctx, PersistKey::Object(object), work, move |_, _, r| {
            let _ = tx.send(r);
        });
        reply
    }
}

impl Handler<ReportDamage> for CacheActor {
    type Result = ();

    /// Un-index a damaged object at once and move it aside, so the next request (the reporter's own retry first)
    /// fetches it again. The store moves only the damaged version: a copy committed since (ordered before this by
    /// `persist`) stays, and is found again by the next fetch's commit.
    fn handle(&mut self, msg: ReportDamage, ctx: &mut Self::Context) {
        let index = self.store.index();
        let (kind, present) = match &msg.object {
            StoredObject::Blob(d) => ("blob", index.remove_blob(d)),
            StoredObject::Manifest(d) => ("manifest", index.remove_manifest(d)),
            StoredObject::Record(_) => return,
        };
        if !present {
            return;
        }
        let (fault, why) = match &msg.fault {
            Fault::Missing => ("missing", "missing from the store".to_string()),
            Fault::Corrupt => ("corrupt", "content does not match its digest".to_string()),
            Fault::WrongSize { found, expected } => ("size", format!("{found} bytes where {expected} were stored")),
            Fault::Unreadable(e) => ("unreadable", format!("unreadable: {e}")),
            Fault::Changed => ("changed", "changed in place since it was verified".to_string()),
        };
        self.metrics.store_faults.with_label_values(&[kind, fault]).inc();
        tracing::warn!(object = %msg.object, "cached {kind} is damaged ({why}); it will be fetched again");
        self.access.forget(&msg.object);
        if matches!(msg.fault, Fault::Missing) {
            return;
        }
        let storage = self.store.storage().clone();
        let (object, version) = (msg.object.clone(), msg.version);
        let work = async move { storage.quarantine(&object, version, &why).await };
        self.persist(ctx, PersistKey::Object(msg.object), work, |_, _, r| {
            if let Err(e) = r {
                tracing::warn!(error = %e, "cannot move a damaged object aside");
            }
        });
    }
}

impl Handler<BlobVerified> for CacheActor {
    type Result = ();

    /// Remember that this version of a blob is intact, so it is served without hashing until it changes.
    fn handle(&mut self, msg: BlobVerified, _ctx: &mut Self::Context) {
        self.store.index().set_verified(&msg.digest, msg.version);
    }
}

impl Handler<Adopt> for CacheActor {
    type Result = ();

    /// A reader found in the store an object the index did not have (another replica stored it): index it.
    fn handle(&mut self, msg: Adopt, _ctx: &mut Self::Context) {
        let index = self.store.index();
        match msg {
            Adopt::Blob { digest, size, version } => {
                if index.blob(&digest).is_none() {
                    index.insert_blob(digest, size, now_unix(), version, false);
                }
            }
            Adopt::Manifest { meta, bytes } => {
                if index.manifest(&meta.digest).is_none() {
                    let links = ManifestLinks::parse_or_empty(&bytes);
                    index.insert_manifest(meta, links);
                }
            }
            Adopt::Record(record) => {
                if index.manifest(&record.digest).is_some() && index.ref_digest(&record.key()).is_none() {
                    index.set_ref(record);
                }
            }
        }
    }
}

impl Handler<Flush> for CacheActor {
    type Result = ResponseFuture<()>;

    /// Write pending access times now (shutdown).
    fn handle(&mut self, _msg: Flush, ctx: &mut Self::Context) -> Self::Result {
        let (tx, reply) = later(());
        self.flush_access(ctx, move || {
            let _ = tx.send(());
        });
        reply
    }
}
