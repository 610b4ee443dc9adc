//! Tests of the test harness itself, against the real registry only (no
//! ociregistry involved): they prove the generated fixture is valid for
//! skopeo and containerd, and that the access-log counting works.

mod common;

use common::containerd::Containerd;
use common::images::{self, Format};
use common::upstream::{parse_access_line, Upstream};
use common::{skopeo, TestDir};

#[test]
fn access_log_lines_parse() {
    let e = parse_access_line(
        r#"127.0.0.1 - - [27/Nov/2026:23:47:03 +0000] "HEAD /v2/library/x/blobs/sha256:00?ns=docker.io HTTP/1.1" 404 157 "" "curl/7.88.1""#,
    )
    .expect("parses");
    assert_eq!(e.method, "HEAD");
    assert_eq!(e.target, "/v2/library/x/blobs/sha256:00?ns=docker.io");
    assert_eq!(e.path(), "/v2/library/x/blobs/sha256:00");
    assert_eq!(e.status, 404);
    assert!(parse_access_line(r#"time="2026" level=info msg="listening""#).is_none());
}

/// Push the whole fixture, then copy every image back with skopeo directly
/// from the registry: every blob hashes to its name and every manifest digest
/// is the one the registry reported.
#[test]
fn fixture_round_trips_through_skopeo() {
    let up = Upstream::start();
    let dir = TestDir::new("harness");
    let f = images::fixture(&up, dir.path());

    assert_eq!(f.hello.media_type, images::OCI_MANIFEST);
    assert_eq!(f.hello.manifest().layers.len(), 3);
    assert_eq!(f.docker2.media_type, images::DOCKER_MANIFEST);
    assert_eq!(f.docker2.manifest().layers.len(), 2);
    assert!(f
        .docker2
        .manifest()
        .layers
        .iter()
        .all(|l| l.media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"));
    assert_eq!(f.multi.media_type, images::OCI_INDEX);
    assert_eq!(f.multi.platform("linux/amd64").platform.as_deref(), Some("linux/amd64"));
    assert_eq!(f.multi.platform("linux/arm64").platform.as_deref(), Some("linux/arm64/v8"));
    assert!(f.big.manifest().layers[0].size > 32 << 20);

    for image in f.all() {
        let src = format!("{}:{}", image.repo, image.tag);
        let dest = dir.path().join(image.repo.replace('/', "_"));
        skopeo::pull_verified(&up.url(), image, &src, &dest);
    }
    // Through `oci:` skopeo converts schema2 to OCI: a different digest.
    let dest = dir.path().join("oci-docker2");
    skopeo::copy_from(&up.url(), "library/docker2:v1", &dest, false);
    let pulled = skopeo::verify_oci_layout(&dest);
    assert_ne!(pulled.top, f.docker2.digest);
    for layer in &f.docker2.manifest().layers {
        assert!(pulled.digests.contains(&layer.digest));
    }

    // Access-log counting sees skopeo's blob GETs.
    up.settle_log();
    let layer = &f.big.manifest().layers[0].digest;
    assert_eq!(up.access_log_count("GET", &format!("/v2/library/big/blobs/{layer}")), 1);
    assert_eq!(up.access_log_count("PUT", "/v2/library/hello/manifests/latest"), 1, "the push of hello");
}

/// containerd pulls the fixture directly from the registry through a
/// hosts.toml `_default` mirror: the images unpack (diff_ids are right), and
/// the requests have the shapes our server must answer.
#[test]
fn containerd_pulls_fixture_through_hosts_toml() {
    let up = Upstream::start();
    let dir = TestDir::new("harness");
    let hello = images::hello(&up, dir.path());
    let docker2 = images::docker2(&up, dir.path());
    let multi = images::multi(&up, dir.path());
    let ctr = Containerd::start();
    ctr.set_mirror(&up.url());

    ctr.pull(&hello.reference());
    assert_eq!(ctr.image_digest(&hello.reference()), Some(hello.digest.clone()));
    let content = ctr.content();
    for b in hello.blobs() {
        assert!(content.contains(&b.digest), "{} not in content store", b.digest);
    }
    assert_eq!(ctr.snapshot_count(), 3, "hello's three layers unpacked");

    ctr.pull(&docker2.reference());
    assert_eq!(ctr.image_digest(&docker2.reference()), Some(docker2.digest.clone()));

    ctr.pull_platform(&multi.reference(), "linux/arm64");
    let content = ctr.content();
    let arm = multi.platform("linux/arm64");
    let amd = multi.platform("linux/amd64");
    assert!(content.contains(&arm.digest));
    assert!(arm.blobs().iter().all(|b| content.contains(&b.digest)));
    assert!(!amd.layers.iter().any(|b| content.contains(&b.digest)));

    up.settle_log();
    let log = up.access_log();
    let head = log
        .iter()
        .find(|e| e.method == "HEAD" && e.path() == "/v2/library/hello/manifests/latest")
        .expect("containerd resolves a tag with HEAD");
    assert!(head.target.ends_with("?ns=docker.io"), "{head:?}");
    let blob = &hello.manifest().layers[0].digest;
    assert_eq!(up.access_log_count("GET", &format!("/v2/library/hello/blobs/{blob}")), 1);

    // After `rm --sync`, a new pull fetches the blobs again.
    ctr.rm(&hello.reference());
    assert!(!ctr.content().contains(blob));
    ctr.pull(&hello.reference());
    up.settle_log();
    assert_eq!(up.access_log_count("GET", &format!("/v2/library/hello/blobs/{blob}")), 2);
}

/// The fallback server in hosts.toml never answers: with the mirror down, a
/// pull fails (it cannot sneak around the mirror).
#[test]
fn containerd_pull_fails_without_mirror() {
    let ctr = Containerd::start();
    ctr.set_mirror(&format!("http://127.0.0.1:{}", common::ports::closed_port()));
    assert!(ctr.try_pull("docker.io/library/hello:latest").is_err());
}

/// An index can be pushed with every platform, and Docker schema2 conversion
/// keeps the layer bytes.
#[test]
fn push_formats() {
    let up = Upstream::start();
    let dir = TestDir::new("harness");
    let layout = images::image_layout(&dir.path().join("l"), "t", &[1000]);
    images::push(layout.dir(), "t", &up, "library/a:oci", Format::Oci);
    images::push(layout.dir(), "t", &up, "library/a:v2", Format::V2s2);
    let oci = images::read_back(&up.url(), "library/a", "oci");
    let v2 = images::read_back(&up.url(), "library/a", "v2");
    assert_eq!(oci.media_type, images::OCI_MANIFEST);
    assert_eq!(v2.media_type, images::DOCKER_MANIFEST);
    assert_ne!(oci.digest, v2.digest);
    assert_eq!(oci.manifest().layers[0].digest, v2.manifest().layers[0].digest);
}

mod fake {
    use std::io::Read;

    use crate::common::fake_upstream::{Behaviour, FakeUpstream};
    use crate::common::images::random_bytes;
    use crate::common::{http, sha256_digest};

    fn get_blob(up: &FakeUpstream) -> Result<Vec<u8>, String> {
        let url = format!("{}/v2/{}/blobs/{}", up.url(), up.repo(), up.blob_digest());
        let resp = http::client().get(url).send().map_err(|e| e.to_string())?;
        assert_eq!(resp.status(), 200);
        let mut body = Vec::new();
        resp.take(u64::MAX).read_to_end(&mut body).map_err(|e| e.to_string())?;
        Ok(body)
    }

    #[test]
    fn serves_manifest_and_blob() {
        let up = FakeUpstream::start("library/f", "1", random_bytes(10_000), Behaviour::Normal);
        let client = http::client();
        let r = client.get(format!("{}/v2/", up.url())).send().unwrap();
        assert_eq!(r.status(), 200);
        for reference in ["1", up.manifest_digest()] {
            let r = client.get(format!("{}/v2/library/f/manifests/{reference}", up.url())).send().unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(http::header(&r, "Docker-Content-Digest"), up.manifest_digest());
            assert_eq!(r.bytes().unwrap().as_ref(), up.manifest());
        }
        let r = client
            .head(format!("{}/v2/library/f/manifests/1?ns=docker.io", up.url()))
            .header("X-Probe", "yes")
            .send()
            .unwrap();
        assert_eq!(http::header(&r, "Content-Length"), up.manifest().len().to_string());
        assert_eq!(get_blob(&up).unwrap(), up.blob());
        let r = client.get(format!("{}/v2/library/f/blobs/{}", up.url(), sha256_digest(b"x"))).send().unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(up.blob_gets(), 1);
        assert_eq!(up.count("HEAD", "/manifests/1"), 1);
        let probe = up.requests().into_iter().find(|r| r.method == "HEAD").unwrap();
        assert_eq!(probe.header("x-probe"), Some("yes"));
        assert!(probe.target.ends_with("?ns=docker.io"));
    }

    #[test]
    fn corrupts_and_drops() {
        let up = FakeUpstream::start("library/f", "1", random_bytes(100_000), Behaviour::CorruptBlob);
        let body = get_blob(&up).expect("a complete body");
        assert_eq!(body.len(), up.blob().len());
        assert_ne!(sha256_digest(&body), up.blob_digest());

        up.set_behaviour(Behaviour::DropMidway);
        match get_blob(&up) {
            Err(_) => {}
            Ok(body) => assert!(body.len() < up.blob().len(), "short body"),
        }
        assert_eq!(up.blob_gets(), 2);
    }

    #[test]
    fn trickles() {
        let up = FakeUpstream::start(
            "library/f",
            "1",
            random_bytes(64 * 1024),
            Behaviour::Trickle { bytes_per_sec: 128 * 1024, chunk: 8 * 1024 },
        );
        // 64 KiB in 8 KiB pieces with pauses: the body still arrives whole.
        assert_eq!(get_blob(&up).unwrap(), up.blob());
        assert_eq!(up.blob_gets(), 1);
    }
}
