//! How fast a running transfer delivers, and so whether it will reach an offset soon: a range request ahead of it
//! either waits for it (it will be there within about a second) or is fetched from the upstream on its own
//! (`mirror/ahead.rs`).
//!
//! The rate is the bytes delivered over the last half second to second, measured between two marks that move on
//! every half second as the transfer reports progress, and up to the moment of the question (a transfer that stalls
//! slows down in the estimate too). Before there is half a second of history there is no rate: then only a range
//! starting within `NO_RATE_AHEAD` of what was delivered waits.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far ahead a range may start and still wait for the transfer: the bytes it delivers in this long.
pub const WAIT_AHEAD: Duration = Duration::from_secs(1);

/// How far ahead a range may start and still wait while the transfer has no rate yet (it has just begun): one
/// second's worth at 8 Mbit/s, so a client's first range of a layer (containerd's first stretch, a lazy snapshotter's
/// header) waits rather than fetching bytes the transfer is about to bring anyway.
pub const NO_RATE_AHEAD: u64 = 1024 * 1024;

/// Marks no closer together than this make a rate.
const MARK_EVERY: Duration = Duration::from_millis(500);

/// A transfer's delivery marks: (when, bytes delivered then).
#[derive(Default)]
pub struct Pace {
    marks: Mutex<Marks>,
}

#[derive(Default)]
struct Marks {
    /// The older mark the rate is measured from.
    older: Option<(Instant, u64)>,
    /// The newer mark, which becomes the older one after `MARK_EVERY`.
    newer: Option<(Instant, u64)>,
    /// The latest bytes delivered.
    latest: u64,
}

impl Pace {
    /// The transfer has delivered `written` bytes now.
    pub fn note(&self, written: u64, now: Instant) {
        let mut m = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        m.latest = written;
        match m.newer {
            None => m.newer = Some((now, written)),
            Some((at, _)) if now.duration_since(at) >= MARK_EVERY => {
                m.older = m.newer;
                m.newer = Some((now, written));
            }
            Some(_) => {}
        }
    }

    /// `len` bytes were delivered at once, fetched by others (pieces fetched ahead, `pieces.rs`): not the transfer's
    /// own rate, so they do not count in it.
    pub fn leap(&self, len: u64) {
        let mut guard = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let m = &mut *guard;
        m.latest += len;
        for mark in [&mut m.older, &mut m.newer].into_iter().flatten() {
            mark.1 += len;
        }
    }

    /// Bytes per second over the last half second or more, up to `now`; `None` before there is that much history.
    pub fn rate(&self, now: Instant) -> Option<f64> {
        let m = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let (at, from) = m.older.or(m.newer)?;
        let span = now.saturating_duration_since(at);
        if span < MARK_EVERY {
            return None;
        }
        Some(m.latest.saturating_sub(from) as f64 / span.as_secs_f64())
    }

    /// Whether a transfer that has delivered `written` bytes will have delivered `offset` within `WAIT_AHEAD`.
    pub fn reaches_soon(&self, written: u64, offset: u64, now: Instant) -> bool {
        let ahead = offset.saturating_sub(written);
        if ahead == 0 {
            return true;
        }
        match self.rate(now) {
            Some(rate) => (ahead as f64) <= rate * WAIT_AHEAD.as_secs_f64(),
            None => ahead <= NO_RATE_AHEAD,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_history_only_a_range_within_the_first_mebibyte_ahead_waits() {
        let pace = Pace::default();
        let t0 = Instant::now();
        pace.note(0, t0);
        assert!(pace.rate(t0).is_none());
        assert!(pace.reaches_soon(0, NO_RATE_AHEAD, t0));
        assert!(!pace.reaches_soon(0, NO_RATE_AHEAD + 1, t0));
        assert!(pace.reaches_soon(5000, 4000, t0), "behind what was delivered");
    }

    #[test]
    fn the_rate_is_measured_over_the_last_second_and_decays_while_stalled() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // 2.5 MB/s (20 Mbit/s) for two seconds, reported every 100 ms.
        for i in 0..=20u64 {
            pace.note(i * 250_000, t0 + ms(i * 100));
        }
        let now = t0 + ms(2000);
        let rate = pace.rate(now).expect("a rate");
        assert!((2_400_000.0..2_600_000.0).contains(&rate), "{rate}");
        assert!(pace.reaches_soon(5_000_000, 7_400_000, now), "within a second");
        assert!(!pace.reaches_soon(5_000_000, 7_700_000, now), "beyond a second");
        // A piece of 10 MB taken at once does not make the transfer faster.
        pace.leap(10_000_000);
        let rate = pace.rate(now).expect("a rate");
        assert!((2_400_000.0..2_600_000.0).contains(&rate), "{rate}");
        assert!(pace.reaches_soon(15_000_000, 17_400_000, now), "from where it is now");
        // Nothing more for four seconds: the estimate falls.
        let later = t0 + ms(6000);
        assert!(pace.rate(later).expect("a rate") < 500_000.0);
        assert!(!pace.reaches_soon(15_000_000, 16_000_000, later));
    }
}
