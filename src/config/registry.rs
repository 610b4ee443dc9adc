//! The checks of the `registries` list: names (each once; their `host[:port]` form is a kind), scheme against
//! `endpoint`, the credentials (anonymous, basic with the password inline or from an environment variable read now,
//! or a docker credential helper; the Go server's `token: {provider: ecr}` becomes the `ecr-login` helper) and the
//! TLS files. They become the actors' `UpstreamSpec`, with its `Credentials` and `TlsOptions`. Passwords never
//! appear in messages.

use std::collections::HashMap;
use std::time::Duration;

use actors::access::AccessRule;
use actors::reference::Namespace;
use actors::upstream::auth::Credentials;
use actors::upstream::tls::TlsOptions;
use actors::upstream::{Upstream, DEFAULT_MAX_CONCURRENT};
use actors::UpstreamSpec;

use super::error::{Check, ConfigError};
use super::schema::{AuthFile, RegistryFile, TlsFile, TokenFile};

/// How long a credential helper's answer is reused when `helperCacheTime` is not set.
pub const DEFAULT_HELPER_CACHE_TIME: Duration = Duration::from_secs(5 * 60);
/// The helper that the Go server's `token: {provider: ecr}` becomes.
pub const ECR_HELPER: &str = "ecr-login";

/// Checks every entry, and that no name is listed twice.
pub fn registries(check: &mut Check<'_>, list: Vec<RegistryFile>) -> Result<Vec<UpstreamSpec>, ConfigError> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(list.len());
    for (index, entry) in list.into_iter().enumerate() {
        let path = format!("registries[{index}]");
        let (name, registry) = registry(check, &path, entry)?;
        if let Some(first) = seen.insert(name.clone(), index) {
            let reason = format!("duplicate registry name (first used by registries[{first}])");
            return Err(check.invalid(&format!("{path}.name"), format!("{name:?}"), reason));
        }
        out.push(registry);
    }
    Ok(out)
}

/// One entry, with its name as written (for the check that no name is listed twice).
fn registry(check: &mut Check<'_>, path: &str, entry: RegistryFile) -> Result<(String, UpstreamSpec), ConfigError> {
    let name = entry.name.get().ok_or_else(|| check.missing(&format!("{path}.name")))?;
    let endpoint = entry.endpoint.get();
    if let (Some(https), Some(url)) = (entry.scheme.get(), &endpoint) {
        if !url.starts_with(if https { "https://" } else { "http://" }) {
            let reason = "its scheme contradicts the 'scheme' key of this registry";
            return Err(check.invalid(&format!("{path}.endpoint"), format!("{url:?}"), reason));
        }
    }
    let credentials = auth(check, &format!("{path}.auth"), entry.auth)?;
    let tls = tls(check, &format!("{path}.tls"), entry.tls, &name)?;
    let namespace = name.parse::<Namespace>().map_err(|e| check.invalid(&format!("{path}.name"), name.clone(), e))?;
    let https = entry.scheme.get().unwrap_or(true);
    let base_url = endpoint.unwrap_or_else(|| Upstream::default_base_url(&namespace, https));
    let max_concurrent = entry.max_concurrent.get().unwrap_or(DEFAULT_MAX_CONCURRENT);
    let list = |key, items| check.list(&format!("{path}.{key}"), items);
    let access = AccessRule::for_registry(&namespace, list("allow", entry.allow)?, list("deny", entry.deny)?)
        .map_err(|e| check.invalid(&format!("{path}.{}", e.key()), format!("{:?}", e.pattern.as_str()), &e))?;
    let (tag_ttl, bandwidth, rate_limit_reserve) =
        (entry.tag_ttl.get(), entry.upstream_bandwidth.get().flatten(), entry.rate_limit_reserve.get());
    let spec = UpstreamSpec {
        namespace,
        base_url,
        tls,
        credentials,
        max_concurrent,
        tag_ttl,
        bandwidth,
        access,
        rate_limit_reserve,
    };
    Ok((name, spec))
}

/// A registry's `auth` at key path `path`.
fn auth(check: &mut Check<'_>, path: &str, auth: Option<AuthFile>) -> Result<Credentials, ConfigError> {
    let a = auth.unwrap_or_default();
    let k = |name: &str| format!("{path}.{name}");
    let (user, password, from_env) = (a.user.get(), a.password.get(), a.password_from_env.get());
    let cache_time = a.helper_cache_time.get();
    // The helper, the key that chose it, and the Go server's `token.expiry` when that key is `token`.
    let helper = match (a.helper.get(), token(check, &k("token"), a.token)?) {
        (Some(_), Some(_)) => {
            let reason = "keep only 'helper' (the ecr token provider is mapped to the ecr-login helper)";
            return Err(check.conflict(&k("helper"), &k("token"), reason));
        }
        (Some(name), None) => Some((name, k("helper"), None)),
        (None, Some(expiry)) => Some((ECR_HELPER.to_string(), k("token"), expiry)),
        (None, None) => None,
    };
    let basic = [("user", user.is_some()), ("password", password.is_some()), ("passwordFromEnv", from_env.is_some())];
    if let Some((name, key, expiry)) = helper {
        if let Some((basic_key, _)) = basic.iter().find(|(_, set)| *set) {
            return Err(check.conflict(&key, &k(basic_key), "use either a credential helper or basic credentials"));
        }
        if let (Some(_), Some(_)) = (cache_time, expiry) {
            let reason = "both set how long the helper's answer is reused; keep one";
            return Err(check.conflict(&k("helperCacheTime"), &k("token.expiry"), reason));
        }
        let cache_time = cache_time.or(expiry).unwrap_or(DEFAULT_HELPER_CACHE_TIME);
        return Ok(Credentials::Helper { name, cache_time });
    }
    if cache_time.is_some() {
        return Err(check.required_by(&k("helper"), &k("helperCacheTime"), ""));
    }
    if password.is_some() && from_env.is_some() {
        return Err(check.conflict(&k("password"), &k("passwordFromEnv"), "give the password one way only"));
    }
    let password_key = if password.is_some() { "password" } else { "passwordFromEnv" };
    match (user, password, from_env) {
        (None, None, None) => Ok(Credentials::Anonymous),
        (None, _, _) => Err(check.required_by(&k("user"), &k(password_key), "")),
        (Some(user), Some(password), _) => Ok(Credentials::Basic { user, password }),
        (Some(user), None, Some(variable)) => match (check.env)(&variable) {
            Some(password) if !password.is_empty() => Ok(Credentials::Basic { user, password }),
            _ => {
                let reason = format!("the environment variable {variable} is unset or empty");
                Err(check.invalid(&k("passwordFromEnv"), format!("{variable:?}"), reason))
            }
        },
        (Some(_), None, None) => {
            let note = format!(" (or set '{}')", k("passwordFromEnv"));
            Err(check.required_by(&k("password"), &k("user"), &note))
        }
    }
}

/// The Go server's `token` at key path `key`: `{provider: ecr}` becomes the `ecr-login` helper (with a warning),
/// returned as `Some` with the `expiry` to use as its cache time; a section whose values are all empty is nothing.
fn token(check: &mut Check<'_>, key: &str, token: Option<TokenFile>) -> Result<Option<Option<Duration>>, ConfigError> {
    let Some(t) = token.filter(|t| t.provider.0.is_some() || t.provider_opts.0.is_some() || t.expiry.0.is_some())
    else {
        return Ok(None);
    };
    let provider = t.provider.get().ok_or_else(|| check.missing(&format!("{key}.provider")))?;
    if !provider.trim().eq_ignore_ascii_case("ecr") {
        let reason = "the only token provider is 'ecr' (mapped to the ecr-login helper); \
                      for other registries use 'auth.helper' with a docker credential helper";
        return Err(check.invalid(&format!("{key}.provider"), format!("{provider:?}"), reason));
    }
    let file = check.file;
    check.warnings.push(format!(
        "config key '{key}' in {file} (provider ecr) is mapped to helper '{ECR_HELPER}': \
         install docker-credential-{ECR_HELPER} in the image (see docs/configuration.md)"
    ));
    if t.provider_opts.0.is_some() {
        check.warnings.push(format!(
            "config key '{key}.providerOpts' in {file} is ignored: the {ECR_HELPER} helper reads its AWS settings \
             (region, profile, credentials) from its environment (see docs/configuration.md)"
        ));
    }
    Ok(Some(t.expiry.get()))
}

/// A registry's `tls` at key path `path`; `registry` names it in the warning for `insecureSkipVerify`. The files
/// must be readable now; parsing them is the TLS code's job.
fn tls(check: &mut Check<'_>, path: &str, tls: Option<TlsFile>, registry: &str) -> Result<TlsOptions, ConfigError> {
    let t = tls.unwrap_or_default();
    let k = |name: &str| format!("{path}.{name}");
    let (ca, cert, key) = (t.ca.get(), t.cert.get(), t.key.get());
    let ca_only = t.ca_only.get().unwrap_or(false);
    let insecure_skip_verify = t.insecure_skip_verify.get().unwrap_or(false);
    if ca_only && ca.is_none() {
        return Err(check.required_by(&k("ca"), &k("caOnly"), ""));
    }
    check.together((&k("cert"), cert.is_some()), (&k("key"), key.is_some()))?;
    check.readable(&k("ca"), ca.as_deref(), "CA file")?;
    check.readable(&k("cert"), cert.as_deref(), "client certificate file")?;
    check.readable(&k("key"), key.as_deref(), "client key file")?;
    if insecure_skip_verify {
        let (key, file) = (k("insecureSkipVerify"), check.file);
        let warning = format!("TLS certificate verification is disabled for registry '{registry}' ({key} in {file})");
        check.warnings.push(warning);
    }
    Ok(TlsOptions { ca_file: ca, ca_only, client_cert: cert.zip(key), insecure_skip_verify })
}
