//! A registry whose repositories each name their own bearer-token realm (or
//! none), and token realms that can be told to fail and to recover: the
//! faults of token realms a real registry cannot produce (docker-registry
//! names one realm for all its repositories, and its realm is ours to run).
//!
//! [`Realm`] answers `GET /token?service=S&scope=SCOPE` with
//! `{"token": "tok-NAME", "expires_in": N}` while it [`RealmMode::Works`], and
//! otherwise fails the way its mode says. [`RealmRegistry`] serves
//! [`StubImage`]s; a repository that has a realm answers 401 with
//! `WWW-Authenticate: Bearer realm=...,service=...,scope=repository:REPO:pull`
//! to every request that does not carry that realm's token. Both record their
//! requests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::stub_http::{query_params, RecordedRequest, Reply, StubImage, StubServer};

/// The `service` the registry names in its challenges.
pub const SERVICE: &str = "realm-registry";

/// How a [`Realm`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealmMode {
    /// A token.
    Works,
    /// This error status.
    Fails(u16),
    /// 200 with a JSON body that has no token.
    NoToken,
    /// Nothing, for a minute (the connection stays open).
    Hangs,
}

/// A token realm. See the module documentation.
pub struct Realm {
    name: String,
    mode: Arc<Mutex<RealmMode>>,
    stub: StubServer,
}

impl Realm {
    /// A realm named `name` in `mode`, whose tokens say they last `expires_in` seconds.
    pub fn start(name: &str, mode: RealmMode, expires_in: u64) -> Realm {
        let mode = Arc::new(Mutex::new(mode));
        let (m, token) = (mode.clone(), format!("tok-{name}"));
        let stub = StubServer::start(move |req| {
            if req.path() != "/token" {
                return Reply::status(404);
            }
            match *m.lock().unwrap() {
                RealmMode::Works => Reply::json(200, &json!({"token": token, "expires_in": expires_in})),
                RealmMode::Fails(status) => Reply::json(status, &json!({"details": "the realm is unwell"})),
                RealmMode::NoToken => Reply::json(200, &json!({"details": "no token for you"})),
                RealmMode::Hangs => Reply::status(500).hold(Duration::from_secs(60)),
            }
        });
        Realm { name: name.to_string(), mode, stub }
    }

    pub fn set(&self, mode: RealmMode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// `http://127.0.0.1:PORT/token`
    pub fn url(&self) -> String {
        format!("{}/token", self.stub.url())
    }

    /// What the registry wants to see for the repositories of this realm.
    pub fn auth(&self) -> RepoAuth {
        RepoAuth::Bearer { realm: self.url(), token: format!("tok-{}", self.name) }
    }

    /// The scopes of every token request so far, in order.
    pub fn scopes(&self) -> Vec<String> {
        self.stub
            .requests()
            .iter()
            .filter(|r| r.path() == "/token")
            .flat_map(|r| query_params(&r.target).into_iter().filter(|(k, _)| k == "scope").map(|(_, v)| v))
            .collect()
    }

    /// Token requests for `scope` so far.
    pub fn asked_for(&self, scope: &str) -> usize {
        self.scopes().iter().filter(|s| *s == scope).count()
    }
}

/// What a repository of the [`RealmRegistry`] asks for.
#[derive(Debug, Clone)]
pub enum RepoAuth {
    /// Nothing: anonymous pulls.
    Open,
    /// A bearer token from `realm`, which must be `token`.
    Bearer { realm: String, token: String },
}

/// The pull scope of a repository.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// A registry of [`StubImage`]s, each repository with its own auth. See the module documentation.
pub struct RealmRegistry {
    stub: StubServer,
}

impl RealmRegistry {
    pub fn start(repos: Vec<(StubImage, RepoAuth)>) -> RealmRegistry {
        let stub = StubServer::start(move |req| answer(&repos, req));
        RealmRegistry { stub }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.stub.url()
    }

    /// Requests of this method whose path (query ignored) ends in `path_suffix`.
    pub fn count(&self, method: &str, path_suffix: &str) -> usize {
        self.stub.count(method, path_suffix)
    }
}

fn answer(repos: &[(StubImage, RepoAuth)], req: &RecordedRequest) -> Reply {
    let path = req.path();
    if path == "/v2/" || path == "/v2" {
        return Reply::json(200, &json!({}));
    }
    let Some((image, auth)) = repos.iter().find(|(image, _)| path.starts_with(&format!("/v2/{}/", image.repo))) else {
        return Reply::error(404, "NAME_UNKNOWN");
    };
    if let RepoAuth::Bearer { realm, token } = auth {
        if req.header("authorization") != Some(format!("Bearer {token}").as_str()) {
            let challenge =
                format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\",scope=\"{}\"", pull_scope(&image.repo));
            return Reply::error(401, "UNAUTHORIZED").header("WWW-Authenticate", &challenge);
        }
    }
    image.serve(req)
}
