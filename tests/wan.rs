//! The mirror over a thin uplink (issue 23, item 1): a real `docker-registry` upstream whose answers cross a
//! 20 Mbit/s link emulated in a private network namespace (tests/common/wan.rs), the real mirror and real clients in
//! the same namespace on 127.0.0.1. Sized for CI; the full-size figures, side by side with distribution's proxy, are
//! the `wan` section of `scripts/bench`. Bounds here are generous: they show the feature works, not its speed.
//!
//! - the emulator itself: a shaped port runs at the link's rate, an unshaped one does not, and the link counts what
//!   crossed it (the calibration for the byte ratios below);
//! - a cold rollout: ten clients (one of them `ctr`) pull a fresh ~10 MB image at once: it crosses the link once,
//!   at link speed, and every client gets it whole;
//! - head of line: while a large uncached layer fills the link, a tag check and an uncached small manifest answer
//!   within a second;
//! - a restart in the middle of a layer: the mirror killed when half the layer has crossed, restarted on the same
//!   cache, resumes with a `Range` request: the layer crosses the link about once.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use common::containerd::Containerd;
use common::http::{self, StatusCode};
use common::images::Image;
use common::server::{Server, ServerConfig};
use common::storm::storm;
use common::upstream::Upstream;
use common::wan::{Link, Wan};
use common::TestDir;

const MB: usize = 1024 * 1024;
/// The link: 20 Mbit/s, as in the issue.
const RATE: u64 = 20_000_000;

/// Bytes a pull of `image` moves: the manifest, the config and the layers.
fn image_bytes(image: &Image) -> u64 {
    image.bytes.len() as u64 + image.blobs().iter().map(|b| b.size).sum::<u64>()
}

/// A raw TCP server that writes `n` bytes to each connection and closes it; its listener bound on the thread it
/// runs on (so a thread started after `Wan::enter` must be inside for the client to reach it).
fn byte_server(n: usize) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a byte server");
        tx.send(listener.local_addr().expect("local addr").port()).expect("send port");
        let payload = vec![0x5au8; n];
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.write_all(&payload);
        }
    });
    rx.recv().expect("byte server port")
}

/// Download everything port `port` sends; returns the byte count and how long it took.
fn download(port: u16) -> (usize, Duration) {
    let start = Instant::now();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect to a byte server");
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf).expect("read a byte server");
    (buf.len(), start.elapsed())
}

#[test]
fn the_emulator_shapes_a_port_at_the_link_rate_and_leaves_the_others_alone() {
    let wan = Wan::new();
    wan.enter();
    let link = wan.link(RATE);
    let (shaped, unshaped) = (byte_server(5 * MB), byte_server(20 * MB));
    link.shape(shaped);

    let before = link.bytes();
    let (n, took) = download(shaped);
    let crossed = link.bytes() - before;
    let expected = link.seconds_for(n as u64);
    eprintln!(
        "wan: {n} bytes from the shaped port in {:.2} s (link time {expected:.2} s); the link counted {crossed} bytes ({:.4}x)",
        took.as_secs_f64(),
        crossed as f64 / n as f64
    );
    assert_eq!(n, 5 * MB);
    assert!(
        took.as_secs_f64() > 0.8 * expected && took.as_secs_f64() < 1.5 * expected + 0.5,
        "a shaped download of {n} bytes took {took:?}, the link's rate says {expected:.2} s"
    );
    assert!(
        crossed >= n as u64 && crossed as f64 <= 1.01 * n as f64,
        "the link counted {crossed} bytes for a {n}-byte download"
    );

    let before = link.bytes();
    let (n, took) = download(unshaped);
    eprintln!("wan: {n} bytes from an unshaped port in {:.3} s", took.as_secs_f64());
    assert_eq!(n, 20 * MB);
    assert!(took.as_secs_f64() < 0.25 * link.seconds_for(n as u64), "an unshaped download was slowed: {took:?}");
    assert!(link.bytes() - before < 64 * 1024, "an unshaped download went through the link");
}

/// Upstream started inside `wan`, `images` pushed to it, then its answers shaped by a new 20 Mbit/s link.
fn shaped_upstream(wan: &Wan, work: &TestDir, images: &[(&str, &[usize])]) -> (Upstream, Vec<Image>, Link) {
    common::wan::shaped_registry(wan, work, images, RATE)
}

#[test]
fn a_cold_rollout_to_ten_clients_crosses_the_link_once_at_link_speed() {
    let wan = Wan::new();
    wan.enter();
    let work = TestDir::new("wan-cold");
    let (_up, pushed, link) = shaped_upstream(&wan, &work, &[("library/wan-cold:1", &[8 * MB, 2 * MB, 40_000])]);
    let image = &pushed[0];
    let server = Server::start(&_up.url());
    let containerd = Containerd::start();
    containerd.set_mirror(&server.url());

    let before = link.bytes();
    let start = Instant::now();
    let ctr = std::thread::spawn({
        let reference = image.reference();
        move || {
            containerd.pull(&reference);
            containerd.image_digest(&reference)
        }
    });
    storm(&server.url(), image, 9);
    let ctr_digest = ctr.join().expect("the ctr client");
    let wall = start.elapsed().as_secs_f64();
    let crossed = link.bytes() - before;

    let bytes = image_bytes(image);
    let link_time = link.seconds_for(bytes);
    eprintln!(
        "wan cold rollout: {bytes} image bytes, {crossed} bytes over the link ({:.4}x), wall {wall:.2} s for a link time of {link_time:.2} s ({:.2}x)",
        crossed as f64 / bytes as f64,
        wall / link_time
    );
    assert_eq!(ctr_digest.as_deref(), Some(image.digest.as_str()), "ctr pulled the image");
    assert!(crossed as f64 <= 1.02 * bytes as f64, "{crossed} bytes crossed the link for a {bytes}-byte image");
    assert!(wall <= 1.1 * link_time + 2.0, "the rollout took {wall:.2} s, the link needs {link_time:.2} s");
}

/// GET `url` to the end on its own thread; `Err` when the body broke off (the mirror was stopped on purpose).
fn background_get(url: String) -> std::thread::JoinHandle<Result<usize, String>> {
    std::thread::spawn(move || {
        let mut resp = http::client().get(&url).send().map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            match resp.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n,
                Err(e) => return Err(e.to_string()),
            }
        }
    })
}

#[test]
fn a_tag_check_and_a_small_manifest_do_not_wait_behind_a_layer_that_fills_the_link() {
    let wan = Wan::new();
    wan.enter();
    let work = TestDir::new("wan-hol");
    let (up, pushed, link) = shaped_upstream(
        &wan,
        &work,
        &[("library/wan-tag:1", &[50_000]), ("library/wan-small:1", &[60_000]), ("library/wan-big:1", &[30 * MB])],
    );
    let (tagged, small, big) = (&pushed[0], &pushed[1], &pushed[2]);
    let ttl = Duration::from_secs(1);
    let mut server = Server::start_with(
        ServerConfig::for_upstream(&up.url()).extra(&format!("tagTtl: {}s\nrevalidateTimeout: 5s", ttl.as_secs())),
    );
    let manifest_url =
        |image: &Image| format!("{}/v2/{}/manifests/{}?ns=docker.io", server.url(), image.repo, image.tag);
    let (status, digest, _) = http::timed_manifest_get(&manifest_url(tagged));
    assert_eq!((status, digest.as_str()), (StatusCode::OK, tagged.digest.as_str()), "the tag cached");
    std::thread::sleep(ttl + Duration::from_millis(200));

    let layer = &big.manifest().layers[0];
    let before = link.bytes();
    let pull = background_get(format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), big.repo, layer.digest));
    // The link is full once a second's worth has crossed.
    let full = RATE / 8;
    common::wait_for("the large layer filling the link", Duration::from_secs(30), || {
        (link.bytes() - before >= full).then_some(())
    });
    up.settle_log();
    let heads_before = up.access_log_count("HEAD", &format!("/v2/{}/manifests/{}", tagged.repo, tagged.tag));

    let start = Instant::now();
    let head = http::client()
        .head(manifest_url(tagged))
        .header("Accept", http::ACCEPT_ALL_MANIFESTS)
        .send()
        .expect("HEAD the tag");
    let tag_check = start.elapsed();
    assert_eq!(head.status(), StatusCode::OK, "HEAD of the cached tag");
    assert_eq!(http::header(&head, "Docker-Content-Digest"), tagged.digest);
    let (status, digest, manifest) = http::timed_manifest_get(&manifest_url(small));
    assert_eq!((status, digest.as_str()), (StatusCode::OK, small.digest.as_str()), "GET of the uncached manifest");
    let in_flight = link.bytes() - before;
    eprintln!(
        "wan head of line: tag check {:.0} ms, uncached manifest {:.0} ms, while a {}-byte layer had {in_flight} bytes across",
        tag_check.as_secs_f64() * 1000.0,
        manifest.as_secs_f64() * 1000.0,
        layer.size
    );
    assert!(in_flight < layer.size, "the layer was still filling the link while both were answered");
    assert!(tag_check <= Duration::from_secs(1), "the tag check took {tag_check:?} behind the layer");
    assert!(manifest <= Duration::from_secs(1), "the uncached manifest took {manifest:?} behind the layer");
    up.settle_log();
    let heads = up.access_log_count("HEAD", &format!("/v2/{}/manifests/{}", tagged.repo, tagged.tag)) - heads_before;
    assert_eq!(heads, 1, "the expired tag was checked upstream, over the link");

    server.stop();
    let _ = pull.join().expect("the large pull's thread");
}

/// GET `url` until a whole body arrives (the mirror may be down for a moment); panics unless it hashes to `digest`.
fn download_until_whole(url: &str, digest: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let Ok(mut resp) = http::client().get(url).send() else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        if !resp.status().is_success() {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let (mut hasher, mut buf) = (Sha256::new(), vec![0u8; 1 << 16]);
        let whole = loop {
            match resp.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => hasher.update(&buf[..n]),
                Err(_) => break false,
            }
        };
        if whole {
            assert_eq!(format!("sha256:{}", hex::encode(hasher.finalize())), digest, "a whole body is the blob");
            return;
        }
    }
    panic!("no whole download of {url} within 2 minutes");
}

#[test]
fn a_mirror_killed_in_the_middle_of_a_layer_resumes_it_over_the_link() {
    let wan = Wan::new();
    wan.enter();
    let work = TestDir::new("wan-restart");
    let (up, pushed, link) = shaped_upstream(&wan, &work, &[("library/wan-resume:1", &[20 * MB])]);
    let layer = pushed[0].manifest().layers[0].clone();
    let mut server = Server::start(&up.url());
    let partial =
        server.cache_dir().join("tmp").join(format!("partial-sha256-{}", layer.digest.trim_start_matches("sha256:")));
    let url = format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), pushed[0].repo, layer.digest);

    let before = link.bytes();
    let client = {
        let (url, digest) = (url.clone(), layer.digest.clone());
        std::thread::spawn(move || download_until_whole(&url, &digest))
    };
    let half = layer.size / 2;
    let kept = common::wait_for("half the layer on disk", Duration::from_secs(60), || {
        let len = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        (len >= half).then_some(len)
    });
    let crossed_at_kill = link.bytes() - before;
    server.signal("KILL");
    server.wait_exit(Duration::from_secs(10)).expect("the mirror killed");
    server.restart();
    client.join().expect("the client got the whole layer");
    let crossed = link.bytes() - before;
    let size = layer.size;
    eprintln!(
        "wan restart: killed with {kept} bytes kept ({crossed_at_kill} across), {crossed} bytes over the link for a {size}-byte layer ({:.4}x)",
        crossed as f64 / size as f64
    );
    assert!(kept < size, "the mirror was killed in the middle of the layer");
    assert!(crossed as f64 <= 1.05 * size as f64, "{crossed} bytes crossed the link for a {size}-byte layer");
    // Cached whole: served again without the link.
    let after = link.bytes();
    http::get_verified(&http::client(), &url, &layer.digest);
    assert!(link.bytes() - after < 4096, "then served from the cache");
}
