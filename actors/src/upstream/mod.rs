//! Upstream registries: what each configured registry is (`Upstream`), how to reach it (`tls`), who may be reached
//! at all (`guard`), how to authenticate (`auth`, `session`), how fast bodies may come (`bandwidth`), what its pull
//! budget allows (`pull_budget`), and the actor
//! that owns every connection to them (`pool`, with its retry policy in `retry` and its body pump in `pump`).

pub mod auth;
pub mod bandwidth;
pub mod breaker;
pub mod guard;
pub(crate) mod pool;
pub mod pull_budget;
mod pump;
mod realm_backoff;
mod retry;
mod session;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use crate::reference::Namespace;

/// One upstream registry as the pool dials it. Built at start from the configuration; immutable after.
#[derive(Debug)]
pub struct Upstream {
    /// The namespace clients use for it (`docker.io`, `registry.k8s.io`, `127.0.0.1:5000`).
    pub namespace: Namespace,
    /// Where requests go: `scheme://host[:port]` without a trailing slash (`https://registry-1.docker.io`, or the
    /// configured `endpoint`).
    pub base_url: String,
    /// TLS client configuration (also used when an http upstream redirects to https).
    pub tls: Arc<rustls::ClientConfig>,
    /// How to authenticate.
    pub credentials: auth::Credentials,
    /// At most this many requests to this upstream at once (`maxConcurrent`).
    pub max_concurrent: usize,
    /// Which addresses connections may reach (shared by all upstreams).
    pub guard: Arc<guard::AddressGuard>,
    /// Listed in the configuration (trusted: its token realm may be any address), rather than admitted by
    /// `upstreamPolicy`.
    pub listed: bool,
    /// This registry's own `tagTtl`, overriding the mirror's.
    pub tag_ttl: Option<crate::freshness::TagTtl>,
    /// Opens after failures in a row; shared by every request to this upstream.
    pub breaker: breaker::Breaker,
    /// The bandwidth caps its bodies pay into (`upstreamBandwidth`).
    pub budget: bandwidth::Budget,
    /// Which repositories it serves (`allow`, `deny`); open for admitted namespaces and peers.
    pub access: crate::access::AccessRule,
    /// Its pull budget as its answers state it, and the reserve kept for clients (`rateLimitReserve`).
    pub pull_budget: pull_budget::PullBudget,
}

impl Upstream {
    /// The host clients dial for a namespace when no endpoint is configured: Docker Hub's registry lives at
    /// `registry-1.docker.io`, everything else at its own name.
    pub fn default_base_url(namespace: &Namespace, https: bool) -> String {
        let scheme = if https { "https" } else { "http" };
        let host = if namespace.is_docker_hub() { "registry-1.docker.io" } else { namespace.as_str() };
        format!("{scheme}://{host}")
    }
}

/// Timeouts toward upstreams.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect (including DNS) and, separately, the TLS handshake.
    pub connect: Duration,
    /// From sending a request to receiving the response head (`pullTimeout`).
    pub head: Duration,
    /// Longest pause between two body chunks before a transfer is declared dead. A transfer that keeps receiving
    /// bytes is never cut, however long it takes.
    pub idle: Duration,
}

/// Default `maxConcurrent`: enough for a node's parallel layer pulls across a busy cluster, few enough that a storm
/// of distinct blobs does not open hundreds of connections to one registry.
pub const DEFAULT_MAX_CONCURRENT: usize = 32;

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(10), head: Duration::from_secs(60), idle: Duration::from_secs(60) }
    }
}
