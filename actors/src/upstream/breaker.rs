//! The circuit breaker of one upstream: after `FAILURES` requests in a row fail (the upstream cannot be reached,
//! times out, answers 5xx or 429), it opens. While it is open cached tags are served without asking (`is_open`), and
//! a request that needs the upstream (uncached content) is sent as the probe, one at a time, bounded by the pool
//! (`revalidateTimeout`): its answer closes the breaker, so the first pull after an outage ends succeeds; its failure
//! keeps the breaker open. Requests that arrive while a probe is in flight wait for its result: they go on if it
//! closed the breaker and fail at once if it failed. Cached tags are checked again (the probe a cached pull makes)
//! only once the open state's wait is over: `FIRST_WAIT` after opening, doubled after each failed probe up to
//! `COOLDOWN`, and back to `FIRST_WAIT` once the upstream answers.
//!
//! States: closed (counting failures) -> open (wait running) -> half-open (one probe in flight) -> closed on its
//! answer, open again (with a doubled wait) on its failure, or open as before when it learnt nothing (`release`).
//! Shared by the pool (which records every request's result) and the front door (which skips revalidation while it
//! is open); the closed path is lock-free.
//!
//! A peer replica's breaker (`for_peer`) keeps the older rule, since another source can be asked instead: while it is
//! open (a fixed `COOLDOWN`) requests skip that peer at once, then one request is let through as the probe.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Failures in a row that open the breaker.
pub const FAILURES: u32 = 3;
/// The open state's first wait before cached tags are checked again.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest such wait, however many probes failed in a row.
pub const COOLDOWN: Duration = Duration::from_secs(30);

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// The breaker's state, as the gauge shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests go through.
    Closed,
    /// Cached tags are served without asking until the wait ends; the next request that needs the upstream probes.
    Open,
    /// One probe is in flight; other requests wait for its result.
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
    /// Yes, as the probe: its result decides, and it must be bounded by the probe timeout.
    Probe,
    /// No: the probe this request waited for failed (the breaker is open; cached tags are checked again in about
    /// this long).
    Refuse(Duration),
}

/// The open state's wait after `failed_probes` failed probes in a row.
fn wait_after(failed_probes: u32) -> Duration {
    FIRST_WAIT.saturating_mul(2u32.saturating_pow(failed_probes.min(16))).min(COOLDOWN)
}

/// See the module documentation.
#[derive(Debug)]
pub struct Breaker {
    epoch: Instant,
    state: AtomicU8,
    failures: AtomicU32,
    /// When the open state's wait ends (milliseconds since `epoch`).
    open_until: AtomicU64,
    /// Probes that failed since the upstream last answered: the wait's exponent.
    failed_probes: AtomicU32,
    /// Every failed probe ever: a request that waited for a probe sees from it whether that probe failed.
    probe_failures: AtomicU64,
    /// Woken when a probe ends, however it ends.
    settled: Notify,
    /// A peer's breaker: skipped at once while open, for a fixed `COOLDOWN` (see the module documentation).
    skipped_while_open: bool,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            epoch: Instant::now(),
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            failed_probes: AtomicU32::new(0),
            probe_failures: AtomicU64::new(0),
            settled: Notify::new(),
            skipped_while_open: false,
        }
    }
}

impl Breaker {
    /// The breaker of a peer replica: skipped at once while open, for a fixed `COOLDOWN`.
    pub fn for_peer() -> Breaker {
        Breaker { skipped_while_open: true, ..Breaker::default() }
    }

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

    /// Whether cached tags are served without asking now (open and its wait not over, or a probe in flight).
    pub fn is_open(&self) -> bool {
        match self.state.load(Ordering::Acquire) {
            OPEN => self.now_ms() < self.open_until.load(Ordering::Acquire),
            HALF_OPEN => true,
            _ => false,
        }
    }

    /// How long until the open state's wait ends (zero when it is over or the breaker is closed).
    pub fn retry_in(&self) -> Duration {
        Duration::from_millis(self.open_until.load(Ordering::Acquire).saturating_sub(self.now_ms()))
    }

    /// Ask to send a request: at once when closed; as the probe when open and no probe is in flight; else after the
    /// probe in flight has ended (go on if it closed the breaker, refused if it failed). A peer's breaker never
    /// waits: refused while open and its cooldown runs, or while a probe is in flight.
    pub async fn admit(&self) -> Admit {
        // The probe failures counted when this request started waiting, if it did.
        let mut waited_at: Option<u64> = None;
        // The common case, with no waiter registered (that takes the `Notify`'s lock).
        if self.state.load(Ordering::Acquire) == CLOSED {
            return Admit::Go;
        }
        loop {
            // Registered before the state is read, so a probe that ends in between still wakes this request.
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            // Read before the state: a probe counts its failure before it leaves the half-open state.
            let probe_failures = self.probe_failures.load(Ordering::Acquire);
            match self.state.load(Ordering::Acquire) {
                CLOSED => return Admit::Go,
                OPEN => {
                    let skip = self.skipped_while_open && self.retry_in() > Duration::ZERO;
                    if skip || waited_at.is_some_and(|at| at != probe_failures) {
                        return Admit::Refuse(self.retry_in());
                    }
                    if self.state.compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                        return Admit::Probe;
                    }
                }
                _ if self.skipped_while_open => return Admit::Refuse(Duration::from_secs(1)),
                _ => {
                    waited_at.get_or_insert(probe_failures);
                    settled.await;
                }
            }
        }
    }

    /// A request reached the upstream and got an answer: closed, and the next opening waits `FIRST_WAIT` again.
    pub fn success(&self) {
        self.failures.store(0, Ordering::Release);
        self.failed_probes.store(0, Ordering::Release);
        if self.state.swap(CLOSED, Ordering::AcqRel) != CLOSED {
            tracing::info!("upstream answers again: circuit breaker closed");
            self.settled.notify_waiters();
        }
    }

    /// A request that was let through ended without reaching the upstream and without saying it is unwell (its
    /// token could not be had in time, a policy refused the connection): nothing is learnt. A probe's turn is given
    /// back, so the next request probes (one of those waiting for it, if any).
    pub fn release(&self) {
        if self.state.compare_exchange(HALF_OPEN, OPEN, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.open_until.store(self.now_ms(), Ordering::Release);
            self.settled.notify_waiters();
        }
    }

    /// A request failed in a way that says the upstream is unwell. True when this opened the breaker (or kept it
    /// open after a failed probe, for a longer wait).
    pub fn failure(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let state = self.state.load(Ordering::Acquire);
        let wait = match state {
            HALF_OPEN | CLOSED if self.skipped_while_open && (state == HALF_OPEN || failures >= FAILURES) => COOLDOWN,
            HALF_OPEN => {
                self.probe_failures.fetch_add(1, Ordering::AcqRel);
                wait_after(self.failed_probes.fetch_add(1, Ordering::AcqRel).saturating_add(1))
            }
            CLOSED if failures >= FAILURES => wait_after(self.failed_probes.load(Ordering::Acquire)),
            _ => return false,
        };
        self.open_until.store(self.now_ms() + wait.as_millis() as u64, Ordering::Release);
        self.state.store(OPEN, Ordering::Release);
        if state == HALF_OPEN {
            self.settled.notify_waiters();
        }
        true
    }
}

#[cfg(test)]
mod tests;
