//! Many clients pulling one image at the same moment the way containerd
//! does: HEAD by tag, GET the manifest by digest, GET every blob, each
//! checked against its digest. Used by the storm and metrics tests.

use std::sync::{Arc, Barrier};

use super::http::{self, StatusCode};
use super::images::Image;
use super::sha256_digest;

/// One containerd-shaped pull of `image` (a single-platform image under
/// `docker.io`) from `server_url`, started when every client has reached
/// `start`. Returns the manifest digest the HEAD reported.
pub fn pull_like_containerd(server_url: &str, image: &Image, start: &Barrier) -> String {
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

/// `clients` threads each run [`pull_like_containerd`] at once; panics
/// unless every one got `image`'s digest and verified bytes.
pub fn storm(server_url: &str, image: &Image, clients: usize) {
    let image = Arc::new(image.clone());
    let start = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (image, start, url) = (image.clone(), start.clone(), server_url.to_string());
            std::thread::spawn(move || pull_like_containerd(&url, &image, &start))
        })
        .collect();
    let mut failures = Vec::new();
    for (i, t) in threads.into_iter().enumerate() {
        match t.join() {
            Ok(digest) => assert_eq!(digest, image.digest, "client {i}"),
            Err(_) => failures.push(i),
        }
    }
    assert!(failures.is_empty(), "clients {failures:?} failed (see panics above)");
}
