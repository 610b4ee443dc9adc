//! Graceful shutdown: SIGTERM while a slow pull runs closes the door to new
//! connections but lets that pull finish with the right bytes, the server
//! exits 0 within `shutdownGrace`, and what it fetched is committed: after a
//! restart the blob is served from the cache without asking the upstream
//! again.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::fake_upstream::{Behaviour, FakeUpstream};
use common::http;
use common::images::random_bytes;
use common::server::{Server, ServerConfig};
use common::{sha256_digest, wait_for};

/// A 4 MiB layer trickled over about 6 s.
const BLOB_SIZE: usize = 4 << 20;
const RATE: usize = 700 << 10;
const CHUNK: usize = 32 << 10;
/// When SIGTERM is sent, after the pull started.
const TERM_AFTER: Duration = Duration::from_secs(2);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

use common::http::download;

#[test]
fn sigterm_lets_a_running_pull_finish_and_commits_it() {
    let fake = FakeUpstream::start(
        "library/slow",
        "1",
        random_bytes(BLOB_SIZE),
        Behaviour::Trickle { bytes_per_sec: RATE, chunk: CHUNK },
    );
    let mut server = Server::start_with(
        ServerConfig { pull_timeout_ms: 60_000, ..ServerConfig::for_upstream(&fake.url()) }
            .extra(&format!("shutdownGrace: {}s", SHUTDOWN_GRACE.as_secs())),
    );
    let url = format!("{}/v2/library/slow/blobs/{}?ns=docker.io", server.url(), fake.blob_digest());

    let t0 = Instant::now();
    let pull = {
        let url = url.clone();
        std::thread::spawn(move || download(&url))
    };
    wait_for("the upstream blob fetch to start", Duration::from_secs(10), || (fake.blob_gets() > 0).then_some(()));
    std::thread::sleep(TERM_AFTER.saturating_sub(t0.elapsed()));
    // The premise: the pull is still running when the signal arrives.
    assert!(!pull.is_finished(), "the pull ended before SIGTERM: the trickle did not happen");
    let term_at = t0.elapsed();
    server.signal("TERM");

    // Draining: new connections are refused while the running pull goes on.
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port()));
    let mut refused = false;
    while !pull.is_finished() && !refused {
        refused = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(refused, "new connections were still accepted after SIGTERM until the running pull ended");

    let status = server
        .wait_exit(SHUTDOWN_GRACE + Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the server still runs {SHUTDOWN_GRACE:?} after SIGTERM"));
    let exited_at = t0.elapsed();
    assert!(status.success(), "the server exited with {status} after SIGTERM:\n{}", server.log_tail());

    let body = pull.join().expect("pull thread").unwrap_or_else(|e| panic!("the running pull failed: {e}"));
    assert_eq!(body.len(), BLOB_SIZE, "the running pull's length");
    assert_eq!(sha256_digest(&body), fake.blob_digest(), "the running pull's bytes");
    assert_eq!(fake.blob_gets(), 1, "upstream GETs of the blob");
    eprintln!("SIGTERM at {term_at:?}, exit at {exited_at:?}");

    // Restart on the same cache with an upstream that refuses everything:
    // the blob comes from the cache, and the upstream is not asked again.
    fake.set_behaviour(Behaviour::TooManyRequests);
    server.restart();
    let again = http::get_verified(&http::client(), &url, fake.blob_digest());
    assert_eq!(again.len(), BLOB_SIZE);
    assert_eq!(fake.blob_gets(), 1, "upstream GETs of the blob after the restart");
}

#[test]
fn sigint_also_stops_the_server_cleanly() {
    let fake = FakeUpstream::start("library/quick", "1", random_bytes(64 << 10), Behaviour::Normal);
    let mut server = Server::start(&fake.url());
    let url = format!("{}/v2/library/quick/blobs/{}?ns=docker.io", server.url(), fake.blob_digest());
    http::get_verified(&http::client(), &url, fake.blob_digest());
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(60)).expect("the server still runs 60 s after SIGINT");
    assert!(status.success(), "the server exited with {status} after SIGINT");
    fake.set_behaviour(Behaviour::TooManyRequests);
    server.restart();
    http::get_verified(&http::client(), &url, fake.blob_digest());
    assert_eq!(fake.blob_gets(), 1, "upstream GETs of the blob after the restart");
}
