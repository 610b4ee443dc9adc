//! The checks of the `registries` list: names (`host[:port]`, each once), scheme against `endpoint`, the
//! credentials (anonymous, basic with the password inline or from an environment variable read now, or a docker
//! credential helper; the Go server's `token: {provider: ecr}` becomes the `ecr-login` helper) and the TLS files.
//! They become the actors' `UpstreamSpec`, with its `Credentials` and `TlsOptions`. Passwords never appear in
//! messages.

use std::collections::HashMap;
use std::time::Duration;

use actors::reference::Namespace;
use actors::upstream::auth::Credentials;
use actors::upstream::tls::TlsOptions;
use actors::upstream::{Upstream, DEFAULT_MAX_CONCURRENT};
use actors::UpstreamSpec;

use super::error::ConfigError;
use super::error::{quoted, Check};
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
            return Err(check.invalid(&format!("{path}.name"), quoted(&name), reason));
        }
        out.push(registry);
    }
    Ok(out)
}

/// One entry, with its name as written (for the check that no name is listed twice).
fn registry(check: &mut Check<'_>, path: &str, entry: RegistryFile) -> Result<(String, UpstreamSpec), ConfigError> {
    let name = entry.name.get().ok_or_else(|| check.missing(&format!("{path}.name")))?;
    let bad_name = if name.contains("://") {
        Some("expected host[:port] without a scheme (use 'scheme' or 'endpoint')")
    } else if name.contains(['/', '@', '?', '#']) || name.chars().any(char::is_whitespace) {
        Some("expected host[:port] without path, credentials or spaces")
    } else {
        None
    };
    if let Some(reason) = bad_name {
        return Err(check.invalid(&format!("{path}.name"), quoted(&name), reason));
    }
    let endpoint = entry.endpoint.get();
    if let (Some(https), Some(url)) = (entry.scheme.get(), &endpoint) {
        if !url.starts_with(if https { "https://" } else { "http://" }) {
            let reason = "its scheme contradicts the 'scheme' key of this registry";
            return Err(check.invalid(&format!("{path}.endpoint"), quoted(url), reason));
        }
    }
    let credentials = auth(check, &format!("{path}.auth"), entry.auth)?;
    let tls = tls(check, &format!("{path}.tls"), entry.tls, &name)?;
    let namespace = name.parse::<Namespace>().map_err(|e| check.invalid(&format!("{path}.name"), name.clone(), e))?;
    let https = entry.scheme.get().unwrap_or(true);
    let base_url = endpoint.unwrap_or_else(|| Upstream::default_base_url(&namespace, https));
    let max_concurrent = entry.max_concurrent.get().unwrap_or(DEFAULT_MAX_CONCURRENT);
    Ok((name, UpstreamSpec { namespace, base_url, tls, credentials, max_concurrent, tag_ttl: entry.tag_ttl.get() }))
}

/// A helper chosen by `helper` or mapped from `token`, with the key path to name in messages.
struct HelperChoice {
    name: String,
    key: String,
    /// `token.expiry`, with its key path.
    expiry: Option<(Duration, String)>,
}

/// A registry's `auth` at key path `path`.
fn auth(check: &mut Check<'_>, path: &str, auth: Option<AuthFile>) -> Result<Credentials, ConfigError> {
    let Some(a) = auth else {
        return Ok(Credentials::Anonymous);
    };
    let k = |name: &str| format!("{path}.{name}");
    let (user, password, from_env) = (a.user.get(), a.password.get(), a.password_from_env.get());
    let helper = a.helper.get().map(|name| HelperChoice { name, key: k("helper"), expiry: None });
    let cache_time = a.helper_cache_time.get();
    let helper = match (helper, token(check, &k("token"), a.token)?) {
        (Some(helper), Some(token)) => {
            let reason = "keep only 'helper' (the ecr token provider is mapped to the ecr-login helper)";
            return Err(check.conflict(&helper.key, &token.key, reason));
        }
        (helper, token) => helper.or(token),
    };
    let basic = [("user", user.is_some()), ("password", password.is_some()), ("passwordFromEnv", from_env.is_some())];
    if let Some(helper) = helper {
        if let Some((name, _)) = basic.iter().find(|(_, set)| *set) {
            return Err(check.conflict(&helper.key, &k(name), "use either a credential helper or basic credentials"));
        }
        let cache_time = match (cache_time, helper.expiry) {
            (Some(_), Some((_, expiry_key))) => {
                let reason = "both set how long the helper's answer is reused; keep one";
                return Err(check.conflict(&k("helperCacheTime"), &expiry_key, reason));
            }
            (Some(time), None) | (None, Some((time, _))) => time,
            (None, None) => DEFAULT_HELPER_CACHE_TIME,
        };
        return Ok(Credentials::Helper { name: helper.name, cache_time });
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
            _ => Err(check.invalid(
                &k("passwordFromEnv"),
                quoted(&variable),
                format!("the environment variable {variable} is unset or empty"),
            )),
        },
        (Some(_), None, None) => {
            let note = format!(" (or set '{}')", k("passwordFromEnv"));
            Err(check.required_by(&k("password"), &k("user"), &note))
        }
    }
}

/// The Go server's `token` at key path `key`: `{provider: ecr}` becomes the `ecr-login` helper (with a warning); a
/// section whose values are all empty is nothing.
fn token(check: &mut Check<'_>, key: &str, token: Option<TokenFile>) -> Result<Option<HelperChoice>, ConfigError> {
    let Some(t) = token.filter(|t| t.provider.0.is_some() || t.provider_opts.0.is_some() || t.expiry.0.is_some())
    else {
        return Ok(None);
    };
    let provider = t.provider.get().ok_or_else(|| check.missing(&format!("{key}.provider")))?;
    if !provider.trim().eq_ignore_ascii_case("ecr") {
        return Err(check.invalid(
            &format!("{key}.provider"),
            quoted(&provider),
            "the only token provider is 'ecr' (mapped to the ecr-login helper); \
             for other registries use 'auth.helper' with a docker credential helper",
        ));
    }
    check.warnings.push(format!(
        "config key '{key}' in {} (provider ecr) is mapped to helper '{ECR_HELPER}': \
         install docker-credential-{ECR_HELPER} in the image (see docs/configuration.md)",
        check.file
    ));
    if t.provider_opts.0.is_some() {
        check.warnings.push(format!(
            "config key '{key}.providerOpts' in {} is ignored: the {ECR_HELPER} helper reads its AWS settings \
             (region, profile, credentials) from its environment (see docs/configuration.md)",
            check.file
        ));
    }
    let expiry = t.expiry.get().map(|time| (time, format!("{key}.expiry")));
    Ok(Some(HelperChoice { name: ECR_HELPER.to_string(), key: key.to_string(), expiry }))
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
    match (&cert, &key) {
        (Some(_), None) => return Err(check.required_by(&k("key"), &k("cert"), "")),
        (None, Some(_)) => return Err(check.required_by(&k("cert"), &k("key"), "")),
        _ => {}
    }
    for (name, file, what) in
        [("ca", &ca, "CA file"), ("cert", &cert, "client certificate file"), ("key", &key, "client key file")]
    {
        if let Some(file) = file {
            check.readable(&k(name), file, what)?;
        }
    }
    if insecure_skip_verify {
        check.warnings.push(format!(
            "TLS certificate verification is disabled for registry '{registry}' ({} in {})",
            k("insecureSkipVerify"),
            check.file
        ));
    }
    Ok(TlsOptions { ca_file: ca, ca_only, client_cert: cert.zip(key), insecure_skip_verify })
}
