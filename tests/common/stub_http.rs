//! A scriptable in-process HTTP/1.1 server, for the faults and measurements a
//! real registry cannot give: redirects to another host, 429/503 answers,
//! counting simultaneous requests; and the base of the token server.
//!
//! Each request is answered by a handler closure (`Fn(&RecordedRequest) ->
//! Reply`); a reply can be held for a while before it is written, which keeps
//! the request "in flight". The server records every request (method, target,
//! headers), counts accepted connections, and measures the largest number of
//! blob GETs (`GET …/blobs/…`) in flight at once. It runs on its own thread
//! and tokio runtime, like [`super::fake_upstream`], and stops on drop.
//!
//! [`StubImage`] is a tiny registry's worth of content (a manifest, a config
//! and layers of random bytes) that handlers serve with `Range` support.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::thread_server::ServerThread;

use super::fake_upstream::read_request;
pub use super::fake_upstream::RecordedRequest;
use super::images::{random_bytes, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use super::sha256_digest;

/// One response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before writing anything.
    pub hold: Duration,
    /// Write only this many body bytes (the head still announces them all), then close the connection.
    pub cut_after: Option<usize>,
    /// Add the body bytes the socket took (written, not just offered) to this counter.
    pub sent: Option<Arc<AtomicU64>>,
    /// Announce no length: the body is sent chunked (`Transfer-Encoding: chunked`).
    pub no_length: bool,
}

impl Reply {
    /// An empty response with this status.
    pub fn status(status: u16) -> Reply {
        let (hold, no_length) = (Duration::ZERO, false);
        Reply { status, headers: Vec::new(), body: Vec::new(), hold, cut_after: None, sent: None, no_length }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Reply {
        self.body = body;
        self.header("Content-Type", content_type)
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::status(status).body("application/json", value.to_string().into_bytes())
    }

    /// An OCI error body.
    pub fn error(status: u16, code: &str) -> Reply {
        Reply::json(status, &json!({"errors": [{"code": code, "message": code.to_lowercase(), "detail": null}]}))
    }

    /// Send the head and only the first `n` body bytes, then drop the connection.
    pub fn cut_after(mut self, n: usize) -> Reply {
        self.cut_after = Some(n);
        self
    }

    /// Count into `counter` the body bytes the socket accepted: a reply cut short by the peer counts only what left.
    pub fn count_sent(mut self, counter: Arc<AtomicU64>) -> Reply {
        self.sent = Some(counter);
        self
    }

    pub fn hold(mut self, d: Duration) -> Reply {
        self.hold = d;
        self
    }

    /// Send no `Content-Length`: the body goes chunked.
    pub fn without_length(mut self) -> Reply {
        self.no_length = true;
        self
    }
}

pub type Handler = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>;

struct State {
    handler: Handler,
    requests: Mutex<Vec<RecordedRequest>>,
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

pub struct StubServer {
    port: u16,
    state: Arc<State>,
    server: ServerThread,
}

impl StubServer {
    /// Serve every request with `handler`, on a free 127.0.0.1 port.
    pub fn start(handler: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static) -> StubServer {
        let state = Arc::new(State {
            handler: Arc::new(handler),
            requests: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let st = state.clone();
        let server = ServerThread::spawn("stub-http", move |listener| accept_loop(listener, st));
        StubServer { port: server.port, state, server }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests with this method whose path (query ignored) ends in `path_suffix`.
    pub fn count(&self, method: &str, path_suffix: &str) -> usize {
        self.requests().iter().filter(|r| r.method == method && r.path().ends_with(path_suffix)).count()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// The most blob GETs that were in flight (received, not yet fully
    /// answered) at the same moment.
    pub fn max_blob_gets_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.server.stop();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.connections.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, state.clone()));
    }
}

fn is_blob_get(req: &RecordedRequest) -> bool {
    req.method == "GET" && req.path().contains("/blobs/")
}

async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    let mut stream = BufReader::new(stream);
    while let Some(req) = read_request(&mut stream).await {
        state.requests.lock().unwrap().push(req.clone());
        let tracked = is_blob_get(&req);
        if tracked {
            let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        }
        let reply = (state.handler)(&req);
        if !reply.hold.is_zero() {
            tokio::time::sleep(reply.hold).await;
        }
        let ok = write_reply(stream.get_mut(), &reply, req.method == "HEAD").await;
        if tracked {
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        if !ok {
            return;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

async fn write_reply(stream: &mut TcpStream, reply: &Reply, head: bool) -> bool {
    let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (n, v) in &reply.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    match reply.no_length {
        true => out.push_str("Transfer-Encoding: chunked\r\nDocker-Distribution-Api-Version: registry/2.0\r\n\r\n"),
        false => out.push_str(&format!(
            "Content-Length: {}\r\nDocker-Distribution-Api-Version: registry/2.0\r\n\r\n",
            reply.body.len()
        )),
    }
    let mut ok = stream.write_all(out.as_bytes()).await.is_ok();
    if !head {
        let n = reply.cut_after.unwrap_or(reply.body.len()).min(reply.body.len());
        // In slices, so that a counted reply counts what the socket took before the peer went away.
        for piece in reply.body[..n].chunks(256 * 1024) {
            if !ok {
                break;
            }
            ok = match reply.no_length {
                true => stream
                    .write_all(&[format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat())
                    .await
                    .is_ok(),
                false => stream.write_all(piece).await.is_ok(),
            };
            if let (true, Some(sent)) = (ok, &reply.sent) {
                sent.fetch_add(piece.len() as u64, Ordering::SeqCst);
            }
        }
    }
    if reply.no_length && !head && ok {
        ok = stream.write_all(b"0\r\n\r\n").await.is_ok();
    }
    ok = ok && stream.flush().await.is_ok();
    if reply.cut_after.is_some() && !head {
        let _ = stream.shutdown().await;
        return false;
    }
    ok
}

/// The query parameters of a request target, percent-decoded (`+` is a space).
pub fn query_params(target: &str) -> Vec<(String, String)> {
    let Some((_, query)) = target.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// Content for stub registries

/// One image: an OCI manifest over a config and layers of random bytes (not
/// unpackable: for HTTP clients only). Serves `/v2/`, the manifest by tag
/// and digest, and blobs with `Range`.
#[derive(Debug, Clone)]
pub struct StubImage {
    pub repo: String,
    pub tag: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    /// `(digest, bytes)` of each layer.
    pub layers: Vec<(String, Vec<u8>)>,
}

impl StubImage {
    /// `repo:tag` with layers of these sizes.
    pub fn new(repo: &str, tag: &str, layer_sizes: &[usize]) -> StubImage {
        let layers: Vec<(String, Vec<u8>)> = layer_sizes
            .iter()
            .map(|&n| {
                let b = random_bytes(n);
                (sha256_digest(&b), b)
            })
            .collect();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>()},
        })
        .to_string()
        .into_bytes();
        let config_digest = sha256_digest(&config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": layers.iter()
                .map(|(d, b)| json!({"mediaType": OCI_LAYER_GZIP, "digest": d, "size": b.len()}))
                .collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        StubImage {
            repo: repo.to_string(),
            tag: tag.to_string(),
            manifest_digest: sha256_digest(&manifest),
            manifest,
            config_digest,
            config,
            layers,
        }
    }

    /// The bytes of a blob (config or layer) by digest.
    pub fn blob(&self, digest: &str) -> Option<&[u8]> {
        if digest == self.config_digest {
            return Some(&self.config);
        }
        self.layers.iter().find(|(d, _)| d == digest).map(|(_, b)| b.as_slice())
    }

    /// The digest of the `i`th layer.
    pub fn layer_digest(&self, i: usize) -> &str {
        &self.layers[i].0
    }

    /// If `req` asks for a blob of this image: its digest.
    pub fn blob_requested(&self, req: &RecordedRequest) -> Option<String> {
        let prefix = format!("/v2/{}/blobs/", self.repo);
        req.path().strip_prefix(&prefix).map(str::to_string)
    }

    /// Answer `req` as a registry holding this image would.
    pub fn serve(&self, req: &RecordedRequest) -> Reply {
        let path = req.path();
        if path == "/v2/" || path == "/v2" {
            return Reply::json(200, &json!({}));
        }
        if let Some(reference) = path.strip_prefix(&format!("/v2/{}/manifests/", self.repo)) {
            if reference == self.tag || reference == self.manifest_digest {
                return Reply::status(200)
                    .body(OCI_MANIFEST, self.manifest.clone())
                    .header("Docker-Content-Digest", &self.manifest_digest);
            }
            return Reply::error(404, "MANIFEST_UNKNOWN");
        }
        if let Some(digest) = self.blob_requested(req) {
            return match self.blob(&digest) {
                Some(bytes) => serve_bytes(req, bytes, &digest),
                None => Reply::error(404, "BLOB_UNKNOWN"),
            };
        }
        Reply::error(404, "NAME_UNKNOWN")
    }
}

/// 200 with `bytes`, or 206 with the slice a `Range: bytes=a-b` header asks for.
pub fn serve_bytes(req: &RecordedRequest, bytes: &[u8], digest: &str) -> Reply {
    let len = bytes.len();
    if let Some(range) = req.header("range").and_then(|r| r.strip_prefix("bytes=")) {
        let (a, b) = range.split_once('-').unwrap_or((range, ""));
        let start: usize = a.trim().parse().unwrap_or(0);
        let end: usize = b.trim().parse().map(|e: usize| e.min(len - 1)).unwrap_or(len - 1);
        if start >= len || start > end {
            return Reply::status(416).header("Content-Range", &format!("bytes */{len}"));
        }
        return Reply::status(206)
            .body("application/octet-stream", bytes[start..=end].to_vec())
            .header("Content-Range", &format!("bytes {start}-{end}/{len}"))
            .header("Docker-Content-Digest", digest);
    }
    Reply::status(200)
        .body("application/octet-stream", bytes.to_vec())
        .header("Accept-Ranges", "bytes")
        .header("Docker-Content-Digest", digest)
}

// ---------------------------------------------------------------------------
// A listener that only counts

/// A TCP listener on a free 127.0.0.1 port that accepts connections, counts
/// them and closes them at once: proof that nobody dialled a port.
pub struct CountingListener {
    port: u16,
    count: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CountingListener {
    pub fn start() -> CountingListener {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind counting listener");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        c.fetch_add(1, Ordering::SeqCst);
                        drop(conn);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        CountingListener { port, count, stop, thread: Some(thread) }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for CountingListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
