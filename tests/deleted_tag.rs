//! A cached tag deleted upstream (issue 23, item 5), against a real `docker-registry`: once its `tagTtl` has run out,
//! the check's 404 serves the cached manifest stale (`reason="gone"`) and starts the TTL again, so 20 pulls cost at
//! most one upstream request, and the tag is asked about once more only after another TTL.

mod common;

use std::time::{Duration, Instant};

use common::http::{self, StatusCode};
use common::images;
use common::metrics::Scrape;
use common::ports::free_port;
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::{skopeo, TestDir};

const REPO: &str = "docker.io/library/app";
const TTL: Duration = Duration::from_secs(3);

/// GET the tag's manifest through the server: its status and digest header.
fn pull(server: &Server) -> (StatusCode, String) {
    let url = format!("{}/v2/{REPO}/manifests/t", server.url());
    let resp = http::client().get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("GET manifest");
    let status = resp.status();
    let digest = http::header(&resp, "Docker-Content-Digest");
    let _ = resp.bytes();
    (status, digest)
}

/// Our server's requests for the tag's manifest (HEAD or GET) the upstream logged so far.
fn tag_requests(up: &Upstream) -> usize {
    up.settle_log();
    up.access_log()
        .iter()
        .filter(|e| e.agent.starts_with("ociregistry") && e.path().ends_with("/library/app/manifests/t"))
        .count()
}

fn gone_serves(metrics_port: u16) -> f64 {
    Scrape::fetch(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .sum_or_zero("ociregistry_stale_serves_total", &[("reason", "gone")])
}

#[test]
fn a_tag_deleted_upstream_is_served_stale_as_gone_and_checked_once_per_ttl() {
    let up = Upstream::start();
    let dir = TestDir::new("deleted-tag");
    let image = images::custom(&up, &dir.subdir("a"), "library/app:t", &[2_000]);
    let metrics_port = free_port();
    let config = ServerConfig::for_upstream(&up.url())
        .extra(&format!("metrics: {metrics_port}\ntagTtl: {}s\nrevalidateTimeout: 1s", TTL.as_secs()));
    let server = Server::start_with(config);
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("out"));
    assert_eq!(pull(&server), (StatusCode::OK, image.digest.clone()));

    // Deleting a tag in distribution 2.8 is deleting its manifest by digest.
    let delete = format!("{}/v2/library/app/manifests/{}", up.url(), image.digest);
    let status = http::client().delete(&delete).send().expect("DELETE manifest upstream").status();
    assert_eq!(status, StatusCode::ACCEPTED, "the upstream deletes the manifest");
    let head = format!("{}/v2/library/app/manifests/t", up.url());
    let status = http::client().head(&head).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("HEAD").status();
    assert_eq!(status, StatusCode::NOT_FOUND, "the tag is gone upstream");

    std::thread::sleep(TTL + Duration::from_millis(300));
    let before = tag_requests(&up);
    let start = Instant::now();
    for i in 0..20 {
        assert_eq!(pull(&server), (StatusCode::OK, image.digest.clone()), "pull {i}: the cached manifest is served");
    }
    let took = start.elapsed();
    assert!(took < TTL, "20 pulls took {took:?}, longer than the TTL: the test proves nothing");
    let checks = tag_requests(&up) - before;
    assert!(checks <= 1, "20 pulls of a gone tag asked the upstream {checks} times:\n{}", up.log_tail());
    assert_eq!(gone_serves(metrics_port), 1.0, "the stale serve is counted as gone");

    // After another TTL the tag is checked again, once.
    std::thread::sleep(TTL + Duration::from_millis(300));
    let before = tag_requests(&up);
    for i in 0..5 {
        assert_eq!(pull(&server), (StatusCode::OK, image.digest.clone()), "later pull {i}: still served");
    }
    let checks = tag_requests(&up) - before;
    assert_eq!(checks, 1, "after another TTL the gone tag is checked once:\n{}", up.log_tail());
    assert_eq!(gone_serves(metrics_port), 2.0, "the second stale serve is counted as gone");
}
