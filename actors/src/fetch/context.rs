//! What every fetch shares: where it runs (`FetchContext`: the pool, the cache actor, the upstream, the store), one
//! request to the upstream, the in-flight gauge, the upstream paths, and a whole body collected under a limit.

use std::sync::Arc;

use actix::{Addr, Recipient};
use bytes::{Bytes, BytesMut};

use super::bound::BlobBound;
use crate::body::{Body, BodyEvent};
use crate::cache::CacheActor;
use crate::cluster::Cluster;
use crate::digest::Digest;
use crate::error::{MirrorError, UpstreamError};
use crate::freshness::{Freshness, StaleNotes};
use crate::messages::{Fetch, UpstreamResponse};
use crate::metrics::{error_reason, Metrics};
use crate::reference::{ImageKey, Reference};
use crate::store::Store;
use crate::upstream::auth::pull_scope;
use crate::upstream::Upstream;

/// Every manifest type we can serve; upstream manifest requests ask for all of them.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest accepted from an upstream (the spec asks registries to take at least 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 8 * 1024 * 1024;

/// What a fetch needs to know about where it runs.
#[derive(Clone)]
pub(crate) struct FetchContext {
    /// The upstream pool (a `Recipient`, so tests can put a scripted upstream in its place).
    pub pool: Recipient<Fetch>,
    pub cache: Addr<CacheActor>,
    pub upstream: Arc<Upstream>,
    pub image: ImageKey,
    /// Reads only (the index, committed manifests, room for a blob) and the leader's own blob writer; every change
    /// of what is cached goes to `cache`.
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Tag freshness, revalidation and negative caching.
    pub freshness: Freshness,
    /// Stale serves: counted, and logged once per tag per minute.
    pub stale: Arc<StaleNotes>,
    /// The replica set, when this is one of several replicas sharing a store.
    pub cluster: Option<Arc<Cluster>>,
    /// The store is shared with other replicas: what the index lacks may be in it.
    pub shared: bool,
    /// The most bytes a blob may take (`maxBlobSize`, `maxCacheSize`, the volume less `minFreeSpace`).
    pub bound: BlobBound,
}

/// Counts a fetch in `ociregistry_fetches_in_flight` for as long as it lives.
pub(crate) struct InFlight(Arc<Metrics>, &'static str);

impl InFlight {
    pub(crate) fn start(metrics: &Arc<Metrics>, kind: &'static str) -> InFlight {
        metrics.fetches_in_flight.with_label_values(&[kind]).inc();
        InFlight(metrics.clone(), kind)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetches_in_flight.with_label_values(&[self.1]).dec();
    }
}

impl FetchContext {
    /// Count an error this fetch found in a body (the pool counts the ones it sees itself).
    pub(crate) fn count_body_error(&self, err: &MirrorError) {
        if let MirrorError::Upstream(
            e @ (UpstreamError::DigestMismatch { .. }
            | UpstreamError::LengthMismatch { .. }
            | UpstreamError::TooLarge { .. }),
        ) = err
        {
            self.metrics.upstream_errors.with_label_values(&[&self.name(), error_reason(e)]).inc();
        }
    }
}

impl FetchContext {
    pub(crate) fn name(&self) -> String {
        self.upstream.namespace.to_string()
    }

    /// One request to this fetch's upstream, for this repository's pull scope; `range_from` resumes a blob.
    pub(crate) async fn request(
        &self,
        path: String,
        head: bool,
        accept: Option<&'static str>,
        range_from: Option<u64>,
    ) -> Result<UpstreamResponse, MirrorError> {
        self.request_within(path, head, accept, range_from, None).await
    }

    /// `request`, with the response head due within `deadline` instead of `pullTimeout`.
    pub(crate) async fn request_within(
        &self,
        path: String,
        head: bool,
        accept: Option<&'static str>,
        range_from: Option<u64>,
        deadline: Option<std::time::Duration>,
    ) -> Result<UpstreamResponse, MirrorError> {
        let scope = Some(pull_scope(self.image.repo().as_str()));
        let fetch = Fetch {
            upstream: self.upstream.clone(),
            path,
            head,
            accept,
            scope,
            range_from,
            range_end: None,
            range_suffix: None,
            if_range: None,
            deadline,
            peer: false,
        };
        Ok(self.pool.send(fetch).await??)
    }
}

pub(crate) fn blob_path(image: &ImageKey, digest: &Digest) -> String {
    format!("/v2/{}/blobs/{}", image.repo(), digest)
}

pub(crate) fn manifest_path(image: &ImageKey, reference: &Reference) -> String {
    format!("/v2/{}/manifests/{}", image.repo(), reference)
}

/// Receive a whole body, up to `limit` bytes.
pub(crate) async fn collect(upstream: &str, mut body: Body, limit: usize) -> Result<Bytes, UpstreamError> {
    let mut buf = BytesMut::new();
    loop {
        match body.recv().await {
            Some(Ok(BodyEvent::Data(chunk))) => {
                if buf.len() + chunk.len() > limit {
                    return Err(UpstreamError::TooLarge { upstream: upstream.into(), limit });
                }
                buf.extend_from_slice(&chunk);
            }
            Some(Ok(BodyEvent::End)) => return Ok(buf.freeze()),
            Some(Err(e)) => return Err(e),
            None => return Err(UpstreamError::Broken { upstream: upstream.into(), detail: "body ended early".into() }),
        }
    }
}
