//! Allow and deny lists per registry (issue 23, item 4), against a real `docker-registry`: an allowed image pulls
//! with skopeo; a denied one, and one no allow pattern matches, get `403 DENIED` on every route that names the
//! repository (manifest GET and HEAD, by tag and by digest, blob GET and HEAD, tags list, referrers), in Docker Hub's
//! short and canonical spellings, with no request reaching the upstream (its own access log and the mirror's
//! `ociregistry_upstream_fetches_total`) and each refusal counted in `ociregistry_denied_total`. Content cached while
//! allowed is refused once a restart brings a deny. `load` refuses a denied image of a list, naming the rule.

mod common;

use common::commands::{holds, ociregistry};
use common::http::{self, StatusCode};
use common::images::{self, Image};
use common::metrics::Scrape;
use common::ports::free_port;
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::{skopeo, TestDir};

const DENIED_TOTAL: &str = "ociregistry_denied_total";
const HUB: [(&str, &str); 2] = [("ns", "docker.io"), ("reason", "repository")];
const UNLISTED: [(&str, &str); 2] = [("ns", "(unlisted)"), ("reason", "namespace")];

/// Requests our server sent to the upstream for a repository path containing `repo` (`/library/nginx/`).
fn upstream_requests_for(up: &Upstream, repo: &str) -> usize {
    up.settle_log();
    up.access_log().iter().filter(|e| e.agent.starts_with("ociregistry") && e.path().contains(repo)).count()
}

fn scrape(metrics_port: u16) -> Scrape {
    Scrape::fetch(&format!("http://127.0.0.1:{metrics_port}/metrics"))
}

/// Every response upstream the mirror counted, of any kind.
fn upstream_fetches(metrics_port: u16) -> f64 {
    scrape(metrics_port).sum_or_zero("ociregistry_upstream_fetches_total", &[])
}

/// `GET` (or `HEAD`) `path` on the server: 403 with the OCI `DENIED` error naming the repository (a HEAD: the
/// status alone).
fn assert_denied(server: &Server, method: &str, path: &str, repo: &str) {
    let url = format!("{}{path}", server.url());
    let client = http::client();
    let request = if method == "HEAD" { client.head(&url) } else { client.get(&url) };
    let resp = request.header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("request");
    if method == "HEAD" {
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "HEAD {path}");
        return;
    }
    let (status, codes, text) = http::oci_error(resp, &format!("GET {path}"));
    assert_eq!(status, StatusCode::FORBIDDEN, "GET {path}: {text}");
    assert_eq!(codes, ["DENIED"], "GET {path}: {text}");
    assert!(text.contains(repo) && text.contains("refused by this mirror's configuration"), "GET {path}: {text}");
}

/// Every route that names `image`'s repository, as `name` (how the client spells it, after `/v2/`), refused; returns
/// how many requests were made.
fn assert_every_route_denied(server: &Server, image: &Image, name: &str, canonical: &str) -> usize {
    let manifest = image.manifest();
    let layer = &manifest.layers[0].digest;
    let paths = [
        ("GET", format!("/v2/{name}/manifests/{}", image.tag)),
        ("HEAD", format!("/v2/{name}/manifests/{}", image.tag)),
        ("GET", format!("/v2/{name}/manifests/{}", image.digest)),
        ("HEAD", format!("/v2/{name}/manifests/{}", image.digest)),
        ("GET", format!("/v2/{name}/blobs/{layer}")),
        ("HEAD", format!("/v2/{name}/blobs/{layer}")),
        ("GET", format!("/v2/{name}/blobs/{}", manifest.config.digest)),
        ("GET", format!("/v2/{name}/tags/list")),
        ("GET", format!("/v2/{name}/referrers/{}", image.digest)),
    ];
    for (method, path) in &paths {
        assert_denied(server, method, path, canonical);
    }
    paths.len()
}

#[test]
fn allowed_images_pull_and_refused_ones_get_403_denied_without_asking_the_upstream() {
    let up = Upstream::start();
    let dir = TestDir::new("access-lists");
    let app = images::custom(&up, &dir.subdir("app"), "library/app:1", &[3_000]);
    let nginx = images::custom(&up, &dir.subdir("nginx"), "library/nginx:1", &[3_000]);
    let tool = images::custom(&up, &dir.subdir("tool"), "other/tool:1", &[3_000]);
    let metrics_port = free_port();
    let config = ServerConfig::default()
        .registry_with("docker.io", &up.url(), "allow: [library/*]\ndeny: [library/nginx]\n")
        .extra(&format!("metrics: {metrics_port}"));
    let server = Server::start_with(config);
    assert!(server.log_tail().contains("(allow library/*) (deny library/nginx)"), "{}", server.log_tail());
    assert_eq!(scrape(metrics_port).sum(DENIED_TOTAL, &HUB), 0.0, "the counter shows 0 before any refusal");
    assert_eq!(scrape(metrics_port).sum(DENIED_TOTAL, &UNLISTED), 0.0, "so does the namespace refusals'");

    // Allowed: pulled through, from the upstream.
    skopeo::pull_verified(&server.url(), &app, &app.reference(), &dir.path().join("app-out"));
    assert!(upstream_requests_for(&up, "/library/app/") > 0, "the allowed image came from the upstream");

    let fetches = upstream_fetches(metrics_port);
    let mut refused = 0;
    // Denied (deny wins over allow's library/*), in Docker Hub's short and canonical names and with ?ns=.
    for name in ["docker.io/nginx", "docker.io/library/nginx", "index.docker.io/library/nginx"] {
        refused += assert_every_route_denied(&server, &nginx, name, "docker.io/library/nginx");
    }
    assert_denied(&server, "GET", "/v2/library/nginx/manifests/1?ns=docker.io", "docker.io/library/nginx");
    // Not matched by any allow pattern.
    refused += 1 + assert_every_route_denied(&server, &tool, "docker.io/other/tool", "docker.io/other/tool");
    let resp = http::client().get(format!("{}/v2/docker.io/other/tool/manifests/1", server.url())).send();
    let (_, _, text) = http::oci_error(resp.expect("GET"), "GET other/tool");
    assert!(text.contains("allow list"), "the client is told which list refused: {text}");
    refused += 1;
    // A real client gets the refusal too.
    let pulled = skopeo::try_copy_from(&server.url(), &nginx.reference(), &dir.path().join("nginx-out"), false);
    let why = pulled.expect_err("skopeo cannot pull a denied image");
    assert!(why.to_lowercase().contains("denied"), "{why}");

    assert_eq!(upstream_requests_for(&up, "/library/nginx/"), 0, "nothing was asked upstream:\n{}", up.log_tail());
    assert_eq!(upstream_requests_for(&up, "/other/tool/"), 0, "nothing was asked upstream:\n{}", up.log_tail());
    assert_eq!(upstream_fetches(metrics_port), fetches, "the mirror counted no upstream response for a refusal");
    let counted = scrape(metrics_port).sum(DENIED_TOTAL, &HUB);
    assert!(counted >= refused as f64, "{refused} refusals by curl (and skopeo's) counted as {counted}");
    assert!(!holds(server.cache_dir(), &nginx.digest), "nothing of a denied image is cached");
    // A namespace upstreamPolicy refuses (public: never loopback) is counted with its own reason and label.
    let resp = http::client().get(format!("{}/v2/127.0.0.1:1/x/manifests/1", server.url())).send();
    let (status, codes, _) = http::oci_error(resp.expect("GET"), "GET an unlisted namespace");
    assert_eq!((status, codes), (StatusCode::FORBIDDEN, vec!["DENIED".to_string()]));
    assert_eq!(scrape(metrics_port).sum(DENIED_TOTAL, &UNLISTED), 1.0);
    let logs = server.logs();
    assert!(logs.contains("refused by the registry's allow/deny lists"), "the refusal is logged");
    assert!(logs.contains(r#"deny pattern "library/nginx""#), "the log names the rule");
}

#[test]
fn content_cached_while_allowed_is_refused_after_a_restart_with_a_deny() {
    let up = Upstream::start();
    let dir = TestDir::new("access-cached");
    let app = images::custom(&up, &dir.subdir("app"), "library/app:1", &[3_000]);
    let kept = images::custom(&up, &dir.subdir("kept"), "library/kept:1", &[3_000]);
    let metrics_port = free_port();
    let config = ServerConfig::for_upstream(&up.url()).extra(&format!("metrics: {metrics_port}"));
    let mut server = Server::start_with(config);
    for image in [&app, &kept] {
        skopeo::pull_verified(&server.url(), image, &image.reference(), &dir.path().join(image.repo.replace('/', "-")));
    }
    assert!(holds(server.cache_dir(), &app.manifest().layers[0].digest), "the image is cached");

    // The operator adds a deny and restarts.
    server.stop();
    let text = std::fs::read_to_string(server.config_file()).expect("read config");
    let endpoint = format!("    endpoint: \"{}\"\n", up.url());
    assert!(text.contains(&endpoint), "{text}");
    let text = text.replace(&endpoint, &format!("{endpoint}    deny: [library/app]\n"));
    std::fs::write(server.config_file(), text).expect("write config");
    server.restart();
    let before = upstream_requests_for(&up, "/library/app/");

    let refused = assert_every_route_denied(&server, &app, "docker.io/app", "docker.io/library/app");
    assert_eq!(upstream_requests_for(&up, "/library/app/"), before, "nothing asked upstream:\n{}", up.log_tail());
    assert_eq!(scrape(metrics_port).sum(DENIED_TOTAL, &HUB), refused as f64);
    assert!(holds(server.cache_dir(), &app.manifest().layers[0].digest), "refused, not removed");
    // What the deny does not name is still served from the cache.
    skopeo::pull_verified(&server.url(), &kept, &kept.reference(), &dir.path().join("kept-again"));
}

#[test]
fn load_refuses_a_denied_image_of_a_list_naming_the_rule_and_fetches_nothing() {
    let up = Upstream::start();
    let dir = TestDir::new("access-load");
    let app = images::custom(&up, &dir.subdir("app"), "library/app:1", &[3_000]);
    let nginx = images::custom(&up, &dir.subdir("nginx"), "library/nginx:1", &[3_000]);
    let config = ServerConfig::default().registry_with("docker.io", &up.url(), "deny: [library/nginx]\n");
    let mut server = Server::start_with(config);
    server.stop();
    let list = dir.path().join("images.txt");
    std::fs::write(&list, "docker.io/library/app:1\nnginx:1\n").expect("write list");
    let ran = ociregistry(server.config_file(), &["load", "--image-file", &list.display().to_string()]);
    let out = format!("{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(ran.code, Some(1), "one image failed: exit 1\n{out}");
    assert!(out.contains("loaded 1 image(s)"), "{out}");
    assert!(out.contains("docker.io/library/nginx:1") && out.contains("deny pattern \"library/nginx\""), "{out}");
    assert!(holds(server.cache_dir(), &app.digest), "the allowed image was loaded");
    assert!(!holds(server.cache_dir(), &nginx.digest), "the denied one was not");
    assert_eq!(upstream_requests_for(&up, "/library/nginx/"), 0, "nothing was asked upstream:\n{}", up.log_tail());
}
