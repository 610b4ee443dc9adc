//! Credentials toward upstream registries and the registry auth handshake: `WWW-Authenticate` challenges (remembered
//! per registry and scope, never assumed for another scope), bearer tokens from the realm (cached per registry and
//! scope until they expire, one fetch shared by every concurrent request of a scope), basic credentials, and docker
//! credential helpers. Owned by the `UpstreamPool`; nothing
//! here logs or formats a secret (`Debug` of every credential type is redacted).

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use super::realm_backoff::RealmBackoff;

/// How to authenticate to one registry, as configured.
#[derive(Clone, Default)]
pub enum Credentials {
    /// No credentials: anonymous access (bearer tokens are still fetched anonymously when a registry asks).
    #[default]
    Anonymous,
    /// A user and password, used for basic challenges and at the token endpoint.
    Basic {
        /// The user name.
        user: String,
        /// The password (never logged).
        password: String,
    },
    /// A docker credential helper `docker-credential-<name>`, asked for a user and secret, reused for `cache_time`.
    Helper {
        /// The helper's name (`ecr-login` runs `docker-credential-ecr-login`).
        name: String,
        /// How long its answer is reused.
        cache_time: Duration,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => write!(f, "Anonymous"),
            Credentials::Basic { user, .. } => write!(f, "Basic {{ user: {user:?}, password: *** }}"),
            Credentials::Helper { name, cache_time } => {
                write!(f, "Helper {{ name: {name:?}, cache_time: {cache_time:?} }}")
            }
        }
    }
}

/// A user and secret ready to use (from the configuration or a helper).
#[derive(Clone)]
pub(crate) struct UserSecret {
    pub user: String,
    pub secret: String,
}

impl UserSecret {
    /// The `Authorization` value for basic auth.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.user, self.secret);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Basic credentials.
    Basic,
    /// A bearer token from `realm`.
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// The first Bearer or Basic challenge in a `WWW-Authenticate` value.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let challenges = http_auth::parse_challenges(header).ok()?;
    let mut basic = false;
    for c in challenges {
        if c.scheme.eq_ignore_ascii_case("bearer") {
            let param =
                |name: &str| c.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_unescaped());
            let realm = param("realm")?;
            return Some(Challenge::Bearer { realm, service: param("service"), scope: param("scope") });
        }
        if c.scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        }
    }
    basic.then_some(Challenge::Basic)
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: String,
    pub expires: Instant,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token {{ value: ***, expires: {:?} }}", self.expires)
    }
}

impl Token {
    pub fn is_fresh(&self) -> bool {
        Instant::now() < self.expires
    }

    /// The `Authorization` value that presents this token.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.value)
    }
}

/// The token endpoint's answer (`token` or `access_token`; `expires_in` defaults to 60 s per the token spec).
#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Tokens are dropped this long before the registry would refuse them.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);
/// The token spec's default lifetime.
const DEFAULT_TOKEN_LIFETIME: u64 = 60;

/// Parse a token endpoint's JSON body.
pub(crate) fn parse_token(body: &[u8]) -> Option<Token> {
    let parsed: TokenResponse = serde_json::from_slice(body).ok()?;
    let value = parsed.token.or(parsed.access_token).filter(|t| !t.is_empty())?;
    let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME).max(1));
    let usable = lifetime.checked_sub(EXPIRY_MARGIN).filter(|d| !d.is_zero()).unwrap_or(lifetime / 2);
    Some(Token { value, expires: Instant::now() + usable })
}

fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The token request URL for a challenge and scope.
pub(crate) fn token_url(realm: &str, service: Option<&str>, scope: &str) -> String {
    let mut url = realm.to_string();
    let mut sep = if realm.contains('?') { '&' } else { '?' };
    if let Some(service) = service {
        url.push(sep);
        url.push_str("service=");
        url.push_str(&encode_query_value(service));
        sep = '&';
    }
    url.push(sep);
    url.push_str("scope=");
    url.push_str(&encode_query_value(scope));
    url
}

/// The pull scope of a repository.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Ask `docker-credential-<name>` for the credentials of `server` (blocking: run it on the blocking pool). The error
/// names the helper, never the secret.
pub(crate) fn run_helper(name: &str, server: &str) -> Result<UserSecret, String> {
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run credential helper {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| format!("credential helper {program}: {e}"))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let first = msg.lines().next().unwrap_or("").chars().take(200).collect::<String>();
        return Err(format!("credential helper {program} failed ({}): {first}", out.status));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
        .map_err(|_| format!("credential helper {program} printed no Username/Secret JSON"))?;
    Ok(UserSecret { user: answer.username, secret: answer.secret })
}

/// Most scopes whose challenge and token one registry's state keeps; beyond it one is forgotten (which costs a 401
/// round trip for it later, nothing more).
const MAX_SCOPES: usize = 10_000;

/// What the pool remembers about one registry's auth (keyed by base URL).
#[derive(Default)]
pub(crate) struct AuthState {
    /// The challenge each scope's requests got (keyed by the request's scope): once a scope's realm is known and
    /// gave a token, tokens for that scope are fetched before its requests instead of after a 401. A challenge is
    /// never assumed for another scope: a registry may name another realm, or none, for another repository.
    challenges: HashMap<String, Challenge>,
    /// Tokens by the scope they were fetched for.
    tokens: HashMap<String, Token>,
    /// Token requests that failed, not sent again before their backoff ends.
    pub realms: RealmBackoff,
    /// The helper's last answer and when it was fetched.
    pub helper: Option<(UserSecret, Instant)>,
}

impl AuthState {
    /// The challenge requests of `scope` got, if one was answered with success.
    pub fn challenge(&self, scope: &str) -> Option<Challenge> {
        self.challenges.get(scope).cloned()
    }

    /// Remember that requests of `scope` are answered by `challenge`.
    pub fn remember_challenge(&mut self, scope: &str, challenge: Challenge) {
        bounded_insert(&mut self.challenges, scope, challenge);
    }

    /// Forget the challenge of `scope`: its next request goes without credentials and the registry's 401 says again
    /// what it needs.
    pub fn forget_challenge(&mut self, scope: &str) {
        self.challenges.remove(scope);
    }

    /// The cached token for `scope`, while it is fresh.
    pub fn token(&self, scope: &str) -> Option<Token> {
        self.tokens.get(scope).filter(|t| t.is_fresh()).cloned()
    }

    /// Cache a token for `scope`.
    pub fn remember_token(&mut self, scope: &str, token: Token) {
        bounded_insert(&mut self.tokens, scope, token);
    }

    /// Drop expired tokens, the challenges of scopes left without a fresh token (their next request asks the
    /// registry again) and realm failures whose backoff is long over.
    pub fn prune(&mut self, now: Instant) {
        self.tokens.retain(|_, t| now < t.expires);
        let tokens = &self.tokens;
        self.challenges.retain(|scope, c| matches!(c, Challenge::Basic) || tokens.contains_key(scope));
        self.realms.prune(now);
    }
}

/// Insert into a per-scope map that never holds more than `MAX_SCOPES` entries (scopes come from client requests).
fn bounded_insert<V>(map: &mut HashMap<String, V>, scope: &str, value: V) {
    if map.len() >= MAX_SCOPES && !map.contains_key(scope) {
        if let Some(any) = map.keys().next().cloned() {
            map.remove(&any);
        }
    }
    map.insert(scope.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let cases = [
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
                Some(Challenge::Bearer {
                    realm: "https://auth.docker.io/token".into(),
                    service: Some("registry.docker.io".into()),
                    scope: Some("repository:library/alpine:pull".into()),
                }),
            ),
            (r#"Basic realm="Registry Realm""#, Some(Challenge::Basic)),
            (
                r#"Basic realm="x", Bearer realm="http://127.0.0.1:1/t""#,
                Some(Challenge::Bearer { realm: "http://127.0.0.1:1/t".into(), service: None, scope: None }),
            ),
            ("Negotiate", None),
            ("", None),
        ];
        for (header, want) in cases {
            assert_eq!(parse_challenge(header), want, "challenge {header:?}");
        }
    }

    #[test]
    fn tokens_and_urls() {
        let t = parse_token(br#"{"token":"abc","expires_in":300}"#).expect("token");
        assert_eq!(t.value, "abc");
        assert!(t.expires > Instant::now() + Duration::from_secs(290));
        let t = parse_token(br#"{"access_token":"xyz"}"#).expect("access_token");
        assert_eq!(t.value, "xyz");
        assert!(t.expires <= Instant::now() + Duration::from_secs(60), "default lifetime 60 s");
        assert!(parse_token(br#"{"token":""}"#).is_none());
        assert_eq!(
            token_url("https://a/token", Some("reg istry"), "repository:library/x:pull"),
            "https://a/token?service=reg%20istry&scope=repository%3Alibrary%2Fx%3Apull"
        );
        assert_eq!(token_url("https://a/t?x=1", None, "s"), "https://a/t?x=1&scope=s");
    }

    #[test]
    fn a_challenge_is_remembered_for_its_own_scope_only() {
        let bearer = |realm: &str| Challenge::Bearer { realm: realm.into(), service: None, scope: None };
        let mut state = AuthState::default();
        state.remember_challenge("repository:a:pull", bearer("http://realm-a/token"));
        assert_eq!(state.challenge("repository:a:pull"), Some(bearer("http://realm-a/token")));
        assert_eq!(state.challenge("repository:b:pull"), None, "another repository is asked, not assumed");
        state.forget_challenge("repository:a:pull");
        assert_eq!(state.challenge("repository:a:pull"), None);

        // A scope whose token expired loses its challenge on the sweep; a scope with a fresh token keeps both.
        let now = Instant::now();
        state.remember_challenge("repository:a:pull", bearer("http://realm-a/token"));
        state.remember_challenge("repository:b:pull", bearer("http://realm-b/token"));
        state.remember_token("repository:a:pull", Token { value: "a".into(), expires: now });
        state.remember_token("repository:b:pull", Token { value: "b".into(), expires: now + Duration::from_secs(60) });
        state.prune(now);
        assert_eq!(state.challenge("repository:a:pull"), None);
        assert!(state.token("repository:a:pull").is_none());
        assert_eq!(state.challenge("repository:b:pull"), Some(bearer("http://realm-b/token")));
        assert_eq!(state.token("repository:b:pull").map(|t| t.bearer()), Some("Bearer b".to_string()));
    }

    #[test]
    fn per_scope_state_stays_bounded() {
        let mut state = AuthState::default();
        for i in 0..MAX_SCOPES + 5 {
            state.remember_challenge(&format!("repository:r{i}:pull"), Challenge::Basic);
        }
        assert_eq!(state.challenges.len(), MAX_SCOPES);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = Credentials::Basic { user: "u".into(), password: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
        let t = Token { value: "sekrit-token".into(), expires: Instant::now() };
        assert!(!format!("{t:?}").contains("sekrit"));
        let basic = UserSecret { user: "u".into(), secret: "p".into() }.basic_header();
        assert_eq!(basic, "Basic dTpw");
    }
}
