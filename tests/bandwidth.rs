//! `upstreamBandwidth` (issue 23, item 3) against a real `docker-registry`: large blobs from a capped upstream arrive
//! no faster than the cap, while manifests and small blobs take the priority lane and never wait behind them; a cap
//! far below a manifest's size still serves the manifest; the caps and the time waited are in the metrics. Over a
//! 20 Mbit/s link emulated in a network namespace (tests/common/wan.rs), a 5 Mbit/s cap leaves another flow on the
//! same link at least 14 Mbit/s while the mirror pulls a large layer, and the mirror stays within 5.5 Mbit/s.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::{self, StatusCode};
use common::images;
use common::metrics::Scrape;
use common::ports::free_port;
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::wan::Wan;
use common::TestDir;

/// GET a blob through the mirror, verified; how long it took.
fn timed_blob(server: &Server, repo: &str, digest: &str) -> Duration {
    let start = Instant::now();
    let url = format!("{}/v2/{repo}/blobs/{digest}", server.url());
    http::get_verified(&http::client(), &url, digest);
    start.elapsed()
}

#[test]
fn large_blobs_keep_to_the_cap_while_manifests_and_small_blobs_go_first() {
    let up = Upstream::start();
    let dir = TestDir::new("bandwidth");
    // 500 KB/s for docker.io alone (a per-registry cap); the bulk blob needs about 6 s under it.
    let big = images::custom(&up, &dir.subdir("big"), "library/big:v1", &[3_000_000]);
    let small = images::custom(&up, &dir.subdir("small"), "library/small:v1", &[900_000]);
    let metrics_port = free_port();
    let config = ServerConfig::default()
        .registry_with("docker.io", &up.url(), "upstreamBandwidth: 4Mbit\n")
        .extra(&format!("metrics: {metrics_port}"));
    let server = Server::start_with(config);
    let scrape = || Scrape::fetch(&format!("http://127.0.0.1:{metrics_port}/metrics"));
    assert_eq!(scrape().sum("ociregistry_upstream_bandwidth_limit_bytes", &[("ns", "docker.io")]), 500_000.0);
    assert_eq!(scrape().sum("ociregistry_upstream_bandwidth_wait_seconds_total", &[("ns", "docker.io")]), 0.0);

    let layer = big.manifest().layers[0].digest.clone();
    let big_url = server.url();
    let bulk = std::thread::spawn(move || {
        let start = Instant::now();
        let url = format!("{big_url}/v2/docker.io/library/big/blobs/{layer}");
        http::get_verified(&http::client(), &url, &layer);
        start.elapsed()
    });
    std::thread::sleep(Duration::from_millis(700));

    // While the layer trickles in: an uncached manifest and a 900 KB blob (under 1 MiB: the priority lane), each of
    // which would take 0.4 s and 1.8 s at the cap behind the layer.
    let (status, digest, took) =
        http::timed_manifest_get(&format!("{}/v2/docker.io/library/small/manifests/v1", server.url()));
    assert_eq!((status, digest), (StatusCode::OK, small.digest.clone()), "the manifest");
    assert!(took < Duration::from_secs(1), "an uncached manifest waited {took:?} behind a capped layer");
    let took = timed_blob(&server, "docker.io/library/small", &small.manifest().layers[0].digest);
    assert!(took < Duration::from_secs(1), "a 900 KB blob waited {took:?} behind a capped layer");
    assert!(!bulk.is_finished(), "the 3 MB layer was not held to 500 KB/s: the test proves nothing");

    let took = bulk.join().expect("the bulk download");
    // 3.9 MB paid at 500 KB/s (the priority lane's bytes count too), less one burst.
    assert!(took >= Duration::from_secs(6), "3 MB (+0.9 MB priority) at a 500 KB/s cap took only {took:?}");
    assert!(took < Duration::from_secs(20), "the capped layer took {took:?}");
    let waited = scrape().sum("ociregistry_upstream_bandwidth_wait_seconds_total", &[("ns", "docker.io")]);
    assert!(waited >= 4.0, "the bulk transfer's waits are counted: {waited} s");
    // Cached now: served at disk speed, no cap.
    let took = timed_blob(&server, "docker.io/library/big", &big.manifest().layers[0].digest);
    assert!(took < Duration::from_secs(2), "a cached blob is not throttled: {took:?}");
}

#[test]
fn a_cap_far_below_a_manifests_size_still_serves_it() {
    let up = Upstream::start();
    let dir = TestDir::new("bandwidth-tiny");
    let image = images::custom(&up, &dir.subdir("a"), "library/app:v1", &[2_000]);
    // 100 bytes per second for all upstreams together: a manifest and a small config are never refused or held.
    let server = Server::start_with(ServerConfig::for_upstream(&up.url()).extra("upstreamBandwidth: 100"));
    let (status, digest, took) =
        http::timed_manifest_get(&format!("{}/v2/docker.io/library/app/manifests/v1", server.url()));
    assert_eq!((status, digest), (StatusCode::OK, image.digest.clone()));
    assert!(took < Duration::from_secs(2), "took {took:?}");
    for blob in image.manifest().blobs() {
        let took = timed_blob(&server, "docker.io/library/app", &blob.digest);
        assert!(took < Duration::from_secs(2), "{} took {took:?}", blob.digest);
    }
}

/// A server that streams zeros to each connection until the client leaves: the site's other traffic.
fn endless_server() -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the other flow's server");
        tx.send(listener.local_addr().expect("local addr").port()).expect("send port");
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let chunk = vec![0u8; 64 * 1024];
                while conn.write_all(&chunk).is_ok() {}
            });
        }
    });
    rx.recv().expect("the other flow's port")
}

/// Read from `port` until `stop`, counting the bytes into `read`.
fn count_flow(port: u16, read: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect the other flow");
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => read.fetch_add(n as u64, Ordering::Relaxed),
            };
        }
    })
}

/// Mbit/s of `bytes` over `seconds`.
fn mbit(bytes: f64, seconds: f64) -> f64 {
    bytes * 8.0 / seconds / 1e6
}

#[test]
fn on_a_20_mbit_link_a_5_mbit_cap_leaves_another_flow_the_rest() {
    let wan = Wan::new();
    wan.enter();
    let up = Upstream::start();
    let dir = TestDir::new("bandwidth-link");
    let image = images::custom(&up, &dir.subdir("big"), "library/big:v1", &[24_000_000]);
    let link = wan.link(20_000_000);
    link.shape(up.port());
    let other = endless_server();
    link.shape(other);
    let server = Server::start_with(ServerConfig::for_upstream(&up.url()).extra("upstreamBandwidth: 5Mbit"));

    // The other flow alone: it has the whole link, and tells what the link counts per payload byte (headers).
    let (read, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let flow = count_flow(other, read.clone(), stop.clone());
    std::thread::sleep(Duration::from_secs(1));
    let (link0, read0, at0) = (link.bytes(), read.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let (link1, read1) = (link.bytes(), read.load(Ordering::Relaxed));
    let alone = mbit((read1 - read0) as f64, at0.elapsed().as_secs_f64());
    assert!(alone > 17.0, "the other flow alone got {alone:.1} Mbit/s of a 20 Mbit/s link: the emulator is off");
    let per_payload_byte = (link1 - link0) as f64 / (read1 - read0) as f64;

    // The mirror pulls a large uncached layer meanwhile; 10 s from its first byte request.
    let layer = image.manifest().layers[0].digest.clone();
    let url = format!("{}/v2/docker.io/library/big/blobs/{layer}", server.url());
    let (pulled, pull_stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let (pulled_in, pull_stop_in) = (pulled.clone(), pull_stop.clone());
    let (link0, read0, at0) = (link.bytes(), read.load(Ordering::Relaxed), Instant::now());
    let pull = std::thread::spawn(move || {
        let mut resp = http::client().get(&url).send().expect("GET the layer");
        assert_eq!(resp.status(), StatusCode::OK);
        let mut buf = vec![0u8; 64 * 1024];
        while !pull_stop_in.load(Ordering::Relaxed) {
            match resp.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pulled_in.fetch_add(n as u64, Ordering::Relaxed),
            };
        }
    });
    std::thread::sleep(Duration::from_secs(10));
    let (link1, read1, seconds) = (link.bytes(), read.load(Ordering::Relaxed), at0.elapsed().as_secs_f64());
    let got = pulled.load(Ordering::Relaxed);
    let ss =
        std::process::Command::new("ss").args(["-tmi", "dport", "=", &format!(":{}", up.port())]).output().unwrap();
    eprintln!("SS {}", String::from_utf8_lossy(&ss.stdout));
    stop.store(true, Ordering::Relaxed);
    pull_stop.store(true, Ordering::Relaxed);
    let other_rate = mbit((read1 - read0) as f64, seconds);
    let mirror_wire = (link1 - link0) as f64 - (read1 - read0) as f64 * per_payload_byte;
    let mirror_rate = mbit(mirror_wire, seconds);
    let figures = format!(
        "over {seconds:.1} s: the other flow {other_rate:.2} Mbit/s, the mirror's upstream {mirror_rate:.2} Mbit/s on \
         the link ({:.2} Mbit/s of layer bytes to its client)",
        mbit(got as f64, seconds)
    );
    eprintln!("{figures}");
    assert!(other_rate >= 14.0, "{figures}: the other flow kept less than 14 Mbit/s");
    assert!(mirror_rate <= 5.5, "{figures}: the mirror used more than 5.5 Mbit/s");
    assert!(mbit(got as f64, seconds) >= 3.0, "{figures}: the mirror hardly pulled: the test proves nothing");
    flow.join().expect("the other flow");
    drop(server);
    let _ = pull.join();
}
