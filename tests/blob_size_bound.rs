//! No blob fills the disk: an upstream that streams a blob body forever (chunked, no length) is cut at the largest
//! blob accepted (`maxBlobSize`, or `maxCacheSize`), with a client waiting or after it left: the client's body ends
//! with an error, the partial is removed, disk use under `imagePath` never passes the bound by more than a margin,
//! and the upstream connection is closed. A blob announced larger than `maxBlobSize` is refused before its body is
//! read. A bad `maxBlobSize` stops the server naming the key, and a gzip bomb given to `load` is refused naming the
//! file, with nothing left in the temporary directory and nothing cached.
//!
//! A blob passed through uncached (the cache directory is read-only) is bounded the same way: an endless body is cut
//! at `maxBlobSize`, one announced over it is refused. An upstream body nobody reads any more loses its connection at
//! once, even while the upstream sends nothing (not only at `idleTimeout`). A blob over the cache's bound whose
//! first bytes were kept from an earlier run is passed through whole, never as the rest after those bytes.
//!
//! A real registry cannot stream forever, so the upstream here is an in-process fake that serves only blobs.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use common::metrics::Scrape;
use common::server::{Server, ServerConfig};
use common::thread_server::ServerThread;
use common::TestDir;

/// The `maxBlobSize` (or `maxCacheSize`) of these tests.
const BOUND: u64 = 8 << 20;
/// What the cache directory may hold beyond the bound: its small files (access journal, `.etag`).
const DISK_MARGIN: u64 = 2 << 20;
/// The endless blob (no body can match it).
const ENDLESS: &str = "sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
/// The blob announced with a Content-Length of 1 GiB.
const HUGE: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const HUGE_LEN: u64 = 1 << 30;
/// A blob whose head (chunked) comes at once and whose body never does.
const STALLED: &str = "sha256:5555555555555555555555555555555555555555555555555555555555555555";
/// A blob announced with a Content-Length of 1 GiB whose body never comes.
const STALLED_HUGE: &str = "sha256:6666666666666666666666666666666666666666666666666666666666666666";
/// The fake stops serving after this many body bytes in all, so that a server without the bound cannot fill the
/// test machine's disk.
const SAFETY: u64 = 1 << 30;
const PIECE: usize = 64 * 1024;

#[derive(Default)]
struct Counters {
    /// Body bytes the sockets took.
    sent: AtomicU64,
    /// Blob bodies being written now.
    open: AtomicUsize,
    /// Blob bodies whose connection the peer closed while they were written.
    cut: AtomicUsize,
    blob_gets: AtomicUsize,
    /// Stalled bodies (`STALLED`, `STALLED_HUGE`) being held open now.
    stalled: AtomicUsize,
    /// Stalled bodies whose connection the peer closed.
    stalled_closed: AtomicUsize,
}

/// An upstream whose blob `ENDLESS` is a chunked body that never ends and whose blob `HUGE` announces 1 GiB.
struct EndlessUpstream {
    counters: Arc<Counters>,
    server: ServerThread,
}

impl EndlessUpstream {
    fn start() -> EndlessUpstream {
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let server = ServerThread::spawn("endless-upstream", move |listener| accept(listener, c));
        EndlessUpstream { counters, server }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    fn sent(&self) -> u64 {
        self.counters.sent.load(Ordering::SeqCst)
    }
}

impl Drop for EndlessUpstream {
    fn drop(&mut self) {
        self.server.stop();
    }
}

async fn accept(listener: TcpListener, counters: Arc<Counters>) {
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, counters.clone()));
        }
    }
}

/// The request line's method and target; the rest of the head is read and ignored.
async fn read_head(stream: &mut BufReader<TcpStream>) -> Option<(String, String)> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    loop {
        let mut header = String::new();
        if stream.read_line(&mut header).await.ok()? == 0 {
            return None;
        }
        if header.trim().is_empty() {
            return Some((method, target));
        }
    }
}

async fn serve(stream: TcpStream, counters: Arc<Counters>) {
    let mut stream = BufReader::new(stream);
    while let Some((method, target)) = read_head(&mut stream).await {
        let over = counters.sent.load(Ordering::SeqCst) >= SAFETY;
        if method == "GET" && target.contains("/blobs/") && !over {
            counters.blob_gets.fetch_add(1, Ordering::SeqCst);
            if target.ends_with(ENDLESS) {
                return body(stream.get_mut(), &counters, None).await;
            }
            if target.ends_with(HUGE) {
                return body(stream.get_mut(), &counters, Some(HUGE_LEN)).await;
            }
            if target.ends_with(STALLED) {
                return stall(stream.get_mut(), &counters, "Transfer-Encoding: chunked").await;
            }
            if target.ends_with(STALLED_HUGE) {
                return stall(stream.get_mut(), &counters, &format!("Content-Length: {HUGE_LEN}")).await;
            }
        }
        let (status, text) = if target == "/v2/" { ("200 OK", "{}") } else { ("404 Not Found", "") };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Docker-Distribution-Api-Version: registry/2.0\r\n\r\n{text}",
            text.len()
        );
        if stream.get_mut().write_all(head.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Zeros, chunked and endless (`len` None), or under a Content-Length of `len` after a pause (so that whoever
/// refuses it has closed the connection before a byte of the body leaves), until the peer goes or `SAFETY`.
async fn body(stream: &mut TcpStream, counters: &Counters, len: Option<u64>) {
    let framing = match len {
        Some(n) => format!("Content-Length: {n}"),
        None => "Transfer-Encoding: chunked".to_string(),
    };
    let head = blob_head(&framing);
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    counters.open.fetch_add(1, Ordering::SeqCst);
    if len.is_some() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let zeros = vec![0u8; PIECE];
    let mut chunk = format!("{PIECE:x}\r\n").into_bytes();
    chunk.extend_from_slice(&zeros);
    chunk.extend_from_slice(b"\r\n");
    let piece = if len.is_some() { &zeros } else { &chunk };
    let mut written = 0u64;
    loop {
        if counters.sent.load(Ordering::SeqCst) >= SAFETY || len.is_some_and(|n| written >= n) {
            break;
        }
        if stream.write_all(piece).await.is_err() {
            counters.cut.fetch_add(1, Ordering::SeqCst);
            break;
        }
        written += PIECE as u64;
        counters.sent.fetch_add(PIECE as u64, Ordering::SeqCst);
    }
    counters.open.fetch_sub(1, Ordering::SeqCst);
}

/// The head of a blob answer framed by `framing` (a `Content-Length` or `Transfer-Encoding` line).
fn blob_head(framing: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n{framing}\r\n\
         Docker-Distribution-Api-Version: registry/2.0\r\n\r\n"
    )
}

/// A blob response head with `framing`, then nothing, until the peer closes the connection (or a minute passes).
async fn stall(stream: &mut TcpStream, counters: &Counters, framing: &str) {
    let head = blob_head(framing);
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    counters.stalled.fetch_add(1, Ordering::SeqCst);
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match tokio::io::AsyncReadExt::read(stream, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    if closed.is_ok() {
        counters.stalled_closed.fetch_add(1, Ordering::SeqCst);
    }
    counters.stalled.fetch_sub(1, Ordering::SeqCst);
}

/// Samples the bytes of every file under a directory until stopped; the most it saw.
struct DiskSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

fn usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            total += usage(&e.path());
        } else {
            total += meta.len();
        }
    }
    total
}

impl DiskSampler {
    fn start(dir: &Path) -> DiskSampler {
        let (dir, stop) = (dir.to_path_buf(), Arc::new(AtomicBool::new(false)));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut most = 0;
            while !flag.load(Ordering::SeqCst) {
                most = most.max(usage(&dir));
                std::thread::sleep(Duration::from_millis(5));
            }
            most
        });
        DiskSampler { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().map(|t| t.join().expect("sampler")).unwrap_or_default()
    }
}

impl Drop for DiskSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Partial downloads in the cache's `tmp/`.
fn partials(cache: &Path) -> Vec<String> {
    std::fs::read_dir(cache.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()))
        .into_iter()
        .flatten()
        .filter(|n| n.starts_with("partial-"))
        .collect()
}

#[derive(Debug, PartialEq)]
enum BodyEnd {
    /// A clean end: the body claimed to be whole.
    Clean,
    /// The connection was cut (the body ended with an error).
    Cut,
    /// More than the cap was read and the body went on.
    Endless,
}

/// GET the blob the endless upstream announces over `maxBlobSize`: answered 502 (an upstream error), and the
/// upstream connection closed; the status.
fn get_huge_refused(server: &Server, upstream: &EndlessUpstream) -> u16 {
    let url = format!("{}/v2/library/huge/blobs/{HUGE}?ns=docker.io", server.url());
    let mut resp = common::http::client().get(&url).send().expect("the response head");
    let status = resp.status().as_u16();
    let (read, end) = read_capped(&mut resp, 8 * BOUND);
    assert_eq!(status, 502, "refused with an upstream error ({read} bytes, {end:?}): {}", server.log_tail());
    common::wait_for("the upstream connection to close", Duration::from_secs(10), || {
        (upstream.counters.open.load(Ordering::SeqCst) == 0).then_some(())
    });
    status
}

/// Read a response body to its end, or to `cap` bytes; the bytes read and how it ended.
fn read_capped(resp: &mut impl Read, cap: u64) -> (u64, BodyEnd) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match resp.read(&mut buf) {
            Ok(0) => return (total, BodyEnd::Clean),
            Ok(n) => total += n as u64,
            Err(_) => return (total, BodyEnd::Cut),
        }
        if total > cap {
            return (total, BodyEnd::Endless);
        }
    }
}

/// Wait (at most 20 s) until the transfer is over: no partial left, no upstream body open; fail at once if the
/// cache directory grows past the bound meanwhile.
fn wait_until_stopped(server: &Server, upstream: &EndlessUpstream, what: &str, bound: u64) {
    let start = Instant::now();
    loop {
        let used = usage(server.cache_dir());
        assert!(used <= bound + DISK_MARGIN, "{what}: {used} bytes under imagePath, over the bound {bound}");
        let open = upstream.counters.open.load(Ordering::SeqCst);
        if partials(server.cache_dir()).is_empty() && open == 0 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: after 20 s, partials {:?}, upstream bodies open {open}, {} bytes sent",
            partials(server.cache_dir()),
            upstream.sent()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_logged_once(server: &Server, digest: &str) {
    let logs = server.logs();
    let hex = digest.trim_start_matches("sha256:");
    let lines: Vec<&str> =
        logs.lines().filter(|l| l.contains("transfer stopped, nothing kept") && l.contains(hex)).collect();
    assert!(!lines.is_empty(), "the stop is logged with the digest: {}", server.log_tail());
    assert!(lines.iter().all(|l| l.contains("docker.io")), "and the upstream: {lines:?}");
}

#[test]
fn an_endless_blob_body_is_cut_at_the_bound_and_its_partial_removed() {
    for (name, yaml) in [("maxBlobSize", "maxBlobSize: 8Mi"), ("maxCacheSize", "maxBlobSize: 0\nmaxCacheSize: 8Mi")] {
        let upstream = EndlessUpstream::start();
        let server = Server::start_with(ServerConfig::for_upstream(&upstream.url()).extra(yaml));
        let sampler = DiskSampler::start(server.cache_dir());
        let url = format!("{}/v2/library/endless/blobs/{ENDLESS}?ns=docker.io", server.url());
        let mut resp = common::http::client().get(&url).send().expect("the response head");
        let status = resp.status().as_u16();
        let (read, end) = read_capped(&mut resp, 8 * BOUND);
        assert!(
            status >= 500 || end == BodyEnd::Cut,
            "{name}: the client sees an error or a cut connection, never a whole body: HTTP {status}, {read} bytes, {end:?}"
        );
        assert!(read <= BOUND, "{name}: the client got {read} bytes, more than the bound");
        wait_until_stopped(&server, &upstream, name, BOUND);
        let most = sampler.finish();
        eprintln!(
            "{name}: HTTP {status}, {read} bytes read, {end:?}; at most {most} bytes on disk; {} sent upstream",
            upstream.sent()
        );
        assert!(read > 1 << 20, "{name}: the blob was streamed to the client before the cut ({read} bytes)");
        assert!(most <= BOUND + DISK_MARGIN, "{name}: {most} bytes under imagePath at most, over the bound");
        assert!(upstream.counters.cut.load(Ordering::SeqCst) >= 1, "{name}: the upstream connection was closed");
        assert!(common::cached_files(server.cache_dir()).iter().all(|p| !p.to_string_lossy().contains("eeee")));
        assert_logged_once(&server, ENDLESS);
    }
}

#[test]
fn an_endless_blob_left_by_its_only_client_still_stops_at_the_bound() {
    let upstream = EndlessUpstream::start();
    let server = Server::start_with(ServerConfig::for_upstream(&upstream.url()).extra("maxBlobSize: 8Mi"));
    let sampler = DiskSampler::start(server.cache_dir());
    let url = format!("{}/v2/library/endless/blobs/{ENDLESS}?ns=docker.io", server.url());
    let mut resp = common::http::client().get(&url).send().expect("the response head");
    let mut first = vec![0u8; 1 << 20];
    resp.read_exact(&mut first).expect("the first MiB");
    drop(resp);
    wait_until_stopped(&server, &upstream, "client gone", BOUND);
    let most = sampler.finish();
    eprintln!("client gone: at most {most} bytes on disk; {} sent upstream", upstream.sent());
    assert!(most <= BOUND + DISK_MARGIN, "{most} bytes under imagePath at most, over the bound");
    assert!(upstream.counters.cut.load(Ordering::SeqCst) >= 1, "the upstream connection was closed");
    // What left the fake: the bound, plus what the socket buffers took before the connection was closed.
    assert!(upstream.sent() < BOUND + (32 << 20), "{} bytes sent by the upstream", upstream.sent());
    assert_logged_once(&server, ENDLESS);
}

/// A small tmpfs mounted for the duration of a test (unmounted on drop).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mount one of `size` at `path`; `None` (the test is skipped) when not root.
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        if out.status.success() {
            return Some(Tmpfs(path.to_path_buf()));
        }
        let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        assert!(uid.as_deref().is_ok_and(|u| u != "0"), "mount tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        eprintln!("skipped: mounting a tmpfs needs root");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn an_endless_blob_stops_at_the_volume_less_min_free_space_without_a_cap() {
    let dir = TestDir::new("endless-volume");
    let Some(volume) = Tmpfs::mount(&dir.path().join("cache"), "32m") else { return };
    // No maxBlobSize, no maxCacheSize: the bound is the volume's 32 MiB less minFreeSpace, 24 MiB.
    let bound = 24 << 20;
    let upstream = EndlessUpstream::start();
    let config = ServerConfig { image_path: Some(volume.0.clone()), ..ServerConfig::for_upstream(&upstream.url()) }
        .extra("maxBlobSize: 0\nminFreeSpace: 8Mi");
    let server = Server::start_with(config);
    let sampler = DiskSampler::start(server.cache_dir());
    let url = format!("{}/v2/library/endless/blobs/{ENDLESS}?ns=docker.io", server.url());
    let mut resp = common::http::client().get(&url).send().expect("the response head");
    let status = resp.status().as_u16();
    let (read, end) = read_capped(&mut resp, 8 * bound);
    assert!(status >= 500 || end == BodyEnd::Cut, "an error or a cut: HTTP {status}, {read} bytes, {end:?}");
    wait_until_stopped(&server, &upstream, "volume", bound);
    let most = sampler.finish();
    eprintln!("volume: HTTP {status}, {read} bytes read, {end:?}; at most {most} bytes on the 32 MiB volume");
    assert!(most <= bound + DISK_MARGIN, "{most} bytes on the volume at most: minFreeSpace was eaten into");
    assert!(upstream.counters.cut.load(Ordering::SeqCst) >= 1, "the upstream connection was closed");
    assert_logged_once(&server, ENDLESS);
}

#[test]
fn a_blob_announced_over_max_blob_size_is_refused_before_its_body_is_read() {
    let upstream = EndlessUpstream::start();
    let metrics = common::ports::free_port();
    let config = ServerConfig::for_upstream(&upstream.url()).extra(&format!("maxBlobSize: 8Mi\nmetrics: {metrics}"));
    let server = Server::start_with(config);
    let status = get_huge_refused(&server, &upstream);
    assert!(upstream.counters.cut.load(Ordering::SeqCst) >= 1, "the upstream connection was closed");
    let scrape = Scrape::fetch(&format!("http://127.0.0.1:{metrics}/metrics"));
    let received = scrape.sum_or_zero("ociregistry_upstream_bytes_total", &[("ns", "docker.io"), ("kind", "blob")]);
    // The mirror read nothing of the body but what the connection had already brought when it was dropped.
    assert!(received < (1 << 20) as f64, "{received} body bytes received from the upstream");
    let refused =
        scrape.sum_or_zero("ociregistry_upstream_errors_total", &[("ns", "docker.io"), ("reason", "too_large")]);
    assert_eq!(refused, 1.0, "the refusal is counted");
    // What left the fake: at most what the socket buffers took before the connection was closed.
    assert!(upstream.sent() < BOUND + (32 << 20), "{} body bytes left the upstream", upstream.sent());
    eprintln!(
        "announced 1 GiB: HTTP {status}; {received} bytes received by the mirror, {} sent upstream",
        upstream.sent()
    );
    assert!(partials(server.cache_dir()).is_empty(), "no partial: {:?}", partials(server.cache_dir()));
    assert_logged_once(&server, HUGE);
}

/// `ociregistry --config-file FILE serve` until it exits (at most 20 s); its exit code and standard error.
fn serve_until_exit(dir: &TestDir, yaml: &str) -> (Option<i32>, String) {
    let file = dir.path().join("bad.yaml");
    let cache = dir.path().join("cache");
    let port = common::ports::free_port();
    std::fs::write(&file, format!("imagePath: {}\nhost: 127.0.0.1\nport: {port}\n{yaml}", cache.display()))
        .expect("write");
    let err = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ociregistry"))
        .arg("--config-file")
        .arg(&file)
        .arg("serve")
        .stderr(err)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run ociregistry");
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default())
}

#[test]
fn a_bad_max_blob_size_stops_the_server_naming_the_key() {
    let dir = TestDir::new("max-blob-size");
    for yaml in ["maxBlobSize: lots\n", "maxBlobSize: -5Mi\n"] {
        let (code, stderr) = serve_until_exit(&dir, yaml);
        assert_eq!(code, Some(2), "{yaml}: exit code; stderr {stderr}");
        assert!(stderr.contains("'maxBlobSize'"), "{yaml}: names the key: {stderr}");
    }
}

/// An OCI layout of one image whose layer is `layer` bytes of zeros, as a gzipped tar, written without holding the
/// layer in memory: a few hundred KB on disk.
fn gzip_bomb(dest: &Path, layer: u64) {
    let mut hasher = Sha256::new();
    let zeros = vec![0u8; 1 << 20];
    let mut left = layer;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        hasher.update(&zeros[..n]);
        left -= n as u64;
    }
    let layer_digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let config_digest = common::sha256_digest(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer}],
    }))
    .expect("json");
    let manifest_digest = common::sha256_digest(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "docker.io/library/bomb:1"},
        }],
    }))
    .expect("json");
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(dest).expect("create"), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: String, size: u64, data: &mut dyn Read| {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, data).expect("tar");
    };
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    add("oci-layout".into(), layout.len() as u64, &mut &layout[..]);
    add("index.json".into(), index.len() as u64, &mut &index[..]);
    add(blob(&manifest_digest), manifest.len() as u64, &mut &manifest[..]);
    add(blob(&config_digest), config.len() as u64, &mut &config[..]);
    add(blob(&layer_digest), layer, &mut std::io::repeat(0).take(layer));
    tar.into_inner().expect("tar").finish().expect("gzip").flush().expect("flush");
}

#[test]
fn a_gzip_bomb_given_to_load_is_refused_naming_the_file_and_leaves_nothing_behind() {
    let dir = TestDir::new("gzip-bomb");
    let bomb = dir.path().join("bomb.tar.gz");
    let layer: u64 = 256 << 20;
    gzip_bomb(&bomb, layer);
    let compressed = std::fs::metadata(&bomb).expect("bomb").len();
    assert!(compressed < layer / 100, "a bomb: {compressed} bytes that decompress to over {layer}");
    let (cache, tmp) = (dir.subdir("cache"), dir.subdir("tmp"));
    let config = dir.path().join("cfg.yaml");
    std::fs::write(&config, format!("imagePath: {}\nmaxBlobSize: 8Mi\nregistries: []\n", cache.display()))
        .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_ociregistry"))
        .arg("--config-file")
        .arg(&config)
        .args(["load", "--image-file"])
        .arg(&bomb)
        .env("TMPDIR", &tmp)
        .output()
        .expect("run load");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the bomb is refused: {text}");
    assert!(text.contains(&bomb.display().to_string()), "the error names the file: {text}");
    assert!(text.contains("maxBlobSize"), "and the bound: {text}");
    let left: Vec<_> = std::fs::read_dir(&tmp).expect("tmp").flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "nothing left in the temporary directory: {left:?}");
    assert!(common::cached_files(&cache).is_empty(), "nothing cached: {:?}", common::cached_files(&cache));
}

/// A read-only bind mount of a directory for the duration of a test (unmounted on drop).
struct ReadOnlyBind(std::path::PathBuf);

impl ReadOnlyBind {
    /// Mount `source` read-only at `target`; `None` (the test is skipped) when not root.
    fn mount(source: &Path, target: &Path) -> Option<ReadOnlyBind> {
        std::fs::create_dir_all(target).expect("mount point");
        let run = |args: &[&std::ffi::OsStr]| Command::new("mount").args(args).output().expect("run mount");
        let out = run(&["--bind".as_ref(), source.as_os_str(), target.as_os_str()]);
        if !out.status.success() {
            let uid =
                Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
            assert!(uid.as_deref().is_ok_and(|u| u != "0"), "bind mount: {}", String::from_utf8_lossy(&out.stderr));
            eprintln!("skipped: a read-only bind mount needs root");
            return None;
        }
        let bind = ReadOnlyBind(target.to_path_buf());
        let out = run(&["-o".as_ref(), "remount,bind,ro".as_ref(), target.as_os_str()]);
        assert!(out.status.success(), "remount read-only: {}", String::from_utf8_lossy(&out.stderr));
        Some(bind)
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A mirror of `upstream` whose cache directory takes no files (laid out by a first run, then mounted read-only),
/// so that every blob is passed through uncached. The server comes first so that it stops before the unmount.
fn read_only_server(dir: &TestDir, upstream: &EndlessUpstream, config: ServerConfig) -> Option<(Server, ReadOnlyBind)> {
    let cache = dir.subdir("cache");
    let mut first = Server::start_with(ServerConfig {
        image_path: Some(cache.clone()),
        ..ServerConfig::for_upstream(&upstream.url())
    });
    first.stop();
    let ro = ReadOnlyBind::mount(&cache, &dir.path().join("ro-cache"))?;
    let server = Server::start_with(ServerConfig { image_path: Some(ro.0.clone()), ..config });
    Some((server, ro))
}

#[test]
fn a_blob_passed_through_uncached_is_cut_at_max_blob_size_and_one_announced_over_it_refused() {
    let upstream = EndlessUpstream::start();
    let dir = TestDir::new("endless-uncached");
    let metrics = common::ports::free_port();
    let config = ServerConfig::for_upstream(&upstream.url()).extra(&format!("maxBlobSize: 8Mi\nmetrics: {metrics}"));
    let Some((server, _ro)) = read_only_server(&dir, &upstream, config) else { return };
    let url = format!("{}/v2/library/endless/blobs/{ENDLESS}?ns=docker.io", server.url());
    // The first request leads a fetch that finds the cache unwritable and hands its body over; the next is told to
    // pass the blob through at once and fetches it itself.
    for path in ["handed over by the fetch", "fetched for the pass-through"] {
        let mut resp = common::http::client().get(&url).send().expect("the response head");
        let status = resp.status().as_u16();
        let (read, end) = read_capped(&mut resp, 8 * BOUND);
        eprintln!("{path}: HTTP {status}, {read} bytes read, {end:?}; {} sent upstream", upstream.sent());
        assert_eq!(status, 200, "{path}: passed through: {}", server.log_tail());
        assert_eq!(end, BodyEnd::Cut, "{path}: the connection is cut, never a whole body ({read} bytes)");
        assert!(read <= BOUND, "{path}: the client got {read} bytes, more than maxBlobSize");
        assert!(read > 1 << 20, "{path}: the blob was streamed to the client before the cut ({read} bytes)");
        common::wait_for("the upstream body to close", Duration::from_secs(10), || {
            (upstream.counters.open.load(Ordering::SeqCst) == 0).then_some(())
        });
    }
    assert_eq!(upstream.counters.cut.load(Ordering::SeqCst), 2, "both upstream connections were closed");
    assert!(common::cached_files(server.cache_dir()).is_empty(), "nothing written to a read-only cache");

    // Announced over maxBlobSize: refused before its body is read.
    let sent_before = upstream.sent();
    let status = get_huge_refused(&server, &upstream);
    let sent = upstream.sent() - sent_before;
    eprintln!("announced 1 GiB, uncached: HTTP {status}; {sent} bytes sent upstream");
    assert!(sent < BOUND + (32 << 20), "{sent} body bytes left the upstream");
    let scrape = Scrape::fetch(&format!("http://127.0.0.1:{metrics}/metrics"));
    let too_large =
        scrape.sum_or_zero("ociregistry_upstream_errors_total", &[("ns", "docker.io"), ("reason", "too_large")]);
    assert_eq!(too_large, 3.0, "the two cuts and the refusal are counted");
}

#[test]
fn a_refused_blob_whose_upstream_stalls_loses_its_connection_at_once() {
    let upstream = EndlessUpstream::start();
    // An idle timeout of a minute: only the refusal itself can close the connection within the wait below.
    let config = ServerConfig { idle_timeout: "60s".into(), ..ServerConfig::for_upstream(&upstream.url()) };
    let server = Server::start_with(config.extra("maxBlobSize: 8Mi"));
    let url = format!("{}/v2/library/stalled/blobs/{STALLED_HUGE}?ns=docker.io", server.url());
    let t0 = Instant::now();
    let resp = common::http::client().get(&url).send().expect("the response head");
    assert_eq!(resp.status().as_u16(), 502, "refused: {}", server.log_tail());
    common::wait_for("the stalled upstream connection to close", Duration::from_secs(10), || {
        (upstream.counters.stalled_closed.load(Ordering::SeqCst) == 1).then_some(())
    });
    eprintln!("refused and stalled: upstream connection closed {:?} after the request", t0.elapsed());
    assert_eq!(upstream.counters.stalled.load(Ordering::SeqCst), 0, "no stalled body held open");
}

#[test]
fn a_blob_over_the_cache_bound_found_partly_kept_is_passed_through_whole() {
    // A real registry: the leader resumes the kept prefix with a Range request, which it answers 206.
    let up = common::upstream::Upstream::start();
    let dir = TestDir::new("partial-too-large");
    let image = common::images::custom(&up, &dir.subdir("work"), "library/fat:1", &[3_000_000]);
    let layer = &image.manifest().layers[0];
    let client = common::http::client();
    let upstream_url = format!("{}/v2/library/fat/blobs/{}", up.url(), layer.digest);
    let bytes = common::http::get_verified(&client, &upstream_url, &layer.digest);
    // The first MB kept from an earlier run; the blob (3 MB) no longer fits under maxCacheSize.
    let cache = dir.subdir("cache");
    let hex = layer.digest.trim_start_matches("sha256:");
    std::fs::create_dir_all(cache.join("tmp")).expect("tmp");
    std::fs::write(cache.join("tmp").join(format!("partial-sha256-{hex}")), &bytes[..1_000_000]).expect("partial");
    let config = ServerConfig { image_path: Some(cache.clone()), ..ServerConfig::for_upstream(&up.url()) };
    let server = Server::start_with(config.extra("maxCacheSize: 2Mi"));
    let url = format!("{}/v2/library/fat/blobs/{}?ns=docker.io", server.url(), layer.digest);
    let resp = client.get(&url).send().expect("the response head");
    assert_eq!(resp.status().as_u16(), 200, "passed through: {}", server.log_tail());
    let body = resp.bytes().map(|b| b.to_vec());
    let got = body.as_ref().map(|b| (b.len(), common::sha256_digest(b)));
    assert!(
        got.as_ref().is_ok_and(|(len, d)| *len == bytes.len() && *d == layer.digest),
        "the whole blob, not the rest after the kept prefix: {:?}",
        got.map(|(len, d)| format!("{len} bytes, {d}")).map_err(|e| e.to_string())
    );
    up.settle_log();
    let gets = up.access_log_count("GET", &format!("/blobs/{}", layer.digest));
    assert_eq!(gets, 1 + 2, "ours, the leader's ranged GET, and the waiter's whole one");
    assert!(common::cached_files(&cache).iter().all(|p| !p.to_string_lossy().contains(hex)), "nothing kept");
}
