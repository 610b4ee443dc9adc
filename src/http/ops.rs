//! The operations listeners, each on its own port: health (`/health` liveness, `/ready` readiness), metrics
//! (`/metrics`), and the admin API (`/cmd/...`, off unless configured, every request needs the bearer token). None
//! of them is served on the main port, and none changes state on GET; there is no remote stop endpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use actors::reference::{ImageKey, Reference};
use actors::Mirror;
use serde::Serialize;

use super::errors::OciError;

/// What the operations handlers share.
pub struct OpsState {
    /// The actors' front door.
    pub mirror: Mirror,
    /// Set when a shutdown signal arrived: readiness fails from then on.
    pub shutting_down: Arc<AtomicBool>,
    /// The admin bearer token (only on the admin listener).
    pub admin_token: Option<String>,
    /// The background preload, if any.
    pub preload: Option<Arc<crate::commands::preload::PreloadStatus>>,
}

/// `/health`: the process answers.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// `/ready`: the cache index is loaded (it is before any listener starts), the cache directory takes files, and
/// the server is not shutting down. A background preload is reported on a second line; it never holds readiness
/// back (pulls are served while it runs).
pub async fn ready(state: web::Data<OpsState>) -> HttpResponse {
    if state.shutting_down.load(Ordering::Relaxed) {
        return HttpResponse::ServiceUnavailable().content_type("text/plain").body("shutting down\n");
    }
    if !state.mirror.cache_writable().await {
        return HttpResponse::ServiceUnavailable().content_type("text/plain").body("cache directory not writable\n");
    }
    let preload = state.preload.as_ref().map(|p| format!("{}\n", p.line())).unwrap_or_default();
    HttpResponse::Ok().content_type("text/plain").body(format!("ready\n{preload}"))
}

/// `/metrics`: every metric in the Prometheus text format.
pub async fn metrics(state: web::Data<OpsState>) -> HttpResponse {
    state.mirror.metrics().process_fds(super::limits::open_fds(), super::limits::fd_soft_limit());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.mirror.render_metrics().await)
}

fn authorized(req: &HttpRequest, state: &OpsState) -> bool {
    let Some(token) = state.admin_token.as_deref() else { return false };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare without an early exit, so the time taken does not tell how much of the token was right.
    presented.len() == token.len() && presented.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn unauthorized() -> HttpResponse {
    let mut resp = OciError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "the admin API needs the bearer token from its token file",
    )
    .response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"ociregistry-admin\""));
    resp
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestEntry {
    digest: String,
    media_type: String,
    size: u64,
}

#[derive(Serialize)]
struct BlobEntry {
    digest: String,
    size: u64,
}

/// Parse `ns/repo:tag` or `ns/repo@digest`.
fn parse_image_ref(text: &str) -> Option<(ImageKey, Reference)> {
    let (name, reference) = match text.rsplit_once('@') {
        Some((name, digest)) => (name, digest.to_string()),
        None => {
            let slash = text.rfind('/')?;
            let colon = text[slash..].rfind(':').map(|i| i + slash)?;
            (&text[..colon], text[colon + 1..].to_string())
        }
    };
    Some((name.parse().ok()?, reference.parse().ok()?))
}

/// Every admin route; anything unknown is 404.
pub async fn admin(req: HttpRequest, payload: web::Payload, state: web::Data<OpsState>) -> HttpResponse {
    if !authorized(&req, &state) {
        return unauthorized();
    }
    let index = state.mirror.index();
    let method = req.method().as_str();
    match (method, req.path()) {
        ("GET", "/cmd/image/list") => HttpResponse::Ok().json(crate::commands::list::image_entries(index)),
        ("POST", "/cmd/prune") | ("DELETE", "/cmd/prune") => {
            crate::commands::admin_api::prune(&req, &state.mirror).await
        }
        ("POST", "/cmd/image/load") => crate::commands::admin_api::load(&req, payload, &state.mirror).await,
        ("GET", "/cmd/manifest/list") => {
            let mut list: Vec<ManifestEntry> = index
                .manifests()
                .into_iter()
                .map(|m| ManifestEntry { digest: m.digest.to_string(), media_type: m.media_type, size: m.size })
                .collect();
            list.sort_by(|a, b| a.digest.cmp(&b.digest));
            HttpResponse::Ok().json(list)
        }
        ("GET", "/cmd/blob/list") => {
            let mut list: Vec<BlobEntry> =
                index.blobs().into_iter().map(|(d, size, _)| BlobEntry { digest: d.to_string(), size }).collect();
            list.sort_by(|a, b| a.digest.cmp(&b.digest));
            HttpResponse::Ok().json(list)
        }
        ("POST", "/cmd/image/invalidate") => {
            let query = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string());
            let image = query.ok().and_then(|q| q.get("image").cloned()).unwrap_or_default();
            let Some((key, reference)) = parse_image_ref(&image) else {
                return OciError::new(
                    StatusCode::BAD_REQUEST,
                    "NAME_INVALID",
                    format!("expected image=ns/repo:tag or ns/repo@digest, got {image:?}"),
                )
                .response();
            };
            match state.mirror.invalidate(&key, &reference).await {
                Ok(true) => {
                    tracing::info!(image = %image, "admin: invalidated");
                    HttpResponse::Ok().json(serde_json::json!({"invalidated": image}))
                }
                Ok(false) => OciError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", format!("{image} is not cached"))
                    .response(),
                Err(e) => OciError::from(e).response(),
            }
        }
        _ => OciError::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("no admin endpoint {method} {}", req.path()))
            .response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        let (key, reference) = parse_image_ref("docker.io/library/hello:latest").expect("tag form");
        assert_eq!((key.to_string(), reference.to_string()), ("docker.io/library/hello".into(), "latest".into()));
        let (key, _) = parse_image_ref("localhost:5000/foo:1").expect("host with port");
        assert_eq!(key.to_string(), "localhost:5000/foo");
        let digest = format!("sha256:{}", "a".repeat(64));
        let (_, reference) = parse_image_ref(&format!("docker.io/library/x@{digest}")).expect("digest form");
        assert_eq!(reference.to_string(), digest);
        assert!(parse_image_ref("docker.io/library/x").is_none(), "a tag or digest is required");
        assert!(parse_image_ref("nonsense").is_none());
    }
}
