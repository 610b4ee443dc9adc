//! The config file schema (the Go server's `registry-config.yaml`, camelCase keys, and ours): parses
//! the YAML text into the values it sets, warns about unknown keys and keys without effect, and
//! rejects Go server features this build does not implement yet when they are switched on.

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::admin::{parse_admin, AdminSettings};
use super::auth::EnvLookup;
use super::error::ConfigError;
use super::life::{parse_life, LifeSettings};
use super::registry::{parse_registries, RegistrySettings};
use super::server_tls::{parse_server_tls, ServerTls};
use super::storage::{parse_cluster, parse_storage, ClusterConfig, StorageSettings};
use super::values::{parse_host, LogFormat, LogLevel, UpstreamPolicy};
use super::yaml::{Section, Walker};
use actors::freshness::TagTtl;

const TOP_KEYS: &[&str] = &[
    "imagePath",
    "logLevel",
    "logFormat",
    "logFile",
    "configFile",
    "preloadImages",
    "imageFile",
    "port",
    "host",
    "os",
    "arch",
    "pullTimeout",
    "connectTimeout",
    "idleTimeout",
    "shutdownGrace",
    "clientIdleTimeout",
    "alwaysPullLatest",
    "airGapped",
    "helloWorld",
    "defaultNs",
    "health",
    "metrics",
    "admin",
    "registries",
    "upstreamPolicy",
    "pruneConfig",
    "listConfig",
    "serverTlsConfig",
    "minFreeSpace",
    "tagTtl",
    "revalidateTimeout",
    "negativeTtl",
    "actorIdleTimeout",
    "scrubInterval",
    "maxCacheSize",
    "maxBlobSize",
    "storage",
    "cluster",
    "pinned",
];
const LIST_KEYS: &[&str] = &["header", "expr"];

/// The values one config file sets; `None` means "not set here, use the built-in default".
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileConfig {
    pub image_path: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub log_level: Option<LogLevel>,
    pub log_format: Option<LogFormat>,
    pub log_file: Option<PathBuf>,
    pub pull_timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub shutdown_grace: Option<Duration>,
    pub client_idle_timeout: Option<Duration>,
    pub default_ns: Option<String>,
    /// Absent `registries` is an empty list.
    pub registries: Vec<RegistrySettings>,
    pub upstream_policy: Option<UpstreamPolicy>,
    /// `None`: plain HTTP (absent, or every value empty as in the Go default config).
    pub server_tls: Option<ServerTls>,
    /// `None`: no health listener (absent, empty or 0).
    pub health_port: Option<u16>,
    /// `None`: no metrics listener (absent, empty or 0).
    pub metrics_port: Option<u16>,
    /// `None`: no admin listener.
    pub admin: Option<AdminSettings>,
    pub min_free_space: Option<u64>,
    /// `Some(None)`: no cap of its own (empty or 0).
    pub max_blob_size: Option<Option<u64>>,
    pub tag_ttl: Option<TagTtl>,
    pub always_pull_latest: Option<bool>,
    pub air_gapped: Option<bool>,
    pub revalidate_timeout: Option<Duration>,
    pub negative_ttl: Option<Duration>,
    pub actor_idle_timeout: Option<Duration>,
    /// `Some(None)`: `never`.
    pub scrub_interval: Option<Option<Duration>>,
    /// `maxCacheSize`, `pinned`, `pruneConfig`, `preloadImages`, `imageFile`, `os`, `arch`.
    pub life: LifeSettings,
    pub storage: StorageSettings,
    pub cluster: Option<ClusterConfig>,
}

/// Parses config text. `file` names the document in messages (a path or "embedded default");
/// `env` resolves `passwordFromEnv`. Returns the values and the warnings (unknown keys, keys with
/// no effect yet, mapped keys).
pub fn parse_config(text: &str, file: &str, env: &EnvLookup) -> Result<(FileConfig, Vec<String>), ConfigError> {
    let mut document: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::parse(file, e))?;
    document.apply_merge().map_err(|e| ConfigError::parse(file, e))?;
    if !matches!(document, Value::Null | Value::Mapping(_)) {
        return Err(ConfigError::parse(
            file,
            "the top level must be a mapping of config keys such as 'port' and 'registries'",
        ));
    }
    let mut walker = Walker::new(file);
    let top = walker.section("", &document, TOP_KEYS)?;
    let config = read_top(&mut walker, &top, env)?;
    Ok((config, walker.warnings))
}

fn read_top(walker: &mut Walker, top: &Section<'_>, env: &EnvLookup) -> Result<FileConfig, ConfigError> {
    reject_unsupported(walker, top)?;
    let life = parse_life(walker, top)?;
    let storage = parse_storage(walker, top)?;
    let cluster = parse_cluster(walker, top)?;
    if cluster.is_some() && storage == StorageSettings::Filesystem {
        return Err(walker.required_by(
            "storage.type",
            "cluster",
            "replicas share their cache through storage.type: s3",
        ));
    }
    if life.max_cache_size.is_some() && storage != StorageSettings::Filesystem {
        return Err(walker.conflict(
            "maxCacheSize",
            "storage.type",
            "the cap applies to a filesystem cache; with s3 the local tier is capped by storage.s3.localCacheSize \
             and the bucket's size by the bucket's own lifecycle rules",
        ));
    }
    let log_level = match walker.string(top, "logLevel")? {
        None => None,
        Some(text) => Some(LogLevel::parse(&text).ok_or_else(|| {
            walker.invalid("logLevel", &Value::String(text.clone()), "expected debug, info, warn or error")
        })?),
    };
    let host = match walker.string(top, "host")? {
        None => None,
        Some(text) => Some(parse_host(&text).map_err(|_| {
            walker.invalid("host", &Value::String(text.clone()), "expected an IP address such as 0.0.0.0 or ::")
        })?),
    };
    let log_format = match walker.string(top, "logFormat")? {
        None => None,
        Some(text) => Some(
            LogFormat::parse(&text)
                .ok_or_else(|| walker.invalid("logFormat", &Value::String(text.clone()), "expected text or json"))?,
        ),
    };
    let upstream_policy = match walker.string(top, "upstreamPolicy")? {
        None => None,
        Some(text) => Some(UpstreamPolicy::parse(&text).ok_or_else(|| {
            walker.invalid("upstreamPolicy", &Value::String(text.clone()), "expected public, listed or any")
        })?),
    };
    let registries = parse_registries(walker, "registries", top.get("registries"), env)?;
    let server_tls = match top.get("serverTlsConfig") {
        None => None,
        Some(value) => parse_server_tls(walker, "serverTlsConfig", value)?,
    };
    let admin = match top.get("admin") {
        None => None,
        Some(value) => parse_admin(walker, "admin", value)?,
    };
    Ok(FileConfig {
        image_path: image_path(walker, top)?,
        host,
        port: walker.port(top, "port", false)?,
        log_level,
        log_format,
        log_file: walker.string(top, "logFile")?.map(PathBuf::from),
        pull_timeout: walker.duration(top, "pullTimeout")?,
        connect_timeout: walker.duration(top, "connectTimeout")?,
        idle_timeout: walker.duration(top, "idleTimeout")?,
        shutdown_grace: walker.duration(top, "shutdownGrace")?,
        client_idle_timeout: walker.duration(top, "clientIdleTimeout")?,
        default_ns: walker.string(top, "defaultNs")?,
        registries,
        upstream_policy,
        server_tls,
        health_port: walker.port(top, "health", true)?,
        metrics_port: walker.port(top, "metrics", true)?,
        admin,
        min_free_space: walker.size(top, "minFreeSpace")?,
        max_blob_size: max_blob_size(walker, top)?,
        tag_ttl: walker.ttl(top, "tagTtl")?,
        always_pull_latest: top.get("alwaysPullLatest").map(|_| walker.boolean(top, "alwaysPullLatest")).transpose()?,
        air_gapped: top.get("airGapped").map(|_| walker.boolean(top, "airGapped")).transpose()?,
        revalidate_timeout: walker.duration(top, "revalidateTimeout")?,
        negative_ttl: walker.duration(top, "negativeTtl")?,
        actor_idle_timeout: walker.duration(top, "actorIdleTimeout")?,
        scrub_interval: walker.duration_or_never(top, "scrubInterval")?,
        life,
        storage,
        cluster,
    })
}

/// `maxBlobSize`: absent takes the default; empty or 0 is no cap of its own (the cache's bound still applies).
fn max_blob_size(walker: &Walker, top: &Section<'_>) -> Result<Option<Option<u64>>, ConfigError> {
    match top.get("maxBlobSize") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Some(None)),
        Some(_) => Ok(walker.size(top, "maxBlobSize")?.map(|n| (n > 0).then_some(n))),
    }
}

/// `imagePath`: absent (or null) takes the default; an empty string is refused rather than silently replaced by the
/// default, which may be a different file system (an empty template value, for example).
fn image_path(walker: &Walker, top: &Section<'_>) -> Result<Option<PathBuf>, ConfigError> {
    match top.get("imagePath") {
        Some(value @ Value::String(s)) if s.trim().is_empty() => Err(walker.invalid(
            "imagePath",
            value,
            "the cache directory must not be empty; remove the key to use /var/lib/ociregistry",
        )),
        _ => Ok(walker.string(top, "imagePath")?.map(PathBuf::from)),
    }
}

/// Go server keys that change security or network behaviour and that this build does not
/// implement: accepted at their default value, an error otherwise.
fn reject_unsupported(walker: &mut Walker, top: &Section<'_>) -> Result<(), ConfigError> {
    for key in ["helloWorld"] {
        if walker.boolean(top, key)? {
            return Err(walker.unsupported(key));
        }
    }
    if let Some(list) = top.get("listConfig") {
        walker.section("listConfig", list, LIST_KEYS)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::server_tls::ClientAuth;
    use crate::config::values::Scheme;
    use crate::config::{AuthSettings, TlsSettings, DEFAULT_MAX_CONCURRENT};

    /// Every key of the Go server's config file, each at its default value.
    const GO_DEFAULTS: &str = r#"
imagePath: /var/lib/ociregistry
logLevel: error
logFile:
configFile:
preloadImages:
imageFile:
port: 8080
host: 0.0.0.0
os:
arch:
pullTimeout: 60000
alwaysPullLatest: false
airGapped: false
helloWorld: false
defaultNs:
health:
metrics:
registries:
  - name: my-upstream:5000
    description: the team mirror
    scheme: https
    auth:
      user:
      password: ""
      passwordFromEnv:
      token: {provider: "", providerOpts: "", expiry: ""}
    tls:
      ca:
      cert:
      key:
      insecureSkipVerify: false
pruneConfig:
  enabled: false
  type: accessed
  duration: 30d
  frequency: 1d
  count: -1
  expr:
  dryRun: false
  dryrun: false
listConfig:
  header: false
  expr:
serverTlsConfig:
  cert:
  key:
  ca:
  clientAuth: none
"#;

    /// Parses with an empty environment.
    fn parse(text: &str, file: &str) -> Result<(FileConfig, Vec<String>), ConfigError> {
        parse_config(text, file, &|_| None)
    }

    fn error(text: &str) -> String {
        match parse(text, "/etc/cfg.yaml") {
            Ok(parsed) => panic!("expected an error, got {parsed:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn unsupported(key: &str) -> String {
        format!(
            "config key '{key}' (in /etc/cfg.yaml) is not supported yet by this build; \
             remove it or set it to its default"
        )
    }

    #[test]
    fn go_file_with_default_values_loads_silently() {
        let (config, warnings) = parse(GO_DEFAULTS, "/etc/cfg.yaml").expect("loads");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.port, Some(8080));
        assert_eq!(config.log_level, Some(LogLevel::Error));
        assert_eq!(config.pull_timeout, Some(Duration::from_secs(60)));
        assert_eq!(config.log_file, None);
        assert_eq!(config.default_ns, None);
        assert_eq!(config.registries.len(), 1);
        assert_eq!(config.registries[0].name, "my-upstream:5000");
        assert_eq!(config.registries[0].scheme, Scheme::Https);
        assert_eq!(config.registries[0].auth, AuthSettings::Anonymous);
        assert_eq!(config.registries[0].tls, TlsSettings::default());
        assert_eq!(config.registries[0].max_concurrent, DEFAULT_MAX_CONCURRENT);
        assert_eq!(config.upstream_policy, None);
        assert_eq!(config.server_tls, None);
        assert_eq!((config.health_port, config.metrics_port), (None, None));
        assert_eq!(config.admin, None);
        assert_eq!((config.log_format, config.shutdown_grace), (None, None));
    }

    #[test]
    fn go_listener_defaults_in_other_spellings_are_off() {
        for text in [
            "health: ''\nmetrics: 0\nserverTlsConfig: {cert: '', key: '', ca: '', clientAuth: none}\n",
            "health: 0\nmetrics: ''\nserverTlsConfig: {clientAuth: NONE}\nadmin: {port: , tokenFile: ''}\n",
            "health: ~\nmetrics:\nserverTlsConfig:\nadmin:\n",
        ] {
            let (config, warnings) = parse(text, "f").expect("loads");
            assert_eq!(config, FileConfig::default(), "{text}");
            assert!(warnings.is_empty(), "{text}: {warnings:?}");
        }
    }

    #[test]
    fn operations_keys_load() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in [("server.crt", "pem"), ("server.key", "pem"), ("ca.crt", "pem"), ("token", "abc123\n")] {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let d = dir.path().display();
        let text = format!(
            "serverTlsConfig:\n  cert: {d}/server.crt\n  key: {d}/server.key\n  ca: {d}/ca.crt\n  clientAuth: verify\n\
             health: 8081\nmetrics: 9090\nadmin:\n  port: 8082\n  tokenFile: {d}/token\n\
             logFormat: JSON\nshutdownGrace: 30s\n"
        );
        let (config, warnings) = parse(&text, "/etc/cfg.yaml").expect("loads");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            config.server_tls,
            Some(ServerTls {
                cert: dir.path().join("server.crt"),
                key: dir.path().join("server.key"),
                client_ca: Some(dir.path().join("ca.crt")),
                client_auth: ClientAuth::Verify,
            })
        );
        assert_eq!((config.health_port, config.metrics_port), (Some(8081), Some(9090)));
        assert_eq!(config.admin, Some(AdminSettings { port: 8082, token_file: dir.path().join("token") }));
        assert_eq!(config.log_format, Some(LogFormat::Json));
        assert_eq!(config.shutdown_grace, Some(Duration::from_secs(30)));
        let (config, _) = parse("shutdownGrace: 90000\nlogFormat: text\n", "f").expect("loads");
        assert_eq!(config.shutdown_grace, Some(Duration::from_secs(90)));
        assert_eq!(config.log_format, Some(LogFormat::Text));
    }

    #[test]
    fn operations_errors_name_their_key() {
        let msg = error("serverTlsConfig: {cert: /nonexistent/s.crt}\n");
        assert_eq!(
            msg,
            "config key 'serverTlsConfig.key' (in /etc/cfg.yaml) is required when 'serverTlsConfig.cert' is set"
        );
        let msg = error("serverTlsConfig: {clientAuth: verify}\n");
        assert!(msg.starts_with("config key 'serverTlsConfig.ca' (in /etc/cfg.yaml) is required"), "{msg}");
        let msg = error("admin: {port: 8082}\n");
        assert_eq!(msg, "config key 'admin.tokenFile' (in /etc/cfg.yaml) is required when 'admin.port' is set");
        let msg = error("admin: {port: 8082, tokenFile: /nonexistent/token}\n");
        assert!(msg.starts_with("config key 'admin.tokenFile' (in /etc/cfg.yaml) has an invalid value"), "{msg}");
    }

    #[test]
    fn empty_file_sets_nothing() {
        let (config, warnings) = parse("", "f").expect("loads");
        assert_eq!(config, FileConfig::default());
        assert!(warnings.is_empty());
        let (config, _) = parse("# only a comment\n", "f").expect("loads");
        assert_eq!(config, FileConfig::default());
    }

    #[test]
    fn each_unsupported_key_is_named() {
        assert_eq!(error("helloWorld: true"), unsupported("helloWorld"));
    }

    #[test]
    fn freshness_keys() {
        let (c, _) = parse(
            "tagTtl: 0s\nalwaysPullLatest: true\nairGapped: true\nrevalidateTimeout: 250ms\nnegativeTtl: 1m\n",
            "f",
        )
        .expect("loads");
        assert_eq!(c.tag_ttl, Some(TagTtl::After(Duration::ZERO)));
        assert_eq!((c.always_pull_latest, c.air_gapped), (Some(true), Some(true)));
        assert_eq!(c.revalidate_timeout, Some(Duration::from_millis(250)));
        assert_eq!(c.negative_ttl, Some(Duration::from_secs(60)));
        assert_eq!(parse("tagTtl: never\n", "f").expect("never").0.tag_ttl, Some(TagTtl::Never));
        assert_eq!(parse("tagTtl: 90000\n", "f").expect("ms").0.tag_ttl, Some(TagTtl::After(Duration::from_secs(90))));
        for bad in ["tagTtl: soon", "tagTtl: -5s", "revalidateTimeout: 0s"] {
            assert!(error(bad).contains(bad.split(':').next().unwrap_or_default()), "{bad}");
        }
        let registry = "registries:\n  - name: docker.io\n    tagTtl: never\n";
        assert_eq!(parse(registry, "f").expect("loads").0.registries[0].tag_ttl, Some(TagTtl::Never));
    }

    #[test]
    fn os_and_arch_choose_the_preloaded_platform() {
        let (config, warnings) = parse("os: linux\narch: arm64\n", "/etc/cfg.yaml").expect("ok");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((config.life.os.as_deref(), config.life.arch.as_deref()), (Some("linux"), Some("arm64")));
    }

    #[test]
    fn unknown_keys_warn_with_their_path() {
        let (config, warnings) = parse(
            "imagepath: /x\nregistries:\n  - name: a.io\n    shceme: http\n\
             pruneConfig: {enabeld: true}\n",
            "/path/cfg.yaml",
        )
        .expect("loads");
        assert_eq!(config.image_path, None);
        assert_eq!(
            warnings,
            vec![
                "unknown key 'imagepath' in /path/cfg.yaml, ignored",
                "unknown key 'pruneConfig.enabeld' in /path/cfg.yaml, ignored",
                "unknown key 'registries[0].shceme' in /path/cfg.yaml, ignored",
            ]
        );
    }

    #[test]
    fn duration_forms() {
        let (config, _) =
            parse("pullTimeout: 1500\nconnectTimeout: 10s\nidleTimeout: \"2m\"\nclientIdleTimeout: 90s\n", "f")
                .expect("loads");
        assert_eq!(config.pull_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(config.connect_timeout, Some(Duration::from_secs(10)));
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(120)));
        assert_eq!(config.client_idle_timeout, Some(Duration::from_secs(90)));
        let (config, _) = parse("pullTimeout: 500ms\n", "f").expect("loads");
        assert_eq!(config.pull_timeout, Some(Duration::from_millis(500)));
    }

    #[test]
    fn invalid_values_name_file_key_and_value() {
        for (yaml, key, value) in [
            ("port: 0", "port", "0"),
            ("port: 65536", "port", "65536"),
            ("port: http", "port", "\"http\""),
            ("port: -1", "port", "-1"),
            ("host: localhost", "host", "\"localhost\""),
            ("logLevel: verbose", "logLevel", "\"verbose\""),
            ("pullTimeout: 0", "pullTimeout", "0"),
            ("pullTimeout: -5", "pullTimeout", "-5"),
            ("pullTimeout: 1.5", "pullTimeout", "1.5"),
            ("connectTimeout: soon", "connectTimeout", "\"soon\""),
            ("idleTimeout: 0s", "idleTimeout", "\"0s\""),
            ("airGapped: maybe", "airGapped", "\"maybe\""),
            ("imagePath: [a, b]", "imagePath", "(a list)"),
            ("imagePath: ''", "imagePath", "\"\""),
            ("imagePath: '  '", "imagePath", "\"  \""),
            ("health: 70000", "health", "70000"),
            ("health: -1", "health", "-1"),
            ("metrics: '9090'", "metrics", "\"9090\""),
            ("metrics: 1.5", "metrics", "1.5"),
            ("logFormat: logfmt", "logFormat", "\"logfmt\""),
            ("logFormat: 1", "logFormat", "1"),
            ("shutdownGrace: 0", "shutdownGrace", "0"),
            ("shutdownGrace: soon", "shutdownGrace", "\"soon\""),
            ("clientIdleTimeout: 0", "clientIdleTimeout", "0"),
            ("clientIdleTimeout: soon", "clientIdleTimeout", "\"soon\""),
            ("serverTlsConfig: {clientAuth: required}", "serverTlsConfig.clientAuth", "\"required\""),
            ("admin: {port: 0, tokenFile: /t}", "admin.port", "0"),
            ("admin: on", "admin", "\"on\""),
            ("registries: [{name: a.io, scheme: ftp}]", "registries[0].scheme", "\"ftp\""),
            ("registries: [{name: a.io}, {name: a.io}]", "registries[1].name", "\"a.io\""),
            (
                "registries: [{name: a.io, endpoint: 'http://a.io?x=1'}]",
                "registries[0].endpoint",
                "\"http://a.io?x=1\"",
            ),
            ("serverTlsConfig: on", "serverTlsConfig", "\"on\""),
            ("upstreamPolicy: open", "upstreamPolicy", "\"open\""),
            ("upstreamPolicy: true", "upstreamPolicy", "true"),
        ] {
            let msg = error(yaml);
            let expected = format!("config key '{key}' (in /etc/cfg.yaml) has an invalid value {value}: ");
            assert!(msg.starts_with(&expected), "for {yaml}: {msg}");
            assert!(!msg.contains('\n'));
        }
    }

    #[test]
    fn upstream_policy_is_case_insensitive_and_optional() {
        for (text, policy) in
            [("public", UpstreamPolicy::Public), ("Listed", UpstreamPolicy::Listed), ("ANY", UpstreamPolicy::Any)]
        {
            let (config, warnings) = parse(&format!("upstreamPolicy: {text}\n"), "f").expect("ok");
            assert_eq!(config.upstream_policy, Some(policy));
            assert!(warnings.is_empty());
        }
        let (config, _) = parse("upstreamPolicy: ''\n", "f").expect("ok");
        assert_eq!(config.upstream_policy, None);
    }

    #[test]
    fn go_file_with_upstream_auth_and_tls_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["ca.crt", "client.cert", "client.key"] {
            std::fs::write(dir.path().join(name), "pem").expect("write");
        }
        let d = dir.path().display();
        let text = format!(
            "registries:\n\
             - name: my-upstream:5000\n  scheme: https\n  auth:\n    user: theuser\n    password: thepass\n  \
               tls:\n    ca: {d}/ca.crt\n    cert: {d}/client.cert\n    key: {d}/client.key\n\
             - name: ecr.example\n  auth:\n    token: {{provider: ecr, providerOpts: 'profile=default', expiry: 6h}}\n"
        );
        let (config, warnings) = parse(&text, "/etc/cfg.yaml").expect("loads");
        assert_eq!(
            config.registries[0].to_string(),
            format!("my-upstream:5000 -> https://my-upstream:5000 (auth: basic (user theuser)) (mTLS) (ca {d}/ca.crt)")
        );
        assert_eq!(config.registries[1].to_string(), "ecr.example -> https://ecr.example (auth: helper ecr-login)");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("'registries[1].auth.token'") && warnings[0].contains("ecr-login"));
        assert!(warnings[1].contains("'registries[1].auth.token.providerOpts'"));
        assert!(!format!("{config:?} {warnings:?}").contains("thepass"));
    }

    #[test]
    fn log_level_is_case_insensitive() {
        for (text, level) in [("DEBUG", LogLevel::Debug), ("Warning", LogLevel::Warn)] {
            let (config, _) = parse(&format!("logLevel: {text}\n"), "f").expect("ok");
            assert_eq!(config.log_level, Some(level));
        }
    }

    #[test]
    fn unparsable_or_non_mapping_documents() {
        let msg = error("port: [1\n");
        assert!(msg.starts_with("cannot parse config file /etc/cfg.yaml: "), "{msg}");
        assert!(!msg.contains('\n'));
        let msg = error("- name: docker.io\n");
        assert!(msg.contains("top level must be a mapping"), "{msg}");
    }
}
