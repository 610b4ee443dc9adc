//! Edge behaviour against a real upstream behind a fault proxy: tags refresh after `tagTtl`; a cached tag is served
//! within `revalidateTimeout` whatever the upstream does (black hole, refused, 429, 503), and at cache speed while the
//! circuit breaker is open; uncached content fails fast with a clear error (while the breaker is open, within
//! `revalidateTimeout`: it probes the upstream); air-gapped, nothing is ever dialled; a storm for a missing tag costs
//! one upstream request.

mod common;

use std::time::Duration;

use common::fault_proxy::{FaultProxy, Mode};
use common::http::{self, StatusCode};
use common::images::{self, get_manifest};
use common::metrics::Scrape;
use common::ports::free_port;
use common::server::{Server, ServerConfig};
use common::stub_http::CountingListener;
use common::upstream::Upstream;
use common::{skopeo, TestDir};

const REPO: &str = "docker.io/library/app";

/// GET a manifest through the server; the status, the digest header and how long it took.
fn timed_get(server: &Server, reference: &str) -> (StatusCode, String, Duration) {
    http::timed_manifest_get(&format!("{}/v2/{REPO}/manifests/{reference}", server.url()))
}

fn metrics(port: u16) -> Scrape {
    Scrape::fetch(&format!("http://127.0.0.1:{port}/metrics"))
}

/// A server whose docker.io goes through `proxy`, with metrics on a port of its own, `pullTimeout` in ms and `extra`
/// config.
fn server_via(proxy: &FaultProxy, pull_timeout_ms: u64, extra: &str) -> (Server, u16) {
    let metrics_port = free_port();
    let config = ServerConfig { pull_timeout_ms, ..ServerConfig::for_upstream(&proxy.url()) }
        .extra(&format!("metrics: {metrics_port}\n{extra}"));
    (Server::start_with(config), metrics_port)
}

#[test]
fn a_tag_moved_upstream_is_served_fresh_once_its_ttl_has_passed() {
    let up = Upstream::start();
    let dir = TestDir::new("ttl");
    let first = images::custom(&up, &dir.subdir("a"), "library/app:t", &[2_000]);
    let proxy = FaultProxy::start(up.port());
    let (server, _) = server_via(&proxy, 10_000, "tagTtl: 2s");
    assert_eq!(get_manifest(&server.url(), REPO, "t").0, first.digest);
    let second = images::custom(&up, &dir.subdir("b"), "library/app:t", &[3_000]);
    assert_eq!(get_manifest(&server.url(), REPO, "t").0, first.digest, "within its TTL the cached tag is served");
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(get_manifest(&server.url(), REPO, "t").0, second.digest, "after its TTL the moved tag is fresh");
    assert_eq!(get_manifest(&server.url(), REPO, &first.digest).0, first.digest, "the old digest stays cached");
    // The new image pulls completely.
    skopeo::pull_verified(&server.url(), &second, &second.reference(), &dir.path().join("out"));
    // Checked with HEADs, never more than one GET of the tag per move.
    up.settle_log();
    let ours = |method: &str| {
        let log = up.access_log();
        log.iter()
            .filter(|e| e.agent.starts_with("ociregistry") && e.method == method && e.path().ends_with("/manifests/t"))
            .count()
    };
    assert_eq!(ours("GET"), 2, "one GET per manifest version:\n{}", up.log_tail());
    assert!(ours("HEAD") >= 2, "tags are checked with HEADs");
}

#[test]
fn with_ttl_zero_a_cached_tag_answers_within_the_revalidate_timeout_whatever_the_upstream_does() {
    let up = Upstream::start();
    let dir = TestDir::new("stale");
    let image = images::custom(&up, &dir.subdir("a"), "library/app:t", &[2_000]);
    let proxy = FaultProxy::start(up.port());
    let (server, metrics_port) = server_via(&proxy, 3_000, "tagTtl: 0s\nrevalidateTimeout: 500ms");
    assert_eq!(get_manifest(&server.url(), REPO, "t").0, image.digest);
    for (mode, reason) in [(Mode::Status(429), "429"), (Mode::Status(503), "5xx"), (Mode::BlackHole, "timeout")] {
        proxy.set(mode);
        let (status, digest, took) = timed_get(&server, "t");
        assert_eq!((status, digest), (StatusCode::OK, image.digest.clone()), "{mode:?}: the cached tag is served");
        assert!(took < Duration::from_secs(3), "{mode:?}: took {took:?}, the check must give up after 500 ms");
        let stale = metrics(metrics_port).sum_or_zero("ociregistry_stale_serves_total", &[("reason", reason)]);
        assert!(stale >= 1.0, "{mode:?}: a stale serve counted with reason {reason}");
        // Back to healthy between cases, so the breaker does not open before the black hole.
        proxy.set(Mode::Forward);
        assert_eq!(timed_get(&server, "t").1, image.digest);
    }
}

#[test]
fn a_dead_upstream_opens_the_breaker_then_cached_tags_answer_without_asking_and_uncached_fail_within_the_probe() {
    let up = Upstream::start();
    let dir = TestDir::new("breaker");
    let image = images::custom(&up, &dir.subdir("a"), "library/app:t", &[2_000]);
    let proxy = FaultProxy::start(up.port());
    let (server, metrics_port) = server_via(&proxy, 2_000, "tagTtl: 0s\nrevalidateTimeout: 400ms");
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("first"));
    proxy.set(Mode::BlackHole);
    // An uncached manifest with a black-hole upstream: a clear error within pullTimeout, never a hang.
    let (status, _, took) = timed_get(&server, "uncached");
    assert!(status == StatusCode::GATEWAY_TIMEOUT || status == StatusCode::SERVICE_UNAVAILABLE, "{status}");
    assert!(took < Duration::from_secs(6), "took {took:?} with pullTimeout 2 s");
    for _ in 0..3 {
        assert_eq!(timed_get(&server, "t").1, image.digest);
    }
    let m = metrics(metrics_port);
    assert_eq!(m.sum("ociregistry_upstream_breaker_state", &[("ns", "docker.io")]), 1.0, "the breaker is open");
    let before = proxy.connections();
    let open_stale = m.sum_or_zero("ociregistry_stale_serves_total", &[("reason", "breaker_open")]);
    for _ in 0..5 {
        let (status, digest, took) = timed_get(&server, "t");
        assert_eq!((status, digest), (StatusCode::OK, image.digest.clone()));
        assert!(took < Duration::from_millis(400), "with the breaker open no check is made (took {took:?})");
    }
    assert_eq!(proxy.connections(), before, "nothing was dialled for cached tags while the breaker was open");
    // Uncached content probes the upstream itself (issue 23: so the first pull after an outage succeeds), one probe
    // bounded by revalidateTimeout: a 503 within it while the upstream is still down.
    let (status, _, took) = timed_get(&server, "other");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "uncached content fails while the breaker is open");
    assert!(took < Duration::from_millis(400 + 600), "took {took:?}, the probe must give up after 400 ms");
    assert!(proxy.connections() <= before + 1, "at most the probe was dialled while the breaker was open");
    let after = metrics(metrics_port).sum_or_zero("ociregistry_stale_serves_total", &[("reason", "breaker_open")]);
    assert!(after >= open_stale + 5.0, "stale serves with the breaker open are counted");
    // The image still pulls completely from the cache.
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("out"));
}

#[test]
fn a_refused_upstream_is_a_503_naming_it_and_cached_tags_still_pull() {
    let up = Upstream::start();
    let dir = TestDir::new("refused");
    let image = images::custom(&up, &dir.subdir("a"), "library/app:t", &[2_000]);
    let proxy = FaultProxy::start(up.port());
    let (server, _) = server_via(&proxy, 10_000, "tagTtl: 0s");
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("first"));
    proxy.set(Mode::Refuse);
    let url = format!("{}/v2/{REPO}/manifests/nothing-here", server.url());
    let resp = http::client().get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("GET");
    let (status, codes, text) = http::oci_error(resp, "uncached with the upstream refusing");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert_eq!(codes, vec!["UNAVAILABLE"]);
    assert!(text.contains("docker.io"), "the error names the upstream: {text}");
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("second"));
}

#[test]
fn air_gapped_serves_the_cache_and_never_dials_anything() {
    let up = Upstream::start();
    let dir = TestDir::new("airgap");
    let image = images::custom(&up, &dir.subdir("a"), "library/app:t", &[2_000, 3_000]);
    let cache = dir.subdir("cache");
    let mut first =
        Server::start_with(ServerConfig { image_path: Some(cache.clone()), ..ServerConfig::for_upstream(&up.url()) });
    skopeo::pull_verified(&first.url(), &image, &image.reference(), &dir.path().join("first"));
    first.stop();

    let listener = CountingListener::start();
    let endpoint = format!("http://127.0.0.1:{}", listener.port());
    let config = ServerConfig { image_path: Some(cache), ..ServerConfig::for_upstream(&endpoint) }
        .extra("airGapped: true\ntagTtl: 0s");
    let server = Server::start_with(config);
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("second"));
    let client = http::client();
    let url = format!("{}/v2/{REPO}/manifests/absent", server.url());
    let resp = client.get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("GET");
    let (status, codes, _) = http::oci_error(resp, "an uncached manifest, air-gapped");
    assert_eq!((status, codes), (StatusCode::NOT_FOUND, vec!["MANIFEST_UNKNOWN".to_string()]));
    let missing = format!("sha256:{}", "0".repeat(64));
    let url = format!("{}/v2/{REPO}/blobs/{missing}", server.url());
    let (status, codes, _) = http::oci_error(client.get(&url).send().expect("GET"), "an uncached blob, air-gapped");
    assert_eq!((status, codes), (StatusCode::NOT_FOUND, vec!["BLOB_UNKNOWN".to_string()]));
    assert_eq!(client.head(&url).send().expect("HEAD").status(), StatusCode::NOT_FOUND);
    assert_eq!(listener.connections(), 0, "an air-gapped server dialled its upstream");
}

#[test]
fn a_storm_for_a_missing_tag_costs_one_upstream_request_and_the_answer_is_remembered() {
    let up = Upstream::start();
    let dir = TestDir::new("negative");
    images::custom(&up, &dir.subdir("a"), "library/app:t", &[1_000]);
    let server = Server::start_with(ServerConfig::for_upstream(&up.url()).extra("negativeTtl: 2s"));
    let url = format!("{}/v2/{REPO}/manifests/missing", server.url());
    let statuses: Vec<StatusCode> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..30)
            .map(|_| {
                let url = url.clone();
                s.spawn(move || {
                    http::client().get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("GET").status()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(statuses.iter().all(|s| *s == StatusCode::NOT_FOUND), "{statuses:?}");
    let asked = || {
        up.settle_log();
        up.access_log_count("HEAD", "/manifests/missing") + up.access_log_count("GET", "/manifests/missing")
    };
    assert_eq!(asked(), 1, "30 concurrent requests for a missing tag: one upstream request");
    for _ in 0..5 {
        assert_eq!(timed_get(&server, "missing").0, StatusCode::NOT_FOUND);
    }
    assert_eq!(asked(), 1, "the 404 is remembered for negativeTtl");
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(timed_get(&server, "missing").0, StatusCode::NOT_FOUND);
    assert_eq!(asked(), 2, "and asked again after it");
}

#[test]
fn always_pull_latest_checks_latest_on_every_pull_while_a_registry_ttl_of_never_keeps_other_tags() {
    let up = Upstream::start();
    let dir = TestDir::new("latest");
    let old_latest = images::custom(&up, &dir.subdir("a"), "library/app:latest", &[1_000]);
    let old_v1 = images::custom(&up, &dir.subdir("b"), "library/app:v1", &[1_000]);
    let config = ServerConfig::for_upstream(&up.url())
        .registry_with("docker.io", &up.url(), "tagTtl: never")
        .extra("alwaysPullLatest: true");
    // The second `docker.io` entry (with its tagTtl) is the one the server keeps: drop the first.
    let config = ServerConfig { registries: config.registries[1..].to_vec(), ..config };
    let server = Server::start_with(config);
    assert_eq!(get_manifest(&server.url(), REPO, "latest").0, old_latest.digest);
    assert_eq!(get_manifest(&server.url(), REPO, "v1").0, old_v1.digest);
    let new_latest = images::custom(&up, &dir.subdir("c"), "library/app:latest", &[2_000]);
    images::custom(&up, &dir.subdir("d"), "library/app:v1", &[2_000]);
    assert_eq!(get_manifest(&server.url(), REPO, "latest").0, new_latest.digest, "latest is checked on every pull");
    assert_eq!(get_manifest(&server.url(), REPO, "v1").0, old_v1.digest, "tagTtl: never keeps the cached v1");
}
