//! Bearer-token auth toward the upstream: docker-registry with `auth.token`
//! trusting the test's token server (in-process, signing RS256 JWTs with an
//! `x5c` chain). Our server must answer the registry's 401 challenge by
//! fetching a token from the realm (anonymously, or with basic credentials
//! when configured), reuse one token per scope for every request, share one
//! fetch among concurrent requests, replace a token the registry refuses or
//! that has expired, fail with a clear 502 when the token server refuses the
//! credentials, and never log a token or a password.

mod common;

use std::time::Duration;

use base64::Engine;
use common::containerd::Containerd;
use common::http::{self, StatusCode};
use common::images::{self, Image};
use common::server::{Server, ServerConfig};
use common::stub_http::{CountingListener, Reply, StubServer};
use common::token_server::{TokenServer, TokenServerOptions, SERVICE};
use common::upstream::{TokenAuth, Upstream, UpstreamOptions};
use common::{assert_no_secrets, basic_secrets, cached_files, skopeo, TestDir};

const USER: &str = "e2e-token-user";

/// A token server, and a registry with token auth that trusts it.
struct Setup {
    tokens: TokenServer,
    up: Upstream,
    dir: TestDir,
}

fn setup(opts: TokenServerOptions) -> Setup {
    let dir = TestDir::new("upstream-token");
    let tokens = TokenServer::start(&dir.subdir("token-certs"), opts);
    let up = Upstream::start_with(UpstreamOptions { token: Some(tokens.registry_auth()), ..Default::default() });
    Setup { tokens, up, dir }
}

fn scope(image: &Image) -> String {
    format!("repository:{}:pull", image.repo)
}

/// Our server with `docker.io` mapped to the token-auth registry, and these
/// extra keys for the entry.
fn server(s: &Setup, entry_yaml: &str) -> Server {
    Server::start_with(ServerConfig::default().registry_with("docker.io", &s.up.url(), entry_yaml))
}

fn auth_yaml(password: &str) -> String {
    format!("auth:\n  user: {USER}\n  password: \"{password}\"\n")
}

/// Everything an issued token could leak as: the whole JWT, and its claims
/// and signature segments (the header is the same for every token).
fn token_secrets(tokens: &TokenServer) -> Vec<String> {
    let mut out = Vec::new();
    for t in tokens.issued() {
        out.extend(t.split('.').skip(1).map(str::to_string));
        out.push(t);
    }
    out
}

#[test]
fn the_token_servers_jwts_are_accepted_by_docker_registry() {
    // Harness check: the challenge names our realm, and a token from it opens the repository.
    let s = setup(TokenServerOptions::default());
    let hello = images::hello(&s.up, s.dir.path());
    let client = http::client();
    let url = format!("{}/v2/{}/manifests/{}", s.up.url(), hello.repo, hello.tag);
    let resp = client.get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "the registry demands a token");
    let challenge = http::header(&resp, "WWW-Authenticate");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains(&s.tokens.realm()) && challenge.contains(&scope(&hello)), "{challenge}");

    let token_url = format!("{}?service={SERVICE}&scope={}", s.tokens.realm(), scope(&hello));
    let answer: serde_json::Value = client.get(&token_url).send().unwrap().json().unwrap();
    let token = answer["token"].as_str().expect("token");
    let resp = client
        .get(&url)
        .header("Accept", http::ACCEPT_ALL_MANIFESTS)
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the registry accepts the token: {}", s.up.log_tail());
    assert_eq!(http::header(&resp, "Docker-Content-Digest"), hello.digest);
}

#[test]
fn anonymous_tokens_skopeo_and_ctr_pull() {
    let s = setup(TokenServerOptions::default());
    let hello = images::hello(&s.up, s.dir.path());
    let docker2 = images::docker2(&s.up, s.dir.path());
    let server = server(&s, "");

    skopeo::pull_verified(&server.url(), &hello, &hello.reference(), &s.dir.path().join("skopeo-hello"));
    let ctr = Containerd::start();
    ctr.set_mirror(&server.url());
    ctr.pull(&docker2.reference());
    assert_eq!(ctr.image_digest(&docker2.reference()), Some(docker2.digest.clone()));

    let requests = s.tokens.requests();
    assert!(s.tokens.fetches_for(&scope(&hello)) >= 1, "a token was fetched for hello: {requests:#?}");
    assert!(s.tokens.fetches_for(&scope(&docker2)) >= 1, "a token was fetched for docker2: {requests:#?}");
    for r in &requests {
        assert_eq!(r.service.as_deref(), Some(SERVICE), "the challenge's service is passed on: {r:?}");
        assert_eq!(r.authorization, None, "no credentials configured, so the token request is anonymous: {r:?}");
    }
    assert_no_secrets(&server.logs(), &token_secrets(&s.tokens), "our server's log");
}

#[test]
fn basic_credentials_at_the_token_endpoint() {
    let password = format!("tok-pass-{:016x}", rand::random::<u64>());
    let s = setup(TokenServerOptions { credentials: Some((USER.to_string(), password.clone())), ..Default::default() });
    let hello = images::hello(&s.up, s.dir.path());
    let multi = images::multi(&s.up, s.dir.path());
    let server = server(&s, &auth_yaml(&password));

    skopeo::pull_verified(&server.url(), &hello, &hello.reference(), &s.dir.path().join("skopeo-hello"));
    let ctr = Containerd::start();
    ctr.set_mirror(&server.url());
    ctr.pull(&multi.reference());
    assert_eq!(ctr.image_digest(&multi.reference()), Some(multi.digest.clone()));

    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}")));
    let requests = s.tokens.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.authorization.as_deref(), Some(expected.as_str()), "token request with the configured user");
    }
    let mut secrets = basic_secrets(USER, &password);
    secrets.extend(token_secrets(&s.tokens));
    assert_no_secrets(&server.logs(), &secrets, "our server's log");
}

#[test]
fn one_token_serves_a_twenty_layer_pull() {
    let s = setup(TokenServerOptions::default());
    let sizes = [20_000; 20];
    let many = images::custom(&s.up, s.dir.path(), "library/many:1", &sizes);
    assert_eq!(many.manifest().layers.len(), 20);
    let server = server(&s, "");

    skopeo::pull_verified(&server.url(), &many, &many.reference(), &s.dir.path().join("skopeo-many"));
    assert_eq!(
        s.tokens.fetches(),
        1,
        "one token for the manifest, the config and 20 layers (one scope): {:#?}",
        s.tokens.requests()
    );
    assert_eq!(s.tokens.fetches_for(&scope(&many)), 1);
}

#[test]
fn concurrent_requests_share_one_token_fetch() {
    // The token server holds each answer, so requests arriving together all wait on the same fetch.
    let s = setup(TokenServerOptions { hold: Duration::from_millis(700), ..Default::default() });
    let image = images::custom(&s.up, s.dir.path(), "library/eight:1", &[30_000; 8]);
    let server = server(&s, "");

    const CLIENTS: usize = 8;
    http::get_all_verified_at_once(
        image.manifest().layers[..CLIENTS]
            .iter()
            .map(|layer| {
                (
                    format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), image.repo, layer.digest),
                    layer.digest.clone(),
                )
            })
            .collect(),
    );
    assert_eq!(
        s.tokens.fetches(),
        1,
        "{CLIENTS} concurrent blob requests, one token fetch: {:#?}",
        s.tokens.requests()
    );
}

#[test]
fn a_cached_token_the_registry_refuses_is_replaced() {
    // The first token says it lasts 300 s, but the registry (60 s leeway past `exp`) accepts it for only 4-5 s: after
    // that our server's cached token meets a 401 and must fetch a new one.
    let s = setup(TokenServerOptions { first_token_exp: Some(-55), ..Default::default() });
    let image = images::custom(&s.up, s.dir.path(), "library/refresh:1", &[10_000, 10_000]);
    let server = server(&s, "");
    let layers = &image.manifest().layers;
    let blob_url = |i: usize| format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), image.repo, layers[i].digest);

    http::get_verified(&http::client(), &blob_url(0), &layers[0].digest);
    assert_eq!(s.tokens.fetches(), 1);
    std::thread::sleep(Duration::from_millis(6500));
    http::get_verified(&http::client(), &blob_url(1), &layers[1].digest);
    assert_eq!(s.tokens.fetches(), 2, "the refused token was replaced: {:#?}", s.tokens.requests());
    let refused = s.up.access_log().into_iter().filter(|e| e.path().ends_with(&layers[1].digest)).collect::<Vec<_>>();
    assert!(refused.iter().any(|e| e.status == 401), "premise: the registry refused the cached token: {refused:#?}");
}

#[test]
fn a_token_is_fetched_again_after_it_expires() {
    let s = setup(TokenServerOptions { expires_in: Some(2), ..Default::default() });
    let image = images::custom(&s.up, s.dir.path(), "library/expiry:1", &[10_000, 10_000]);
    let server = server(&s, "");
    let blob_url = |i: usize| {
        format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), image.repo, image.manifest().layers[i].digest)
    };

    http::get_verified(&http::client(), &blob_url(0), &image.manifest().layers[0].digest);
    assert_eq!(s.tokens.fetches(), 1);
    // expires_in is 2 s (the registry itself would accept the token for another minute).
    std::thread::sleep(Duration::from_secs(3));
    http::get_verified(&http::client(), &blob_url(1), &image.manifest().layers[1].digest);
    assert_eq!(s.tokens.fetches(), 2, "the expired token was replaced: {:#?}", s.tokens.requests());
}

#[test]
fn refused_token_credentials_fail_cleanly() {
    let right = format!("right-{:016x}", rand::random::<u64>());
    let wrong = format!("wrong-{:016x}", rand::random::<u64>());
    let s = setup(TokenServerOptions { credentials: Some((USER.to_string(), right.clone())), ..Default::default() });
    let hello = images::hello(&s.up, s.dir.path());
    let server = server(&s, &auth_yaml(&wrong));

    let url = format!("{}/v2/{}/manifests/{}?ns=docker.io", server.url(), hello.repo, hello.tag);
    let resp = http::client().get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().unwrap();
    let (status, codes, body) = http::oci_error(resp, &url);
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("docker.io") || body.contains(&s.up.host()), "the message names the upstream: {body}");
    assert!(!codes.is_empty());
    let url = format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), hello.repo, hello.manifest().layers[0].digest);
    let resp = http::client().get(&url).send().unwrap();
    let (status, _, blob_body) = http::oci_error(resp, &url);
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{blob_body}");

    let err = skopeo::try_copy_from(&server.url(), &hello.reference(), &s.dir.path().join("skopeo"), false)
        .expect_err("skopeo must fail");
    assert!(s.tokens.fetches() >= 1, "the token server was asked");
    assert!(s.tokens.issued().is_empty(), "and issued nothing");
    assert_eq!(cached_files(server.cache_dir()), Vec::<std::path::PathBuf>::new(), "nothing cached");
    let secrets = basic_secrets(USER, &wrong);
    assert_no_secrets(&body, &secrets, "the error body");
    assert_no_secrets(&blob_body, &secrets, "the error body");
    assert_no_secrets(&err, &secrets, "skopeo's output");
    assert_no_secrets(&server.logs(), &secrets, "our server's log");
}

#[test]
fn a_failing_token_endpoint_is_named_in_the_error() {
    // Three ways a realm fails: nothing listens, the connection is closed without an answer, an error status. Each
    // time the client is told that the registry's token endpoint failed, and which one.
    let dir = TestDir::new("token-endpoint-down");
    let tokens = TokenServer::start(&dir.subdir("token-certs"), TokenServerOptions::default());
    let hangs_up = CountingListener::start();
    let failing = StubServer::start(|_| Reply::error(500, "UNKNOWN"));
    let realms = [
        (format!("http://127.0.0.1:{}/token", common::ports::closed_port()), "cannot connect"),
        (format!("http://127.0.0.1:{}/token", hangs_up.port()), ""),
        (format!("{}/token", failing.url()), "HTTP 500"),
    ];
    for (realm, detail) in realms {
        let auth = TokenAuth { realm: realm.clone(), ..tokens.registry_auth() };
        let up = Upstream::start_with(UpstreamOptions { token: Some(auth), ..Default::default() });
        let hello = images::hello(&up, dir.path());
        let server = Server::start_with(ServerConfig::default().registry("docker.io", &up.url()));
        let layer = &hello.manifest().layers[0].digest;
        for url in [
            format!("{}/v2/{}/manifests/{}?ns=docker.io", server.url(), hello.repo, hello.tag),
            format!("{}/v2/{}/blobs/{layer}?ns=docker.io", server.url(), hello.repo),
        ] {
            let resp = http::client().get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().unwrap();
            let (status, _, body) = http::oci_error(resp, &url);
            assert_eq!(status, StatusCode::BAD_GATEWAY, "realm {realm}: {body}");
            let named = format!("the token endpoint {realm} of upstream docker.io failed");
            assert!(body.contains(&named), "realm {realm}: the message names the token endpoint: {body}");
            assert!(body.contains(detail), "realm {realm}: the message says what failed ({detail}): {body}");
        }
    }
    assert!(hangs_up.connections() >= 1, "premise: the token request reached the listener that hangs up");
    assert!(failing.count("GET", "/token") >= 1, "premise: the token request reached the failing realm");
}
