//! `UpstreamPool`: the only code that opens connections to upstream registries.
//!
//! It owns one keep-alive awc client (connection pool, TLS configuration, guarded connector) per upstream registry,
//! the registries' auth state (`session`), and a per-registry limit on concurrent fetches (`maxConcurrent`). awc
//! clients are `!Send`, so all of this lives on the actor's own thread; every response body is pumped from here into
//! a bounded channel of `Send` events that any other actor or task can consume (`pump`).
//!
//! A `Fetch` runs: wait for a slot under the registry's limit; attach credentials when the scheme of the request's
//! scope is already known (a challenge is never assumed for another repository); send; on a 401 answer the challenge
//! once and resend (a token wait ends at the request's deadline; a failing realm fails only the requests that need
//! it, and does not count toward the breaker); on 429/503 wait for `Retry-After` (capped), on connection failures
//! and other 5xx back off with jitter, at most `MAX_RETRIES` times (`retry`). State kept for registries that are not
//! configured (admitted by `upstreamPolicy`; their names come from clients) is dropped after `UNLISTED_IDLE` without
//! use, so it stays bounded.
//!
//! Messages: `Fetch` (from fetch leaders and the `Mirror` front door). It never touches the store.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use awc::http::{header, Method};
use tokio::sync::Semaphore;

use super::auth::parse_challenge;
use super::breaker::Admit;
use super::guard::{client_key, GuardedConnector, Purpose};
use super::pull_budget::Quota;
use super::pump::{respond, Pump};
use super::retry::{backoff, closed_before_response, header_str, retry_after, retryable, send_error, MAX_RETRIES};
use super::session::{AuthBook, Deadline, Session};
use super::{Timeouts, Upstream};
use crate::error::UpstreamError;
use crate::messages::{Fetch, UpstreamResponse};
use crate::metrics::error_reason;
use crate::metrics::Metrics;

/// Marks a request to another replica of this mirror: it fetches from its upstream and never forwards.
pub const PEER_HEADER: &str = "x-ociregistry-peer";

/// How long the state of an unlisted registry (client, limits, auth) is kept without use.
const UNLISTED_IDLE: Duration = Duration::from_secs(600);

/// A retry is made only if at least this much of the request's time is left once its wait is over.
const ATTEMPT_ROOM: Duration = Duration::from_millis(100);

/// The upstream connection owner. See the module documentation.
pub struct UpstreamPool {
    timeouts: Timeouts,
    /// One client per upstream base URL: its connector keeps the connections alive between pulls.
    clients: HashMap<String, awc::Client>,
    /// `maxConcurrent` slots per upstream base URL and kind (manifest, blob).
    limits: HashMap<String, Arc<Semaphore>>,
    /// Last use of each unlisted registry's state, by base URL.
    unlisted: HashMap<String, Instant>,
    auth: Rc<RefCell<AuthBook>>,
    metrics: Arc<Metrics>,
    /// How long a breaker's probe may take (`revalidateTimeout`).
    probe_within: Duration,
}

impl UpstreamPool {
    /// A pool with these timeouts; clients are built on first use, on the actor's own thread.
    pub fn new(timeouts: Timeouts, metrics: Arc<Metrics>) -> UpstreamPool {
        UpstreamPool {
            timeouts,
            clients: HashMap::new(),
            limits: HashMap::new(),
            unlisted: HashMap::new(),
            auth: Rc::default(),
            metrics,
            probe_within: crate::freshness::DEFAULT_REVALIDATE_TIMEOUT,
        }
    }

    /// Bound every breaker probe by `within` (`revalidateTimeout`): a pull while the upstream is still down gets its
    /// answer within it.
    pub fn probing_within(self, within: Duration) -> UpstreamPool {
        UpstreamPool { probe_within: within, ..self }
    }

    /// The client for one upstream and purpose: registry requests, or token requests (whose connector also trusts
    /// the token realms this registry named).
    fn client(&mut self, upstream: &Upstream, purpose: Purpose) -> awc::Client {
        let timeouts = self.timeouts;
        if !upstream.listed {
            self.unlisted.insert(upstream.base_url.clone(), Instant::now());
        }
        self.clients
            .entry(client_key(upstream, purpose))
            .or_insert_with(|| {
                let connector = awc::Connector::new()
                    .connector(GuardedConnector::new(upstream.guard.clone(), purpose).receive_buffer(match purpose {
                        Purpose::Registry => upstream.budget.receive_buffer(),
                        Purpose::Token => None,
                    }))
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

    /// Drop the state of unlisted registries unused for `UNLISTED_IDLE` (requests still running keep their clones), and
    /// what has gone stale in every registry's auth state (expired tokens, old realm failures).
    fn sweep(&mut self) {
        let stale: Vec<String> =
            self.unlisted.iter().filter(|(_, at)| at.elapsed() >= UNLISTED_IDLE).map(|(b, _)| b.clone()).collect();
        for base in stale {
            self.unlisted.remove(&base);
            self.clients.retain(|key, _| !key.contains(&format!(" {base} ")));
            self.limits.remove(&format!("{base}#manifest"));
            self.limits.remove(&format!("{base}#blob"));
            self.auth.borrow_mut().states.remove(&base);
        }
        self.auth.borrow_mut().prune(Instant::now());
    }
}

impl Actor for UpstreamPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(UNLISTED_IDLE / 4, |act, _ctx| act.sweep());
    }
}

/// Read the pull budget an answer states (`RateLimit-Limit`, `RateLimit-Remaining`) into the upstream's
/// `PullBudget` and the gauges; a value that does not parse is logged once per upstream and otherwise ignored.
fn note_pull_budget(upstream: &Upstream, name: &str, headers: &header::HeaderMap, metrics: &Metrics) {
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    if let Some(limit) = header_str(headers, header::HeaderName::from_static("ratelimit-limit")) {
        if let Ok(limit) = limit.parse::<Quota>() {
            metrics.ratelimit_limit.with_label_values(&[name]).set(as_i64(limit.count));
        }
    }
    let Some(remaining) = header_str(headers, header::HeaderName::from_static("ratelimit-remaining")) else {
        return;
    };
    match upstream.pull_budget.observe(&remaining, Instant::now()) {
        Ok(quota) => {
            metrics.ratelimit_remaining.with_label_values(&[name]).set(as_i64(quota.count));
            metrics.ratelimit_reserve.with_label_values(&[name]).set(as_i64(upstream.pull_budget.reserve()));
            if let Some(window) = quota.window {
                metrics.ratelimit_window.with_label_values(&[name]).set(as_i64(window.as_secs()));
            }
        }
        Err(Some(e)) => tracing::warn!(upstream = %name, value = %remaining, "ignoring RateLimit-Remaining: {e}"),
        Err(None) => {}
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
        let upstream = msg.upstream.clone();
        // Whether the registry answered at all: a request that failed before it did (no token in time, a refused
        // connection) tells the breaker nothing.
        let reached = Rc::new(Cell::new(false));
        let reached_here = reached.clone();
        // `probe`: this request is the breaker's probe, so its answer must come within `probe_within`.
        let probe_within = self.probe_within;
        // A peer's probe keeps its own deadline and error: the next source is asked after it anyway.
        let peer = msg.peer;
        let request = move |probe: bool| async move {
            let name = session.name();
            let permit = limit
                .acquire_owned()
                .await
                .map_err(|_| UpstreamError::Broken { upstream: name.clone(), detail: "pool closed".into() })?;
            // The response head must arrive within `pullTimeout` of getting a slot, retries and waits included.
            let head_timeout = msg.deadline.unwrap_or(session.timeouts.head);
            let head_timeout = if probe { head_timeout.min(probe_within) } else { head_timeout };
            let deadline = tokio::time::Instant::now() + head_timeout;
            let token_deadline = Deadline { at: deadline, after: head_timeout };
            let url = format!("{}{}", session.upstream.base_url, msg.path);
            let method = if msg.head { Method::HEAD } else { Method::GET };
            let scope = msg.scope.as_deref();
            let kind = if msg.path.contains("/manifests/") { "manifest" } else { "blob" };
            let mut authorization = session.proactive(scope, token_deadline).await?;
            let mut answered_challenge = false;
            let mut attempt = 0u32;
            // Another replica that fails is not asked again: the next one in the cluster's order is (fetch/blob/).
            let max_retries = if msg.peer { 0 } else { MAX_RETRIES };
            loop {
                let mut req = session.client.request(method.clone(), &url);
                if let Some(accept) = msg.accept {
                    req = req.insert_header((header::ACCEPT, accept));
                }
                if let Some(n) = msg.range_suffix {
                    req = req.insert_header((header::RANGE, format!("bytes=-{n}")));
                }
                if let Some(from) = msg.range_from {
                    let to = msg.range_end.map(|end| end.saturating_sub(1).to_string()).unwrap_or_default();
                    req = req.insert_header((header::RANGE, format!("bytes={from}-{to}")));
                    if let Some(validator) = &msg.if_range {
                        req = req.insert_header((header::IF_RANGE, validator.as_str()));
                    }
                }
                if msg.peer {
                    req = req.insert_header((PEER_HEADER, "1"));
                }
                if let Some(value) = &authorization {
                    req = req.insert_header((header::AUTHORIZATION, value.as_str()));
                }
                tracing::debug!(upstream = %name, %url, head = msg.head, attempt, "upstream request");
                let sent = tokio::time::timeout_at(deadline, req.send()).await;
                let (wait, err) = match sent {
                    Err(_) => return Err(UpstreamError::HeadTimeout { upstream: name, after: head_timeout }),
                    Ok(Err(e)) => {
                        let at_once = attempt == 0 && closed_before_response(&e);
                        let err = send_error(&name, e, head_timeout);
                        // A kept-alive connection the far end had closed is always worth one more try.
                        let limit = if at_once { max_retries.max(1) } else { max_retries };
                        if attempt >= limit || !retryable(&err) {
                            return Err(err);
                        }
                        tracing::info!(upstream = %name, error = %err, attempt, "retrying upstream request");
                        (if at_once { Duration::ZERO } else { backoff(attempt) }, err)
                    }
                    Ok(Ok(resp)) => {
                        reached_here.set(true);
                        let status = resp.status().as_u16();
                        tracing::debug!(upstream = %name, %url, status, "upstream response");
                        session.metrics.upstream_fetches.with_label_values(&[&name, kind, &status.to_string()]).inc();
                        note_pull_budget(&session.upstream, &name, resp.headers(), &session.metrics);
                        match status {
                            200 | 206 | 404 => {
                                let counter = session.metrics.upstream_bytes.with_label_values(&[&name, kind]);
                                let errors = session.metrics.upstream_errors.clone();
                                let waited = session.metrics.bandwidth_wait.with_label_values(&[&name]);
                                let pump = Pump {
                                    idle: session.timeouts.idle,
                                    name,
                                    bytes: counter,
                                    errors,
                                    budget: session.upstream.budget.clone(),
                                    manifest: kind == "manifest",
                                    waited,
                                };
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
                                let refused = authorization.take();
                                authorization =
                                    Some(session.answer(challenge, scope, refused.as_deref(), token_deadline).await?);
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
                            429 | 503 if attempt < max_retries => {
                                let after = retry_after(resp.headers());
                                let err = match status {
                                    429 => {
                                        UpstreamError::TooManyRequests { upstream: name.clone(), retry_after: after }
                                    }
                                    _ => UpstreamError::Status { upstream: name.clone(), status },
                                };
                                (after.unwrap_or_else(|| backoff(attempt)), err)
                            }
                            429 => {
                                return Err(UpstreamError::TooManyRequests {
                                    upstream: name,
                                    retry_after: retry_after(resp.headers()),
                                })
                            }
                            500 | 502 | 504 if attempt < max_retries => {
                                (backoff(attempt), UpstreamError::Status { upstream: name.clone(), status })
                            }
                            _ => return Err(UpstreamError::Status { upstream: name, status }),
                        }
                    }
                };
                if tokio::time::Instant::now() + wait + ATTEMPT_ROOM >= deadline {
                    // No time left for another attempt (one woken at the deadline's edge would be cut at once, and its
                    // caller would see a timeout instead of what the upstream said): the last failure is the answer.
                    return Err(err);
                }
                tracing::info!(upstream = %name, %url, wait_ms = wait.as_millis() as u64, attempt, "upstream busy or failing; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        };
        Box::pin(async move {
            let breaker = &upstream.breaker;
            let admitted = breaker.admit().await;
            metrics.breaker_state.with_label_values(&[&ns]).set(breaker.state().gauge());
            let result = match admitted {
                Admit::Refuse(retry_in) => Err(UpstreamError::CircuitOpen { upstream: ns.clone(), retry_in }),
                Admit::Go | Admit::Probe => {
                    let probe = admitted == Admit::Probe && !peer;
                    let result = request(probe).await;
                    match result {
                        Err(e) if e.is_outage() => {
                            let opened = breaker.failure();
                            let retry_in = breaker.retry_in();
                            if probe {
                                // The upstream is still down: the breaker's answer, within the probe's bound.
                                tracing::info!(upstream = %ns, error = %e, "upstream still failing: circuit breaker stays open; cached tags checked again in {}s", retry_in.as_secs_f32());
                                Err(UpstreamError::CircuitOpen { upstream: ns.clone(), retry_in })
                            } else {
                                if opened {
                                    tracing::warn!(upstream = %ns, error = %e, "upstream failing: circuit breaker open; cached content is served without asking it, the next request that needs it probes it");
                                }
                                Err(e)
                            }
                        }
                        Err(e) if !reached.get() => {
                            breaker.release();
                            Err(e)
                        }
                        other => {
                            breaker.success();
                            other
                        }
                    }
                }
            };
            metrics.breaker_state.with_label_values(&[&ns]).set(breaker.state().gauge());
            if let Err(e) = &result {
                metrics.upstream_errors.with_label_values(&[&ns, error_reason(e)]).inc();
            }
            result
        })
    }
}
