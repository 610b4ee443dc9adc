//! Ranges ahead of the transfer (issue 25), over a 20 Mbit/s link emulated in a network namespace
//! (tests/common/wan.rs), the real mirror and clients inside it on 127.0.0.1:
//!
//! - against a real `docker-registry`: the tail range (`bytes=-65536`, where a lazy puller finds a layer's table of
//!   contents) of a fresh ~25 MB layer answers in well under the layer's link time, byte-exact, counted in the
//!   metrics; afterwards the whole layer is cached and verified (served again with the upstream stopped), and the link
//!   carried the layer and the range, no more; four concurrent ranges covering a fresh layer (containerd 2.x) finish
//!   within 1.1x the layer's link time with the link carrying the layer about once (the ranges' bytes are written
//!   into the download, which does not fetch them again); with `rangePassThrough: false` the range waits for the
//!   transfer;
//! - bad input, from an in-process upstream (a real registry answers ranges right): one that ignores `Range` and
//!   answers 200 with the whole blob, and one whose `Content-Range` is not the range asked for: the client still gets
//!   exactly its range (from the transfer), never the upstream's wrong bytes, and one whole-blob transfer runs; a range
//!   past the blob's end gets 416 with `Content-Range: bytes */SIZE`, as for a cached blob;
//! - a client that leaves its range, one that stops reading it, and a mirror killed mid-layer with pieces ahead: the
//!   layer still ends verified; a blob whose upstream announces no size: the tail's size comes from the upstream.
//!
//! Bounds are generous: they show the feature works, not its speed.

mod common;

use std::time::{Duration, Instant};

use common::http::{self, StatusCode};
use common::images;
use common::metrics::Scrape;
use common::ports::free_port;
use common::server::{Server, ServerConfig};
use common::stub_http::{serve_bytes, Reply, StubImage, StubServer};
use common::upstream::Upstream;
use common::wan::{Link, Wan};
use common::TestDir;

const MB: usize = 1024 * 1024;
/// The link: 20 Mbit/s, as in the issue.
const RATE: u64 = 20_000_000;
/// The tail a lazy puller reads first.
const TAIL: u64 = 65_536;

/// A ranged GET: status, `Content-Range`, body, and the time to the body's end.
fn ranged_get(url: &str, range: &str) -> (StatusCode, String, Vec<u8>, Duration) {
    let start = Instant::now();
    let resp = http::client().get(url).header("Range", range).send().expect("ranged GET");
    let (status, content_range) = (resp.status(), http::header(&resp, "Content-Range"));
    let body = resp.bytes().expect("the range's body").to_vec();
    (status, content_range, body, start.elapsed())
}

/// The mirror with its metrics on a port of their own; `extra` more top-level YAML.
fn mirror(upstream_url: &str, extra: &str) -> (Server, impl Fn() -> Scrape) {
    let metrics_port = free_port();
    let config = ServerConfig::for_upstream(upstream_url).extra(&format!("metrics: {metrics_port}\n{extra}"));
    let server = Server::start_with(config);
    let scrape = move || Scrape::fetch(&format!("http://127.0.0.1:{metrics_port}/metrics"));
    (server, scrape)
}

/// A real registry inside `wan` holding one image of one layer of `size` bytes, its answers shaped by a new link.
fn shaped_registry(wan: &Wan, work: &TestDir, name: &str, size: usize) -> (Upstream, images::Image, Link) {
    let (up, mut pushed, link) = common::wan::shaped_registry(wan, work, &[(name, &[size])], RATE);
    (up, pushed.remove(0), link)
}

#[test]
fn the_tail_of_a_fresh_layer_answers_at_once_and_the_layer_still_crosses_the_link_once_verified() {
    let wan = Wan::new();
    wan.enter();
    let work = TestDir::new("ranges-tail");
    let (mut up, image, link) = shaped_registry(&wan, &work, "library/lazy:1", 25_000_000);
    let layer = image.manifest().layers[0].clone();
    let (server, scrape) = mirror(&up.url(), "");
    let ns = [("ns", "docker.io")];
    assert_eq!(scrape().sum("ociregistry_range_passthrough_total", &ns), 0.0, "shown from the start");
    let url = format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), image.repo, layer.digest);

    let before = link.bytes();
    let (status, content_range, tail, took) = ranged_get(&url, &format!("bytes=-{TAIL}"));
    let size = layer.size;
    eprintln!(
        "ranges tail: {TAIL} bytes of a fresh {size}-byte layer in {:.0} ms (the layer's link time {:.1} s)",
        took.as_secs_f64() * 1000.0,
        link.seconds_for(size)
    );
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(content_range, format!("bytes {}-{}/{size}", size - TAIL, size - 1));
    assert_eq!(tail.len() as u64, TAIL);
    assert!(took <= Duration::from_millis(500), "the tail took {took:?}");
    let metrics = scrape();
    assert_eq!(metrics.sum("ociregistry_range_passthrough_total", &ns), 1.0);
    assert_eq!(metrics.sum("ociregistry_range_passthrough_bytes_total", &ns), TAIL as f64);

    // The transfer the range started runs on: the whole layer, verified, is served as it arrives, then cached.
    let whole = http::get_verified(&http::client(), &url, &layer.digest);
    assert!(whole[whole.len() - TAIL as usize..] == tail[..], "the tail passed through is the layer's");
    let crossed = link.bytes() - before;
    eprintln!(
        "ranges tail: {crossed} bytes over the link for the layer and the tail ({:.4}x the layer)",
        crossed as f64 / size as f64
    );
    // The link counts what crossed it about exactly (tests/wan.rs calibrates it within 1%).
    assert!(
        crossed as f64 <= 1.01 * (size + TAIL) as f64,
        "{crossed} bytes crossed the link for a {size}-byte layer and a {TAIL}-byte range"
    );
    up.stop();
    let again = http::get_verified(&http::client(), &url, &layer.digest);
    assert!(again == whole, "cached whole and verified");
    let (status, _, tail_again, _) = ranged_get(&url, &format!("bytes=-{TAIL}"));
    assert_eq!((status, tail_again == tail), (StatusCode::PARTIAL_CONTENT, true), "the tail from the cache");
}

#[test]
fn four_concurrent_ranges_of_a_fresh_layer_take_the_link_time_of_the_layer_once() {
    let wan = Wan::new();
    wan.enter();
    let work = TestDir::new("ranges-four");
    let (mut up, image, link) = shaped_registry(&wan, &work, "library/parallel:1", 16_000_000);
    let layer = image.manifest().layers[0].clone();
    let (server, scrape) = mirror(&up.url(), "");
    let url = format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), image.repo, layer.digest);
    let size = layer.size;
    let quarter = size / 4;
    let spans: Vec<(u64, u64)> =
        (0..4).map(|i| (i * quarter, if i == 3 { size - 1 } else { (i + 1) * quarter - 1 })).collect();

    // containerd 2.x: one layer as four ranges at once.
    let before = link.bytes();
    let start = Instant::now();
    let clients: Vec<_> = spans
        .iter()
        .map(|&(a, b)| {
            let url = url.clone();
            std::thread::spawn(move || {
                let (status, content_range, body, took) = ranged_get(&url, &format!("bytes={a}-{b}"));
                assert_eq!(status, StatusCode::PARTIAL_CONTENT, "range {a}-{b}");
                assert_eq!(content_range, format!("bytes {a}-{b}/{size}"));
                (a, body, took)
            })
        })
        .collect();
    let mut parts: Vec<(u64, Vec<u8>, Duration)> = clients.into_iter().map(|c| c.join().expect("a range")).collect();
    let wall = start.elapsed().as_secs_f64();
    parts.sort_by_key(|p| p.0);
    let link_time = link.seconds_for(size);
    // The whole layer, verified, from the transfer the ranges joined (it ends once verified).
    let whole = http::get_verified(&http::client(), &url, &layer.digest);
    let crossed = link.bytes() - before;
    eprintln!(
        "ranges four: {size}-byte layer as four ranges in {wall:.2} s (link time {link_time:.2} s, {:.3}x; each {:?}), {crossed} bytes over the link ({:.4}x), {} passed through",
        wall / link_time,
        parts.iter().map(|p| format!("{:.2}", p.2.as_secs_f64())).collect::<Vec<_>>(),
        crossed as f64 / size as f64,
        scrape().sum("ociregistry_range_passthrough_total", &[("ns", "docker.io")]),
    );
    let joined: Vec<u8> = parts.iter().flat_map(|p| p.1.iter().copied()).collect();
    assert!(joined == whole, "the four ranges are the layer");
    // 0.5 s: the ranges' requests, the transfer's response head, and its one request after the pieces.
    assert!(wall <= 1.1 * link_time + 0.5, "four ranges took {wall:.2} s, the link needs {link_time:.2} s");
    assert!(crossed as f64 <= 1.05 * size as f64, "{crossed} bytes crossed the link for a {size}-byte layer");
    up.stop();
    assert!(http::get_verified(&http::client(), &url, &layer.digest) == whole, "cached whole and verified");
}

/// GET `url` whole until a body arrives complete (the mirror may be down for a moment); panics unless it hashes to
/// `digest`.
fn whole_eventually(url: &str, digest: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match http::download(url) {
            Ok(body) if common::sha256_digest(&body) == digest => return body,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    panic!("no whole download of {url} within 2 minutes");
}

#[test]
fn a_client_that_leaves_a_range_fetched_ahead_and_a_mirror_killed_mid_layer_still_end_verified() {
    use std::io::Read;
    let wan = Wan::new();
    wan.enter();
    let work = TestDir::new("ranges-cut");
    let (up, image, link) = shaped_registry(&wan, &work, "library/cut:1", 12_000_000);
    let layer = image.manifest().layers[0].clone();
    let (mut server, _) = mirror(&up.url(), "");
    let url = format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), image.repo, layer.digest);
    let size = layer.size;

    // The second half as a range, left after 1 MB: the transfer takes what the piece brought and fetches the rest.
    let before = link.bytes();
    let mut resp = http::client().get(&url).header("Range", format!("bytes={}-", size / 2)).send().expect("GET");
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let mut first = vec![0u8; MB];
    resp.read_exact(&mut first).expect("the range's first MB");
    drop(resp);
    // The tail too, then the mirror killed once half the layer has crossed: the restart resumes the bytes appended
    // (never the pieces ahead of them, nor the holes between) and the layer ends verified.
    let (_, _, tail, _) = ranged_get(&url, &format!("bytes=-{TAIL}"));
    let client = {
        let (url, digest) = (url.clone(), layer.digest.clone());
        std::thread::spawn(move || whole_eventually(&url, &digest))
    };
    common::wait_for("half the layer across", Duration::from_secs(60), || {
        (link.bytes() - before >= size / 2).then_some(())
    });
    server.signal("KILL");
    server.wait_exit(Duration::from_secs(10)).expect("the mirror killed");
    server.restart();
    let whole = client.join().expect("the whole layer, verified");
    let crossed = link.bytes() - before;
    eprintln!(
        "ranges cut: a range left after 1 MB, the tail, a kill at half: {crossed} bytes over the link for a {size}-byte layer ({:.4}x)",
        crossed as f64 / size as f64
    );
    assert!(whole[(size / 2) as usize..][..MB] == first[..], "the range's bytes are the layer's");
    assert!(whole[whole.len() - TAIL as usize..] == tail[..]);
    // The tail and the piece's bytes lost with the kill, and what was in flight: well under twice the layer.
    assert!(crossed as f64 <= 1.3 * size as f64, "{crossed} bytes crossed the link for a {size}-byte layer");
    let after = link.bytes();
    assert!(http::get_verified(&http::client(), &url, &layer.digest) == whole);
    assert!(link.bytes() - after < 4096, "then served from the cache");
}

#[test]
fn a_range_whose_client_stops_reading_does_not_hold_up_the_transfer() {
    let wan = Wan::new();
    wan.enter();
    let work = TestDir::new("ranges-stall");
    let (up, image, link) = shaped_registry(&wan, &work, "library/stall:1", 24 * MB);
    let layer = image.manifest().layers[0].clone();
    let (server, _) = mirror(&up.url(), "");
    let url = format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), image.repo, layer.digest);
    let size = layer.size;

    // A range of the second half whose client reads nothing: its piece stops once the buffers on the way are full.
    let held = http::client().get(&url).header("Range", format!("bytes={}-", size / 2)).send().expect("GET");
    assert_eq!(held.status(), StatusCode::PARTIAL_CONTENT);
    let start = Instant::now();
    http::get_verified(&http::client(), &url, &layer.digest);
    let took = start.elapsed().as_secs_f64();
    let link_time = link.seconds_for(size);
    eprintln!("ranges stall: the whole layer in {took:.2} s beside a range nobody reads (link time {link_time:.2} s)");
    // The transfer waits 2 s for a piece that brings nothing, then fetches the bytes itself.
    assert!(took <= 1.3 * link_time + 3.0, "the whole layer took {took:.2} s");
    assert!(server.logs().contains("a piece fetched ahead stalled"), "the transfer took the stalled piece over");
    drop(held);
}

#[test]
fn with_range_pass_through_off_a_range_ahead_waits_for_the_transfer() {
    let wan = Wan::new();
    wan.enter();
    let work = TestDir::new("ranges-off");
    let (up, image, link) = shaped_registry(&wan, &work, "library/patient:1", 8 * MB);
    let layer = image.manifest().layers[0].clone();
    let (server, scrape) = mirror(&up.url(), "rangePassThrough: false");
    let url = format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), image.repo, layer.digest);

    let before = link.bytes();
    let (status, _, tail, took) = ranged_get(&url, &format!("bytes=-{TAIL}"));
    let link_time = link.seconds_for(layer.size);
    eprintln!("ranges off: the tail in {:.2} s (the layer's link time {link_time:.2} s)", took.as_secs_f64());
    assert_eq!((status, tail.len() as u64), (StatusCode::PARTIAL_CONTENT, TAIL));
    assert!(took.as_secs_f64() >= 0.8 * link_time, "the tail came before the transfer reached it: {took:?}");
    assert_eq!(scrape().sum("ociregistry_range_passthrough_total", &[("ns", "docker.io")]), 0.0);
    let whole = http::get_verified(&http::client(), &url, &layer.digest);
    assert!(whole[whole.len() - TAIL as usize..] == tail[..]);
    assert!((link.bytes() - before) as f64 <= 1.01 * layer.size as f64, "the layer crossed once");
}

/// A stub upstream inside `wan` serving `image`, its blob GETs with a `Range` answered by `ranged`, shaped by a link.
fn shaped_stub(
    wan: &Wan,
    image: &StubImage,
    ranged: impl Fn(&[u8], &str, &common::stub_http::RecordedRequest) -> Reply + Send + Sync + 'static,
) -> (StubServer, Link) {
    let served = image.clone();
    let stub = StubServer::start(move |req| match served.blob_requested(req) {
        Some(digest) if req.header("range").is_some() => match served.blob(&digest) {
            Some(bytes) => ranged(bytes, &digest, req),
            None => served.serve(req),
        },
        _ => served.serve(req),
    });
    let link = wan.link(RATE);
    link.shape(stub.port());
    (stub, link)
}

/// The blob GETs `stub` received with and without a `Range`.
fn blob_gets(stub: &StubServer) -> (usize, usize) {
    let gets: Vec<_> =
        stub.requests().into_iter().filter(|r| r.method == "GET" && r.path().contains("/blobs/")).collect();
    let ranged = gets.iter().filter(|r| r.header("range").is_some()).count();
    (gets.len() - ranged, ranged)
}

#[test]
fn an_upstream_that_ignores_range_or_answers_another_range_never_reaches_the_client() {
    let wan = Wan::new();
    wan.enter();
    type Answer = fn(&[u8], &str, &common::stub_http::RecordedRequest) -> Reply;
    // The whole blob with 200; the range one byte further on, announced as such; the range asked for, announced as
    // the one after it.
    let whole: Answer = |bytes, digest, _| {
        Reply::status(200).body("application/octet-stream", bytes.to_vec()).header("Docker-Content-Digest", digest)
    };
    let shifted: Answer = |bytes, digest, req| {
        let range = req.header("range").unwrap_or_default().replace("bytes=", "");
        let (a, b) = range.split_once('-').unwrap_or_default();
        let (a, b): (usize, usize) = (a.parse().unwrap_or(0) + 1, b.parse().unwrap_or(0));
        Reply::status(206)
            .body("application/octet-stream", bytes[a..=b].to_vec())
            .header("Content-Range", &format!("bytes {a}-{b}/{}", bytes.len()))
            .header("Docker-Content-Digest", digest)
    };
    let mislabelled: Answer = |bytes, digest, req| {
        let mut reply = serve_bytes(req, bytes, digest);
        reply.headers.retain(|(k, _)| k != "Content-Range");
        reply.header("Content-Range", &format!("bytes 0-{}/{}", TAIL - 1, bytes.len()))
    };
    for (what, answer) in
        [("200 with the whole blob", whole), ("another range", shifted), ("a mislabelled range", mislabelled)]
    {
        let image = StubImage::new("library/odd", "1", &[6 * MB]);
        let (stub, link) = shaped_stub(&wan, &image, answer);
        let (server, scrape) = mirror(&stub.url(), "");
        let (digest, bytes) = image.layers[0].clone();
        let url = format!("{}/v2/{}/blobs/{digest}?ns=docker.io", server.url(), image.repo);
        let size = bytes.len() as u64;

        let before = link.bytes();
        let (status, content_range, tail, took) = ranged_get(&url, &format!("bytes=-{TAIL}"));
        eprintln!("ranges, upstream answering {what}: the tail in {:.2} s", took.as_secs_f64());
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{what}");
        assert_eq!(content_range, format!("bytes {}-{}/{size}", size - TAIL, size - 1), "{what}");
        assert!(tail[..] == bytes[(size - TAIL) as usize..], "{what}: exactly the range, from the transfer");
        assert_eq!(scrape().sum("ociregistry_range_passthrough_total", &[("ns", "docker.io")]), 0.0, "{what}");
        http::get_verified(&http::client(), &url, &digest);
        let (whole_gets, ranged_gets) = blob_gets(&stub);
        assert_eq!((whole_gets, ranged_gets), (1, 1), "{what}: one transfer, one ranged GET refused");
        let crossed = link.bytes() - before;
        assert!(crossed as f64 <= 1.1 * size as f64, "{what}: {crossed} bytes crossed the link for {size}");
    }
}

#[test]
fn a_range_past_the_end_of_a_fresh_blob_is_416_as_for_a_cached_one() {
    let wan = Wan::new();
    wan.enter();
    let image = StubImage::new("library/short", "1", &[4 * MB]);
    let (stub, _link) = shaped_stub(&wan, &image, |bytes, digest, req| serve_bytes(req, bytes, digest));
    let (server, _) = mirror(&stub.url(), "");
    let (digest, bytes) = image.layers[0].clone();
    let url = format!("{}/v2/{}/blobs/{digest}?ns=docker.io", server.url(), image.repo);
    let size = bytes.len();
    for _ in ["fresh", "cached"] {
        let resp = http::client().get(&url).header("Range", format!("bytes={size}-")).send().expect("GET");
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(http::header(&resp, "Content-Range"), format!("bytes */{size}"));
        http::get_verified(&http::client(), &url, &digest);
    }
    assert_eq!(blob_gets(&stub), (1, 0), "no ranged GET upstream for a range the blob cannot satisfy");
}

#[test]
fn a_range_of_a_blob_of_unknown_size_takes_the_size_from_the_upstreams_answer() {
    let wan = Wan::new();
    wan.enter();
    let image = StubImage::new("library/unsized", "1", &[6 * MB]);
    let served = image.clone();
    // The whole blob with no length (delimited by the connection's end); ranges as a registry answers them.
    let stub = StubServer::start(move |req| match (served.blob_requested(req), req.header("range")) {
        (Some(digest), Some(range)) => {
            let bytes = served.blob(&digest).unwrap_or_default();
            match range.strip_prefix("bytes=-").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => {
                    let (len, start) = (bytes.len(), bytes.len().saturating_sub(n));
                    Reply::status(206)
                        .body("application/octet-stream", bytes[start..].to_vec())
                        .header("Content-Range", &format!("bytes {start}-{}/{len}", len - 1))
                }
                None => serve_bytes(req, bytes, &digest),
            }
        }
        (Some(digest), None) => serve_bytes(req, served.blob(&digest).unwrap_or_default(), &digest).without_length(),
        _ => served.serve(req),
    });
    let link = wan.link(RATE);
    link.shape(stub.port());
    let (server, scrape) = mirror(&stub.url(), "");
    let (digest, bytes) = image.layers[0].clone();
    let url = format!("{}/v2/{}/blobs/{digest}?ns=docker.io", server.url(), image.repo);
    let size = bytes.len() as u64;

    let (status, content_range, tail, took) = ranged_get(&url, &format!("bytes=-{TAIL}"));
    let link_time = link.seconds_for(size);
    eprintln!("ranges unsized: the tail in {:.0} ms (link time {link_time:.2} s)", took.as_secs_f64() * 1000.0);
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(content_range, format!("bytes {}-{}/{size}", size - TAIL, size - 1), "the size the upstream stated");
    assert!(tail[..] == bytes[(size - TAIL) as usize..]);
    assert!(took.as_secs_f64() < link_time / 2.0, "the tail waited for the transfer: {took:?}");
    assert_eq!(scrape().sum("ociregistry_range_passthrough_total", &[("ns", "docker.io")]), 1.0);
    http::get_verified(&http::client(), &url, &digest);
    assert_eq!(blob_gets(&stub), (1, 1), "one transfer, one ranged GET");
}
