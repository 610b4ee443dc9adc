//! The breaker's states driven by hand: opening, the probe, waiting for it, and the wait's back-off.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use futures_util::FutureExt;

use super::*;

/// `admit` when it does not wait.
fn admit_now(b: &Breaker) -> Admit {
    b.admit().now_or_never().expect("admit waited although no probe is in flight")
}

fn open(b: &Breaker) {
    for _ in 0..FAILURES {
        b.failure();
    }
    assert_eq!(b.state(), BreakerState::Open);
}

/// End the open state's wait early.
fn end_wait(b: &Breaker) {
    b.open_until.store(0, Ordering::Release);
}

fn assert_wait(b: &Breaker, wait: Duration) {
    let left = b.retry_in();
    assert!(left <= wait && left + Duration::from_millis(200) >= wait, "wait {left:?}, expected {wait:?}");
}

/// Poll a waiting `admit` once, in a task context that is never woken.
fn poll_once(f: &mut Pin<Box<impl Future<Output = Admit>>>) -> Poll<Admit> {
    let waker = futures_util::task::noop_waker();
    f.as_mut().poll(&mut std::task::Context::from_waker(&waker))
}

#[test]
fn opens_after_failures_in_a_row_and_closes_on_an_answer() {
    let b = Breaker::default();
    assert_eq!(admit_now(&b), Admit::Go);
    assert!(!b.failure());
    b.success();
    assert!(!b.failure() && !b.failure(), "two failures after a success: still closed");
    assert!(b.failure(), "the third in a row opens it");
    assert!(b.is_open(), "cached tags are not checked");
    assert_wait(&b, FIRST_WAIT);
    b.success();
    assert_eq!((b.state(), admit_now(&b), b.is_open()), (BreakerState::Closed, Admit::Go, false));
}

#[test]
fn a_request_that_needs_the_upstream_probes_at_once_while_the_wait_runs() {
    let b = Breaker::default();
    open(&b);
    assert!(b.is_open() && b.retry_in() > Duration::ZERO);
    assert_eq!(admit_now(&b), Admit::Probe, "no waiting for the cooldown: the request itself probes");
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert!(b.is_open(), "a probe in flight: cached tags still not checked");
    b.success();
    assert_eq!((b.state(), admit_now(&b)), (BreakerState::Closed, Admit::Go), "its answer closes the breaker");
}

#[test]
fn one_probe_at_a_time_and_the_others_follow_its_result() {
    let b = Breaker::default();
    open(&b);
    assert_eq!(admit_now(&b), Admit::Probe);
    let mut first = Box::pin(b.admit());
    let mut second = Box::pin(b.admit());
    assert!(poll_once(&mut first).is_pending(), "a second request waits for the probe");
    assert!(poll_once(&mut second).is_pending());
    b.success();
    assert_eq!(poll_once(&mut first), Poll::Ready(Admit::Go), "the probe closed it: the waiters go on");
    assert_eq!(poll_once(&mut second), Poll::Ready(Admit::Go));

    open(&b);
    assert_eq!(admit_now(&b), Admit::Probe);
    let mut waiter = Box::pin(b.admit());
    assert!(poll_once(&mut waiter).is_pending());
    assert!(b.failure(), "a failed probe keeps it open");
    assert!(matches!(poll_once(&mut waiter), Poll::Ready(Admit::Refuse(_))), "the waiters fail at once");
    assert_eq!(admit_now(&b), Admit::Probe, "a new request probes again");
}

#[test]
fn a_probe_that_learnt_nothing_hands_its_turn_to_a_waiter() {
    let b = Breaker::default();
    open(&b);
    assert_eq!(admit_now(&b), Admit::Probe);
    let mut waiter = Box::pin(b.admit());
    assert!(poll_once(&mut waiter).is_pending());
    b.release();
    assert_eq!(b.state(), BreakerState::Open, "a probe that learnt nothing leaves it open");
    assert!(!b.is_open(), "and its wait over");
    assert_eq!(poll_once(&mut waiter), Poll::Ready(Admit::Probe), "the waiter probes instead");
    b.success();
    b.release();
    assert_eq!(
        (b.state(), admit_now(&b)),
        (BreakerState::Closed, Admit::Go),
        "release does not touch a closed breaker"
    );
}

#[test]
fn failed_probes_double_the_wait_up_to_the_cooldown_and_an_answer_starts_it_small_again() {
    let b = Breaker::default();
    open(&b);
    assert_wait(&b, FIRST_WAIT);
    let mut expected = FIRST_WAIT;
    for _ in 0..8 {
        end_wait(&b);
        assert!(!b.is_open(), "the wait is over: a cached tag's check may probe");
        assert_eq!(admit_now(&b), Admit::Probe);
        assert!(b.failure());
        expected = (expected * 2).min(COOLDOWN);
        assert_wait(&b, expected);
    }
    assert_eq!(expected, COOLDOWN, "the wait stops growing at the cooldown");
    assert_eq!(admit_now(&b), Admit::Probe);
    b.success();
    open(&b);
    assert_wait(&b, FIRST_WAIT);
}

#[test]
fn failures_while_open_change_nothing() {
    let b = Breaker::default();
    open(&b);
    let until = b.open_until.load(Ordering::Acquire);
    assert!(!b.failure(), "a late failure of a request sent before it opened");
    assert_eq!((b.state(), b.open_until.load(Ordering::Acquire)), (BreakerState::Open, until));
}

#[test]
fn a_peer_is_skipped_at_once_while_open_for_the_whole_cooldown_then_probed() {
    let b = Breaker::for_peer();
    open(&b);
    assert_wait(&b, COOLDOWN);
    assert!(matches!(admit_now(&b), Admit::Refuse(_)), "skipped at once: another source is asked");
    end_wait(&b);
    assert_eq!(admit_now(&b), Admit::Probe, "one probe after the cooldown");
    assert!(matches!(admit_now(&b), Admit::Refuse(_)), "only one, and nobody waits for it");
    assert!(b.failure(), "a failed probe opens it again");
    assert_wait(&b, COOLDOWN);
    end_wait(&b);
    assert_eq!(admit_now(&b), Admit::Probe);
    b.success();
    assert_eq!(admit_now(&b), Admit::Go);
}
