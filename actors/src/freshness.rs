//! How long cached tags are trusted, and what happens when checking one fails.
//!
//! A tag is served from the cache without asking the upstream for `tagTtl` after the upstream last confirmed it; then
//! the next pull revalidates it with a HEAD (one per tag at a time, however many clients ask), bounded by
//! `revalidateTimeout`. If that check fails for any reason the cached digest is served at once (stale-if-error) and
//! the serve is counted and logged; a tag the upstream no longer has (404, `gone`) is then not asked about again before
//! its `tagTtl` runs out again. Digests never expire. A manifest the upstream says does not exist is remembered
//! for `negativeTtl`, so a storm for a missing tag costs one upstream request.

use std::fmt;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::metrics::Metrics;
use crate::reference::Tag;
use crate::store::RefKey;

/// How long a cached tag is served without asking the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagTtl {
    /// Never asked again (the Go server's behaviour).
    Never,
    /// Asked again once this long has passed since the upstream last confirmed it (`0s`: every pull).
    After(Duration),
}

impl TagTtl {
    /// Whether a tag confirmed `age` ago must be asked about again.
    pub fn expired(self, age: Duration) -> bool {
        match self {
            TagTtl::Never => false,
            TagTtl::After(ttl) => age >= ttl,
        }
    }
}

impl fmt::Display for TagTtl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagTtl::Never => f.write_str("never"),
            TagTtl::After(d) => write!(f, "{}s", d.as_secs_f64()),
        }
    }
}

/// The freshness settings of the whole mirror (a registry may override `tag_ttl`).
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// `tagTtl`.
    pub tag_ttl: TagTtl,
    /// `alwaysPullLatest`: tags named `latest` are asked about on every pull.
    pub always_pull_latest: bool,
    /// `revalidateTimeout`: the longest a pull of a cached tag waits on the upstream.
    pub revalidate_timeout: Duration,
    /// `negativeTtl`: how long an upstream 404 for a manifest is remembered.
    pub negative_ttl: Duration,
}

/// Five minutes: a connected cluster sees a moved tag within minutes, and the HEAD that checks it does not count
/// against Docker Hub's pull limit; at an edge site with the upstream gone a check costs at most
/// `revalidateTimeout` until the circuit breaker opens, and nothing after.
pub const DEFAULT_TAG_TTL: TagTtl = TagTtl::After(Duration::from_secs(300));
/// A pull of cached content waits at most this long on an upstream that does not answer.
pub const DEFAULT_REVALIDATE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an upstream 404 for a manifest is remembered.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            tag_ttl: DEFAULT_TAG_TTL,
            always_pull_latest: false,
            revalidate_timeout: DEFAULT_REVALIDATE_TIMEOUT,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
        }
    }
}

impl Freshness {
    /// The TTL of `tag` under a registry whose own TTL (if any) is `registry`.
    pub fn ttl_for(&self, tag: &Tag, registry: Option<TagTtl>) -> TagTtl {
        if self.always_pull_latest && tag.as_str() == "latest" {
            return TagTtl::After(Duration::ZERO);
        }
        registry.unwrap_or(self.tag_ttl)
    }
}

/// Why a cached tag was served without the upstream's confirmation (the `reason` label of
/// `ociregistry_stale_serves_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// The check did not finish within `revalidateTimeout` (a slow or black-hole upstream).
    Timeout,
    /// The upstream could not be reached (refused, DNS, TLS, broken).
    Unreachable,
    /// 429.
    RateLimited,
    /// 5xx.
    ServerError,
    /// 401/403 (expired or refused credentials, a failing token endpoint).
    Auth,
    /// The upstream says the tag no longer exists (404): the cached image is still served, and unlike the other
    /// reasons the tag's `tagTtl` starts again, since the upstream answered (its breaker stays closed, so nothing else
    /// would spare the next pulls the same check).
    Gone,
    /// The tag moved, but the new manifest could not be fetched.
    FetchFailed,
    /// The circuit breaker of the upstream is open: no check was attempted.
    BreakerOpen,
}

impl StaleReason {
    /// Every reason, for starting the counter at 0 for each upstream.
    pub const ALL: [StaleReason; 8] = [
        StaleReason::Timeout,
        StaleReason::Unreachable,
        StaleReason::RateLimited,
        StaleReason::ServerError,
        StaleReason::Auth,
        StaleReason::Gone,
        StaleReason::FetchFailed,
        StaleReason::BreakerOpen,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            StaleReason::Timeout => "timeout",
            StaleReason::Unreachable => "unreachable",
            StaleReason::RateLimited => "429",
            StaleReason::ServerError => "5xx",
            StaleReason::Auth => "auth",
            StaleReason::Gone => "gone",
            StaleReason::FetchFailed => "fetch_failed",
            StaleReason::BreakerOpen => "breaker_open",
        }
    }
}

/// How often a tag's stale serves are logged.
const STALE_LOG_EVERY: Duration = Duration::from_secs(60);
/// Most tags whose last log time is remembered (their names come from clients).
const STALE_LOG_MAX: usize = 4096;

/// Counts every stale serve and logs each tag's at most once a minute.
#[derive(Debug, Default)]
pub(crate) struct StaleNotes {
    logged: DashMap<RefKey, Instant>,
}

impl StaleNotes {
    /// A cached tag was served without confirmation.
    pub(crate) fn serve(&self, key: &RefKey, ns: &str, reason: StaleReason, metrics: &Metrics) {
        metrics.stale_serves.with_label_values(&[ns, reason.label()]).inc();
        let due = self.logged.get(key).is_none_or(|at| at.elapsed() >= STALE_LOG_EVERY);
        if due {
            if self.logged.len() >= STALE_LOG_MAX {
                self.logged.clear();
            }
            self.logged.insert(key.clone(), Instant::now());
            tracing::warn!(reference = %key, reason = reason.label(), "serving a cached tag the upstream could not confirm");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        let f = Freshness { always_pull_latest: true, ..Freshness::default() };
        let latest: Tag = "latest".parse().expect("tag");
        let v1: Tag = "v1".parse().expect("tag");
        assert_eq!(f.ttl_for(&latest, None), TagTtl::After(Duration::ZERO));
        assert_eq!(f.ttl_for(&v1, None), DEFAULT_TAG_TTL);
        assert_eq!(f.ttl_for(&v1, Some(TagTtl::Never)), TagTtl::Never);
        assert!(TagTtl::After(Duration::ZERO).expired(Duration::ZERO));
        assert!(!TagTtl::After(Duration::from_secs(5)).expired(Duration::from_secs(4)));
        assert!(!TagTtl::Never.expired(Duration::from_secs(1 << 40)));
    }
}
