//! How our server talks HTTP to upstreams, with in-process stub upstreams
//! for what a real registry cannot do: redirects to another host (credentials
//! dropped, `Range` kept, unlisted private targets refused), 429 and 503
//! answers retried (honouring `Retry-After`), persistent 5xx given up after a
//! few retries, and `maxConcurrent` capping simultaneous fetches. And, against
//! a real docker-registry: a tag whose digest is already cached is resolved
//! with a HEAD and served without any manifest GET upstream.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::http::{self, StatusCode};
use common::images::{self, Format};
use common::server::{Server, ServerConfig};
use common::stub_http::{serve_bytes, CountingListener, Reply, StubImage, StubServer};
use common::upstream::Upstream;
use common::{sha256_digest, skopeo, TestDir};

const USER: &str = "e2e-redirect-user";
const PASSWORD: &str = "e2e-redirect-password";

fn blob_url(server: &Server, repo: &str, digest: &str) -> String {
    format!("{}/v2/{repo}/blobs/{digest}?ns=docker.io", server.url())
}

/// Pull `image` through our server the way containerd does: HEAD the tag,
/// GET the manifest by digest, GET every blob, all checked against digests.
fn pull(server: &Server, image: &StubImage, blobs: &[&str]) {
    let client = http::client();
    let url = format!("{}/v2/{}/manifests/{}?ns=docker.io", server.url(), image.repo, image.tag);
    let head = client.head(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().unwrap();
    assert_eq!(head.status(), StatusCode::OK, "HEAD {url}");
    assert_eq!(http::header(&head, "Docker-Content-Digest"), image.manifest_digest);
    let url = format!("{}/v2/{}/manifests/{}?ns=docker.io", server.url(), image.repo, image.manifest_digest);
    http::get_verified(&client, &url, &image.manifest_digest);
    for digest in blobs {
        http::get_verified(&client, &blob_url(server, &image.repo, digest), digest);
    }
}

/// Registry A demands basic credentials and redirects its layers' GETs to B
/// (another host:port, listed as a registry of its own so the policy allows
/// it), and one more digest to C, an unlisted loopback port nobody may dial.
struct Redirects {
    image: Arc<StubImage>,
    a: StubServer,
    b: StubServer,
    c: CountingListener,
    /// The digest A redirects to C.
    forbidden: String,
    server: Server,
}

fn redirects() -> Redirects {
    let image = Arc::new(StubImage::new("library/redir", "1", &[200_000, 300_000, 100_000]));
    let storage = image.clone();
    let b = StubServer::start(move |req| match req.path().strip_prefix("/storage/") {
        Some(digest) => match storage.blob(digest) {
            Some(bytes) => serve_bytes(req, bytes, digest),
            None => Reply::status(404),
        },
        None => Reply::status(404),
    });
    let c = CountingListener::start();
    let forbidden = sha256_digest(b"a blob that lives on an unlisted host");
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")));
    let (content, b_url, c_port, to_c) = (image.clone(), b.url(), c.port(), forbidden.clone());
    let a = StubServer::start(move |req| {
        if req.header("authorization") != Some(expected.as_str()) {
            return Reply::error(401, "UNAUTHORIZED").header("WWW-Authenticate", "Basic realm=\"e2e-a\"");
        }
        match content.blob_requested(req) {
            Some(d) if d == to_c => Reply::status(307)
                .header("Location", &format!("http://127.0.0.1:{c_port}/storage/{d}"))
                .body("text/plain", b"see elsewhere".to_vec()),
            Some(d) if content.layers.iter().any(|(l, _)| *l == d) => {
                Reply::status(307).header("Location", &format!("{b_url}/storage/{d}?signature=e2e"))
            }
            _ => content.serve(req),
        }
    });
    let server = Server::start_with(
        ServerConfig::default()
            .registry_with("docker.io", &a.url(), &format!("auth:\n  user: {USER}\n  password: {PASSWORD}\n"))
            .registry(&b.host(), &b.url()),
    );
    Redirects { image, a, b, c, forbidden, server }
}

#[test]
fn redirects_are_followed_without_credentials_and_with_range() {
    let Redirects { image, a, b, server, .. } = redirects();

    pull(&server, &image, &[&image.config_digest, image.layer_digest(0), image.layer_digest(1)]);

    // A Range request for a blob not fetched yet, through the redirect.
    let digest = image.layer_digest(2);
    let resp =
        http::client().get(blob_url(&server, &image.repo, digest)).header("Range", "bytes=1000-1999").send().unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(http::header(&resp, "Content-Range"), format!("bytes 1000-1999/{}", image.layers[2].1.len()));
    assert_eq!(resp.bytes().unwrap().as_ref(), &image.layers[2].1[1000..2000], "the right slice");

    let at_b = b.requests();
    for layer in 0..3 {
        let path = format!("/storage/{}", image.layer_digest(layer));
        assert!(at_b.iter().any(|r| r.path() == path), "layer {layer} was fetched from B: {at_b:#?}");
    }
    let leaked: Vec<_> = at_b.iter().filter(|r| r.header("authorization").is_some()).collect();
    assert!(leaked.is_empty(), "B, another host, got A's credentials: {leaked:#?}");
    assert!(
        a.requests().iter().any(|r| r.path().contains("/blobs/") && r.header("authorization").is_some()),
        "A got its credentials on blob requests"
    );
}

#[test]
fn a_redirect_to_an_unlisted_private_host_is_refused_without_connecting() {
    let Redirects { image, a, c, forbidden, server, .. } = redirects();

    let url = blob_url(&server, &image.repo, &forbidden);
    let (status, _, body) = http::oci_error(http::client().get(&url).send().unwrap(), &url);
    let sent =
        a.requests().into_iter().filter(|r| r.path().ends_with(&forbidden) && r.header("authorization").is_some());
    assert_eq!(sent.count(), 1, "premise: A sent the redirect (once: a refused target is not retried)");
    // Connections are counted as they are accepted; give a stray one a moment to show up.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.connections(), 0, "our server connected to the unlisted redirect target");
    assert_eq!(status, StatusCode::BAD_GATEWAY, "the upstream misbehaved, not the client: {body}");
    assert!(body.contains("docker.io") || body.contains(&a.host()), "the message names the upstream: {body}");
}

/// A stub registry for `image` whose first GET of `image`'s first layer is
/// answered with `first` instead.
fn fails_once(image: &Arc<StubImage>, first: Reply) -> StubServer {
    let (content, first_done) = (image.clone(), AtomicUsize::new(0));
    let layer = image.layer_digest(0).to_string();
    StubServer::start(move |req| {
        if req.method == "GET"
            && content.blob_requested(req).as_deref() == Some(layer.as_str())
            && first_done.fetch_add(1, Ordering::SeqCst) == 0
        {
            return first.clone();
        }
        content.serve(req)
    })
}

#[test]
fn a_429_is_retried_after_retry_after() {
    let image = Arc::new(StubImage::new("library/busy", "1", &[50_000]));
    let stub = fails_once(&image, Reply::error(429, "TOOMANYREQUESTS").header("Retry-After", "1"));
    let server = Server::start(&stub.url());

    let digest = image.layer_digest(0);
    let t0 = Instant::now();
    http::get_verified(&http::client(), &blob_url(&server, &image.repo, digest), digest);
    assert!(t0.elapsed() >= Duration::from_secs(1), "waited Retry-After: {:?}", t0.elapsed());
    assert_eq!(stub.count("GET", &format!("/blobs/{digest}")), 2, "the 429 and the retry");
}

#[test]
fn a_503_is_retried() {
    let image = Arc::new(StubImage::new("library/flaky", "1", &[50_000]));
    let stub = fails_once(&image, Reply::error(503, "UNAVAILABLE"));
    let server = Server::start(&stub.url());

    let digest = image.layer_digest(0);
    http::get_verified(&http::client(), &blob_url(&server, &image.repo, digest), digest);
    assert_eq!(stub.count("GET", &format!("/blobs/{digest}")), 2, "the 503 and the retry");
}

#[test]
fn a_persistent_500_is_given_up_after_a_few_retries() {
    let image = Arc::new(StubImage::new("library/broken", "1", &[50_000]));
    let content = image.clone();
    let stub = StubServer::start(move |req| {
        if content.blob_requested(req).is_some() {
            Reply::error(500, "UNKNOWN")
        } else {
            content.serve(req)
        }
    });
    let server = Server::start(&stub.url());

    let digest = image.layer_digest(0);
    let url = blob_url(&server, &image.repo, digest);
    let (status, _, body) = http::oci_error(http::client().get(&url).send().unwrap(), &url);
    assert!(status == StatusCode::BAD_GATEWAY || status == StatusCode::SERVICE_UNAVAILABLE, "{status}: {body}");
    let tries = stub.count("GET", &format!("/blobs/{digest}"));
    assert!((2..=4).contains(&tries), "one try and up to 3 retries, got {tries}");
}

#[test]
fn max_concurrent_caps_simultaneous_upstream_fetches() {
    const BLOBS: usize = 8;
    const HOLD: Duration = Duration::from_millis(300);
    let image = Arc::new(StubImage::new("library/wide", "1", &[10_000; BLOBS]));
    let content = image.clone();
    let stub = StubServer::start(move |req| {
        let reply = content.serve(req);
        if req.method == "GET" && content.blob_requested(req).is_some() {
            reply.hold(HOLD)
        } else {
            reply
        }
    });
    let server =
        Server::start_with(ServerConfig::default().registry_with("docker.io", &stub.url(), "maxConcurrent: 2\n"));

    let t0 = Instant::now();
    http::get_all_verified_at_once(
        (0..BLOBS)
            .map(|i| {
                let digest = image.layer_digest(i).to_string();
                (blob_url(&server, &image.repo, &digest), digest)
            })
            .collect(),
    );
    let elapsed = t0.elapsed();
    let max = stub.max_blob_gets_in_flight();
    assert!(max <= 2, "at most 2 blob fetches at a time upstream, saw {max}");
    assert_eq!(max, 2, "premise: the fetches did overlap");
    assert!(elapsed >= HOLD * (BLOBS as u32 / 2), "8 fetches of 300 ms, 2 at a time, took {elapsed:?}");
}

#[test]
fn a_tag_whose_digest_is_cached_is_resolved_with_head_only() {
    let up = Upstream::start();
    let dir = TestDir::new("upstream-http");
    let layout = images::image_layout(&dir.path().join("layout"), "src", &[60_000, 20_000]);
    images::push(layout.dir(), "src", &up, "library/tags:a", Format::Oci);
    images::push(layout.dir(), "src", &up, "library/tags:b", Format::Oci);
    let a = images::read_back(&up.push_url(), "library/tags", "a");
    let b = images::read_back(&up.push_url(), "library/tags", "b");
    assert_eq!(a.digest, b.digest, "premise: one manifest under two tags");
    let server = Server::start(&up.url());

    skopeo::pull_verified(&server.url(), &a, &a.reference(), &dir.path().join("skopeo-a"));
    up.settle_log();
    let baseline = up.access_log().len();

    let (digest, _, _) = images::get_manifest(&server.url(), "docker.io/library/tags", "b");
    assert_eq!(digest, a.digest);
    let head = http::client()
        .head(format!("{}/v2/library/tags/manifests/b?ns=docker.io", server.url()))
        .header("Accept", http::ACCEPT_ALL_MANIFESTS)
        .send()
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(http::header(&head, "Docker-Content-Digest"), a.digest);

    up.settle_log();
    let log: Vec<_> = up.access_log().into_iter().skip(baseline).filter(|e| !e.target.contains("settle=")).collect();
    let heads = log.iter().filter(|e| e.method == "HEAD" && e.path() == "/v2/library/tags/manifests/b").count();
    assert!(heads >= 1, "tag b was resolved upstream with a HEAD: {log:#?}");
    let gets: Vec<_> = log.iter().filter(|e| e.method == "GET").collect();
    assert!(gets.is_empty(), "no GET upstream (neither /manifests/b nor the digest nor a blob): {gets:#?}");
}
