//! Many clients pull the same uncached image at the same moment, the way
//! containerd does it; our server fetches each manifest and blob from the
//! upstream exactly once and every client gets verified bytes.

mod common;

use common::images;
use common::server::Server;
use common::storm::storm;
use common::upstream::Upstream;
use common::TestDir;

const CLIENTS: usize = 30;

#[test]
fn concurrent_cold_pulls_fetch_upstream_once() {
    let up = Upstream::start();
    let dir = TestDir::new("storm");
    // Layers big enough that the clients overlap the upstream fetches.
    let image = images::custom(&up, dir.path(), "library/storm:1", &[3 << 20, 1 << 20, 50_000]);
    let server = Server::start(&up.url());
    up.settle_log();
    let baseline = up.access_log().len();

    storm(&server.url(), &image, CLIENTS);

    up.settle_log();
    let log: Vec<_> = up.access_log().into_iter().skip(baseline).collect();
    for blob in image.blobs() {
        let path = format!("/v2/library/storm/blobs/{}", blob.digest);
        let gets = log.iter().filter(|e| e.method == "GET" && e.path() == path).count();
        assert_eq!(gets, 1, "upstream GETs of {path}; log: {log:#?}");
    }
    let manifest_gets =
        log.iter().filter(|e| e.method == "GET" && e.path().starts_with("/v2/library/storm/manifests/")).count();
    assert_eq!(manifest_gets, 1, "upstream manifest GETs; log: {log:#?}");
}
