//! Replicas sharing one S3-compatible store (a real 3-node Garage cluster on loopback): one upstream fetch per digest
//! across the cluster during a pull storm, a fresh replica that serves everything with the upstream gone, pulls that
//! survive a Garage node going down, and a leading replica killed mid-fetch whose transfer the others finish.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::commands::ociregistry_ok;
use common::fault_proxy::{FaultProxy, Mode};
use common::garage::{self, Garage};
use common::http::{self, StatusCode};
use common::images::{self, Image};
use common::ports::free_port;
use common::server::{Server, ServerConfig};
use common::storm::pull_like_containerd;
use common::upstream::Upstream;
use common::{sha256_digest, skopeo, wait_for, TestDir};

/// A replica's base URL on `port`.
fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The replicas in the order the cluster asks them for `digest` (rendezvous hashing, as the server computes it).
fn owners(peers: &[String], digest: &str) -> Vec<String> {
    use sha2::Digest as _;
    let mut scored: Vec<(Vec<u8>, String)> = peers
        .iter()
        .map(|p| {
            let mut h = sha2::Sha256::new();
            h.update(p.as_bytes());
            h.update([0]);
            h.update(digest.as_bytes());
            (h.finalize().to_vec(), p.clone())
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0));
    scored.into_iter().map(|(_, p)| p).collect()
}

/// One replica on `port`, its bucket reached through Garage node `node`, in a cluster of `peers` (none: alone).
fn replica(garage: &Garage, node: usize, upstream_url: &str, port: u16, peers: &[String], dir: &TestDir) -> Server {
    let creds = dir.subdir(&format!("creds-{port}"));
    let mut config = ServerConfig::for_upstream(upstream_url).extra(&garage.storage_yaml(node, &creds, "256Mi"));
    if !peers.is_empty() {
        let list: String = peers.iter().map(|p| format!("    - {p}\n")).collect();
        config = config.extra(&format!("cluster:\n  self: {}\n  peers:\n{list}", url(port)));
    }
    config.port = Some(port);
    Server::start_with(config)
}

/// Every blob object in the bucket holds the bytes its key names; returns the digests found.
fn assert_bucket_intact(garage: &Garage, node: usize) -> Vec<String> {
    let mut found = Vec::new();
    for (key, bytes) in garage::objects(garage, node, "blobs/") {
        let hex = key.rsplit('/').next().unwrap_or_default();
        let digest = format!("sha256:{hex}");
        assert_eq!(sha256_digest(&bytes), digest, "bucket object {key} does not hold the bytes its key names");
        found.push(digest);
    }
    found
}

/// Upstream GETs of each of `image`'s blobs and of its manifests (by tag or digest).
fn upstream_gets(up: &Upstream, image: &Image, baseline: usize) -> (Vec<(String, usize)>, usize) {
    up.settle_log();
    let log: Vec<_> = up.access_log().into_iter().skip(baseline).collect();
    let blobs = image
        .blobs()
        .iter()
        .map(|b| {
            let path = format!("/v2/{}/blobs/{}", image.repo, b.digest);
            (b.digest.clone(), log.iter().filter(|e| e.method == "GET" && e.path() == path).count())
        })
        .collect();
    let manifests = log
        .iter()
        .filter(|e| e.method == "GET" && e.path().starts_with(&format!("/v2/{}/manifests/", image.repo)))
        .count();
    (blobs, manifests)
}

const CLIENTS_PER_REPLICA: usize = 30;

#[test]
fn replicas_fetch_each_digest_once_and_serve_from_the_bucket_alone() {
    let mut garage = Garage::start();
    let mut up = Upstream::start();
    let dir = TestDir::new("scaleout");
    let image = images::custom(&up, dir.path(), "library/scale:1", &[3 << 20, 1 << 20, 50_000]);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers: Vec<String> = ports.iter().map(|p| url(*p)).collect();
    let replicas: Vec<Server> =
        ports.iter().enumerate().map(|(i, port)| replica(&garage, i, &up.url(), *port, &peers, &dir)).collect();
    up.settle_log();
    let baseline = up.access_log().len();

    // 30 clients on each replica, all starting at once, pulling the cold image the way containerd does.
    let start = Arc::new(Barrier::new(3 * CLIENTS_PER_REPLICA));
    let threads: Vec<_> = replicas
        .iter()
        .flat_map(|r| std::iter::repeat_n(r.url(), CLIENTS_PER_REPLICA))
        .map(|server| {
            let (image, start) = (image.clone(), start.clone());
            std::thread::spawn(move || pull_like_containerd(&server, &image, &start))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("client thread"), image.digest, "a client got another manifest");
    }

    let (blobs, manifests) = upstream_gets(&up, &image, baseline);
    for (digest, gets) in &blobs {
        assert_eq!(*gets, 1, "upstream GETs of blob {digest} across 3 replicas");
    }
    assert_eq!(manifests, 1, "upstream manifest GETs across 3 replicas");
    // (Clients finish as soon as the bytes are verified; the upload to the bucket follows.)
    wait_for("every blob in the bucket", Duration::from_secs(60), || {
        let stored = assert_bucket_intact(&garage, 0);
        image.blobs().iter().all(|b| stored.contains(&b.digest)).then_some(())
    });

    // The upstream goes away; a replica started now, with an empty disk, serves the image from the bucket at once.
    up.stop();
    let fresh = replica(&garage, 1, "http://127.0.0.1:9", free_port(), &[], &dir);
    skopeo::pull_verified(&fresh.url(), &image, "docker.io/library/scale:1", &dir.subdir("fresh"));

    // One Garage node down: a replica with an empty disk still pulls everything (Garage keeps three copies).
    garage.kill_node(2);
    let after = replica(&garage, 0, "http://127.0.0.1:9", free_port(), &[], &dir);
    skopeo::pull_verified(&after.url(), &image, "docker.io/library/scale:1", &dir.subdir("node-down"));
    // And a replica of the cluster still serves its clients.
    skopeo::pull_verified(&replicas[1].url(), &image, "docker.io/library/scale:1", &dir.subdir("cluster"));

    // `list` on a stopped replica's config lists what the bucket holds (it waits for the listing of the bucket).
    let mut after = after;
    after.stop();
    let listed = ociregistry_ok(after.config_file(), &["list"]);
    assert!(listed.stdout.contains("library/scale"), "list with an s3 store:\n{}", listed.stdout);
}

/// A client that GETs a blob from the replicas in `order` and counts the bytes it received into `received`; a
/// replica that dies mid-answer is left for the next (a client's retry). Returns the verified bytes' length and how
/// many replicas it had to try.
fn pull_blob_retrying(
    order: Vec<String>,
    repo: &str,
    digest: &str,
    received: &AtomicU64,
    start: &Barrier,
) -> (usize, usize) {
    use std::io::Read;
    let client = http::client();
    start.wait();
    let mut last = String::new();
    for (tries, server) in order.iter().enumerate() {
        let url = format!("{server}/v2/{repo}/blobs/{digest}?ns=docker.io");
        let mut resp = match client.get(&url).send() {
            Ok(resp) if resp.status() == StatusCode::OK => resp,
            Ok(resp) => {
                last = format!("GET {url}: {}", resp.status());
                continue;
            }
            Err(e) => {
                last = format!("GET {url}: {e:#}");
                continue;
            }
        };
        let mut body = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        let complete = loop {
            match resp.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    body.extend_from_slice(&buf[..n]);
                    received.fetch_add(n as u64, Ordering::SeqCst);
                }
                Err(e) => {
                    last = format!("GET {url} broke after {} bytes: {e}", body.len());
                    break false;
                }
            }
        };
        if complete {
            assert_eq!(sha256_digest(&body), digest, "GET {url}: bytes do not match the digest");
            return (body.len(), tries + 1);
        }
    }
    panic!("no replica gave blob {digest}: {last}");
}

#[test]
fn a_killed_owner_mid_fetch_hands_the_transfer_over() {
    let garage = Garage::start();
    let mut up = Upstream::start();
    let dir = TestDir::new("handover");
    let layer = 24 << 20;
    let image = images::custom(&up, dir.path(), "library/handover:1", &[layer]);
    // A slow link to the upstream: the owner's fetch runs for several seconds.
    let link = FaultProxy::start(up.port());
    link.set(Mode::Throttle(3 << 20));
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers: Vec<String> = ports.iter().map(|p| url(*p)).collect();
    let mut replicas: Vec<Server> =
        ports.iter().enumerate().map(|(i, port)| replica(&garage, i, &link.url(), *port, &peers, &dir)).collect();
    let (big, big_size) = (image.manifest().layers[0].digest.clone(), image.manifest().layers[0].size);
    let order = owners(&peers, &big);
    let owner = peers.iter().position(|p| *p == order[0]).expect("owner is a replica");
    up.settle_log();
    let baseline = up.access_log().len();

    // 8 clients on each replica; each falls back to the other replicas (in the cluster's order) if its own dies.
    let received = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(3 * 8 + 1));
    let threads: Vec<_> = (0..3)
        .flat_map(|i| std::iter::repeat_n(i, 8))
        .map(|i| {
            let mut try_order = vec![peers[i].clone()];
            try_order.extend(order.iter().filter(|p| **p != peers[i]).cloned());
            let (repo, digest, received, start) = (image.repo.clone(), big.clone(), received.clone(), start.clone());
            std::thread::spawn(move || (i, pull_blob_retrying(try_order, &repo, &digest, &received, &start)))
        })
        .collect();
    start.wait();
    // Mid-fetch: once the clients got a few MiB between them, the owner dies.
    wait_for("clients to receive the first bytes", Duration::from_secs(60), || {
        (received.load(Ordering::SeqCst) > 8 << 20).then_some(())
    });
    replicas[owner].signal("KILL");
    let killed_at = received.load(Ordering::SeqCst);

    for t in threads {
        let (i, (len, tries)) = t.join().expect("client thread");
        assert_eq!(len as u64, big_size, "client of replica {i} got a short blob");
        if i != owner {
            assert_eq!(tries, 1, "a client of surviving replica {i} had to retry elsewhere");
        }
    }
    assert!(received.load(Ordering::SeqCst) > killed_at, "nothing was served after the kill");

    // The blob was fetched by the owner, then the rest once by the replica next in line: never more than twice.
    let (blobs, _) = upstream_gets(&up, &image, baseline);
    let gets = blobs.iter().find(|(d, _)| *d == big).map_or(0, |(_, n)| *n);
    assert!((1..=2).contains(&gets), "upstream GETs of the big layer after the owner died: {gets}");

    // Nothing corrupt is stored, and a whole pull through a survivor takes the layer from the cache.
    // (Clients finish as soon as the bytes are verified; the upload to the bucket follows.)
    wait_for("the big layer in the bucket", Duration::from_secs(60), || {
        assert_bucket_intact(&garage, 0).contains(&big).then_some(())
    });
    let survivor = (owner + 1) % 3;
    skopeo::pull_verified(&replicas[survivor].url(), &image, "docker.io/library/handover:1", &dir.subdir("after"));
    let (blobs, _) = upstream_gets(&up, &image, baseline);
    let after = blobs.iter().find(|(d, _)| *d == big).map_or(0, |(_, n)| *n);
    assert_eq!(after, gets, "the big layer was fetched from the upstream again after the handover");
    up.stop();
    replicas[owner].wait_exit(Duration::from_secs(5));
}

/// `serve` with this config: its exit code and standard error, or `None` if it was still running after 30 s.
fn serve_exit(config: &std::path::Path) -> Option<(Option<i32>, String)> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ociregistry"))
        .arg("--config-file")
        .arg(config)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ociregistry");
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut stderr = String::new();
            use std::io::Read;
            let _ = child.stderr.take().expect("stderr").read_to_string(&mut stderr);
            return Some((status.code(), stderr));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_missing_bucket_or_refused_key_stops_the_start_naming_it() {
    let garage = Garage::start();
    let dir = TestDir::new("s3-start");
    let creds = dir.subdir("creds");
    let base = |storage: &str| {
        format!(
            "imagePath: {}\nhost: 127.0.0.1\nport: {}\nregistries: []\n{storage}",
            dir.subdir("cache").display(),
            free_port()
        )
    };
    let good = garage.storage_yaml(0, &creds, "64Mi");

    let config = dir.path().join("no-bucket.yaml");
    std::fs::write(&config, base(&good.replace("bucket: ociregistry", "bucket: no-such-bucket"))).expect("write");
    let (code, stderr) = serve_exit(&config).expect("serve must not start on a missing bucket");
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("storage.s3") && stderr.contains("no-such-bucket"), "{stderr}");

    let wrong = dir.subdir("wrong");
    let refused = garage.storage_yaml(0, &wrong, "64Mi");
    std::fs::write(wrong.join("s3-secret-access-key"), "0".repeat(64)).expect("write secret");
    let config = dir.path().join("refused.yaml");
    std::fs::write(&config, base(&refused)).expect("write");
    let (code, stderr) = serve_exit(&config).expect("serve must not start with refused credentials");
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("storage.s3"), "{stderr}");
    assert!(!stderr.contains(&garage.secret_access_key), "the secret leaked: {stderr}");
}
