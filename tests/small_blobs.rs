//! Small blobs (up to 64 KiB) are answered whole from memory, in one write with the response head: served correctly
//! before and after their first verification since start, whole and by range, with `Content-Length`; one damaged on
//! disk is checked before any byte leaves, never served, and fetched again within the same request (or, with the
//! upstream gone, answered with an error instead of bad bytes).

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;

use common::http::{self, Outcome, StatusCode};
use common::images::{self, Image};
use common::server::Server;
use common::upstream::Upstream;
use common::{sha256_digest, skopeo, TestDir};

fn blob_file(server: &Server, digest: &str) -> PathBuf {
    server.cache_dir().join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

fn blob_url(server: &Server, image: &Image, digest: &str) -> String {
    format!("{}/v2/{}/blobs/{digest}?ns=docker.io", server.url(), image.repo)
}

fn upstream_gets(up: &Upstream, digest: &str) -> usize {
    up.settle_log();
    up.access_log_count("GET", &format!("/blobs/{digest}"))
}

/// Overwrite a few bytes in the middle of a file, in place (same size).
fn scribble(path: &std::path::Path) {
    // Clients are answered once the digest matches, before the commit: wait for the file.
    let size = common::wait_for("the blob's cache file", std::time::Duration::from_secs(10), || {
        fs::metadata(path).ok().map(|m| m.len())
    });
    let mut f = OpenOptions::new().write(true).open(path).expect("open for writing");
    f.seek(SeekFrom::Start(size / 2)).expect("seek");
    f.write_all(b"bit rot!").expect("scribble");
}

#[test]
fn small_blobs_are_served_whole_and_by_range_before_and_after_their_first_verification() {
    let up = Upstream::start();
    let dir = TestDir::new("small-blobs");
    // A small layer, one just at the bound, and one above it (streamed).
    let image = images::custom(&up, &dir.subdir("work"), "library/small:1", &[2_458, 65_536, 65_537]);
    let mut server = Server::start(&up.url());
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("first"));
    let client = http::client();
    // After a restart no blob is verified yet: the first GET of each hashes it, the next ones do not.
    server.restart();
    for round in ["first read since start (verified now)", "verified"] {
        for blob in image.blobs() {
            let url = blob_url(&server, &image, &blob.digest);
            let resp = client.get(&url).send().expect("GET blob");
            assert_eq!(resp.status(), StatusCode::OK, "{round}: {}", blob.digest);
            assert_eq!(http::header(&resp, "Content-Length"), blob.size.to_string(), "{round}");
            assert_eq!(http::header(&resp, "Docker-Content-Digest"), blob.digest, "{round}");
            let body = resp.bytes().expect("body");
            assert_eq!(sha256_digest(&body), blob.digest, "{round}: {} bytes", blob.size);
        }
    }
    // A range of a small blob held in memory.
    let small = &image.manifest().layers[0];
    let whole = http::get_verified(&client, &blob_url(&server, &image, &small.digest), &small.digest);
    let resp =
        client.get(blob_url(&server, &image, &small.digest)).header("Range", "bytes=100-1099").send().expect("GET");
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(http::header(&resp, "Content-Range"), format!("bytes 100-1099/{}", small.size));
    assert_eq!(http::header(&resp, "Content-Length"), "1000");
    assert_eq!(&resp.bytes().expect("body")[..], &whole[100..1100]);
    for blob in image.blobs() {
        assert_eq!(upstream_gets(&up, &blob.digest), 1, "{} came from the cache after the first pull", blob.digest);
    }
}

#[test]
fn a_damaged_small_blob_is_never_served_and_is_fetched_again_by_the_same_request() {
    let mut up = Upstream::start();
    let dir = TestDir::new("small-rot");
    let image = images::custom(&up, &dir.subdir("work"), "library/smallrot:1", &[4_000, 30_000]);
    let mut server = Server::start(&up.url());
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("first"));
    let client = http::client();
    let (a, b) = (&image.manifest().layers[0], &image.manifest().layers[1]);

    // Verified by its first read, then damaged in place: the next request checks it again before sending anything,
    // and gets good bytes from the upstream.
    http::get_verified(&client, &blob_url(&server, &image, &a.digest), &a.digest);
    scribble(&blob_file(&server, &a.digest));
    http::get_verified(&client, &blob_url(&server, &image, &a.digest), &a.digest);
    assert_eq!(upstream_gets(&up, &a.digest), 2, "the damaged copy was replaced within the request");
    http::get_verified(&client, &blob_url(&server, &image, &a.digest), &a.digest);
    assert_eq!(upstream_gets(&up, &a.digest), 2, "then served from the cache");

    // With the upstream gone, a damaged small blob is an error, never its bytes.
    up.stop();
    server.restart();
    scribble(&blob_file(&server, &b.digest));
    match http::get_outcome(&client, &blob_url(&server, &image, &b.digest)) {
        Outcome::Complete { status, body } => {
            assert!(!status.is_success(), "a damaged small blob was answered {status} ({} bytes)", body.len());
        }
        Outcome::Failed(e) => panic!("a damaged small blob is answered with an error status, not a cut: {e}"),
    }
    // The quarantine is the cache actor's, after the answer: wait for it rather than race it.
    let damaged = blob_file(&server, &b.digest);
    common::wait_for("the damaged file moved aside", std::time::Duration::from_secs(10), || {
        (!damaged.exists()).then_some(())
    });
}
