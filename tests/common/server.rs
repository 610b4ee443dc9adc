//! Our server, `ociregistry --config-file CFG serve`, as a child process.
//!
//! The config is YAML in the test's directory: a cache dir of its own, a free
//! 127.0.0.1 port, debug logging, short timeouts (a test must never wait a
//! minute for a hung upstream), and the registries the test names: usually
//! `docker.io` mapped to the test's upstream with `endpoint`. The server is
//! ready when `GET /v2/` answers 200. It can be stopped (SIGTERM, then
//! SIGKILL) and started again on the same port and cache dir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::http;
use super::ports::free_port;
use super::process::ChildGuard;
use super::TestDir;

mod ops;

/// One `registries:` entry.
#[derive(Debug, Clone)]
pub struct Registry {
    /// The namespace it serves, e.g. `docker.io`.
    pub name: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Where to connect instead of the namespace's own host ("": none, the name is dialled).
    pub endpoint: String,
    /// More keys of this entry (`auth:`, `tls:`, `maxConcurrent:`), as YAML
    /// written at column 0; indented into the entry.
    pub extra_yaml: String,
}

/// What goes into the server's config file.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub registries: Vec<Registry>,
    /// `pullTimeout`, milliseconds.
    pub pull_timeout_ms: u64,
    /// `idleTimeout`, a humantime string.
    pub idle_timeout: String,
    /// Extra top-level YAML, appended verbatim.
    pub extra_yaml: String,
    /// `imagePath` to use instead of a fresh directory (e.g. a small tmpfs).
    pub image_path: Option<PathBuf>,
    /// Environment variables set for the server process.
    pub env: Vec<(String, String)>,
    /// Start the server with this file descriptor limit, soft and hard (`ulimit -n`), so that it cannot raise it.
    pub fd_limit: Option<u64>,
    /// Listen on this port instead of a free one picked at start (replicas must know each other's URLs).
    pub port: Option<u16>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            registries: Vec::new(),
            pull_timeout_ms: 10_000,
            idle_timeout: "5s".to_string(),
            extra_yaml: String::new(),
            image_path: None,
            env: Vec::new(),
            fd_limit: None,
            port: None,
        }
    }
}

impl ServerConfig {
    /// `docker.io` served from `upstream_url` (`http://127.0.0.1:PORT`).
    pub fn for_upstream(upstream_url: &str) -> ServerConfig {
        ServerConfig::default().registry("docker.io", upstream_url)
    }

    /// Add a registry whose endpoint is `url`; the scheme is taken from it.
    pub fn registry(self, name: &str, url: &str) -> ServerConfig {
        self.registry_with(name, url, "")
    }

    /// Add a registry whose endpoint is `url`, with more keys for its entry
    /// (YAML at column 0, e.g. `"auth:\n  user: u\n  password: p\n"`).
    pub fn registry_with(mut self, name: &str, url: &str, extra_yaml: &str) -> ServerConfig {
        let scheme = url.split("://").next().unwrap_or("http").to_string();
        self.registries.push(Registry {
            name: name.to_string(),
            scheme,
            endpoint: url.to_string(),
            extra_yaml: extra_yaml.to_string(),
        });
        self
    }

    /// Add a registry by name alone (`scheme: https`, no `endpoint`): the mirror dials the name itself.
    pub fn registry_named(mut self, name: &str) -> ServerConfig {
        self.registries.push(Registry {
            name: name.to_string(),
            scheme: "https".to_string(),
            endpoint: String::new(),
            extra_yaml: String::new(),
        });
        self
    }

    /// Set an environment variable for the server process (e.g. `PATH`, or
    /// the variable a `passwordFromEnv` names).
    pub fn env(mut self, name: &str, value: &str) -> ServerConfig {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    pub fn extra(mut self, yaml: &str) -> ServerConfig {
        self.extra_yaml.push_str(yaml);
        if !yaml.ends_with('\n') {
            self.extra_yaml.push('\n');
        }
        self
    }

    fn to_yaml(&self, cache: &Path, port: u16) -> String {
        let mut y = format!(
            "imagePath: \"{}\"\n\
             host: 127.0.0.1\n\
             port: {port}\n\
             logLevel: debug\n\
             pullTimeout: {}\n\
             idleTimeout: {}\n",
            cache.display(),
            self.pull_timeout_ms,
            self.idle_timeout
        );
        if self.registries.is_empty() {
            y.push_str("registries: []\n");
        } else {
            y.push_str("registries:\n");
            for r in &self.registries {
                y.push_str(&format!("  - name: \"{}\"\n    scheme: {}\n", r.name, r.scheme));
                if !r.endpoint.is_empty() {
                    y.push_str(&format!("    endpoint: \"{}\"\n", r.endpoint));
                }
                for line in r.extra_yaml.lines().filter(|l| !l.trim().is_empty()) {
                    y.push_str(&format!("    {line}\n"));
                }
            }
        }
        y.push_str(&self.extra_yaml);
        y
    }
}

pub struct Server {
    guard: Option<ChildGuard>,
    env: Vec<(String, String)>,
    fd_limit: Option<u64>,
    port: u16,
    cache: PathBuf,
    config_file: PathBuf,
    starts: usize,
    dir: TestDir,
}

/// How long a debug build may take to answer `GET /v2/`.
const READY_LIMIT: Duration = Duration::from_secs(30);

impl Server {
    /// Our server with `docker.io` mapped to `upstream_url`.
    pub fn start(upstream_url: &str) -> Server {
        Server::start_with(ServerConfig::for_upstream(upstream_url))
    }

    /// Our server with this config, on a free port and a new cache dir.
    pub fn start_with(config: ServerConfig) -> Server {
        let dir = TestDir::new("server");
        let cache = config.image_path.clone().unwrap_or_else(|| dir.subdir("cache"));
        let config_file = dir.path().join("registry-config.yaml");
        let mut server = Server {
            guard: None,
            env: config.env.clone(),
            fd_limit: config.fd_limit,
            port: 0,
            cache,
            config_file,
            starts: 0,
            dir,
        };
        // A port can be taken by another process between our probe and the
        // server's bind: try a few.
        let mut last = String::new();
        for _ in 0..3 {
            server.port = config.port.unwrap_or_else(free_port);
            std::fs::write(&server.config_file, config.to_yaml(&server.cache, server.port))
                .expect("write server config");
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("our server did not start:\n{last}");
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        self.starts += 1;
        let bin = env!("CARGO_BIN_EXE_ociregistry");
        let mut cmd = match self.fd_limit {
            // The shell sets the limit and replaces itself with the server (same process id).
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).arg(bin);
                sh
            }
            None => Command::new(bin),
        };
        cmd.arg("--config-file").arg(&self.config_file).arg("serve").env("RUST_BACKTRACE", "1");
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        let mut guard = ChildGuard::spawn(&format!("ociregistry-{}", self.starts), &mut cmd, self.dir.path());
        let client = http::client();
        let url = format!("{}/v2/", self.url());
        let start = Instant::now();
        while start.elapsed() < READY_LIMIT {
            if let Some(status) = guard.exit_status() {
                let tail = guard.log_tail();
                guard.kill();
                return Err(format!("ociregistry exited with {status}:\n{tail}"));
            }
            if self.answers(&client, &url) {
                self.guard = Some(guard);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let tail = guard.log_tail();
        guard.kill();
        Err(format!("ociregistry not ready after {READY_LIMIT:?}:\n{tail}"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The cache dir (`imagePath`).
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut g) = self.guard.take() {
            g.stop(Duration::from_secs(10));
        }
    }

    /// Start again with the same config: same port, same cache dir.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn_and_wait() {
            panic!("our server did not restart:\n{e}");
        }
    }

    /// The config file it runs with.
    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    /// Everything every run of the server wrote to stdout and stderr (its
    /// log, at debug level), for checks that no secret leaks into it.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .expect("read server dir")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        names.sort();
        for p in names {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()));
        }
        out
    }

    /// File descriptors the current run has open now (from `/proc`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    /// The tail of the current run's logs.
    pub fn log_tail(&self) -> String {
        self.guard.as_ref().map(|g| g.log_tail()).unwrap_or_default()
    }
}
