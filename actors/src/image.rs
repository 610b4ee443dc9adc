//! `ImageActor`: one per repository (namespace + repository name), the coalescer.
//!
//! Every request for a manifest or blob of its repository that missed the index comes here. The first request for
//! an object starts the one upstream fetch of it; every request that arrives while it runs waits on that fetch (a
//! manifest) or joins its transfer (a blob) instead of starting another. A client that goes away does not cancel a
//! fetch: fetches are spawned futures that belong to nobody's request. A failed fetch is forgotten at once, so the
//! next request tries the upstream again.
//!
//! Blob claims also go through the `CacheActor`, whose claim table is global: the same digest pulled through two
//! repositories at once is still fetched once. The actor never blocks and never touches the disk or the network
//! itself. Messages: `GetManifest`, `GetBlob` (from `Mirror`), and its own `ManifestFetched`, `BlobClaimed`,
//! `BlobSettled`.

use std::collections::HashMap;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::digest::Digest;
use crate::error::MirrorError;
use crate::fetch::{fetch_manifest, lead_blob, FetchContext};
use crate::messages::{
    BlobClaim, BlobClaimed, BlobReply, BlobSettled, ClaimBlob, ClaimedBlob, GetBlob, GetManifest, ManifestFetched,
    ManifestReply,
};
use crate::reference::Reference;
use crate::transfer::Transfer;

type ManifestWaiter = oneshot::Sender<Result<ManifestReply, MirrorError>>;
type BlobWaiter = oneshot::Sender<Result<BlobReply, MirrorError>>;

enum BlobEntry {
    /// The cache actor has not yet said who fetches it; these requests wait for that answer.
    Claiming(Vec<BlobWaiter>),
    /// Bytes are flowing (or about to): later requests follow this transfer.
    Active(Transfer),
}

/// See the module documentation.
pub struct ImageActor {
    cx: FetchContext,
    /// Manifest fetches in flight, by the reference asked for, with the requests waiting on each.
    manifests: HashMap<Reference, Vec<ManifestWaiter>>,
    /// Blob fetches in flight by digest.
    blobs: HashMap<Digest, BlobEntry>,
}

impl ImageActor {
    pub(crate) fn new(cx: FetchContext) -> ImageActor {
        ImageActor { cx, manifests: HashMap::new(), blobs: HashMap::new() }
    }

    fn watch_transfer(&self, digest: Digest, transfer: Transfer, ctx: &mut Context<Self>) {
        let me = ctx.address();
        actix_rt::spawn(async move {
            transfer.settled().await;
            me.do_send(BlobSettled { digest, transfer });
        });
    }
}

impl Actor for ImageActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // A pull storm sends hundreds of requests at once; let them queue rather than fail.
        ctx.set_mailbox_capacity(4096);
    }
}

async fn wait<T>(rx: oneshot::Receiver<Result<T, MirrorError>>) -> Result<T, MirrorError> {
    rx.await.unwrap_or_else(|_| Err(MirrorError::Internal("fetch ended without an answer".into())))
}

impl Handler<GetManifest> for ImageActor {
    type Result = ResponseFuture<Result<ManifestReply, MirrorError>>;

    /// Join the fetch of this reference, starting it if none runs.
    fn handle(&mut self, msg: GetManifest, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if let Some(waiters) = self.manifests.get_mut(&msg.reference) {
            waiters.push(tx);
        } else {
            self.manifests.insert(msg.reference.clone(), vec![tx]);
            let cx = self.cx.clone();
            let me = ctx.address();
            actix_rt::spawn(async move {
                let result = fetch_manifest(cx, msg.reference.clone()).await;
                me.do_send(ManifestFetched { reference: msg.reference, result });
            });
        }
        Box::pin(wait(rx))
    }
}

impl Handler<ManifestFetched> for ImageActor {
    type Result = ();

    /// Answer everyone who waited on this fetch.
    fn handle(&mut self, msg: ManifestFetched, _ctx: &mut Self::Context) {
        let waiters = self.manifests.remove(&msg.reference).unwrap_or_default();
        self.cx.metrics.fetch_waiters.with_label_values(&["manifest"]).observe(waiters.len() as f64);
        for waiter in waiters {
            let _ = waiter.send(msg.result.clone());
        }
    }
}

impl Handler<GetBlob> for ImageActor {
    type Result = ResponseFuture<Result<BlobReply, MirrorError>>;

    /// Follow the running transfer of this blob, or claim it from the cache actor.
    fn handle(&mut self, msg: GetBlob, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        // A transfer that has just ended is not joined: the index has it (done) or it must be fetched anew (failed).
        if matches!(self.blobs.get(&msg.digest), Some(BlobEntry::Active(t)) if t.is_settled()) {
            self.blobs.remove(&msg.digest);
        }
        match self.blobs.get_mut(&msg.digest) {
            Some(BlobEntry::Active(transfer)) => {
                let _ = tx.send(Ok(BlobReply::Transfer(transfer.clone())));
            }
            Some(BlobEntry::Claiming(waiters)) => waiters.push(tx),
            None => {
                self.blobs.insert(msg.digest.clone(), BlobEntry::Claiming(vec![tx]));
                let cx = self.cx.clone();
                let me = ctx.address();
                actix_rt::spawn(async move {
                    let outcome = match cx.cache.send(ClaimBlob { digest: msg.digest.clone() }).await {
                        Err(e) => Err(MirrorError::from(e)),
                        Ok(BlobClaim::Cached(size)) => Ok(ClaimedBlob::Cached(size)),
                        Ok(BlobClaim::Uncacheable) => Ok(ClaimedBlob::Uncached),
                        Ok(BlobClaim::Join(transfer)) => Ok(ClaimedBlob::Active(transfer)),
                        Ok(BlobClaim::Lead(lease)) => {
                            let transfer = lease.transfer.clone();
                            actix_rt::spawn(lead_blob(cx, *lease));
                            Ok(ClaimedBlob::Active(transfer))
                        }
                    };
                    me.do_send(BlobClaimed { digest: msg.digest, outcome });
                });
            }
        }
        Box::pin(wait(rx))
    }
}

impl Handler<BlobClaimed> for ImageActor {
    type Result = ();

    /// The cache answered the claim: tell the waiters where the bytes come from.
    fn handle(&mut self, msg: BlobClaimed, ctx: &mut Self::Context) {
        let waiters = match self.blobs.remove(&msg.digest) {
            Some(BlobEntry::Claiming(waiters)) => waiters,
            Some(active @ BlobEntry::Active(_)) => {
                self.blobs.insert(msg.digest, active);
                return;
            }
            None => Vec::new(),
        };
        let reply = |outcome: &Result<ClaimedBlob, MirrorError>| match outcome {
            Ok(ClaimedBlob::Cached(size)) => Ok(BlobReply::Cached(*size)),
            Ok(ClaimedBlob::Active(t)) => Ok(BlobReply::Transfer(t.clone())),
            Ok(ClaimedBlob::Uncached) => Ok(BlobReply::Uncached),
            Err(e) => Err(e.clone()),
        };
        for waiter in waiters {
            let _ = waiter.send(reply(&msg.outcome));
        }
        if let Ok(ClaimedBlob::Active(transfer)) = msg.outcome {
            self.blobs.insert(msg.digest.clone(), BlobEntry::Active(transfer.clone()));
            self.watch_transfer(msg.digest, transfer, ctx);
        }
    }
}

impl Handler<BlobSettled> for ImageActor {
    type Result = ();

    /// A transfer ended: later requests go to the index (done) or start over (failed).
    fn handle(&mut self, msg: BlobSettled, _ctx: &mut Self::Context) {
        if let Some(BlobEntry::Active(t)) = self.blobs.get(&msg.digest) {
            if t.same(&msg.transfer) {
                self.blobs.remove(&msg.digest);
            }
        }
    }
}
