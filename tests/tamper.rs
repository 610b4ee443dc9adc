//! A cached blob is trusted for exactly the version of its file that was verified. A file written in place while it
//! is sent ends that response short (the connection is cut before the last bytes; never a body that looks whole),
//! on the plain listener (sent from the file) and on the TLS listener (streamed); a range of a file modified at rest
//! never carries the modified bytes; either way the file is moved aside and the next request gets the right bytes,
//! fetched again. A range of a verified file that nobody touched is served from the file as before.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::certs;
use common::http;
use common::images;
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::{wait_for, TestDir};

const MB: usize = 1024 * 1024;
/// The size of the layer of the reproduction: far more than the sockets between the server and a paused
/// client hold, so the server is part-way through the body when the file changes.
const LAYER: usize = 27 * MB;

/// A mirror over a real upstream holding one image with a `LAYER`-byte layer, fetched (and so verified) once through
/// the mirror: its bytes, the blob's URL path, and its cache file.
struct Cached {
    server: Server,
    up: Upstream,
    _dir: TestDir,
    /// The CA the TLS listener's certificate is signed by (TLS only).
    ca: Option<PathBuf>,
    path: String,
    digest: String,
    whole: Vec<u8>,
    file: PathBuf,
}

fn cached(name: &str, tls: bool) -> Cached {
    let up = Upstream::start();
    let dir = TestDir::new(name);
    let image = images::custom(&up, &dir.subdir("work"), &format!("library/{name}:1"), &[LAYER]);
    let mut config = ServerConfig::for_upstream(&up.url());
    let mut ca = None;
    if tls {
        let certs = certs::generate(&dir.subdir("certs"));
        config = config.extra(&format!(
            "serverTlsConfig:\n  cert: \"{}\"\n  key: \"{}\"\n  clientAuth: none\n",
            certs.server.cert.display(),
            certs.server.key.display()
        ));
        ca = Some(certs.ca.clone());
    }
    let server = Server::start_with(config);
    let layer = &image.manifest().layers[0];
    let path = format!("/v2/{}/blobs/{}?ns=docker.io", image.repo, layer.digest);
    let whole = match &ca {
        Some(ca) => {
            let (head, body) = tls_get(&server, ca, &path, None);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            body
        }
        None => http::get_verified(&http::client(), &format!("{}{path}", server.url()), &layer.digest),
    };
    assert_eq!(common::sha256_digest(&whole), layer.digest, "the first pull");
    let file = server.cache_dir().join("blobs/sha256").join(layer.digest.trim_start_matches("sha256:"));
    // Clients are answered once the digest matches, before the fsync and the commit that puts the file in place.
    common::wait_for(&format!("the blob to be committed at {}", file.display()), Duration::from_secs(10), || {
        file.is_file().then_some(())
    });
    Cached { server, up, _dir: dir, ca, path, digest: layer.digest.clone(), whole, file }
}

/// Overwrite `bytes` at `offset` of a file, in place (same inode, same size).
fn write_in_place(file: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(file).expect("open the cached file for writing");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(bytes).expect("write in place");
}

/// Bytes that differ from `old` at every position.
fn other_than(old: &[u8]) -> Vec<u8> {
    old.iter().map(|b| !b).collect()
}

/// Copies of the blob's file in the cache's `quarantine/`.
fn quarantined(server: &Server, digest: &str) -> usize {
    let hex = digest.trim_start_matches("sha256:");
    fs::read_dir(server.cache_dir().join("quarantine"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().contains(hex)).count())
        .unwrap_or(0)
}

/// Wait until the changed file was moved out of `blobs/` into `quarantine/` (a fresh copy may be in `blobs/` by
/// then: a range served from the blob fetched again ends before the fetch does).
fn wait_quarantined(c: &Cached) {
    wait_for("the changed blob file to be moved aside", Duration::from_secs(20), || {
        (quarantined(&c.server, &c.digest) == 1).then_some(())
    });
}

/// A plain-HTTP GET of `path` on a new connection: the response head and the first `first` bytes of its body.
fn start_plain(
    server: &Server,
    path: &str,
    range: Option<&str>,
    first: usize,
) -> (BufReader<TcpStream>, String, Vec<u8>) {
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let range = range.map(|r| format!("Range: bytes={r}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: mirror\r\n{range}Connection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).expect("request");
    let mut conn = BufReader::new(tcp);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        let mut line = String::new();
        if conn.read_line(&mut line).expect("head") == 0 {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0u8; first];
    conn.read_exact(&mut body).expect("the first bytes of the body");
    (conn, head, body)
}

/// The `Content-Length` of a response head.
fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-length")))
        .map(|(_, v)| v.trim().parse().expect("Content-Length"))
        .expect("a Content-Length")
}

/// A GET of `path` over TLS through `openssl s_client` (`Connection: close`): reads the head and the first MB of the
/// body, calls `meanwhile` (the client has paused: the server is part-way), then reads on to the end of the
/// connection. The head and every body byte that arrived.
fn tls_get(server: &Server, ca: &Path, path: &str, meanwhile: Option<&dyn Fn()>) -> (String, Vec<u8>) {
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{}", server.port()), "-servername", "localhost"])
        .arg("-CAfile")
        .arg(ca)
        .args(["-verify_return_error", "-alpn", "http/1.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stdin.write_all(req.as_bytes()).expect("request");
    stdin.flush().expect("flush");
    let mut out = BufReader::with_capacity(64 * 1024, child.stdout.take().expect("stdout"));
    let (tx, rx) = mpsc::channel();
    let reading = std::thread::spawn(move || {
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            head.push_str(&line);
        }
        let mut body = vec![0u8; MB.min(content_length(&head))];
        out.read_exact(&mut body).expect("the first MB over TLS");
        // Nothing more is read (the client pauses) until the test has done its part.
        let _ = tx.send(());
        (head, body, out)
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("the first MB over TLS");
    if let Some(meanwhile) = meanwhile {
        meanwhile();
    }
    let (head, mut body, mut out) = reading.join().expect("reader");
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = out.read_to_end(&mut rest);
        let _ = done_tx.send(rest);
    });
    let rest = done_rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    body.extend_from_slice(&rest.expect("the connection ends"));
    (head, body)
}

/// After a body cut short by a changed file: the file is moved aside, and the next GET gets the right bytes.
fn next_get_is_right(c: &Cached) {
    wait_quarantined(c);
    let again = match &c.ca {
        Some(ca) => {
            let (head, body) = tls_get(&c.server, ca, &c.path, None);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            body
        }
        None => http::get_verified(&http::client(), &format!("{}{}", c.server.url(), c.path), &c.digest),
    };
    assert!(again == c.whole, "the next GET returns the blob's own bytes (fetched again)");
}

#[test]
fn a_blob_file_written_in_place_while_sent_from_its_file_ends_the_response_short_and_is_fetched_again() {
    let c = cached("tamper-send", false);
    let (mut conn, head, mut body) = start_plain(&c.server, &c.path, None, MB);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(content_length(&head), c.whole.len());
    let middle = c.whole.len() / 2;
    write_in_place(&c.file, middle as u64, &other_than(&c.whole[middle..middle + 4096]));
    let mut rest = Vec::new();
    // The connection ends (closed, or reset) when the server finds the file changed before its last piece.
    let _ = conn.read_to_end(&mut rest);
    body.extend_from_slice(&rest);
    assert!(
        body.len() < c.whole.len(),
        "{} of {} bytes arrived from a file changed while it was sent: a body that looks whole",
        body.len(),
        c.whole.len()
    );
    next_get_is_right(&c);
}

#[test]
fn a_blob_file_written_in_place_while_streamed_over_tls_ends_the_response_short_and_is_fetched_again() {
    let c = cached("tamper-tls", true);
    let middle = c.whole.len() / 2;
    let tamper = || write_in_place(&c.file, middle as u64, &other_than(&c.whole[middle..middle + 4096]));
    let (head, body) = tls_get(&c.server, c.ca.as_deref().expect("TLS"), &c.path, Some(&tamper));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(content_length(&head), c.whole.len());
    assert!(
        body.len() < c.whole.len(),
        "{} of {} bytes arrived over TLS from a file changed while it was streamed: a body that looks whole",
        body.len(),
        c.whole.len()
    );
    next_get_is_right(&c);
}

#[test]
fn a_range_of_a_verified_blob_modified_at_rest_never_carries_the_modified_bytes() {
    let c = cached("tamper-range", false);
    let (at, len) = (4_000_000usize, 30usize);
    let modified = other_than(&c.whole[at..at + len]);
    write_in_place(&c.file, at as u64, &modified);
    let range = format!("{at}-{}", at + len - 1);
    for attempt in 0..3 {
        let resp = http::client()
            .get(format!("{}{}", c.server.url(), c.path))
            .header("Range", format!("bytes={range}"))
            .send()
            .expect("range request");
        let status = resp.status();
        let body = resp.bytes().map(|b| b.to_vec());
        if let Ok(body) = &body {
            assert!(body[..] != modified[..], "attempt {attempt}: {status} with the bytes written at rest");
        }
        assert_eq!(status, http::StatusCode::PARTIAL_CONTENT, "attempt {attempt}");
        assert!(
            body.as_deref().ok() == Some(&c.whole[at..at + len]),
            "attempt {attempt}: the range is the blob's own bytes (fetched again)"
        );
    }
    wait_quarantined(&c);
    // Fetched again and verified: the whole blob is right, and so is the range, now from the fresh file.
    assert!(http::get_verified(&http::client(), &format!("{}{}", c.server.url(), c.path), &c.digest) == c.whole);
}

#[test]
fn a_range_of_an_untouched_verified_blob_is_served_from_its_file_and_nothing_is_moved_aside() {
    let c = cached("tamper-none", false);
    let before = fs::metadata(&c.file).expect("stat");
    for (at, len) in [(4_000_000usize, 30usize), (0, 1), (LAYER - 5000, 5000)] {
        let (mut conn, head, mut body) = start_plain(&c.server, &c.path, Some(&format!("{at}-{}", at + len - 1)), 0);
        assert!(head.starts_with("HTTP/1.1 206"), "{head}");
        conn.read_to_end(&mut body).expect("the range");
        assert!(body == c.whole[at..at + len], "the range {at}+{len} is the blob's own bytes");
    }
    let after = fs::metadata(&c.file).expect("the file is still in the cache");
    use std::os::unix::fs::MetadataExt;
    assert_eq!((before.ino(), before.mtime_nsec()), (after.ino(), after.mtime_nsec()), "the same file, untouched");
    assert_eq!(quarantined(&c.server, &c.digest), 0, "nothing was moved aside");
}

#[test]
fn after_a_restart_a_range_of_an_intact_blob_is_verified_whole_and_served_from_the_cache_alone() {
    let mut c = cached("tamper-restart", false);
    // Nothing is verified since this start: a range is served only once the whole file matched its digest.
    c.server.restart();
    c.up.stop();
    for (at, len) in [(4_000_000usize, 30usize), (12_345_678, 100_000)] {
        let (mut conn, head, mut body) = start_plain(&c.server, &c.path, Some(&format!("{at}-{}", at + len - 1)), 0);
        assert!(head.starts_with("HTTP/1.1 206"), "{head}");
        conn.read_to_end(&mut body).expect("the range");
        assert!(body == c.whole[at..at + len], "the range {at}+{len} is the blob's own bytes, with the upstream gone");
    }
    assert!(c.file.is_file(), "the file stays in the cache");
    assert_eq!(quarantined(&c.server, &c.digest), 0, "nothing was moved aside");
}
