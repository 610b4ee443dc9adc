//! The concurrency core of ociregistry, a pull-through caching OCI registry mirror.
//!
//! # Layout
//! - [`Mirror`] (`mirror`): the front door. Answers cache hits from the shared index on the caller's thread and
//!   sends misses to the repository's image actor. Decides which namespaces may be dialled.
//! - `ImageActor` (`image`): one per repository; coalesces every concurrent request for the same manifest or blob
//!   into one upstream fetch (`fetch/`: `manifest.rs`, `blob.rs`).
//! - `CacheActor` (`cache`) over the `store`: owns the disk: blob claims (one leader per digest across all
//!   repositories), verified atomic commits, manifests and reference records, the index rebuild at start.
//! - `UpstreamPool` (`upstream::pool`): owns every upstream connection (one keep-alive client per registry, TLS,
//!   timeouts) and pumps response bodies into `Send` channels.
//! - [`transfer`]: a blob in flight, followed by any number of readers straight from the file being written.
//! - [`digest`], [`reference`]: the validated domain types every message carries.
//!
//! # A cold pull
//! The HTTP layer parses the request into an `ImageKey` plus a `Reference` or `Digest` and calls the `Mirror`. On a
//! miss the image actor asks the cache actor to claim the blob; the first claimant leads: it asks the pool for the
//! body, writes it to a temporary file while hashing it, and publishes progress. Every other request, from any
//! HTTP worker and any repository, follows that same transfer, reading the file from byte 0 as it grows. When the
//! body ends the leader verifies the digest and the cache actor renames the file into place; only then do readers
//! receive the final byte, so a corrupt transfer never reaches a client as a complete response.
//!
//! # Why per digest
//! A rollout makes hundreds of nodes ask for the same layers within a second. Coalescing per digest turns that into
//! one upstream transfer per layer, at the speed of the upstream link, with every node streaming behind it.
//!
//! This crate knows nothing of HTTP servers; the binary's HTTP layer maps its errors to OCI error responses.

#![deny(missing_docs)]

mod cache;
pub mod digest;
pub mod error;
mod fetch;
mod image;
pub mod messages;
pub mod metrics;
mod mirror;
pub mod reference;
pub mod store;
pub mod transfer;
pub mod upstream;

pub use error::{MirrorError, StoreError, UpstreamError};
pub use fetch::{MANIFEST_ACCEPT, MAX_MANIFEST_BYTES};
pub use metrics::Metrics;
pub use mirror::{BlobResponse, ManifestResponse, Mirror, MirrorConfig, StartError, UpstreamSpec};
