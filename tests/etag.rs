//! Blobs and manifests carry their digest as a strong entity tag (`ETag: "sha256:…"`) on every answer (HEAD, 200,
//! 206), and the conditional headers that use it hold: a `Range` with an `If-Range` naming exactly that tag gets 206;
//! with any other tag, a weak one, or a date (blobs carry no `Last-Modified`), the whole blob with 200; an
//! `If-None-Match` naming it gets 304. Checked for a large blob (sent from its file), a small one (answered from
//! memory), and a blob not cached yet (served while it is fetched), against a real upstream.

mod common;

use common::http::{self, Client, StatusCode};
use common::images::{self, Image};
use common::server::Server;
use common::upstream::Upstream;
use common::{sha256_digest, TestDir};

/// What a request got: status, `ETag`, `Content-Range`, body.
struct Got {
    status: StatusCode,
    etag: String,
    content_range: String,
    body: Vec<u8>,
}

impl std::fmt::Debug for Got {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Got { status, etag, content_range, body } = self;
        write!(f, "{status} ETag={etag:?} Content-Range={content_range:?}, {} bytes", body.len())
    }
}

fn get(client: &Client, url: &str, headers: &[(&str, &str)], head: bool) -> Got {
    let mut req = if head { client.head(url) } else { client.get(url) };
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().unwrap_or_else(|e| panic!("{url}: {e}"));
    let (status, etag, content_range) =
        (resp.status(), http::header(&resp, "ETag"), http::header(&resp, "Content-Range"));
    let body = resp.bytes().unwrap_or_else(|e| panic!("{url}: body: {e}")).to_vec();
    Got { status, etag, content_range, body }
}

/// The whole blob `digest` with 200, its tag on it.
fn assert_whole(got: &Got, digest: &str, size: u64, what: &str) {
    assert_eq!(got.status, StatusCode::OK, "{what}: {got:?}");
    assert_eq!(got.etag, format!("\"{digest}\""), "{what}: ETag");
    assert_eq!(got.body.len() as u64, size, "{what}: whole body");
    assert_eq!(sha256_digest(&got.body), digest, "{what}: body digest");
}

/// The range `100-199` of the blob `digest`, with 206 and its tag.
fn assert_part(got: &Got, digest: &str, size: u64, whole: &[u8], what: &str) {
    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT, "{what}: {:?}", (got.status, &got.etag, &got.content_range));
    assert_eq!(got.etag, format!("\"{digest}\""), "{what}: ETag");
    assert_eq!(got.content_range, format!("bytes 100-199/{size}"), "{what}");
    assert_eq!(got.body, whole[100..200], "{what}: the range's bytes");
}

/// Every conditional case on the blob `digest` of `image`, cached by now.
fn check_cached_blob(server: &Server, image: &Image, digest: &str, size: u64) {
    let client = http::client();
    let url = format!("{}/v2/{}/blobs/{digest}?ns=docker.io", server.url(), image.repo);
    let ours = format!("\"{digest}\"");
    let whole = get(&client, &url, &[], false);
    assert_whole(&whole, digest, size, "GET");
    let head = get(&client, &url, &[], true);
    assert_eq!((head.status, head.etag.as_str()), (StatusCode::OK, ours.as_str()), "HEAD");

    let range = ("Range", "bytes=100-199");
    assert_part(&get(&client, &url, &[range], false), digest, size, &whole.body, "Range alone");
    assert_part(&get(&client, &url, &[range, ("If-Range", &ours)], false), digest, size, &whole.body, "our tag");
    let other = format!("\"sha256:{}\"", "0".repeat(64));
    let weak = format!("W/{ours}");
    for (if_range, what) in [
        (other.as_str(), "another tag"),
        (weak.as_str(), "our tag, weak"),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "a date"),
        (digest, "our digest unquoted (not an entity tag)"),
    ] {
        let got = get(&client, &url, &[range, ("If-Range", if_range)], false);
        assert_whole(&got, digest, size, &format!("If-Range: {what}"));
        assert_eq!(got.content_range, "", "If-Range: {what}");
    }

    for head in [false, true] {
        let got = get(&client, &url, &[("If-None-Match", &ours)], head);
        assert_eq!((got.status, got.etag.as_str(), got.body.len()), (StatusCode::NOT_MODIFIED, ours.as_str(), 0));
        let got = get(&client, &url, &[("If-None-Match", &other)], head);
        assert_eq!((got.status, got.etag.as_str()), (StatusCode::OK, ours.as_str()), "If-None-Match: another tag");
    }
}

#[test]
fn blobs_carry_their_digest_as_etag_and_if_range_must_name_it() {
    let up = Upstream::start();
    let dir = TestDir::new("etag");
    // Layers of ~300 KiB (sent from its file) and ~5 KiB (answered from memory).
    let hello = images::hello(&up, dir.path());
    let other = images::custom(&up, dir.path(), "library/other:1", &[400_000, 3_000]);
    let server = Server::start(&up.url());
    let client = http::client();

    // Not cached yet: a mismatching If-Range on the very first request gets the whole blob, a matching one the range.
    let big = &other.manifest().layers[0];
    let url = format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), other.repo, big.digest);
    let first = get(&client, &url, &[("Range", "bytes=100-199"), ("If-Range", "\"elsewhere\"")], false);
    assert_whole(&first, &big.digest, big.size, "a miss, If-Range of another tag");
    let small = &other.manifest().layers[1];
    let url = format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), other.repo, small.digest);
    let ours = format!("\"{}\"", small.digest);
    let first = get(&client, &url, &[("Range", "bytes=100-199"), ("If-Range", &ours)], false);
    let whole = get(&client, &url, &[], false);
    assert_part(&first, &small.digest, small.size, &whole.body, "a miss, If-Range of our tag");

    for layer in [&hello.manifest().layers[0], &hello.manifest().layers[2], big, small] {
        let image = if hello.manifest().layers.contains(layer) { &hello } else { &other };
        let url = format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), image.repo, layer.digest);
        assert_whole(&get(&client, &url, &[], false), &layer.digest, layer.size, "caching GET");
        check_cached_blob(&server, image, &layer.digest, layer.size);
    }
}

#[test]
fn manifests_carry_their_digest_as_etag_and_if_none_match_gets_304() {
    let up = Upstream::start();
    let dir = TestDir::new("etag-manifest");
    let hello = images::hello(&up, dir.path());
    let server = Server::start(&up.url());
    let client = http::client();
    let ours = format!("\"{}\"", hello.digest);
    for reference in [hello.tag.as_str(), hello.digest.as_str()] {
        let url = format!("{}/v2/{}/manifests/{reference}?ns=docker.io", server.url(), hello.repo);
        let accept = ("Accept", http::ACCEPT_ALL_MANIFESTS);
        for head in [false, true] {
            let got = get(&client, &url, &[accept], head);
            assert_eq!((got.status, got.etag.as_str()), (StatusCode::OK, ours.as_str()), "{url} head={head}");
            let got = get(&client, &url, &[accept, ("If-None-Match", &ours)], head);
            assert_eq!((got.status, got.etag.as_str(), got.body.len()), (StatusCode::NOT_MODIFIED, ours.as_str(), 0));
            let got = get(&client, &url, &[accept, ("If-None-Match", "\"sha256:other\"")], head);
            assert_eq!(got.status, StatusCode::OK, "{url}: If-None-Match of another tag");
        }
    }
}
