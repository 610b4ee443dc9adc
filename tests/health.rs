//! The health port: `/health` (liveness) answers 200 while the process runs,
//! `/ready` (readiness) 200 once the server serves and 503 (or no answer at
//! all) once it is shutting down; `GET /v2/` on the main port answers 200 for
//! probes that can only use that port.

mod common;

use std::time::{Duration, Instant};

use common::fake_upstream::{Behaviour, FakeUpstream};
use common::http::{self, Outcome, StatusCode};
use common::images::random_bytes;
use common::ports::free_port;
use common::server::{Server, ServerConfig};
use common::{sha256_digest, wait_for};

/// A 4 MiB layer trickled over about 6 s: a pull that is still running when
/// the server is told to stop.
const BLOB_SIZE: usize = 4 << 20;
const RATE: usize = 700 << 10;
const CHUNK: usize = 32 << 10;

/// A client for probes: a server that accepts and then never answers must
/// not hang the test.
fn probe_client() -> http::Client {
    http::Client::builder().no_proxy().timeout(Duration::from_secs(3)).build().expect("build probe client")
}

fn probe(client: &http::Client, url: &str) -> Outcome {
    http::get_outcome(client, url)
}

fn status_of(outcome: &Outcome) -> Option<StatusCode> {
    match outcome {
        Outcome::Complete { status, .. } => Some(*status),
        Outcome::Failed(_) => None,
    }
}

use common::http::download;

#[test]
fn health_and_ready_answer_while_running_and_ready_drops_during_shutdown() {
    let fake = FakeUpstream::start(
        "library/slow",
        "1",
        random_bytes(BLOB_SIZE),
        Behaviour::Trickle { bytes_per_sec: RATE, chunk: CHUNK },
    );
    let health_port = free_port();
    let mut server = Server::start_with(
        ServerConfig { pull_timeout_ms: 60_000, ..ServerConfig::for_upstream(&fake.url()) }
            .extra(&format!("health: {health_port}\nshutdownGrace: 60s")),
    );
    let health = format!("http://127.0.0.1:{health_port}/health");
    let ready = format!("http://127.0.0.1:{health_port}/ready");
    let client = probe_client();

    // Running: alive, ready (once the index is loaded), and /v2/ answers.
    wait_for("/ready to answer 200", Duration::from_secs(15), || {
        (status_of(&probe(&client, &ready)) == Some(StatusCode::OK)).then_some(())
    });
    for _ in 0..3 {
        assert_eq!(status_of(&probe(&client, &health)), Some(StatusCode::OK), "GET /health while running");
        assert_eq!(status_of(&probe(&client, &ready)), Some(StatusCode::OK), "GET /ready while running");
        let v2 = client.get(format!("{}/v2/", server.url())).send().expect("GET /v2/");
        assert_eq!(v2.status(), StatusCode::OK, "GET /v2/ on the main port");
    }

    // A slow pull is running when SIGTERM arrives.
    let url = format!("{}/v2/library/slow/blobs/{}?ns=docker.io", server.url(), fake.blob_digest());
    let t0 = Instant::now();
    let pull = std::thread::spawn(move || download(&url));
    wait_for("the upstream blob fetch to start", Duration::from_secs(10), || (fake.blob_gets() > 0).then_some(()));
    std::thread::sleep(Duration::from_secs(2).saturating_sub(t0.elapsed()));
    assert!(!pull.is_finished(), "the pull ended before SIGTERM: the trickle did not happen");
    server.signal("TERM");

    // Shutting down: /ready is 503 or gets no answer; /health, if it answers, says 200.
    let mut ready_seen = Vec::new();
    let mut health_seen = Vec::new();
    while server.is_running() {
        ready_seen.push(status_of(&probe(&client, &ready)));
        health_seen.push(status_of(&probe(&client, &health)));
        std::thread::sleep(Duration::from_millis(100));
        assert!(t0.elapsed() < Duration::from_secs(90), "the server did not exit within shutdownGrace");
    }
    let status = server.wait_exit(Duration::from_secs(1)).expect("exited");
    assert!(status.success(), "the server exited with {status} after SIGTERM");
    assert!(!ready_seen.is_empty(), "no /ready probe happened while the server was shutting down");
    // The signal is handled asynchronously: a probe sent in the same instant as SIGTERM may still see 200. Once
    // readiness has dropped it must stay down.
    let before_handler = ready_seen.iter().take_while(|s| **s == Some(StatusCode::OK)).count();
    assert!(before_handler <= 1, "/ready still answered 200 {before_handler} times after SIGTERM: {ready_seen:?}");
    for s in &ready_seen[before_handler..] {
        assert!(
            matches!(s, None | Some(StatusCode::SERVICE_UNAVAILABLE)),
            "GET /ready during shutdown answered {s:?}; all answers: {ready_seen:?}"
        );
    }
    assert!(ready_seen.len() > before_handler, "no /ready probe after the signal was handled: {ready_seen:?}");
    for s in &health_seen {
        assert!(matches!(s, None | Some(StatusCode::OK)), "GET /health during shutdown answered {s:?}");
    }

    // The pull that was running completed.
    let body = pull.join().expect("pull thread").unwrap_or_else(|e| panic!("the running pull failed: {e}"));
    assert_eq!(sha256_digest(&body), fake.blob_digest(), "the running pull's bytes");
    eprintln!("/ready during shutdown: {ready_seen:?}");
}
