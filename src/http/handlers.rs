//! Request handlers: parse and validate, ask the `Mirror`, shape the response. They never touch files or the
//! network themselves.

use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use actors::digest::Digest;
use actors::reference::{ImageKey, Namespace, Reference};
use actors::{BlobResponse, ByteStream, Mirror};
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use prometheus::IntCounter;

use super::errors::OciError;
use super::kernel_copy::KernelCopy;
use super::negotiate::{accepts, etag, not_modified, range, range_spec, RangeRequest};
use super::target::{parse_route, Object, ReferrersTarget, Route, TagsTarget};

/// What every handler shares: built once, outside the per-worker factory, so all workers use the same actors.
pub struct AppState {
    /// The actors' front door.
    pub mirror: Mirror,
    /// `defaultNs`: the namespace for requests that name none.
    pub default_ns: Option<Namespace>,
}

/// What the request log needs to know from a handler: the namespace and whether the cache answered.
#[derive(Debug, Clone)]
pub struct RequestNote {
    /// The upstream namespace of the request.
    pub ns: String,
    /// `hit`, `miss` or `-`.
    pub cache: &'static str,
}

fn cache_word(from_cache: bool) -> &'static str {
    if from_cache {
        "hit"
    } else {
        "miss"
    }
}

const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const X_REGISTRY: &str = "x-registry";

/// An empty body that still announces `len` bytes: what a HEAD response needs (actix would otherwise write
/// `Content-Length: 0`).
fn head_body(builder: &mut HttpResponseBuilder, len: u64) -> HttpResponse {
    builder.no_chunking(len).streaming(stream::empty::<Result<Bytes, std::io::Error>>())
}

/// Every request to the registry listener: `/v2` and below go to `dispatch`, anything else is not an endpoint.
pub async fn entry(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let path = req.uri().path();
    if path == "/v2" || path.starts_with("/v2/") {
        dispatch(req, state).await
    } else {
        not_found(req).await
    }
}

/// The single entry point for `/v2/...`: method check, route parsing, then manifest or blob.
async fn dispatch(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let method = req.method();
    let head = method == Method::HEAD;
    if method != Method::GET && !head {
        return OciError::unsupported(format!("{method} is not supported: this is a pull-only mirror")).response();
    }
    // A header that is there but unreadable must not be skipped in favour of `?ns=` or the path: the client named a
    // registry, just not one we can read.
    let x_registry = match req.headers().get(X_REGISTRY).map(HeaderValue::to_str).transpose() {
        Ok(value) => value,
        Err(_) => {
            let message =
                "the X-Registry header is not a registry namespace: it holds bytes that are not visible ASCII";
            return OciError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", message).response();
        }
    };
    let route = parse_route(req.uri().path(), req.uri().query(), x_registry, state.default_ns.as_ref());
    match route {
        Err(e) => OciError::from(e).response(),
        Ok(Route::Base) => HttpResponse::Ok().content_type("application/json").body("{}"),
        Ok(Route::Pull(target)) => {
            let ns = target.image.ns().to_string();
            let (mut resp, cache) = match target.object {
                Object::Manifest(reference) => manifest(&req, &state.mirror, target.image, reference, head).await,
                Object::Blob(digest) => blob(&req, &state.mirror, target.image, digest, head).await,
            };
            resp.extensions_mut().insert(RequestNote { ns, cache });
            resp
        }
        Ok(Route::TagsList(target)) => {
            let ns = target.image.ns().to_string();
            let mut resp = tags(&req, &state.mirror, target).await;
            resp.extensions_mut().insert(RequestNote { ns, cache: "-" });
            resp
        }
        Ok(Route::Referrers(target)) => {
            let ns = target.image.ns().to_string();
            let (mut resp, cache) = referrers(&state.mirror, target).await;
            resp.extensions_mut().insert(RequestNote { ns, cache });
            resp
        }
        Ok(Route::Upload) => OciError::unsupported("uploads are not supported: this is a pull-only mirror").response(),
    }
}

/// Anything outside `/v2/`.
async fn not_found(req: HttpRequest) -> HttpResponse {
    OciError::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("no such endpoint: {}", req.uri().path())).response()
}

async fn manifest(
    req: &HttpRequest,
    mirror: &Mirror,
    image: ImageKey,
    reference: Reference,
    head: bool,
) -> (HttpResponse, &'static str) {
    let from_peer = req.headers().contains_key(actors::PEER_HEADER);
    let m = match mirror.manifest_from(&image, &reference, !head, from_peer).await {
        Ok(m) => m,
        Err(e) => return (OciError::from(e).response(), "-"),
    };
    let cache = cache_word(m.from_cache);
    let meta = &m.meta;
    if !accepts(req.headers(), &meta.media_type) {
        let resp = OciError::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!(
                "manifest {} is a {}, which the request's Accept header does not include",
                meta.digest, meta.media_type
            ),
        )
        .response();
        return (resp, cache);
    }
    let tag = etag(&meta.digest);
    if not_modified(req.headers(), &tag) {
        return (not_modified_response(&meta.digest, tag), cache);
    }
    let mut builder = HttpResponse::Ok();
    let content_type = HeaderValue::from_str(&meta.media_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json"));
    builder.insert_header((header::CONTENT_TYPE, content_type));
    builder.insert_header((DOCKER_CONTENT_DIGEST, meta.digest.to_string()));
    builder.insert_header((header::ETAG, tag));
    let resp = match (head, m.bytes) {
        (false, Some(bytes)) => {
            mirror.metrics().served_bytes.with_label_values(&[image.ns().as_str()]).inc_by(bytes.len() as u64);
            builder.body(bytes)
        }
        _ => head_body(&mut builder, meta.size),
    };
    (resp, cache)
}

/// 304 to a GET or HEAD whose `If-None-Match` names the manifest or blob `digest` (entity tag `tag`): its
/// validators, no body.
fn not_modified_response(digest: &Digest, tag: String) -> HttpResponse {
    HttpResponse::NotModified()
        .insert_header((DOCKER_CONTENT_DIGEST, digest.to_string()))
        .insert_header((header::ETAG, tag))
        .finish()
}

/// The headers of every blob answer (HEAD, 200, 206): its digest also as a strong entity tag, for `If-Range`.
fn blob_headers(builder: &mut HttpResponseBuilder, digest: &Digest, tag: &str) {
    builder.insert_header((header::CONTENT_TYPE, "application/octet-stream"));
    builder.insert_header((DOCKER_CONTENT_DIGEST, digest.to_string()));
    builder.insert_header((header::ETAG, tag));
    builder.insert_header((header::ACCEPT_RANGES, "bytes"));
}

/// `stream`, adding each chunk it yields to `served`.
fn counted(stream: ByteStream, served: IntCounter) -> ByteStream {
    stream
        .inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                served.inc_by(bytes.len() as u64);
            }
        })
        .boxed()
}

/// The response body of the bytes `start..end` of `blob`, by the cheapest way there is:
/// - a small blob held in memory leaves with the response head in one write;
/// - on a plain-HTTP connection (`kernel_copy`), a verified blob in a local file is sent from the file, and the large
///   stretches of a running transfer's range from the file it writes (`BlobResponse::stretches`). Such a body
///   announces its length by hand (`no_chunking` with a `BodyStream`, not `streaming`, which would size the body from
///   the header): actix-http must pass it through as it is and keep the connection;
/// - anything else streams through the process.
fn blob_body(
    req: &HttpRequest,
    builder: &mut HttpResponseBuilder,
    blob: BlobResponse,
    (start, end): (u64, u64),
    served: IntCounter,
) -> HttpResponse {
    if let Some(bytes) = blob.in_memory(start, Some(end)) {
        served.inc_by(bytes.len() as u64);
        return builder.body(bytes);
    }
    let len = end - start;
    let Some(conn) = req.conn_data::<KernelCopy>() else {
        return builder.body(SizedStream::new(len, counted(blob.stream(start, Some(end)), served)));
    };
    match blob.stretches(start, end) {
        Ok(stretches) => builder.no_chunking(len).body(BodyStream::new(conn.body(len, stretches, served))),
        Err(blob) => builder.body(SizedStream::new(len, counted(blob.stream(start, Some(end)), served))),
    }
}

async fn blob(
    req: &HttpRequest,
    mirror: &Mirror,
    image: ImageKey,
    digest: Digest,
    head: bool,
) -> (HttpResponse, &'static str) {
    let tag = etag(&digest);
    if not_modified(req.headers(), &tag) {
        // A 304 needs only to know the blob exists: its bytes are neither read nor fetched.
        let resp = match mirror.blob_size(&image, &digest).await {
            Ok(_) => not_modified_response(&digest, tag),
            Err(e) => OciError::from(e).response(),
        };
        return (resp, "-");
    }
    if head {
        let resp = match mirror.blob_size(&image, &digest).await {
            Ok(size) => {
                let mut builder = HttpResponse::Ok();
                blob_headers(&mut builder, &digest, &tag);
                match size {
                    Some(size) => head_body(&mut builder, size),
                    None => builder.finish(),
                }
            }
            Err(e) => OciError::from(e).response(),
        };
        return (resp, "-");
    }
    let from_peer = req.headers().contains_key(actors::PEER_HEADER);
    let blob = match mirror.blob_for(&image, &digest, from_peer).await {
        Ok(b) => b,
        Err(e) => return (OciError::from(e).response(), "-"),
    };
    let cache = cache_word(blob.from_cache);
    let served = mirror.metrics().served_bytes.with_label_values(&[image.ns().as_str()]);
    // A range of a blob whose size its upstream did not announce: from a ranged upstream GET, which states it.
    // (Only then is the `Range` looked at here: a blob of known size costs nothing more.)
    let spec = if blob.size.is_none() && !from_peer { range_spec(req.headers(), &tag) } else { None };
    let blob = match spec {
        Some(spec) => match mirror.range_unsized(&image, &digest, blob, spec).await {
            Ok((blob, (start, end), size)) => {
                let mut builder = HttpResponse::PartialContent();
                blob_headers(&mut builder, &digest, &tag);
                builder.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{}/{size}", end - 1)));
                return (blob_body(req, &mut builder, blob, (start, end), served), cache);
            }
            Err(blob) => blob,
        },
        None => blob,
    };
    let Some(size) = blob.size else {
        let mut builder = HttpResponse::Ok();
        blob_headers(&mut builder, &digest, &tag);
        return (builder.streaming(counted(blob.stream(0, None), served)), cache);
    };
    let wanted = if blob.supports_range() { range(req.headers(), size, &tag) } else { RangeRequest::Full };
    let resp = match wanted {
        RangeRequest::Full => {
            let mut builder = HttpResponse::Ok();
            blob_headers(&mut builder, &digest, &tag);
            blob_body(req, &mut builder, blob, (0, size), served)
        }
        RangeRequest::Partial(r) => {
            // Ahead of a running transfer, a client's range may come from a ranged upstream GET (a replica resuming
            // from this one gets the transfer's verified bytes).
            let blob = if from_peer { blob } else { mirror.range_ahead(&image, &digest, blob, (r.start, r.end)).await };
            let mut builder = HttpResponse::PartialContent();
            blob_headers(&mut builder, &digest, &tag);
            builder.insert_header((header::CONTENT_RANGE, format!("bytes {}-{}/{}", r.start, r.end - 1, size)));
            blob_body(req, &mut builder, blob, (r.start, r.end), served)
        }
        RangeRequest::Unsatisfiable => {
            let mut resp = OciError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UNKNOWN",
                format!("range outside blob {digest} of {size} bytes"),
            )
            .response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            resp
        }
    };
    (resp, cache)
}

/// `GET /v2/<name>/tags/list`: `{"name", "tags"}`, with a `Link` to the next page when there is one (in the form the
/// request used: same path, and `ns` when it came as a query parameter).
async fn tags(req: &HttpRequest, mirror: &Mirror, target: TagsTarget) -> HttpResponse {
    let TagsTarget { image, name, n, last } = target;
    let page = match mirror.tags(&image, n, last).await {
        Ok(page) => page,
        Err(e) => return OciError::from(e).response(),
    };
    let mut builder = HttpResponse::Ok();
    if page.more {
        if let Some(last) = page.tags.last() {
            let ns =
                req.uri().query().and_then(|q| q.split('&').find(|p| p.starts_with("ns="))).map(|p| format!("&{p}"));
            let n = n.unwrap_or(page.tags.len() as u32);
            let link = format!("<{}?n={n}&last={last}{}>; rel=\"next\"", req.uri().path(), ns.unwrap_or_default());
            if let Ok(value) = HeaderValue::from_str(&link) {
                builder.insert_header((header::LINK, value));
            }
        }
    }
    builder.json(serde_json::json!({ "name": name, "tags": page.tags }))
}

/// `GET /v2/<name>/referrers/<digest>`: the referrers index, filtered by `artifactType` when asked.
async fn referrers(mirror: &Mirror, target: ReferrersTarget) -> (HttpResponse, &'static str) {
    let index = match mirror.referrers(&target.image, &target.digest).await {
        Ok(index) => index,
        Err(e) => return (OciError::from(e).response(), "-"),
    };
    let cache = cache_word(index.from_cache);
    let bytes = index.bytes.unwrap_or_default();
    let mut builder = HttpResponse::Ok();
    builder.insert_header((header::CONTENT_TYPE, "application/vnd.oci.image.index.v1+json"));
    let Some(wanted) = target.artifact_type else {
        return (builder.body(bytes), cache);
    };
    let mut json: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(json) => json,
        Err(_) => return (builder.body(bytes), cache),
    };
    if let Some(list) = json.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        list.retain(|d| d.get("artifactType").and_then(|a| a.as_str()) == Some(wanted.as_str()));
    }
    builder.insert_header((HeaderName::from_static("oci-filters-applied"), "artifactType"));
    (builder.body(serde_json::to_vec(&json).unwrap_or_default()), cache)
}
