//! The concurrency core of ociregistry, a pull-through caching OCI registry mirror.
//!
//! # Layout
//! - [`Mirror`] (`mirror/`): the front door. Answers cache hits from the shared index and the store on the caller's
//!   thread, sends misses to the repository's image actor, decides which namespaces may be dialled, and reports
//!   damage it finds in the store.
//! - `ImageActor` (`image`): one per repository, retired when idle; coalesces every concurrent request for the same
//!   manifest or blob into one upstream fetch (`fetch/`: `dispatch.rs` above `referrers.rs`, `revalidate.rs` and
//!   `manifest.rs`; `blob/`).
//! - `CacheActor` (`cache/`): the one owner of the cache's state: blob claims (one leader per digest across all
//!   repositories), commits, manifests and reference records, invalidation, damage, access times, the scrub. The
//!   top of `cache/mod.rs` maps each message it handles to its handler's file.
//! - `messages/`: every message between the actors, by recipient, with the types they carry; it imports
//!   none of `cache/`, `fetch/`, `image/`, `mirror/`, `preload/`.
//! - `store/`: bytes at rest behind the `Storage` trait, provided on an object-store-shaped seam (`Backend`: the
//!   filesystem, an S3 bucket with a local tier), and the index.
//! - `UpstreamPool` (`upstream/`): owns every upstream connection (one keep-alive client per registry, TLS, auth,
//!   retries, timeouts) and pumps response bodies into `Send` channels.
//! - `claim`, `outcome`, `transfer`, `read`, `passthrough`: how a request gets a blob (one claim type); how a fetch
//!   ends (an explicit outcome); a blob in flight; how a client reads a stored or growing object; an uncached blob
//!   verified as it passes.
//! - [`access`]: the allow and deny lists of a configured registry (which repositories it serves).
//! - [`digest`], [`reference`], `graph`: the validated domain types every message carries, and the image graph.
//! - The cache's life (`cache/`: `evict`, `prune`, `pins`, `images`): the size cap with least-recently-pulled
//!   eviction, pins, pruning; [`preload`]: loading image lists through the front door and archives into the cache
//!   (its errors: `PreloadError`).
//!
//! # A cold pull
//! The HTTP layer parses the request into an `ImageKey` plus a `Reference` or `Digest` and calls the `Mirror`. On a
//! miss the image actor asks the cache actor to claim the blob; the first claimant leads: it asks the pool for the
//! body, appends it to a new object in the store while hashing it, and publishes progress. Every other request, from
//! any HTTP worker and any repository, follows that same transfer, reading the growing object from byte 0. When the
//! body ends the leader verifies the digest and the cache actor commits the object; only then do readers receive the
//! final byte, so a corrupt transfer never reaches a client as a complete response. Every waiter ends with an
//! explicit outcome: done, failed (with the error), passed through uncached, or abandoned.
//!
//! # Why per digest
//! A rollout makes hundreds of nodes ask for the same layers within a second. Coalescing per digest turns that into
//! one upstream transfer per layer, at the speed of the upstream link, with every node streaming behind it.
//!
//! This crate knows nothing of HTTP servers; the binary's HTTP layer maps its errors to OCI error responses.

#![deny(missing_docs)]

pub mod access;
mod body;
mod cache;
mod claim;
mod cluster;
pub mod digest;
mod error;
mod fetch;
pub mod freshness;
mod graph;
mod image;
mod messages;
mod metrics;
mod mirror;
mod outcome;
mod pace;
mod passthrough;
mod pieces;
pub mod preload;
mod read;
pub mod reference;
mod store;
mod transfer;
pub mod upstream;

pub use cache::{
    cached_images, CachedImage, LifecycleSettings, PinError, Pins, PruneReport, PruneRequest, PruneRule, PruneSchedule,
    ScrubSettings, LOW_WATERMARK_PERCENT, ORPHAN_AGE_SECS,
};
pub use cluster::{ClusterSettings, DnsPeers};
pub use error::{MirrorError, StoreError, UpstreamError};
pub use messages::TagPage;
pub use metrics::Metrics;
pub use mirror::{
    BlobResponse, ManifestResponse, Mirror, MirrorConfig, RangeSpec, StartError, StorageChoice, UpstreamSpec,
};
pub use read::{ByteStream, Stretch, StretchStream};
pub use store::{FileRange, S3Settings};
pub use store::{Index, ManifestMeta, RebuildReport, RefRecord};
pub use upstream::pool::PEER_HEADER;
