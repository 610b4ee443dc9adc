//! Tests of `load`: the embedded default config, config file replacement, command-line
//! precedence, unsupported commands and options, file read errors, the upstream policy,
//! passwords (read from the environment, never formatted), and the operations settings (server
//! TLS, health, metrics and admin listeners and their ports, log format, shutdown grace).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use actors::upstream::auth::Credentials;
use actors::upstream::guard::UpstreamPolicy;
use actors::upstream::tls::TlsOptions;

use actors::upstream::DEFAULT_MAX_CONCURRENT;
use actors::UpstreamSpec;

use super::registry::DEFAULT_HELPER_CACHE_TIME;
use super::settings::AdminSettings;
use super::*;
use crate::server_tls::TlsFiles;
use crate::summary::upstream_line;
use crate::values::secret::Secret;
use crate::values::{LogFormat, LogLevel};

mod file;
mod registries;
mod sections;

/// The settings of an empty config file: the built-in defaults, with no registries.
fn defaults(source: &str) -> Settings {
    validate::settings(schema::FileConfig::default(), source, &|_| None).expect("the defaults are valid").0
}

/// Reads and validates a config text named `file`, with `env` resolving `passwordFromEnv`.
fn parse_with(text: &str, file: &str, env: &error::EnvLookup) -> Result<(Settings, Vec<String>), ConfigError> {
    let (config, mut warnings) = read::parse_config(text, file)?;
    let (settings, more) = validate::settings(config, file, env)?;
    warnings.extend(more);
    Ok((settings, warnings))
}

/// A config text with `yaml` as the value of `key`: a top-level key, `registries` (a list), or the `auth` or `tls`
/// of a first registry named `a.io`. The former per-section tests run through the whole reading this way.
fn placed(key: &str, yaml: &str) -> String {
    use serde_yaml::{Mapping, Value};
    let value: Value = serde_yaml::from_str(yaml).expect("test YAML parses");
    let one = |key: &str, value: Value| Value::Mapping(Mapping::from_iter([(Value::from(key), value)]));
    let document = match key.strip_prefix("registries[0].") {
        Some(section) => {
            let mut entry = Mapping::from_iter([(Value::from("name"), Value::from("a.io"))]);
            entry.insert(Value::from(section), value);
            one("registries", Value::Sequence(vec![Value::Mapping(entry)]))
        }
        None => one(key, value),
    };
    serde_yaml::to_string(&document).expect("test YAML writes")
}

/// The same settings, compared by their full `Debug` text (the actors' types have no `PartialEq`).
fn same<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("ociregistry").chain(args.iter().copied())).expect("test command line parses")
}

/// A config file in a fresh temporary directory (removed when the guard drops).
fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("registry-config.yaml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temp path is UTF-8")
}

#[test]
fn embedded_default_lists_the_public_registries() {
    let (settings, warnings) = load(&cli(&["serve"])).expect("embedded default loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    let names: Vec<&str> = settings.mirror.upstreams.iter().map(|r| r.namespace.as_str()).collect();
    assert_eq!(
        names,
        ["docker.io", "registry.k8s.io", "ghcr.io", "quay.io", "gcr.io", "mcr.microsoft.com", "public.ecr.aws"]
    );
    assert!(settings
        .mirror
        .upstreams
        .iter()
        .all(|r| r.base_url.starts_with("https://") && same(&r.tls, &TlsOptions::default())));
    let mut expected = defaults(EMBEDDED_SOURCE);
    expected.mirror.upstreams = settings.mirror.upstreams.clone();
    assert!(same(&settings, &expected), "{settings:?}");
    assert_eq!(settings.config_source, "embedded default");
    assert_eq!(settings.mirror.upstreams[3].base_url, "https://quay.io");
}

#[test]
fn a_config_file_replaces_the_embedded_one() {
    let (_dir, path) = config_file("port: 5000\n");
    let (settings, _) = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect("loads");
    assert_eq!(settings.port, 5000);
    assert!(settings.mirror.upstreams.is_empty());
    assert_eq!(settings.mirror.image_path, PathBuf::from("/var/lib/ociregistry"));
    assert_eq!(settings.log_level, LogLevel::Info);
    assert_eq!(settings.mirror.timeouts.head, Duration::from_secs(60));
    assert_eq!(settings.config_source, path.display().to_string());
}

#[test]
fn flags_override_file_values() {
    let (_dir, path) = config_file(
        "imagePath: /file/images\nlogLevel: error\nlogFile: /file.log\nport: 5000\n\
         host: 127.0.0.1\npullTimeout: 1000\nconnectTimeout: 1s\nidleTimeout: 1s\nclientIdleTimeout: 5s\n\
         defaultNs: file.io\nregistries: [{name: file.io, scheme: http}]\n",
    );
    let (from_file, _) = load(&cli(&["--config-file", path_arg(&path), "serve"])).expect("file only");
    assert_eq!(from_file.mirror.image_path, PathBuf::from("/file/images"));
    assert_eq!(from_file.log_level, LogLevel::Error);
    assert_eq!(from_file.log_file, Some(PathBuf::from("/file.log")));
    assert_eq!(from_file.port, 5000);
    assert_eq!(from_file.host, "127.0.0.1");
    assert_eq!(from_file.mirror.timeouts.head, Duration::from_secs(1));
    assert_eq!(from_file.mirror.timeouts.connect, Duration::from_secs(1));
    assert_eq!(from_file.mirror.timeouts.idle, Duration::from_secs(1));
    assert_eq!(from_file.client_idle_timeout, Duration::from_secs(5));
    assert_eq!(from_file.default_ns.as_deref(), Some("file.io"));
    assert!(from_file.mirror.upstreams[0].base_url.starts_with("http://"));

    let (settings, _) = load(&cli(&[
        "serve",
        "--config-file",
        path_arg(&path),
        "--image-path",
        "/flag/images",
        "--log-level",
        "debug",
        "--log-file",
        "/flag.log",
        "--port",
        "6000",
        "--host",
        "::",
        "--pull-timeout",
        "2500",
        "--connect-timeout",
        "3s",
        "--idle-timeout",
        "4s",
        "--client-idle-timeout",
        "7s",
        "--default-ns",
        "flag.io",
    ]))
    .expect("flags");
    assert_eq!(settings.mirror.image_path, PathBuf::from("/flag/images"));
    assert_eq!(settings.log_level, LogLevel::Debug);
    assert_eq!(settings.log_file, Some(PathBuf::from("/flag.log")));
    assert_eq!(settings.port, 6000);
    assert_eq!(settings.host, "::");
    assert_eq!(settings.mirror.timeouts.head, Duration::from_millis(2500));
    assert_eq!(settings.mirror.timeouts.connect, Duration::from_secs(3));
    assert_eq!(settings.mirror.timeouts.idle, Duration::from_secs(4));
    assert_eq!(settings.client_idle_timeout, Duration::from_secs(7));
    assert_eq!(settings.default_ns.as_deref(), Some("flag.io"));
    assert!(same(&settings.mirror.upstreams, &from_file.mirror.upstreams));
}

#[test]
fn unreadable_file_names_the_path() {
    let err = load(&cli(&["serve", "--config-file", "/nonexistent/x.yaml"])).expect_err("missing file");
    assert_eq!(err.to_string(), "cannot read config file /nonexistent/x.yaml: No such file or directory");
}

#[test]
fn file_errors_and_warnings_name_the_path() {
    let (_dir, path) = config_file("imagepath: /x\nport: 0\n");
    let shown = path.display().to_string();
    let err = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect_err("port 0");
    assert!(err.to_string().starts_with(&format!("config key 'port' (in {shown}) ")));

    let (_dir, path) = config_file("imagepath: /x\nos: linux\n");
    let shown = path.display().to_string();
    let (settings, warnings) =
        load(&cli(&["serve", "--arch", "arm64", "--config-file", path_arg(&path)])).expect("loads");
    assert_eq!(warnings, vec![format!("unknown key 'imagepath' in {shown}, ignored")]);
    assert_eq!((settings.platform.os.as_deref(), settings.platform.arch.as_deref()), (Some("linux"), Some("arm64")));
}

#[test]
fn unsupported_options_fail_and_the_go_commands_load() {
    for command in [&["list"][..], &["prune", "--dry-run"][..], &["load", "--image-file", "/i.txt"][..]] {
        load(&cli(command)).expect("the Go commands are supported");
    }
    let (settings, _) = load(&cli(&["serve", "--preload-images", "/imgs.txt,/more/*.txt"])).expect("preload");
    assert_eq!(settings.preload_images.as_deref(), Some("/imgs.txt,/more/*.txt"));
    let err = load(&cli(&["serve", "--hello-world"])).expect_err("unsupported option");
    assert_eq!(err.to_string(), "`--hello-world` is not supported yet by this build");
    let (_, warnings) = load(&cli(&["serve", "--air-gapped=false", "--arch", "arm64"])).expect("false is fine");
    assert!(warnings.is_empty(), "{warnings:?}");
    let (settings, _) = load(&cli(&["serve", "--air-gapped", "--always-pull-latest"])).expect("both are supported");
    assert!(settings.mirror.air_gapped && settings.mirror.freshness.always_pull_latest);
}

#[test]
fn ranges_ahead_of_the_transfer_are_passed_through_unless_turned_off() {
    let (settings, _) = load(&cli(&["serve"])).expect("defaults");
    assert!(settings.mirror.range_pass_through, "on by default");
    let (_dir, path) = config_file("rangePassThrough: false\n");
    let (settings, _) = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect("loads");
    assert!(!settings.mirror.range_pass_through);
}

#[test]
fn summary_mentions_every_registry() {
    let (settings, _) = load(&cli(&["serve"])).expect("loads");
    let text = settings.to_string();
    assert!(text.contains("Config: embedded default"));
    assert!(text.contains("Listen: 0.0.0.0:8080"));
    assert!(text.contains("public.ecr.aws -> https://public.ecr.aws"));
}

/// A fake environment for `passwordFromEnv`: the process environment is never touched.
fn fake_env(name: &str) -> Option<String> {
    (name == "OCIREGISTRY_TEST_PASSWORD").then(|| "from-the-env-Pa55".to_string())
}

#[test]
fn upstream_policy_defaults_to_public_and_is_read_from_the_file() {
    let (settings, _) = load(&cli(&["serve"])).expect("embedded default loads");
    assert_eq!(settings.mirror.policy, UpstreamPolicy::Public);
    assert!(settings.to_string().contains("Upstream policy: public"));
    let (_dir, path) = config_file("upstreamPolicy: Listed\n");
    let (settings, _) = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect("loads");
    assert_eq!(settings.mirror.policy, UpstreamPolicy::Listed);
    let (_dir, path) = config_file("port: 5000\n");
    let (settings, _) = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect("loads");
    assert_eq!(settings.mirror.policy, UpstreamPolicy::Public);
}

#[test]
fn password_from_env_is_read_at_load_time() {
    let (_dir, path) = config_file(
        "registries:\n  - name: my-registry:5000\n    auth:\n      user: theuser\n      \
         passwordFromEnv: OCIREGISTRY_TEST_PASSWORD\n",
    );
    let (settings, warnings) =
        load_with_env(&cli(&["serve", "--config-file", path_arg(&path)]), &fake_env).expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    match &settings.mirror.upstreams[0].credentials {
        Credentials::Basic { user, password } => {
            assert_eq!(user, "theuser");
            assert_eq!(password, "from-the-env-Pa55");
        }
        other => panic!("expected basic auth, got {other:?}"),
    }
    let err = load_with_env(&cli(&["serve", "--config-file", path_arg(&path)]), &|_| None).expect_err("unset");
    assert_eq!(
        err.to_string(),
        format!(
            "config key 'registries[0].auth.passwordFromEnv' (in {}) has an invalid value \
             \"OCIREGISTRY_TEST_PASSWORD\": the environment variable OCIREGISTRY_TEST_PASSWORD is unset or empty",
            path.display()
        )
    );
}

#[test]
fn settings_never_format_a_password() {
    let (_dir, path) = config_file(
        "registries:\n  - name: a.io\n    auth: {user: theuser, password: inline-Pa55}\n  \
         - name: b.io\n    auth: {user: other, passwordFromEnv: OCIREGISTRY_TEST_PASSWORD}\n",
    );
    let (settings, warnings) =
        load_with_env(&cli(&["serve", "--config-file", path_arg(&path)]), &fake_env).expect("loads");
    let shown = format!("{settings:?}\n{settings:#?}\n{settings}\n{warnings:?}");
    for password in ["inline-Pa55", "from-the-env-Pa55"] {
        assert!(!shown.contains(password), "{password} shown in: {shown}");
    }
    assert!(shown.contains("***"));
    assert!(shown.contains("a.io -> https://a.io (auth: basic (user theuser))"), "{shown}");
}

/// A directory with readable `server.crt`, `server.key`, `ca.crt` (not parsed at load time) and an admin `token`.
fn operations_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in [("server.crt", "pem"), ("server.key", "pem"), ("ca.crt", "pem"), ("token", "admin-Tok3n\n")] {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

#[test]
fn operations_defaults_are_off() {
    let (settings, _) = load(&cli(&["serve"])).expect("embedded default loads");
    assert!(settings.server_tls.is_none());
    assert_eq!((settings.health_port, settings.metrics_port), (None, None));
    assert_eq!(settings.admin, None);
    assert_eq!(settings.log_format, LogFormat::Text);
    assert_eq!(settings.shutdown_grace, Duration::from_secs(60));
    assert_eq!(Duration::from_secs(60), Duration::from_secs(60));
    let text = settings.to_string();
    for line in ["Tls: none", "Ports: health -, metrics -, admin -", "Log: level info, format text, file -"] {
        assert!(text.contains(line), "{line} missing from {text}");
    }
    assert!(text.contains("Shutdown grace: 1m"), "{text}");
}

#[test]
fn go_operations_defaults_load_silently() {
    let (_dir, path) =
        config_file("health:\nmetrics:\nserverTlsConfig:\n  cert: \"\"\n  key: \"\"\n  ca: \"\"\n  clientAuth: none\n");
    let (settings, warnings) = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(same(&settings, &defaults(&path.display().to_string())));
}

#[test]
fn operations_keys_reach_the_settings_and_the_summary() {
    let dir = operations_files();
    let d = dir.path().display();
    let (_cfg, path) = config_file(&format!(
        "serverTlsConfig: {{cert: {d}/server.crt, key: {d}/server.key, ca: {d}/ca.crt, clientAuth: verify}}\n\
         health: 8081\nmetrics: 9090\nadmin: {{port: 8082, tokenFile: {d}/token}}\n\
         logFormat: json\nshutdownGrace: 2m\n"
    ));
    let (settings, warnings) = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    let tls = settings.server_tls.as_ref().expect("https");
    assert_eq!(tls.cert, dir.path().join("server.crt"));
    assert_eq!(tls.key, dir.path().join("server.key"));
    assert_eq!(tls.client_ca, Some(dir.path().join("ca.crt")));
    assert!(tls.require_client_cert);
    assert_eq!((settings.health_port, settings.metrics_port), (Some(8081), Some(9090)));
    let admin = AdminSettings { port: 8082, token_file: dir.path().join("token"), token: Secret::new("admin-Tok3n") };
    assert_eq!(settings.admin, Some(admin));
    assert_eq!(settings.log_format, LogFormat::Json);
    assert_eq!(settings.shutdown_grace, Duration::from_secs(120));
    let text = settings.to_string();
    for line in [
        "Tls: https (client certificates: verify)",
        "Ports: health 8081, metrics 9090, admin 8082",
        "Log: level info, format json, file -",
        "Shutdown grace: 2m",
    ] {
        assert!(text.contains(line), "{line} missing from {text}");
    }
    let shown = format!("{settings:?}\n{settings:#?}\n{text}");
    assert!(!shown.contains("admin-Tok3n"), "the admin token is shown: {shown}");
}

#[test]
fn operations_flags_override_file_values() {
    let (_dir, path) = config_file("health: 8081\nmetrics: 9090\nlogFormat: json\nshutdownGrace: 2m\n");
    let (settings, _) = load(&cli(&[
        "--log-format",
        "TEXT",
        "serve",
        "--config-file",
        path_arg(&path),
        "--health",
        "7081",
        "--metrics",
        "7090",
        "--shutdown-grace",
        "15s",
    ]))
    .expect("flags");
    assert_eq!((settings.health_port, settings.metrics_port), (Some(7081), Some(7090)));
    assert_eq!(settings.log_format, LogFormat::Text);
    assert_eq!(settings.shutdown_grace, Duration::from_secs(15));
    // 0 turns a listener of the file off.
    let (settings, _) =
        load(&cli(&["serve", "--config-file", path_arg(&path), "--health", "0", "--metrics", "0"])).expect("off");
    assert_eq!((settings.health_port, settings.metrics_port), (None, None));
    // Flags alone, over the embedded default.
    let (settings, _) = load(&cli(&["serve", "--health", "8081", "--log-format", "json", "--shutdown-grace", "90000"]))
        .expect("flags only");
    assert_eq!(settings.health_port, Some(8081));
    assert_eq!(settings.metrics_port, None);
    assert_eq!(settings.log_format, LogFormat::Json);
    assert_eq!(settings.shutdown_grace, Duration::from_secs(90));
}

#[test]
fn listeners_need_ports_of_their_own() {
    let dir = operations_files();
    let d = dir.path().display();
    for (yaml, args, key, other, reason) in [
        ("health: 8080\n", &[][..], "port", "health", "both are port 8080"),
        ("port: 9090\nmetrics: 9090\n", &[][..], "port", "metrics", "both are port 9090"),
        ("health: 8081\nmetrics: 8081\n", &[][..], "health", "metrics", "both are port 8081"),
        (
            "metrics: 9090\n",
            &["--health", "9090"][..],
            "health",
            "metrics",
            "both are port 9090 (health from --health)",
        ),
        ("health: 8081\n", &["--port", "8081"][..], "port", "health", "both are port 8081 (port from --port)"),
        (
            "health: 8081\n",
            &["--port", "7000", "--metrics", "7000"][..],
            "port",
            "metrics",
            "both are port 7000 (port from --port, metrics from --metrics)",
        ),
        ("admin: {port: 8080, tokenFile: TOKEN}\n", &[][..], "port", "admin.port", "both are port 8080"),
        (
            "health: 8082\nadmin: {port: 8082, tokenFile: TOKEN}\n",
            &[][..],
            "health",
            "admin.port",
            "both are port 8082",
        ),
        (
            "metrics: 8082\nadmin: {port: 8082, tokenFile: TOKEN}\n",
            &[][..],
            "metrics",
            "admin.port",
            "both are port 8082",
        ),
    ] {
        let (_cfg, path) = config_file(&yaml.replace("TOKEN", &format!("{d}/token")));
        let mut argv = vec!["serve", "--config-file", path_arg(&path)];
        argv.extend_from_slice(args);
        let err = load(&cli(&argv)).expect_err("ports clash");
        assert_eq!(
            err.to_string(),
            format!(
                "config keys '{key}' and '{other}' (in {}) cannot be used together: {reason}; every listener binds \
                 0.0.0.0 and needs a port of its own",
                path.display()
            ),
            "for {yaml} {args:?}"
        );
    }
    // Distinct ports, and a listener switched off by its flag, are fine.
    let (_cfg, path) =
        config_file(&format!("health: 8081\nmetrics: 9090\nadmin: {{port: 8082, tokenFile: {d}/token}}\n"));
    assert!(load(&cli(&["serve", "--config-file", path_arg(&path)])).is_ok());
    let (_cfg, path) = config_file("health: 8080\n");
    let (settings, _) = load(&cli(&["serve", "--config-file", path_arg(&path), "--health", "0"])).expect("off");
    assert_eq!(settings.health_port, None);
}

#[test]
fn operations_errors_stop_the_load() {
    let dir = operations_files();
    let d = dir.path().display();
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "").expect("write");
    for (yaml, expected) in [
        (
            format!("serverTlsConfig: {{key: {d}/server.key}}\n"),
            "config key 'serverTlsConfig.cert' (in CFG) is required when 'serverTlsConfig.key' is set".to_string(),
        ),
        (
            format!("serverTlsConfig: {{cert: {d}/server.crt, key: {d}/server.key, clientAuth: verify}}\n"),
            "config key 'serverTlsConfig.ca' (in CFG) is required when 'serverTlsConfig.clientAuth' is set to verify"
                .to_string(),
        ),
        (
            format!("serverTlsConfig: {{cert: {d}/missing.crt, key: {d}/server.key}}\n"),
            format!(
                "config key 'serverTlsConfig.cert' (in CFG) has an invalid value \"{d}/missing.crt\": cannot read the \
                 server certificate file: No such file or directory"
            ),
        ),
        (
            "admin: {port: 8082}\n".to_string(),
            "config key 'admin.tokenFile' (in CFG) is required when 'admin.port' is set".to_string(),
        ),
        (
            format!("admin: {{port: 8082, tokenFile: {}}}\n", empty.display()),
            format!(
                "config key 'admin.tokenFile' (in CFG) has an invalid value \"{}\": the admin token file is empty",
                empty.display()
            ),
        ),
        (
            "logFormat: yaml\n".to_string(),
            "config key 'logFormat' (in CFG) has an invalid value \"yaml\": expected text or json".to_string(),
        ),
    ] {
        let (_cfg, path) = config_file(&yaml);
        let err = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect_err("invalid");
        assert_eq!(err.to_string(), expected.replace("CFG", &path.display().to_string()), "for {yaml}");
    }
}

#[test]
fn unused_client_ca_warns() {
    let dir = operations_files();
    let d = dir.path().display();
    let (_cfg, path) =
        config_file(&format!("serverTlsConfig: {{cert: {d}/server.crt, key: {d}/server.key, ca: {d}/ca.crt}}\n"));
    let (settings, warnings) = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect("loads");
    assert_eq!(
        settings.server_tls.as_ref().map(|tls| (tls.require_client_cert, tls.client_ca.clone())),
        Some((false, None))
    );
    assert_eq!(
        warnings,
        [format!(
            "config key 'serverTlsConfig.ca' in {} has no effect while 'serverTlsConfig.clientAuth' is none (client \
             certificates are not requested), ignored",
            path.display()
        )]
    );
    assert!(settings.to_string().contains("Tls: https (client certificates: none)"));
}

/// Each `(yaml, key)`: the file is refused with one line naming the key.
fn refused_naming_keys(cases: &[(&str, &str)]) {
    for (bad, key) in cases {
        let (_dir, path) = config_file(bad);
        let err = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect_err(bad).to_string();
        assert!(err.starts_with(&format!("config key '{key}'")), "{bad}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn upstream_bandwidth_takes_bytes_or_bits_per_second_at_top_level_and_per_registry() {
    let (settings, _) = load(&cli(&["serve"])).expect("embedded default loads");
    assert_eq!(settings.mirror.upstream_bandwidth, None, "no cap by default");
    let yaml = "upstreamBandwidth: 5Mbit\nregistries:\n  - name: a.io\n    upstreamBandwidth: 2MB\n  - name: b.io\n";
    let (_dir, path) = config_file(yaml);
    let (settings, warnings) = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect(yaml);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(settings.mirror.upstream_bandwidth.map(|r| r.get()), Some(625_000));
    let own: Vec<_> = settings.mirror.upstreams.iter().map(|u| u.bandwidth.map(|r| r.get())).collect();
    assert_eq!(own, [Some(2_000_000), None]);
    let shown = settings.to_string();
    assert!(shown.contains("Upstream bandwidth: 625000 B/s (5 Mbit/s) (all upstreams together)"), "{shown}");
    assert!(shown.contains("a.io -> https://a.io (upstreamBandwidth 2000000 B/s (16 Mbit/s))"), "{shown}");
    for off in ["upstreamBandwidth: 0\n", "upstreamBandwidth: ''\n", "upstreamBandwidth: '0Mbit'\n"] {
        let (_dir, path) = config_file(off);
        let (settings, _) = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect(off);
        assert_eq!(settings.mirror.upstream_bandwidth, None, "{off}");
    }
    refused_naming_keys(&[
        ("upstreamBandwidth: -5\n", "upstreamBandwidth"),
        ("upstreamBandwidth: 10Mb\n", "upstreamBandwidth"),
        ("upstreamBandwidth: fast\n", "upstreamBandwidth"),
        ("registries:\n  - name: a.io\n    upstreamBandwidth: -1Mbit\n", "registries[0].upstreamBandwidth"),
    ]);
}

#[test]
fn rate_limit_reserve_is_a_count_at_top_level_and_per_registry() {
    let (settings, _) = load(&cli(&["serve"])).expect("embedded default loads");
    assert_eq!(settings.mirror.rate_limit_reserve, 5, "documented default");
    let yaml = "rateLimitReserve: 10\nregistries:\n  - name: a.io\n    rateLimitReserve: 0\n  - name: b.io\n";
    let (_dir, path) = config_file(yaml);
    let (settings, warnings) = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect(yaml);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(settings.mirror.rate_limit_reserve, 10);
    let own: Vec<_> = settings.mirror.upstreams.iter().map(|u| u.rate_limit_reserve).collect();
    assert_eq!(own, [Some(0), None]);
    refused_naming_keys(&[
        ("rateLimitReserve: -1\n", "rateLimitReserve"),
        ("rateLimitReserve: some\n", "rateLimitReserve"),
        ("rateLimitReserve: 2.5\n", "rateLimitReserve"),
        ("registries:\n  - name: a.io\n    rateLimitReserve: -3\n", "registries[0].rateLimitReserve"),
    ]);
}

#[test]
fn max_blob_size_takes_the_size_forms_and_zero_or_empty_lifts_its_own_cap() {
    let (settings, _) = load(&cli(&["serve"])).expect("embedded default loads");
    assert_eq!(settings.mirror.max_blob_size, Some(16 << 30), "documented default");
    for (yaml, expected) in [
        ("maxBlobSize: 8Mi\n", Some(8 << 20)),
        ("maxBlobSize: 2G\n", Some(2_000_000_000)),
        ("maxBlobSize: '1.5Gi'\n", Some(3 << 29)),
        ("maxBlobSize: 1048576\n", Some(1 << 20)),
        ("maxBlobSize: 0\n", None),
        ("maxBlobSize: ''\n", None),
        ("port: 5000\n", Some(16 << 30)),
    ] {
        let (_dir, path) = config_file(yaml);
        let (settings, warnings) = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect(yaml);
        assert!(warnings.is_empty(), "{yaml}: {warnings:?}");
        assert_eq!(settings.mirror.max_blob_size, expected, "{yaml}");
    }
    for bad in ["maxBlobSize: lots\n", "maxBlobSize: -1\n", "maxBlobSize: [1]\n", "maxBlobSize: 99999999Ti\n"] {
        let (_dir, path) = config_file(bad);
        let err = load(&cli(&["serve", "--config-file", path_arg(&path)])).expect_err(bad).to_string();
        assert!(err.starts_with("config key 'maxBlobSize'"), "{bad}: {err}");
    }
}

#[test]
fn config_keys_are_the_schema_keys() {
    let keys = config_keys();
    for key in ["imagePath", "registries[].auth.token.expiry", "cluster.peers[]", "cluster.self", "pinned[]"] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
    // A document with every key (null values, lists of one) has no unknown key.
    use serde_yaml::{Mapping, Value};
    let mut document = Mapping::new();
    for key in &keys {
        let mut node = &mut document;
        let parts: Vec<&str> = key.split('.').collect();
        for (n, part) in parts.iter().enumerate() {
            let (name, list) = match part.strip_suffix("[]") {
                Some(name) => (name, true),
                None => (*part, false),
            };
            let last = n + 1 == parts.len();
            let entry = node.entry(Value::from(name)).or_insert_with(|| match (last, list) {
                (true, true) => Value::Sequence(vec![Value::Null]),
                (true, false) => Value::Null,
                (false, true) => Value::Sequence(vec![Value::Mapping(Mapping::new())]),
                (false, false) => Value::Mapping(Mapping::new()),
            });
            if last {
                break;
            }
            let entry = match entry {
                Value::Sequence(items) => &mut items[0],
                other => other,
            };
            node = entry.as_mapping_mut().expect("a section");
        }
    }
    let text = serde_yaml::to_string(&document).expect("writes");
    let (_, warnings) = read::parse_config(&text, "all.yaml").expect("every key reads");
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn the_docs_name_every_key() {
    let docs = include_str!("../../docs/configuration.md");
    for key in config_keys() {
        for segment in key.split('.').map(|s| s.trim_end_matches("[]")) {
            assert!(
                docs.contains(&format!("`{segment}`")) || docs.contains(&format!("{segment}:")),
                "docs/configuration.md does not name '{segment}' (of {key})"
            );
        }
    }
}
