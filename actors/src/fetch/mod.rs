//! The single upstream fetch of a manifest or a blob, as run by its leader: ask the pool, verify, hand the result to
//! the cache actor. These run as spawned futures on the image actor's thread and report back by message; each one
//! is the only fetch of its object in flight.
//!
//! Files, from the top down (each imports only those below it): `dispatch` (which manifest fetch a request gets);
//! `referrers` (a subject's referrers index, falling back to the tag schema); `revalidate` (a cached tag whose TTL
//! ran out: confirmed, moved, or served stale); `manifest` (a manifest not cached, with a HEAD first for tags);
//! `blob` (leads blob transfers into the cache, resuming broken ones); `tags` (tag lists); `context` (what they
//! share: the context, the upstream request, the body collector); `bound` (the most bytes a blob may take). This
//! file only names them.

mod blob;
pub(crate) mod bound;
mod context;
mod dispatch;
mod manifest;
pub(crate) mod referrers;
mod revalidate;
mod tags;

pub(crate) use blob::lead_blob;
pub(crate) use context::{blob_path, FetchContext};
pub(crate) use dispatch::fetch_manifest;
pub(crate) use tags::{fetch_tags, local_tags};
