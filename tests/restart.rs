//! The cache survives a restart: after pulling everything once, our server is
//! stopped, the upstream is stopped for good, and a new server process on the
//! same cache dir still serves every image to skopeo and containerd.

mod common;

use common::containerd::Containerd;
use common::images;
use common::server::Server;
use common::upstream::Upstream;
use common::{skopeo, TestDir};

#[test]
fn cached_images_pull_after_restart_without_upstream() {
    let mut up = Upstream::start();
    let dir = TestDir::new("restart");
    let f = images::fixture(&up, dir.path());
    let mut server = Server::start(&up.url());

    for (i, image) in f.all().into_iter().enumerate() {
        skopeo::pull_verified(&server.url(), image, &image.reference(), &dir.path().join(format!("before-{i}")));
    }

    server.stop();
    up.stop();
    server.restart();

    for (i, image) in f.all().into_iter().enumerate() {
        skopeo::pull_verified(&server.url(), image, &image.reference(), &dir.path().join(format!("tag-{i}")));
        skopeo::pull_verified(&server.url(), image, &image.digest_reference(), &dir.path().join(format!("digest-{i}")));
    }

    let ctr = Containerd::start();
    ctr.set_mirror(&server.url());
    for image in [&f.hello, &f.docker2, &f.big] {
        ctr.pull(&image.reference());
        assert_eq!(ctr.image_digest(&image.reference()), Some(image.digest.clone()));
    }
    ctr.pull_all_platforms(&f.multi.reference());
    assert_eq!(ctr.image_digest(&f.multi.reference()), Some(f.multi.digest.clone()));
    let content = ctr.content();
    for image in f.all() {
        for b in image.blobs() {
            assert!(content.contains(&b.digest), "{}: {} not pulled", image.reference(), b.digest);
        }
    }
}
