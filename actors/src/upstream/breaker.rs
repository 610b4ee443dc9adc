//! The circuit breaker of one upstream: after `FAILURES` requests in a row fail (the upstream cannot be reached,
//! times out, answers 5xx or 429), it opens: requests to that upstream fail at once, and cached tags are served
//! without asking. After `COOLDOWN` one request is let through as a probe (half-open); its success closes the breaker,
//! its failure opens it for another cooldown. Shared by the pool (which records every request's result) and the front
//! door (which skips revalidation while it is open); lock-free.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// Failures in a row that open the breaker.
pub const FAILURES: u32 = 3;
/// How long an open breaker refuses before letting a probe through.
pub const COOLDOWN: Duration = Duration::from_secs(30);

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// The breaker's state, as the gauge shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests go through.
    Closed,
    /// Requests fail at once until the cooldown ends.
    Open,
    /// One probe is in flight.
    HalfOpen,
}

impl BreakerState {
    /// The value of `ociregistry_upstream_breaker_state`.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// Whether a request may go to the upstream now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Yes.
    Go,
    /// Yes, as the half-open probe: its result decides.
    Probe,
    /// No: the breaker is open (for about this long still).
    Refuse(Duration),
}

/// See the module documentation.
#[derive(Debug)]
pub struct Breaker {
    epoch: Instant,
    state: AtomicU8,
    failures: AtomicU32,
    /// When the open state ends (milliseconds since `epoch`).
    open_until: AtomicU64,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            epoch: Instant::now(),
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
        }
    }
}

impl Breaker {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Whether the breaker refuses requests now (open, cooldown not over, or a probe already in flight).
    pub fn is_open(&self) -> bool {
        match self.state.load(Ordering::Acquire) {
            OPEN => self.now_ms() < self.open_until.load(Ordering::Acquire),
            HALF_OPEN => true,
            _ => false,
        }
    }

    /// Ask to send a request.
    pub fn admit(&self) -> Admit {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Admit::Go,
            OPEN => {
                let now = self.now_ms();
                let until = self.open_until.load(Ordering::Acquire);
                if now < until {
                    return Admit::Refuse(Duration::from_millis(until - now));
                }
                // The cooldown is over: the first to get here sends the probe.
                match self.state.compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => Admit::Probe,
                    Err(_) => Admit::Refuse(COOLDOWN),
                }
            }
            _ => Admit::Refuse(Duration::from_secs(1)),
        }
    }

    /// A request reached the upstream and got an answer.
    pub fn success(&self) {
        self.failures.store(0, Ordering::Release);
        if self.state.swap(CLOSED, Ordering::AcqRel) != CLOSED {
            tracing::info!("upstream answers again: circuit breaker closed");
        }
    }

    /// A request that was let through ended without reaching the upstream and without saying it is unwell (its
    /// token could not be had in time, a policy refused the connection): nothing is learnt. A probe's turn is given
    /// back, so the next request probes.
    pub fn release(&self) {
        if self.state.compare_exchange(HALF_OPEN, OPEN, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.open_until.store(self.now_ms(), Ordering::Release);
        }
    }

    /// A request failed in a way that says the upstream is unwell. True when this opened the breaker.
    pub fn failure(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let state = self.state.load(Ordering::Acquire);
        if state == HALF_OPEN || (state == CLOSED && failures >= FAILURES) {
            self.open_until.store(self.now_ms() + COOLDOWN.as_millis() as u64, Ordering::Release);
            self.state.store(OPEN, Ordering::Release);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_a_probe_decides() {
        let b = Breaker::default();
        assert_eq!(b.admit(), Admit::Go);
        assert!(!b.failure());
        b.success();
        assert!(!b.failure() && !b.failure(), "two failures after a success: still closed");
        assert!(b.failure(), "the third in a row opens it");
        assert!(b.is_open());
        assert!(matches!(b.admit(), Admit::Refuse(_)));
        // End the cooldown early.
        b.open_until.store(0, Ordering::Release);
        assert_eq!(b.admit(), Admit::Probe, "one probe after the cooldown");
        assert!(matches!(b.admit(), Admit::Refuse(_)), "only one");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.failure(), "a failed probe opens it again");
        assert!(b.is_open());
        b.open_until.store(0, Ordering::Release);
        assert_eq!(b.admit(), Admit::Probe);
        b.release();
        assert_eq!(b.state(), BreakerState::Open, "a probe that learnt nothing leaves it open");
        assert_eq!(b.admit(), Admit::Probe, "and the next request probes");
        b.success();
        assert_eq!((b.state(), b.admit()), (BreakerState::Closed, Admit::Go));
        b.release();
        assert_eq!(
            (b.state(), b.admit()),
            (BreakerState::Closed, Admit::Go),
            "release does not touch a closed breaker"
        );
    }
}
