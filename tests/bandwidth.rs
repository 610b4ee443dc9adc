//! `upstreamBandwidth` (issue 23, item 3) against a real `docker-registry`: large blobs from a capped upstream arrive
//! no faster than the cap, while manifests and small blobs take the priority lane and never wait behind them; a cap
//! far below a manifest's size still serves the manifest; the caps and the time waited are in the metrics.

mod common;

use std::time::{Duration, Instant};

use common::http::{self, StatusCode};
use common::images;
use common::metrics::Scrape;
use common::ports::free_port;
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
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
