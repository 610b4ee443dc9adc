//! Upstream bandwidth caps (`upstreamBandwidth`): a token bucket per capped registry, and one for all upstreams
//! together, that every upstream body pump pays for the bytes it reads.
//!
//! Two lanes. The **priority** lane (manifests, and blobs announced under 1 MiB: what a new pod needs first) pays
//! but never waits, so it never queues behind a layer. The **bulk** lane (larger blobs, and blobs of unknown size)
//! waits out the debt before it reads on: the socket stays unread and TCP slows the sender, which leaves the rest of
//! the link to the site's other flows. Bulk transfers run into the debt chunk by chunk in the order they read, so
//! they share what the priority lane leaves fairly. A chunk is paid for after it arrived: over any stretch of time
//! the bytes read stay within the rate, plus one burst, plus one chunk per transfer. A cap far below a manifest's
//! size slows the large blobs behind the manifest but never refuses anything.

use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Blobs announced smaller than this take the priority lane.
pub const PRIORITY_BELOW: u64 = 1 << 20;

/// The socket receive buffer of a capped upstream's connections, in time at the tightest cap (and at least
/// `MIN_RECEIVE_BUFFER`): what the upstream can send ahead of the budget. Left to itself the kernel grows it to
/// hundreds of KB for a slow reader, all of it crossing the link at once. A window of this much time still fills the
/// cap on round trips up to about as long.
const RECEIVE_BUFFER: Duration = Duration::from_millis(250);
const MIN_RECEIVE_BUFFER: usize = 64 * 1024;

/// How much a quiet bucket saves up, in time at its rate (and at least `MIN_BURST` bytes).
const BURST: Duration = Duration::from_millis(100);
const MIN_BURST: f64 = 16.0 * 1024.0;

/// Which lane a transfer takes. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Pays, never waits.
    Priority,
    /// Waits until the budget has room again.
    Bulk,
}

impl Lane {
    /// The lane of a response: manifests and blobs announced under `PRIORITY_BELOW` go first.
    pub fn of(manifest: bool, length: Option<u64>) -> Lane {
        match length {
            _ if manifest => Lane::Priority,
            Some(n) if n < PRIORITY_BELOW => Lane::Priority,
            _ => Lane::Bulk,
        }
    }
}

/// One cap: bytes per second, and the bucket that accounts for them.
#[derive(Debug)]
pub struct Bandwidth {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

/// Bytes that may be read now (negative: owed), as of `at`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bandwidth {
    /// A cap of `rate` bytes per second.
    pub fn new(rate: NonZeroU64) -> Bandwidth {
        let rate = rate.get() as f64;
        let burst = (rate * BURST.as_secs_f64()).max(MIN_BURST);
        Bandwidth { rate, burst, bucket: Mutex::new(Bucket { tokens: burst, at: Instant::now() }) }
    }

    /// Debit `bytes` read at `now`; how long from `now` until the budget is out of debt again.
    fn debit(&self, bytes: u64, now: Instant) -> Duration {
        let mut bucket = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let earned = now.saturating_duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + earned).min(self.burst) - bytes as f64;
        bucket.at = now.max(bucket.at);
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.rate)
        }
    }
}

/// The caps one upstream's transfers pay into: its own (`registries[].upstreamBandwidth`) and the one all upstreams
/// share (top-level `upstreamBandwidth`). Empty: no cap. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    caps: Vec<Arc<Bandwidth>>,
}

impl Budget {
    /// The budget of an upstream with its own cap (if any) inside the shared one (if any).
    pub fn new(own: Option<Arc<Bandwidth>>, shared: Option<Arc<Bandwidth>>) -> Budget {
        Budget { caps: own.into_iter().chain(shared).collect() }
    }

    /// Whether no cap applies.
    pub fn is_unlimited(&self) -> bool {
        self.caps.is_empty()
    }

    /// The receive buffer for this upstream's connections, when a cap applies. See `RECEIVE_BUFFER`.
    pub fn receive_buffer(&self) -> Option<usize> {
        let tightest = self.caps.iter().map(|cap| cap.rate).reduce(f64::min)?;
        Some(((tightest * RECEIVE_BUFFER.as_secs_f64()) as usize).max(MIN_RECEIVE_BUFFER))
    }

    /// Pay for `bytes` just read in `lane`: how long to wait before reading more (always zero in the priority lane,
    /// whose bytes still count against the bulk lane).
    pub fn pay(&self, bytes: u64, lane: Lane) -> Duration {
        let now = Instant::now();
        let wait = self.caps.iter().map(|cap| cap.debit(bytes, now)).max().unwrap_or_default();
        match lane {
            Lane::Priority => Duration::ZERO,
            Lane::Bulk => wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(rate: u64) -> Arc<Bandwidth> {
        Arc::new(Bandwidth::new(NonZeroU64::new(rate).expect("non-zero")))
    }

    #[test]
    fn lanes() {
        assert_eq!(Lane::of(true, Some(50 << 20)), Lane::Priority);
        assert_eq!(Lane::of(false, Some(PRIORITY_BELOW - 1)), Lane::Priority);
        assert_eq!(Lane::of(false, Some(PRIORITY_BELOW)), Lane::Bulk);
        assert_eq!(Lane::of(false, None), Lane::Bulk);
    }

    #[test]
    fn a_burst_is_free_then_bulk_waits_out_the_debt() {
        let budget = Budget::new(Some(cap(1_000_000)), None);
        // 100 ms of burst at 1 MB/s.
        assert_eq!(budget.pay(100_000, Lane::Bulk), Duration::ZERO);
        let wait = budget.pay(500_000, Lane::Bulk);
        assert!(wait > Duration::from_millis(490) && wait <= Duration::from_millis(500), "{wait:?}");
    }

    #[test]
    fn the_priority_lane_never_waits_but_its_bytes_delay_the_bulk_lane() {
        let budget = Budget::new(Some(cap(1_000_000)), None);
        assert_eq!(budget.pay(5_000_000, Lane::Priority), Duration::ZERO);
        assert_eq!(budget.pay(5_000_000, Lane::Priority), Duration::ZERO);
        let wait = budget.pay(100_000, Lane::Bulk);
        assert!(wait > Duration::from_millis(9_900), "{wait:?}");
    }

    #[test]
    fn bulk_transfers_share_the_rate() {
        // Two transfers taking turns with equal chunks each wait for both chunks: each gets half the rate.
        let budget = Budget::new(None, Some(cap(1_000_000)));
        budget.pay(100_000, Lane::Bulk);
        let a = budget.pay(100_000, Lane::Bulk);
        let b = budget.pay(100_000, Lane::Bulk);
        assert!(b >= a + Duration::from_millis(99), "{a:?} {b:?}");
    }

    #[test]
    fn the_tighter_of_two_caps_sets_the_wait() {
        let shared = cap(10_000_000);
        let own = Budget::new(Some(cap(1_000_000)), Some(shared.clone()));
        let other = Budget::new(None, Some(shared));
        let wait = own.pay(1_100_000, Lane::Bulk);
        assert!(wait >= Duration::from_millis(990), "{wait:?}");
        // The shared cap saw those bytes too: another upstream's transfer owes for them.
        // (alone, 1 MB would have been the shared cap's burst: no wait at all).
        let wait = other.pay(1_000_000, Lane::Bulk);
        assert!(wait >= Duration::from_millis(100), "{wait:?}");
        assert!(Budget::default().is_unlimited());
        assert_eq!(Budget::default().receive_buffer(), None);
        assert_eq!(own.receive_buffer(), Some(250_000), "a quarter of a second at the tighter cap");
        assert_eq!(Budget::default().pay(u64::MAX, Lane::Bulk), Duration::ZERO);
    }
}
