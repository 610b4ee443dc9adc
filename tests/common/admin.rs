//! The admin API of a test server: a server started with the admin listener on a port of its own and a token file,
//! and a client that sends the bearer token.

use super::http;
use super::ports::free_port;
use super::server::{Server, ServerConfig};
use super::TestDir;

/// The token every admin test server reads from its `tokenFile`.
pub const TOKEN: &str = "e2e-admin-token-6f1c0b9a";

/// A client of one server's admin port.
pub struct Admin {
    pub base: String,
}

impl Admin {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with `Authorization: Bearer TOKEN`, or no header.
    pub fn get(&self, path: &str, token: Option<&str>) -> http::Response {
        let mut req = http::client().get(self.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        req.send().unwrap_or_else(|e| panic!("GET {path} on the admin port: {e:#}"))
    }

    pub fn post(&self, path: &str, token: Option<&str>) -> http::Response {
        let mut req = http::client().post(self.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        req.send().unwrap_or_else(|e| panic!("POST {path} on the admin port: {e:#}"))
    }

    /// GET a list with the right token: 200 and a JSON array.
    pub fn list(&self, path: &str) -> Vec<serde_json::Value> {
        let resp = self.get(path, Some(TOKEN));
        assert_eq!(resp.status(), http::StatusCode::OK, "GET {path} with the token");
        let body: serde_json::Value = serde_json::from_slice(&resp.bytes().expect("body")).expect("a JSON body");
        body.as_array().unwrap_or_else(|| panic!("GET {path}: not a JSON array: {body}")).clone()
    }

    /// Invalidate `image` (`ns/repo:tag`) with the token; the status.
    pub fn invalidate(&self, image: &str) -> http::StatusCode {
        self.post(&format!("/cmd/image/invalidate?image={image}"), Some(TOKEN)).status()
    }
}

/// A server with `config` plus the admin API on its own port; the token file ends in a newline (the token is its
/// trimmed content).
pub fn server_with_admin(config: ServerConfig, dir: &TestDir) -> (Server, Admin) {
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write token file");
    let port = free_port();
    let server =
        Server::start_with(config.extra(&format!("admin:\n  port: {port}\n  tokenFile: \"{}\"", token_file.display())));
    (server, Admin { base: format!("http://127.0.0.1:{port}") })
}
