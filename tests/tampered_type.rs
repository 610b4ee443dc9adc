//! A manifest's stored media type (its `.type` file under `imagePath`) is never trusted over the manifest itself:
//! after a restart, a `.type` rewritten to `text/html`, or swapped for another manifest type, is moved to
//! `quarantine/` and written again from the manifest's content, and the manifest is served by tag and by digest, GET
//! and HEAD, with its own type, to plain clients and to skopeo, with the upstream gone. The same holds for the
//! `.type` objects of the S3 store (a real Garage cluster).

mod common;

use std::path::Path;

use common::garage::{self, Garage};
use common::http::{self, ACCEPT_ALL_MANIFESTS};
use common::images::{self, Image, DOCKER_MANIFEST, OCI_INDEX};
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::{sha256_digest, skopeo, TestDir};

/// Where the cache keeps a manifest's media type.
fn type_file(cache: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    cache.join("manifests/sha256").join(format!("{hex}.type"))
}

/// The files `quarantine/` holds for the `.type` of `digest`, with their contents.
fn quarantined_types(cache: &Path, digest: &str) -> Vec<String> {
    let prefix = format!("manifests_sha256_{}.type.", digest.trim_start_matches("sha256:"));
    let mut found: Vec<String> = std::fs::read_dir(cache.join("quarantine"))
        .expect("quarantine dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| std::fs::read_to_string(e.path()).expect("read quarantined file"))
        .collect();
    found.sort();
    found
}

/// GET and HEAD of `image` by tag and by digest: its own media type, its digest, its bytes.
fn assert_served_with_its_type(server: &Server, image: &Image) {
    let client = http::client();
    for reference in [image.tag.as_str(), image.digest.as_str()] {
        let url = format!("{}/v2/{}/manifests/{reference}?ns=docker.io", server.url(), image.repo);
        let get = client.get(&url).header("Accept", ACCEPT_ALL_MANIFESTS).send().expect("GET");
        assert_eq!(get.status(), 200, "GET {url}");
        assert_eq!(http::header(&get, "Content-Type"), image.media_type, "GET {url}: Content-Type");
        assert_eq!(http::header(&get, "Docker-Content-Digest"), image.digest, "GET {url}");
        let body = get.bytes().expect("body");
        assert_eq!(sha256_digest(&body), image.digest, "GET {url}: body");
        let head = client.head(&url).header("Accept", ACCEPT_ALL_MANIFESTS).send().expect("HEAD");
        assert_eq!(head.status(), 200, "HEAD {url}");
        assert_eq!(http::header(&head, "Content-Type"), image.media_type, "HEAD {url}: Content-Type");
        assert_eq!(http::header(&head, "Content-Length"), image.bytes.len().to_string(), "HEAD {url}");
        // A client that accepts only the manifest's own type gets it (with the tampered type it was refused).
        let own = client.get(&url).header("Accept", image.media_type.as_str()).send().expect("GET");
        assert_eq!(own.status(), 200, "GET {url} accepting only {}", image.media_type);
    }
}

#[test]
fn a_tampered_manifest_type_is_quarantined_and_the_manifest_served_with_its_own_type() {
    let mut up = Upstream::start();
    let dir = TestDir::new("tampered-type");
    let hello = images::hello(&up, dir.path());
    let docker2 = images::docker2(&up, dir.path());
    let multi = images::multi(&up, dir.path());
    assert_eq!(
        (docker2.media_type.as_str(), multi.media_type.as_str()),
        (DOCKER_MANIFEST, OCI_INDEX),
        "the fixture's types"
    );
    let mut server = Server::start(&up.url());
    for (i, image) in [&hello, &docker2, &multi].into_iter().enumerate() {
        skopeo::pull_verified(&server.url(), image, &image.reference(), &dir.path().join(format!("before-{i}")));
    }
    server.stop();
    up.stop();

    // Not a manifest type at all; another manifest type (an index's on a manifest, a manifest's on an index).
    let cache = server.cache_dir().to_path_buf();
    let tampered = [(&hello, "text/html"), (&docker2, OCI_INDEX), (&multi, DOCKER_MANIFEST)];
    for (image, bad) in tampered {
        let path = type_file(&cache, &image.digest);
        assert_eq!(std::fs::read_to_string(&path).expect("stored type"), image.media_type, "{}", image.reference());
        std::fs::write(&path, bad).expect("tamper");
    }
    server.restart();

    for (image, bad) in tampered {
        assert_served_with_its_type(&server, image);
        assert_eq!(
            quarantined_types(&cache, &image.digest),
            vec![bad.to_string()],
            "{}: moved aside",
            image.reference()
        );
        let rewritten = std::fs::read_to_string(type_file(&cache, &image.digest)).expect("type written again");
        assert_eq!(rewritten, image.media_type, "{}: written again from the content", image.reference());
    }
    for (i, image) in [&hello, &docker2, &multi].into_iter().enumerate() {
        skopeo::pull_verified(&server.url(), image, &image.reference(), &dir.path().join(format!("after-{i}")));
    }

    // Checked once: a second restart finds nothing more to repair.
    server.restart();
    for (image, bad) in tampered {
        assert_served_with_its_type(&server, image);
        assert_eq!(quarantined_types(&cache, &image.digest), vec![bad.to_string()], "{}", image.reference());
    }
}

/// Write `bytes` under `key` in the test bucket, through Garage node 0.
fn put_object(garage: &Garage, key: &str, bytes: &str) {
    use object_store::{ObjectStoreExt, PutPayload};
    let bucket = garage::bucket(garage, 0);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let path = object_store::path::Path::from(key);
        bucket.put(&path, PutPayload::from(bytes.to_string())).await.expect("put");
    });
}

#[test]
fn a_tampered_manifest_type_in_the_bucket_is_quarantined_and_the_manifest_served_with_its_own_type() {
    let mut up = Upstream::start();
    let dir = TestDir::new("tampered-type-s3");
    let hello = images::hello(&up, dir.path());
    let docker2 = images::docker2(&up, dir.path());
    let garage = Garage::start();
    let creds = dir.subdir("creds");
    let mut server =
        Server::start_with(ServerConfig::for_upstream(&up.url()).extra(&garage.storage_yaml(0, &creds, "64Mi")));
    for (i, image) in [&hello, &docker2].into_iter().enumerate() {
        skopeo::pull_verified(&server.url(), image, &image.reference(), &dir.path().join(format!("before-{i}")));
    }
    server.stop();
    up.stop();

    let key = |image: &Image| format!("manifests/sha256/{}.type", image.digest.trim_start_matches("sha256:"));
    let tampered = [(&hello, "text/html"), (&docker2, OCI_INDEX)];
    for (image, bad) in tampered {
        put_object(&garage, &key(image), bad);
    }
    server.restart();

    for (image, bad) in tampered {
        assert_served_with_its_type(&server, image);
        let kept: Vec<_> =
            garage::objects(&garage, 0, "manifests/").into_iter().filter(|(k, _)| *k == key(image)).collect();
        assert_eq!(kept, vec![(key(image), image.media_type.clone().into_bytes())], "written again from the content");
        let name = key(image).replace('/', "_");
        let aside: Vec<_> = garage::objects(&garage, 0, "quarantine/")
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("quarantine/{name}.")))
            .map(|(_, bytes)| String::from_utf8_lossy(&bytes).into_owned())
            .collect();
        // The scan and a request's lookup during the load may both find it (a bucket has no compare-and-move):
        // a copy each, of the same bytes.
        assert!(!aside.is_empty() && aside.iter().all(|a| a == bad), "{}: moved aside: {aside:?}", image.reference());
    }
}
