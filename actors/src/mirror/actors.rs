//! The registry of live image actors: one per repository, started on first use, retired when idle.
//!
//! Keys are names clients choose, so the registry keeps memory bounded whatever they send: a sweep on the image
//! actors' thread asks every actor idle for `actorIdleTimeout` to retire, and, whenever more than `MAX_IDLE_ACTORS`
//! actors are alive, asks the least recently busy of them to retire at once (an idle actor holds nothing worth
//! keeping: retiring it early only means the next request for its repository starts a new one). An actor with
//! anything in flight never retires. A retired actor removes its own entry (only its own: a successor started
//! meanwhile stays). A request that reaches an actor as it retires finds the mailbox closed; the front door
//! (`Mirror::ask`) then removes that entry and asks a fresh actor, so a retirement is never an error for a client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use tokio::sync::Notify;

use crate::fetch::FetchContext;
use crate::image::{Activity, ImageActor};
use crate::messages::Retire;
use crate::reference::ImageKey;

/// Idle actors kept alive at most; beyond this the least recently busy retire before their idle timeout.
const MAX_IDLE_ACTORS: usize = 1024;
/// Longest time between two sweeps.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

struct Entry {
    addr: Addr<ImageActor>,
    activity: Arc<Activity>,
}

/// See the module documentation.
pub(super) struct ImageActors {
    live: Arc<DashMap<ImageKey, Entry>>,
    /// Image actors live on their own thread so HTTP workers only do HTTP.
    arbiter: ArbiterHandle,
    epoch: Instant,
    /// Wakes the sweep early when the registry grows past its bound.
    crowded: Arc<Notify>,
}

impl ImageActors {
    pub(super) fn new(idle_timeout: Duration) -> ImageActors {
        let arbiter = Arbiter::new().handle();
        let live: Arc<DashMap<ImageKey, Entry>> = Arc::default();
        let crowded = Arc::new(Notify::new());
        arbiter.spawn(sweep(live.clone(), crowded.clone(), idle_timeout));
        ImageActors { live, arbiter, epoch: Instant::now(), crowded }
    }

    /// Image actors alive now.
    pub(super) fn len(&self) -> usize {
        self.live.len()
    }

    /// The live actor of `image`, if any.
    pub(super) fn get(&self, image: &ImageKey) -> Option<Addr<ImageActor>> {
        self.live.get(image).map(|e| e.addr.clone())
    }

    /// The live actor of `image`, started with `cx` if there is none.
    pub(super) fn start(&self, image: &ImageKey, cx: FetchContext) -> Addr<ImageActor> {
        let (live, key) = (self.live.clone(), image.clone());
        let activity = Arc::new(Activity::new(self.epoch));
        // The entry API makes creation atomic: two workers asking at once get the same actor.
        let addr = self
            .live
            .entry(image.clone())
            .or_insert_with(|| {
                let shared = activity.clone();
                let addr = ImageActor::start_in_arbiter(&self.arbiter, move |_| {
                    let on_stop = Box::new(move |me: &Addr<ImageActor>| {
                        live.remove_if(&key, |_, e| &e.addr == me);
                    });
                    ImageActor::new(cx, shared, on_stop)
                });
                Entry { addr, activity }
            })
            .addr
            .clone();
        if self.live.len() > 2 * MAX_IDLE_ACTORS {
            self.crowded.notify_one();
        }
        addr
    }

    /// Drop `addr` from the registry (it was found retired), unless a successor has replaced it already.
    pub(super) fn forget(&self, image: &ImageKey, addr: &Addr<ImageActor>) {
        self.live.remove_if(image, |_, e| &e.addr == addr);
    }
}

/// Ask idle actors to retire: those idle for `idle_timeout`, and the least recently busy beyond `MAX_IDLE_ACTORS`.
async fn sweep(live: Arc<DashMap<ImageKey, Entry>>, crowded: Arc<Notify>, idle_timeout: Duration) {
    let interval = (idle_timeout / 4).clamp(Duration::from_millis(50), MAX_SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = crowded.notified() => {}
        }
        let mut keep: Vec<(Duration, Addr<ImageActor>)> = Vec::new();
        for entry in live.iter() {
            let idle = entry.activity.idle_for();
            if idle >= idle_timeout {
                // A notice: an actor that misses it is asked again by the next sweep.
                entry.addr.do_send(Retire { idle_for: idle_timeout });
            } else {
                keep.push((idle, entry.addr.clone()));
            }
        }
        if keep.len() > MAX_IDLE_ACTORS {
            keep.sort_by_key(|k| std::cmp::Reverse(k.0));
            for (_, addr) in keep.drain(..keep.len() - MAX_IDLE_ACTORS) {
                addr.do_send(Retire { idle_for: Duration::ZERO });
            }
        }
    }
}
