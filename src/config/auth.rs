//! The `auth` section of a `registries` entry: anonymous, basic credentials (the password inline or from an
//! environment variable read at load time), or a docker credential helper. The Go server's `token` key with the
//! `ecr` provider is mapped to the `ecr-login` helper. Passwords never appear in messages: values of secret keys
//! are shown as `(not shown)`.

use std::fmt;
use std::time::Duration;

use serde_yaml::Value;

use super::error::ConfigError;
use super::secret::Secret;
use super::yaml::{is_default, Section, Walker};

const AUTH_KEYS: &[&str] = &["user", "password", "passwordFromEnv", "helper", "helperCacheTime", "token"];
const TOKEN_KEYS: &[&str] = &["provider", "providerOpts", "expiry"];

/// How long a credential helper's answer is reused when `helperCacheTime` is not set.
pub const DEFAULT_HELPER_CACHE_TIME: Duration = Duration::from_secs(5 * 60);
/// The helper that the Go server's `token: {provider: ecr}` becomes.
pub const ECR_HELPER: &str = "ecr-login";

/// Looks up an environment variable; `load` passes the process environment, tests a map.
pub type EnvLookup = dyn Fn(&str) -> Option<String>;

/// The credentials presented to one upstream registry (and to its token realm).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AuthSettings {
    /// No credentials; bearer tokens are still fetched anonymously when the registry asks for them.
    #[default]
    Anonymous,
    /// Basic credentials (`user` with `password` or `passwordFromEnv`).
    Basic { user: String, password: Secret },
    /// Run `docker-credential-<name> get` (docker credential-helper protocol) and reuse its answer for
    /// `cache_time`.
    Helper { name: String, cache_time: Duration },
}

/// `basic (user NAME)`, `helper NAME` or `anonymous`; never the password.
impl fmt::Display for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthSettings::Anonymous => f.write_str("anonymous"),
            AuthSettings::Basic { user, .. } => write!(f, "basic (user {user})"),
            AuthSettings::Helper { name, .. } => write!(f, "helper {name}"),
        }
    }
}

/// A helper chosen by `helper` or mapped from `token`, with the key path to name in messages.
struct HelperChoice {
    name: String,
    key: String,
    /// `token.expiry`, with its key path.
    expiry: Option<(Duration, String)>,
}

/// Reads a registry's `auth` value at key path `path`. `env` resolves `passwordFromEnv`.
pub fn parse_auth(
    walker: &mut Walker,
    path: &str,
    value: &Value,
    env: &EnvLookup,
) -> Result<AuthSettings, ConfigError> {
    if !matches!(value, Value::Null | Value::Mapping(_)) {
        // `auth: user:password` must not be echoed.
        return Err(walker.invalid_hidden(path, "expected a mapping of keys such as 'user' and 'passwordFromEnv'"));
    }
    let section = walker.section(path, value, AUTH_KEYS)?;
    let user = walker.string(&section, "user")?;
    if let Some(user) = &user {
        if user.contains(':') || user.chars().any(char::is_control) {
            // Not echoed: this may be a pasted `user:password`.
            return Err(
                walker.invalid_hidden(&section.key("user"), "a user name must not contain ':' or control characters")
            );
        }
    }
    let password = secret_string(walker, &section, "password")?;
    let from_env = walker.string(&section, "passwordFromEnv")?;
    let helper = match walker.string(&section, "helper")? {
        None => None,
        Some(name) => {
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
                return Err(walker.invalid(
                    &section.key("helper"),
                    &Value::String(name),
                    "expected a helper name such as ecr-login (letters, digits, '.', '_', '-'); \
                     the mirror runs docker-credential-<name>",
                ));
            }
            Some(HelperChoice { name, key: section.key("helper"), expiry: None })
        }
    };
    let cache_time = walker.duration(&section, "helperCacheTime")?;
    let helper = match (helper, parse_token(walker, &section)?) {
        (Some(helper), Some(token)) => {
            return Err(walker.conflict(
                &helper.key,
                &token.key,
                "keep only 'helper' (the ecr token provider is mapped to the ecr-login helper)",
            ))
        }
        (helper, token) => helper.or(token),
    };
    let basic_keys =
        [("user", user.is_some()), ("password", password.is_some()), ("passwordFromEnv", from_env.is_some())];
    if let Some(helper) = helper {
        if let Some((name, _)) = basic_keys.iter().find(|(_, set)| *set) {
            return Err(walker.conflict(
                &helper.key,
                &section.key(name),
                "use either a credential helper or basic credentials",
            ));
        }
        let cache_time = match (cache_time, helper.expiry) {
            (Some(_), Some((_, expiry_key))) => {
                return Err(walker.conflict(
                    &section.key("helperCacheTime"),
                    &expiry_key,
                    "both set how long the helper's answer is reused; keep one",
                ))
            }
            (Some(time), None) | (None, Some((time, _))) => time,
            (None, None) => DEFAULT_HELPER_CACHE_TIME,
        };
        return Ok(AuthSettings::Helper { name: helper.name, cache_time });
    }
    if cache_time.is_some() {
        return Err(walker.required_by(&section.key("helper"), &section.key("helperCacheTime"), ""));
    }
    if password.is_some() && from_env.is_some() {
        return Err(walker.conflict(
            &section.key("password"),
            &section.key("passwordFromEnv"),
            "give the password one way only",
        ));
    }
    let password_key = if password.is_some() { "password" } else { "passwordFromEnv" };
    match user {
        None if password.is_none() && from_env.is_none() => Ok(AuthSettings::Anonymous),
        None => Err(walker.required_by(&section.key("user"), &section.key(password_key), "")),
        Some(user) => {
            let password = match (password, from_env) {
                (Some(password), _) => password,
                (None, Some(variable)) => password_from_env(walker, &section, &variable, env)?,
                (None, None) => {
                    let note = format!(" (or set '{}')", section.key("passwordFromEnv"));
                    return Err(walker.required_by(&section.key("password"), &section.key("user"), &note));
                }
            };
            Ok(AuthSettings::Basic { user, password })
        }
    }
}

/// A string whose value must not be echoed; an empty string counts as absent.
fn secret_string(walker: &Walker, section: &Section<'_>, name: &str) -> Result<Option<Secret>, ConfigError> {
    match section.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(Secret::new(s.as_str()))),
        Some(_) => Err(walker.invalid_hidden(&section.key(name), "expected a string (put the value in quotes)")),
    }
}

/// The password held by environment variable `variable`, which must be set and not empty.
fn password_from_env(
    walker: &Walker,
    section: &Section<'_>,
    variable: &str,
    env: &EnvLookup,
) -> Result<Secret, ConfigError> {
    match env(variable) {
        Some(password) if !password.is_empty() => Ok(Secret::new(password)),
        _ => Err(walker.invalid(
            &section.key("passwordFromEnv"),
            &Value::String(variable.to_string()),
            format!("the environment variable {variable} is unset or empty"),
        )),
    }
}

/// The Go server's `token` key: `{provider: ecr}` becomes the `ecr-login` helper (with a warning), an empty section
/// is nothing, anything else is an error.
fn parse_token(walker: &mut Walker, auth: &Section<'_>) -> Result<Option<HelperChoice>, ConfigError> {
    let Some(value) = auth.get("token") else {
        return Ok(None);
    };
    let key = auth.key("token");
    if !matches!(value, Value::Mapping(_)) {
        // `token: <a literal token>` must not be echoed.
        return Err(walker.invalid_hidden(&key, "expected a mapping such as {provider: ecr}; or use 'auth.helper'"));
    }
    let token = walker.section(&key, value, TOKEN_KEYS)?;
    if is_default(value) {
        return Ok(None);
    }
    let Some(provider) = walker.string(&token, "provider")? else {
        return Err(walker.missing(&token.key("provider")));
    };
    if !provider.trim().eq_ignore_ascii_case("ecr") {
        return Err(walker.invalid(
            &token.key("provider"),
            &Value::String(provider),
            "the only token provider is 'ecr' (mapped to the ecr-login helper); \
             for other registries use 'auth.helper' with a docker credential helper",
        ));
    }
    // The Go default config has `expiry: ""`.
    let expiry = match token.get("expiry") {
        Some(Value::String(s)) if s.is_empty() => None,
        _ => walker.duration(&token, "expiry")?.map(|time| (time, token.key("expiry"))),
    };
    let message = format!(
        "config key '{key}' in {} (provider ecr) is mapped to helper '{ECR_HELPER}': \
         install docker-credential-{ECR_HELPER} in the image (see docs/configuration.md)",
        walker.file
    );
    walker.warn(message);
    if walker.string(&token, "providerOpts")?.is_some() {
        let message = format!(
            "config key '{}' in {} is ignored: the {ECR_HELPER} helper reads its AWS settings (region, profile, \
             credentials) from its environment (see docs/configuration.md)",
            token.key("providerOpts"),
            walker.file
        );
        walker.warn(message);
    }
    Ok(Some(HelperChoice { name: ECR_HELPER.to_string(), key, expiry }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "s3cr3t-Pa55";

    fn env(name: &str) -> Option<String> {
        match name {
            "REG_PASSWORD" => Some(PASSWORD.to_string()),
            "EMPTY_VAR" => Some(String::new()),
            _ => None,
        }
    }

    fn parse(yaml: &str) -> (Result<AuthSettings, ConfigError>, Vec<String>) {
        let value: Value = serde_yaml::from_str(yaml).expect("test YAML parses");
        let mut walker = Walker::new("cfg.yaml");
        let result = parse_auth(&mut walker, "registries[0].auth", &value, &env);
        (result, walker.warnings)
    }

    fn load(yaml: &str) -> AuthSettings {
        let (result, warnings) = parse(yaml);
        assert!(warnings.is_empty(), "{warnings:?}");
        result.expect("valid")
    }

    /// The error message, checked to be one line without the password.
    fn error(yaml: &str) -> String {
        match parse(yaml).0 {
            Ok(auth) => panic!("expected an error, got {auth:?}"),
            Err(err) => {
                let msg = err.to_string();
                assert!(!msg.contains(PASSWORD) && !msg.contains('\n'), "{msg}");
                msg
            }
        }
    }

    fn basic(user: &str) -> AuthSettings {
        AuthSettings::Basic { user: user.to_string(), password: Secret::new(PASSWORD) }
    }

    #[test]
    fn anonymous_forms() {
        assert_eq!(load("~"), AuthSettings::Anonymous);
        assert_eq!(load("{}"), AuthSettings::Anonymous);
        assert_eq!(
            load(
                "{user: '', password: '', passwordFromEnv: , helper: '', \
                 token: {provider: '', providerOpts: '', expiry: ''}}"
            ),
            AuthSettings::Anonymous
        );
    }

    #[test]
    fn basic_with_inline_password() {
        assert_eq!(load(&format!("{{user: theuser, password: '{PASSWORD}'}}")), basic("theuser"));
    }

    #[test]
    fn basic_with_password_from_env() {
        assert_eq!(load("{user: theuser, passwordFromEnv: REG_PASSWORD, password: ''}"), basic("theuser"));
        for variable in ["UNSET_VAR", "EMPTY_VAR"] {
            assert_eq!(
                error(&format!("{{user: u, passwordFromEnv: {variable}}}")),
                format!(
                    "config key 'registries[0].auth.passwordFromEnv' (in cfg.yaml) has an invalid value \
                     \"{variable}\": the environment variable {variable} is unset or empty"
                )
            );
        }
    }

    #[test]
    fn user_and_password_go_together() {
        assert_eq!(
            error("{user: theuser}"),
            "config key 'registries[0].auth.password' (in cfg.yaml) is required when 'registries[0].auth.user' is \
             set (or set 'registries[0].auth.passwordFromEnv')"
        );
        assert_eq!(
            error(&format!("{{password: {PASSWORD}}}")),
            "config key 'registries[0].auth.user' (in cfg.yaml) is required when 'registries[0].auth.password' is set"
        );
        // The missing user is reported before the unset variable.
        assert_eq!(
            error("{passwordFromEnv: UNSET_VAR}"),
            "config key 'registries[0].auth.user' (in cfg.yaml) is required when \
             'registries[0].auth.passwordFromEnv' is set"
        );
        assert_eq!(
            error(&format!("{{user: u, password: {PASSWORD}, passwordFromEnv: REG_PASSWORD}}")),
            "config keys 'registries[0].auth.password' and 'registries[0].auth.passwordFromEnv' (in cfg.yaml) \
             cannot be used together: give the password one way only"
        );
    }

    #[test]
    fn secret_values_are_never_echoed() {
        for yaml in ["{user: u, password: 12345}", "{user: u, password: [a]}", "'u:12345'", "{token: 12345}"] {
            let msg = error(yaml);
            assert!(msg.contains("(not shown)") && !msg.contains("12345"), "{msg}");
        }
        let msg = error("{user: 'u:12345', password: x}");
        assert_eq!(
            msg,
            "config key 'registries[0].auth.user' (in cfg.yaml) has an invalid value (not shown): a user name must \
             not contain ':' or control characters"
        );
    }

    #[test]
    fn helper_with_default_and_given_cache_time() {
        assert_eq!(
            load("{helper: ecr-login}"),
            AuthSettings::Helper { name: "ecr-login".to_string(), cache_time: DEFAULT_HELPER_CACHE_TIME }
        );
        assert_eq!(
            load("{helper: gcr, helperCacheTime: 30s, user: ''}"),
            AuthSettings::Helper { name: "gcr".to_string(), cache_time: Duration::from_secs(30) }
        );
        assert_eq!(load("{helper: acr-env}").to_string(), "helper acr-env");
        assert_eq!(basic("theuser").to_string(), "basic (user theuser)");
    }

    #[test]
    fn helper_errors() {
        assert_eq!(
            error("{helper: ecr-login, user: u, passwordFromEnv: REG_PASSWORD}"),
            "config keys 'registries[0].auth.helper' and 'registries[0].auth.user' (in cfg.yaml) cannot be used \
             together: use either a credential helper or basic credentials"
        );
        let msg = error(&format!("{{helper: gcr, password: {PASSWORD}}}"));
        assert!(msg.contains("'registries[0].auth.helper' and 'registries[0].auth.password'"), "{msg}");
        let msg = error("{helper: ../bin/sh}");
        assert!(msg.starts_with("config key 'registries[0].auth.helper' (in cfg.yaml) has an invalid value"), "{msg}");
        let msg = error("{helper: gcr, helperCacheTime: 0s}");
        assert!(msg.contains("'registries[0].auth.helperCacheTime'") && msg.contains("greater than zero"), "{msg}");
        assert_eq!(
            error("{helperCacheTime: 5m}"),
            "config key 'registries[0].auth.helper' (in cfg.yaml) is required when \
             'registries[0].auth.helperCacheTime' is set"
        );
    }

    #[test]
    fn ecr_token_maps_to_the_ecr_login_helper() {
        let (result, warnings) = parse("{token: {provider: ecr}}");
        assert_eq!(
            result.expect("valid"),
            AuthSettings::Helper { name: "ecr-login".to_string(), cache_time: DEFAULT_HELPER_CACHE_TIME }
        );
        assert_eq!(
            warnings,
            ["config key 'registries[0].auth.token' in cfg.yaml (provider ecr) is mapped to helper 'ecr-login': \
              install docker-credential-ecr-login in the image (see docs/configuration.md)"]
        );

        let (result, warnings) =
            parse("{token: {provider: ECR, providerOpts: 'profile=default,region=us-south-1', expiry: 6h}}");
        assert_eq!(
            result.expect("valid"),
            AuthSettings::Helper { name: "ecr-login".to_string(), cache_time: Duration::from_secs(6 * 3600) }
        );
        assert_eq!(warnings.len(), 2);
        assert!(warnings[1].starts_with("config key 'registries[0].auth.token.providerOpts' in cfg.yaml is ignored"));
        assert!(!warnings[1].contains("us-south-1"));

        let (result, _) = parse("{token: {provider: ecr, expiry: ''}, helperCacheTime: 1m}");
        assert_eq!(
            result.expect("valid"),
            AuthSettings::Helper { name: "ecr-login".to_string(), cache_time: Duration::from_secs(60) }
        );
    }

    #[test]
    fn token_errors() {
        assert_eq!(
            error("{token: {provider: gcp}}"),
            "config key 'registries[0].auth.token.provider' (in cfg.yaml) has an invalid value \"gcp\": the only \
             token provider is 'ecr' (mapped to the ecr-login helper); for other registries use 'auth.helper' with \
             a docker credential helper"
        );
        assert_eq!(
            error("{token: {expiry: 6h}}"),
            "config key 'registries[0].auth.token.provider' (in cfg.yaml) is required"
        );
        let msg = error("{token: {provider: ecr, expiry: soon}}");
        assert!(msg.contains("'registries[0].auth.token.expiry'") && msg.contains("\"soon\""), "{msg}");
        let msg = error("{token: {provider: ecr}, helper: ecr-login}");
        assert!(msg.contains("'registries[0].auth.helper' and 'registries[0].auth.token'"), "{msg}");
        let msg = error("{token: {provider: ecr}, user: u, password: p}");
        assert!(msg.contains("'registries[0].auth.token' and 'registries[0].auth.user'"), "{msg}");
        let msg = error("{token: {provider: ecr, expiry: 1h}, helperCacheTime: 1m}");
        assert!(msg.contains("'registries[0].auth.helperCacheTime' and 'registries[0].auth.token.expiry'"), "{msg}");
    }

    #[test]
    fn debug_hides_the_password() {
        let text = format!("{:?} {:#?} {}", basic("theuser"), basic("theuser"), basic("theuser"));
        assert!(!text.contains(PASSWORD) && text.contains("***"), "{text}");
    }
}
