//! Every message the actors exchange, in one place. Each names its sender and its reply.
//!
//! Rules: `send().await` for anything that needs a reply or backpressure, and for every reply a waiter depends on;
//! `do_send` only for notices we can afford to lose (each such use says why). Handlers never block: long work runs as
//! a spawned future that reports back by message.
//!
//! Files, by recipient: `upstream` (to the `UpstreamPool`), `cache` (to the `CacheActor`), `image` (to an
//! `ImageActor`); `prune` holds the prune request and report the `Prune` message carries. The types a message
//! carries live with the messages, so the actors import this module and it imports none of
//! theirs (`cache/`, `fetch/`, `image/`, `mirror/`, `preload/`).

mod cache;
mod image;
mod prune;
mod upstream;

pub use self::cache::{
    Adopt, AwaitBlob, BlobVerified, ClaimBlob, CommitBlob, Fault, Flush, ImportError, ImportManifest, Invalidate,
    KeepGoneTag, LinkReference, MakeRoom, Prune, PutManifest, Release, ReleaseBlob, ReportDamage, Room,
};
pub(crate) use self::cache::{LoadDone, Loaded};
pub(crate) use self::image::{BlobClaimed, BlobSettled, ManifestFetched, Retire, TagsFetched};
pub use self::image::{GetBlob, GetManifest, GetTags, ManifestOrigin, ManifestReply, TagPage};
pub use self::prune::{PruneReport, PruneRequest, PruneRule};
pub use self::upstream::{Fetch, UpstreamResponse};
