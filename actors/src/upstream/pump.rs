//! The body pump: turns an awc response into the `Send` head plus a bounded channel of body events, reading the
//! socket only as fast as the consumer takes chunks (backpressure), failing a body that sends nothing for the idle
//! timeout, and always ending the channel with an explicit `End` or an error. The concurrency slot of the request
//! is held until the body is done, or until its receiver is dropped: the pump stops at once then, even while the
//! upstream sends nothing, which closes the upstream connection and frees the slot. Under an `upstreamBandwidth` cap
//! the pump pays for every chunk and, in the bulk lane, waits out the debt before it reads on (`bandwidth`).

use std::time::Duration;

use awc::http::header;
use futures_util::StreamExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::bandwidth::{Budget, Lane};
use super::retry::header_str;
use crate::body::BodyEvent;
use crate::error::UpstreamError;
use crate::messages::UpstreamResponse;
use crate::metrics::error_reason;

/// How many body chunks may wait in a channel before the pump stops reading from the socket (backpressure).
const BODY_CHANNEL_CHUNKS: usize = 16;

/// What the body pump needs besides the response.
pub(super) struct Pump {
    pub(super) idle: Duration,
    pub(super) name: String,
    /// `ociregistry_upstream_bytes_total` for this upstream and kind.
    pub(super) bytes: prometheus::IntCounter,
    pub(super) errors: prometheus::IntCounterVec,
    /// The caps this upstream's bodies pay into.
    pub(super) budget: Budget,
    /// A manifest (the priority lane whatever its size).
    pub(super) manifest: bool,
    /// `ociregistry_upstream_bandwidth_wait_seconds_total` for this upstream.
    pub(super) waited: prometheus::Counter,
}

/// Turn a response into the head plus a pumped body channel; the concurrency slot is held until the body is done.
pub(super) fn respond<S>(
    mut resp: awc::ClientResponse<S>,
    status: u16,
    head: bool,
    permit: OwnedSemaphorePermit,
    pump: Pump,
) -> UpstreamResponse
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin + 'static,
{
    let headers = resp.headers();
    let content_type = header_str(headers, header::CONTENT_TYPE);
    let content_length = header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    let docker_digest = header_str(headers, header::HeaderName::from_static("docker-content-digest"));
    let link = header_str(headers, header::LINK);
    let etag = header_str(headers, header::ETAG);
    let content_range = header_str(headers, header::CONTENT_RANGE);
    let (tx, rx) = mpsc::channel(BODY_CHANNEL_CHUNKS);
    if head || status == 404 {
        // Nothing to stream; the end event keeps the contract that every channel ends explicitly.
        let _ = tx.try_send(Ok(BodyEvent::End));
    } else {
        let Pump { idle, name, bytes, errors, budget, manifest, waited } = pump;
        let lane = Lane::of(manifest, content_length);
        actix_rt::spawn(async move {
            let _slot = permit;
            loop {
                // A receiver gone (the client left, or the body was refused) ends the pump now, not at the next
                // chunk: an upstream that stalls would otherwise keep its connection and slot until `idle`.
                let next = tokio::select! {
                    biased;
                    () = tx.closed() => break,
                    next = tokio::time::timeout(idle, resp.next()) => next,
                };
                let event = match next {
                    Err(_) => Err(UpstreamError::Idle { upstream: name.clone(), after: idle }),
                    Ok(None) => Ok(BodyEvent::End),
                    Ok(Some(Ok(chunk))) => Ok(BodyEvent::Data(chunk)),
                    Ok(Some(Err(e))) => Err(UpstreamError::Broken { upstream: name.clone(), detail: e.to_string() }),
                };
                match &event {
                    Ok(BodyEvent::Data(chunk)) => bytes.inc_by(chunk.len() as u64),
                    Err(e) => errors.with_label_values(&[&name, error_reason(e)]).inc(),
                    Ok(BodyEvent::End) => {}
                }
                let paid = match &event {
                    Ok(BodyEvent::Data(chunk)) if !budget.is_unlimited() => budget.pay(chunk.len() as u64, lane),
                    _ => Duration::ZERO,
                };
                let last = !matches!(event, Ok(BodyEvent::Data(_)));
                // A closed receiver means nobody wants the rest: stop reading, which drops the connection.
                if tx.send(event).await.is_err() || last {
                    break;
                }
                // Over budget: leave the socket unread (TCP slows the sender) until the debt is paid.
                if !paid.is_zero() {
                    waited.inc_by(paid.as_secs_f64());
                    tokio::select! {
                        biased;
                        () = tx.closed() => break,
                        () = tokio::time::sleep(paid) => {}
                    }
                }
            }
        });
    }
    UpstreamResponse { status, content_type, content_length, docker_digest, link, etag, content_range, body: rx }
}
