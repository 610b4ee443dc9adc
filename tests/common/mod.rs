//! End-to-end test harness shared by the files in `tests/`.
//!
//! Every test owns its processes and directories: a real upstream
//! (`docker-registry`), our server, and when needed a private containerd
//! daemon, each on a free 127.0.0.1 port, each killed on drop (also when the
//! test panics, after printing the tail of its logs).
//!
//! Each test binary includes this module with `mod common;` and uses only
//! part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod admin;
pub mod certs;
pub mod chart_queries;
pub mod commands;
pub mod containerd;
pub mod fake_upstream;
pub mod fault_proxy;
pub mod garage;
pub mod http;
pub mod images;
pub mod metrics;
pub mod pipeline;
pub mod ports;
pub mod process;
pub mod prometheus;
pub mod ratelimit_relay;
pub mod realm_registry;
pub mod server;
pub mod skopeo;
pub mod storm;
pub mod stub_http;
pub mod thread_server;
pub mod tls_client;
pub mod token_server;
pub mod upstream;
pub mod wan;

use std::path::{Path, PathBuf};

/// A temporary directory for one test's files, removed on drop unless
/// `OCIREGISTRY_KEEP_TEST_DIRS` is set (then its path is printed, for a
/// post-mortem look at logs and cache contents).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    pub fn new(prefix: &str) -> TestDir {
        let dir =
            tempfile::Builder::new().prefix(&format!("ociregistry-{prefix}-")).tempdir().expect("create temp dir");
        let path = dir.path().to_path_buf();
        TestDir { dir: Some(dir), path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A subdirectory, created if missing.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).expect("create subdir");
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("OCIREGISTRY_KEEP_TEST_DIRS").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("keeping test dir {}", dir.keep().display());
            }
        }
    }
}

/// sha256 digest string (`sha256:<hex>`) of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Poll `cond` every 50 ms until it returns `Some`, or panic with `what`
/// after `limit`. Used only to wait for readiness, never to assert timing.
pub fn wait_for<T>(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Files (not directories) under the cache's `blobs/`, `manifests/` and
/// `refs/`: empty when nothing was cached.
pub fn cached_files(cache_dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for sub in ["blobs", "manifests", "refs"] {
        walk(&cache_dir.join(sub), &mut out);
    }
    out
}

/// Panic if any of `secrets` occurs in `text` (a log or a response body),
/// quoting the offending line.
pub fn assert_no_secrets(text: &str, secrets: &[String], what: &str) {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if let Some(line) = text.lines().find(|l| l.contains(secret.as_str())) {
            panic!("{what} contains a secret ({} chars): {line}", secret.len());
        }
    }
}

/// The strings a leaked basic credential could appear as: the password
/// itself and the base64 `user:password` of an `Authorization: Basic` header.
pub fn basic_secrets(user: &str, password: &str) -> Vec<String> {
    use base64::Engine;
    vec![password.to_string(), base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))]
}
