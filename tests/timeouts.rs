//! Upstreams that stall, never answer, or rate-limit: a client never hangs forever, gets an OCI error naming the
//! upstream (or an aborted transfer once bytes were flowing), nothing half-done is cached, and a transfer that keeps
//! receiving bytes is never cut however long it takes.

mod common;

use std::time::{Duration, Instant};

use common::fake_upstream::{Behaviour, FakeUpstream};
use common::http::{self, Outcome, StatusCode};
use common::images::random_bytes;
use common::server::{Server, ServerConfig};

fn server(fake: &FakeUpstream, pull_timeout_ms: u64, idle: &str) -> Server {
    Server::start_with(ServerConfig {
        pull_timeout_ms,
        idle_timeout: idle.to_string(),
        ..ServerConfig::for_upstream(&fake.url())
    })
}

#[test]
fn an_upstream_that_stalls_mid_body_fails_the_transfer_after_the_idle_timeout() {
    let fake = FakeUpstream::start("library/stall", "1", random_bytes(2_000_000), Behaviour::Stall);
    let server = server(&fake, 10_000, "1s");
    let url = format!("{}/v2/library/stall/blobs/{}?ns=docker.io", server.url(), fake.blob_digest());
    let t0 = Instant::now();
    let outcome = http::get_outcome(&http::client(), &url);
    let took = t0.elapsed();
    match &outcome {
        Outcome::Failed(_) => {}
        Outcome::Complete { status, body } => {
            assert!(!status.is_success() || body.len() < 2_000_000, "a stalled transfer must not complete: {outcome:?}")
        }
    }
    assert!(
        took < Duration::from_secs(25),
        "the client was released by the idle timeout, not the stall's end: {took:?}"
    );
    // The stalled transfer was resumed a few times (each resume stalled too) before it was given up.
    let failed_gets = fake.blob_gets();
    assert!(failed_gets >= 1, "the upstream saw the fetch");
    // Not remembered as a success: once the upstream is healthy the next request fetches again and succeeds.
    fake.set_behaviour(Behaviour::Normal);
    let body = http::get_verified(&http::client(), &url, fake.blob_digest());
    assert_eq!(body.len(), 2_000_000);
    assert_eq!(fake.blob_gets(), failed_gets + 1, "after the failed fetch, one good one");
}

#[test]
fn an_upstream_that_never_answers_gives_a_gateway_timeout_naming_it() {
    let fake = FakeUpstream::start("library/mute", "1", random_bytes(1000), Behaviour::NoAnswer);
    let server = server(&fake, 1_000, "5s");
    let url = format!("{}/v2/library/mute/manifests/1?ns=docker.io", server.url());
    let t0 = Instant::now();
    let resp = http::client().get(&url).send().expect("a response, not a hang");
    assert!(t0.elapsed() < Duration::from_secs(20), "answered after the pull timeout: {:?}", t0.elapsed());
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    let body = resp.bytes().expect("body");
    assert_eq!(http::error_codes(&body), vec!["UNAVAILABLE".to_string()]);
    assert!(String::from_utf8_lossy(&body).contains("docker.io"), "the message names the upstream");
}

#[test]
fn a_rate_limited_upstream_gives_503_with_retry_after() {
    let fake = FakeUpstream::start("library/busy", "1", random_bytes(1000), Behaviour::TooManyRequests);
    let server = server(&fake, 5_000, "5s");
    let url = format!("{}/v2/library/busy/manifests/1?ns=docker.io", server.url());
    let resp = http::client().get(&url).send().expect("response");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!http::header(&resp, "Retry-After").is_empty(), "Retry-After is passed on");
    assert_eq!(http::error_codes(&resp.bytes().expect("body")), vec!["TOOMANYREQUESTS".to_string()]);
    // The failure is not cached: the upstream recovers, the pull works.
    fake.set_behaviour(Behaviour::Normal);
    http::get_verified(&http::client(), &url, fake.manifest_digest());
}

#[test]
fn a_slow_transfer_that_keeps_receiving_bytes_is_never_cut() {
    // 1 MB at 256 KB/s in 16 KB pieces: ~4 s in all, far past both the 1 s idle timeout and the 1 s pull timeout,
    // with a new piece every ~60 ms.
    let fake = FakeUpstream::start(
        "library/slow",
        "1",
        random_bytes(1_000_000),
        Behaviour::Trickle { bytes_per_sec: 256_000, chunk: 16_000 },
    );
    let server = server(&fake, 1_000, "1s");
    let url = format!("{}/v2/library/slow/blobs/{}?ns=docker.io", server.url(), fake.blob_digest());
    let t0 = Instant::now();
    let body = http::get_verified(&http::client(), &url, fake.blob_digest());
    assert_eq!(body.len(), 1_000_000);
    assert!(t0.elapsed() > Duration::from_secs(2), "premise: the transfer outlasted the timeouts ({:?})", t0.elapsed());
    assert_eq!(fake.blob_gets(), 1);
}
