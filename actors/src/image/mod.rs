//! `ImageActor`: one per repository (namespace + repository name), the coalescer.
//!
//! Every request for a manifest or blob of its repository that missed the index comes here. The first request for
//! an object starts the one upstream fetch of it; every request that arrives while it runs waits on that fetch (a
//! manifest) or follows its transfer (a blob) instead of starting another. A client that goes away does not cancel a
//! fetch: fetches are spawned futures that belong to nobody's request. A failed fetch is forgotten at once, so the
//! next request tries the upstream again. Every waiter gets an explicit answer: the manifest or the error, or the
//! blob's claim (cached, follow this transfer, pass it through), whose transfer then ends in an explicit outcome.
//!
//! Blob claims go through the `CacheActor`, whose claim table is global: the same digest pulled through two
//! repositories at once is still fetched once. The actor never blocks and never touches the store or the network
//! itself. Its registry asks it to retire (`Retire`) once it has been idle long enough, or early when too many idle
//! actors are alive; it stops only if nothing is in flight, and then leaves the registry (`on_stop`). A request
//! racing the retirement finds the mailbox closed and is sent to a fresh actor by the front door.
//!
//! Messages: `GetManifest`, `GetBlob` (from `Mirror`), and its own `ManifestFetched`, `BlobClaimed`, `BlobSettled`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::claim::{BlobClaim, ClaimReply};
use crate::digest::Digest;
use crate::error::MirrorError;
use crate::fetch::{fetch_manifest, fetch_tags, lead_blob, FetchContext};
use crate::freshness::TagTtl;
use crate::messages::{
    BlobClaimed, BlobSettled, ClaimBlob, GetBlob, GetManifest, GetTags, ManifestFetched, ManifestReply, Retire,
    TagPage, TagsFetched,
};
use crate::reference::{Named, Reference};
use crate::transfer::Transfer;

/// Most missing references one actor remembers.
const MISSING_MAX: usize = 256;

/// Longest a tag-list page is reused (shorter when the tag TTL is).
const TAG_PAGE_MAX_AGE: Duration = Duration::from_secs(300);

type TagQuery = (Option<u32>, Option<String>);
type TagWaiter = oneshot::Sender<Result<TagPage, MirrorError>>;
type ManifestWaiter = oneshot::Sender<Result<ManifestReply, MirrorError>>;
type BlobWaiter = oneshot::Sender<Result<BlobClaim, MirrorError>>;
/// Called once when the actor has stopped, with its own address (to leave the registry).
pub(crate) type OnStop = Box<dyn FnOnce(&Addr<ImageActor>) + Send>;

/// When an actor was last busy, readable by its registry without a message (milliseconds since the registry's
/// epoch).
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    last: AtomicU64,
}

impl Activity {
    pub(crate) fn new(epoch: Instant) -> Activity {
        Activity { epoch, last: AtomicU64::new(epoch.elapsed().as_millis() as u64) }
    }

    fn touch(&self) {
        self.last.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long since the actor was last busy.
    pub(crate) fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

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
    /// Manifests the upstream said do not exist, and when (remembered for `negativeTtl`).
    missing: HashMap<Reference, Instant>,
    /// Tag-list pages being fetched, with their waiters; and pages fetched recently.
    tag_lists: HashMap<TagQuery, Vec<TagWaiter>>,
    tag_pages: HashMap<TagQuery, (TagPage, Instant)>,
    /// The last request or fetch event, shared with the registry.
    activity: Arc<Activity>,
    on_stop: Option<OnStop>,
}

impl ImageActor {
    pub(crate) fn new(cx: FetchContext, activity: Arc<Activity>, on_stop: OnStop) -> ImageActor {
        ImageActor {
            cx,
            manifests: HashMap::new(),
            blobs: HashMap::new(),
            missing: HashMap::new(),
            tag_lists: HashMap::new(),
            tag_pages: HashMap::new(),
            activity,
            on_stop: Some(on_stop),
        }
    }

    fn busy(&mut self) {
        self.activity.touch();
    }

    fn watch_transfer(&self, digest: Digest, transfer: Transfer, ctx: &mut Context<Self>) {
        let me = ctx.address();
        actix_rt::spawn(async move {
            transfer.outcome().await;
            // A notice: an entry left behind is settled, and the next request replaces it.
            me.do_send(BlobSettled { digest, transfer });
        });
    }

    /// Answer every request waiting on a blob's claim.
    fn answer_blob(&mut self, digest: &Digest, result: &Result<BlobClaim, MirrorError>) {
        if !matches!(self.blobs.get(digest), Some(BlobEntry::Claiming(_))) {
            return;
        }
        if let Some(BlobEntry::Claiming(waiters)) = self.blobs.remove(digest) {
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        }
    }
}

impl Actor for ImageActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // A pull storm sends hundreds of requests at once; let them queue rather than fail.
        ctx.set_mailbox_capacity(4096);
        self.cx.metrics.image_actors.inc();
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.cx.metrics.image_actors.dec();
        if let Some(on_stop) = self.on_stop.take() {
            on_stop(&ctx.address());
        }
    }
}

async fn wait<T>(rx: oneshot::Receiver<Result<T, MirrorError>>, what: String) -> Result<T, MirrorError> {
    rx.await.unwrap_or(Err(MirrorError::Abandoned(what)))
}

impl Handler<GetManifest> for ImageActor {
    type Result = ResponseFuture<Result<ManifestReply, MirrorError>>;

    /// Join the fetch (or revalidation) of this reference, starting it if none runs; a reference the upstream just
    /// said is missing is answered at once.
    fn handle(&mut self, msg: GetManifest, ctx: &mut Self::Context) -> Self::Result {
        self.busy();
        let what = format!("manifest {}", msg.reference);
        if msg.cached.is_none() {
            match self.missing.get(&msg.reference) {
                Some(at) if at.elapsed() < self.cx.freshness.negative_ttl => {
                    let unknown = Named(&self.cx.image, &msg.reference).to_string();
                    return Box::pin(async move { Err(MirrorError::ManifestUnknown(unknown)) });
                }
                Some(_) => {
                    self.missing.remove(&msg.reference);
                }
                None => {}
            }
        }
        let (tx, rx) = oneshot::channel();
        if let Some(waiters) = self.manifests.get_mut(&msg.reference) {
            waiters.push(tx);
        } else {
            self.manifests.insert(msg.reference.clone(), vec![tx]);
            let cx = self.cx.clone();
            let me = ctx.address();
            actix_rt::spawn(async move {
                let result = fetch_manifest(
                    cx,
                    msg.reference.clone(),
                    msg.cached,
                    msg.referrers_of,
                    !msg.from_peer,
                    me.clone().recipient(),
                )
                .await;
                // Waiters depend on this reply: sent with `send`, so a full mailbox waits instead of dropping it.
                let _ = me.send(ManifestFetched { reference: msg.reference, result }).await;
            });
        }
        Box::pin(wait(rx, what))
    }
}

impl Handler<Retire> for ImageActor {
    type Result = bool;

    /// Stop if nothing is in flight and nothing happened for `idle_for`; true when stopping.
    fn handle(&mut self, msg: Retire, ctx: &mut Self::Context) -> bool {
        let idle = self.manifests.is_empty()
            && self.blobs.is_empty()
            && self.tag_lists.is_empty()
            && self.activity.idle_for() >= msg.idle_for;
        if idle {
            ctx.stop();
        }
        idle
    }
}

impl ImageActor {
    /// How long a tag-list page is reused: the registry's tag TTL, at most `TAG_PAGE_MAX_AGE`.
    fn tag_page_age(&self) -> Duration {
        match self.cx.upstream.tag_ttl.unwrap_or(self.cx.freshness.tag_ttl) {
            TagTtl::Never => TAG_PAGE_MAX_AGE,
            TagTtl::After(d) => d.min(TAG_PAGE_MAX_AGE),
        }
    }
}

impl Handler<GetTags> for ImageActor {
    type Result = ResponseFuture<Result<TagPage, MirrorError>>;

    /// A recent page, or the one fetch of it that all concurrent askers share.
    fn handle(&mut self, msg: GetTags, ctx: &mut Self::Context) -> Self::Result {
        self.busy();
        let query = (msg.n, msg.last.clone());
        if let Some((page, at)) = self.tag_pages.get(&query) {
            if at.elapsed() < self.tag_page_age() {
                let page = page.clone();
                return Box::pin(async move { Ok(page) });
            }
        }
        let (tx, rx) = oneshot::channel();
        if let Some(waiters) = self.tag_lists.get_mut(&query) {
            waiters.push(tx);
        } else {
            self.tag_lists.insert(query.clone(), vec![tx]);
            let cx = self.cx.clone();
            let me = ctx.address();
            actix_rt::spawn(async move {
                let result = fetch_tags(&cx, msg.n, msg.last).await;
                let _ = me.send(TagsFetched { query, result }).await;
            });
        }
        Box::pin(wait(rx, "tag list".to_string()))
    }
}

impl Handler<TagsFetched> for ImageActor {
    type Result = ();

    /// Answer the waiters of a page, and keep an upstream page for reuse.
    fn handle(&mut self, msg: TagsFetched, _ctx: &mut Self::Context) {
        self.busy();
        for waiter in self.tag_lists.remove(&msg.query).unwrap_or_default() {
            let _ = waiter.send(msg.result.clone());
        }
        if let Ok(page) = &msg.result {
            if !page.local {
                if self.tag_pages.len() >= MISSING_MAX {
                    self.tag_pages.clear();
                }
                self.tag_pages.insert(msg.query, (page.clone(), Instant::now()));
            }
        }
    }
}

impl Handler<ManifestFetched> for ImageActor {
    type Result = ();

    /// Answer everyone who waited on this fetch.
    fn handle(&mut self, msg: ManifestFetched, _ctx: &mut Self::Context) {
        self.busy();
        let waiters = self.manifests.remove(&msg.reference).unwrap_or_default();
        if matches!(msg.result, Err(MirrorError::ManifestUnknown(_))) {
            if self.missing.len() >= MISSING_MAX {
                self.missing.clear();
            }
            self.missing.insert(msg.reference.clone(), Instant::now());
        }
        self.cx.metrics.fetch_waiters.with_label_values(&["manifest"]).observe(waiters.len() as f64);
        for waiter in waiters {
            let _ = waiter.send(msg.result.clone());
        }
    }
}

impl Handler<GetBlob> for ImageActor {
    type Result = ResponseFuture<Result<BlobClaim, MirrorError>>;

    /// Follow the running transfer of this blob, or claim it from the cache actor.
    fn handle(&mut self, msg: GetBlob, ctx: &mut Self::Context) -> Self::Result {
        self.busy();
        let what = format!("blob {}", msg.digest);
        let (tx, rx) = oneshot::channel();
        // A transfer that has just ended is not joined: the index has it (done) or it must be fetched anew.
        if matches!(self.blobs.get(&msg.digest), Some(BlobEntry::Active(t)) if t.is_settled()) {
            self.blobs.remove(&msg.digest);
        }
        match self.blobs.get_mut(&msg.digest) {
            Some(BlobEntry::Active(transfer)) => {
                let _ = tx.send(Ok(BlobClaim::Follow(transfer.clone())));
            }
            Some(BlobEntry::Claiming(waiters)) => waiters.push(tx),
            None => {
                self.blobs.insert(msg.digest.clone(), BlobEntry::Claiming(vec![tx]));
                let cx = self.cx.clone();
                let me = ctx.address();
                actix_rt::spawn(async move {
                    let result = match cx.cache.send(ClaimBlob { digest: msg.digest.clone() }).await {
                        Err(e) => Err(MirrorError::from(e)),
                        Ok(ClaimReply::Claim(claim)) => Ok(claim),
                        Ok(ClaimReply::Lead(lease)) => {
                            let transfer = lease.transfer.clone();
                            actix_rt::spawn(lead_blob(cx, lease, !msg.from_peer));
                            Ok(BlobClaim::Follow(transfer))
                        }
                    };
                    // Waiters depend on this reply: sent with `send`.
                    let _ = me.send(BlobClaimed { digest: msg.digest, result }).await;
                });
            }
        }
        Box::pin(wait(rx, what))
    }
}

impl Handler<BlobClaimed> for ImageActor {
    type Result = ();

    /// The cache answered the claim: tell the waiters where the bytes come from.
    fn handle(&mut self, msg: BlobClaimed, ctx: &mut Self::Context) {
        self.busy();
        self.answer_blob(&msg.digest, &msg.result);
        if let Ok(BlobClaim::Follow(transfer)) = msg.result {
            self.blobs.insert(msg.digest.clone(), BlobEntry::Active(transfer.clone()));
            self.watch_transfer(msg.digest, transfer, ctx);
        }
    }
}

impl Handler<BlobSettled> for ImageActor {
    type Result = ();

    /// A transfer ended: later requests go to the index (done) or start over.
    fn handle(&mut self, msg: BlobSettled, _ctx: &mut Self::Context) {
        self.busy();
        if matches!(self.blobs.get(&msg.digest), Some(BlobEntry::Active(t)) if t.same(&msg.transfer)) {
            self.blobs.remove(&msg.digest);
        }
    }
}

#[cfg(test)]
mod tests;
