//! Error enums at the actors crate's boundary.
//!
//! `UpstreamError` says what went wrong talking to an upstream registry, `StoreError` what went wrong on disk, and
//! `MirrorError` is what a pull request finally fails with. The HTTP layer maps `MirrorError` to OCI error codes and
//! statuses in one place; nothing here knows about HTTP responses.

use std::time::Duration;

use crate::digest::Digest;
use crate::reference::{ImageKey, Namespace};

/// A failure while talking to one upstream registry. Every variant names the upstream (its namespace), so the
/// message a client finally sees says which registry failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect or TLS handshake failed, or the connection was refused.
    #[error("cannot connect to upstream {upstream}: {detail}")]
    Connect {
        /// The upstream's namespace.
        upstream: String,
        /// What the connector reported.
        detail: String,
    },
    /// The connection (to the upstream, its token realm or a redirect target) was refused by `upstreamPolicy`.
    #[error("upstream {upstream}: {detail}")]
    Refused {
        /// The upstream's namespace.
        upstream: String,
        /// Which host and why.
        detail: String,
    },
    /// The TLS handshake with the upstream failed (untrusted or invalid certificate, client certificate refused).
    #[error("TLS handshake with upstream {upstream} failed: {detail}")]
    Tls {
        /// The upstream's namespace.
        upstream: String,
        /// rustls' reason.
        detail: String,
    },
    /// The configured credentials could not be obtained (a credential helper failed).
    #[error("credentials for upstream {upstream}: {detail}")]
    Credentials {
        /// The upstream's namespace.
        upstream: String,
        /// What failed (never the secret).
        detail: String,
    },
    /// The upstream accepted the connection but sent no response head within the pull timeout.
    #[error("upstream {upstream} did not answer within {after:?}")]
    HeadTimeout {
        /// The upstream's namespace.
        upstream: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The upstream stopped sending body bytes for longer than the idle timeout.
    #[error("upstream {upstream} sent no data for {after:?}")]
    Idle {
        /// The upstream's namespace.
        upstream: String,
        /// The idle timeout that ran out.
        after: Duration,
    },
    /// The upstream rate-limited us (HTTP 429).
    #[error("upstream {upstream} is rate limiting requests (429)")]
    TooManyRequests {
        /// The upstream's namespace.
        upstream: String,
        /// The upstream's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The upstream (or its token endpoint) refused our credentials or asked for some (401/403).
    #[error("upstream {upstream} refused access (HTTP {status}{})", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Unauthorized {
        /// The upstream's namespace.
        upstream: String,
        /// 401 or 403.
        status: u16,
        /// What was refused (e.g. the token endpoint), never a secret.
        detail: String,
    },
    /// Any other unexpected status (5xx and the like).
    #[error("upstream {upstream} answered HTTP {status}")]
    Status {
        /// The upstream's namespace.
        upstream: String,
        /// The status it sent.
        status: u16,
    },
    /// The connection broke or the response was malformed while reading it.
    #[error("upstream {upstream} failed mid-response: {detail}")]
    Broken {
        /// The upstream's namespace.
        upstream: String,
        /// What went wrong.
        detail: String,
    },
    /// The upstream's circuit breaker is open after failures in a row: nothing was sent, or the one probe sent failed.
    #[error("upstream {upstream} is failing; not asking it again for {}s", retry_in.as_secs().max(1))]
    CircuitOpen {
        /// The upstream's namespace.
        upstream: String,
        /// How long until cached tags are checked again (a peer: until it is asked again).
        retry_in: Duration,
    },
    /// The upstream's token endpoint (the realm its 401 named) could not give a bearer token: unreachable, an
    /// error status, a broken or tokenless answer. Every request that needs the token fails with this.
    #[error("the token endpoint {endpoint} of upstream {upstream} failed: {detail}")]
    TokenEndpoint {
        /// The upstream's namespace.
        upstream: String,
        /// The realm URL, without its query and any user information.
        endpoint: String,
        /// What went wrong there.
        detail: String,
    },
    /// A body larger than we accept for this kind of object (manifests; blobs over `maxBlobSize` or the cache's bound).
    #[error("upstream {upstream} sent a body over {limit} bytes")]
    TooLarge {
        /// The upstream's namespace.
        upstream: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The bytes the upstream sent do not hash to the digest they were asked for (or that it announced).
    #[error("upstream {upstream} sent bytes for {expected} that hash to {actual}")]
    DigestMismatch {
        /// The upstream's namespace.
        upstream: String,
        /// The digest that was asked for.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The body ended before the announced length (or went past it).
    #[error("upstream {upstream} sent {got} bytes where {expected} were announced")]
    LengthMismatch {
        /// The upstream's namespace.
        upstream: String,
        /// The announced length.
        expected: u64,
        /// What arrived.
        got: u64,
    },
}

impl UpstreamError {
    /// Whether this failure says the upstream itself is unwell (unreachable, timing out, 5xx, 429), which counts
    /// toward opening its circuit breaker. An answer that refuses us (401, 403, 404), a policy refusal or bad bytes
    /// do not: the upstream is there. Nor does a failing token endpoint: the registry answered (its 401 named the
    /// realm), and a realm may serve some repositories only, so its failures are held back per token request
    /// (`upstream::realm_backoff`) instead of stopping every pull of the registry.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. }
                | UpstreamError::Tls { .. }
                | UpstreamError::HeadTimeout { .. }
                | UpstreamError::Idle { .. }
                | UpstreamError::TooManyRequests { .. }
                | UpstreamError::Status { .. }
                | UpstreamError::Broken { .. }
        )
    }

    /// This failure, met while fetching a bearer token from `token_url` (the realm with its query), as a
    /// `TokenEndpoint` error naming the endpoint. Refused credentials (`Unauthorized`) and a failing credential
    /// helper (`Credentials`) already say what failed and stay as they are.
    pub fn at_token_endpoint(self, token_url: &str) -> UpstreamError {
        let detail = match &self {
            UpstreamError::Unauthorized { .. } | UpstreamError::Credentials { .. } => return self,
            UpstreamError::Connect { detail, .. } => format!("cannot connect: {detail}"),
            UpstreamError::Refused { detail, .. } => detail.clone(),
            UpstreamError::Tls { detail, .. } => format!("TLS handshake failed: {detail}"),
            UpstreamError::HeadTimeout { after, .. } => format!("no answer within {after:?}"),
            UpstreamError::Idle { after, .. } => format!("it sent no data for {after:?}"),
            UpstreamError::Status { status, .. } => format!("it answered HTTP {status}"),
            UpstreamError::Broken { detail, .. } => detail.clone(),
            other => other.to_string(),
        };
        let upstream = match self {
            UpstreamError::Connect { upstream, .. }
            | UpstreamError::Refused { upstream, .. }
            | UpstreamError::Tls { upstream, .. }
            | UpstreamError::Credentials { upstream, .. }
            | UpstreamError::HeadTimeout { upstream, .. }
            | UpstreamError::Idle { upstream, .. }
            | UpstreamError::TooManyRequests { upstream, .. }
            | UpstreamError::Unauthorized { upstream, .. }
            | UpstreamError::Status { upstream, .. }
            | UpstreamError::Broken { upstream, .. }
            | UpstreamError::TokenEndpoint { upstream, .. }
            | UpstreamError::CircuitOpen { upstream, .. }
            | UpstreamError::TooLarge { upstream, .. }
            | UpstreamError::DigestMismatch { upstream, .. }
            | UpstreamError::LengthMismatch { upstream, .. } => upstream,
        };
        UpstreamError::TokenEndpoint { upstream, endpoint: endpoint_name(token_url), detail }
    }
}

/// `scheme://host[:port]/path` of a URL: no query (it only repeats service and scope) and no user information.
fn endpoint_name(url: &str) -> String {
    match url.parse::<awc::http::Uri>() {
        Ok(uri) => {
            let scheme = uri.scheme_str().unwrap_or("https");
            let host = uri.host().unwrap_or("");
            let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}://{host}{port}{}", uri.path())
        }
        Err(_) => url.split('?').next().unwrap_or(url).to_string(),
    }
}

/// A failure of the on-disk store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The cache directory is locked by another process.
    #[error("cache directory {0} is in use by another ociregistry process (lock held on {0}/.lock)")]
    Locked(String),
    /// An I/O error, with the path it happened on.
    #[error("{op} {path}: {detail}")]
    Io {
        /// What we were doing ("create", "write", "rename", ...).
        op: &'static str,
        /// The file or directory.
        path: String,
        /// The OS error text.
        detail: String,
        /// True when the disk is full (ENOSPC/EDQUOT): the cache goes read-only for a while.
        disk_full: bool,
    },
    /// The cache cannot take writes right now (the directory is not writable); content is passed through uncached.
    #[error("the cache is not writable right now")]
    Unwritable,
    /// The process is out of file descriptors or memory: nothing is wrong with the stored object, try later.
    #[error("{op} {path}: {detail} (the server is out of file descriptors or memory)")]
    Exhausted {
        /// What we were doing.
        op: &'static str,
        /// The file.
        path: String,
        /// The OS error text.
        detail: String,
    },
    /// A task of the store's blocking pool failed (panicked or was cancelled).
    #[error("{op}: the store's worker failed: {detail}")]
    Task {
        /// What the task was doing.
        op: &'static str,
        /// The join error.
        detail: String,
    },
}

impl StoreError {
    /// Wrap an `io::Error` that happened while doing `op` on `path`.
    pub fn io(op: &'static str, path: &std::path::Path, err: &std::io::Error) -> StoreError {
        let code = err.raw_os_error();
        // EMFILE = 24, ENFILE = 23, ENOMEM = 12: the process, not the object, is the problem.
        if matches!(code, Some(24) | Some(23) | Some(12)) {
            return StoreError::Exhausted { op, path: path.display().to_string(), detail: err.to_string() };
        }
        // ENOSPC = 28, EDQUOT = 122 on Linux.
        let disk_full = matches!(code, Some(28) | Some(122));
        StoreError::Io { op, path: path.display().to_string(), detail: err.to_string(), disk_full }
    }

    /// Whether this error means the cache directory cannot take new files at all (read-only, permissions), so the
    /// cache should stop trying for a while. A full disk is not such an error: it is a matter of one object's size,
    /// and smaller objects may still fit.
    pub fn makes_cache_unwritable(&self) -> bool {
        match self {
            StoreError::Io { disk_full, op, .. } => !*disk_full && *op == "create",
            StoreError::Unwritable => true,
            StoreError::Locked(_) | StoreError::Task { .. } | StoreError::Exhausted { .. } => false,
        }
    }

    /// Whether the volume is full (ENOSPC, EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Io { disk_full: true, .. })
    }
}

/// Why a pull could not be answered. The HTTP layer turns each variant into one OCI error code and status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MirrorError {
    /// The namespace is not one this mirror may dial.
    #[error("namespace {0} is not a configured upstream registry of this mirror")]
    Denied(Namespace),
    /// The registry's `allow` or `deny` list refuses the repository (nothing is asked upstream, nothing cached is
    /// served).
    #[error("repository {image} is refused by this mirror's configuration (the registry's {list} list)")]
    RepositoryDenied {
        /// The repository, canonical (`docker.io/library/nginx`).
        image: ImageKey,
        /// `deny` or `allow`: the list that refused it.
        list: &'static str,
    },
    /// The upstream has no such manifest.
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    /// The upstream has no such repository (its tag list answered 404).
    #[error("repository unknown: {0}")]
    NameUnknown(String),
    /// The upstream has no such blob.
    #[error("blob unknown: {0}")]
    BlobUnknown(Digest),
    /// The upstream failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The content is not cached and the upstream cannot be asked (reserved for air-gapped use).
    #[error("{0} is not cached and the upstream cannot be reached")]
    Unavailable(String),
    /// The server cannot serve this right now (out of file descriptors or memory); the client should retry soon.
    #[error("the server is overloaded: {0}")]
    Overloaded(String),
    /// The fetch this request waited on ended without an outcome (its leader went away); asking again starts anew.
    #[error("the fetch of {0} was abandoned; retry")]
    Abandoned(String),
    /// An internal failure (an actor went away, a task panicked).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<actix::MailboxError> for MirrorError {
    fn from(err: actix::MailboxError) -> Self {
        MirrorError::Internal(format!("actor mailbox: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_endpoint_failures_name_the_endpoint() {
        let url = "http://user:pw@127.0.0.1:5001/token?service=s&scope=repository:x:pull";
        let cases = [
            (
                UpstreamError::Connect { upstream: "docker.io".into(), detail: "refused".into() },
                "cannot connect: refused",
            ),
            (UpstreamError::Status { upstream: "docker.io".into(), status: 500 }, "it answered HTTP 500"),
            (
                UpstreamError::Broken { upstream: "docker.io".into(), detail: "connection reset".into() },
                "connection reset",
            ),
        ];
        for (err, detail) in cases {
            assert_eq!(
                err.at_token_endpoint(url).to_string(),
                format!("the token endpoint http://127.0.0.1:5001/token of upstream docker.io failed: {detail}")
            );
        }
        let refused = UpstreamError::Unauthorized { upstream: "docker.io".into(), status: 401, detail: String::new() };
        assert!(matches!(refused.at_token_endpoint(url), UpstreamError::Unauthorized { .. }));
    }
}
