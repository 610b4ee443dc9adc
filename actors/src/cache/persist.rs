//! The cache actor's write queue: every change of what is stored runs here, in the order the actor decided it, one
//! object at a time. Writes to different objects run concurrently (a large blob's commit does not hold up a small
//! manifest); writes to the same object (a tag linked, relinked, invalidated; access times) run strictly in order, so
//! the store always ends as the actor's last decision left it. A write's continuation runs back inside the actor.

use std::collections::{HashSet, VecDeque};
use std::future::Future;

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;

use super::CacheActor;
use crate::store::StoredObject;

/// What a write is ordered by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum PersistKey {
    /// One stored object.
    Object(StoredObject),
    /// The access-time journal.
    AccessLog,
}

type Continuation = Box<dyn FnOnce(&mut CacheActor, &mut Context<CacheActor>)>;
type Pending = LocalBoxFuture<'static, Continuation>;

/// See the module documentation.
#[derive(Default)]
pub(super) struct Persister {
    /// Objects with a write running.
    busy: HashSet<PersistKey>,
    /// Writes waiting for an earlier write of the same object, oldest first.
    waiting: VecDeque<(PersistKey, Pending)>,
}

impl CacheActor {
    /// Run `work` once every earlier write of `key` has finished, then `then` with its result, inside the actor.
    pub(super) fn persist<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        key: PersistKey,
        work: impl Future<Output = T> + 'static,
        then: impl FnOnce(&mut Self, &mut Context<Self>, T) + 'static,
    ) {
        let pending: Pending = Box::pin(async move {
            let out = work.await;
            Box::new(move |act: &mut CacheActor, ctx: &mut Context<CacheActor>| then(act, ctx, out)) as Continuation
        });
        if self.persister.busy.contains(&key) {
            self.persister.waiting.push_back((key, pending));
        } else {
            self.start_write(ctx, key, pending);
        }
    }

    fn start_write(&mut self, ctx: &mut Context<Self>, key: PersistKey, pending: Pending) {
        self.persister.busy.insert(key.clone());
        ctx.spawn(pending.into_actor(self).map(move |continuation, act, ctx| {
            continuation(act, ctx);
            act.persister.busy.remove(&key);
            if let Some(i) = act.persister.waiting.iter().position(|(k, _)| k == &key) {
                if let Some((key, next)) = act.persister.waiting.remove(i) {
                    act.start_write(ctx, key, next);
                }
            }
        }));
    }
}
