//! A large layer on a link that breaks every 50 MB, with the server crashing once and restarting gracefully once
//! along the way: the unfinished download survives both and is resumed with `Range` (the hash state rebuilt from the
//! bytes kept), so the layer crosses the link about once in total, and the client still gets it whole and verified.
//! A download kept whole (stopped after its last byte, before its commit) is committed without asking again.

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use common::http;
use common::images;
use common::server::{Server, ServerConfig};
use common::stub_http::{StubImage, StubServer};
use common::upstream::Upstream;
use common::TestDir;

const MB: usize = 1024 * 1024;
const LAYER: usize = 500 * MB;
const BREAK_EVERY: usize = 50 * MB;

/// GET `url` until a whole body arrives; returns its sha256 and how many attempts it took.
fn download_until_whole(url: &str, digest: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(300);
    for attempt in 1.. {
        assert!(Instant::now() < deadline, "no whole download of {url} within 5 minutes");
        let resp = match http::client().get(url).timeout(Duration::from_secs(120)).send() {
            Ok(resp) if resp.status().is_success() => resp,
            _ => {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let mut reader = resp;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let complete = loop {
            match reader.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => hasher.update(&buf[..n]),
                Err(_) => break false,
            }
        };
        if complete {
            let got = format!("sha256:{}", hex::encode(hasher.finalize()));
            assert_eq!(got, digest, "a download that ended cleanly must be the whole blob");
            return attempt;
        }
    }
    unreachable!()
}

fn partial_path(server: &Server, digest: &str) -> std::path::PathBuf {
    server.cache_dir().join("tmp").join(format!("partial-sha256-{}", digest.trim_start_matches("sha256:")))
}

fn partial_size(server: &Server, digest: &str) -> u64 {
    std::fs::metadata(partial_path(server, digest)).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn a_download_broken_every_50_mb_and_by_two_restarts_moves_the_layer_about_once() {
    let _dir = TestDir::new("resume");
    let image = Arc::new(StubImage::new("library/big", "1", &[LAYER]));
    let layer = image.layer_digest(0).to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let (img, counter, wanted) = (image.clone(), sent.clone(), layer.clone());
    let stub = StubServer::start(move |req| {
        let reply = img.serve(req);
        if req.method == "GET" && img.blob_requested(req).as_deref() == Some(wanted.as_str()) && reply.status < 300 {
            // What the link carried: a reply the killed server stopped reading counts only what left.
            return reply.cut_after(BREAK_EVERY).count_sent(counter.clone());
        }
        reply
    });
    let config = ServerConfig { idle_timeout: "5s".into(), ..ServerConfig::for_upstream(&stub.url()) }
        .extra("shutdownGrace: 1s");
    let mut server = Server::start_with(config);
    let url = format!("{}/v2/library/big/blobs/{layer}?ns=docker.io", server.url());

    let client = {
        let (url, layer) = (url.clone(), layer.clone());
        std::thread::spawn(move || download_until_whole(&url, &layer))
    };
    let wait_partial = |server: &Server, at_least: u64| {
        let start = Instant::now();
        while partial_size(server, &layer) < at_least {
            assert!(start.elapsed() < Duration::from_secs(120), "the download never reached {at_least} bytes");
            std::thread::sleep(Duration::from_millis(2));
        }
        partial_size(server, &layer)
    };
    // A crash at about a third...
    let first = wait_partial(&server, (LAYER / 3) as u64);
    server.signal("KILL");
    server.wait_exit(Duration::from_secs(10)).expect("killed");
    server.restart();
    // ...and a graceful restart at about two thirds.
    let second = wait_partial(&server, (2 * LAYER / 3) as u64);
    server.restart();
    let attempts = client.join().expect("client thread");
    let total = sent.load(Ordering::SeqCst);
    eprintln!(
        "resume: layer {LAYER} bytes, restarts at {first} and {second} bytes, {attempts} client attempts, {total} bytes sent upstream ({:.3}x)",
        total as f64 / LAYER as f64
    );
    assert!(first < LAYER as u64 && second < LAYER as u64, "both restarts happened mid-download");
    assert!(total as f64 <= 1.1 * LAYER as f64, "{total} bytes crossed the link for a {LAYER}-byte layer");
    // It is cached: served again without the upstream.
    let before = sent.load(Ordering::SeqCst);
    http::get_verified(&http::client(), &url, &layer);
    assert_eq!(sent.load(Ordering::SeqCst), before, "then served from the cache");
}

/// A large layer's last byte arrived, and the server stopped (its grace period ran out) while it verified and synced
/// it: the download is kept whole. The next request commits those bytes without asking the upstream, where asking
/// for the bytes after the last one is refused (416) and would move the whole layer again. Kept bytes of the right
/// size that do not hash to the digest are fetched again, never served.
#[test]
fn a_download_kept_whole_is_committed_without_asking_the_upstream_again() {
    let up = Upstream::start();
    let dir = TestDir::new("resume-whole");
    let image = images::custom(&up, &dir.subdir("work"), "library/whole:1", &[3 * MB, 2 * MB]);
    let (whole, spoiled) = (&image.manifest().layers[0], &image.manifest().layers[1]);
    let client = http::client();
    let upstream_bytes =
        |digest: &str| http::get_verified(&client, &format!("{}/v2/library/whole/blobs/{digest}", up.url()), digest);
    let mut kept_spoiled = upstream_bytes(&spoiled.digest);
    kept_spoiled[MB] ^= 0xff;
    let kept_whole = upstream_bytes(&whole.digest);
    let gets = |digest: &str| {
        up.settle_log();
        up.access_log_count("GET", &format!("/blobs/{digest}"))
    };
    let before = (gets(&whole.digest), gets(&spoiled.digest));

    let mut server = Server::start(&up.url());
    server.stop();
    std::fs::create_dir_all(server.cache_dir().join("tmp")).expect("tmp dir");
    std::fs::write(partial_path(&server, &whole.digest), &kept_whole).expect("plant the whole download");
    std::fs::write(partial_path(&server, &spoiled.digest), &kept_spoiled).expect("plant the spoiled download");
    server.restart();

    let url = |digest: &str| format!("{}/v2/library/whole/blobs/{digest}?ns=docker.io", server.url());
    http::get_verified(&client, &url(&whole.digest), &whole.digest);
    assert_eq!(gets(&whole.digest), before.0, "the kept download was committed without an upstream request");
    let cached = server.cache_dir().join("blobs/sha256").join(whole.digest.trim_start_matches("sha256:"));
    common::wait_for("the kept download cached under its digest", Duration::from_secs(30), || {
        cached.exists().then_some(())
    });

    http::get_verified(&client, &url(&spoiled.digest), &spoiled.digest);
    let refetched = gets(&spoiled.digest) - before.1;
    assert!((1..=2).contains(&refetched), "the spoiled download was fetched again ({refetched} GETs)");
}
