//! `/metrics` on the metrics port after a pull storm: the counters and the
//! coalescing histogram say what the storm did (one upstream fetch per blob,
//! every client request either a follower of that fetch or a cache hit), the
//! Go server's names still count, the gauges describe the cache, and
//! `promtool check metrics` finds nothing wrong with any metric we added —
//! only with Go names, each of which the operations guide lists as a
//! deliberate exception.

mod common;

use common::images::{self, Image};
use common::metrics::{promtool_problems, Scrape};
use common::ports::free_port;
use common::server::{Server, ServerConfig};
use common::storm::storm;
use common::upstream::Upstream;
use common::{http, TestDir};

const CLIENTS: usize = 30;

/// The Go server's metric names, kept for existing dashboards even where they
/// break Prometheus naming rules (docs/operations.md lists them as
/// deliberate exceptions). promtool may complain about these and only these.
const GO_NAMES: &[&str] = &[
    "ociregistry_cached_pulls_by_ns_total",
    "ociregistry_upstream_pulls_by_ns",
    "ociregistry_manifest_pulls_total",
    "ociregistry_blob_pulls_total",
    "ociregistry_v2_api_endpoint_hits_total",
    "ociregistry_api_errors_total",
    "ociregistry_blob_bytes_on_disk_total",
    "ociregistry_manifest_bytes_on_disk_total",
    "ociregistry_cached_manifest_count",
    "ociregistry_cached_blob_count",
];

/// What a storm left behind: the image, a scrape of `/metrics` after it, and
/// the server (still running).
struct AfterStorm {
    image: Image,
    metrics: Scrape,
    server: Server,
    _up: Upstream,
}

/// A server with a metrics port; check the scrape before anything happened,
/// run the storm, scrape again.
fn after_storm(name: &str) -> AfterStorm {
    let up = Upstream::start();
    let dir = TestDir::new(name);
    // Layers big enough that clients overlap the upstream fetches.
    let image = images::custom(&up, dir.path(), "library/storm:1", &[3 << 20, 1 << 20, 50_000]);
    let metrics_port = free_port();
    let server = Server::start_with(ServerConfig::for_upstream(&up.url()).extra(&format!("metrics: {metrics_port}")));
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");

    // Before: an empty cache, no fetches.
    let before = Scrape::fetch(&metrics_url);
    assert_eq!(before.sum("ociregistry_cached_blob_count", &[]), 0.0, "blob count before any pull");
    assert_eq!(before.sum_or_zero("ociregistry_upstream_fetches_total", &[("kind", "blob")]), 0.0);
    // Present at 0 from the start for the configured upstream, so panels show 0 and the first event is an increase.
    for (name, labels) in [
        ("ociregistry_upstream_errors_total", &[("ns", "docker.io"), ("reason", "digest_mismatch")][..]),
        ("ociregistry_token_fetches_total", &[("ns", "docker.io")][..]),
        ("ociregistry_stale_serves_total", &[("ns", "docker.io"), ("reason", "timeout")][..]),
        ("ociregistry_upstream_breaker_state", &[("ns", "docker.io")][..]),
        ("ociregistry_cache_requests_total", &[("kind", "blob"), ("result", "hit")][..]),
        ("ociregistry_evictions_total", &[("reason", "cap")][..]),
        ("ociregistry_eviction_idle_seconds_bucket", &[("reason", "cap"), ("le", "3600")][..]),
    ] {
        assert_eq!(before.sum(name, labels), 0.0, "{name}{labels:?} before any pull");
    }
    let (open, max) = (before.sum("process_open_fds", &[]), before.sum("process_max_fds", &[]));
    assert!(open >= 3.0 && open < max, "process_open_fds {open}, process_max_fds {max}");

    storm(&server.url(), &image, CLIENTS);
    // Clients are answered once a blob's digest matches; its fetch ends after the fsync and commit that follow.
    // Scrape once every fetch has ended, so the figures below are the storm's whole effect.
    let metrics = common::wait_for("the storm's fetches to end", std::time::Duration::from_secs(20), || {
        let m = Scrape::fetch(&metrics_url);
        (m.sum_or_zero("ociregistry_fetches_in_flight", &[("kind", "blob")]) == 0.0).then_some(m)
    });
    AfterStorm { image, metrics, server, _up: up }
}

#[test]
fn a_storm_moves_the_fetch_counter_and_the_waiters_histogram_as_it_should() {
    let AfterStorm { image, metrics: m, server, .. } = after_storm("metrics-storm");
    let blobs = image.blobs();
    let n = blobs.len() as f64;
    let blob_bytes: u64 = blobs.iter().map(|b| b.size).sum();
    let requests = CLIENTS as f64 * n;

    // One upstream fetch per blob, each one a 200, each byte received once.
    assert_eq!(
        m.sum("ociregistry_upstream_fetches_total", &[("kind", "blob"), ("status", "200")]),
        n,
        "upstream blob fetches"
    );
    assert_eq!(
        m.sum("ociregistry_upstream_fetches_total", &[("ns", "docker.io"), ("kind", "blob")]),
        n,
        "upstream blob fetches of any status, labelled with the namespace"
    );
    assert_eq!(
        m.sum("ociregistry_upstream_bytes_total", &[("kind", "blob")]),
        blob_bytes as f64,
        "upstream blob bytes"
    );
    assert_eq!(m.sum_or_zero("ociregistry_fetches_in_flight", &[("kind", "blob")]), 0.0, "blob fetches in flight");

    // The Go server's counters.
    assert_eq!(m.sum("ociregistry_blob_pulls_total", &[]), requests, "ociregistry_blob_pulls_total");
    let manifest_pulls = m.sum("ociregistry_manifest_pulls_total", &[]);
    assert!(manifest_pulls >= 2.0 * CLIENTS as f64, "ociregistry_manifest_pulls_total = {manifest_pulls}");

    // Bytes served: every client got every blob.
    let served = m.sum("ociregistry_served_bytes_total", &[("ns", "docker.io")]);
    assert!(served >= CLIENTS as f64 * blob_bytes as f64, "served bytes {served} < {CLIENTS} x {blob_bytes}");

    // Every request went through the latency histogram.
    let timed = m.sum("ociregistry_http_request_duration_seconds_count", &[]);
    assert!(timed >= requests + 2.0 * CLIENTS as f64, "request latency observations: {timed}");
    assert!(
        m.sum_or_zero("ociregistry_http_request_duration_seconds_count", &[("route", "blob"), ("method", "GET")])
            >= requests,
        "blob GETs in the latency histogram:\n{}",
        m.text
    );

    // The gauges describe the cache.
    assert_eq!(m.sum("ociregistry_cached_blob_count", &[]), n, "ociregistry_cached_blob_count");
    assert_eq!(m.sum("ociregistry_cache_entries", &[("kind", "blob")]), n, "ociregistry_cache_entries{{kind=blob}}");
    assert_eq!(m.sum("ociregistry_blob_bytes_on_disk_total", &[]), blob_bytes as f64);
    assert_eq!(m.sum("ociregistry_cache_bytes", &[("kind", "blob")]), blob_bytes as f64);
    assert!(m.sum("ociregistry_cached_manifest_count", &[]) >= 1.0);
    assert!(m.sum("ociregistry_cache_volume_size_bytes", &[]) > 0.0);
    assert!(m.sum("ociregistry_cache_volume_free_bytes", &[]) > 0.0);

    // The metrics live on their own port only.
    let main = http::client().get(format!("{}/metrics", server.url())).send().expect("GET /metrics on the main port");
    assert_eq!(main.status(), http::StatusCode::NOT_FOUND, "/metrics on the main port");

    // The waiters histogram: one observation per fetch; every client request
    // was either a follower of that fetch or a cache hit.
    let waiter_count = m.sum("ociregistry_fetch_waiters_count", &[("kind", "blob")]);
    let waiter_sum = m.sum("ociregistry_fetch_waiters_sum", &[("kind", "blob")]);
    let hits = m.sum_or_zero("ociregistry_cache_requests_total", &[("kind", "blob"), ("result", "hit")]);
    let misses = m.sum_or_zero("ociregistry_cache_requests_total", &[("kind", "blob"), ("result", "miss")]);
    let tally = format!("waiters: {waiter_count} fetches, sum {waiter_sum}; blob cache hits {hits}, misses {misses}");
    eprintln!("{tally}");
    assert_eq!(waiter_count, n, "fetch_waiters{{kind=blob}} observations (one per upstream fetch); {tally}");
    assert!(waiter_sum >= n, "each fetch served at least the client that caused it; {tally}");
    assert_eq!(hits + misses, requests, "every blob request is one cache lookup; {tally}");
    assert_eq!(waiter_sum + hits, requests, "every blob request followed the one fetch or hit the cache; {tally}");
}

#[test]
fn promtool_finds_fault_only_with_the_go_names_and_the_guide_lists_them() {
    let AfterStorm { metrics: m, .. } = after_storm("metrics-promtool");
    let problems = promtool_problems(&m.text);
    let ours: Vec<_> = problems.iter().filter(|(name, _)| !GO_NAMES.contains(&name.as_str())).collect();
    assert!(ours.is_empty(), "promtool check metrics complains about metrics we added: {ours:#?}");
    eprintln!("promtool on the Go names: {problems:#?}");

    // Every Go name promtool flags is listed in the operations guide as a
    // deliberate exception (the paragraph that says so).
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .expect("read docs/operations.md");
    let exceptions = guide
        .split("\n\n")
        .find(|p| p.to_ascii_lowercase().contains("deliberate exception"))
        .expect("docs/operations.md has a paragraph on deliberate exceptions");
    let unlisted: Vec<_> = problems.iter().filter(|(name, _)| !exceptions.contains(&format!("`{name}`"))).collect();
    assert!(
        unlisted.is_empty(),
        "flagged by promtool but not listed as exceptions in docs/operations.md: {unlisted:#?}"
    );
}

#[test]
fn the_exposition_parser_reads_names_labels_and_values() {
    let s = Scrape::parse(
        "# HELP a_total Things.\n# TYPE a_total counter\n\
         a_total{ns=\"docker.io\",kind=\"blob\"} 3\n\
         a_total{ns=\"quay.io\",kind=\"blob\"} 4\n\
         b 1.5e+06\n\
         c_bucket{le=\"+Inf\",q=\"x\\\"y,}z\"} 2\n",
    );
    assert_eq!(s.samples.len(), 4);
    assert_eq!(s.sum("a_total", &[("kind", "blob")]), 7.0);
    assert_eq!(s.sum("a_total", &[("ns", "quay.io")]), 4.0);
    assert_eq!(s.sum_or_zero("a_total", &[("kind", "manifest")]), 0.0);
    assert_eq!(s.sum("b", &[]), 1_500_000.0);
    assert_eq!(s.sum("c_bucket", &[("q", "x\"y,}z"), ("le", "+Inf")]), 2.0);
    assert!(s.declares("a_total") && !s.declares("b"));
}
