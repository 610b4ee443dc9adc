//! `UpstreamPool`: the only code that opens connections to upstream registries.
//!
//! It owns one keep-alive awc client (connection pool, TLS configuration, guarded connector) per upstream registry,
//! the registries' auth state (challenges seen, bearer tokens per scope, credential-helper answers), and a
//! per-registry limit on concurrent fetches (`maxConcurrent`). awc clients are `!Send`, so all of this lives on the
//! actor's own thread; every response body is pumped from here into a bounded channel of `Send` events that any
//! other actor or task can consume.
//!
//! A `Fetch` runs: wait for a slot under the registry's limit; attach credentials when the registry's scheme is
//! already known (a cached bearer token for the scope, or basic credentials); send; on a 401 answer the challenge
//! once (fetch a token, one fetch shared by every concurrent request of the scope, or use basic credentials) and
//! resend; on 429/503 wait for `Retry-After` (capped), on connection failures and other 5xx back off with jitter,
//! at most `MAX_RETRIES` times. The body pump enforces the idle timeout per chunk: a transfer that keeps receiving
//! bytes runs as long as it needs. Every body channel ends with an explicit `BodyEvent::End` or an error.
//!
//! Messages: `Fetch` (from image actors and the `Mirror` front door). It never touches the disk.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use awc::error::{ConnectError, SendRequestError};
use awc::http::{header, Method};
use futures_util::future::{FutureExt, LocalBoxFuture, Shared};
use futures_util::StreamExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::auth::{
    parse_challenge, parse_token, run_helper, token_url, AuthState, Challenge, Credentials, Token, UserSecret,
};
use super::guard::{client_key, GuardedConnector, Purpose, Refused};
use super::{Timeouts, Upstream};
use crate::error::UpstreamError;
use crate::messages::{BodyEvent, Fetch, UpstreamResponse};
use crate::metrics::{error_reason, Metrics};

/// How many body chunks may wait in a channel before the pump stops reading from the socket (backpressure).
const BODY_CHANNEL_CHUNKS: usize = 16;
/// Retries after the first attempt, for connection failures, 429 and 5xx.
const MAX_RETRIES: u32 = 3;
/// Longest single wait for `Retry-After`.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);
/// First backoff step; doubled per retry, plus up to as much again of jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Largest token endpoint answer accepted.
const MAX_TOKEN_BODY: usize = 1024 * 1024;

type TokenFetch = Shared<LocalBoxFuture<'static, Result<Token, UpstreamError>>>;

/// Auth state shared by the pool's concurrent requests (all on the pool's thread).
#[derive(Default)]
struct AuthBook {
    /// Per registry base URL.
    states: HashMap<String, AuthState>,
    /// Token fetches in flight, by (base URL, scope): concurrent requests of a scope await the same one.
    fetching: HashMap<(String, String), TokenFetch>,
}

/// The upstream connection owner. See the module documentation.
pub struct UpstreamPool {
    timeouts: Timeouts,
    /// One client per upstream base URL: its connector keeps the connections alive between pulls.
    clients: HashMap<String, awc::Client>,
    /// `maxConcurrent` slots per upstream base URL and kind (manifest, blob).
    limits: HashMap<String, Arc<Semaphore>>,
    auth: Rc<RefCell<AuthBook>>,
    metrics: Arc<Metrics>,
}

impl UpstreamPool {
    /// A pool with these timeouts; clients are built on first use, on the actor's own thread.
    pub fn new(timeouts: Timeouts, metrics: Arc<Metrics>) -> UpstreamPool {
        UpstreamPool { timeouts, clients: HashMap::new(), limits: HashMap::new(), auth: Rc::default(), metrics }
    }

    fn client(&mut self, upstream: &Upstream, purpose: Purpose) -> awc::Client {
        let timeouts = self.timeouts;
        self.clients
            .entry(client_key(upstream, purpose))
            .or_insert_with(|| {
                let connector = awc::Connector::new()
                    .connector(GuardedConnector::new(upstream.guard.clone(), purpose))
                    .rustls_0_23(upstream.tls.clone())
                    .timeout(timeouts.connect)
                    .handshake_timeout(timeouts.connect)
                    .conn_keep_alive(Duration::from_secs(60))
                    .limit(upstream.max_concurrent.saturating_mul(2).saturating_add(8));
                awc::Client::builder()
                    .connector(connector)
                    .timeout(timeouts.head)
                    .add_default_header((header::USER_AGENT, concat!("ociregistry/", env!("CARGO_PKG_VERSION"))))
                    .finish()
            })
            .clone()
    }

    /// The slot pool for one upstream and kind. Manifests have a lane of their own, so small manifest requests
    /// (what a new pod needs first) never queue behind long blob transfers on a slow link.
    fn limit(&mut self, upstream: &Upstream, manifest: bool) -> Arc<Semaphore> {
        let key = format!("{}#{}", upstream.base_url, if manifest { "manifest" } else { "blob" });
        self.limits.entry(key).or_insert_with(|| Arc::new(Semaphore::new(upstream.max_concurrent.max(1)))).clone()
    }
}

impl Actor for UpstreamPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

/// Everything one request needs, cloned out of the actor so the request can run as a future.
#[derive(Clone)]
struct Session {
    client: awc::Client,
    /// For token requests only: its connector trusts the realms this registry named.
    token_client: awc::Client,
    upstream: Arc<Upstream>,
    auth: Rc<RefCell<AuthBook>>,
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
}

fn send_error(upstream: &str, err: SendRequestError, head_timeout: Duration) -> UpstreamError {
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
        other => UpstreamError::Broken { upstream, detail: other.to_string() },
    }
}

fn header_str(headers: &header::HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_WAIT))
}

fn backoff(attempt: u32) -> Duration {
    let step = BACKOFF_BASE * 2u32.saturating_pow(attempt);
    step + step.mul_f64(rand::random::<f64>())
}

/// Whether a failure before any response may be retried (not a policy refusal or a head timeout: retrying those
/// would only multiply the wait).
fn retryable(err: &UpstreamError) -> bool {
    matches!(err, UpstreamError::Connect { .. } | UpstreamError::Broken { .. })
}

impl Session {
    fn name(&self) -> String {
        self.upstream.namespace.to_string()
    }

    fn base(&self) -> String {
        self.upstream.base_url.clone()
    }

    /// Basic credentials to use, from the configuration or the credential helper (cached for its cache time).
    async fn user_secret(&self) -> Result<Option<UserSecret>, UpstreamError> {
        match &self.upstream.credentials {
            Credentials::Anonymous => Ok(None),
            Credentials::Basic { user, password } => {
                Ok(Some(UserSecret { user: user.clone(), secret: password.clone() }))
            }
            Credentials::Helper { name, cache_time } => {
                let cached = self.auth.borrow().states.get(&self.base()).and_then(|s| s.helper.clone());
                if let Some((creds, at)) = cached {
                    if at.elapsed() < *cache_time {
                        return Ok(Some(creds));
                    }
                }
                let (name, server) = (name.clone(), self.upstream.namespace.to_string());
                let answer = tokio::task::spawn_blocking(move || run_helper(&name, &server))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
                let creds = answer.map_err(|detail| UpstreamError::Credentials { upstream: self.name(), detail })?;
                self.auth.borrow_mut().states.entry(self.base()).or_default().helper =
                    Some((creds.clone(), std::time::Instant::now()));
                Ok(Some(creds))
            }
        }
    }

    /// A bearer token for `scope`: cached, joined from a fetch in flight, or fetched (`fresh` skips the cache).
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        fresh: bool,
    ) -> Result<Token, UpstreamError> {
        let key = (self.base(), scope.to_string());
        if !fresh {
            let cached = self.auth.borrow().states.get(&key.0).and_then(|s| s.tokens.get(scope).cloned());
            if let Some(token) = cached.filter(Token::is_fresh) {
                return Ok(token);
            }
        }
        let running = self.auth.borrow().fetching.get(&key).cloned();
        let fetch = match running {
            Some(fetch) => fetch,
            None => {
                let me = self.clone();
                let url = token_url(realm, service, scope);
                let k = key.clone();
                let fetch = async move {
                    let result = me.fetch_token(&url).await.map_err(|e| e.at_token_endpoint(&url));
                    let mut book = me.auth.borrow_mut();
                    book.fetching.remove(&k);
                    if let Ok(token) = &result {
                        book.states.entry(k.0.clone()).or_default().tokens.insert(k.1.clone(), token.clone());
                    }
                    result
                }
                .boxed_local()
                .shared();
                self.auth.borrow_mut().fetching.insert(key, fetch.clone());
                fetch
            }
        };
        fetch.await
    }

    async fn fetch_token(&self, url: &str) -> Result<Token, UpstreamError> {
        let name = self.name();
        if self.upstream.listed {
            self.upstream.guard.trust_realm(url);
        }
        let mut req = self.token_client.get(url);
        if let Some(creds) = self.user_secret().await? {
            req = req.insert_header((header::AUTHORIZATION, creds.basic_header()));
        }
        tracing::debug!(upstream = %name, "fetching a bearer token");
        self.metrics.token_fetches.with_label_values(&[&name]).inc();
        let mut resp = req.send().await.map_err(|e| send_error(&name, e, self.timeouts.head))?;
        let status = resp.status().as_u16();
        self.metrics.upstream_fetches.with_label_values(&[&name, "token", &status.to_string()]).inc();
        if status == 401 || status == 403 {
            return Err(UpstreamError::Unauthorized {
                upstream: name,
                status,
                detail: "the token endpoint refused the credentials".into(),
            });
        }
        if status != 200 {
            return Err(UpstreamError::Status { upstream: name, status });
        }
        let body = tokio::time::timeout(self.timeouts.idle, resp.body().limit(MAX_TOKEN_BODY))
            .await
            .map_err(|_| UpstreamError::Idle { upstream: name.clone(), after: self.timeouts.idle })?
            .map_err(|e| UpstreamError::Broken { upstream: name.clone(), detail: format!("token endpoint: {e}") })?;
        parse_token(&body)
            .ok_or(UpstreamError::Broken { upstream: name, detail: "the token endpoint sent no token".into() })
    }

    /// Credentials to attach before any challenge, when the registry's scheme is already known.
    async fn proactive(&self, scope: Option<&str>) -> Result<Option<String>, UpstreamError> {
        let challenge = self.auth.borrow().states.get(&self.base()).and_then(|s| s.challenge.clone());
        match challenge {
            Some(Challenge::Bearer { realm, service, .. }) => match scope {
                Some(scope) => {
                    Ok(Some(format!("Bearer {}", self.token(&realm, service.as_deref(), scope, false).await?.value)))
                }
                None => Ok(None),
            },
            Some(Challenge::Basic) => Ok(self.user_secret().await?.map(|c| c.basic_header())),
            None => Ok(None),
        }
    }

    /// Answer a 401's challenge: the `Authorization` value to resend with.
    async fn answer(&self, challenge: Challenge, scope: Option<&str>) -> Result<String, UpstreamError> {
        self.auth.borrow_mut().states.entry(self.base()).or_default().challenge = Some(challenge.clone());
        match challenge {
            Challenge::Bearer { realm, service, scope: asked } => {
                let scope = asked.as_deref().or(scope).unwrap_or("");
                Ok(format!("Bearer {}", self.token(&realm, service.as_deref(), scope, true).await?.value))
            }
            Challenge::Basic => match self.user_secret().await? {
                Some(creds) => Ok(creds.basic_header()),
                None => Err(UpstreamError::Unauthorized {
                    upstream: self.name(),
                    status: 401,
                    detail: "it asks for credentials and none are configured".into(),
                }),
            },
        }
    }
}

impl Handler<Fetch> for UpstreamPool {
    type Result = ResponseFuture<Result<UpstreamResponse, UpstreamError>>;

    /// Send one request upstream (with auth and retries); answer with the head and a channel carrying the body.
    fn handle(&mut self, msg: Fetch, _ctx: &mut Self::Context) -> Self::Result {
        let session = Session {
            client: self.client(&msg.upstream, Purpose::Registry),
            token_client: self.client(&msg.upstream, Purpose::Token),
            upstream: msg.upstream.clone(),
            auth: self.auth.clone(),
            timeouts: self.timeouts,
            metrics: self.metrics.clone(),
        };
        let limit = self.limit(&msg.upstream, msg.path.contains("/manifests/"));
        let metrics = self.metrics.clone();
        let ns = msg.upstream.namespace.to_string();
        let request = async move {
            let name = session.name();
            let permit = limit
                .acquire_owned()
                .await
                .map_err(|_| UpstreamError::Broken { upstream: name.clone(), detail: "pool closed".into() })?;
            let url = format!("{}{}", session.upstream.base_url, msg.path);
            let method = if msg.head { Method::HEAD } else { Method::GET };
            let scope = msg.scope.as_deref();
            let kind = if msg.path.contains("/manifests/") { "manifest" } else { "blob" };
            let mut authorization = session.proactive(scope).await?;
            let mut answered_challenge = false;
            let mut attempt = 0u32;
            loop {
                let mut req = session.client.request(method.clone(), &url);
                if let Some(accept) = msg.accept {
                    req = req.insert_header((header::ACCEPT, accept));
                }
                if let Some(from) = msg.range_from {
                    req = req.insert_header((header::RANGE, format!("bytes={from}-")));
                }
                if let Some(value) = &authorization {
                    req = req.insert_header((header::AUTHORIZATION, value.as_str()));
                }
                tracing::debug!(upstream = %name, %url, head = msg.head, attempt, "upstream request");
                let wait = match req.send().await {
                    Err(e) => {
                        let err = send_error(&name, e, session.timeouts.head);
                        if attempt >= MAX_RETRIES || !retryable(&err) {
                            return Err(err);
                        }
                        tracing::info!(upstream = %name, error = %err, attempt, "retrying upstream request");
                        backoff(attempt)
                    }
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        tracing::debug!(upstream = %name, %url, status, "upstream response");
                        session.metrics.upstream_fetches.with_label_values(&[&name, kind, &status.to_string()]).inc();
                        match status {
                            200 | 206 | 404 => {
                                let counter = session.metrics.upstream_bytes.with_label_values(&[&name, kind]);
                                let errors = session.metrics.upstream_errors.clone();
                                let pump = Pump { idle: session.timeouts.idle, name, bytes: counter, errors };
                                return Ok(respond(resp, status, msg.head, permit, pump));
                            }
                            401 if !answered_challenge => {
                                answered_challenge = true;
                                let challenge = header_str(resp.headers(), header::WWW_AUTHENTICATE)
                                    .and_then(|h| parse_challenge(&h))
                                    .ok_or_else(|| UpstreamError::Unauthorized {
                                        upstream: name.clone(),
                                        status,
                                        detail: "no usable WWW-Authenticate challenge".into(),
                                    })?;
                                authorization = Some(session.answer(challenge, scope).await?);
                                continue;
                            }
                            401 | 403 => {
                                let detail = if authorization.is_some() { "credentials rejected" } else { "" };
                                return Err(UpstreamError::Unauthorized {
                                    upstream: name,
                                    status,
                                    detail: detail.into(),
                                });
                            }
                            429 | 503 if attempt < MAX_RETRIES => {
                                retry_after(resp.headers()).unwrap_or_else(|| backoff(attempt))
                            }
                            429 => {
                                return Err(UpstreamError::TooManyRequests {
                                    upstream: name,
                                    retry_after: retry_after(resp.headers()),
                                })
                            }
                            500 | 502 | 504 if attempt < MAX_RETRIES => backoff(attempt),
                            _ => return Err(UpstreamError::Status { upstream: name, status }),
                        }
                    }
                };
                tracing::info!(upstream = %name, %url, wait_ms = wait.as_millis() as u64, attempt, "upstream busy or failing; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        };
        Box::pin(async move {
            let result = request.await;
            if let Err(e) = &result {
                metrics.upstream_errors.with_label_values(&[&ns, error_reason(e)]).inc();
            }
            result
        })
    }
}

/// What the body pump needs besides the response.
struct Pump {
    idle: Duration,
    name: String,
    /// `ociregistry_upstream_bytes_total` for this upstream and kind.
    bytes: prometheus::IntCounter,
    errors: prometheus::IntCounterVec,
}

/// Turn a response into the head plus a pumped body channel; the concurrency slot is held until the body is done.
fn respond<S>(
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
    let (tx, rx) = mpsc::channel(BODY_CHANNEL_CHUNKS);
    if head || status == 404 {
        // Nothing to stream; the end event keeps the contract that every channel ends explicitly.
        let _ = tx.try_send(Ok(BodyEvent::End));
    } else {
        let Pump { idle, name, bytes, errors } = pump;
        actix_rt::spawn(async move {
            let _slot = permit;
            loop {
                let next = tokio::time::timeout(idle, resp.next()).await;
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
                let last = !matches!(event, Ok(BodyEvent::Data(_)));
                // A closed receiver means nobody wants the rest: stop reading, which drops the connection.
                if tx.send(event).await.is_err() || last {
                    break;
                }
            }
        });
    }
    UpstreamResponse { status, content_type, content_length, docker_digest, body: rx }
}
