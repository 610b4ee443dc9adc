//! Many clients pull the same uncached image at the same moment, the way
//! containerd does it; our server fetches each manifest and blob from the
//! upstream exactly once and every client gets verified bytes.

mod common;

use std::sync::{Arc, Barrier};

use common::http::{self, StatusCode};
use common::images::{self, Image};
use common::server::Server;
use common::upstream::Upstream;
use common::{sha256_digest, TestDir};

const CLIENTS: usize = 30;

/// One containerd-shaped pull: HEAD by tag, GET the manifest by digest, GET
/// every blob; everything checked against digests. Returns the manifest
/// digest the HEAD reported.
fn pull_like_containerd(server_url: &str, image: &Image, start: &Barrier) -> String {
    let client = http::client();
    start.wait();
    let base = format!("{server_url}/v2/{}", image.repo);

    let url = format!("{base}/manifests/{}?ns=docker.io", image.tag);
    let head = client
        .head(&url)
        .header("Accept", http::ACCEPT_ALL_MANIFESTS)
        .send()
        .unwrap_or_else(|e| panic!("HEAD {url}: {e:#}"));
    assert_eq!(head.status(), StatusCode::OK, "HEAD {url}");
    let digest = http::header(&head, "Docker-Content-Digest");
    let media_type = http::header(&head, "Content-Type");
    assert_eq!(http::header(&head, "Content-Length"), image.bytes.len().to_string(), "HEAD {url}: Content-Length");

    let url = format!("{base}/manifests/{digest}?ns=docker.io");
    let resp = client
        .get(&url)
        .header("Accept", format!("{media_type}, */*"))
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e:#}"));
    assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
    let manifest = resp.bytes().expect("manifest body");
    assert_eq!(sha256_digest(&manifest), digest, "GET {url}");
    let json: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest JSON");

    let blobs = std::iter::once(&json["config"]).chain(json["layers"].as_array().unwrap());
    for blob in blobs {
        let blob_digest = blob["digest"].as_str().unwrap();
        let url = format!("{base}/blobs/{blob_digest}?ns=docker.io");
        let body = http::get_verified(&client, &url, blob_digest);
        assert_eq!(body.len() as u64, blob["size"].as_u64().unwrap());
    }
    digest
}

#[test]
fn concurrent_cold_pulls_fetch_upstream_once() {
    let up = Upstream::start();
    let dir = TestDir::new("storm");
    // Layers big enough that the clients overlap the upstream fetches.
    let image = images::custom(&up, dir.path(), "library/storm:1", &[3 << 20, 1 << 20, 50_000]);
    let server = Server::start(&up.url());
    up.settle_log();
    let baseline = up.access_log().len();

    let image = Arc::new(image);
    let start = Arc::new(Barrier::new(CLIENTS));
    let url = server.url();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (image, start, url) = (image.clone(), start.clone(), url.clone());
            std::thread::spawn(move || pull_like_containerd(&url, &image, &start))
        })
        .collect();
    let mut failures = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        match c.join() {
            Ok(digest) => assert_eq!(digest, image.digest, "client {i}"),
            Err(_) => failures.push(i),
        }
    }
    assert!(failures.is_empty(), "clients {failures:?} failed (see panics above)");

    up.settle_log();
    let log: Vec<_> = up.access_log().into_iter().skip(baseline).collect();
    for blob in image.blobs() {
        let path = format!("/v2/library/storm/blobs/{}", blob.digest);
        let gets = log.iter().filter(|e| e.method == "GET" && e.path() == path).count();
        assert_eq!(gets, 1, "upstream GETs of {path}; log: {log:#?}");
    }
    let manifest_gets =
        log.iter().filter(|e| e.method == "GET" && e.path().starts_with("/v2/library/storm/manifests/")).count();
    assert_eq!(manifest_gets, 1, "upstream manifest GETs; log: {log:#?}");
}
