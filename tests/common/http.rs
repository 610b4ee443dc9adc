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
pub fn header(resp: &Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The `errors[].code` values of an OCI error body.
pub fn error_codes(body: &[u8]) -> Vec<String> {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return Vec::new(),
    };
    v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["code"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
