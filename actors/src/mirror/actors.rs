//! The registry of live image actors: one per repository, started on first use, removed when it retires.
//!
//! Keys are names clients choose, so the registry only ever holds actors that are alive: an actor idle for
//! `actorIdleTimeout` stops and removes itself (only its own entry: a successor started meanwhile stays). A request
//! that reaches an actor as it retires finds the mailbox closed; the front door (`Mirror::ask`) then removes that
//! entry and asks a fresh actor, so a retirement is never an error for a client.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use dashmap::DashMap;

use crate::fetch::FetchContext;
use crate::image::ImageActor;
use crate::reference::ImageKey;

/// See the module documentation.
pub(super) struct ImageActors {
    live: Arc<DashMap<ImageKey, Addr<ImageActor>>>,
    /// Image actors live on their own thread so HTTP workers only do HTTP.
    arbiter: ArbiterHandle,
    idle_timeout: Duration,
}

impl ImageActors {
    pub(super) fn new(idle_timeout: Duration) -> ImageActors {
        ImageActors { live: Arc::default(), arbiter: Arbiter::new().handle(), idle_timeout }
    }

    /// Image actors alive now.
    pub(super) fn len(&self) -> usize {
        self.live.len()
    }

    /// The live actor of `image`, if any.
    pub(super) fn get(&self, image: &ImageKey) -> Option<Addr<ImageActor>> {
        self.live.get(image).map(|a| a.clone())
    }

    /// The live actor of `image`, started with `cx` if there is none.
    pub(super) fn start(&self, image: &ImageKey, cx: FetchContext) -> Addr<ImageActor> {
        let (live, key, idle) = (self.live.clone(), image.clone(), self.idle_timeout);
        // The entry API makes creation atomic: two workers asking at once get the same actor.
        self.live
            .entry(image.clone())
            .or_insert_with(|| {
                ImageActor::start_in_arbiter(&self.arbiter, move |_| {
                    let on_stop = Box::new(move |me: &Addr<ImageActor>| {
                        live.remove_if(&key, |_, addr| addr == me);
                    });
                    ImageActor::new(cx, idle, on_stop)
                })
            })
            .clone()
    }

    /// Drop `addr` from the registry (it was found retired), unless a successor has replaced it already.
    pub(super) fn forget(&self, image: &ImageKey, addr: &Addr<ImageActor>) {
        self.live.remove_if(image, |_, a| a == addr);
    }
}
