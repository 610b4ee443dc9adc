//! Our server's answers to everything that is not a successful pull: the
//! OCI error JSON (`{"errors":[{"code":…}]}`) with the right status, and the
//! API root, and Range requests on blobs.

mod common;

use common::http::{self, Client, Response, StatusCode};
use common::images;
use common::ports::closed_port;
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::{sha256_digest, TestDir};

/// Check the status, a JSON content type, and that `code` is among the
/// body's `errors[].code`. Returns the body text.
fn assert_oci_error(resp: Response, status: StatusCode, code: &str, what: &str) -> String {
    assert_eq!(resp.status(), status, "{what}");
    let content_type = http::header(&resp, "Content-Type");
    let body = resp.bytes().expect("error body").to_vec();
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(content_type.contains("json"), "{what}: Content-Type {content_type:?}, body {text}");
    let codes = http::error_codes(&body);
    assert!(codes.iter().any(|c| c == code), "{what}: expected code {code}, got {codes:?} in {text}");
    text
}

fn get(client: &Client, url: &str) -> Response {
    client.get(url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().unwrap_or_else(|e| panic!("GET {url}: {e:#}"))
}

fn random_digest() -> String {
    sha256_digest(&images::random_bytes(32))
}

#[test]
fn api_root_answers_with_version_header() {
    let up = Upstream::start();
    let server = Server::start(&up.url());
    let client = http::client();
    for resp in [
        client.get(format!("{}/v2/", server.url())).send().unwrap(),
        client.head(format!("{}/v2/", server.url())).send().unwrap(),
    ] {
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(http::header(&resp, "Docker-Distribution-Api-Version"), "registry/2.0");
    }
    let root = client.get(format!("{}/v2", server.url())).send().unwrap();
    assert_eq!(root.status(), StatusCode::OK, "/v2 without its slash is the API root too");
    // Paths outside /v2 are not endpoints (the listener routes by prefix, not by a router pattern).
    for path in ["/", "/v2x", "/v1/_ping", "/metrics"] {
        let resp = get(&client, &format!("{}{path}", server.url()));
        let body = assert_oci_error(resp, StatusCode::NOT_FOUND, "NOT_FOUND", path);
        assert!(body.contains("no such endpoint"), "{path}: {body}");
    }
}

#[test]
fn unknown_manifest_and_blob_are_404() {
    let up = Upstream::start();
    let dir = TestDir::new("errors");
    images::hello(&up, dir.path());
    let server = Server::start(&up.url());
    let client = http::client();
    let s = server.url();

    for url in [
        format!("{s}/v2/library/hello/manifests/no-such-tag?ns=docker.io"),
        format!("{s}/v2/docker.io/library/hello/manifests/no-such-tag"),
        format!("{s}/v2/library/hello/manifests/{}?ns=docker.io", random_digest()),
    ] {
        assert_oci_error(get(&client, &url), StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", &url);
    }
    let url = format!("{s}/v2/library/no-such-repo/manifests/latest?ns=docker.io");
    let resp = get(&client, &url);
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{url}");
    let codes = http::error_codes(&resp.bytes().unwrap());
    assert!(codes.iter().any(|c| c == "MANIFEST_UNKNOWN" || c == "NAME_UNKNOWN"), "{url}: {codes:?}");

    let url = format!("{s}/v2/library/hello/blobs/{}?ns=docker.io", random_digest());
    assert_oci_error(get(&client, &url), StatusCode::NOT_FOUND, "BLOB_UNKNOWN", &url);
    let resp = client.head(&url).send().unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "HEAD {url}");

    let url = format!("{s}/v2/library/hello/manifests/no-such-tag?ns=docker.io");
    let resp = client.head(&url).send().unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "HEAD {url}");
}

#[test]
fn writes_are_unsupported_and_never_forwarded() {
    let up = Upstream::start();
    let dir = TestDir::new("errors");
    let hello = images::hello(&up, dir.path());
    let server = Server::start(&up.url());
    let client = http::client();
    let s = server.url();
    let layer = &hello.manifest().layers[0].digest;
    // The push that made the fixture wrote to the upstream; count after it.
    up.settle_log();
    let baseline = up.access_log().len();

    let requests = [
        (reqwest::Method::PUT, format!("{s}/v2/library/hello/manifests/latest?ns=docker.io")),
        (reqwest::Method::PUT, format!("{s}/v2/docker.io/library/hello/manifests/evil")),
        (reqwest::Method::POST, format!("{s}/v2/library/hello/blobs/uploads/?ns=docker.io")),
        (
            reqwest::Method::PATCH,
            format!("{s}/v2/library/hello/blobs/uploads/0b7f3d2c-1111-2222-3333-444455556666?ns=docker.io"),
        ),
        (reqwest::Method::DELETE, format!("{s}/v2/library/hello/manifests/{}?ns=docker.io", hello.digest)),
        (reqwest::Method::DELETE, format!("{s}/v2/library/hello/blobs/{layer}?ns=docker.io")),
    ];
    for (method, url) in requests {
        let resp = client
            .request(method.clone(), &url)
            .header("Content-Type", images::OCI_MANIFEST)
            .body(hello.bytes.clone())
            .send()
            .unwrap_or_else(|e| panic!("{method} {url}: {e:#}"));
        assert_oci_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", &format!("{method} {url}"));
    }

    up.settle_log();
    let forwarded: Vec<_> =
        up.access_log().into_iter().skip(baseline).filter(|e| e.method != "GET" && e.method != "HEAD").collect();
    assert!(forwarded.is_empty(), "writes reached the upstream: {forwarded:#?}");
    // The image is untouched upstream.
    let after = images::read_back(&up.url(), "library/hello", "latest");
    assert_eq!(after.digest, hello.digest);
}

#[test]
fn invalid_names_and_digests_are_400() {
    let up = Upstream::start();
    let server = Server::start(&up.url());
    let client = http::client();
    let s = server.url();

    for url in [
        format!("{s}/v2/..%2f../manifests/x?ns=docker.io"),
        format!("{s}/v2/..%2f../manifests/x"),
        format!("{s}/v2/library/..%2f..%2fetc/manifests/latest?ns=docker.io"),
        format!("{s}/v2/library/hello%2f..%2f..%2fx/blobs/{}?ns=docker.io", random_digest()),
    ] {
        assert_oci_error(get(&client, &url), StatusCode::BAD_REQUEST, "NAME_INVALID", &url);
    }

    let bad_digests = [
        "sha256:abc".to_string(),
        format!("sha256:{}", "a".repeat(63)),
        format!("sha256:{}", "g".repeat(64)),
        format!("sha256{}", "a".repeat(64)),
    ];
    for d in &bad_digests {
        let url = format!("{s}/v2/library/hello/blobs/{d}?ns=docker.io");
        assert_oci_error(get(&client, &url), StatusCode::BAD_REQUEST, "DIGEST_INVALID", &url);
    }

    // Nothing invalid was passed on.
    up.settle_log();
    let forwarded: Vec<_> = up
        .access_log()
        .into_iter()
        .filter(|e| e.target.contains("..") || e.target.contains("sha256:abc") || e.target.contains("gggg"))
        .collect();
    assert!(forwarded.is_empty(), "invalid requests reached the upstream: {forwarded:#?}");
}

#[test]
fn namespace_not_configured_is_denied() {
    let up = Upstream::start();
    let server = Server::start(&up.url());
    let client = http::client();
    let s = server.url();
    for url in [
        format!("{s}/v2/library/hello/manifests/latest?ns=example.com"),
        format!("{s}/v2/example.com/library/hello/manifests/latest"),
        format!("{s}/v2/library/hello/blobs/{}?ns=example.com", random_digest()),
    ] {
        assert_oci_error(get(&client, &url), StatusCode::FORBIDDEN, "DENIED", &url);
    }
}

#[test]
fn upstream_down_is_a_gateway_error_naming_it() {
    let down = closed_port();
    let server =
        Server::start_with(ServerConfig::default().registry("down.example", &format!("http://127.0.0.1:{down}")));
    let client = http::client();
    let s = server.url();
    for url in [
        format!("{s}/v2/library/hello/manifests/latest?ns=down.example"),
        format!("{s}/v2/down.example/library/hello/manifests/latest"),
        format!("{s}/v2/library/hello/blobs/{}?ns=down.example", random_digest()),
    ] {
        let resp = get(&client, &url);
        let status = resp.status();
        assert!(
            [StatusCode::BAD_GATEWAY, StatusCode::SERVICE_UNAVAILABLE, StatusCode::GATEWAY_TIMEOUT].contains(&status),
            "{url}: {status}"
        );
        let body = resp.bytes().unwrap().to_vec();
        let text = String::from_utf8_lossy(&body);
        assert!(!http::error_codes(&body).is_empty(), "{url}: not an OCI error body: {text}");
        assert!(
            text.contains("down.example") || text.contains(&format!("127.0.0.1:{down}")),
            "{url}: the body does not name the upstream: {text}"
        );
    }
}

#[test]
fn blob_range_is_partial_content() {
    let up = Upstream::start();
    let dir = TestDir::new("errors");
    let hello = images::hello(&up, dir.path());
    let server = Server::start(&up.url());
    let client = http::client();
    let layer = &hello.manifest().layers[0];
    let url = format!("{}/v2/library/hello/blobs/{}?ns=docker.io", server.url(), layer.digest);
    let full = http::get_verified(&client, &url, &layer.digest);

    for (range, start, end) in [("bytes=0-99", 0usize, 99usize), ("bytes=1000-1099", 1000, 1099)] {
        let resp = client.get(&url).header("Range", range).send().unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(http::header(&resp, "Content-Range"), format!("bytes {start}-{end}/{}", layer.size), "{range}");
        assert_eq!(http::header(&resp, "Content-Length"), "100", "{range}");
        let body = resp.bytes().unwrap();
        assert_eq!(body.as_ref(), &full[start..=end], "{range}");
    }
}

#[test]
fn accept_headers_are_honoured_across_lines() {
    let up = Upstream::start();
    let dir = TestDir::new("accept");
    let image = images::hello(&up, dir.path());
    let server = Server::start(&up.url());
    let client = http::client();
    let url = format!("{}/v2/library/hello/manifests/latest?ns=docker.io", server.url());
    // The manifest is OCI: a client that accepts only Docker schema2 is told it is unknown in a type it accepts.
    let resp = client
        .get(&url)
        .header("Accept", "application/vnd.docker.distribution.manifest.v2+json")
        .send()
        .expect("GET with a narrow Accept");
    let text = assert_oci_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", "narrow Accept");
    assert!(text.contains("application/vnd.oci.image.manifest.v1+json"), "message names the type: {text}");
    // Several Accept lines count together (skopeo sends six).
    let resp = client
        .get(&url)
        .header("Accept", "application/vnd.docker.distribution.manifest.v2+json")
        .header("Accept", "application/vnd.oci.image.manifest.v1+json; q=0.9")
        .send()
        .expect("GET with two Accept lines");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(http::header(&resp, "Content-Type"), "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(resp.bytes().expect("body").to_vec(), image.bytes);
    // reqwest sends `Accept: */*`: anything goes. Responses are never content-encoded, whatever the client offers.
    let resp = client.get(&url).header("Accept-Encoding", "gzip, zstd").send().expect("GET with */*");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(http::header(&resp, "Content-Encoding").is_empty(), "no content encoding");
}

#[test]
fn an_unreadable_x_registry_header_is_name_invalid_not_ignored() {
    // The header names the registry before `?ns=`; one that is not visible ASCII is refused, not skipped in favour
    // of `?ns=docker.io`, which would fetch from a registry the client did not name.
    let up = Upstream::start();
    let dir = TestDir::new("x-registry");
    let hello = images::hello(&up, dir.path());
    let server = Server::start(&up.url());
    let client = http::client();
    let url = format!("{}/v2/{}/manifests/{}?ns=docker.io", server.url(), hello.repo, hello.tag);
    up.settle_log();
    let baseline = up.access_log().len();
    for value in [&b"docker.io\xff"[..], b"\xc3\xa9xample.com", b"quay.io\x80"] {
        let header = reqwest::header::HeaderValue::from_bytes(value).expect("an obs-text header value");
        let resp = client
            .get(&url)
            .header("Accept", http::ACCEPT_ALL_MANIFESTS)
            .header("X-Registry", header)
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e:#}"));
        let text = assert_oci_error(resp, StatusCode::BAD_REQUEST, "NAME_INVALID", &format!("X-Registry {value:?}"));
        assert!(text.contains("X-Registry"), "the message names the header: {text}");
    }
    up.settle_log();
    let fetched: Vec<_> =
        up.access_log().into_iter().skip(baseline).filter(|e| !e.target.starts_with("/v2/?settle")).collect();
    assert!(fetched.is_empty(), "nothing was fetched: {fetched:#?}");
    // A readable header still works.
    let resp = client.get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).header("X-Registry", "docker.io").send();
    assert_eq!(resp.expect("GET with X-Registry").status(), StatusCode::OK);
}
