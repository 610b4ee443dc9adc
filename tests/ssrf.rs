//! The SSRF guard: a client names the upstream (`?ns=`, or the first path
//! segment), so it must not be able to steer our server into private
//! networks. An unlisted private namespace is refused with 403 DENIED under
//! `upstreamPolicy: public` (the default) and `listed`, without so much as a
//! TCP connect to it; under `any` it is dialled, and a real registry there can
//! be pulled from.

mod common;

use std::time::Duration;

use common::certs;
use common::containerd::Containerd;
use common::http::{self, StatusCode};
use common::images;
use common::server::{Server, ServerConfig};
use common::stub_http::CountingListener;
use common::upstream::{Upstream, UpstreamOptions};
use common::{sha256_digest, wait_for, TestDir};

/// Our server with one listed registry (docker.io, pointing at a closed
/// port: it must not matter) and this policy (`None`: the default).
fn server(policy: Option<&str>) -> Server {
    let mut config = ServerConfig::for_upstream(&format!("http://127.0.0.1:{}", common::ports::closed_port()));
    if let Some(p) = policy {
        config = config.extra(&format!("upstreamPolicy: {p}"));
    }
    Server::start_with(config)
}

/// Requests naming `ns` as the namespace, in every form a client can use.
fn urls(server: &Server, ns: &str) -> Vec<String> {
    let s = server.url();
    let digest = sha256_digest(b"ssrf");
    vec![
        format!("{s}/v2/library/x/manifests/latest?ns={ns}"),
        format!("{s}/v2/library/x/manifests/{digest}?ns={ns}"),
        format!("{s}/v2/library/x/blobs/{digest}?ns={ns}"),
        // skopeo-style: the namespace is the first path segment (here with a ':').
        format!("{s}/v2/{ns}/library/x/manifests/latest"),
        format!("{s}/v2/{ns}/library/x/blobs/{digest}"),
    ]
}

/// Every form is answered 403 DENIED (GET and HEAD).
fn assert_denied(server: &Server, ns: &str) {
    let client = http::client();
    for url in urls(server, ns) {
        let resp = client.get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().unwrap();
        let (status, codes, body) = http::oci_error(resp, &url);
        assert_eq!(status, StatusCode::FORBIDDEN, "GET {url}: {body}");
        assert!(codes.iter().any(|c| c == "DENIED"), "GET {url}: {body}");
        let resp = client.head(&url).send().unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "HEAD {url}");
    }
}

fn assert_denied_without_connecting(policy: Option<&str>) {
    let target = CountingListener::start();
    let server = server(policy);
    for ns in [format!("127.0.0.1:{}", target.port()), format!("localhost:{}", target.port())] {
        assert_denied(&server, &ns);
    }
    // Connections are counted as they are accepted; give a stray one a moment to show up.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(target.connections(), 0, "our server connected to the unlisted namespace");
}

#[test]
fn an_unlisted_loopback_namespace_is_denied_under_the_default_policy_without_a_connection() {
    assert_denied_without_connecting(None);
}

#[test]
fn an_unlisted_loopback_namespace_is_denied_under_public_without_a_connection() {
    assert_denied_without_connecting(Some("public"));
}

#[test]
fn an_unlisted_namespace_is_denied_under_listed_without_a_connection() {
    assert_denied_without_connecting(Some("listed"));
}

#[test]
fn cloud_metadata_and_private_addresses_are_denied_under_public() {
    let server = server(Some("public"));
    for ns in ["169.254.169.254", "169.254.169.254:80", "10.0.0.1:5000", "192.168.1.1", "[::1]:5000"] {
        assert_denied(&server, ns);
    }
}

#[test]
fn under_any_an_unlisted_namespace_is_dialled() {
    let target = CountingListener::start();
    let server = server(Some("any"));
    let url = format!("{}/v2/library/x/manifests/latest?ns=127.0.0.1:{}", server.url(), target.port());
    let resp = http::client().get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().unwrap();
    let (status, _, body) = http::oci_error(resp, &url);
    assert_ne!(status, StatusCode::FORBIDDEN, "not refused by the policy: {body}");
    assert!(target.connections() >= 1, "our server dialled the namespace ({status}: {body})");
}

#[test]
fn under_any_ctr_pulls_from_an_unlisted_registry() {
    // An unlisted namespace is dialled over HTTPS, trusting the system roots: the registry's CA is made the
    // system's through SSL_CERT_FILE in our server's environment.
    let dir = TestDir::new("ssrf");
    let certs = certs::generate(&dir.subdir("certs"));
    let up = Upstream::start_with(UpstreamOptions { tls: Some(certs.server.clone()), ..Default::default() });
    let hello = images::hello(&up, dir.path());
    let config = ServerConfig::for_upstream(&format!("http://127.0.0.1:{}", common::ports::closed_port()))
        .extra("upstreamPolicy: any")
        .env("SSL_CERT_FILE", &certs.ca.display().to_string());
    let server = Server::start_with(config);
    let ctr = Containerd::start();
    ctr.set_mirror(&server.url());

    // ctr sends ?ns=127.0.0.1:PORT to the mirror.
    let reference = format!("{}/{}:{}", up.host(), hello.repo, hello.tag);
    ctr.pull(&reference);
    assert_eq!(ctr.image_digest(&reference), Some(hello.digest.clone()));
    for b in hello.blobs() {
        let path = format!("/v2/{}/blobs/{}", hello.repo, b.digest);
        wait_for(&format!("GET {path} in the upstream's access log"), Duration::from_secs(10), || {
            (up.access_log_count("GET", &path) == 1).then_some(())
        });
    }
}
