//! The auth session of one upstream request: credentials attached before any challenge once the scope's scheme is
//! known (a bearer token for the scope, or basic credentials), the answer to a 401's challenge (remembered for that
//! scope only), bearer tokens cached per (registry, scope) and fetched once for all concurrent requests of a scope,
//! token requests that failed held back for a short, growing wait (`realm_backoff`), and credential-helper answers
//! cached for their cache time. Everything here runs on the pool's thread (awc is `!Send`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use awc::http::header;
use futures_util::future::{FutureExt, LocalBoxFuture, Shared};

use super::auth::{parse_token, run_helper, token_url, AuthState, Challenge, Credentials, Token, UserSecret};
use super::retry::send_error;
use super::{Timeouts, Upstream};
use crate::error::UpstreamError;
use crate::metrics::Metrics;

/// Largest token endpoint answer accepted.
const MAX_TOKEN_BODY: usize = 1024 * 1024;

type TokenFetch = Shared<LocalBoxFuture<'static, Result<Token, UpstreamError>>>;

/// Auth state shared by the pool's concurrent requests (all on the pool's thread).
#[derive(Default)]
pub(super) struct AuthBook {
    /// Per registry base URL.
    pub(super) states: HashMap<String, AuthState>,
    /// Token fetches in flight, by (base URL, token request URL): concurrent requests of a scope await the same one.
    fetching: HashMap<(String, String), TokenFetch>,
}

impl AuthBook {
    /// Drop what has gone stale in every registry's state (`AuthState::prune`).
    pub(super) fn prune(&mut self, now: Instant) {
        for state in self.states.values_mut() {
            state.prune(now);
        }
    }
}

/// Everything one request needs, cloned out of the actor so the request can run as a future.
#[derive(Clone)]
pub(super) struct Session {
    pub(super) client: awc::Client,
    /// For token requests only: its connector trusts the realms this registry named.
    pub(super) token_client: awc::Client,
    pub(super) upstream: Arc<Upstream>,
    pub(super) auth: Rc<RefCell<AuthBook>>,
    pub(super) timeouts: Timeouts,
    pub(super) metrics: Arc<Metrics>,
}

impl Session {
    pub(super) fn name(&self) -> String {
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
                    Some((creds.clone(), Instant::now()));
                Ok(Some(creds))
            }
        }
    }

    /// A bearer token for `scope` from `realm`: cached (unless it is the one the registry just `refused`), joined
    /// from a fetch in flight, or fetched, unless this token request failed a moment ago and its backoff still runs
    /// (`realm_backoff`). The wait ends at `deadline` (the request's own); the fetch itself runs on to its end (its
    /// own timeouts bound it) and records its outcome for the requests after.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        refused: Option<&str>,
        deadline: Deadline,
    ) -> Result<Token, UpstreamError> {
        let base = self.base();
        let url = token_url(realm, service, scope);
        let cached = self.auth.borrow().states.get(&base).and_then(|s| s.token(scope));
        if let Some(token) = cached.filter(|t| refused != Some(t.bearer().as_str())) {
            return Ok(token);
        }
        let key = (base, url.clone());
        let running = self.auth.borrow().fetching.get(&key).cloned();
        let fetch = match running {
            Some(fetch) => fetch,
            None => {
                if let Some(state) = self.auth.borrow().states.get(&key.0) {
                    state.realms.check(&url, Instant::now())?;
                }
                let me = self.clone();
                let (k, scope) = (key.clone(), scope.to_string());
                let fetch = async move {
                    let result = me.fetch_token(&k.1).await.map_err(|e| e.at_token_endpoint(&k.1));
                    let mut book = me.auth.borrow_mut();
                    book.fetching.remove(&k);
                    let state = book.states.entry(k.0.clone()).or_default();
                    match &result {
                        Ok(token) => {
                            state.remember_token(&scope, token.clone());
                            state.realms.succeeded(&k.1);
                        }
                        Err(e @ UpstreamError::TokenEndpoint { .. }) => {
                            let wait = state.realms.failed(&k.1, e, Instant::now());
                            tracing::warn!(upstream = %me.name(), error = %e, wait_ms = wait.as_millis() as u64, "token request failed; only the requests that need this token fail, and it is asked again after the wait");
                        }
                        Err(_) => {}
                    }
                    result
                }
                .boxed_local()
                .shared();
                self.auth.borrow_mut().fetching.insert(key, fetch.clone());
                // Driven to its end even when every request waiting on it has given up, so that its outcome is
                // recorded and the entry in `fetching` goes away.
                actix_rt::spawn(fetch.clone().map(drop));
                fetch
            }
        };
        match tokio::time::timeout_at(deadline.at, fetch).await {
            Ok(result) => result,
            Err(_) => {
                Err(UpstreamError::HeadTimeout { upstream: self.name(), after: deadline.after }.at_token_endpoint(&url))
            }
        }
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

    /// Credentials to attach before any challenge, when this scope's scheme is already known: the scope's bearer
    /// token (cached or fetched from the realm its own challenge named), or basic credentials. A token that cannot be
    /// had is not the request's end: it goes without, and the registry's 401 says again what this scope needs (it
    /// may name another realm now). Only a wait that used up the request's deadline fails it here.
    pub(super) async fn proactive(
        &self,
        scope: Option<&str>,
        deadline: Deadline,
    ) -> Result<Option<String>, UpstreamError> {
        let key = scope.unwrap_or("");
        let challenge = self.auth.borrow().states.get(&self.base()).and_then(|s| s.challenge(key));
        match challenge {
            Some(Challenge::Bearer { realm, service, .. }) => {
                let Some(scope) = scope else {
                    return Ok(None);
                };
                match self.token(&realm, service.as_deref(), scope, None, deadline).await {
                    Ok(token) => Ok(Some(token.bearer())),
                    Err(e) if tokio::time::Instant::now() >= deadline.at => Err(e),
                    Err(e) => {
                        tracing::debug!(upstream = %self.name(), error = %e, "no token before the request; asking the registry what it needs");
                        self.forget_challenge(key);
                        Ok(None)
                    }
                }
            }
            Some(Challenge::Basic) => Ok(self.user_secret().await?.map(|c| c.basic_header())),
            None => Ok(None),
        }
    }

    /// Answer a 401's challenge to a request of `scope` that carried `refused` (its `Authorization`, if any): the
    /// `Authorization` value to resend with. The challenge is remembered for this scope only, and only once it was
    /// answered; a failure forgets it.
    pub(super) async fn answer(
        &self,
        challenge: Challenge,
        scope: Option<&str>,
        refused: Option<&str>,
        deadline: Deadline,
    ) -> Result<String, UpstreamError> {
        let key = scope.unwrap_or("");
        let answer = match &challenge {
            Challenge::Bearer { realm, service, scope: asked } => {
                let token_scope = asked.as_deref().or(scope).unwrap_or("");
                self.token(realm, service.as_deref(), token_scope, refused, deadline).await.map(|t| t.bearer())
            }
            Challenge::Basic => match self.user_secret().await? {
                Some(creds) => Ok(creds.basic_header()),
                None => Err(UpstreamError::Unauthorized {
                    upstream: self.name(),
                    status: 401,
                    detail: "it asks for credentials and none are configured".into(),
                }),
            },
        };
        match &answer {
            Ok(_) => self.auth.borrow_mut().states.entry(self.base()).or_default().remember_challenge(key, challenge),
            Err(_) => self.forget_challenge(key),
        }
        answer
    }

    fn forget_challenge(&self, scope: &str) {
        if let Some(state) = self.auth.borrow_mut().states.get_mut(&self.base()) {
            state.forget_challenge(scope);
        }
    }
}

/// When a request's wait for its response head ends (`pullTimeout`, or the caller's shorter deadline), and how long
/// that was: token waits end there too.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    pub(super) at: tokio::time::Instant,
    pub(super) after: Duration,
}
