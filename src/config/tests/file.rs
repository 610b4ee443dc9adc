//! Tests of reading a whole config file: the Go server's files (every key at its default value), the operations
//! and freshness keys, the value forms, unknown keys warned with their path, and refused values named by file, key
//! path and value. Ported from the former `file.rs` and `yaml.rs` tests.

use std::path::PathBuf;
use std::time::Duration;

use actors::freshness::TagTtl;

use super::*;

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
fn parse(text: &str, file: &str) -> Result<(Settings, Vec<String>), ConfigError> {
    parse_with(text, file, &|_| None)
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
    assert_eq!(config.port, 8080);
    assert_eq!(config.log_level, LogLevel::Error);
    assert_eq!(config.mirror.timeouts.head, Duration::from_secs(60));
    assert_eq!(config.log_file, None);
    assert_eq!(config.default_ns, None);
    assert_eq!(config.mirror.upstreams.len(), 1);
    assert_eq!(config.mirror.upstreams[0].namespace.as_str(), "my-upstream:5000");
    assert_eq!(config.mirror.upstreams[0].base_url, "https://my-upstream:5000");
    assert!(matches!(config.mirror.upstreams[0].credentials, Credentials::Anonymous));
    assert!(same(&config.mirror.upstreams[0].tls, &TlsOptions::default()));
    assert_eq!(config.mirror.upstreams[0].max_concurrent, DEFAULT_MAX_CONCURRENT);
    assert_eq!(config.mirror.policy, UpstreamPolicy::Public);
    assert!(config.server_tls.is_none());
    assert_eq!((config.health_port, config.metrics_port), (None, None));
    assert_eq!(config.admin, None);
    assert_eq!((config.log_format, config.shutdown_grace), (LogFormat::Text, Duration::from_secs(60)));
}

#[test]
fn go_listener_defaults_in_other_spellings_are_off() {
    for text in [
        "health: ''\nmetrics: 0\nserverTlsConfig: {cert: '', key: '', ca: '', clientAuth: none}\n",
        "health: 0\nmetrics: ''\nserverTlsConfig: {clientAuth: NONE}\nadmin: {port: , tokenFile: ''}\n",
        "health: ~\nmetrics:\nserverTlsConfig:\nadmin:\n",
    ] {
        let (config, warnings) = parse(text, "f").expect("loads");
        assert!(same(&config, &defaults("f")), "{text}");
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
    let tls = TlsFiles {
        cert: dir.path().join("server.crt"),
        key: dir.path().join("server.key"),
        client_ca: Some(dir.path().join("ca.crt")),
        require_client_cert: true,
    };
    assert!(same(&config.server_tls, &Some(tls)));
    assert_eq!((config.health_port, config.metrics_port), (Some(8081), Some(9090)));
    let token = Secret::new("abc123");
    assert_eq!(config.admin, Some(AdminSettings { port: 8082, token_file: dir.path().join("token"), token }));
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.shutdown_grace, Duration::from_secs(30));
    let (config, _) = parse("shutdownGrace: 90000\nlogFormat: text\n", "f").expect("loads");
    assert_eq!(config.shutdown_grace, Duration::from_secs(90));
    assert_eq!(config.log_format, LogFormat::Text);
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
    assert!(same(&config, &defaults("f")));
    assert!(warnings.is_empty());
    let (config, _) = parse("# only a comment\n", "f").expect("loads");
    assert!(same(&config, &defaults("f")));
}

#[test]
fn each_unsupported_key_is_named() {
    assert_eq!(error("helloWorld: true"), unsupported("helloWorld"));
}

#[test]
fn freshness_keys() {
    let (c, _) =
        parse("tagTtl: 0s\nalwaysPullLatest: true\nairGapped: true\nrevalidateTimeout: 250ms\nnegativeTtl: 1m\n", "f")
            .expect("loads");
    assert_eq!(c.mirror.freshness.tag_ttl, TagTtl::After(Duration::ZERO));
    assert_eq!((c.mirror.freshness.always_pull_latest, c.mirror.air_gapped), (true, true));
    assert_eq!(c.mirror.freshness.revalidate_timeout, Duration::from_millis(250));
    assert_eq!(c.mirror.freshness.negative_ttl, Duration::from_secs(60));
    assert_eq!(parse("tagTtl: never\n", "f").expect("never").0.mirror.freshness.tag_ttl, TagTtl::Never);
    assert_eq!(
        parse("tagTtl: 90000\n", "f").expect("ms").0.mirror.freshness.tag_ttl,
        TagTtl::After(Duration::from_secs(90))
    );
    for bad in ["tagTtl: soon", "tagTtl: -5s", "revalidateTimeout: 0s"] {
        assert!(error(bad).contains(bad.split(':').next().unwrap_or_default()), "{bad}");
    }
    let registry = "registries:\n  - name: docker.io\n    tagTtl: never\n";
    assert_eq!(parse(registry, "f").expect("loads").0.mirror.upstreams[0].tag_ttl, Some(TagTtl::Never));
}

#[test]
fn os_and_arch_choose_the_preloaded_platform() {
    let (config, warnings) = parse("os: linux\narch: arm64\n", "/etc/cfg.yaml").expect("ok");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!((config.platform.os.as_deref(), config.platform.arch.as_deref()), (Some("linux"), Some("arm64")));
}

#[test]
fn unknown_keys_warn_with_their_path() {
    let (config, warnings) = parse(
        "imagepath: /x\nregistries:\n  - name: a.io\n    shceme: http\n\
         pruneConfig: {enabeld: true}\n",
        "/path/cfg.yaml",
    )
    .expect("loads");
    assert_eq!(config.mirror.image_path, PathBuf::from("/var/lib/ociregistry"));
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
    assert_eq!(config.mirror.timeouts.head, Duration::from_millis(1500));
    assert_eq!(config.mirror.timeouts.connect, Duration::from_secs(10));
    assert_eq!(config.mirror.timeouts.idle, Duration::from_secs(120));
    assert_eq!(config.client_idle_timeout, Duration::from_secs(90));
    let (config, _) = parse("pullTimeout: 500ms\n", "f").expect("loads");
    assert_eq!(config.mirror.timeouts.head, Duration::from_millis(500));
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
        ("registries: [{name: a.io, endpoint: 'http://a.io?x=1'}]", "registries[0].endpoint", "\"http://a.io?x=1\""),
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
        assert_eq!(config.mirror.policy, policy);
        assert!(warnings.is_empty());
    }
    let (config, _) = parse("upstreamPolicy: ''\n", "f").expect("ok");
    assert_eq!(config.mirror.policy, UpstreamPolicy::Public);
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
        upstream_line(&config.mirror.upstreams[0]),
        format!("my-upstream:5000 -> https://my-upstream:5000 (auth: basic (user theuser)) (mTLS) (ca {d}/ca.crt)")
    );
    assert_eq!(
        upstream_line(&config.mirror.upstreams[1]),
        "ecr.example -> https://ecr.example (auth: helper ecr-login)"
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("'registries[1].auth.token'") && warnings[0].contains("ecr-login"));
    assert!(warnings[1].contains("'registries[1].auth.token.providerOpts'"));
    assert!(!format!("{config:?} {warnings:?}").contains("thepass"));
}

#[test]
fn log_level_is_case_insensitive() {
    for (text, level) in [("DEBUG", LogLevel::Debug), ("Warning", LogLevel::Warn)] {
        let (config, _) = parse(&format!("logLevel: {text}\n"), "f").expect("ok");
        assert_eq!(config.log_level, level);
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

#[test]
fn unknown_keys_warn_with_path_in_lists() {
    let (_, warnings) = parse("registries:\n  - name: a.io\n  - name: b.io\n    zz: 2\n", "f.yaml").expect("loads");
    assert_eq!(warnings, vec!["unknown key 'registries[1].zz' in f.yaml, ignored".to_string()]);
}

#[test]
fn typed_reads_name_key_and_value() {
    let msg = |text: &str| parse(text, "f.yaml").expect_err(text).to_string();
    assert_eq!(
        msg("port: 70000"),
        "config key 'port' (in f.yaml) has an invalid value 70000: expected a port number from 1 to 65535"
    );
    let err = msg("airGapped: yes");
    assert!(err.contains("'airGapped'") && err.contains("\"yes\""), "{err}");
    assert!(msg("pullTimeout: 0").contains("greater than zero"));
    assert!(msg("defaultNs: 5").contains("expected a string"));
    let registry = |n: &str| format!("registries: [{{name: a.io, maxConcurrent: {n}}}]");
    assert_eq!(parse(&registry("1024"), "f.yaml").expect("in range").0.mirror.upstreams[0].max_concurrent, 1024);
    assert_eq!(
        msg(&registry("1025")),
        "config key 'registries[0].maxConcurrent' (in f.yaml) has an invalid value 1025: expected a whole number \
         from 1 to 1024"
    );
    assert!(msg(&registry("true")).contains("'registries[0].maxConcurrent'"));
}

#[test]
fn zero_or_empty_port_can_mean_unset() {
    for text in ["health: 0", "health: ''", "health:", "port: 1"] {
        assert_eq!(parse(text, "f").expect(text).0.health_port, None, "{text}");
    }
    assert_eq!(parse("health: 8081", "f").expect("set").0.health_port, Some(8081));
    assert!(parse("port: 0", "f").is_err());
    assert!(parse("port: ''", "f").is_err());
    let err = parse("health: '8081'", "f").expect_err("a string").to_string();
    assert!(err.contains("'health'") && err.contains("\"8081\""), "{err}");
}

#[test]
fn keys_that_are_not_strings_are_unknown() {
    let (config, warnings) = parse("1: x\nport: 5000\nadmin: {true: 1}\n", "f.yaml").expect("loads");
    assert_eq!(config.port, 5000);
    assert_eq!(warnings, ["unknown key '1' in f.yaml, ignored", "unknown key 'admin.true' in f.yaml, ignored"]);
}

#[test]
fn empty_list_entries_are_refused() {
    for (text, key) in [
        ("pinned: [~]", "pinned[0]"),
        (
            "storage: {type: s3, s3: {endpoint: 'http://s:1', bucket: b}}\ncluster: {peers: ['http://a:1', ~]}",
            "cluster.peers[1]",
        ),
    ] {
        // The bucket's credentials come from the environment (they are read where `storage` is checked).
        let env = |name: &str| name.starts_with("AWS_").then(|| "x".to_string());
        let msg = parse_with(text, "f", &env).expect_err(text).to_string();
        assert!(msg.starts_with(&format!("config key '{key}' (in f) has an invalid value null: expected ")), "{msg}");
    }
}
