//! A bearer-token server for docker-registry's `auth.token`, in the test
//! process (on a [`StubServer`]).
//!
//! `GET /token?service=S&scope=repository:NAME:ACTIONS` answers
//! `{"token": JWT, "access_token": JWT, "expires_in": N}`. The JWT is what
//! distribution 2.8 accepts: RS256, an `x5c` header whose first certificate is
//! the signing certificate (then its CA, which is the registry's
//! `rootcertbundle`), claims `iss`, `aud` (= service), `sub`, `exp`, `nbf`,
//! `iat`, `jti` and `access` granting exactly the requested scopes. Signed with
//! ring over an RSA key made by openssl ([`super::certs::signing_cert`]).
//!
//! Options: require basic credentials (401 otherwise), hold each answer a
//! while (to make concurrent requests overlap), set `expires_in`, and give the
//! first token a short real life (the registry then refuses it later). It
//! records every token request (scopes, `Authorization` header) and every
//! token issued, so tests can count fetches per scope and look for leaks.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::json;

use super::certs::{signing_cert, SigningCert};
use super::stub_http::{query_params, RecordedRequest, Reply, StubServer};
use super::upstream::TokenAuth;

pub const SERVICE: &str = "ociregistry-e2e-registry";
pub const ISSUER: &str = "ociregistry-e2e-token-issuer";

#[derive(Debug, Clone)]
pub struct TokenServerOptions {
    /// `expires_in` in the answer (and the token's lifetime); `None` leaves
    /// the field out (clients then assume 60 s) and gives tokens 60 s.
    pub expires_in: Option<u64>,
    /// Answer 401 unless the request has `Authorization: Basic` with these.
    pub credentials: Option<(String, String)>,
    /// Wait this long before answering each request.
    pub hold: Duration,
    /// The first token's `exp` claim is this many seconds from now (its
    /// `expires_in` stays as configured). docker-registry accepts a token
    /// until 60 s past `exp`, so -55 makes a token that works for 4-5 s
    /// and is refused after that, while our server still holds it as fresh.
    pub first_token_exp: Option<i64>,
}

impl Default for TokenServerOptions {
    fn default() -> Self {
        TokenServerOptions { expires_in: Some(300), credentials: None, hold: Duration::ZERO, first_token_exp: None }
    }
}

/// One token request as received.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub service: Option<String>,
    /// Every `scope` value (space-separated lists split).
    pub scopes: Vec<String>,
    pub authorization: Option<String>,
}

struct Issuer {
    opts: TokenServerOptions,
    signer: RsaKeyPair,
    x5c: Vec<String>,
    rng: SystemRandom,
    issued: Mutex<Vec<String>>,
    serial: AtomicUsize,
}

pub struct TokenServer {
    stub: StubServer,
    issuer: Arc<Issuer>,
    signing: SigningCert,
}

impl TokenServer {
    /// Make signing material under `dir` and start serving.
    pub fn start(dir: &Path, opts: TokenServerOptions) -> TokenServer {
        let signing = signing_cert(dir);
        let signer = RsaKeyPair::from_pkcs8(&signing.key_pkcs8).expect("RSA signing key (PKCS#8)");
        let issuer = Arc::new(Issuer {
            opts,
            signer,
            x5c: vec![STANDARD.encode(&signing.cert_der), STANDARD.encode(&signing.ca_der)],
            rng: SystemRandom::new(),
            issued: Mutex::new(Vec::new()),
            serial: AtomicUsize::new(0),
        });
        let iss = issuer.clone();
        let stub = StubServer::start(move |req| iss.answer(req));
        TokenServer { stub, issuer, signing }
    }

    /// `http://127.0.0.1:PORT/token`
    pub fn realm(&self) -> String {
        format!("{}/token", self.stub.url())
    }

    /// The `auth.token` section for a registry that trusts this server.
    pub fn registry_auth(&self) -> TokenAuth {
        TokenAuth {
            realm: self.realm(),
            service: SERVICE.to_string(),
            issuer: ISSUER.to_string(),
            root_cert_bundle: self.signing.ca.clone(),
        }
    }

    /// Every token request so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.stub.requests().iter().filter(|r| r.path() == "/token").map(parse_request).collect()
    }

    /// How many token requests there were.
    pub fn fetches(&self) -> usize {
        self.requests().len()
    }

    /// How many token requests asked for `scope` (e.g. `repository:library/hello:pull`).
    pub fn fetches_for(&self, scope: &str) -> usize {
        self.requests().iter().filter(|r| r.scopes.iter().any(|s| s == scope)).count()
    }

    /// Every token issued.
    pub fn issued(&self) -> Vec<String> {
        self.issuer.issued.lock().unwrap().clone()
    }

    pub fn port(&self) -> u16 {
        self.stub.port()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stub.connections()
    }
}

fn parse_request(req: &RecordedRequest) -> TokenRequest {
    let params = query_params(&req.target);
    TokenRequest {
        service: params.iter().find(|(k, _)| k == "service").map(|(_, v)| v.clone()),
        scopes: params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect(),
        authorization: req.header("authorization").map(str::to_string),
    }
}

/// `repository:library/hello:pull,push` -> an `access` entry.
fn access_entry(scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

impl Issuer {
    fn answer(&self, req: &RecordedRequest) -> Reply {
        let reply = self.answer_now(req);
        reply.hold(self.opts.hold)
    }

    fn answer_now(&self, req: &RecordedRequest) -> Reply {
        if req.path() != "/token" {
            return Reply::status(404);
        }
        let request = parse_request(req);
        let mut subject = String::new();
        if let Some((user, password)) = &self.opts.credentials {
            let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
            if request.authorization.as_deref() != Some(expected.as_str()) {
                return Reply::json(401, &json!({"details": "incorrect username or password"}))
                    .header("WWW-Authenticate", "Basic realm=\"ociregistry-e2e-tokens\"");
            }
            subject = user.clone();
        }
        let serial = self.serial.fetch_add(1, Ordering::SeqCst);
        let lifetime = self.opts.expires_in.unwrap_or(60);
        let issued_at = now();
        let iat = issued_at;
        let exp = match self.opts.first_token_exp {
            Some(offset) if serial == 0 => issued_at.saturating_add_signed(offset),
            _ => issued_at + lifetime,
        };
        let claims = json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": request.service.clone().unwrap_or_default(),
            "exp": exp,
            "nbf": iat.min(exp) - 10,
            "iat": iat,
            "jti": format!("e2e-{serial}-{:016x}", rand::random::<u64>()),
            "access": request.scopes.iter().filter_map(|s| access_entry(s)).collect::<Vec<_>>(),
        });
        let token = self.sign(&claims);
        self.issued.lock().unwrap().push(token.clone());
        let mut body = json!({"token": token, "access_token": token});
        if let Some(e) = self.opts.expires_in {
            body["expires_in"] = json!(e);
        }
        Reply::json(200, &body)
    }

    fn sign(&self, claims: &serde_json::Value) -> String {
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": self.x5c});
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0u8; self.signer.public().modulus_len()];
        self.signer.sign(&RSA_PKCS1_SHA256, &self.rng, input.as_bytes(), &mut signature).expect("RS256 signature");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}
