//! A server started on a large cache serves what it holds at once, while its index still loads in the background:
//! a cached image is pulled (tag, manifest, every blob) with the upstream gone, nothing cached is answered 404, a tag
//! invalidated during the load stays gone, and the load ends with every stored entry indexed.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::admin;
use common::http::{self, StatusCode};
use common::images::{self, get_manifest};
use common::metrics::Scrape;
use common::ports::free_port;
use common::server::ServerConfig;
use common::upstream::Upstream;
use common::{sha256_digest, skopeo, wait_for, TestDir};

/// Images written straight into the cache directory, so that the load takes a while (seconds in a debug build).
const FILLER: usize = 30_000;

fn hex_of(bytes: &[u8]) -> String {
    sha256_digest(bytes).trim_start_matches("sha256:").to_string()
}

/// `count` single-tag images `docker.io/library/filler-NNNNNN:1` in the server's on-disk layout
/// (docs/architecture.md): each a manifest, its media type, and its tag's reference record.
fn write_filler(cache: &Path, count: usize) {
    let media_type = "application/vnd.oci.image.manifest.v1+json";
    let manifests = cache.join("manifests/sha256");
    fs::create_dir_all(&manifests).expect("manifests dir");
    std::thread::scope(|s| {
        for t in 0..4 {
            let manifests = &manifests;
            s.spawn(move || {
                for i in (t..count).step_by(4) {
                    let fake = |what: &str| sha256_digest(format!("{what}/{i}").as_bytes());
                    let manifest = format!(
                        r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":100}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":200}}]}}"#,
                        fake("config"),
                        fake("layer")
                    );
                    let hex = hex_of(manifest.as_bytes());
                    fs::write(manifests.join(&hex), &manifest).expect("manifest");
                    fs::write(manifests.join(format!("{hex}.type")), media_type).expect("type");
                    let repo = format!("library/filler-{i:06}");
                    let key = hex_of(format!("docker.io/{repo}:1").as_bytes());
                    let record = format!(
                        r#"{{"namespace":"docker.io","repository":"{repo}","reference":"1","digest":"sha256:{hex}","created":1,"pulled":1}}"#
                    );
                    let shard = cache.join("refs").join(&key[..2]);
                    fs::create_dir_all(&shard).expect("refs shard");
                    fs::write(shard.join(format!("{key}.json")), record).expect("record");
                }
            });
        }
    });
}

#[test]
fn a_server_started_on_a_large_cache_serves_a_cached_pull_while_its_index_loads() {
    let mut up = Upstream::start();
    let dir = TestDir::new("large-cache");
    let image = images::custom(&up, &dir.subdir("work"), "library/app:1", &[3_000, 200_000]);
    let metrics_port = free_port();
    let config = ServerConfig::for_upstream(&up.url()).extra(&format!("metrics: {metrics_port}"));
    let (mut server, admin) = admin::server_with_admin(config, &dir);
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("first"));
    server.stop();
    // From here on, whatever is served comes from the cache.
    up.stop();
    write_filler(server.cache_dir(), FILLER);
    server.restart();

    let loading = || {
        Scrape::fetch(&format!("http://127.0.0.1:{metrics_port}/metrics")).sum("ociregistry_cache_index_loading", &[])
    };
    let client = http::client();
    let repo = "docker.io/library/app";
    // As containerd pulls: HEAD the tag, GET the manifest by digest, GET every blob.
    let head = client
        .head(format!("{}/v2/{repo}/manifests/1", server.url()))
        .header("Accept", http::ACCEPT_ALL_MANIFESTS)
        .send()
        .expect("HEAD tag");
    assert_eq!(head.status(), StatusCode::OK, "HEAD of a cached tag while the index loads");
    assert_eq!(http::header(&head, "Docker-Content-Digest"), image.digest);
    assert_eq!(http::header(&head, "Content-Length"), image.bytes.len().to_string());
    assert_eq!(get_manifest(&server.url(), repo, &image.digest).0, image.digest);
    for blob in image.blobs() {
        let url = format!("{}/v2/{repo}/blobs/{}", server.url(), blob.digest);
        http::get_verified(&client, &url, &blob.digest);
    }
    // A tag of the filler, and one invalidated now: both decided by the store while the index has not reached them.
    let filler = format!("docker.io/library/filler-{:06}", FILLER - 1);
    get_manifest(&server.url(), &filler, "1");
    assert_eq!(admin.invalidate(&format!("{filler}:1")), StatusCode::OK, "invalidating a stored, not yet indexed tag");
    assert_eq!(
        loading(),
        1.0,
        "all of the above was answered while the index was still loading (if the load outran it, raise FILLER)"
    );

    wait_for("the index to load", Duration::from_secs(120), || (loading() == 0.0).then_some(()));
    let scrape = Scrape::fetch(&format!("http://127.0.0.1:{metrics_port}/metrics"));
    assert_eq!(scrape.sum("ociregistry_cached_manifest_count", &[]), (FILLER + 1) as f64, "every manifest indexed");
    assert_eq!(scrape.sum("ociregistry_cache_entries", &[("kind", "reference")]), FILLER as f64, "every tag but one");
    let gone = client
        .get(format!("{}/v2/{filler}/manifests/1", server.url()))
        .header("Accept", http::ACCEPT_ALL_MANIFESTS)
        .send()
        .expect("GET invalidated tag");
    assert_ne!(gone.status(), StatusCode::OK, "the tag invalidated during the load stayed gone (the upstream is gone)");
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("after"));
}
