//! Where a blob's leader gets its bytes: the upstream, or (several replicas sharing a store) the replicas that own
//! the digest, in order, then the upstream.

use std::sync::Arc;

use crate::digest::Digest;
use crate::error::MirrorError;
use crate::fetch::context::{blob_path, FetchContext};
use crate::messages::{Fetch, UpstreamResponse};
use crate::upstream::auth::pull_scope;
use crate::upstream::Upstream;

/// Where the leader gets a blob's bytes: the upstream, or (several replicas sharing a store) the replica that owns
/// the digest, which fetches it from the upstream once for the whole cluster.
pub(super) struct Source {
    pub upstream: Arc<Upstream>,
    path: String,
    /// Another replica: asked without credentials, marked as a peer request.
    pub peer: bool,
}

impl Source {
    /// GET the blob from `offset` on (resuming: only if still the object with `validator`).
    pub async fn get(
        &self,
        cx: &FetchContext,
        offset: Option<u64>,
        validator: Option<String>,
    ) -> Result<UpstreamResponse, MirrorError> {
        let scope = (!self.peer).then(|| pull_scope(cx.image.repo().as_str()));
        let fetch = Fetch {
            upstream: self.upstream.clone(),
            path: self.path.clone(),
            head: false,
            accept: None,
            scope,
            range_from: offset,
            range_end: None,
            range_suffix: None,
            if_range: offset.and(validator),
            deadline: None,
            peer: self.peer,
        };
        Ok(cx.pool.send(fetch).await??)
    }
}

/// The sources to try, in order: the replicas that own the digest ahead of this one, then the upstream. A request
/// that came from a peer (`routed` false), or a single replica, goes to the upstream.
pub(super) fn sources(cx: &FetchContext, digest: &Digest, routed: bool) -> Vec<Source> {
    let upstream = Source { upstream: cx.upstream.clone(), path: blob_path(&cx.image, digest), peer: false };
    let Some(cluster) = cx.cluster.as_ref().filter(|_| routed) else {
        return vec![upstream];
    };
    let path = format!("{}?ns={}", blob_path(&cx.image, digest), cx.image.ns());
    let mut out: Vec<Source> = cluster
        .owners(digest)
        .into_iter()
        .take_while(|peer| !cluster.is_me(peer))
        .map(|peer| Source { upstream: cluster.peer(&peer), path: path.clone(), peer: true })
        .collect();
    out.push(upstream);
    out
}
