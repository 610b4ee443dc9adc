//! The cache's life against a real upstream: the size cap holds under a stream of distinct images while every pull
//! succeeds, pinned images survive, a blob shared by a kept and an evicted image stays, eviction never cuts a client
//! mid-stream, a failing upstream evicts nothing, and `prune` (its dry run first) on a stopped directory and through
//! a running server's admin API.

mod common;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use common::admin::server_with_admin;
use common::commands::{cache_bytes, holds, ociregistry, ociregistry_ok};
use common::images::{self, BlobRef, Format, Image, Layout, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use common::metrics::Scrape;
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::{sha256_digest, skopeo, wait_for, TestDir};
use serde_json::json;

/// Wait until the cache has settled at or under `cap` (removals run just after the decision); the size found.
fn settled_under(cache: &Path, cap: u64) -> u64 {
    let mut last = cache_bytes(cache);
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(50));
        let now = cache_bytes(cache);
        if now <= cap && now == last {
            return now;
        }
        last = now;
    }
    last
}

/// The unix second ticks over: reference pull times have one-second resolution, and LRU order must be clear.
fn next_second() {
    std::thread::sleep(Duration::from_millis(1100));
}

#[test]
fn the_cap_holds_under_a_stream_of_distinct_images_every_pull_succeeds_and_pinned_images_survive() {
    let mut up = Upstream::start();
    let dir = TestDir::new("cap");
    let cap: u64 = 3_000_000;
    let pinned = images::custom(&up, &dir.subdir("work-pin"), "library/pinned:1", &[500_000]);
    let stream: Vec<Image> = (0..8)
        .map(|i| {
            images::custom(&up, &dir.subdir(&format!("work-{i}")), &format!("team/app{i}:v1"), &[600_000, 300_000])
        })
        .collect();
    let metrics_port = common::ports::free_port();
    let config = ServerConfig::for_upstream(&up.url())
        .extra(&format!("maxCacheSize: {cap}\npinned: ['docker.io/library/pinned:*']\nmetrics: {metrics_port}"));
    let server = Server::start_with(config);
    let cache = server.cache_dir().to_path_buf();
    skopeo::pull_verified(&server.url(), &pinned, &pinned.reference(), &dir.path().join("pinned"));
    let mut largest = 0;
    for (i, image) in stream.iter().enumerate() {
        next_second();
        skopeo::pull_verified(&server.url(), image, &image.reference(), &dir.path().join(format!("pull-{i}")));
        let size = settled_under(&cache, cap);
        largest = largest.max(size);
        assert!(size <= cap, "after image {i}: {size} bytes cached, over the cap of {cap}");
        assert!(holds(&cache, &image.digest), "the image just pulled ({i}) is cached");
    }
    eprintln!("cap {cap}: 9 images of about 0.9 MB pulled, largest cache size after a pull {largest} bytes");
    let first = &stream[0];
    assert!(!holds(&cache, &first.digest), "the least recently pulled image was evicted");
    for b in pinned.blobs() {
        assert!(holds(&cache, &b.digest), "pinned blob {} survived eight images past the cap", b.digest);
    }
    let scrape = Scrape::fetch(&format!("http://127.0.0.1:{metrics_port}/metrics"));
    assert!(scrape.sum("ociregistry_evictions_total", &[("reason", "cap")]) >= 5.0, "evictions are counted");
    assert!(scrape.sum("ociregistry_evicted_bytes_total", &[("reason", "cap")]) >= 4_000_000.0);
    assert_eq!(scrape.sum("ociregistry_cache_max_bytes", &[]), cap as f64);

    // With the upstream gone: the pinned and the newest image still pull, a pull of an evicted image fails, and the
    // failure evicts nothing.
    up.stop();
    let before = cache_bytes(&cache);
    skopeo::pull_verified(&server.url(), &pinned, &pinned.reference(), &dir.path().join("pinned-again"));
    let last = stream.last().expect("images");
    skopeo::pull_verified(&server.url(), last, &last.reference(), &dir.path().join("last-again"));
    assert!(skopeo::try_copy_from(&server.url(), &first.reference(), &dir.path().join("gone"), false).is_err());
    assert_eq!(cache_bytes(&cache), before, "an unreachable upstream removes nothing");
}

/// An OCI image whose layers are the given bytes (skopeo gzips them on the way up).
fn image_of_layers(up: &Upstream, work: &Path, repo_tag: &str, layers: &[&[u8]]) -> Image {
    images::make(up, work, repo_tag, Format::Oci, |dir, tag| {
        let layout = Layout::create(dir);
        let layers: Vec<BlobRef> = layers.iter().map(|l| layout.put_blob(l, OCI_LAYER_GZIP)).collect();
        let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                            "config": {"Labels": {"repo": repo_tag}}});
        let config = layout.put_blob(config.to_string().as_bytes(), OCI_CONFIG);
        let d = |b: &BlobRef| json!({"mediaType": b.media_type, "digest": b.digest, "size": b.size});
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": d(&config),
                              "layers": layers.iter().map(d).collect::<Vec<_>>()});
        let m = layout.put_blob(manifest.to_string().as_bytes(), OCI_MANIFEST);
        layout.tag(&m, tag);
        layout
    })
}

#[test]
fn a_blob_shared_by_a_kept_and_an_evicted_image_stays() {
    let mut up = Upstream::start();
    let dir = TestDir::new("shared");
    let shared = images::random_bytes(700_000);
    let a = image_of_layers(&up, &dir.subdir("a"), "library/a:1", &[&shared, &images::random_bytes(700_000)]);
    let b = image_of_layers(&up, &dir.subdir("b"), "library/b:1", &[&shared, &images::random_bytes(700_000)]);
    let c = image_of_layers(&up, &dir.subdir("c"), "library/c:1", &[&images::random_bytes(1_000_000)]);
    let config = ServerConfig::for_upstream(&up.url()).extra("maxCacheSize: 2900000");
    let server = Server::start_with(config);
    let cache = server.cache_dir().to_path_buf();
    skopeo::pull_verified(&server.url(), &a, &a.reference(), &dir.path().join("a"));
    next_second();
    skopeo::pull_verified(&server.url(), &b, &b.reference(), &dir.path().join("b"));
    next_second();
    skopeo::pull_verified(&server.url(), &c, &c.reference(), &dir.path().join("c"));
    settled_under(&cache, 2_900_000);
    // skopeo compresses the layer on push, the same way for both: one blob upstream, named in both manifests.
    let shared_digest = &b.manifest().layers[0].digest;
    assert_eq!(&a.manifest().layers[0].digest, shared_digest, "a and b share their first layer");
    assert!(holds(&cache, shared_digest), "the layer b still needs stays");
    assert!(!holds(&cache, &a.manifest().layers[1].digest), "a's own layer is evicted");
    assert!(!holds(&cache, &a.digest), "a's manifest is evicted");
    up.stop();
    skopeo::pull_verified(&server.url(), &b, &b.reference(), &dir.path().join("b-again"));
}

#[test]
fn eviction_never_cuts_a_client_mid_stream() {
    let up = Upstream::start();
    let dir = TestDir::new("midstream");
    let big = images::custom(&up, &dir.subdir("big"), "library/big:1", &[24 << 20]);
    let others: Vec<Image> = (0..3)
        .map(|i| images::custom(&up, &dir.subdir(&format!("o{i}")), &format!("library/o{i}:1"), &[9 << 20]))
        .collect();
    let config = ServerConfig::for_upstream(&up.url()).extra("maxCacheSize: 30Mi");
    let server = Server::start_with(config);
    let cache = server.cache_dir().to_path_buf();
    skopeo::pull_verified(&server.url(), &big, &big.reference(), &dir.path().join("big"));
    let layer = &big.manifest().layers[0];
    // A slow client: the first megabyte, then nothing while the cache evicts the blob under it.
    let url = format!("{}/v2/{}/blobs/{}", server.url(), big.repo, layer.digest);
    let mut resp = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .expect("client")
        .get(&url)
        .header("X-Registry", "docker.io")
        .send()
        .expect("GET the big blob");
    assert!(resp.status().is_success(), "{}", resp.status());
    let mut body = vec![0u8; 1 << 20];
    resp.read_exact(&mut body).expect("first megabyte");
    next_second();
    for (i, o) in others.iter().enumerate() {
        skopeo::pull_verified(&server.url(), o, &o.reference(), &dir.path().join(format!("o{i}")));
    }
    wait_for("the big blob to be evicted", Duration::from_secs(10), || (!holds(&cache, &layer.digest)).then_some(()));
    resp.read_to_end(&mut body).expect("the rest of the blob after its eviction");
    assert_eq!(body.len() as u64, layer.size);
    assert_eq!(sha256_digest(&body), layer.digest, "the client got the whole blob, intact");
}

#[test]
fn prune_dry_run_removes_nothing_then_prune_removes_on_a_stopped_directory_and_through_a_running_server() {
    let up = Upstream::start();
    let dir = TestDir::new("prune");
    let hello = images::custom(&up, &dir.subdir("h"), "library/hello:1", &[300_000]);
    let keep = images::custom(&up, &dir.subdir("k"), "library/keep:1", &[200_000]);
    let other = images::custom(&up, &dir.subdir("o"), "library/other:1", &[200_000]);
    let (mut server, _admin) = server_with_admin(ServerConfig::for_upstream(&up.url()), &dir);
    let cache = server.cache_dir().to_path_buf();
    for image in [&hello, &keep, &other] {
        skopeo::pull_verified(&server.url(), image, &image.reference(), &dir.path().join(image.repo.replace('/', "_")));
    }
    server.stop();
    let config = server.config_file().to_path_buf();
    let before = common::cached_files(&cache);
    let dry = ociregistry_ok(&config, &["prune", "--pattern", "library/hello", "--dry-run"]);
    assert!(dry.stdout.contains("would remove: docker.io/library/hello:1"), "{}", dry.stdout);
    assert!(!dry.stdout.contains("keep"), "{}", dry.stdout);
    assert_eq!(common::cached_files(&cache), before, "a dry run removes nothing");
    let done = ociregistry_ok(&config, &["prune", "--pattern", "library/hello"]);
    assert!(done.stdout.contains("removed: docker.io/library/hello:1"), "{}", done.stdout);
    assert!(!holds(&cache, &hello.digest) && !holds(&cache, &hello.manifest().layers[0].digest));
    assert!(holds(&cache, &keep.digest) && holds(&cache, &other.digest));
    let bad = ociregistry(&config, &["prune", "--date", "yesterday"]);
    assert!(!bad.ok && bad.stderr.contains("yesterday"), "{bad:?}");

    // A running server holds the directory: the same command goes through its admin API.
    server.restart();
    let dry = ociregistry_ok(&config, &["prune", "--pattern", "other", "--dry-run"]);
    assert!(dry.stdout.contains("would remove: docker.io/library/other:1"), "{}", dry.stdout);
    assert!(holds(&cache, &other.digest), "a dry run through the server removes nothing");
    let done = ociregistry_ok(&config, &["prune", "--pattern", "other"]);
    assert!(done.stdout.contains("removed: docker.io/library/other:1"), "{}", done.stdout);
    assert!(!holds(&cache, &other.digest) && holds(&cache, &keep.digest));
    let listed = ociregistry_ok(&config, &["list", "--json"]);
    let names: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&listed.stdout)
        .expect("list --json")
        .iter()
        .map(|e| format!("{}:{}", e["repository"].as_str().unwrap_or(""), e["reference"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(names, vec!["library/keep:1".to_string()], "the server's index follows the prune");
}
