//! The admin API: off unless configured, never on the main port, every
//! request needs the bearer token from `tokenFile`; its lists say what was
//! pulled, its GETs change nothing, invalidating a tag makes the next pull
//! ask the upstream again while blobs still come from the cache, and there
//! is no remote stop.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::admin::{self, Admin, TOKEN};
use common::http::{self, StatusCode};
use common::images::{self, Image};
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::{sha256_digest, skopeo, TestDir};

/// A server for `up` with the admin API on its own port.
fn server_with_admin(up: &Upstream, dir: &TestDir) -> (Server, Admin) {
    admin::server_with_admin(ServerConfig::for_upstream(&up.url()), dir)
}

fn pull(server: &Server, image: &Image, dir: &TestDir, name: &str) {
    skopeo::pull_verified(&server.url(), image, &image.reference(), &dir.path().join(name));
}

/// Every file under `dir` with its size, content digest and mtime.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, String, std::time::SystemTime)> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (u64, String, std::time::SystemTime)>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())).flatten() {
            let p = e.path();
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                walk(&p, out);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.insert(p, (meta.len(), sha256_digest(&bytes), meta.modified().expect("mtime")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// Wait until the cache dir stops changing (the server may finish writing
/// after the client saw its last byte).
fn settled_snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, String, std::time::SystemTime)> {
    let mut last = snapshot(dir);
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(500));
        let now = snapshot(dir);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the cache dir {} kept changing for 20 s", dir.display());
}

fn tag_manifest_requests(up: &Upstream, image: &Image) -> usize {
    let path = format!("/v2/{}/manifests/{}", image.repo, image.tag);
    up.access_log_count("HEAD", &path) + up.access_log_count("GET", &path)
}

fn blob_gets(up: &Upstream, image: &Image) -> usize {
    image.blobs().iter().map(|b| up.access_log_count("GET", &format!("/v2/{}/blobs/{}", image.repo, b.digest))).sum()
}

const ADMIN_PATHS: &[&str] = &["/cmd/image/list", "/cmd/manifest/list", "/cmd/blob/list"];

#[test]
fn admin_is_off_by_default_and_there_is_no_remote_stop() {
    let up = Upstream::start();
    let dir = TestDir::new("admin-off");
    let image = images::hello(&up, dir.path());
    let mut server = Server::start(&up.url());
    pull(&server, &image, &dir, "pull");
    let client = http::client();
    for path in ADMIN_PATHS.iter().chain(&["/cmd/stop", "/cmd/prune"]) {
        let url = format!("{}{path}", server.url());
        let resp = client.get(&url).send().unwrap_or_else(|e| panic!("GET {url}: {e:#}"));
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "GET {path} on the main port without an admin listener");
        let resp = client
            .get(&url)
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e:#}"));
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "GET {path} with a bearer token on the main port");
    }
    let url = format!("{}/cmd/image/invalidate?image=docker.io/library/hello:latest", server.url());
    let resp = client.post(&url).send().expect("POST invalidate");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "POST /cmd/image/invalidate on the main port");
    // /cmd/stop did nothing: the server runs and serves from its cache.
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.is_running(), "the server stopped after GET /cmd/stop");
    let before = tag_manifest_requests(&up, &image);
    pull(&server, &image, &dir, "pull-again");
    up.settle_log();
    assert_eq!(tag_manifest_requests(&up, &image), before, "the tag was still cached after the POST on the main port");
}

#[test]
fn admin_needs_the_token_and_lists_what_was_pulled_without_changing_anything() {
    let up = Upstream::start();
    let dir = TestDir::new("admin-lists");
    let image = images::hello(&up, dir.path());
    let (mut server, admin) = server_with_admin(&up, &dir);
    pull(&server, &image, &dir, "pull");

    // No token, a wrong token, the token under another scheme: 401, nothing listed.
    let invalidate = format!("/cmd/image/invalidate?image={}", image.reference());
    for path in ADMIN_PATHS {
        assert_eq!(admin.get(path, None).status(), StatusCode::UNAUTHORIZED, "GET {path} without a token");
        assert_eq!(admin.get(path, Some("wrong")).status(), StatusCode::UNAUTHORIZED, "GET {path}, wrong token");
        assert_eq!(
            admin.get(path, Some(&format!("{TOKEN}x"))).status(),
            StatusCode::UNAUTHORIZED,
            "GET {path}, token with a suffix"
        );
        let basic = http::client()
            .get(admin.url(path))
            .header("Authorization", format!("Basic {TOKEN}"))
            .send()
            .expect("GET with Basic");
        assert_eq!(basic.status(), StatusCode::UNAUTHORIZED, "GET {path} with the token as Basic");
    }
    assert_eq!(admin.post(&invalidate, None).status(), StatusCode::UNAUTHORIZED, "POST invalidate without a token");
    assert_eq!(admin.post(&invalidate, Some("wrong")).status(), StatusCode::UNAUTHORIZED, "invalidate, wrong token");

    // The main port never serves the admin API, token or not.
    for path in ADMIN_PATHS {
        let resp = http::client()
            .get(format!("{}{path}", server.url()))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send()
            .expect("GET on the main port");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "GET {path} on the main port");
    }

    let cache_before = settled_snapshot(server.cache_dir());

    // The lists, twice each: the same answers.
    let images1 = admin.list("/cmd/image/list");
    let manifests1 = admin.list("/cmd/manifest/list");
    let blobs1 = admin.list("/cmd/blob/list");
    assert_eq!(admin.list("/cmd/image/list"), images1, "image list, second call");
    assert_eq!(admin.list("/cmd/manifest/list"), manifests1, "manifest list, second call");
    assert_eq!(admin.list("/cmd/blob/list"), blobs1, "blob list, second call");

    let entry = images1
        .iter()
        .find(|e| e["namespace"] == "docker.io" && e["repository"] == "library/hello" && e["reference"] == "latest")
        .unwrap_or_else(|| panic!("docker.io/library/hello:latest not in the image list: {images1:#?}"));
    assert_eq!(entry["digest"], image.digest.as_str(), "image list digest: {entry}");
    assert_eq!(entry["mediaType"], image.media_type.as_str(), "image list mediaType: {entry}");
    assert_eq!(entry["size"], image.bytes.len() as u64, "image list size: {entry}");
    for key in ["created", "pulled"] {
        assert!(entry.get(key).is_some_and(|v| !v.is_null()), "image list entry has no {key}: {entry}");
    }

    let m = manifests1
        .iter()
        .find(|m| m["digest"] == image.digest.as_str())
        .unwrap_or_else(|| panic!("{} not in the manifest list: {manifests1:#?}", image.digest));
    assert_eq!(m["mediaType"], image.media_type.as_str(), "manifest list mediaType: {m}");
    assert_eq!(m["size"], image.bytes.len() as u64, "manifest list size: {m}");

    for blob in image.blobs() {
        let b = blobs1
            .iter()
            .find(|b| b["digest"] == blob.digest.as_str())
            .unwrap_or_else(|| panic!("blob {} not in the blob list: {blobs1:#?}", blob.digest));
        assert_eq!(b["size"], blob.size, "blob list size: {b}");
    }
    assert_eq!(blobs1.len(), image.blobs().len(), "blob list length: {blobs1:#?}");

    // Unknown paths, and no remote stop: 404 with the token.
    for path in ["/cmd/stop", "/cmd/nothing", "/v2/"] {
        assert_eq!(admin.get(path, Some(TOKEN)).status(), StatusCode::NOT_FOUND, "GET {path} on the admin port");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.is_running(), "the server stopped after GET /cmd/stop");

    // The GETs changed nothing on disk.
    assert_eq!(snapshot(server.cache_dir()), cache_before, "cache dir after the admin GETs");
}

#[test]
fn invalidating_a_tag_makes_the_next_pull_ask_the_upstream_again() {
    let up = Upstream::start();
    let dir = TestDir::new("admin-invalidate");
    let image = images::hello(&up, dir.path());
    let (server, admin) = server_with_admin(&up, &dir);
    pull(&server, &image, &dir, "pull-1");

    // The premise: a second pull of the cached tag does not reach the upstream.
    up.settle_log();
    let (tags_1, blobs_1) = (tag_manifest_requests(&up, &image), blob_gets(&up, &image));
    assert!(tags_1 >= 1, "the first pull asked the upstream for the tag");
    assert_eq!(blobs_1, image.blobs().len(), "the first pull fetched each blob once");
    pull(&server, &image, &dir, "pull-2");
    up.settle_log();
    assert_eq!(tag_manifest_requests(&up, &image), tags_1, "a pull of the cached tag asked the upstream");

    // Unknown images: 404, and nothing else is dropped.
    let unknown = admin.post("/cmd/image/invalidate?image=docker.io/library/nothing:here", Some(TOKEN));
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND, "invalidate an unknown image");
    let other_tag = admin.post("/cmd/image/invalidate?image=docker.io/library/hello:other", Some(TOKEN));
    assert_eq!(other_tag.status(), StatusCode::NOT_FOUND, "invalidate an unknown tag of a known repository");

    let resp = admin.post(&format!("/cmd/image/invalidate?image={}", image.reference()), Some(TOKEN));
    assert!(resp.status().is_success(), "invalidate {}: {}", image.reference(), resp.status());
    let listed = admin.list("/cmd/image/list");
    assert!(
        !listed.iter().any(|e| e["repository"] == "library/hello" && e["reference"] == "latest"),
        "the invalidated tag is still listed: {listed:#?}"
    );
    // Invalidating it again: it is gone.
    let again = admin.post(&format!("/cmd/image/invalidate?image={}", image.reference()), Some(TOKEN));
    assert_eq!(again.status(), StatusCode::NOT_FOUND, "invalidate the same tag twice");

    // The next pull asks the upstream for the tag again; blobs come from the cache.
    pull(&server, &image, &dir, "pull-3");
    up.settle_log();
    assert!(
        tag_manifest_requests(&up, &image) > tags_1,
        "the pull after invalidation did not ask the upstream for the tag:\n{}",
        up.log_tail()
    );
    assert_eq!(blob_gets(&up, &image), blobs_1, "upstream blob GETs after invalidation");
    let listed = admin.list("/cmd/image/list");
    assert!(
        listed.iter().any(|e| e["repository"] == "library/hello" && e["reference"] == "latest"),
        "the tag is not listed again after the new pull: {listed:#?}"
    );
}
