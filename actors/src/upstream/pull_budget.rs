//! A registry's pull budget as its answers state it (Docker Hub: `RateLimit-Limit: 100;w=21600`,
//! `RateLimit-Remaining: 76;w=21600`: a count and its window in seconds; a bare count is read too), and the reserve
//! kept for pulls a client waits for (`rateLimitReserve`): while the last answer's remaining count is at or below it,
//! background work (the preload, `load` of an image list) makes no manifest `GET` until the window has passed or a
//! later answer shows budget again. A `HEAD` costs nothing on Docker Hub, so checks go on. Values that do not parse
//! are ignored (the caller logs the first one per upstream); they never fail a pull.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `rateLimitReserve` when not set: a few pulls for a rollout that starts while the budget runs out.
pub const DEFAULT_RESERVE: u64 = 5;

/// How long a low budget holds background work when the answer named no window.
const UNSTATED_WINDOW: Duration = Duration::from_secs(60);

/// One `RateLimit-*` value: `76;w=21600` or `76`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// The count.
    pub count: u64,
    /// The window (`w=`), when stated.
    pub window: Option<Duration>,
}

/// Why a `RateLimit-*` value was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a count, optionally with its window (\"76;w=21600\")")]
pub struct QuotaError;

impl FromStr for Quota {
    type Err = QuotaError;

    fn from_str(value: &str) -> Result<Quota, QuotaError> {
        let mut parts = value.split(';').map(str::trim);
        let count = parts.next().and_then(|c| c.parse().ok()).ok_or(QuotaError)?;
        let mut window = None;
        for part in parts {
            if let Some(seconds) = part.strip_prefix("w=") {
                window = Some(Duration::from_secs(seconds.trim().parse().map_err(|_| QuotaError)?));
            }
        }
        Ok(Quota { count, window })
    }
}

/// What background work must wait for: the remaining count seen, the reserve, and when the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// Pulls left, as the last answer said.
    pub remaining: u64,
    /// `rateLimitReserve`.
    pub reserve: u64,
    /// When the window that answer named has passed.
    pub until: Instant,
}

/// See the module documentation. One per upstream, shared by every request to it.
#[derive(Debug)]
pub struct PullBudget {
    reserve: u64,
    /// The last low answer: background work waits until it is superseded or its window ends.
    low: Mutex<Option<Hold>>,
    /// A value that did not parse was logged already.
    complained: AtomicBool,
}

impl Default for PullBudget {
    fn default() -> Self {
        PullBudget::new(DEFAULT_RESERVE)
    }
}

impl PullBudget {
    /// A budget keeping `reserve` pulls for clients.
    pub fn new(reserve: u64) -> PullBudget {
        PullBudget { reserve, low: Mutex::new(None), complained: AtomicBool::new(false) }
    }

    /// `rateLimitReserve`.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Read an answer's `RateLimit-Remaining`; the quota when it parsed. `Err` only the first time a value does not
    /// parse (the caller logs it once); later bad values are ignored silently.
    pub fn observe(&self, remaining: &str, now: Instant) -> Result<Quota, Option<QuotaError>> {
        let quota = match remaining.parse::<Quota>() {
            Ok(quota) => quota,
            Err(e) => return Err((!self.complained.swap(true, Ordering::Relaxed)).then_some(e)),
        };
        let mut low = self.low.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *low = (quota.count <= self.reserve).then(|| Hold {
            remaining: quota.count,
            reserve: self.reserve,
            until: now + quota.window.unwrap_or(UNSTATED_WINDOW),
        });
        Ok(quota)
    }

    /// Whether background work must wait now, and until when.
    pub fn held(&self, now: Instant) -> Option<Hold> {
        let low = self.low.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        low.filter(|hold| now < hold.until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_in_both_forms() {
        let q = |count, window: Option<u64>| Ok(Quota { count, window: window.map(Duration::from_secs) });
        assert_eq!("76;w=21600".parse(), q(76, Some(21600)));
        assert_eq!(" 100 ; w=21600 ".parse(), q(100, Some(21600)));
        assert_eq!("76".parse(), q(76, None));
        assert_eq!("0;w=60;comment=\"x\"".parse(), q(0, Some(60)));
        for bad in ["", "abc", "-1", "76;w=soon", "7.5"] {
            assert_eq!(bad.parse::<Quota>(), Err(QuotaError), "{bad:?}");
        }
    }

    #[test]
    fn a_low_answer_holds_background_work_until_its_window_ends_or_a_later_answer_shows_budget() {
        let budget = PullBudget::new(5);
        let now = Instant::now();
        assert_eq!(budget.held(now), None, "nothing known: go ahead");
        budget.observe("6;w=60", now).expect("parses");
        assert_eq!(budget.held(now), None, "above the reserve");
        budget.observe("5;w=60", now).expect("parses");
        let hold = budget.held(now).expect("at the reserve: held");
        assert_eq!((hold.remaining, hold.reserve), (5, 5));
        assert!(budget.held(now + Duration::from_secs(59)).is_some());
        assert_eq!(budget.held(now + Duration::from_secs(60)), None, "the window has passed");
        budget.observe("0", now).expect("parses");
        assert_eq!(budget.held(now).map(|h| h.until), Some(now + UNSTATED_WINDOW), "no window: a minute");
        budget.observe("40;w=60", now).expect("parses");
        assert_eq!(budget.held(now), None, "a later answer shows budget again");
    }

    #[test]
    fn a_value_that_does_not_parse_is_reported_once_and_changes_nothing() {
        let budget = PullBudget::new(5);
        let now = Instant::now();
        budget.observe("1;w=60", now).expect("parses");
        assert_eq!(budget.observe("lots", now), Err(Some(QuotaError)), "first: reported");
        assert_eq!(budget.observe("lots", now), Err(None), "then ignored");
        assert!(budget.held(now).is_some(), "the last good answer stands");
    }
}
