//! skopeo pulls every fixture image through our server, by tag and by digest,
//! and gets exactly the upstream's bytes; manifest HEADs carry what
//! containerd relies on; a second pull is served from the cache.

mod common;

use common::http::{self, StatusCode};
use common::images;
use common::server::Server;
use common::upstream::Upstream;
use common::{skopeo, TestDir};

#[test]
fn every_fixture_image_pulls_by_tag_and_digest() {
    let up = Upstream::start();
    let dir = TestDir::new("pull-skopeo");
    let f = images::fixture(&up, dir.path());
    let server = Server::start(&up.url());

    for (i, image) in f.all().into_iter().enumerate() {
        skopeo::pull_verified(&server.url(), image, &image.reference(), &dir.path().join(format!("tag-{i}")));
        skopeo::pull_verified(&server.url(), image, &image.digest_reference(), &dir.path().join(format!("digest-{i}")));
    }

    // Everything was fetched from the upstream once, whatever the number of
    // pulls.
    up.settle_log();
    for image in f.all() {
        for blob in image.blobs() {
            let path = format!("/v2/{}/blobs/{}", image.repo, blob.digest);
            assert_eq!(up.access_log_count("GET", &path), 1, "upstream GETs of {path}");
        }
    }
}

#[test]
fn second_pull_is_served_from_cache() {
    let up = Upstream::start();
    let dir = TestDir::new("pull-skopeo");
    let hello = images::hello(&up, dir.path());
    let server = Server::start(&up.url());

    skopeo::pull_verified(&server.url(), &hello, &hello.reference(), &dir.path().join("a"));
    up.settle_log();
    let before = up.access_log().len();
    // By digest nothing needs the upstream at all (a tag may be revalidated).
    skopeo::pull_verified(&server.url(), &hello, &hello.digest_reference(), &dir.path().join("b"));
    up.settle_log();
    let after: Vec<_> =
        up.access_log().into_iter().skip(before).filter(|e| e.path().starts_with("/v2/library/hello/")).collect();
    assert!(after.is_empty(), "a pull by digest of a cached image reached the upstream: {after:#?}");
}

/// HEAD and GET of manifests through our server, cold and warm, both URL
/// shapes: the headers are the upstream's digest, media type and size.
#[test]
fn manifest_head_has_length_type_and_digest() {
    let up = Upstream::start();
    let dir = TestDir::new("pull-skopeo");
    let hello = images::hello(&up, dir.path());
    let docker2 = images::docker2(&up, dir.path());
    let multi = images::multi(&up, dir.path());
    let server = Server::start(&up.url());
    let client = http::client();

    for image in [&hello, &docker2, &multi] {
        let urls = [
            // containerd's shape, cold: the first request for this image.
            format!("{}/v2/{}/manifests/{}?ns=docker.io", server.url(), image.repo, image.tag),
            format!("{}/v2/{}/manifests/{}?ns=docker.io", server.url(), image.repo, image.digest),
            // skopeo's shape: namespace as the first path segment.
            format!("{}/v2/docker.io/{}/manifests/{}", server.url(), image.repo, image.tag),
        ];
        for url in &urls {
            let resp = client
                .head(url)
                .header("Accept", http::ACCEPT_ALL_MANIFESTS)
                .send()
                .unwrap_or_else(|e| panic!("HEAD {url}: {e:#}"));
            assert_eq!(resp.status(), StatusCode::OK, "HEAD {url}");
            assert_eq!(
                http::header(&resp, "Content-Length"),
                image.bytes.len().to_string(),
                "HEAD {url}: Content-Length"
            );
            assert_eq!(http::header(&resp, "Content-Type"), image.media_type, "HEAD {url}");
            assert_eq!(http::header(&resp, "Docker-Content-Digest"), image.digest, "HEAD {url}");

            let resp = client
                .get(url)
                .header("Accept", http::ACCEPT_ALL_MANIFESTS)
                .send()
                .unwrap_or_else(|e| panic!("GET {url}: {e:#}"));
            assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
            assert_eq!(http::header(&resp, "Content-Type"), image.media_type, "GET {url}");
            assert_eq!(http::header(&resp, "Docker-Content-Digest"), image.digest, "GET {url}");
            assert_eq!(
                resp.bytes().expect("body").as_ref(),
                image.bytes.as_slice(),
                "GET {url}: bytes as the upstream stores them"
            );
        }
        // A child manifest of the index, by digest, as containerd asks.
        for child in &image.manifests {
            let url = format!("{}/v2/{}/manifests/{}?ns=docker.io", server.url(), image.repo, child.digest);
            let resp = client
                .get(&url)
                .header("Accept", format!("{}, */*", child.media_type))
                .send()
                .expect("GET child manifest");
            assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
            assert_eq!(http::header(&resp, "Content-Type"), child.media_type);
            assert_eq!(resp.bytes().unwrap().as_ref(), child.bytes.as_slice());
        }
    }
}
