//! The circuit breaker after an upstream outage (issue 23), against a real `docker-registry` that is stopped and
//! started again: while it is down cached tags keep being served and open the breaker, and an uncached pull gets its
//! 503 within `revalidateTimeout` (it probes the upstream itself); once it is back the first pull of a new image
//! succeeds at once, not after the breaker's old fixed 30 s.

mod common;

use std::time::Duration;

use common::http::{self, StatusCode};
use common::images;
use common::metrics::Scrape;
use common::ports::free_port;
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::{skopeo, TestDir};

/// `revalidateTimeout` of the server under test.
const REVALIDATE: Duration = Duration::from_secs(2);
/// Scheduling slack on top of it (a 2-core machine shared with other tests).
const SLACK: Duration = Duration::from_millis(1500);

/// GET a manifest of `docker.io/library/<name>` through the server; the status, the digest header and how long it
/// took.
fn timed_get(server: &Server, name: &str, reference: &str) -> (StatusCode, String, Duration) {
    http::timed_manifest_get(&format!("{}/v2/docker.io/library/{name}/manifests/{reference}", server.url()))
}

fn breaker_state(metrics_port: u16) -> f64 {
    Scrape::fetch(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .sum("ociregistry_upstream_breaker_state", &[("ns", "docker.io")])
}

#[test]
fn after_an_outage_the_first_new_pull_succeeds_and_during_it_uncached_pulls_fail_within_the_revalidate_timeout() {
    let mut up = Upstream::start();
    let dir = TestDir::new("breaker-recovery");
    let cached = images::custom(&up, &dir.subdir("cached"), "library/app:t", &[2_000]);
    let metrics_port = free_port();
    let config = ServerConfig::for_upstream(&up.url())
        .extra(&format!("metrics: {metrics_port}\ntagTtl: 1s\nrevalidateTimeout: {}ms", REVALIDATE.as_millis()));
    let server = Server::start_with(config);
    skopeo::pull_verified(&server.url(), &cached, &cached.reference(), &dir.path().join("first"));

    // The outage: the cached tag, checked after its TTL, is served stale, and the failed checks open the breaker.
    up.stop();
    std::thread::sleep(Duration::from_millis(1200));
    let mut opened = false;
    for attempt in 0..6 {
        let (status, digest, took) = timed_get(&server, "app", "t");
        assert_eq!((status, &digest), (StatusCode::OK, &cached.digest), "check {attempt}: the cached tag is served");
        assert!(took < REVALIDATE + SLACK, "check {attempt} took {took:?}");
        if breaker_state(metrics_port) == 1.0 {
            opened = true;
            break;
        }
    }
    assert!(opened, "failed checks of a cached tag open the breaker:\n{}", server.log_tail());
    let (status, _, took) = timed_get(&server, "app", "t");
    assert_eq!(status, StatusCode::OK, "cached content keeps working while the breaker is open");
    assert!(took < Duration::from_millis(500), "and without asking the upstream (took {took:?})");

    // (a) Still down: an uncached pull probes, and gets its 503 within revalidateTimeout.
    let (status, _, took) = timed_get(&server, "never-cached", "t");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "an uncached pull while the upstream is down");
    assert!(took < REVALIDATE + SLACK, "the uncached pull's probe took {took:?}, bounded by revalidateTimeout");

    // (b) Back: a new image pushed now pulls at once, well inside the old fixed 30 s.
    up.start_again();
    let fresh = images::custom(&up, &dir.subdir("fresh"), "library/fresh:t", &[3_000]);
    let (status, digest, took) = timed_get(&server, "fresh", "t");
    assert_eq!(status, StatusCode::OK, "the first pull after the upstream is back succeeds:\n{}", server.log_tail());
    assert_eq!(digest, fresh.digest);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(breaker_state(metrics_port), 0.0, "its answer closed the breaker");
    skopeo::pull_verified(&server.url(), &fresh, &fresh.reference(), &dir.path().join("fresh-out"));
    let (status, digest, _) = timed_get(&server, "app", "t");
    assert_eq!((status, digest), (StatusCode::OK, cached.digest.clone()), "the cached tag is checked again");
}
