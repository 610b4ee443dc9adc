//! An upstream that sends bad bytes (wrong content, or half a body and a
//! closed connection): our server never hands a client a clean, complete
//! response with those bytes (the client sees an aborted transfer or an
//! error status), and caches nothing, so the next request goes upstream
//! again. Once the upstream is healthy, the blob is served and cached.

mod common;

use std::path::Path;
use std::time::Duration;

use common::fake_upstream::{Behaviour, FakeUpstream};
use common::http::{self, Outcome};
use common::images::random_bytes;
use common::server::Server;
use common::wait_for;

/// Files under `dir` (recursively) whose name contains `hex`.
fn files_named_for(dir: &Path, hex: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().contains(hex) {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

/// `resumed`: the upstream breaks the connection (rather than sending wrong bytes), so each attempt also tries to
/// resume the transfer a few times before giving up; the number of upstream GETs per attempt is then not one.
fn bad_upstream_is_not_cached(behaviour: Behaviour, resumed: bool) {
    let fake = FakeUpstream::start("library/bad", "1", random_bytes(1 << 20), behaviour);
    let server = Server::start(&fake.url());
    let client = http::client();
    let base = format!("{}/v2/library/bad", server.url());
    // The manifest is fine; only the layer is bad.
    http::get_verified(&client, &format!("{base}/manifests/1?ns=docker.io"), fake.manifest_digest());
    let url = format!("{base}/blobs/{}?ns=docker.io", fake.blob_digest());
    let hex = fake.blob_digest().trim_start_matches("sha256:").to_string();

    let mut gets = 0;
    for attempt in 1..=2 {
        // Aborted or cut short, or an error status (e.g. 502): the client
        // knows it failed. A 2xx that ends cleanly would hand it bad bytes
        // as a complete blob (the last byte must wait for verification).
        match http::get_outcome(&client, &url) {
            Outcome::Failed(_) => {}
            Outcome::Complete { status, .. } if !status.is_success() => {}
            clean => panic!("attempt {attempt}: bad upstream bytes passed as complete: {clean:?}"),
        }
        if resumed {
            assert!(fake.blob_gets() > gets, "attempt {attempt}: nothing cached, so each request goes upstream");
        } else {
            assert_eq!(fake.blob_gets(), gets + 1, "attempt {attempt}: nothing cached, so each request goes upstream");
        }
        gets = fake.blob_gets();
        // No cache file named for the digest. A dropped download keeps its bytes in tmp/ to be resumed, never
        // served; bytes that failed verification are not kept at all.
        wait_for("no cache file named for the bad blob", Duration::from_secs(5), || {
            let files = files_named_for(server.cache_dir(), &hex);
            let kept = files.iter().filter(|f| f.contains("/tmp/partial-")).count();
            let allowed = if resumed { kept } else { 0 };
            (files.len() == allowed).then_some(())
        });
    }

    // The upstream recovers: the blob is served and cached.
    fake.set_behaviour(Behaviour::Normal);
    let body = http::get_verified(&client, &url, fake.blob_digest());
    assert_eq!(body, fake.blob());
    assert_eq!(fake.blob_gets(), gets + 1);
    let body = http::get_verified(&client, &url, fake.blob_digest());
    assert_eq!(body, fake.blob());
    assert_eq!(fake.blob_gets(), gets + 1, "the good copy is served from the cache");
}

#[test]
fn corrupt_blob_is_never_served_clean_nor_cached() {
    bad_upstream_is_not_cached(Behaviour::CorruptBlob, false);
}

#[test]
fn dropped_connection_is_never_served_clean_nor_cached() {
    bad_upstream_is_not_cached(Behaviour::DropMidway, true);
}
