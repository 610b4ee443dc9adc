//! Cached blobs sent from their file to the socket inside the kernel (plain HTTP, `src/http/kernel_copy.rs`): the
//! bytes land after their response head and before the next response, on a kept-alive connection with pipelined
//! requests, whole and by range, mixed with responses that take the other paths (a small blob from memory, a
//! manifest); a client that goes away part-way leaves the connection's next user unharmed; and a blob file cut short
//! while it is sent ends that response short (the connection closes), never with other bytes in its place.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::http;
use common::images;
use common::server::Server;
use common::upstream::Upstream;
use common::{sha256_digest, TestDir};

const MB: usize = 1024 * 1024;

/// One response read off a connection: status, `Content-Length`, and the body bytes that arrived (fewer than the
/// length when the connection ended first).
struct Answer {
    status: u16,
    length: usize,
    body: Vec<u8>,
}

fn read_answer(conn: &mut BufReader<TcpStream>) -> Answer {
    let mut status = 0;
    let mut length = 0;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).expect("response head");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(code) = line.strip_prefix("HTTP/1.1 ") {
            status = code[..3].parse().expect("status code");
        } else if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("Content-Length");
            }
        }
    }
    let mut body = Vec::with_capacity(length);
    conn.by_ref().take(length as u64).read_to_end(&mut body).expect("body");
    Answer { status, length, body }
}

fn get(path: &str, range: Option<&str>) -> String {
    let range = range.map(|r| format!("Range: bytes={r}\r\n")).unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: mirror\r\n{range}\r\n")
}

/// A connection to `server` (reads time out after a minute), as a writer and a buffered reader.
fn connect(server: &Server) -> (TcpStream, BufReader<TcpStream>) {
    let tcp = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    (tcp.try_clone().expect("clone"), BufReader::new(tcp))
}

/// Send a GET of `path`, read the 200 head and the first MB of its body.
fn start_reading(writer: &mut TcpStream, conn: &mut BufReader<TcpStream>, path: &str) -> Vec<u8> {
    writer.write_all(get(path, None).as_bytes()).expect("request");
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        let mut line = String::new();
        conn.read_line(&mut line).expect("head");
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = vec![0u8; MB];
    conn.read_exact(&mut body).expect("the first MB");
    body
}

#[test]
fn blobs_sent_from_their_files_keep_their_place_among_pipelined_responses() {
    let up = Upstream::start();
    let dir = TestDir::new("kernel-copy");
    let image = images::custom(&up, &dir.subdir("work"), "library/kcopy:1", &[3 * MB, 300_000, 2_000]);
    let server = Server::start(&up.url());
    let client = http::client();
    let blob_path = |digest: &str| format!("/v2/{}/blobs/{digest}?ns=docker.io", image.repo);
    let layers = &image.manifest().layers;
    let (big, medium, small) = (&layers[0], &layers[1], &layers[2]);
    // The first pull fetches and verifies each blob; from then on they are served from their files.
    let bytes: Vec<Vec<u8>> = [big, medium, small]
        .iter()
        .map(|b| http::get_verified(&client, &format!("{}{}", server.url(), blob_path(&b.digest)), &b.digest))
        .collect();
    let (big_bytes, medium_bytes, small_bytes) = (&bytes[0], &bytes[1], &bytes[2]);
    let manifest_path = format!("/v2/{}/manifests/{}?ns=docker.io", image.repo, image.tag);

    let (mut writer, mut conn) = connect(&server);
    // All at once, so that each response is written while the next requests already wait in the server's buffer.
    let requests = [
        get(&blob_path(&big.digest), None),
        get(&blob_path(&small.digest), None),
        get(&blob_path(&big.digest), Some("1000-2999")),
        get(&manifest_path, None),
        get(&blob_path(&medium.digest), None),
        get(&blob_path(&big.digest), Some(&format!("{}-", big_bytes.len() - 5000))),
        get(&blob_path(&big.digest), None),
    ];
    writer.write_all(requests.concat().as_bytes()).expect("send the requests");
    let expect = |answer: Answer, status: u16, want: &[u8], what: &str| {
        assert_eq!(answer.status, status, "{what}");
        assert_eq!(answer.length, want.len(), "{what}: Content-Length");
        assert_eq!(answer.body.len(), want.len(), "{what}: the whole body arrived");
        assert!(answer.body == want, "{what}: the body is the blob's bytes, in place");
    };
    expect(read_answer(&mut conn), 200, big_bytes, "big layer");
    expect(read_answer(&mut conn), 200, small_bytes, "small layer (from memory)");
    expect(read_answer(&mut conn), 206, &big_bytes[1000..3000], "a range of the big layer");
    let manifest = read_answer(&mut conn);
    assert_eq!(manifest.status, 200, "manifest");
    assert_eq!(sha256_digest(&manifest.body), image.digest, "manifest bytes");
    expect(read_answer(&mut conn), 200, medium_bytes, "medium layer");
    expect(read_answer(&mut conn), 206, &big_bytes[big_bytes.len() - 5000..], "the big layer's tail");
    expect(read_answer(&mut conn), 200, big_bytes, "big layer again");
    // The connection is still usable.
    writer.write_all(get(&blob_path(&medium.digest), None).as_bytes()).expect("one more request");
    expect(read_answer(&mut conn), 200, medium_bytes, "medium layer on the kept connection");

    // A client that reads a little of the big layer and goes away: the next client is served whole.
    let mut leaver = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    leaver.write_all(get(&blob_path(&big.digest), None).as_bytes()).expect("request");
    let mut some = [0u8; 4096];
    leaver.read_exact(&mut some).expect("the start of the answer");
    drop(leaver);
    http::get_verified(&client, &format!("{}{}", server.url(), blob_path(&big.digest)), &big.digest);
}

#[test]
fn a_blob_file_cut_short_while_it_is_sent_ends_the_response_short_never_wrong() {
    let up = Upstream::start();
    let dir = TestDir::new("kernel-copy-cut");
    let image = images::custom(&up, &dir.subdir("work"), "library/kcut:1", &[48 * MB]);
    let server = Server::start(&up.url());
    let layer = &image.manifest().layers[0];
    let path = format!("/v2/{}/blobs/{}?ns=docker.io", image.repo, layer.digest);
    let whole = http::get_verified(&http::client(), &format!("{}{path}", server.url()), &layer.digest);
    // Clients are answered once the digest matches, before the fsync and the commit that puts the file in place.
    let file = server.cache_dir().join("blobs/sha256").join(layer.digest.trim_start_matches("sha256:"));
    common::wait_for("the layer to be committed", Duration::from_secs(30), || file.is_file().then_some(()));

    let (mut writer, mut conn) = connect(&server);
    // Read the head and a first slice, so the server is part-way (the socket buffers hold a few MB at most)...
    let mut body = start_reading(&mut writer, &mut conn, &path);
    // ...then the file loses its second half, in place.
    let cut = (whole.len() / 2) as u64;
    std::fs::OpenOptions::new().write(true).open(&file).expect("open the cached file").set_len(cut).expect("cut");
    let mut rest = Vec::new();
    // The connection ends (closed, or reset) when the server finds the file's end before the blob's.
    let _ = conn.read_to_end(&mut rest);
    body.extend_from_slice(&rest);
    assert!(
        body.len() < whole.len(),
        "a response of {} bytes for a {}-byte file cut at {cut}",
        body.len(),
        whole.len()
    );
    assert!(body.len() as u64 <= cut, "no byte past the cut was sent");
    assert!(body == whole[..body.len()], "every byte that arrived is the blob's own, in place");
}

/// A client still behind a running fetch when it completes gets the rest of the layer from the file (the transfer's
/// hand-over to the connection): its bytes arrive whole and in place, and the kept connection answers the next
/// request correctly.
#[test]
fn a_client_behind_a_fetch_that_completes_gets_the_rest_in_place_on_its_kept_connection() {
    let up = Upstream::start();
    let dir = TestDir::new("kernel-copy-handover");
    let image = images::custom(&up, &dir.subdir("work"), "library/khand:1", &[32 * MB, 3_000]);
    let server = Server::start(&up.url());
    let (layer, small) = (&image.manifest().layers[0], &image.manifest().layers[1]);
    let path = |digest: &str| format!("/v2/{}/blobs/{digest}?ns=docker.io", image.repo);
    let client = http::client();
    let whole =
        http::get_verified(&client, &format!("{}/v2/{}/blobs/{}", up.url(), image.repo, layer.digest), &layer.digest);

    let (mut writer, mut conn) = connect(&server);
    // The first request of the layer starts the fetch; this client reads a little, then stops reading...
    let mut body = start_reading(&mut writer, &mut conn, &path(&layer.digest));
    // ...until the fetch has finished and the layer is committed (another client gets it whole from the cache).
    let cached = server.cache_dir().join("blobs/sha256").join(layer.digest.trim_start_matches("sha256:"));
    let start = std::time::Instant::now();
    while !cached.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "the layer was never committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    http::get_verified(&client, &format!("{}{}", server.url(), path(&layer.digest)), &layer.digest);
    let mut rest = vec![0u8; whole.len() - MB];
    conn.read_exact(&mut rest).expect("the rest of the layer");
    body.extend_from_slice(&rest);
    assert!(body == whole, "the layer arrived whole and in place");
    // The connection is still in step: the next answer is the next request's.
    writer.write_all(get(&path(&small.digest), None).as_bytes()).expect("next request");
    let next = read_answer(&mut conn);
    assert_eq!(next.status, 200);
    assert_eq!(sha256_digest(&next.body), small.digest, "the next response is the small layer");
}
