//! Retry policy and error mapping for upstream requests: which failures are retried, how long to wait (the upstream's
//! `Retry-After` for 429/503, capped; jittered exponential backoff otherwise), and how awc's errors become
//! `UpstreamError`s (a certificate error is `Tls`, never retried).

use std::time::Duration;

use actix_http::error::ParseError;
use awc::error::{ConnectError, SendRequestError};
use awc::http::header;

use super::guard::Refused;
use crate::error::UpstreamError;

/// Retries after the first attempt, for connection failures, 429 and 5xx.
pub(super) const MAX_RETRIES: u32 = 3;
/// Longest single wait for `Retry-After`.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);
/// First backoff step; doubled per retry, plus up to as much again of jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(250);

pub(super) fn send_error(upstream: &str, err: SendRequestError, head_timeout: Duration) -> UpstreamError {
    let upstream = upstream.to_string();
    match err {
        SendRequestError::Timeout => UpstreamError::HeadTimeout { upstream, after: head_timeout },
        SendRequestError::Connect(ConnectError::Timeout) => {
            UpstreamError::Connect { upstream, detail: "connection timed out".into() }
        }
        SendRequestError::Connect(ConnectError::Resolver(e)) => match e.downcast_ref::<Refused>() {
            Some(refused) => UpstreamError::Refused { upstream, detail: refused.0.clone() },
            None => UpstreamError::Connect { upstream, detail: e.to_string() },
        },
        // rustls reports handshake failures as InvalidData: retrying cannot fix a certificate.
        SendRequestError::Connect(ConnectError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            UpstreamError::Tls { upstream, detail: e.to_string() }
        }
        SendRequestError::Connect(e) => UpstreamError::Connect { upstream, detail: e.to_string() },
        // Closed before any byte of a response (a dying server, a balancer with no backend): unreachable, not a
        // malformed answer.
        SendRequestError::Send(e) if closed(&e) => UpstreamError::Connect { upstream, detail: e.to_string() },
        SendRequestError::Response(ParseError::Io(e)) if closed(&e) => {
            UpstreamError::Connect { upstream, detail: format!("connection closed before a response: {e}") }
        }
        other => UpstreamError::Broken { upstream, detail: other.to_string() },
    }
}

/// Whether a request failed because its connection was closed before any response (a kept-alive connection the
/// upstream had already dropped): worth one immediate retry on a new connection.
pub(super) fn closed_before_response(err: &SendRequestError) -> bool {
    match err {
        SendRequestError::Send(e) | SendRequestError::Response(ParseError::Io(e)) => closed(e),
        _ => false,
    }
}

fn closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected)
}

pub(super) fn header_str(headers: &header::HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

pub(super) fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_WAIT))
}

pub(super) fn backoff(attempt: u32) -> Duration {
    let step = BACKOFF_BASE * 2u32.saturating_pow(attempt);
    step + step.mul_f64(rand::random::<f64>())
}

/// Whether a failure before any response may be retried (not a policy refusal or a head timeout: retrying those
/// would only multiply the wait).
pub(super) fn retryable(err: &UpstreamError) -> bool {
    matches!(err, UpstreamError::Connect { .. } | UpstreamError::Broken { .. })
}
