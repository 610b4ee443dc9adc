//! The `registries` list of the config file: one entry per upstream registry, with its name
//! check, scheme, optional `endpoint` URL, concurrency limit, credentials (`auth.rs`) and TLS
//! options (`tls.rs`).

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv6Addr;

use serde_yaml::Value;

use super::auth::{parse_auth, AuthSettings, EnvLookup};
use super::error::ConfigError;
use super::tls::{parse_tls, TlsSettings};
use super::values::Scheme;
use super::yaml::Walker;

const REGISTRY_KEYS: &[&str] = &["name", "description", "scheme", "endpoint", "maxConcurrent", "tagTtl", "auth", "tls"];

/// Concurrent upstream fetches per registry when `maxConcurrent` is not set.
pub const DEFAULT_MAX_CONCURRENT: usize = 32;
/// The largest accepted `maxConcurrent`.
pub const MAX_MAX_CONCURRENT: usize = 1024;

/// How to reach one upstream registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    /// `host[:port]`, matched exactly against the namespace of a request.
    pub name: String,
    /// Scheme used with `name` when no `endpoint` is given.
    pub scheme: Scheme,
    /// URL to dial instead of `scheme://name`, e.g. `http://127.0.0.1:5000`; scheme lower-cased,
    /// no trailing slash, no query or fragment.
    pub endpoint: Option<String>,
    /// At most this many upstream fetches to this registry at once (`maxConcurrent`, 1..=1024).
    pub max_concurrent: usize,
    /// This registry's `tagTtl`, overriding the top-level one.
    pub tag_ttl: Option<actors::freshness::TagTtl>,
    /// Credentials presented to the registry and its token realm.
    pub auth: AuthSettings,
    pub tls: TlsSettings,
}

impl RegistrySettings {
    /// The base URL to dial, without a trailing slash: `endpoint`, else `scheme://name`.
    pub fn base_url(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            // Docker Hub's registry API lives at registry-1.docker.io, not at docker.io.
            None if matches!(self.name.as_str(), "docker.io" | "index.docker.io") => {
                format!("{}://registry-1.docker.io", self.scheme)
            }
            None => format!("{}://{}", self.scheme, self.name),
        }
    }
}

impl fmt::Display for RegistrySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.name, self.base_url())?;
        if self.auth != AuthSettings::Anonymous {
            write!(f, " (auth: {})", self.auth)?;
        }
        if self.tls.is_mutual() {
            f.write_str(" (mTLS)")?;
        }
        if let Some(ca) = &self.tls.ca {
            write!(f, " (ca {})", ca.display())?;
        }
        if self.tls.ca_only {
            f.write_str(" (caOnly)")?;
        }
        if self.max_concurrent != DEFAULT_MAX_CONCURRENT {
            write!(f, " (maxConcurrent {})", self.max_concurrent)?;
        }
        if self.tls.insecure_skip_verify {
            f.write_str(" (TLS verification disabled)")?;
        }
        Ok(())
    }
}

/// Reads the `registries` value (absent or null = empty list). `env` resolves `auth.passwordFromEnv`.
pub fn parse_registries(
    walker: &mut Walker,
    key: &str,
    value: Option<&Value>,
    env: &EnvLookup,
) -> Result<Vec<RegistrySettings>, ConfigError> {
    let items = match value {
        None => return Ok(Vec::new()),
        Some(Value::Sequence(items)) => items,
        Some(other) => return Err(walker.invalid(key, other, "expected a list of registries")),
    };
    let mut registries = Vec::with_capacity(items.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        let path = format!("{key}[{index}]");
        let registry = parse_registry(walker, &path, item, env)?;
        if let Some(first) = seen.insert(registry.name.clone(), index) {
            return Err(walker.invalid(
                &format!("{path}.name"),
                &Value::String(registry.name),
                format!("duplicate registry name (first used by {key}[{first}])"),
            ));
        }
        registries.push(registry);
    }
    Ok(registries)
}

fn parse_registry(
    walker: &mut Walker,
    path: &str,
    value: &Value,
    env: &EnvLookup,
) -> Result<RegistrySettings, ConfigError> {
    let section = walker.section(path, value, REGISTRY_KEYS)?;
    let name = walker.string(&section, "name")?.ok_or_else(|| walker.missing(&section.key("name")))?;
    if let Err(reason) = check_name(&name) {
        return Err(walker.invalid(&section.key("name"), &Value::String(name), reason));
    }
    let scheme_given = walker.string(&section, "scheme")?;
    let scheme = match &scheme_given {
        None => Scheme::Https,
        Some(text) => Scheme::parse(text).ok_or_else(|| {
            walker.invalid(&section.key("scheme"), &Value::String(text.clone()), "expected http or https")
        })?,
    };
    let endpoint = match walker.string(&section, "endpoint")? {
        None => None,
        Some(text) => {
            let bad = |reason: &str| walker.invalid(&section.key("endpoint"), &Value::String(text.clone()), reason);
            let url = parse_endpoint(&text).map_err(bad)?;
            if scheme_given.is_some() && !url.starts_with(&format!("{scheme}://")) {
                return Err(bad("its scheme contradicts the 'scheme' key of this registry"));
            }
            Some(url)
        }
    };
    let max_concurrent = walker
        .integer(&section, "maxConcurrent", 1..=MAX_MAX_CONCURRENT as u64)?
        .map_or(DEFAULT_MAX_CONCURRENT, |n| n as usize);
    let tag_ttl = walker.ttl(&section, "tagTtl")?;
    let auth = match section.get("auth") {
        None => AuthSettings::Anonymous,
        Some(auth) => parse_auth(walker, &section.key("auth"), auth, env)?,
    };
    let tls = match section.get("tls") {
        None => TlsSettings::default(),
        Some(tls) => parse_tls(walker, &section.key("tls"), tls, &name)?,
    };
    Ok(RegistrySettings { name, scheme, endpoint, max_concurrent, tag_ttl, auth, tls })
}

/// A registry name is `host[:port]`: no scheme, path, credentials or spaces.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.contains("://") {
        return Err("expected host[:port] without a scheme (use 'scheme' or 'endpoint')");
    }
    if name.contains(['/', '@', '?', '#']) || name.chars().any(char::is_whitespace) {
        return Err("expected host[:port] without path, credentials or spaces");
    }
    Ok(())
}

/// Validates an `endpoint` URL: absolute http(s), a host, an optional port and path, no
/// credentials, query or fragment. Returns it with a lower-case scheme and no trailing slash.
pub(super) fn parse_endpoint(raw: &str) -> Result<String, &'static str> {
    let (scheme, rest) = raw.split_once("://").ok_or("expected an absolute URL such as http://127.0.0.1:5000")?;
    let scheme = Scheme::parse(scheme).ok_or("the URL scheme must be http or https")?;
    if raw.chars().any(char::is_whitespace) {
        return Err("a URL must not contain spaces");
    }
    if rest.contains(['?', '#']) {
        return Err("the URL must not have a query or fragment");
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err("credentials in the URL are not supported");
    }
    let (host, port) = split_host_port(authority)?;
    if host.is_empty() {
        return Err("the URL has no host");
    }
    if !host.starts_with('[') && !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) {
        return Err("the URL host has invalid characters");
    }
    if let Some(port) = port {
        if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
            return Err("the URL port must be a number from 1 to 65535");
        }
    }
    Ok(format!("{scheme}://{authority}{}", path.trim_end_matches('/')))
}

/// Splits `host[:port]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(after_bracket) = authority.strip_prefix('[') {
        let (v6, tail) = after_bracket.split_once(']').ok_or("the URL has an unclosed '[' in its host")?;
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err("the URL host is not a valid IPv6 address");
        }
        let host = &authority[..v6.len() + 2];
        return match tail {
            "" => Ok((host, None)),
            _ => match tail.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("unexpected text after the IPv6 host"),
            },
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::secret::Secret;

    fn parse(text: &str) -> (Result<Vec<RegistrySettings>, ConfigError>, Vec<String>) {
        let value: Value = serde_yaml::from_str(text).expect("test YAML parses");
        let mut walker = Walker::new("cfg.yaml");
        let result = parse_registries(&mut walker, "registries", Some(&value), &|_| None);
        (result, walker.warnings)
    }

    fn error(text: &str) -> String {
        match parse(text).0 {
            Ok(list) => panic!("expected an error, got {list:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn full_entry() {
        let (result, warnings) = parse(
            "- name: localhost:5000\n  scheme: HTTP\n  endpoint: http://127.0.0.1:5000/\n  \
             description: local\n  tls: {insecureSkipVerify: false}\n",
        );
        let list = result.expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(list[0].scheme, Scheme::Http);
        assert_eq!(list[0].endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(list[0].base_url(), "http://127.0.0.1:5000");
    }

    #[test]
    fn endpoint_forms() {
        assert_eq!(parse_endpoint("HTTPS://[::1]:8443/prefix/").as_deref(), Ok("https://[::1]:8443/prefix"));
        assert!(parse_endpoint("127.0.0.1:5000").is_err());
        assert!(parse_endpoint("ftp://x").is_err());
        assert!(parse_endpoint("http://").is_err());
        assert!(parse_endpoint("http://h/?q=1").is_err());
        assert!(parse_endpoint("http://h/#f").is_err());
        assert!(parse_endpoint("http://u:p@h").is_err());
        assert!(parse_endpoint("http://h:0").is_err());
        assert!(parse_endpoint("http://h:99999").is_err());
        assert!(parse_endpoint("http://[zz]:1").is_err());
    }

    #[test]
    fn invalid_values_name_their_key() {
        let msg = error("- name: a.io\n  shceme: http\n  scheme: ftp\n");
        assert!(msg.contains("'registries[0].scheme'") && msg.contains("\"ftp\""), "{msg}");
        let msg = error("- name: a.io\n- name: a.io\n");
        assert!(msg.contains("'registries[1].name'") && msg.contains("duplicate"), "{msg}");
        let msg = error("- name: a.io\n  endpoint: 'a.io:5000'\n");
        assert!(msg.contains("'registries[0].endpoint'") && msg.contains("\"a.io:5000\""));
        let msg = error("- scheme: http\n");
        assert_eq!(msg, "config key 'registries[0].name' (in cfg.yaml) is required");
        let msg = error("- name: https://a.io\n");
        assert!(msg.contains("'registries[0].name'"), "{msg}");
        let msg = error("- name: a.io\n  scheme: https\n  endpoint: http://b\n");
        assert!(msg.contains("contradicts"), "{msg}");
        let msg = error("- name: a.io\n  tls: {ca: /nonexistent/ca.pem}\n");
        assert!(msg.contains("'registries[0].tls.ca'") && msg.contains("No such file"));
        let msg = error("- name: a.io\n  tls: {insecureSkipVerify: 1}\n");
        assert!(msg.contains("'registries[0].tls.insecureSkipVerify'"), "{msg}");
        let msg = error("name: a.io\n");
        assert!(msg.contains("'registries'") && msg.contains("expected a list"));
    }

    #[test]
    fn unknown_key_warns() {
        let (result, warnings) = parse("- name: a.io\n  shceme: http\n");
        assert!(result.is_ok());
        assert_eq!(warnings, vec!["unknown key 'registries[0].shceme' in cfg.yaml, ignored".to_string()]);
    }

    #[test]
    fn defaults_of_the_new_keys() {
        let (result, _) = parse("- name: a.io\n");
        let registry = &result.expect("valid")[0];
        assert_eq!(registry.max_concurrent, DEFAULT_MAX_CONCURRENT);
        assert_eq!(registry.auth, AuthSettings::Anonymous);
        assert_eq!(registry.tls, TlsSettings::default());
    }

    #[test]
    fn max_concurrent_range() {
        for (text, expected) in [("1", 1), ("8", 8), ("1024", 1024)] {
            let (result, _) = parse(&format!("- name: a.io\n  maxConcurrent: {text}\n"));
            assert_eq!(result.expect("valid")[0].max_concurrent, expected);
        }
        for text in ["0", "1025", "-1", "'8'", "2.5"] {
            let msg = error(&format!("- name: a.io\n  maxConcurrent: {text}\n"));
            assert!(
                msg.starts_with("config key 'registries[0].maxConcurrent' (in cfg.yaml) has an invalid value ")
                    && msg.ends_with("expected a whole number from 1 to 1024"),
                "{msg}"
            );
        }
    }

    #[test]
    fn auth_and_tls_errors_name_the_entry() {
        let msg = error("- name: a.io\n- name: b.io\n  auth: {user: u}\n");
        assert!(msg.starts_with("config key 'registries[1].auth.password'"), "{msg}");
        let msg = error("- name: a.io\n  tls: {cert: /c.pem}\n");
        assert!(msg.starts_with("config key 'registries[0].tls.key'"), "{msg}");
    }

    #[test]
    fn display_shows_auth_and_tls_but_no_secret() {
        let base = |auth, tls| RegistrySettings {
            name: "my-registry:5000".to_string(),
            scheme: Scheme::Https,
            endpoint: Some("https://10.0.0.5:5000".to_string()),
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            tag_ttl: None,
            auth,
            tls,
        };
        let anonymous = base(AuthSettings::Anonymous, TlsSettings::default());
        assert_eq!(anonymous.to_string(), "my-registry:5000 -> https://10.0.0.5:5000");
        let mutual = TlsSettings {
            ca: Some(PathBuf::from("/my/ca.crt")),
            ca_only: true,
            cert: Some(PathBuf::from("/my/client.cert")),
            key: Some(PathBuf::from("/my/client.key")),
            insecure_skip_verify: false,
        };
        let password = Secret::new("thepass");
        let mut basic = base(AuthSettings::Basic { user: "theuser".to_string(), password }, mutual);
        basic.max_concurrent = 8;
        assert_eq!(
            basic.to_string(),
            "my-registry:5000 -> https://10.0.0.5:5000 (auth: basic (user theuser)) (mTLS) (ca /my/ca.crt) (caOnly) \
             (maxConcurrent 8)"
        );
        assert!(!format!("{basic:?}").contains("thepass"));
        let helper = AuthSettings::Helper { name: "ecr-login".to_string(), cache_time: Duration::from_secs(300) };
        assert_eq!(
            base(helper, TlsSettings::default()).to_string(),
            "my-registry:5000 -> https://10.0.0.5:5000 (auth: helper ecr-login)"
        );
    }

    #[test]
    fn default_valued_auth_and_tls_are_accepted() {
        let (result, warnings) = parse(
            "- name: a.io\n  auth: {user: '', password: '', passwordFromEnv: '', \
             token: {provider: '', providerOpts: '', expiry: ''}}\n  \
             tls: {ca: '', cert: '', key: '', insecureSkipVerify: false}\n",
        );
        let registry = &result.expect("accepted")[0];
        assert_eq!(registry.tls, TlsSettings::default());
        assert_eq!(registry.auth, AuthSettings::Anonymous);
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
