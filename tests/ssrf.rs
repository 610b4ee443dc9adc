//! The SSRF guard: a client names the upstream (`?ns=`, or the first path
//! segment), so it must not be able to steer our server into private
//! networks. An unlisted private namespace is refused with 403 DENIED under
//! `upstreamPolicy: public` (the default) and `listed`, without so much as a
//! TCP connect to it; under `any` it is dialled, and a real registry there can
//! be pulled from. What a listed registry is trusted with (its name on its own
//! port, its endpoint, the token realm it names) never becomes a namespace of
//! its own, and a realm serves that registry's token requests only. IPv6
//! addresses that carry an IPv4 address count as that IPv4 address. Each
//! "without a connection" is counted on a listener the test owns.

mod common;

use std::time::Duration;

use common::certs;
use common::containerd::Containerd;
use common::http::{self, StatusCode};
use common::images;
use common::server::{Server, ServerConfig};
use common::stub_http::{CountingListener, Reply, StubImage, StubServer};
use common::token_server::{TokenServer, TokenServerOptions};
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

/// Connections are counted as they are accepted: give a stray one a moment to show up, then the count.
fn settled_connections(count: impl Fn() -> usize) -> usize {
    std::thread::sleep(Duration::from_millis(300));
    count()
}

fn assert_denied_without_connecting(policy: Option<&str>) {
    let target = CountingListener::start();
    let server = server(policy);
    for ns in [format!("127.0.0.1:{}", target.port()), format!("localhost:{}", target.port())] {
        assert_denied(&server, &ns);
    }
    assert_eq!(settled_connections(|| target.connections()), 0, "our server connected to the unlisted namespace");
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
    for ns in [
        "169.254.169.254",
        "169.254.169.254:80",
        "10.0.0.1:5000",
        "192.168.1.1",
        "[::1]:5000",
        "[::ffff:169.254.169.254]",
        "[64:ff9b::a9fe:a9fe]:80",
        "[2002:a00:1::]:5000",
    ] {
        assert_denied(&server, ns);
    }
}

#[test]
fn ipv6_forms_of_a_loopback_address_are_denied_without_a_connection() {
    let target = CountingListener::start();
    let server = server(None);
    let port = target.port();
    for host in [
        "[::ffff:127.0.0.1]",                     // IPv4-mapped: a dual-stack socket reaches 127.0.0.1
        "[::127.0.0.1]",                          // IPv4-compatible
        "[::ffff:0:127.0.0.1]",                   // IPv4-translated
        "[64:ff9b::127.0.0.1]",                   // NAT64, well-known prefix
        "[64:ff9b:1::7f00:1]",                    // NAT64, local-use prefix
        "[2002:7f00:1::1]",                       // 6to4
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]", // Teredo, client 127.0.0.1
    ] {
        assert_denied(&server, &format!("{host}:{port}"));
    }
    assert_eq!(settled_connections(|| target.connections()), 0, "our server connected to an IPv6 form of 127.0.0.1");
}

#[test]
fn a_listed_name_without_a_port_is_trusted_on_its_own_port_only() {
    // `localhost` is listed (https: port 443). `localhost:<port>` is another namespace, and a loopback one.
    let target = CountingListener::start();
    let server = Server::start_with(ServerConfig::default().registry_named("localhost"));
    assert_denied(&server, &format!("localhost:{}", target.port()));
    assert_denied(&server, &format!("127.0.0.1:{}", target.port()));
    assert_eq!(settled_connections(|| target.connections()), 0, "our server connected to another port of localhost");
}

#[test]
fn a_listed_registrys_endpoint_is_not_a_namespace_of_its_own() {
    // docker.io is dialled at the listener's address; naming that address as the namespace is refused.
    let target = CountingListener::start();
    let server = Server::start_with(ServerConfig::for_upstream(&format!("http://127.0.0.1:{}", target.port())));
    assert_denied(&server, &format!("127.0.0.1:{}", target.port()));
    assert_eq!(
        settled_connections(|| target.connections()),
        0,
        "our server dialled docker.io's endpoint as a namespace"
    );
}

#[test]
fn a_token_realm_named_by_a_listed_registry_does_not_become_a_namespace() {
    let dir = TestDir::new("ssrf-realm");
    let tokens = TokenServer::start(&dir.subdir("token-certs"), TokenServerOptions::default());
    let up = Upstream::start_with(UpstreamOptions { token: Some(tokens.registry_auth()), ..Default::default() });
    let hello = images::hello(&up, dir.path());
    let server = Server::start_with(ServerConfig::for_upstream(&up.url()));
    // The registry's 401 names the realm (on 127.0.0.1); the token is fetched there and the pull works.
    let fetches = tokens.fetches();
    let url = format!("{}/v2/{}/manifests/{}?ns=docker.io", server.url(), hello.repo, hello.tag);
    http::get_verified(&http::client(), &url, &hello.digest);
    assert!(tokens.fetches() > fetches, "premise: our server fetched a token from the realm");

    let before = settled_connections(|| tokens.connections());
    for ns in [format!("127.0.0.1:{}", tokens.port()), format!("localhost:{}", tokens.port())] {
        assert_denied(&server, &ns);
    }
    assert_eq!(settled_connections(|| tokens.connections()), before, "our server dialled the realm as a namespace");
}

#[test]
fn a_token_realm_is_trusted_for_its_registrys_token_requests_only() {
    // A registry whose realm is on 127.0.0.1 and whose blob requests redirect to the realm's host and port: a
    // fault a real registry does not produce, hence stubs. The token is fetched (the realm is trusted for it);
    // the redirect is refused (it is not a token request), before any connection.
    let realm = StubServer::start(|req| match req.path() {
        "/token" => Reply::json(200, &serde_json::json!({"token": "t0k3n", "expires_in": 300})),
        _ => Reply::status(200).body("application/octet-stream", b"not the blob".to_vec()),
    });
    let image = StubImage::new("library/redirected", "1", &[4096]);
    let layer = image.layer_digest(0).to_string();
    let (realm_url, realm_host) = (format!("{}/token", realm.url()), realm.url());
    let registry = StubServer::start(move |req| {
        if req.header("authorization") != Some("Bearer t0k3n") {
            return Reply::error(401, "UNAUTHORIZED")
                .header("WWW-Authenticate", &format!("Bearer realm=\"{realm_url}\",service=\"stub\""));
        }
        match image.blob_requested(req) {
            Some(digest) => Reply::status(307).header("Location", &format!("{realm_host}/blobs/{digest}")),
            None => image.serve(req),
        }
    });
    let server = Server::start_with(ServerConfig::for_upstream(&registry.url()));
    let manifest = format!("{}/v2/library/redirected/manifests/1?ns=docker.io", server.url());
    let resp = http::client().get(&manifest).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the manifest, with a token from the realm");
    assert_eq!(realm.count("GET", "/token"), 1, "premise: one token request");

    let before = settled_connections(|| realm.connections());
    let blob = format!("{}/v2/library/redirected/blobs/{layer}?ns=docker.io", server.url());
    let resp = http::client().get(&blob).send().unwrap();
    let (status, _, body) = http::oci_error(resp, &blob);
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("refused"), "the message says the redirect target was refused: {body}");
    assert!(registry.count("GET", &layer) >= 1, "premise: the registry redirected the blob");
    assert_eq!(settled_connections(|| realm.connections()), before, "the redirect reached the realm's host");
    assert_eq!(realm.count("GET", &layer), 0);
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
