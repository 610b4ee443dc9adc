//! What operations tests do with a running server beyond starting and
//! stopping it: signal it and wait for its exit status, and reach it over
//! HTTPS.
//!
//! A server whose config has a `serverTlsConfig` section with a `cert` speaks
//! HTTPS on its main port. The test client (reqwest) is built without TLS, so
//! its readiness is a TCP connection to the port; tests then talk HTTPS with
//! curl and openssl (`tls_client`).

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use super::super::http;
use super::Server;

impl Server {
    /// Whether the server answers at `url` (its `/v2/`): a 200 over plain
    /// HTTP, or an accepted TCP connection for an HTTPS server.
    pub(super) fn answers(&self, client: &http::Client, url: &str) -> bool {
        if self.is_https() {
            let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
            return TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok();
        }
        client.get(url).send().is_ok_and(|resp| resp.status() == http::StatusCode::OK)
    }

    /// Whether the config names a server certificate.
    pub fn is_https(&self) -> bool {
        let config = std::fs::read_to_string(&self.config_file).unwrap_or_default();
        config.contains("serverTlsConfig") && config.contains("cert:")
    }

    /// `https://127.0.0.1:PORT`
    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The process id of the current run; panics if there is none.
    pub fn pid(&self) -> u32 {
        self.guard.as_ref().and_then(|g| g.id()).expect("the server is not running")
    }

    /// Send a signal (`TERM`, `INT`, `HUP`) without waiting for anything.
    pub fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Whether the current run is still alive.
    pub fn is_running(&mut self) -> bool {
        self.guard.as_mut().is_some_and(|g| g.is_running())
    }

    /// Wait up to `limit` for the current run to exit; `None` if it is still
    /// running then (it is left running).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let guard = self.guard.as_mut().expect("the server was never started");
        let start = Instant::now();
        loop {
            if let Some(status) = guard.exit_status() {
                return Some(status);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
