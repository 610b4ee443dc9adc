//! The auth session of one upstream request: credentials attached before any challenge once the registry's scheme is
//! known (a cached bearer token for the scope, or basic credentials), the answer to a 401's challenge, bearer tokens
//! cached per (registry, scope) and fetched once for all concurrent requests of a scope, and credential-helper
//! answers cached for their cache time. Everything here runs on the pool's thread (awc is `!Send`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

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
    /// Token fetches in flight, by (base URL, scope): concurrent requests of a scope await the same one.
    fetching: HashMap<(String, String), TokenFetch>,
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
    pub(super) async fn proactive(&self, scope: Option<&str>) -> Result<Option<String>, UpstreamError> {
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
    pub(super) async fn answer(&self, challenge: Challenge, scope: Option<&str>) -> Result<String, UpstreamError> {
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
