//! The real upstream: `docker-registry serve` (CNCF distribution 2.8) on a
//! free 127.0.0.1 port, storing in the test's own directory.
//!
//! Its access log (on stdout) has one Apache combined-format line per request,
//! written when the request completes, e.g.
//! `127.0.0.1 - - [27/Nov/2026:23:47:03 +0000] "GET /v2/library/hello/blobs/sha256:… HTTP/1.1" 200 1234 "" "ua"`.
//! Tests count those lines to prove how often our server went upstream.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::http;
use super::ports::free_port;
use super::process::ChildGuard;
use super::{wait_for, TestDir};

pub struct Upstream {
    guard: ChildGuard,
    port: u16,
    _dir: TestDir,
}

/// One request line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    pub method: String,
    /// The request target, query string included.
    pub target: String,
    pub status: u16,
}

impl AccessEntry {
    /// The request target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

impl Upstream {
    /// Start a registry with an empty store; panics if it does not answer
    /// `GET /v2/` within 30 s. Retries on a new port if the chosen one was
    /// taken by someone else in the meantime.
    pub fn start() -> Upstream {
        let dir = TestDir::new("upstream");
        let data = dir.subdir("data");
        let mut last = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let config = dir.path().join(format!("config-{attempt}.yml"));
            std::fs::write(&config, config_yaml(&data, port)).expect("write registry config");
            let mut guard = ChildGuard::spawn(
                &format!("docker-registry-{attempt}"),
                Command::new("docker-registry").arg("serve").arg(&config),
                dir.path(),
            );
            if wait_ready(&mut guard, port) {
                return Upstream { guard, port, _dir: dir };
            }
            last = guard.log_tail();
            guard.kill();
        }
        panic!("docker-registry did not start:\n{last}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, as skopeo wants it in a `docker://` reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stop the registry (for "upstream gone" tests).
    pub fn stop(&mut self) {
        self.guard.stop(Duration::from_secs(5));
    }

    /// Every request the registry has logged so far.
    pub fn access_log(&self) -> Vec<AccessEntry> {
        let text = std::fs::read_to_string(self.guard.stdout_path()).unwrap_or_default();
        text.lines().filter_map(parse_access_line).collect()
    }

    /// How many logged requests had this method and a path (query string
    /// ignored) ending in `path_suffix`, e.g.
    /// `("GET", "/v2/library/hello/blobs/sha256:…")`.
    pub fn access_log_count(&self, method: &str, path_suffix: &str) -> usize {
        self.access_log().iter().filter(|e| e.method == method && e.path().ends_with(path_suffix)).count()
    }

    /// Make sure requests already answered are in the access log before
    /// counting: the registry writes a line only after its handler returns,
    /// which can be a moment after the client saw the last byte. We send a
    /// marker request and wait until it (and so, practically, everything
    /// answered before it) is logged, then give stragglers a short grace.
    pub fn settle_log(&self) {
        let marker = format!("/v2/?settle={}", rand::random::<u64>());
        let _ = http::client().get(format!("{}{marker}", self.url())).send();
        wait_for("registry access log marker", Duration::from_secs(10), || {
            self.access_log().iter().any(|e| e.target == marker).then_some(())
        });
        std::thread::sleep(Duration::from_millis(300));
    }

    /// The tail of the registry's logs, for assertion messages.
    pub fn log_tail(&self) -> String {
        self.guard.log_tail()
    }
}

fn config_yaml(data: &Path, port: u16) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: ociregistry-e2e-secret\n\
         health:\n  storagedriver:\n    enabled: false\n",
        data.display()
    )
}

fn wait_ready(guard: &mut ChildGuard, port: u16) -> bool {
    let client = http::client();
    let url = format!("http://127.0.0.1:{port}/v2/");
    for _ in 0..600 {
        if !guard.is_running() {
            return false;
        }
        if let Ok(resp) = client.get(&url).send() {
            // If another process held the port, our registry failed to bind
            // and exits: make sure it is still alive after answering.
            if resp.status().is_success() {
                std::thread::sleep(Duration::from_millis(50));
                return guard.is_running();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Parse `... "METHOD TARGET HTTP/1.1" STATUS SIZE ...`.
pub fn parse_access_line(line: &str) -> Option<AccessEntry> {
    let mut quoted = line.split('"');
    quoted.next()?;
    let request = quoted.next()?;
    let rest = quoted.next()?;
    let mut parts = request.split(' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = rest.split_whitespace().next()?.parse().ok()?;
    Some(AccessEntry { method, target, status })
}
