//! The backoff of token requests that failed: a realm that could not give a token for a scope (unreachable, an error
//! status, no answer in time, an answer without a token) is not asked again for that scope until a short wait has
//! passed, `FIRST_WAIT` after the first failure, doubled after each further one, at most `LONGEST_WAIT`; a success
//! forgets the failures. Requests that need the token meanwhile fail at once with the remembered error, so a dead
//! realm is not hammered and a client is not kept waiting on it, and nothing is remembered longer than `LONGEST_WAIT`
//! past the last failure. It is the realm's own breaker: the registry's breaker does not count realm failures, so a
//! realm that fails for one repository never stops the pulls that do not need it.
//!
//! Keyed by the token request URL (realm, service and scope), one table per registry (`AuthState`). Owned by the
//! pool's thread; times are passed in, so the rules are tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::error::UpstreamError;

/// The wait after a first failure.
pub(crate) const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait, however many failures in a row (the registry breaker's cooldown).
pub(crate) const LONGEST_WAIT: Duration = super::breaker::COOLDOWN;
/// Most token requests remembered as failing per registry; beyond it the one due soonest is forgotten.
const MAX_FAILING: usize = 4096;

/// How long to wait after `failures` failures in a row (at least one).
fn wait_after(failures: u32) -> Duration {
    let doubled = FIRST_WAIT.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)));
    doubled.min(LONGEST_WAIT)
}

/// One token request that failed.
#[derive(Debug, Clone)]
struct Failing {
    /// Its last failure (a `TokenEndpoint` error).
    error: UpstreamError,
    /// Failures in a row.
    failures: u32,
    /// Not asked again before this.
    retry_at: Instant,
}

/// The failing token requests of one registry. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct RealmBackoff {
    failing: HashMap<String, Failing>,
}

impl RealmBackoff {
    /// Whether the token request `url` may be sent at `now`: an error (the last failure, saying when the realm is
    /// asked again) while its backoff runs.
    pub fn check(&self, url: &str, now: Instant) -> Result<(), UpstreamError> {
        match self.failing.get(url) {
            Some(f) if now < f.retry_at => Err(waiting(&f.error, f.retry_at - now)),
            _ => Ok(()),
        }
    }

    /// The token request `url` failed with `error` at `now`: the wait before it is sent again.
    pub fn failed(&mut self, url: &str, error: &UpstreamError, now: Instant) -> Duration {
        if self.failing.len() >= MAX_FAILING && !self.failing.contains_key(url) {
            self.prune(now);
            if let Some(soonest) = self.failing.iter().min_by_key(|(_, f)| f.retry_at).map(|(k, _)| k.clone()) {
                self.failing.remove(&soonest);
            }
        }
        let failures = self.failing.get(url).map_or(0, |f| f.failures).saturating_add(1);
        let wait = wait_after(failures);
        self.failing.insert(url.to_string(), Failing { error: error.clone(), failures, retry_at: now + wait });
        wait
    }

    /// The token request `url` got a token: its failures are forgotten.
    pub fn succeeded(&mut self, url: &str) {
        self.failing.remove(url);
    }

    /// Forget failures whose backoff ended more than `LONGEST_WAIT` ago (the next failure starts again at
    /// `FIRST_WAIT`).
    pub fn prune(&mut self, now: Instant) {
        self.failing.retain(|_, f| now < f.retry_at + LONGEST_WAIT);
    }

    /// How many token requests are remembered as failing.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.failing.len()
    }
}

/// `error` (a `TokenEndpoint` error) saying that the realm is not asked again for `retry_in`.
fn waiting(error: &UpstreamError, retry_in: Duration) -> UpstreamError {
    match error {
        UpstreamError::TokenEndpoint { upstream, endpoint, detail } => UpstreamError::TokenEndpoint {
            upstream: upstream.clone(),
            endpoint: endpoint.clone(),
            detail: format!("{detail} (not asked again for {:.1}s)", retry_in.as_secs_f64().max(0.1)),
        },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> UpstreamError {
        UpstreamError::Status { upstream: "docker.io".into(), status: 500 }.at_token_endpoint("http://realm/token?x=1")
    }

    #[test]
    fn waits_double_up_to_the_longest_and_a_success_resets_them() {
        let url = "http://realm/token?scope=repository%3Aa%3Apull";
        let mut b = RealmBackoff::default();
        let t0 = Instant::now();
        assert!(b.check(url, t0).is_ok(), "never failed: asked");
        let waits: Vec<Duration> = (0..8).map(|_| b.failed(url, &failure(), t0)).collect();
        assert_eq!(waits[0], FIRST_WAIT);
        assert_eq!(waits[1], FIRST_WAIT * 2);
        assert_eq!(waits[2], FIRST_WAIT * 4);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(waits[7], LONGEST_WAIT, "capped: {waits:?}");

        b.succeeded(url);
        assert!(b.check(url, t0).is_ok(), "a success forgets the failures");
        assert_eq!(b.failed(url, &failure(), t0), FIRST_WAIT, "and the next failure starts over");
    }

    #[test]
    fn a_failing_request_is_refused_only_until_its_wait_ends_and_only_for_itself() {
        let (a, other) = ("http://realm/token?scope=a", "http://realm/token?scope=b");
        let mut b = RealmBackoff::default();
        let t0 = Instant::now();
        b.failed(a, &failure(), t0);
        let err = b.check(a, t0 + FIRST_WAIT / 2).expect_err("within the wait");
        let text = err.to_string();
        assert!(matches!(err, UpstreamError::TokenEndpoint { .. }), "{err:?}");
        assert!(text.contains("the token endpoint http://realm/token") && text.contains("HTTP 500"), "{text}");
        assert!(text.contains("not asked again for"), "{text}");
        assert!(b.check(a, t0 + FIRST_WAIT).is_ok(), "asked again once the wait is over");
        assert!(b.check(other, t0).is_ok(), "another scope is not held back");
    }

    #[test]
    fn old_failures_are_forgotten_and_the_table_stays_bounded() {
        let mut b = RealmBackoff::default();
        let t0 = Instant::now();
        b.failed("u", &failure(), t0);
        b.prune(t0 + FIRST_WAIT);
        assert_eq!(b.len(), 1, "kept while it may still matter");
        b.prune(t0 + FIRST_WAIT + LONGEST_WAIT);
        assert_eq!(b.len(), 0, "forgotten after the longest wait");
        for i in 0..MAX_FAILING + 10 {
            b.failed(&format!("u{i}"), &failure(), t0);
        }
        assert_eq!(b.len(), MAX_FAILING);
    }
}
