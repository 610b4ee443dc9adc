//! Messages to the `UpstreamPool`: one request to an upstream, and the response head with its body channel.

use std::sync::Arc;

use actix::Message;

use crate::body::Body;
use crate::error::UpstreamError;
use crate::upstream::Upstream;

/// Fetch leader or front door -> `UpstreamPool`: send one GET or HEAD to an upstream. Replies with the response head
/// and a channel carrying the body, or the failure. 200, 206 and 404 are answers; other statuses are errors.
#[derive(Message)]
#[rtype(result = "Result<UpstreamResponse, UpstreamError>")]
pub struct Fetch {
    /// Which registry.
    pub upstream: Arc<Upstream>,
    /// Path and query below the registry's base URL, e.g. `/v2/library/alpine/manifests/3.20`.
    pub path: String,
    /// HEAD instead of GET.
    pub head: bool,
    /// The `Accept` header to send, if any.
    pub accept: Option<&'static str>,
    /// The auth scope the request needs (`repository:<name>:pull`), for bearer tokens.
    pub scope: Option<String>,
    /// Ask for the body from this offset on (`Range: bytes=N-`), to resume a broken transfer.
    pub range_from: Option<u64>,
    /// With `range_from`: only up to this offset, exclusive (`Range: bytes=N-(E-1)`): a range passed through
    /// ahead of the transfer (`mirror/ahead.rs`).
    pub range_end: Option<u64>,
    /// Instead of `range_from`: the last this many bytes (`Range: bytes=-N`), for a range of a blob whose size is
    /// not known yet.
    pub range_suffix: Option<u64>,
    /// With `range_from`: only if the object is still this one (`If-Range`, the `ETag` of the earlier attempt).
    pub if_range: Option<String>,
    /// The response head must arrive within this (retries included) instead of `pullTimeout`: a revalidation
    /// answers within `revalidateTimeout`, and gives up a retry it has no time for.
    pub deadline: Option<std::time::Duration>,
    /// A request to another replica (`X-Ociregistry-Peer`), which fetches from its upstream and never forwards.
    pub peer: bool,
}

/// The head of an upstream response plus its body channel.
#[derive(Debug)]
pub struct UpstreamResponse {
    /// HTTP status: 200, 206 or 404.
    pub status: u16,
    /// `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// `Content-Length`, if sent.
    pub content_length: Option<u64>,
    /// `Docker-Content-Digest`, if sent (unparsed).
    pub docker_digest: Option<String>,
    /// `Link`, if sent (a tag list's next page).
    pub link: Option<String>,
    /// `ETag`, if sent (the validator a resumed download sends back in `If-Range`).
    pub etag: Option<String>,
    /// `Content-Range`, if sent (checked against the range asked for).
    pub content_range: Option<String>,
    /// The body, pumped by the pool.
    pub body: Body,
}
