//! A failing token realm fails only the pulls that need its token. A registry whose repositories name different
//! realms (`common::realm_registry`): when one repository's realm is refused, answers 5xx, answers without a token or
//! hangs, pulls of that repository fail with a clear error naming the token endpoint (within `pullTimeout`), while
//! the other repositories of the same registry (another realm, or none) still pull: a challenge learned from one
//! repository is never assumed for another, and a realm failure does not open the registry's circuit breaker. The
//! realm is asked again after a short backoff, so it is used again once it recovers, without a restart; meanwhile a
//! cached tag of the repository is served stale.

mod common;

use std::time::{Duration, Instant};

use common::http::{self, StatusCode};
use common::metrics::Scrape;
use common::ports::{closed_port, free_port};
use common::realm_registry::{pull_scope, Realm, RealmMode, RealmRegistry, RepoAuth};
use common::server::{Server, ServerConfig};
use common::stub_http::StubImage;

/// `pullTimeout` of these tests' servers.
const PULL_TIMEOUT_MS: u64 = 2_000;

struct Images {
    /// Its realm is the one that fails.
    alpha: StubImage,
    /// Its realm works.
    beta: StubImage,
    /// Needs no token.
    gamma: StubImage,
}

fn images() -> Images {
    Images {
        alpha: StubImage::new("library/alpha", "1", &[3_000]),
        beta: StubImage::new("library/beta", "1", &[4_000]),
        gamma: StubImage::new("library/gamma", "1", &[5_000]),
    }
}

/// Our server with `docker.io` served by `registry`, metrics on a port of its own, and more keys for the entry.
fn server(registry: &RealmRegistry, entry_yaml: &str) -> (Server, u16) {
    let metrics_port = free_port();
    let config = ServerConfig { pull_timeout_ms: PULL_TIMEOUT_MS, ..ServerConfig::default() }
        .registry_with("docker.io", &registry.url(), entry_yaml)
        .extra(&format!("metrics: {metrics_port}\n"));
    (Server::start_with(config), metrics_port)
}

fn manifest_url(server: &Server, image: &StubImage) -> String {
    format!("{}/v2/{}/manifests/{}?ns=docker.io", server.url(), image.repo, image.tag)
}

/// GET the image's manifest by tag: the status and the body.
fn get_manifest(server: &Server, image: &StubImage) -> (StatusCode, Vec<u8>) {
    let url = manifest_url(server, image);
    let resp = http::client().get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("GET manifest");
    let status = resp.status();
    (status, resp.bytes().expect("manifest body").to_vec())
}

/// Pull the whole image (manifest by tag, config, layers) and check every byte.
fn pull_verified(server: &Server, image: &StubImage) {
    let (status, body) = get_manifest(server, image);
    assert_eq!(status, StatusCode::OK, "{}: {}", image.repo, String::from_utf8_lossy(&body));
    assert_eq!(common::sha256_digest(&body), image.manifest_digest, "{}: the manifest", image.repo);
    let client = http::client();
    let digests = std::iter::once(image.config_digest.clone()).chain(image.layers.iter().map(|(d, _)| d.clone()));
    for digest in digests {
        let url = format!("{}/v2/{}/blobs/{digest}?ns=docker.io", server.url(), image.repo);
        http::get_verified(&client, &url, &digest);
    }
}

/// A pull of the image's manifest that must fail because its token endpoint `realm` fails: a 502 or 503 with an OCI
/// error that names the token endpoint. The body.
fn pull_fails_at_the_realm(server: &Server, image: &StubImage, realm: &str) -> String {
    let url = manifest_url(server, image);
    let resp = http::client().get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("GET manifest");
    let (status, codes, body) = http::oci_error(resp, &url);
    assert!(
        status == StatusCode::BAD_GATEWAY || status == StatusCode::SERVICE_UNAVAILABLE,
        "{}: an upstream failure, got {status}: {body}",
        image.repo
    );
    assert_eq!(codes, ["UNAVAILABLE"], "{body}");
    assert!(body.contains(&format!("the token endpoint {realm} of upstream docker.io failed")), "{body}");
    body
}

fn metrics(port: u16) -> Scrape {
    Scrape::fetch(&format!("http://127.0.0.1:{port}/metrics"))
}

#[test]
fn a_failing_realm_fails_only_the_pulls_that_need_it() {
    // Every way a realm fails: nothing listens, an error status, no token in the answer, no answer at all.
    let closed = format!("http://127.0.0.1:{}/token", closed_port());
    let modes = [None, Some(RealmMode::Fails(500)), Some(RealmMode::NoToken), Some(RealmMode::Hangs)];
    for mode in modes {
        let failing = mode.map(|m| Realm::start("alpha", m, 300));
        let working = Realm::start("beta", RealmMode::Works, 300);
        let alpha_auth = match &failing {
            Some(realm) => realm.auth(),
            None => RepoAuth::Bearer { realm: closed.clone(), token: "tok-alpha".into() },
        };
        let realm_url = failing.as_ref().map_or(closed.clone(), Realm::url);
        let Images { alpha, beta, gamma } = images();
        let registry = RealmRegistry::start(vec![
            (alpha.clone(), alpha_auth),
            (beta.clone(), working.auth()),
            (gamma.clone(), RepoAuth::Open),
        ]);
        let (server, metrics_port) = server(&registry, "");
        let what = format!("realm {mode:?} at {realm_url}");

        let start = Instant::now();
        let body = pull_fails_at_the_realm(&server, &alpha, &realm_url);
        let took = start.elapsed();
        eprintln!("{what}: the pull of alpha failed after {took:?}");
        assert!(
            took < Duration::from_millis(PULL_TIMEOUT_MS) + Duration::from_secs(5),
            "{what}: the failing pull ends within pullTimeout, took {took:?}: {body}"
        );

        // The registry's other repositories: one whose realm works, one that needs no token.
        pull_verified(&server, &beta);
        pull_verified(&server, &gamma);
        assert!(registry.count("GET", "/library/beta/manifests/1") >= 1, "{what}: the registry was asked for beta");
        // The repository whose realm fails still fails, and beta still pulls after it.
        pull_fails_at_the_realm(&server, &alpha, &realm_url);
        let (status, _) = get_manifest(&server, &beta);
        assert_eq!(status, StatusCode::OK, "{what}: beta after alpha failed again");

        if let Some(realm) = &failing {
            assert!(realm.asked_for(&pull_scope(&alpha.repo)) >= 1, "{what}: premise: alpha's realm was asked");
            let others: Vec<String> = realm.scopes().into_iter().filter(|s| *s != pull_scope(&alpha.repo)).collect();
            assert!(others.is_empty(), "{what}: alpha's realm is asked for alpha's scope only: {others:?}");
        }
        assert_eq!(working.scopes(), [pull_scope(&beta.repo)], "{what}: one token for beta, reused");
        let scrape = metrics(metrics_port);
        assert_eq!(
            scrape.sum("ociregistry_upstream_breaker_state", &[("ns", "docker.io")]),
            0.0,
            "{what}: a failing realm does not open the registry's breaker"
        );
    }
}

#[test]
fn a_realm_that_recovers_is_used_again_without_a_restart() {
    let realm = Realm::start("alpha", RealmMode::Fails(503), 300);
    let Images { alpha, gamma, .. } = images();
    let registry = RealmRegistry::start(vec![(alpha.clone(), realm.auth()), (gamma.clone(), RepoAuth::Open)]);
    let (server, _) = server(&registry, "");

    // A client that retries at once, as kubelet does: the realm is held back by its backoff, not asked each time.
    const PULLS: usize = 6;
    for _ in 0..PULLS {
        pull_fails_at_the_realm(&server, &alpha, &realm.url());
    }
    let asked = realm.asked_for(&pull_scope(&alpha.repo));
    assert!((1..PULLS).contains(&asked), "{PULLS} failing pulls in a row asked the failing realm {asked} times");

    realm.set(RealmMode::Works);
    // The realm was asked at most a few times, so its backoff is a few seconds at most (it starts at 1 s); the
    // registry's breaker, had it counted the realm's failures, would refuse for 30 s.
    let recovered = Instant::now();
    let deadline = recovered + Duration::from_secs(15);
    let mut last = String::new();
    loop {
        let (status, body) = get_manifest(&server, &alpha);
        if status == StatusCode::OK {
            eprintln!(
                "{PULLS} failing pulls asked the realm {asked} times; alpha pulls again {:?} after it recovered",
                recovered.elapsed()
            );
            break;
        }
        last = format!("{status}: {}", String::from_utf8_lossy(&body));
        assert!(Instant::now() < deadline, "the recovered realm is not used again; last answer {last}");
        std::thread::sleep(Duration::from_millis(200));
    }
    pull_verified(&server, &alpha);
    pull_verified(&server, &gamma);
    assert!(realm.asked_for(&pull_scope(&alpha.repo)) > asked, "the realm was asked again (last failure: {last})");
}

#[test]
fn a_cached_tag_is_served_stale_while_its_realm_fails() {
    // Tokens that say they last 1 s (our server uses them for half of that), and every pull of a tag checks it.
    let realm = Realm::start("alpha", RealmMode::Works, 1);
    let Images { alpha, gamma, .. } = images();
    let registry = RealmRegistry::start(vec![(alpha.clone(), realm.auth()), (gamma.clone(), RepoAuth::Open)]);
    let (server, metrics_port) = server(&registry, "tagTtl: 0s\n");
    pull_verified(&server, &alpha);

    realm.set(RealmMode::Fails(500));
    std::thread::sleep(Duration::from_millis(1200));
    let before = realm.asked_for(&pull_scope(&alpha.repo));
    for i in 0..4 {
        let (status, body) = get_manifest(&server, &alpha);
        assert_eq!(status, StatusCode::OK, "pull {i} of the cached tag: {}", String::from_utf8_lossy(&body));
        assert_eq!(common::sha256_digest(&body), alpha.manifest_digest, "the cached manifest");
    }
    pull_verified(&server, &alpha);
    assert!(realm.asked_for(&pull_scope(&alpha.repo)) > before, "premise: the check needed the failing realm");
    // The registry itself is fine: content that needs no token still comes from it.
    pull_verified(&server, &gamma);
    let scrape = metrics(metrics_port);
    assert!(
        scrape.sum_or_zero("ociregistry_stale_serves_total", &[("ns", "docker.io"), ("reason", "auth")]) >= 4.0,
        "served stale, for an auth reason (not because a breaker opened)"
    );
}
