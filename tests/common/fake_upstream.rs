//! An in-process fake registry, only for faults a real registry cannot
//! produce: a slow (trickling) body, corrupt bytes, a dropped connection.
//!
//! It speaks just enough HTTP/1.1 (keep-alive, GET and HEAD, Content-Length
//! bodies) on a raw tokio `TcpListener`, on its own thread and runtime, and
//! serves one image under one repository: `/v2/` (200), the manifest by tag
//! and by digest, and two blobs by digest: the config and one layer, "the
//! blob", whose delivery follows the current [`Behaviour`]. It counts
//! requests per method and path and records each request's headers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::thread_server::ServerThread;

use super::images::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use super::sha256_digest;

/// How the blob's body is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// All at once.
    Normal,
    /// `chunk` bytes at a time, paced to about `bytes_per_sec`.
    Trickle { bytes_per_sec: usize, chunk: usize },
    /// The right Content-Length, but one byte (in the middle) flipped.
    CorruptBlob,
    /// Headers and half the body, then the connection is closed.
    DropMidway,
    /// Headers and half the body, then nothing for 30 s (the connection stays open).
    Stall,
    /// Manifest and blob requests are read and never answered (for 30 s).
    NoAnswer,
    /// Manifest and blob requests get 429 with `Retry-After: 1`.
    TooManyRequests,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target, query string included.
    pub target: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

struct Content {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    manifest_digest: String,
    config: Vec<u8>,
    config_digest: String,
    blob: Vec<u8>,
    blob_digest: String,
}

struct State {
    content: Content,
    behaviour: Mutex<Behaviour>,
    requests: Mutex<Vec<RecordedRequest>>,
}

pub struct FakeUpstream {
    port: u16,
    state: Arc<State>,
    server: ServerThread,
}

impl FakeUpstream {
    /// Serve `repo:tag` (e.g. `library/slow:1`) whose single layer is `blob`.
    pub fn start(repo: &str, tag: &str, blob: Vec<u8>, behaviour: Behaviour) -> FakeUpstream {
        let blob_digest = sha256_digest(&blob);
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [blob_digest]},
        })
        .to_string()
        .into_bytes();
        let config_digest = sha256_digest(&config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": blob_digest, "size": blob.len()}],
        })
        .to_string()
        .into_bytes();
        let state = Arc::new(State {
            content: Content {
                repo: repo.to_string(),
                tag: tag.to_string(),
                manifest_digest: sha256_digest(&manifest),
                manifest,
                config,
                config_digest,
                blob,
                blob_digest,
            },
            behaviour: Mutex::new(behaviour),
            requests: Mutex::new(Vec::new()),
        });

        let st = state.clone();
        let server = ServerThread::spawn("fake-upstream", move |listener| accept_loop(listener, st));
        FakeUpstream { port: server.port, state, server }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn repo(&self) -> &str {
        &self.state.content.repo
    }

    pub fn manifest(&self) -> &[u8] {
        &self.state.content.manifest
    }

    pub fn manifest_digest(&self) -> &str {
        &self.state.content.manifest_digest
    }

    pub fn config_digest(&self) -> &str {
        &self.state.content.config_digest
    }

    /// The layer's true bytes.
    pub fn blob(&self) -> &[u8] {
        &self.state.content.blob
    }

    pub fn blob_digest(&self) -> &str {
        &self.state.content.blob_digest
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        *self.state.behaviour.lock().unwrap() = b;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests with this method whose path (query ignored) ends in
    /// `path_suffix`.
    pub fn count(&self, method: &str, path_suffix: &str) -> usize {
        self.requests().iter().filter(|r| r.method == method && r.path().ends_with(path_suffix)).count()
    }

    /// GETs of the blob (the layer).
    pub fn blob_gets(&self) -> usize {
        self.count("GET", &format!("/blobs/{}", self.blob_digest()))
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.server.stop();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, state.clone()));
    }
}

/// Serve requests on one connection until the peer closes it or a behaviour
/// drops it.
async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    let mut stream = BufReader::new(stream);
    loop {
        let Some(req) = read_request(&mut stream).await else {
            return;
        };
        state.requests.lock().unwrap().push(req.clone());
        let keep_open = respond(stream.get_mut(), &state, &req).await;
        if !keep_open {
            return;
        }
    }
}

pub(super) async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<RecordedRequest> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if stream.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Some(RecordedRequest { method, target, headers })
}

/// Write one response; `false` if the connection must be closed.
async fn respond(stream: &mut TcpStream, state: &State, req: &RecordedRequest) -> bool {
    let c = &state.content;
    let path = req.path();
    let head = req.method == "HEAD";
    if req.method != "GET" && !head {
        return write_simple(stream, 405, "application/json", b"{}", None, head).await;
    }
    if path == "/v2/" || path == "/v2" {
        return write_simple(stream, 200, "application/json", b"{}", None, head).await;
    }
    let behaviour = *state.behaviour.lock().unwrap();
    match behaviour {
        Behaviour::NoAnswer => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return false;
        }
        Behaviour::TooManyRequests => {
            let body = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
            let out = format!(
                "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            );
            let mut out = out.into_bytes();
            if !head {
                out.extend_from_slice(body);
            }
            return stream.write_all(&out).await.is_ok();
        }
        _ => {}
    }
    let manifests = format!("/v2/{}/manifests/", c.repo);
    let blobs = format!("/v2/{}/blobs/", c.repo);
    if let Some(reference) = path.strip_prefix(&manifests) {
        if reference == c.tag || reference == c.manifest_digest {
            return write_simple(stream, 200, OCI_MANIFEST, &c.manifest, Some(&c.manifest_digest), head).await;
        }
        return write_error(stream, 404, "MANIFEST_UNKNOWN", head).await;
    }
    if let Some(digest) = path.strip_prefix(&blobs) {
        if digest == c.config_digest {
            return write_simple(stream, 200, "application/octet-stream", &c.config, Some(&c.config_digest), head)
                .await;
        }
        if digest == c.blob_digest {
            return write_blob(stream, &c.blob, &c.blob_digest, behaviour, head).await;
        }
        return write_error(stream, 404, "BLOB_UNKNOWN", head).await;
    }
    write_error(stream, 404, "NAME_UNKNOWN", head).await
}

fn head_bytes(status: u16, content_type: &str, len: usize, digest: Option<&str>) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Status",
    };
    let mut h = format!(
        "HTTP/1.1 {status} {reason}\r\n\
         Content-Type: {content_type}\r\n\
         Content-Length: {len}\r\n\
         Docker-Distribution-Api-Version: registry/2.0\r\n"
    );
    if let Some(d) = digest {
        h.push_str(&format!("Docker-Content-Digest: {d}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

async fn write_simple(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    digest: Option<&str>,
    head: bool,
) -> bool {
    let mut out = head_bytes(status, content_type, body.len(), digest);
    if !head {
        out.extend_from_slice(body);
    }
    stream.write_all(&out).await.is_ok()
}

async fn write_error(stream: &mut TcpStream, status: u16, code: &str, head: bool) -> bool {
    let body = json!({"errors": [{"code": code, "message": code.to_lowercase(), "detail": null}]}).to_string();
    write_simple(stream, status, "application/json", body.as_bytes(), None, head).await
}

async fn write_blob(stream: &mut TcpStream, blob: &[u8], digest: &str, behaviour: Behaviour, head: bool) -> bool {
    let headers = head_bytes(200, "application/octet-stream", blob.len(), Some(digest));
    if stream.write_all(&headers).await.is_err() {
        return false;
    }
    if head {
        return true;
    }
    match behaviour {
        Behaviour::Normal => stream.write_all(blob).await.is_ok(),
        Behaviour::CorruptBlob => {
            let mut bad = blob.to_vec();
            let mid = bad.len() / 2;
            bad[mid] ^= 0xff;
            stream.write_all(&bad).await.is_ok()
        }
        Behaviour::DropMidway => {
            let _ = stream.write_all(&blob[..blob.len() / 2]).await;
            let _ = stream.flush().await;
            let _ = stream.shutdown().await;
            false
        }
        Behaviour::Stall => {
            let _ = stream.write_all(&blob[..blob.len() / 2]).await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            false
        }
        Behaviour::NoAnswer | Behaviour::TooManyRequests => false,
        Behaviour::Trickle { bytes_per_sec, chunk } => {
            let pause = Duration::from_secs_f64(chunk as f64 / bytes_per_sec as f64);
            for piece in blob.chunks(chunk) {
                if stream.write_all(piece).await.is_err() || stream.flush().await.is_err() {
                    return false;
                }
                tokio::time::sleep(pause).await;
            }
            true
        }
    }
}
