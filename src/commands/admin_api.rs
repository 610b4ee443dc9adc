//! The server side of the commands on the admin API (dispatched by `http::ops`): prune, and load.
//!
//! - `POST /cmd/prune?pattern=REGEX,...&date=YYYY-MM-DDTHH:MM:SS&dryRun=true`, and the Go server's
//!   `DELETE /cmd/prune?type=accessed|created|pattern&dur=&expr=&count=&dryRun=`: the report as JSON.
//! - `POST /cmd/image/load?kind=list|archive&resolveRef=&os=&arch=` with the image list or the archive as the body:
//!   an archive is spooled to a temporary file first; the answer streams one JSON event a line (`load::Wire`) and
//!   ends with the summary.

use std::collections::HashMap;
use std::io::Write;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::preload::{LoadEvent, PlatformFilter};
use actors::Mirror;
use bytes::Bytes;
use futures_util::StreamExt;

use super::load::Wire;

/// Largest image list accepted.
const MAX_LIST_BYTES: usize = 4 << 20;

fn query(req: &HttpRequest) -> HashMap<String, String> {
    web::Query::<HashMap<String, String>>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default()
}

fn bad_request(message: String) -> HttpResponse {
    let body = serde_json::json!({"errors": [{"code": "BAD_REQUEST", "message": message}]});
    HttpResponse::build(StatusCode::BAD_REQUEST).json(body)
}

/// Prune with the query's options.
pub async fn prune(req: &HttpRequest, mirror: &Mirror) -> HttpResponse {
    let request = match super::prune::request(&query(req)) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    match mirror.prune(request).await {
        Ok(report) => {
            tracing::info!(
                images = report.images.len(),
                bytes = report.bytes,
                dry_run = report.dry_run,
                "admin: prune"
            );
            HttpResponse::Ok().json(report)
        }
        Err(e) => HttpResponse::InternalServerError().json(serde_json::json!({"error": e.to_string()})),
    }
}

/// Load the body (an image list or an archive).
pub async fn load(req: &HttpRequest, mut payload: web::Payload, mirror: &Mirror) -> HttpResponse {
    let q = query(req);
    let platform = PlatformFilter {
        os: q.get("os").filter(|v| !v.is_empty()).cloned(),
        arch: q.get("arch").filter(|v| !v.is_empty()).cloned(),
    };
    let resolve_ref = q.get("resolveRef").filter(|v| !v.is_empty()).cloned();
    enum Body {
        List(String),
        Archive(tempfile::NamedTempFile),
    }
    let body = match q.get("kind").map(String::as_str) {
        Some("list") => {
            let mut text = Vec::new();
            while let Some(chunk) = payload.next().await {
                match chunk {
                    Ok(c) if text.len() + c.len() <= MAX_LIST_BYTES => text.extend_from_slice(&c),
                    Ok(_) => return bad_request(format!("an image list is at most {MAX_LIST_BYTES} bytes")),
                    Err(e) => return bad_request(format!("reading the body: {e}")),
                }
            }
            Body::List(String::from_utf8_lossy(&text).into_owned())
        }
        Some("archive") => {
            let spool = match tempfile::Builder::new().prefix("ociregistry-load-").tempfile() {
                Ok(f) => f,
                Err(e) => return HttpResponse::InternalServerError().body(format!("no temporary file: {e}\n")),
            };
            let mut file = match spool.reopen() {
                Ok(f) => f,
                Err(e) => return HttpResponse::InternalServerError().body(format!("no temporary file: {e}\n")),
            };
            while let Some(chunk) = payload.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => return bad_request(format!("reading the body: {e}")),
                };
                let written = tokio::task::spawn_blocking(move || file.write_all(&chunk).map(|()| file)).await;
                file = match written {
                    Ok(Ok(f)) => f,
                    Ok(Err(e)) => return HttpResponse::InternalServerError().body(format!("spooling: {e}\n")),
                    Err(e) => return HttpResponse::InternalServerError().body(format!("spooling: {e}\n")),
                };
            }
            Body::Archive(spool)
        }
        _ => return bad_request("kind=list or kind=archive is required".into()),
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let mirror = mirror.clone();
    actix_rt::spawn(async move {
        let send = |wire: Wire| {
            let mut line = serde_json::to_vec(&wire).unwrap_or_default();
            line.push(b'\n');
            let _ = tx.send(Bytes::from(line));
        };
        let progress = |event: LoadEvent| send(Wire::from(event));
        let summary = match &body {
            Body::List(text) => mirror.load_list(text, &platform, &progress).await,
            Body::Archive(spool) => {
                mirror.load_archive(spool.path(), resolve_ref.as_deref(), &platform, &progress).await
            }
        };
        tracing::info!(loaded = summary.loaded.len(), failed = summary.failed.len(), "admin: load");
        send(Wire::Summary { summary });
        drop(body);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, std::io::Error>(line), rx))
    });
    HttpResponse::Ok().content_type("application/x-ndjson").streaming(stream)
}
