//! The real upstream: `docker-registry serve` (CNCF distribution 2.8) on a
//! free 127.0.0.1 port, storing in the test's own directory.
//!
//! Its access log (on stdout) has one Apache combined-format line per request,
//! written when the request completes, e.g.
//! `127.0.0.1 - - [27/Nov/2026:23:47:03 +0000] "GET /v2/library/hello/blobs/sha256:… HTTP/1.1" 200 1234 "" "ua"`.
//! Tests count those lines to prove how often our server went upstream.
//!
//! A secured upstream ([`UpstreamOptions`]: TLS, client certificates, htpasswd
//! or token auth) is the registry our server talks to; beside it runs a plain
//! "push" registry, without TLS or auth, on the same storage directory, through
//! which the tests push and read back their images. So fixtures never depend
//! on the feature under test, and the secured registry's access log holds only
//! our server's requests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::certs::CertKey;
use super::http;
use super::ports::free_port;
use super::process::{run, ChildGuard};
use super::{wait_for, TestDir};

/// docker-registry's `auth.token` section.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    /// URL of the token endpoint.
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// PEM bundle of the CA that signs the tokens' `x5c` certificates.
    pub root_cert_bundle: PathBuf,
}

/// How the registry is secured. The default is plain HTTP without auth.
#[derive(Debug, Clone, Default)]
pub struct UpstreamOptions {
    /// Serve HTTPS with this certificate (`http.tls.certificate`/`key`).
    pub tls: Option<CertKey>,
    /// Require client certificates signed by this CA (`http.tls.clientcas`); needs `tls`.
    pub client_cas: Option<PathBuf>,
    /// Basic auth with one user (`auth.htpasswd`, bcrypt via `htpasswd -Bbc`).
    pub htpasswd: Option<(String, String)>,
    /// Bearer token auth (`auth.token`).
    pub token: Option<TokenAuth>,
}

impl UpstreamOptions {
    fn is_plain(&self) -> bool {
        self.tls.is_none() && self.htpasswd.is_none() && self.token.is_none()
    }
}

pub struct Upstream {
    guard: ChildGuard,
    port: u16,
    https: bool,
    /// The plain registry on the same storage, beside a secured upstream.
    push: Option<(ChildGuard, u16)>,
    /// Its storage and security config, to start it again after `stop`.
    data: PathBuf,
    security: String,
    _dir: TestDir,
}

/// One request line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    pub method: String,
    /// The request target, query string included.
    pub target: String,
    pub status: u16,
    /// The client's `User-Agent` (`ociregistry/...` for our server, `skopeo/...` for pushes).
    pub agent: String,
}

impl AccessEntry {
    /// The request target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

impl Upstream {
    /// Start a plain-HTTP registry with an empty store; panics if it does not
    /// answer `GET /v2/` within 30 s. Retries on a new port if the chosen one
    /// was taken by someone else in the meantime.
    pub fn start() -> Upstream {
        Upstream::start_with(UpstreamOptions::default())
    }

    /// Start a registry secured as `opts` says, plus, if it is secured at
    /// all, a plain push registry on the same storage.
    pub fn start_with(opts: UpstreamOptions) -> Upstream {
        let dir = TestDir::new("upstream");
        let data = dir.subdir("data");
        let security = security_yaml(&dir, &opts);
        let (guard, port) = spawn_registry(&dir, "docker-registry", &data, &security, opts.tls.is_some());
        let push =
            if opts.is_plain() { None } else { Some(spawn_registry(&dir, "docker-registry-push", &data, "", false)) };
        Upstream { guard, port, https: opts.tls.is_some(), push, data, security, _dir: dir }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS): the registry our server
    /// is configured with.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.https { "https" } else { "http" }, self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn push_port(&self) -> u16 {
        self.push.as_ref().map(|(_, p)| *p).unwrap_or(self.port)
    }

    /// `http://127.0.0.1:PORT` of the registry to push to and read back from:
    /// the plain one beside a secured upstream, else the upstream itself.
    pub fn push_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.push_port())
    }

    /// `127.0.0.1:PORT` of the push registry, as skopeo wants it in a
    /// `docker://` reference.
    pub fn push_host(&self) -> String {
        format!("127.0.0.1:{}", self.push_port())
    }

    /// Stop the registry (for "upstream gone" tests).
    pub fn stop(&mut self) {
        self.guard.stop(Duration::from_secs(5));
    }

    /// Start the registry again after `stop`, on the same port and storage (for "upstream back" tests).
    pub fn start_again(&mut self) {
        let config = self._dir.path().join("docker-registry-config-again.yml");
        std::fs::write(&config, config_yaml(&self.data, self.port, &self.security)).expect("write registry config");
        let cmd = &mut Command::new("docker-registry");
        self.guard = ChildGuard::spawn("docker-registry-again", cmd.arg("serve").arg(&config), self._dir.path());
        assert!(
            wait_ready(&mut self.guard, self.port, self.https),
            "registry did not start again:\n{}",
            self.log_tail()
        );
    }

    /// Every request the registry has logged so far (the push registry's
    /// requests are not included).
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
    /// Plain-HTTP upstreams only (the test client speaks no TLS).
    pub fn settle_log(&self) {
        assert!(!self.https, "settle_log needs a plain-HTTP upstream");
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

/// Start one registry process on a free port (three tries); panics if it
/// never gets ready.
fn spawn_registry(dir: &TestDir, name: &str, data: &Path, security: &str, tls: bool) -> (ChildGuard, u16) {
    let mut last = String::new();
    for attempt in 0..3 {
        let port = free_port();
        let config = dir.path().join(format!("{name}-config-{attempt}.yml"));
        std::fs::write(&config, config_yaml(data, port, security)).expect("write registry config");
        let mut guard = ChildGuard::spawn(
            &format!("{name}-{attempt}"),
            Command::new("docker-registry").arg("serve").arg(&config),
            dir.path(),
        );
        if wait_ready(&mut guard, port, tls) {
            return (guard, port);
        }
        last = guard.log_tail();
        guard.kill();
    }
    panic!("{name} did not start:\n{last}");
}

/// The security part of the config: indented lines continuing the `http:`
/// section (TLS), then a top-level `auth:` section.
fn security_yaml(dir: &TestDir, opts: &UpstreamOptions) -> String {
    let mut y = String::new();
    if let Some(tls) = &opts.tls {
        y.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", tls.cert.display(), tls.key.display()));
        if let Some(cas) = &opts.client_cas {
            y.push_str(&format!("    clientcas:\n      - {}\n", cas.display()));
        }
    } else {
        assert!(opts.client_cas.is_none(), "client_cas needs tls");
    }
    let mut auth = String::new();
    if let Some((user, password)) = &opts.htpasswd {
        let file = dir.path().join("htpasswd");
        run(Command::new("htpasswd").arg("-Bbc").arg(&file).arg(user).arg(password));
        auth.push_str(&format!("  htpasswd:\n    realm: ociregistry-e2e\n    path: {}\n", file.display()));
    }
    if let Some(t) = &opts.token {
        auth.push_str(&format!(
            "  token:\n    realm: \"{}\"\n    service: \"{}\"\n    issuer: \"{}\"\n    rootcertbundle: {}\n",
            t.realm,
            t.service,
            t.issuer,
            t.root_cert_bundle.display()
        ));
    }
    if !auth.is_empty() {
        y.push_str(&format!("auth:\n{auth}"));
    }
    y
}

/// `security` continues the `http:` section, which comes last.
fn config_yaml(data: &Path, port: u16, security: &str) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         health:\n  storagedriver:\n    enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: ociregistry-e2e-secret\n{security}",
        data.display()
    )
}

/// Ready when it answers `GET /v2/` (200, or 401 with auth); with TLS (the
/// test client speaks no TLS) when it accepts connections. Either way it must
/// still be running a moment later: if another process held the port, our
/// registry failed to bind and exits.
fn wait_ready(guard: &mut ChildGuard, port: u16, tls: bool) -> bool {
    let client = http::client();
    let url = format!("http://127.0.0.1:{port}/v2/");
    for _ in 0..600 {
        if !guard.is_running() {
            return false;
        }
        let answered = if tls {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        } else {
            client.get(&url).send().is_ok_and(|r| r.status().is_success() || r.status().as_u16() == 401)
        };
        if answered {
            std::thread::sleep(Duration::from_millis(100));
            return guard.is_running();
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
    let agent = quoted.nth(2).unwrap_or_default().to_string();
    Some(AccessEntry { method, target, status, agent })
}
