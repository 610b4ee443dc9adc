//! HTTP clients for tests: blocking reqwest without proxies (everything is on
//! 127.0.0.1) and without compression (a registry proxy must not compress).

use std::time::Duration;

pub use reqwest::blocking::{Client, Response};
pub use reqwest::StatusCode;

/// Every manifest media type, as containerd sends them on a HEAD by tag.
pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, */*";

pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("build reqwest client")
}

/// The value of a response header as a string ("" if absent).
/// GET a manifest at `url` accepting every manifest type: the status, the digest header and how long it took.
#[allow(dead_code)]
pub fn timed_manifest_get(url: &str) -> (StatusCode, String, Duration) {
    let start = std::time::Instant::now();
    let resp = client().get(url).header("Accept", ACCEPT_ALL_MANIFESTS).send().expect("GET manifest");
    let status = resp.status();
    let digest = header(&resp, "Docker-Content-Digest");
    let _ = resp.bytes();
    (status, digest, start.elapsed())
}

pub fn header(resp: &Response, name: &str) -> String {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// The `errors[].code` values of an OCI error body.
pub fn error_codes(body: &[u8]) -> Vec<String> {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return Vec::new(),
    };
    v["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["code"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// What a client got for a request whose body it read to the end: either a
/// transport error (connection reset, short body, ...) or a status and body.
pub enum Outcome {
    Failed(String),
    Complete { status: StatusCode, body: Vec<u8> },
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Failed(e) => write!(f, "Failed({e})"),
            Outcome::Complete { status, body } => match std::str::from_utf8(body) {
                Ok(text) if body.len() <= 1000 => write!(f, "Complete({status}, {text:?})"),
                _ => write!(f, "Complete({status}, {} bytes of binary)", body.len()),
            },
        }
    }
}

/// GET `url` and read the whole body, without panicking on transport errors.
pub fn get_outcome(client: &Client, url: &str) -> Outcome {
    use std::io::Read;
    let mut resp = match client.get(url).send() {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    let status = resp.status();
    let mut body = Vec::new();
    match resp.read_to_end(&mut body) {
        Ok(_) => Outcome::Complete { status, body },
        Err(e) => Outcome::Failed(format!("after {} body bytes: {e:#}", body.len())),
    }
}

/// GET `url` and check a 200 whose body hashes to `digest`; returns the body.
pub fn get_verified(client: &Client, url: &str, digest: &str) -> Vec<u8> {
    let resp = client.get(url).send().unwrap_or_else(|e| panic!("GET {url}: {e:#}"));
    assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
    let body = resp.bytes().unwrap_or_else(|e| panic!("GET {url} body: {e:#}")).to_vec();
    assert_eq!(super::sha256_digest(&body), digest, "GET {url}: body digest");
    body
}

/// A response that should be an OCI error: its status, its `errors[].code`
/// values and its body text; panics if the body is not an OCI error JSON.
pub fn oci_error(resp: Response, what: &str) -> (StatusCode, Vec<String>, String) {
    let status = resp.status();
    let content_type = header(&resp, "Content-Type");
    let body = resp.bytes().unwrap_or_else(|e| panic!("{what}: body: {e:#}")).to_vec();
    let text = String::from_utf8_lossy(&body).into_owned();
    let codes = error_codes(&body);
    assert!(content_type.contains("json"), "{what}: Content-Type {content_type:?}, body {text}");
    assert!(!codes.is_empty(), "{what}: not an OCI error body ({status}): {text}");
    (status, codes, text)
}

/// GET `url` and read the body to the end; the body, or the error (a non-200 status included).
pub fn download(url: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut resp = client().get(url).send().map_err(|e| format!("GET {url}: {e:#}"))?;
    if resp.status() != StatusCode::OK {
        return Err(format!("GET {url}: {}", resp.status()));
    }
    let mut body = Vec::new();
    resp.read_to_end(&mut body).map_err(|e| format!("GET {url}: body after {} bytes: {e:#}", body.len()))?;
    Ok(body)
}

/// GET every `(url, digest)` at the same moment (one thread each, released together) and verify each body.
pub fn get_all_verified_at_once(targets: Vec<(String, String)>) {
    use std::sync::{Arc, Barrier};
    let start = Arc::new(Barrier::new(targets.len()));
    let threads: Vec<_> = targets
        .into_iter()
        .map(|(url, digest)| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                get_verified(&client(), &url, &digest);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client failed (see its panic above)");
    }
}
