//! The cache's one owner under faults and over time, against a real upstream: a tag invalidated or relinked stays as
//! it was left across restarts; a blob file deleted, truncated or corrupted on disk, or a corrupted manifest, is found
//! on the request path and fetched again (a corrupted blob is never delivered whole, and the next request gets good
//! bytes); the background scrub finds damage nobody asked for; idle image actors retire and memory follows.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::admin;
use common::http::{self, Outcome, StatusCode};
use common::images::{self, get_manifest, Image};
use common::metrics::Scrape;
use common::ports::free_port;
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::{skopeo, wait_for, TestDir};

fn blob_file(server: &Server, digest: &str) -> PathBuf {
    server.cache_dir().join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

fn manifest_file(server: &Server, digest: &str) -> PathBuf {
    server.cache_dir().join("manifests/sha256").join(digest.trim_start_matches("sha256:"))
}

fn blob_url(server: &Server, image: &Image, digest: &str) -> String {
    format!("{}/v2/{}/blobs/{digest}?ns=docker.io", server.url(), image.repo)
}

fn upstream_gets(up: &Upstream, digest: &str) -> usize {
    up.settle_log();
    up.access_log_count("GET", &format!("/blobs/{digest}"))
}

/// Overwrite `len` bytes in the middle of a file, in place (same size, same inode).
fn scribble(path: &Path) {
    let size = fs::metadata(path).expect("stat").len();
    let mut f = OpenOptions::new().write(true).open(path).expect("open for writing");
    f.seek(SeekFrom::Start(size / 2)).expect("seek");
    f.write_all(b"bit rot!").expect("scribble");
}

fn quarantined(server: &Server, hex: &str) -> usize {
    fs::read_dir(server.cache_dir().join("quarantine"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().contains(hex)).count())
        .unwrap_or(0)
}

#[test]
fn an_invalidated_tag_stays_gone_and_a_relinked_tag_keeps_its_new_manifest_across_restarts() {
    let mut up = Upstream::start();
    let dir = TestDir::new("relink");
    let first = images::custom(&up, &dir.subdir("first"), "library/app:t", &[3_000]);
    let (mut server, admin) = admin::server_with_admin(ServerConfig::for_upstream(&up.url()), &dir);
    let repo = "docker.io/library/app";
    for _ in 0..3 {
        assert_eq!(get_manifest(&server.url(), repo, "t").0, first.digest);
    }
    // The tag moves upstream; invalidated here, the next pull relinks it to the new manifest.
    let second = images::custom(&up, &dir.subdir("second"), "library/app:t", &[4_000]);
    assert_eq!(admin.invalidate("docker.io/library/app:t"), StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(get_manifest(&server.url(), repo, "t").0, second.digest, "the relinked tag");
    }

    up.stop();
    server.restart();
    assert_eq!(
        get_manifest(&server.url(), repo, "t").0,
        second.digest,
        "after a restart the tag names the new manifest"
    );
    assert_eq!(get_manifest(&server.url(), repo, &first.digest).0, first.digest, "the old manifest stays cached");

    assert_eq!(admin.invalidate("docker.io/library/app:t"), StatusCode::OK);
    server.restart();
    let url = format!("{}/v2/{repo}/manifests/t", server.url());
    let resp = http::client().get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("GET tag");
    assert_ne!(resp.status(), StatusCode::OK, "an invalidated tag came back after a restart (upstream is gone)");
    let listed = admin.list("/cmd/image/list");
    assert!(!listed.iter().any(|e| e["reference"] == "t"), "the invalidated tag is listed: {listed:#?}");
    assert_eq!(get_manifest(&server.url(), repo, &second.digest).0, second.digest, "by digest it is still cached");
}

#[test]
fn a_blob_deleted_or_truncated_on_disk_is_fetched_again_by_the_same_request() {
    let up = Upstream::start();
    let dir = TestDir::new("vanish");
    let image = images::custom(&up, &dir.subdir("work"), "library/vanish:1", &[200_000, 90_000]);
    let server = Server::start(&up.url());
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("first"));
    let client = http::client();
    let layers = &image.manifest().layers;

    // Deleted: HEAD still answers with the right size, and the GET fetches it again and caches it again.
    let gone = &layers[0];
    fs::remove_file(blob_file(&server, &gone.digest)).expect("delete blob file");
    let head = client.head(blob_url(&server, &image, &gone.digest)).send().expect("HEAD");
    assert_eq!(head.status(), StatusCode::OK, "HEAD of a blob deleted from disk");
    assert_eq!(http::header(&head, "Content-Length"), gone.size.to_string());
    http::get_verified(&client, &blob_url(&server, &image, &gone.digest), &gone.digest);
    assert_eq!(upstream_gets(&up, &gone.digest), 2, "fetched again once");
    assert!(blob_file(&server, &gone.digest).exists(), "cached again");
    http::get_verified(&client, &blob_url(&server, &image, &gone.digest), &gone.digest);
    assert_eq!(upstream_gets(&up, &gone.digest), 2, "then served from the cache");

    // Truncated: the size no longer matches; the same request gets the whole blob from the upstream.
    let short = &layers[1];
    let f = OpenOptions::new().write(true).open(blob_file(&server, &short.digest)).expect("open");
    f.set_len(short.size / 3).expect("truncate");
    drop(f);
    http::get_verified(&client, &blob_url(&server, &image, &short.digest), &short.digest);
    assert_eq!(upstream_gets(&up, &short.digest), 2);
    assert_eq!(fs::metadata(blob_file(&server, &short.digest)).expect("stat").len(), short.size, "whole again");
    // The whole image still pulls, and a second pull asks the upstream for no blob.
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("second"));
    assert_eq!((upstream_gets(&up, &gone.digest), upstream_gets(&up, &short.digest)), (2, 2));
}

#[test]
fn a_corrupted_blob_is_never_delivered_whole_and_the_next_request_gets_it_fetched_again() {
    let up = Upstream::start();
    let dir = TestDir::new("corrupt-cache");
    let image = images::custom(&up, &dir.subdir("work"), "library/rot:1", &[3_000_000]);
    let server = Server::start(&up.url());
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("first"));
    let client = http::client();
    let layer = &image.manifest().layers[0];
    let url = blob_url(&server, &image, &layer.digest);
    scribble(&blob_file(&server, &layer.digest));

    match http::get_outcome(&client, &url) {
        Outcome::Failed(_) => {}
        Outcome::Complete { status, body } => {
            assert!(
                status != StatusCode::OK || common::sha256_digest(&body) == layer.digest,
                "a corrupted cached blob was delivered whole ({} bytes)",
                body.len()
            );
        }
    }
    http::get_verified(&client, &url, &layer.digest);
    assert_eq!(upstream_gets(&up, &layer.digest), 2, "the damaged copy was replaced by one new fetch");
    assert_eq!(quarantined(&server, layer.digest.trim_start_matches("sha256:")), 1, "the damaged file is kept aside");
    http::get_verified(&client, &url, &layer.digest);
    assert_eq!(upstream_gets(&up, &layer.digest), 2, "then served from the cache");
}

#[test]
fn a_corrupted_or_deleted_manifest_is_fetched_again_by_the_same_request() {
    let up = Upstream::start();
    let dir = TestDir::new("manifest-rot");
    let image = images::custom(&up, &dir.subdir("work"), "library/mrot:1", &[1_000]);
    let server = Server::start(&up.url());
    let repo = "docker.io/library/mrot";
    assert_eq!(get_manifest(&server.url(), repo, "1").0, image.digest);
    let path = manifest_file(&server, &image.digest);
    scribble(&path);
    assert_eq!(get_manifest(&server.url(), repo, "1").0, image.digest, "a corrupted manifest is never served");
    assert_eq!(get_manifest(&server.url(), repo, &image.digest).0, image.digest);
    fs::remove_file(&path).expect("delete manifest");
    assert_eq!(get_manifest(&server.url(), repo, &image.digest).0, image.digest, "a deleted manifest is fetched again");
    up.settle_log();
    let by_digest = up.access_log_count("GET", &format!("/manifests/{}", image.digest));
    assert!(by_digest >= 1, "the deleted manifest came from the upstream again:\n{}", up.log_tail());
}

#[test]
fn the_scrub_keeps_checking_in_the_background_and_finds_damage_nobody_asked_for() {
    let up = Upstream::start();
    let dir = TestDir::new("scrub");
    let image = images::custom(&up, &dir.subdir("work"), "library/scrub:1", &[500_000]);
    let metrics_port = free_port();
    let config = ServerConfig::for_upstream(&up.url()).extra(&format!("scrubInterval: 1s\nmetrics: {metrics_port}"));
    let server = Server::start_with(config);
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("first"));
    let layer = &image.manifest().layers[0];
    // Wait for at least one pass after the pull, then damage the blob without asking for it.
    std::thread::sleep(Duration::from_millis(1500));
    scribble(&blob_file(&server, &layer.digest));
    let hex = layer.digest.trim_start_matches("sha256:").to_string();
    wait_for("the scrub to move the damaged blob aside", Duration::from_secs(15), || {
        (quarantined(&server, &hex) == 1).then_some(())
    });
    let scrape = Scrape::fetch(&format!("http://127.0.0.1:{metrics_port}/metrics"));
    assert_eq!(scrape.sum("ociregistry_store_faults_total", &[("kind", "blob"), ("fault", "corrupt")]), 1.0);
    http::get_verified(&http::client(), &blob_url(&server, &image, &layer.digest), &layer.digest);
    assert_eq!(upstream_gets(&up, &layer.digest), 2, "the next request fetched it again");
}

#[test]
fn image_actors_for_names_clients_invent_retire_and_pulls_keep_working() {
    let up = Upstream::start();
    let dir = TestDir::new("retire");
    let image = images::hello(&up, dir.path());
    let metrics_port = free_port();
    let config = ServerConfig::for_upstream(&up.url()).extra(&format!("actorIdleTimeout: 1s\nmetrics: {metrics_port}"));
    let server = Server::start_with(config);
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let client = http::client();
    for i in 0..300 {
        let url = format!("{}/v2/library/none-{i}/manifests/latest?ns=docker.io", server.url());
        let resp = client.get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("GET");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{url}");
    }
    let live = Scrape::fetch(&metrics_url).sum("ociregistry_image_actors", &[]);
    assert!(live > 0.0, "image actors alive right after the requests: {live}");
    wait_for("every idle image actor to retire", Duration::from_secs(15), || {
        (Scrape::fetch(&metrics_url).sum("ociregistry_image_actors", &[]) == 0.0).then_some(())
    });
    // A repository whose actor retired is served by a new one.
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("after"));
    let url = format!("{}/v2/library/none-7/manifests/latest?ns=docker.io", server.url());
    let resp = client.get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().expect("GET");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
