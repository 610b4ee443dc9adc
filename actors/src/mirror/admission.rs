//! Which namespaces may be dialled: the configured upstreams, and others only as `upstreamPolicy` allows (under
//! `public`, a host that resolves to any non-public address is refused). A refused namespace gets
//! `MirrorError::Denied` before anything is created for it and before any connection is attempted.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;

use crate::error::MirrorError;
use crate::reference::Namespace;
use crate::upstream::auth::Credentials;
use crate::upstream::bandwidth::Budget;
use crate::upstream::guard::{AddressGuard, Purpose, UpstreamPolicy};
use crate::upstream::pull_budget::PullBudget;
use crate::upstream::{Upstream, DEFAULT_MAX_CONCURRENT};

/// Most unlisted namespaces remembered as admitted (their names come from clients; the memory must stay bounded).
const ADMITTED_MAX: usize = 1024;

/// See the module documentation.
pub(super) struct Admission {
    /// The configured upstreams, by canonical namespace.
    pub(super) listed: HashMap<Namespace, Arc<Upstream>>,
    /// Unlisted namespaces admitted by `upstreamPolicy`, built on first use.
    admitted: DashMap<Namespace, Arc<Upstream>>,
    pub(super) guard: Arc<AddressGuard>,
    /// TLS configuration for admitted namespaces: the system roots.
    default_tls: Arc<rustls::ClientConfig>,
    /// What admitted namespaces pay into: the cap all upstreams share, if any.
    budget: Budget,
    /// Their `rateLimitReserve`: the mirror's.
    reserve: u64,
}

/// The canonical namespace for a configured registry name (Docker Hub has several names).
pub(super) fn canonical(ns: Namespace) -> Namespace {
    if ns.is_docker_hub() {
        "docker.io".parse().unwrap_or(ns)
    } else {
        ns
    }
}

/// `host:port` of a URL (the port made explicit).
pub(super) fn authority(url: &str) -> Option<String> {
    let uri = url.parse::<awc::http::Uri>().ok()?;
    let host = uri.host()?;
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
    Some(format!("{host}:{port}"))
}

/// The host part of `host[:port]` (IPv6 stays bracketed).
pub(super) fn host_of(host_port: &str) -> &str {
    match host_port.rfind(':') {
        Some(i) if !host_port[i..].contains(']') => &host_port[..i],
        _ => host_port,
    }
}

/// The port of `host[:port]`, if any.
fn port_of(host_port: &str) -> Option<u16> {
    let i = host_port.rfind(':')?;
    host_port[i + 1..].parse().ok().filter(|_| !host_port[i..].contains(']'))
}

impl Admission {
    pub(super) fn new(
        listed: HashMap<Namespace, Arc<Upstream>>,
        guard: Arc<AddressGuard>,
        default_tls: Arc<rustls::ClientConfig>,
        (budget, reserve): (Budget, u64),
    ) -> Admission {
        Admission { listed, admitted: DashMap::new(), guard, default_tls, budget, reserve }
    }

    /// The upstream for a namespace: a configured one, or one `upstreamPolicy` admits; otherwise `Denied`, decided
    /// before any connection is made.
    pub(super) async fn upstream(&self, ns: &Namespace) -> Result<Arc<Upstream>, MirrorError> {
        if let Some(listed) = self.listed.get(ns) {
            return Ok(listed.clone());
        }
        if let Some(admitted) = self.admitted.get(ns) {
            return Ok(admitted.clone());
        }
        let guard = &self.guard;
        match guard.policy() {
            UpstreamPolicy::Listed => {
                tracing::info!(namespace = %ns, "refused: not a listed registry (upstreamPolicy: listed)");
                return Err(MirrorError::Denied(ns.clone()));
            }
            UpstreamPolicy::Public => {
                let host = host_of(ns.as_str());
                let port = port_of(ns.as_str()).unwrap_or(443);
                if let Err(refused) = guard.resolve(host, port, Purpose::Registry).await {
                    tracing::info!(namespace = %ns, reason = %refused, "refused by upstreamPolicy: public");
                    return Err(MirrorError::Denied(ns.clone()));
                }
            }
            UpstreamPolicy::Any => {}
        }
        let upstream = Arc::new(Upstream {
            namespace: ns.clone(),
            base_url: Upstream::default_base_url(ns, true),
            tls: self.default_tls.clone(),
            credentials: Credentials::Anonymous,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            guard: guard.clone(),
            listed: false,
            tag_ttl: None,
            breaker: Default::default(),
            budget: self.budget.clone(),
            access: Default::default(),
            pull_budget: PullBudget::new(self.reserve),
        });
        if self.admitted.len() >= ADMITTED_MAX {
            self.admitted.clear();
        }
        Ok(self.admitted.entry(ns.clone()).or_insert(upstream).clone())
    }
}
