//! A slow upstream: a second client asking for a blob that is still being
//! fetched gets bytes as they arrive, not after the fetch ends, and both
//! clients share the one upstream fetch.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::fake_upstream::{Behaviour, FakeUpstream};
use common::http::{self, StatusCode};
use common::images::random_bytes;
use common::server::{Server, ServerConfig};
use common::sha256_digest;

/// 4 MiB at 512 KiB/s: about 8 s upstream.
const BLOB_SIZE: usize = 4 << 20;
const RATE: usize = 512 << 10;
const CHUNK: usize = 32 << 10;
/// When client B starts, after client A.
const B_DELAY: Duration = Duration::from_secs(2);

struct Timed {
    /// From the common start to the first body byte.
    first_byte: Duration,
    /// From the common start to the end of the body.
    done: Duration,
    body: Vec<u8>,
}

fn timed_get(url: &str, t0: Instant) -> Timed {
    let client = http::client();
    let mut resp = client.get(url).send().unwrap_or_else(|e| panic!("GET {url}: {e:#}"));
    assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
    let mut body = Vec::with_capacity(BLOB_SIZE);
    let mut buf = vec![0u8; 64 << 10];
    let mut first_byte = None;
    loop {
        let n = resp.read(&mut buf).unwrap_or_else(|e| panic!("GET {url}: body after {} bytes: {e:#}", body.len()));
        if n == 0 {
            break;
        }
        first_byte.get_or_insert_with(|| t0.elapsed());
        body.extend_from_slice(&buf[..n]);
    }
    Timed { first_byte: first_byte.expect("a non-empty body"), done: t0.elapsed(), body }
}

#[test]
fn late_client_streams_while_upstream_trickles() {
    let fake = FakeUpstream::start(
        "library/slow",
        "1",
        random_bytes(BLOB_SIZE),
        Behaviour::Trickle { bytes_per_sec: RATE, chunk: CHUNK },
    );
    // pullTimeout well above the 8 s fetch: a slow but live upstream is fine.
    let server =
        Server::start_with(ServerConfig { pull_timeout_ms: 60_000, ..ServerConfig::for_upstream(&fake.url()) });
    let base = format!("{}/v2/library/slow", server.url());
    let manifest =
        http::get_verified(&http::client(), &format!("{base}/manifests/1?ns=docker.io"), fake.manifest_digest());
    assert_eq!(manifest, fake.manifest());

    let url = format!("{base}/blobs/{}?ns=docker.io", fake.blob_digest());
    let t0 = Instant::now();
    let a = {
        let url = url.clone();
        std::thread::spawn(move || timed_get(&url, t0))
    };
    std::thread::sleep(B_DELAY);
    let b = timed_get(&url, t0);
    let a = a.join().expect("client A");

    let digest = fake.blob_digest();
    assert_eq!(sha256_digest(&a.body), digest, "client A's bytes");
    assert_eq!(sha256_digest(&b.body), digest, "client B's bytes");
    assert_eq!(fake.blob_gets(), 1, "one upstream fetch for both clients");
    // The premise: the upstream really was slow (its own pacing, a lower bound).
    assert!(a.done >= Duration::from_secs(4), "upstream fetch took only {:?}; the trickle did not happen", a.done);
    // B joined the fetch at ~2 s: its first byte must come long before the
    // fetch ends (~8 s), not after it.
    assert!(
        b.first_byte < a.done * 2 / 3,
        "client B's first byte at {:?}, client A done at {:?}",
        b.first_byte,
        a.done
    );
    eprintln!(
        "A: first byte {:?}, done {:?}; B: first byte {:?}, done {:?}",
        a.first_byte, a.done, b.first_byte, b.done
    );
}

#[test]
fn range_requests_on_a_blob_still_being_fetched_get_their_slice() {
    // containerd 2.1+ fetches large layers in parallel ranges, possibly while the mirror is still pulling them.
    let blob = random_bytes(BLOB_SIZE);
    let fake = FakeUpstream::start(
        "library/ranged",
        "1",
        blob.clone(),
        Behaviour::Trickle { bytes_per_sec: RATE, chunk: CHUNK },
    );
    // Ranges ahead of the transfer are fetched on their own unless `rangePassThrough` is off (issue 25,
    // tests/ranges.rs); here every range follows the one running fetch.
    let config = ServerConfig { pull_timeout_ms: 60_000, ..ServerConfig::for_upstream(&fake.url()) };
    let server = Server::start_with(config.extra("rangePassThrough: false"));
    let url = format!("{}/v2/library/ranged/blobs/{}?ns=docker.io", server.url(), fake.blob_digest());
    let t0 = Instant::now();
    let full = {
        let url = url.clone();
        std::thread::spawn(move || timed_get(&url, t0))
    };
    std::thread::sleep(Duration::from_secs(1));
    let ranges = [(0usize, 99_999usize), (1_000_000, 1_999_999), (BLOB_SIZE - 10, BLOB_SIZE - 1)];
    let handles: Vec<_> = ranges
        .iter()
        .map(|&(start, end)| {
            let url = url.clone();
            std::thread::spawn(move || {
                let resp = http::client()
                    .get(&url)
                    .header("Range", format!("bytes={start}-{end}"))
                    .send()
                    .unwrap_or_else(|e| panic!("GET range {start}-{end}: {e:#}"));
                assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "range {start}-{end}");
                assert_eq!(http::header(&resp, "Content-Range"), format!("bytes {start}-{end}/{BLOB_SIZE}"));
                (start, end, resp.bytes().expect("range body").to_vec())
            })
        })
        .collect();
    for h in handles {
        let (start, end, body) = h.join().expect("range client");
        assert_eq!(body, blob[start..=end], "bytes of range {start}-{end}");
    }
    let full = full.join().expect("full client");
    assert_eq!(sha256_digest(&full.body), fake.blob_digest());
    assert_eq!(fake.blob_gets(), 1, "the ranges joined the one running fetch");
}

#[test]
fn a_transfer_whose_connection_breaks_is_resumed_from_where_it_stopped() {
    // Edge links drop: the first answer breaks after 40% of a 3 MB layer; the mirror resumes with a Range request
    // and the client gets the whole, verified blob without noticing.
    use common::stub_http::{serve_bytes, Reply, StubServer};
    use std::sync::atomic::{AtomicBool, Ordering};
    let blob = random_bytes(3_000_000);
    let digest = sha256_digest(&blob);
    let (b, d) = (blob.clone(), digest.clone());
    let first = AtomicBool::new(true);
    let stub = StubServer::start(move |req| {
        if req.path() == "/v2/" {
            return Reply::json(200, &serde_json::json!({}));
        }
        if req.path() == format!("/v2/library/flaky/blobs/{d}") {
            if req.header("range").is_none() && first.swap(false, Ordering::SeqCst) {
                return serve_bytes(req, &b, &d).cut_after(1_200_000);
            }
            return serve_bytes(req, &b, &d);
        }
        Reply::error(404, "BLOB_UNKNOWN")
    });
    let server = Server::start(&stub.url());
    let url = format!("{}/v2/library/flaky/blobs/{digest}?ns=docker.io", server.url());
    let body = http::get_verified(&http::client(), &url, &digest);
    assert_eq!(body, blob);
    let gets: Vec<_> = stub.requests().into_iter().filter(|r| r.path().contains("/blobs/")).collect();
    assert_eq!(gets.len(), 2, "one broken GET, one resumed: {gets:?}");
    let range = gets[1].header("range").unwrap_or("").to_string();
    let from: u64 = range.trim_start_matches("bytes=").trim_end_matches('-').parse().expect("a bytes=N- range");
    assert!(from > 0 && from <= 1_200_000, "resumed from what had arrived, not from 0: {range}");
    // And it is cached: the next request does not go upstream.
    http::get_verified(&http::client(), &url, &digest);
    assert_eq!(stub.requests().iter().filter(|r| r.path().contains("/blobs/")).count(), 2);
}
