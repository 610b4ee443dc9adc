//! Pipelined requests on one connection of the main port (plain and TLS) each get their own, correctly framed
//! answer: a `HEAD` beside a `GET` of the same manifest or blob does not take the `GET`'s body away, a blob sent
//! from its file, a range, an error, an answer from memory all keep their place, and an HTTP/1.0 or
//! `Connection: close` request ends the connection after its own answer, not before or after another's.
//!
//! The generated tests send a seeded random sequence of a few hundred requests of every kind in batches on one
//! connection and check every answer's status, framing headers and body against what the same request gets alone
//! on a fresh connection. The seed is printed; `OCIREGISTRY_PIPELINE_SEED=N` replays it.

mod common;

use std::collections::HashMap;

use common::certs;
use common::images;
use common::pipeline::{Answer, Ask, Target};
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::{sha256_digest, TestDir};

const MB: usize = 1024 * 1024;

/// What the tests pull: one image with a layer of a few MiB (sent from its file on the plain port once cached) and
/// one small enough to be held in memory.
struct Fixture {
    repo: String,
    tag: String,
    digest: String,
    manifest: Vec<u8>,
    big: String,
    big_bytes: Vec<u8>,
    small: String,
    small_bytes: Vec<u8>,
}

impl Fixture {
    fn make(up: &Upstream, dir: &TestDir, name: &str) -> Fixture {
        let image = images::custom(up, &dir.subdir("work"), &format!("library/{name}:v1"), &[3 * MB, 20_000]);
        let layers = &image.manifest().layers;
        let client = common::http::client();
        let blob = |digest: &str| {
            common::http::get_verified(&client, &format!("{}/v2/{}/blobs/{digest}", up.url(), image.repo), digest)
        };
        Fixture {
            repo: image.repo.clone(),
            tag: image.tag.clone(),
            digest: image.digest.clone(),
            manifest: image.bytes.clone(),
            big: layers[0].digest.clone(),
            big_bytes: blob(&layers[0].digest),
            small: layers[1].digest.clone(),
            small_bytes: blob(&layers[1].digest),
        }
    }

    fn manifest_path(&self, reference: &str) -> String {
        format!("/v2/{}/manifests/{reference}?ns=docker.io", self.repo)
    }

    fn blob_path(&self, digest: &str) -> String {
        format!("/v2/{}/blobs/{digest}?ns=docker.io", self.repo)
    }

    /// Pull everything once, so that the cache holds it (the big layer is then sent from its file on plain HTTP).
    fn warm(&self, target: &Target) {
        let mut conn = target.connect();
        let answers = conn.pipeline(&[Ask::get(&self.manifest_path(&self.tag))]);
        assert_eq!(answers[0].body, self.manifest, "the manifest through the mirror");
        for (digest, bytes) in [(&self.big, &self.big_bytes), (&self.small, &self.small_bytes)] {
            let answers = target.connect().pipeline(&[Ask::get(&self.blob_path(digest))]);
            assert_eq!(answers[0].status, 200, "{digest}: {}", answers[0].summary());
            assert!(answers[0].body == *bytes, "{digest}: the blob's bytes through the mirror");
        }
    }
}

fn plain_server(up: &Upstream) -> (Server, Target) {
    let server = Server::start(&up.url());
    let target = Target { port: server.port(), ca: None };
    (server, target)
}

fn tls_server(up: &Upstream, dir: &TestDir) -> (Server, Target) {
    let certs = certs::generate(&dir.subdir("certs"));
    let tls = format!(
        "serverTlsConfig:\n  cert: \"{}\"\n  key: \"{}\"\n  clientAuth: none\n",
        certs.server.cert.display(),
        certs.server.key.display()
    );
    let server = Server::start_with(ServerConfig::for_upstream(&up.url()).extra(&tls));
    let target = Target { port: server.port(), ca: Some(certs.ca.clone()) };
    // Ready when a handshake and a request go through.
    common::wait_for("GET /v2/ over TLS", std::time::Duration::from_secs(20), || {
        let mut conn = std::panic::catch_unwind(|| target.connect()).ok()?;
        let ask = Ask::get("/v2/");
        conn.send(std::slice::from_ref(&ask));
        conn.answer(&ask).ok().filter(|a| a.status == 200)
    });
    (server, target)
}

/// The headers that frame an answer or say what it is.
const COMPARED: [&str; 7] = [
    "content-length",
    "content-type",
    "docker-content-digest",
    "content-range",
    "transfer-encoding",
    "connection",
    "etag",
];

/// `got` (in a pipeline) is what `ask` gets alone (`alone`).
fn assert_same(ask: &Ask, got: &Answer, alone: &Answer, context: &str) {
    let what = format!("{context}: {} {}", ask.method, ask.path);
    assert_eq!((got.version.as_str(), got.status), (alone.version.as_str(), alone.status), "{what}: status");
    for name in COMPARED {
        assert_eq!(got.header(name), alone.header(name), "{what}: {name}; got {}", got.summary());
    }
    assert!(
        got.body == alone.body,
        "{what}: {} body bytes, alone {} (first difference at {:?})",
        got.body.len(),
        alone.body.len(),
        got.body.iter().zip(&alone.body).position(|(a, b)| a != b)
    );
}

#[test]
fn pipelined_heads_and_gets_each_get_their_own_framing_on_the_plain_port() {
    let up = Upstream::start();
    let dir = TestDir::new("pipelining");
    let fx = Fixture::make(&up, &dir, "pipe");
    let (_server, target) = plain_server(&up);
    fx.warm(&target);
    let manifest = fx.manifest_path(&fx.tag);
    let (big, small) = (fx.blob_path(&fx.big), fx.blob_path(&fx.small));

    let check = |asks: Vec<Ask>, what: &str| {
        let mut conn = target.connect();
        let answers = conn.pipeline(&asks);
        for (i, (ask, got)) in asks.iter().zip(&answers).enumerate() {
            let alone = target.connect().pipeline(std::slice::from_ref(ask)).remove(0);
            assert_same(ask, got, &alone, &format!("{what}, request {i}"));
        }
        // Still in step: one more request on the same connection gets its own answer.
        let next = Ask::get(&manifest);
        let again = conn.pipeline(std::slice::from_ref(&next)).remove(0);
        assert_eq!(again.body, fx.manifest, "{what}: the manifest after the pipeline");
        answers
    };

    let a = check(vec![Ask::head(&manifest), Ask::get(&manifest), Ask::head(&manifest)], "HEAD, GET, HEAD manifest");
    assert_eq!(a[1].body, fx.manifest, "the GET between two HEADs has the manifest as its body");
    let a = check(vec![Ask::get(&manifest), Ask::head(&manifest), Ask::get(&manifest)], "GET, HEAD, GET manifest");
    assert_eq!((a[0].body == fx.manifest, a[2].body == fx.manifest), (true, true), "both GETs have their body");

    let a = check(vec![Ask::head(&small), Ask::get(&small), Ask::head(&small)], "HEAD, GET, HEAD small blob");
    assert!(a[1].body == fx.small_bytes, "the small blob's GET has its bytes");
    let a = check(vec![Ask::get(&small), Ask::head(&small), Ask::get(&small)], "GET, HEAD, GET small blob");
    assert!(a[0].body == fx.small_bytes && a[2].body == fx.small_bytes, "both small GETs have their bytes");

    let range = Ask::get(&big).with("Range", "bytes=1000-2999");
    let a = check(vec![Ask::get(&big), Ask::head(&big), range], "GET big, HEAD big, Range GET big");
    assert!(a[0].body == fx.big_bytes, "the big blob whole");
    assert_eq!(a[1].header("content-length"), Some(fx.big_bytes.len().to_string().as_str()), "the HEAD's length");
    assert_eq!((a[2].status, &a[2].body[..]), (206, &fx.big_bytes[1000..3000]), "the range");
}

/// What an answer in `sendfile_blobs_heads_ranges_a_manifest_and_404s_keep_their_order` must be.
enum Want<'a> {
    /// 200 with these bytes, from the blob with this digest.
    Blob(&'a str, &'a [u8]),
    /// 206 with bytes `start..end` of the blob with this digest and these bytes.
    Range(&'a str, &'a [u8], usize, usize),
    /// A `HEAD` answered 200 for the blob with this digest and length.
    Head(&'a str, usize),
    /// 200 with the manifest of this digest and these bytes.
    Manifest(&'a str, &'a [u8]),
    /// 404 with this OCI error code (with a body unless it answers a `HEAD`).
    NotFound(&'static str),
}

fn expect(ask: &Ask, got: &Answer, want: &Want, what: &str) {
    let what = format!("{what}: {} {}; got {}", ask.method, ask.path, got.summary());
    let length = got.header("content-length").map(str::to_string);
    match *want {
        Want::Blob(digest, bytes) => {
            assert_eq!((got.status, got.header("docker-content-digest")), (200, Some(digest)), "{what}");
            assert_eq!(length, Some(bytes.len().to_string()), "{what}: Content-Length");
            assert!(got.body == bytes, "{what}: every byte of the blob, in place");
        }
        Want::Range(digest, bytes, start, end) => {
            assert_eq!((got.status, got.header("docker-content-digest")), (206, Some(digest)), "{what}");
            let range = format!("bytes {start}-{}/{}", end - 1, bytes.len());
            assert_eq!(got.header("content-range"), Some(range.as_str()), "{what}: Content-Range");
            assert_eq!(length, Some((end - start).to_string()), "{what}: Content-Length");
            assert!(got.body == bytes[start..end], "{what}: every byte of the range, in place");
        }
        Want::Head(digest, len) => {
            assert_eq!((got.status, got.header("docker-content-digest")), (200, Some(digest)), "{what}");
            assert_eq!(length, Some(len.to_string()), "{what}: Content-Length");
            assert!(got.body.is_empty(), "{what}: no body");
        }
        Want::Manifest(digest, bytes) => {
            assert_eq!((got.status, got.header("docker-content-digest")), (200, Some(digest)), "{what}");
            assert_eq!(got.body, bytes, "{what}: the manifest's bytes");
        }
        Want::NotFound(code) => {
            assert_eq!(got.status, 404, "{what}");
            if ask.method == "GET" {
                let json: serde_json::Value = serde_json::from_slice(&got.body).expect("an OCI error body");
                assert_eq!(json["errors"][0]["code"], code, "{what}: the error code");
            }
        }
    }
}

/// Blobs sent from their files (above the small-blob size, cached and verified), `HEAD`s, ranges, a manifest and
/// 404s, all written at once on one kept-alive plain connection: every answer comes in its request's order, with its
/// status and every byte of its body, and the connection stays in step. (This pins the sendfile path's behaviour
/// among pipelined requests: the bytes a connection sends from a file land after their head and before the next
/// answer.)
#[test]
fn sendfile_blobs_heads_ranges_a_manifest_and_404s_keep_their_order() {
    let up = Upstream::start();
    let dir = TestDir::new("pipelining-sendfile");
    let image = images::custom(&up, &dir.subdir("work"), "library/pipesend:v1", &[3 * MB, MB + 12_345, 30_000]);
    let (server, target) = plain_server(&up);
    let manifest = image.manifest();
    let blob_path = |digest: &str| format!("/v2/{}/blobs/{digest}?ns=docker.io", image.repo);
    let manifest_path = |reference: &str| format!("/v2/{}/manifests/{reference}?ns=docker.io", image.repo);
    let (big, mid, small) = (&manifest.layers[0].digest, &manifest.layers[1].digest, &manifest.layers[2].digest);
    let client = common::http::client();
    let mut bytes = HashMap::new();
    for digest in [big, mid, small] {
        let url = format!("{}{}", server.url(), blob_path(digest));
        bytes.insert(digest, common::http::get_verified(&client, &url, digest));
        // Clients are answered once the digest matches, before the commit that puts the file in place; from the
        // commit on, a GET is answered from the verified file.
        let file = server.cache_dir().join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        common::wait_for("the blob to be committed", std::time::Duration::from_secs(30), || {
            file.is_file().then_some(())
        });
        assert!(common::http::get_verified(&client, &url, digest) == bytes[digest], "{digest} from the cache");
    }
    let (big_bytes, mid_bytes, small_bytes) = (&bytes[big][..], &bytes[mid][..], &bytes[small][..]);
    assert!(mid_bytes.len() > 256 * 1024, "the blobs are sent from their files, not held in memory");
    let unknown = format!("sha256:{}", "0".repeat(64));
    let (big_len, mid_len) = (big_bytes.len(), mid_bytes.len());

    let asks_wants = [
        (Ask::get(&blob_path(big)), Want::Blob(big, big_bytes)),
        (Ask::head(&blob_path(big)), Want::Head(big, big_len)),
        (Ask::get(&blob_path(mid)), Want::Blob(mid, mid_bytes)),
        (Ask::get(&blob_path(big)).with("Range", "bytes=1000-2999"), Want::Range(big, big_bytes, 1000, 3000)),
        (Ask::get(&blob_path(&unknown)), Want::NotFound("BLOB_UNKNOWN")),
        (Ask::get(&manifest_path(&image.tag)), Want::Manifest(&image.digest, &image.bytes)),
        (Ask::head(&blob_path(mid)), Want::Head(mid, mid_len)),
        (
            Ask::get(&blob_path(mid)).with("Range", &format!("bytes={}-", mid_len - 5000)),
            Want::Range(mid, mid_bytes, mid_len - 5000, mid_len),
        ),
        (Ask::get(&manifest_path("no-such-tag")), Want::NotFound("MANIFEST_UNKNOWN")),
        (Ask::get(&blob_path(big)), Want::Blob(big, big_bytes)),
        (Ask::get(&blob_path(small)), Want::Blob(small, small_bytes)),
        (Ask::head(&blob_path(&unknown)), Want::NotFound("BLOB_UNKNOWN")),
        (
            Ask::get(&blob_path(big)).with("Range", &format!("bytes=100-{}", big_len - 101)),
            Want::Range(big, big_bytes, 100, big_len - 100),
        ),
        (Ask::head(&manifest_path("no-such-tag")), Want::NotFound("MANIFEST_UNKNOWN")),
        (Ask::get(&blob_path(mid)), Want::Blob(mid, mid_bytes)),
    ];
    let asks: Vec<Ask> = asks_wants.iter().map(|(ask, _)| ask.clone()).collect();
    let mut conn = target.connect();
    let answers = conn.pipeline(&asks);
    for (i, ((ask, want), got)) in asks_wants.iter().zip(&answers).enumerate() {
        assert!(!got.closes(), "answer {i} closes the kept-alive connection: {}", got.summary());
        expect(ask, got, want, &format!("answer {i}"));
    }
    // Still in step: the next request on the same connection gets its own answer.
    let next = Ask::get(&blob_path(big));
    let again = conn.pipeline(std::slice::from_ref(&next)).remove(0);
    expect(&next, &again, &Want::Blob(big, big_bytes), "the request after the pipeline");
}

#[test]
fn http10_and_connection_close_in_a_pipeline_end_it_after_their_own_answer() {
    let up = Upstream::start();
    let dir = TestDir::new("pipelining-close");
    let fx = Fixture::make(&up, &dir, "pipeclose");
    let (_plain, plain) = plain_server(&up);
    let (_tls, tls) = tls_server(&up, &dir);
    for target in [plain, tls] {
        fx.warm(&target);
        close_cases(&target, &fx);
    }
}

fn close_cases(target: &Target, fx: &Fixture) {
    let manifest = fx.manifest_path(&fx.tag);
    let small = fx.blob_path(&fx.small);

    // `Connection: close` third: the two before it are kept-alive HTTP/1.1 answers, it closes, the fourth is never
    // answered.
    let asks =
        [Ask::get(&manifest), Ask::head(&manifest), Ask::get(&small).with("Connection", "close"), Ask::get(&manifest)];
    let mut conn = target.connect();
    let answers = conn.pipeline(&asks[..3]);
    conn.send(&asks[3..]);
    for (i, a) in answers[..2].iter().enumerate() {
        assert_eq!((a.version.as_str(), a.closes()), ("HTTP/1.1", false), "answer {i}: {}", a.summary());
    }
    assert_eq!(answers[0].body, fx.manifest, "the first GET's body");
    assert!(answers[2].closes(), "the Connection: close request's answer says so: {}", answers[2].summary());
    assert!(answers[2].body == fx.small_bytes, "its own body");
    assert_eq!(conn.rest(), b"", "nothing after the answer to Connection: close");

    // An HTTP/1.0 request second: the first answer is still HTTP/1.1 kept alive with its body; the HTTP/1.0 one is
    // HTTP/1.0 and ends the connection.
    let asks = [Ask::get(&manifest), Ask::get(&small).http10(), Ask::head(&manifest)];
    let mut conn = target.connect();
    let answers = conn.pipeline(&asks[..2]);
    conn.send(&asks[2..]);
    assert_eq!((answers[0].version.as_str(), answers[0].closes()), ("HTTP/1.1", false), "{}", answers[0].summary());
    assert_eq!(answers[0].body, fx.manifest, "the HTTP/1.1 GET before the HTTP/1.0 one keeps its body");
    assert_eq!((answers[1].version.as_str(), answers[1].closes()), ("HTTP/1.0", true), "{}", answers[1].summary());
    assert!(answers[1].body == fx.small_bytes, "the HTTP/1.0 answer's own body");
    assert_eq!(conn.rest(), b"", "nothing after the HTTP/1.0 answer");

    // An HTTP/1.0 keep-alive request in the middle: each answer in its own version, the connection stays.
    let asks = [
        Ask::head(&manifest),
        Ask::get(&manifest).http10().with("Connection", "keep-alive"),
        Ask::get(&small),
        Ask::head(&small),
    ];
    let mut conn = target.connect();
    let answers = conn.pipeline(&asks);
    let versions: Vec<(&str, bool)> = answers.iter().map(|a| (a.version.as_str(), a.closes())).collect();
    assert_eq!(
        versions,
        [("HTTP/1.1", false), ("HTTP/1.0", false), ("HTTP/1.1", false), ("HTTP/1.1", false)],
        "versions and keep-alive"
    );
    assert_eq!(answers[1].body, fx.manifest, "the HTTP/1.0 GET's body");
    assert!(answers[2].body == fx.small_bytes, "the next GET's body");
    let again = conn.pipeline(&[Ask::get(&manifest)]).remove(0);
    assert_eq!(sha256_digest(&again.body), fx.digest, "the connection is still in step");
}

/// A small deterministic generator (xorshift64*), so that a seed replays a sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    match std::env::var("OCIREGISTRY_PIPELINE_SEED") {
        Ok(s) => s.parse().expect("OCIREGISTRY_PIPELINE_SEED is a number"),
        Err(_) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
            (now.as_nanos() as u64) | 1
        }
    }
}

/// One request of a random kind.
fn random_ask(rng: &mut Rng, fx: &Fixture) -> Ask {
    let big_len = fx.big_bytes.len() as u64;
    let small_len = fx.small_bytes.len() as u64;
    let (big, small) = (fx.blob_path(&fx.big), fx.blob_path(&fx.small));
    let range = |rng: &mut Rng, len: u64| {
        let start = rng.below(len);
        let span = if rng.below(4) == 0 { len } else { 70_000 };
        let end = (start + rng.below(span)).min(len - 1);
        format!("bytes={start}-{end}")
    };
    match rng.below(20) {
        0 => Ask::head(&fx.manifest_path(&fx.tag)),
        1 => Ask::get(&fx.manifest_path(&fx.tag)),
        2 => Ask::head(&fx.manifest_path(&fx.digest)),
        3 => Ask::get(&fx.manifest_path(&fx.digest)),
        4 => Ask::head(&small),
        5 | 6 => Ask::get(&small),
        7 => Ask::get(&big),
        8 => Ask::head(&big),
        9 | 10 => Ask::get(&big).with("Range", &range(rng, big_len)),
        11 => Ask::get(&small).with("Range", &range(rng, small_len)),
        12 => Ask::get(&fx.manifest_path("no-such-tag")),
        13 => Ask::head(&fx.manifest_path("no-such-tag")),
        14 => Ask::get(&big).with("Range", &format!("bytes={big_len}-")),
        // Conditional requests: whatever the server answers (304, 200, 206), the same as alone.
        15 => Ask::get(&fx.manifest_path(&fx.tag)).with("If-None-Match", &format!("\"{}\"", fx.digest)),
        16 => {
            let tags = [format!("\"{}\"", fx.big), "\"x\"".to_string(), "Thu, 01 Jan 1970 00:00:00 GMT".to_string()];
            let tag = &tags[rng.below(3) as usize];
            Ask::get(&big).with("Range", &range(rng, big_len)).with("If-Range", tag)
        }
        17 if rng.below(2) == 0 => Ask::get(&big).with("If-None-Match", &format!("\"{}\"", fx.big)),
        17 => Ask::get("/not-the-api"),
        18 => Ask::new("DELETE", &fx.manifest_path(&fx.tag)),
        _ => Ask::get("/v2/"),
    }
}

/// Send `count` random requests in random batches on one connection to `target`; every answer must be what its
/// request gets alone.
fn generated_pipeline(target: &Target, fx: &Fixture, count: usize, label: &str) {
    let seed = seed();
    eprintln!("{label}: pipelining seed {seed} (replay with OCIREGISTRY_PIPELINE_SEED={seed})");
    let mut rng = Rng(seed);
    let mut alone: HashMap<Ask, Answer> = HashMap::new();
    let mut conn = target.connect();
    let mut sent = 0;
    let mut batch_no = 0;
    let mut kinds_seen = std::collections::BTreeSet::new();
    while sent < count {
        let size = 1 + rng.below(24) as usize;
        let batch: Vec<Ask> = (0..size.min(count - sent)).map(|_| random_ask(&mut rng, fx)).collect();
        let answers = conn.pipeline(&batch);
        for (i, (ask, got)) in batch.iter().zip(&answers).enumerate() {
            let want = alone
                .entry(ask.clone())
                .or_insert_with(|| target.connect().pipeline(std::slice::from_ref(ask)).remove(0));
            kinds_seen.insert(want.status);
            let context = format!("{label}, seed {seed}, batch {batch_no} request {i} of {}", batch.len());
            assert_same(ask, got, want, &context);
            assert!(!got.closes(), "{context}: a kept-alive answer says it closes: {}", got.summary());
        }
        sent += batch.len();
        batch_no += 1;
    }
    eprintln!("{label}: {sent} requests in {batch_no} batches; statuses seen {kinds_seen:?}");
    // Every kind of answer was exercised.
    for status in [200, 206, 404, 405, 416] {
        assert!(kinds_seen.contains(&status), "seed {seed}: no {status} answer among {count} requests");
    }
}

#[test]
fn a_generated_pipeline_gets_on_one_plain_connection_what_each_request_gets_alone() {
    let up = Upstream::start();
    let dir = TestDir::new("pipelining-generated");
    let fx = Fixture::make(&up, &dir, "pipegen");
    let (_server, target) = plain_server(&up);
    fx.warm(&target);
    generated_pipeline(&target, &fx, 300, "plain");
}

#[test]
fn a_generated_pipeline_gets_on_one_tls_connection_what_each_request_gets_alone() {
    let up = Upstream::start();
    let dir = TestDir::new("pipelining-generated-tls");
    let fx = Fixture::make(&up, &dir, "pipegentls");
    let (_server, target) = tls_server(&up, &dir);
    fx.warm(&target);
    generated_pipeline(&target, &fx, 300, "TLS");
}

/// Requests the gate hands on as they come (a body of either framing, a head in pieces) keep the pipeline in step,
/// and one it cannot frame (a malformed head) gets actix-http's own 400 after the answers before it, then the end:
/// none of them leaves the connection waiting.
#[test]
fn bodies_split_heads_and_bad_heads_in_a_pipeline_never_stall_or_desynchronise_it() {
    let up = Upstream::start();
    let dir = TestDir::new("pipelining-odd");
    let fx = Fixture::make(&up, &dir, "pipeodd");
    let (_server, target) = plain_server(&up);
    fx.warm(&target);
    let manifest = fx.manifest_path(&fx.tag);
    let get = Ask::get(&manifest);
    let raw = |asks: &[Ask]| asks.iter().flat_map(Ask::bytes).collect::<Vec<u8>>();

    // A request with a body, by length and chunked, between two GETs: its answer is the one it gets alone; the GET
    // after it is answered unless that answer closed the connection.
    for (what, post) in [
        ("Content-Length", format!("POST {manifest} HTTP/1.1\r\nHost: m\r\nContent-Length: 5\r\n\r\nhello")),
        (
            "chunked",
            format!("POST {manifest} HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\n"),
        ),
    ] {
        let post_ask = Ask::new("POST", &manifest);
        let alone = {
            let mut conn = target.connect();
            conn.send_raw(post.as_bytes());
            conn.answer(&post_ask).expect("the POST alone")
        };
        let mut conn = target.connect();
        conn.send_raw(&[raw(std::slice::from_ref(&get)), post.into_bytes(), raw(std::slice::from_ref(&get))].concat());
        let first = conn.answer(&get).expect("the GET before");
        assert_eq!(first.body, fx.manifest, "{what}: the GET before the POST");
        let answer = conn.answer(&post_ask).expect("the POST");
        assert_same(&post_ask, &answer, &alone, what);
        if answer.closes() {
            assert_eq!(conn.rest(), b"", "{what}: nothing after an answer that closes");
        } else {
            let last = conn.answer(&get).expect("the GET after");
            assert_eq!(last.body, fx.manifest, "{what}: the GET after the POST");
        }
    }

    // A head that comes in pieces, with the next request behind it.
    let mut conn = target.connect();
    let first = raw(std::slice::from_ref(&get));
    let (a, b) = first.split_at(first.len() / 2);
    conn.send_raw(a);
    std::thread::sleep(std::time::Duration::from_millis(200));
    conn.send_raw(&[b, &raw(&[Ask::head(&manifest), get.clone()])].concat());
    assert_eq!(conn.answer(&get).expect("the split GET").body, fx.manifest, "the GET whose head came in pieces");
    let head = conn.answer(&Ask::head(&manifest)).expect("the HEAD");
    assert_eq!(head.header("content-length"), Some(fx.manifest.len().to_string().as_str()), "the HEAD after it");
    assert_eq!(conn.answer(&get).expect("the last GET").body, fx.manifest, "the GET after the HEAD");

    // A malformed head after two requests: their answers, then actix-http's 400, then the end.
    let mut conn = target.connect();
    conn.send_raw(
        &[
            raw(&[get.clone(), Ask::head(&manifest)]),
            b"GET /v2/ HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(),
            raw(std::slice::from_ref(&get)),
        ]
        .concat(),
    );
    assert_eq!(conn.answer(&get).expect("the GET").body, fx.manifest, "the GET before the bad head");
    conn.answer(&Ask::head(&manifest)).expect("the HEAD before the bad head");
    let bad = conn.answer(&get).expect("an answer to the bad head");
    assert_eq!(bad.status, 400, "the bad head: {}", bad.summary());
    assert_eq!(conn.rest(), b"", "nothing after the 400");
}
