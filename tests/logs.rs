//! Logs: with `logFormat: json` every request is logged once, as one JSON
//! object per line with the documented fields (method, path, ns, status,
//! latency_ms, bytes, cache, peer) at the top level; and no log line at any
//! level carries a credential: neither the upstream password (or its base64
//! `user:password`) nor an `Authorization` value a client sent.

mod common;

use std::sync::Barrier;

use serde_json::Value;

use common::certs;
use common::http::{self, StatusCode};
use common::images::{self, Image};
use common::server::{Server, ServerConfig};
use common::storm::pull_like_containerd;
use common::upstream::{Upstream, UpstreamOptions};
use common::{assert_no_secrets, basic_secrets, skopeo, TestDir};

/// Every line of the server's output that is about a request: JSON objects
/// with a `method`, and any line that names a `/v2/` path (the text request
/// log's shape) — which must then be JSON too.
fn request_lines(logs: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let parsed = serde_json::from_str::<Value>(line).ok().filter(Value::is_object);
        match parsed {
            Some(v) if v.get("method").is_some() => out.push(v),
            Some(_) => {}
            None => assert!(!line.contains("/v2/"), "a log line about a request is not JSON: {line}"),
        }
    }
    out
}

fn field<'a>(line: &'a Value, key: &str) -> &'a Value {
    line.get(key).unwrap_or_else(|| panic!("request log line without `{key}`: {line}"))
}

/// The request lines for `method` on a path (query string ignored).
fn lines_for<'a>(lines: &'a [Value], method: &str, path: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["method"] == method && l["path"].as_str().is_some_and(|p| p.split('?').next() == Some(path)))
        .collect()
}

#[test]
fn json_request_lines_carry_every_field() {
    let up = Upstream::start();
    let dir = TestDir::new("logs-json");
    let image = images::hello(&up, dir.path());
    let server = Server::start_with(ServerConfig::for_upstream(&up.url()).extra("logFormat: json"));

    // A containerd-shaped pull (all misses), the same again (all hits), and a 404.
    let one = Barrier::new(1);
    pull_like_containerd(&server.url(), &image, &one);
    pull_like_containerd(&server.url(), &image, &one);
    let missing = format!("/v2/{}/manifests/no-such-tag", image.repo);
    let resp = http::client()
        .get(format!("{}{missing}?ns=docker.io", server.url()))
        .header("Accept", http::ACCEPT_ALL_MANIFESTS)
        .send()
        .expect("GET a missing tag");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    std::thread::sleep(std::time::Duration::from_millis(500));

    let logs = server.logs();
    let lines = request_lines(&logs);
    assert!(!lines.is_empty(), "no JSON request lines in:\n{logs}");
    for line in &lines {
        for key in ["method", "path", "ns", "cache", "peer"] {
            assert!(field(line, key).is_string(), "`{key}` is not a string: {line}");
        }
        for key in ["status", "latency_ms"] {
            assert!(field(line, key).is_number(), "`{key}` is not a number: {line}");
        }
        let bytes = field(line, "bytes");
        assert!(bytes.is_number() || bytes.is_null(), "`bytes` is neither a number nor null: {line}");
        let cache = field(line, "cache").as_str().unwrap();
        assert!(["hit", "miss", "-"].contains(&cache), "`cache` is {cache:?}: {line}");
        assert!(field(line, "latency_ms").as_f64().unwrap() >= 0.0, "{line}");
        assert!(field(line, "peer").as_str().unwrap().contains("127.0.0.1"), "`peer`: {line}");
        assert!(field(line, "path").as_str().unwrap().starts_with('/'), "`path`: {line}");
    }

    // Each request once, with what happened to it.
    let repo = &image.repo;
    let tag_path = format!("/v2/{repo}/manifests/{}", image.tag);
    let heads = lines_for(&lines, "HEAD", &tag_path);
    assert_eq!(heads.len(), 2, "HEAD {tag_path} lines: {heads:#?}");
    let manifest_path = format!("/v2/{repo}/manifests/{}", image.digest);
    let gets = lines_for(&lines, "GET", &manifest_path);
    assert_eq!(gets.len(), 2, "GET {manifest_path} lines: {gets:#?}");
    for l in heads.iter().chain(&gets) {
        assert_eq!(l["status"], 200, "{l}");
        assert_eq!(l["ns"], "docker.io", "{l}");
    }
    assert_eq!(gets[1]["cache"], "hit", "the second manifest GET: {}", gets[1]);
    assert_eq!(gets[1]["bytes"], image.bytes.len() as u64, "the second manifest GET's bytes: {}", gets[1]);
    for blob in image.blobs() {
        let path = format!("/v2/{repo}/blobs/{}", blob.digest);
        let got = lines_for(&lines, "GET", &path);
        assert_eq!(got.len(), 2, "GET {path} lines: {got:#?}");
        assert_eq!(got[0]["cache"], "miss", "first GET of a blob: {}", got[0]);
        assert_eq!(got[1]["cache"], "hit", "second GET of a blob: {}", got[1]);
        for l in got {
            assert_eq!(l["status"], 200, "{l}");
            assert_eq!(l["bytes"], blob.size, "bytes of a blob GET: {l}");
            assert_eq!(l["ns"], "docker.io", "{l}");
        }
    }
    let not_found = lines_for(&lines, "GET", &missing);
    assert_eq!(not_found.len(), 1, "GET {missing} lines: {not_found:#?}");
    assert_eq!(not_found[0]["status"], 404, "{}", not_found[0]);
}

#[test]
fn no_log_line_carries_a_credential() {
    let dir = TestDir::new("logs-secrets");
    let certs = certs::generate(&dir.subdir("certs"));
    let user = "e2e-log-user";
    let password = format!("log-pass-{:016x}", rand::random::<u64>());
    let up = Upstream::start_with(UpstreamOptions {
        tls: Some(certs.server.clone()),
        htpasswd: Some((user.to_string(), password.clone())),
        ..Default::default()
    });
    let image: Image = images::hello(&up, dir.path());
    let entry = format!("tls:\n  ca: \"{}\"\nauth:\n  user: {user}\n  password: \"{password}\"\n", certs.ca.display());
    // Debug level (the harness's) in JSON, where a careless field dump would show.
    let server = Server::start_with(
        ServerConfig::default().registry_with("docker.io", &up.url(), &entry).extra("logFormat: json"),
    );

    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("pull"));
    // A client's own Authorization header, on a request that goes upstream (a
    // new tag) and on one served from the cache.
    let client_token = format!("client-token-{:016x}", rand::random::<u64>());
    for path in [format!("manifests/{}", image.tag), format!("blobs/{}", image.manifest().layers[0].digest)] {
        let url = format!("{}/v2/{}/{path}?ns=docker.io", server.url(), image.repo);
        let resp = http::client()
            .get(&url)
            .header("Accept", http::ACCEPT_ALL_MANIFESTS)
            .header("Authorization", format!("Bearer {client_token}"))
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e:#}"));
        assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
    }
    std::thread::sleep(std::time::Duration::from_millis(500));

    let logs = server.logs();
    // The premise: the log is there, and it is about these requests.
    let lines = request_lines(&logs);
    assert!(lines.len() >= 5, "too few request lines to judge:\n{logs}");
    let mut secrets = basic_secrets(user, &password);
    secrets.push(client_token);
    assert_no_secrets(&logs, &secrets, "the server's log");
    for line in logs.lines() {
        let lower = line.to_ascii_lowercase();
        assert!(
            !lower.contains("authorization:") && !lower.contains("\"authorization\""),
            "a log line names an Authorization header: {line}"
        );
    }
}
