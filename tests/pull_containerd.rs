//! containerd (`ctr images pull`) through a hosts.toml `_default` mirror that
//! points at our server: the production path. The fallback server in
//! hosts.toml never answers, so a pull can only succeed through our server.

mod common;

use common::containerd::Containerd;
use common::images;
use common::server::Server;
use common::upstream::Upstream;
use common::TestDir;

#[test]
fn oci_image_pulls_and_unpacks() {
    let up = Upstream::start();
    let dir = TestDir::new("pull-containerd");
    let hello = images::hello(&up, dir.path());
    let server = Server::start(&up.url());
    let ctr = Containerd::start();
    ctr.set_mirror(&server.url());

    ctr.pull(&hello.reference());
    assert_eq!(ctr.image_digest(&hello.reference()), Some(hello.digest.clone()));
    let content = ctr.content();
    for b in hello.blobs() {
        assert!(content.contains(&b.digest), "{} not pulled", b.digest);
    }
    assert_eq!(ctr.snapshot_count(), 3, "three layers unpacked");

    // Pull again after removing it: served from our cache, the upstream sees
    // no second blob GET.
    ctr.rm(&hello.reference());
    assert!(!ctr.content().contains(&hello.manifest().layers[0].digest));
    ctr.pull(&hello.reference());
    assert_eq!(ctr.image_digest(&hello.reference()), Some(hello.digest.clone()));
    up.settle_log();
    for b in hello.blobs() {
        let path = format!("/v2/library/hello/blobs/{}", b.digest);
        assert_eq!(up.access_log_count("GET", &path), 1, "upstream GETs of {path}");
    }
}

#[test]
fn docker_schema2_image_pulls() {
    let up = Upstream::start();
    let dir = TestDir::new("pull-containerd");
    let docker2 = images::docker2(&up, dir.path());
    let server = Server::start(&up.url());
    let ctr = Containerd::start();
    ctr.set_mirror(&server.url());

    ctr.pull(&docker2.reference());
    assert_eq!(ctr.image_digest(&docker2.reference()), Some(docker2.digest.clone()));
    let content = ctr.content();
    for b in docker2.blobs() {
        assert!(content.contains(&b.digest), "{} not pulled", b.digest);
    }
    assert_eq!(ctr.snapshot_count(), 2);
}

#[test]
fn index_pulls_one_platform_then_the_other() {
    let up = Upstream::start();
    let dir = TestDir::new("pull-containerd");
    let multi = images::multi(&up, dir.path());
    let server = Server::start(&up.url());
    let ctr = Containerd::start();
    ctr.set_mirror(&server.url());
    let arm = multi.platform("linux/arm64");
    let amd = multi.platform("linux/amd64");

    ctr.pull_platform(&multi.reference(), "linux/arm64");
    assert_eq!(ctr.image_digest(&multi.reference()), Some(multi.digest.clone()));
    let content = ctr.content();
    assert!(content.contains(&multi.digest));
    assert!(content.contains(&arm.digest));
    for b in arm.blobs() {
        assert!(content.contains(&b.digest), "arm64 {} not pulled", b.digest);
    }
    for b in &amd.layers {
        assert!(!content.contains(&b.digest), "amd64 {} pulled too", b.digest);
    }

    ctr.pull_platform(&multi.reference(), "linux/amd64");
    let content = ctr.content();
    assert!(content.contains(&amd.digest));
    for b in amd.blobs() {
        assert!(content.contains(&b.digest), "amd64 {} not pulled", b.digest);
    }

    // Every platform at once, from a clean content store.
    ctr.rm(&multi.reference());
    assert!(!ctr.content().contains(&arm.layers[0].digest));
    ctr.pull_all_platforms(&multi.reference());
    let content = ctr.content();
    for b in multi.blobs() {
        assert!(content.contains(&b.digest), "{} not pulled", b.digest);
    }
}
