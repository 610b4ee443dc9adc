//! `UpstreamPool`: the only code that opens connections to upstream registries.
//!
//! It owns one keep-alive awc client (connection pool, TLS configuration) per upstream registry. awc clients are
//! `!Send`, so they live on this actor's thread; every response body is pumped from here into a bounded channel of
//! `Send` events that any other actor or task can consume. The pump enforces the idle timeout per chunk: a transfer
//! that keeps receiving bytes runs as long as it needs, one that stalls fails with `UpstreamError::Idle`. The channel
//! always ends with an explicit `BodyEvent::End` or an error, never by just closing, so a consumer cannot mistake a
//! broken transfer for a finished one.
//!
//! Messages: `Fetch` (from image actors and the `Mirror` front door). It never touches the disk.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use awc::error::{ConnectError, SendRequestError};
use awc::http::{header, Method};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::Timeouts;
use crate::error::UpstreamError;
use crate::messages::{BodyEvent, Fetch, UpstreamResponse};

/// How many body chunks may wait in a channel before the pump stops reading from the socket (backpressure).
const BODY_CHANNEL_CHUNKS: usize = 16;
/// Upper bound on honouring `Retry-After` when reporting it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The upstream connection owner. See the module documentation.
pub struct UpstreamPool {
    timeouts: Timeouts,
    /// One client per upstream base URL: its connector keeps the connections alive between pulls.
    clients: HashMap<String, awc::Client>,
}

impl UpstreamPool {
    /// A pool with these timeouts; clients are built on first use, on the actor's own thread.
    pub fn new(timeouts: Timeouts) -> UpstreamPool {
        UpstreamPool { timeouts, clients: HashMap::new() }
    }

    fn client(&mut self, upstream: &super::Upstream) -> awc::Client {
        let timeouts = self.timeouts;
        self.clients
            .entry(upstream.base_url.clone())
            .or_insert_with(|| {
                let connector = awc::Connector::new()
                    .rustls_0_23(upstream.tls.clone())
                    .timeout(timeouts.connect)
                    .handshake_timeout(timeouts.connect)
                    .conn_keep_alive(Duration::from_secs(60))
                    .limit(256);
                awc::Client::builder()
                    .connector(connector)
                    .timeout(timeouts.head)
                    .add_default_header((header::USER_AGENT, concat!("ociregistry/", env!("CARGO_PKG_VERSION"))))
                    .finish()
            })
            .clone()
    }
}

impl Actor for UpstreamPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

fn send_error(upstream: &str, err: SendRequestError, head_timeout: Duration) -> UpstreamError {
    let upstream = upstream.to_string();
    match err {
        SendRequestError::Timeout => UpstreamError::HeadTimeout { upstream, after: head_timeout },
        SendRequestError::Connect(ConnectError::Timeout) => {
            UpstreamError::Connect { upstream, detail: "connection timed out".into() }
        }
        SendRequestError::Connect(e) => UpstreamError::Connect { upstream, detail: e.to_string() },
        other => UpstreamError::Broken { upstream, detail: other.to_string() },
    }
}

fn header_str(resp: &awc::http::header::HeaderMap, name: header::HeaderName) -> Option<String> {
    resp.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn retry_after(headers: &awc::http::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

impl Handler<Fetch> for UpstreamPool {
    type Result = ResponseFuture<Result<UpstreamResponse, UpstreamError>>;

    /// Send one request upstream; answer with the head and a channel that will carry the body.
    fn handle(&mut self, msg: Fetch, _ctx: &mut Self::Context) -> Self::Result {
        let client = self.client(&msg.upstream);
        let timeouts = self.timeouts;
        Box::pin(async move {
            let name = msg.upstream.namespace.to_string();
            let url = format!("{}{}", msg.upstream.base_url, msg.path);
            let method = if msg.head { Method::HEAD } else { Method::GET };
            let mut req = client.request(method, &url);
            if let Some(accept) = msg.accept {
                req = req.insert_header((header::ACCEPT, accept));
            }
            tracing::debug!(upstream = %name, %url, head = msg.head, "upstream request");
            let mut resp = req.send().await.map_err(|e| send_error(&name, e, timeouts.head))?;
            let status = resp.status().as_u16();
            let headers = resp.headers();
            let response_head = (
                header_str(headers, header::CONTENT_TYPE),
                header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok()),
                header_str(headers, header::HeaderName::from_static("docker-content-digest")),
            );
            tracing::debug!(upstream = %name, %url, status, "upstream response");
            match status {
                200 | 206 | 404 => {}
                429 => {
                    return Err(UpstreamError::TooManyRequests { upstream: name, retry_after: retry_after(headers) })
                }
                401 | 403 => return Err(UpstreamError::Unauthorized { upstream: name, status }),
                _ => return Err(UpstreamError::Status { upstream: name, status }),
            }
            let (tx, rx) = mpsc::channel(BODY_CHANNEL_CHUNKS);
            if msg.head || status == 404 {
                // Nothing to stream; the end event keeps the contract that every channel ends explicitly.
                let _ = tx.try_send(Ok(BodyEvent::End));
            } else {
                let idle = timeouts.idle;
                actix_rt::spawn(async move {
                    loop {
                        let next = tokio::time::timeout(idle, resp.next()).await;
                        let event = match next {
                            Err(_) => Err(UpstreamError::Idle { upstream: name.clone(), after: idle }),
                            Ok(None) => Ok(BodyEvent::End),
                            Ok(Some(Ok(chunk))) => Ok(BodyEvent::Data(chunk)),
                            Ok(Some(Err(e))) => {
                                Err(UpstreamError::Broken { upstream: name.clone(), detail: e.to_string() })
                            }
                        };
                        let last = !matches!(event, Ok(BodyEvent::Data(_)));
                        // A closed receiver means nobody wants the rest: stop reading, which drops the connection.
                        if tx.send(event).await.is_err() || last {
                            break;
                        }
                    }
                });
            }
            Ok(UpstreamResponse {
                status,
                content_type: response_head.0,
                content_length: response_head.1,
                docker_digest: response_head.2,
                body: rx,
            })
        })
    }
}
