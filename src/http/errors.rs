//! OCI error responses: the one place that maps every failure to a status and an OCI error code, with the JSON body
//! `{"errors":[{"code":..,"message":..,"detail":..}]}` the distribution spec prescribes. No response of this server
//! is an empty 500.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use actors::{MirrorError, UpstreamError};
use serde::Serialize;

use super::target::TargetError;

/// An error ready to be sent.
#[derive(Debug, Clone)]
pub struct OciError {
    /// HTTP status.
    pub status: StatusCode,
    /// OCI error code (`MANIFEST_UNKNOWN`, ...).
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    errors: [Entry<'a>; 1],
}

#[derive(Serialize)]
struct Entry<'a> {
    code: &'a str,
    message: &'a str,
    detail: serde_json::Value,
}

impl OciError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> OciError {
        OciError { status, code, message: message.into(), retry_after: None }
    }

    /// 405 for anything that would write: this is a pull-only mirror.
    pub fn unsupported(what: impl Into<String>) -> OciError {
        OciError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", what)
    }

    /// The response, with a JSON body (for HEAD, actix sends the headers only).
    pub fn response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            builder.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            builder.insert_header((header::ALLOW, "GET, HEAD"));
        }
        let body = Body {
            errors: [Entry {
                code: self.code,
                message: &self.message,
                detail: serde_json::Value::Object(Default::default()),
            }],
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        builder.content_type("application/json").body(json)
    }
}

impl From<TargetError> for OciError {
    fn from(err: TargetError) -> OciError {
        let message = err.to_string();
        match err {
            TargetError::NameInvalid(_) => OciError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", message),
            TargetError::NameUnknown(_) => OciError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", message),
            TargetError::DigestInvalid(_) => OciError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", message),
            // No manifest can exist under a malformed tag: 404, as distribution answers (and the OCI conformance
            // suite expects for `.INVALID_MANIFEST_NAME`).
            TargetError::TagInvalid(_) => OciError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", message),
            TargetError::NotFound(_) => OciError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message),
            TargetError::PaginationInvalid(_) => {
                OciError::new(StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID", message)
            }
        }
    }
}

fn upstream_error(err: &UpstreamError) -> OciError {
    let message = err.to_string();
    match err {
        UpstreamError::HeadTimeout { .. } | UpstreamError::Idle { .. } => {
            OciError::new(StatusCode::GATEWAY_TIMEOUT, "UNAVAILABLE", message)
        }
        UpstreamError::CircuitOpen { retry_in, .. } => {
            let mut e = OciError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message);
            e.retry_after = Some(retry_in.as_secs().max(1));
            e
        }
        // Unreachable (refused, DNS, connect timeout): the service is not available, not misbehaving.
        UpstreamError::Connect { .. } => OciError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message),
        UpstreamError::TooManyRequests { retry_after, .. } => {
            let mut e = OciError::new(StatusCode::SERVICE_UNAVAILABLE, "TOOMANYREQUESTS", message);
            e.retry_after = Some(retry_after.map(|d| d.as_secs()).unwrap_or(10));
            e
        }
        // The upstream (a redirect) or its DNS led somewhere the policy forbids: not the client's doing.
        UpstreamError::Refused { .. }
        | UpstreamError::Tls { .. }
        | UpstreamError::Credentials { .. }
        | UpstreamError::Unauthorized { .. }
        | UpstreamError::Status { .. }
        | UpstreamError::Broken { .. }
        | UpstreamError::TokenEndpoint { .. }
        | UpstreamError::TooLarge { .. }
        | UpstreamError::DigestMismatch { .. }
        | UpstreamError::LengthMismatch { .. } => OciError::new(StatusCode::BAD_GATEWAY, "UNAVAILABLE", message),
    }
}

impl From<MirrorError> for OciError {
    fn from(err: MirrorError) -> OciError {
        let message = err.to_string();
        match &err {
            MirrorError::Denied(_) | MirrorError::RepositoryDenied { .. } => {
                OciError::new(StatusCode::FORBIDDEN, "DENIED", message)
            }
            MirrorError::ManifestUnknown(_) => OciError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", message),
            MirrorError::BlobUnknown(_) => OciError::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", message),
            MirrorError::NameUnknown(_) => OciError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", message),
            MirrorError::Upstream(e) => upstream_error(e),
            MirrorError::Unavailable(_) | MirrorError::Abandoned(_) => {
                OciError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
            }
            MirrorError::Overloaded(_) => {
                let mut e = OciError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message);
                e.retry_after = Some(1);
                e
            }
            MirrorError::Internal(_) => OciError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", message),
        }
    }
}
