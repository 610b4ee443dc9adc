//! Tests of the sections `serverTlsConfig`, `admin`, the cache's life (`maxCacheSize`, `pinned`, `pruneConfig`,
//! ...), `storage` and `cluster` (ported from the former `server_tls.rs`, `admin.rs`, `life.rs` and `storage.rs`
//! tests), each run through the whole reading and validation of a config file.

use std::time::Duration;

use super::*;

/// `serverTlsConfig`.
mod server_tls {
    use super::*;

    /// A temporary directory with readable `server.crt`, `server.key` and `ca.crt` (contents are not parsed here).
    fn files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["server.crt", "server.key", "ca.crt"] {
            std::fs::write(dir.path().join(name), "not parsed at load time").expect("write");
        }
        dir
    }

    fn parse(yaml: &str) -> (Result<Option<TlsFiles>, ConfigError>, Vec<String>) {
        match parse_with(&placed("serverTlsConfig", yaml), "cfg.yaml", &|_| None) {
            Ok((settings, warnings)) => (Ok(settings.server_tls), warnings),
            Err(err) => (Err(err), Vec::new()),
        }
    }

    /// Parses a valid section that produces no warning.
    fn load(yaml: &str) -> Option<TlsFiles> {
        let (result, warnings) = parse(yaml);
        assert!(warnings.is_empty(), "{warnings:?}");
        result.expect("valid")
    }

    fn error(yaml: &str) -> String {
        match parse(yaml).0 {
            Ok(tls) => panic!("expected an error, got {tls:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn go_default_values_are_plain_http() {
        assert!(load("{cert: '', key: '', ca: '', clientAuth: none}").is_none());
        assert!(load("{cert: , key: , ca: , clientAuth: }").is_none());
        assert!(load("{}").is_none());
        assert!(load("~").is_none());
    }

    #[test]
    fn https_without_client_certificates() {
        let dir = files();
        let d = dir.path().display();
        for yaml in [
            format!("{{cert: {d}/server.crt, key: {d}/server.key}}"),
            format!("{{cert: {d}/server.crt, key: {d}/server.key, ca: '', clientAuth: NONE}}"),
        ] {
            let tls = load(&yaml).expect("https");
            assert_eq!(tls.cert, dir.path().join("server.crt"));
            assert_eq!(tls.key, dir.path().join("server.key"));
            assert_eq!(tls.client_ca, None);
            assert!(!tls.require_client_cert);
            assert_eq!(crate::summary::tls_line(&tls), "https (client certificates: none)");
        }
    }

    #[test]
    fn https_with_client_certificates() {
        let dir = files();
        let d = dir.path().display();
        let tls = load(&format!("{{cert: {d}/server.crt, key: {d}/server.key, ca: {d}/ca.crt, clientAuth: Verify}}"))
            .expect("https");
        assert_eq!(tls.client_ca, Some(dir.path().join("ca.crt")));
        assert!(tls.require_client_cert);
        assert_eq!(crate::summary::tls_line(&tls), "https (client certificates: verify)");
    }

    #[test]
    fn cert_and_key_go_together() {
        let dir = files();
        let d = dir.path().display();
        assert_eq!(
            error(&format!("{{cert: {d}/server.crt}}")),
            "config key 'serverTlsConfig.key' (in cfg.yaml) is required when 'serverTlsConfig.cert' is set"
        );
        assert_eq!(
            error(&format!("{{key: {d}/server.key, cert: ''}}")),
            "config key 'serverTlsConfig.cert' (in cfg.yaml) is required when 'serverTlsConfig.key' is set"
        );
    }

    #[test]
    fn verify_requires_ca_and_https() {
        let dir = files();
        let d = dir.path().display();
        assert_eq!(
            error(&format!("{{cert: {d}/server.crt, key: {d}/server.key, clientAuth: verify}}")),
            "config key 'serverTlsConfig.ca' (in cfg.yaml) is required when 'serverTlsConfig.clientAuth' is set to \
             verify"
        );
        assert_eq!(
            error(&format!("{{cert: {d}/server.crt, key: {d}/server.key, ca: '', clientAuth: verify}}")),
            "config key 'serverTlsConfig.ca' (in cfg.yaml) is required when 'serverTlsConfig.clientAuth' is set to \
             verify"
        );
        assert_eq!(
            error(&format!("{{ca: {d}/ca.crt, clientAuth: verify}}")),
            "config key 'serverTlsConfig.cert' (in cfg.yaml) is required when 'serverTlsConfig.clientAuth' is set to \
             verify"
        );
    }

    #[test]
    fn client_auth_values() {
        let auth = |text: &str| parse(&format!("{{clientAuth: '{text}'}}")).0.map(|tls| tls.is_none());
        assert_eq!(auth(" None ").ok(), Some(true));
        assert!(error("{clientAuth: VERIFY}").contains("'serverTlsConfig.ca'"));
        assert!(auth("require").is_err());
        for (yaml, value) in [("{clientAuth: require}", "\"require\""), ("{clientAuth: true}", "true")] {
            let msg = error(yaml);
            assert!(
                msg.starts_with(&format!(
                    "config key 'serverTlsConfig.clientAuth' (in cfg.yaml) has an invalid value {value}: "
                )),
                "{msg}"
            );
        }
        assert!(error("{clientAuth: require}").ends_with("expected none or verify"));
    }

    #[test]
    fn ca_without_verify_warns_and_is_ignored() {
        let dir = files();
        let d = dir.path().display();
        let warning = "config key 'serverTlsConfig.ca' in cfg.yaml has no effect while 'serverTlsConfig.clientAuth' \
                       is none (client certificates are not requested), ignored";
        let (result, warnings) =
            parse(&format!("{{cert: {d}/server.crt, key: {d}/server.key, ca: {d}/ca.crt, clientAuth: none}}"));
        let tls = result.expect("valid").expect("https");
        assert_eq!((tls.require_client_cert, tls.client_ca), (false, None));
        assert_eq!(warnings, [warning]);
        // An unused CA is not read, and without a certificate there is no HTTPS at all.
        let (result, warnings) = parse(&format!("{{ca: {d}/nope.crt}}"));
        assert!(result.expect("valid").is_none());
        assert_eq!(warnings, [warning]);
    }

    #[test]
    fn unreadable_files_name_key_and_file() {
        let dir = files();
        let d = dir.path().display();
        for (yaml, key, file, what) in [
            (
                format!("{{cert: {d}/nope.crt, key: {d}/server.key}}"),
                "cert",
                format!("{d}/nope.crt"),
                "server certificate file",
            ),
            (format!("{{cert: {d}/server.crt, key: {d}/nope.key}}"), "key", format!("{d}/nope.key"), "server key file"),
            (
                format!("{{cert: {d}/server.crt, key: {d}/server.key, ca: {d}/nope.crt, clientAuth: verify}}"),
                "ca",
                format!("{d}/nope.crt"),
                "client CA file",
            ),
        ] {
            assert_eq!(
                error(&yaml),
                format!(
                    "config key 'serverTlsConfig.{key}' (in cfg.yaml) has an invalid value \"{file}\": \
                     cannot read the {what}: No such file or directory"
                )
            );
        }
        let msg = error(&format!("{{cert: {d}, key: {d}/server.key}}"));
        assert!(msg.contains("'serverTlsConfig.cert'") && msg.ends_with("it is a directory"), "{msg}");
    }

    #[test]
    fn unknown_keys_warn_and_wrong_types_fail() {
        let (result, warnings) = parse("{cert: '', clientauth: verify}");
        assert!(result.expect("valid").is_none());
        assert_eq!(warnings, ["unknown key 'serverTlsConfig.clientauth' in cfg.yaml, ignored"]);
        let msg = error("{cert: [a]}");
        assert!(msg.starts_with("config key 'serverTlsConfig.cert' (in cfg.yaml) has an invalid value (a list)"));
        let msg = error("on");
        assert!(msg.starts_with("config key 'serverTlsConfig' (in cfg.yaml) has an invalid value \"on\""), "{msg}");
    }
}

/// `admin`.
mod admin {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-secret-token";

    /// A temporary directory with `token` (a valid token file, as `openssl rand -hex 32 > token` writes it).
    fn files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).expect("write");
        dir
    }

    fn parse(yaml: &str) -> (Result<Option<AdminSettings>, ConfigError>, Vec<String>) {
        match parse_with(&placed("admin", yaml), "cfg.yaml", &|_| None) {
            Ok((settings, warnings)) => (Ok(settings.admin), warnings),
            Err(err) => (Err(err), Vec::new()),
        }
    }

    /// The error message, checked to be one line without the token.
    fn error(yaml: &str) -> String {
        match parse(yaml).0 {
            Ok(admin) => panic!("expected an error, got {admin:?}"),
            Err(err) => {
                let msg = err.to_string();
                assert!(!msg.contains(TOKEN) && !msg.contains("secret") && !msg.contains('\n'), "{msg}");
                msg
            }
        }
    }

    /// The message for a token file at `file` (in `dir`) with the given content.
    fn token_error(dir: &tempfile::TempDir, content: &[u8]) -> String {
        let path = dir.path().join("bad-token");
        std::fs::write(&path, content).expect("write");
        let msg = error(&format!("{{port: 8082, tokenFile: {}}}", path.display()));
        let prefix =
            format!("config key 'admin.tokenFile' (in cfg.yaml) has an invalid value \"{}\": ", path.display());
        assert!(msg.starts_with(&prefix), "{msg}");
        msg[prefix.len()..].to_string()
    }

    #[test]
    fn port_and_token_file() {
        let dir = files();
        let (result, warnings) = parse(&format!("{{port: 8082, tokenFile: {}/token}}", dir.path().display()));
        assert!(warnings.is_empty(), "{warnings:?}");
        let admin = result.expect("valid").expect("on");
        let token = Secret::new(TOKEN);
        assert_eq!(admin, AdminSettings { port: 8082, token_file: dir.path().join("token"), token });
        assert!(!format!("{admin:?}").contains(TOKEN));
    }

    #[test]
    fn off_unless_configured() {
        for yaml in ["~", "{}", "{port: , tokenFile: ''}"] {
            let (result, warnings) = parse(yaml);
            assert_eq!(result.expect("valid"), None, "{yaml}");
            assert!(warnings.is_empty());
        }
    }

    #[test]
    fn port_and_token_file_go_together() {
        let dir = files();
        assert_eq!(
            error("{port: 8082}"),
            "config key 'admin.tokenFile' (in cfg.yaml) is required when 'admin.port' is set"
        );
        assert_eq!(
            error(&format!("{{tokenFile: {}/token}}", dir.path().display())),
            "config key 'admin.port' (in cfg.yaml) is required when 'admin.tokenFile' is set"
        );
    }

    #[test]
    fn port_range() {
        for (yaml, value) in [("{port: 0}", "0"), ("{port: 65536}", "65536"), ("{port: admin}", "\"admin\"")] {
            assert_eq!(
                error(yaml),
                format!(
                    "config key 'admin.port' (in cfg.yaml) has an invalid value {value}: \
                     expected a port number from 1 to 65535"
                )
            );
        }
    }

    #[test]
    fn token_file_must_hold_one_token() {
        let dir = files();
        assert_eq!(token_error(&dir, b""), "the admin token file is empty");
        assert_eq!(token_error(&dir, b" \n\t\n"), "the admin token file is empty");
        assert_eq!(
            token_error(&dir, format!("{TOKEN}\nsecret-second-line\n").as_bytes()),
            "the admin token file must hold one token: a single word, no spaces or line breaks"
        );
        assert_eq!(token_error(&dir, b"secret\xff\xfe"), "the admin token file is not text");
        assert_eq!(
            token_error(&dir, "secret".repeat(700).as_bytes()),
            "the admin token file is larger than 4096 bytes; it must hold only the token"
        );
    }

    #[test]
    fn unreadable_token_file_names_key_and_file() {
        let dir = files();
        let d = dir.path().display();
        assert_eq!(
            error(&format!("{{port: 8082, tokenFile: {d}/nope}}")),
            format!(
                "config key 'admin.tokenFile' (in cfg.yaml) has an invalid value \"{d}/nope\": \
                 cannot read the admin token file: No such file or directory"
            )
        );
        let msg = error(&format!("{{port: 8082, tokenFile: {d}}}"));
        assert!(msg.ends_with("cannot read the admin token file: it is a directory"), "{msg}");
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).expect("mkfifo");
        let msg = error(&format!("{{port: 8082, tokenFile: {}}}", fifo.display()));
        assert!(msg.ends_with("cannot read the admin token file: it is not a regular file (a FIFO, socket or device)"));
    }

    #[test]
    fn unknown_keys_warn() {
        let dir = files();
        let (result, warnings) = parse(&format!("{{port: 8082, tokenFile: {}/token, token: x}}", dir.path().display()));
        assert!(result.expect("valid").is_some());
        assert_eq!(warnings, ["unknown key 'admin.token' in cfg.yaml, ignored"]);
    }
}

/// The cache's life.
mod life {
    use super::*;

    fn parse(yaml: &str) -> Result<(Settings, Vec<String>), ConfigError> {
        parse_with(yaml, "cfg.yaml", &|_| None)
    }

    /// A schedule's rule, limit, dry run, and frequency.
    fn prune_parts(prune: &actors::PruneSchedule) -> (String, Option<usize>, bool, Duration) {
        (format!("{:?}", prune.request.rules), prune.request.limit, prune.request.dry_run, prune.every)
    }

    #[test]
    fn keys_load() {
        let (life, warnings) = parse(
            "maxCacheSize: 50Gi\npinned: ['docker.io/library/*', 'registry.k8s.io/pause:*']\n\
             pruneConfig: {enabled: true, type: created, duration: 7d, frequency: 1h, count: 5, dryrun: true}\n\
             preloadImages: /p/images.txt\nimageFile: /p/x.tar\nos: linux\narch: arm64\n",
        )
        .expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(life.mirror.lifecycle.max_cache_size, Some(50 << 30));
        assert_eq!(
            life.mirror.lifecycle.pins.patterns().collect::<Vec<_>>(),
            ["docker.io/library/*", "registry.k8s.io/pause:*"]
        );
        let prune = life.mirror.lifecycle.prune.expect("enabled");
        let rules = format!("{:?}", [actors::PruneRule::CreatedMoreThan(Duration::from_secs(7 * 86400))]);
        assert_eq!(prune_parts(&prune), (rules, Some(5), true, Duration::from_secs(3600)));
        assert_eq!(life.preload_images.as_deref(), Some("/p/images.txt"));
        assert_eq!(life.image_file, Some(PathBuf::from("/p/x.tar")));
        assert_eq!((life.platform.os.as_deref(), life.platform.arch.as_deref()), (Some("linux"), Some("arm64")));
    }

    #[test]
    fn go_defaults_and_off_values() {
        let (life, _) = parse(
            "maxCacheSize: ''\npruneConfig: {enabled: false, type: accessed, duration: 30d, frequency: 1d, count: -1, \
             expr: '', dryRun: false}\n",
        )
        .expect("valid");
        assert!(same(&life.mirror.lifecycle, &actors::LifecycleSettings::default()));
        assert_eq!((life.preload_images, life.image_file, life.platform), (None, None, Default::default()));
        let (life, _) = parse("maxCacheSize: 0\npruneConfig: {enabled: true}\n").expect("valid");
        assert_eq!(life.mirror.lifecycle.max_cache_size, None);
        let prune = life.mirror.lifecycle.prune.expect("on");
        let rules = format!("{:?}", [actors::PruneRule::NotPulledFor(Duration::from_secs(30 * 24 * 3600))]);
        assert_eq!(prune_parts(&prune), (rules, None, false, Duration::from_secs(24 * 3600)));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (yaml, key) in [
            ("maxCacheSize: lots", "maxCacheSize"),
            ("pinned: docker.io/library/*", "pinned"),
            ("pinned: [alpine]", "pinned[0]"),
            ("pruneConfig: {enabled: true, type: size}", "pruneConfig.type"),
            ("pruneConfig: {enabled: true, count: 0}", "pruneConfig.count"),
            ("pruneConfig: {enabled: true, type: pattern, expr: '(unclosed'}", "pruneConfig.expr"),
            ("pruneConfig: {enabled: true, frequency: soon}", "pruneConfig.frequency"),
        ] {
            let err = parse(yaml).expect_err(yaml).to_string();
            assert!(err.starts_with(&format!("config key '{key}' (in cfg.yaml)")), "{yaml}: {err}");
        }
        let err = parse("pruneConfig: {enabled: true, type: pattern}").expect_err("no expr").to_string();
        assert!(err.contains("'pruneConfig.expr'"), "{err}");
    }
}

/// `storage` and `cluster`.
mod storage {
    use super::*;

    use actors::{ClusterSettings, StorageChoice};

    /// The environment of a replica: credentials, a pod address, a host name.
    fn env(name: &str) -> Option<String> {
        let value = match name {
            "AWS_ACCESS_KEY_ID" => "the-key-id",
            "AWS_SECRET_ACCESS_KEY" => "the-secret",
            "POD_IP" => "10.0.0.9",
            "HOSTNAME" => "pod-a",
            _ => return None,
        };
        Some(value.to_string())
    }

    fn parse_in(text: &str, env: &error::EnvLookup) -> Result<(StorageChoice, Option<ClusterSettings>), String> {
        let settings = parse_with(text, "f.yaml", env).map_err(|e| e.to_string())?.0;
        Ok((settings.mirror.storage, settings.mirror.cluster))
    }

    fn parse(text: &str) -> Result<(StorageChoice, Option<ClusterSettings>), String> {
        parse_in(text, &env)
    }

    const S3: &str = "storage:\n  type: s3\n  s3:\n    endpoint: http://127.0.0.1:3900/\n    bucket: b\n";

    #[test]
    fn storage_and_cluster() {
        let (storage, cluster) = parse("port: 1\n").expect("default");
        assert!(matches!(storage, StorageChoice::Filesystem) && cluster.is_none());
        let (storage, cluster) = parse(
            "storage:\n  type: s3\n  s3:\n    endpoint: http://127.0.0.1:3900/\n    bucket: b\n    region: garage\n    \
             prefix: /m/\n    pathStyle: true\n    localCacheSize: 2Gi\n\
             cluster:\n  peers: [http://10.0.0.1:8080, http://10.0.0.2:8080]\n  self: http://10.0.0.1:8080\n",
        )
        .expect("s3 and peers");
        let StorageChoice::S3(s3) = storage else { panic!("s3") };
        assert_eq!((s3.endpoint.as_str(), s3.bucket.as_str(), s3.prefix.as_str()), ("http://127.0.0.1:3900", "b", "m"));
        assert!(s3.path_style);
        assert_eq!(s3.local_cache_size, 2 << 30);
        let cluster = cluster.expect("cluster");
        assert_eq!(cluster.peers.len(), 2);
        assert_eq!(cluster.me, "http://10.0.0.1:8080");
        assert_eq!(s3.replica, cluster.me, "a replica is named by its URL in a cluster");
    }

    #[test]
    fn credentials_replica_and_own_url() {
        let (storage, _) = parse(S3).expect("credentials from the environment");
        let StorageChoice::S3(s3) = storage else { panic!("s3") };
        assert_eq!((s3.access_key_id.as_str(), s3.secret_access_key.as_str()), ("the-key-id", "the-secret"));
        assert_eq!((s3.region.as_str(), s3.local_cache_size, s3.replica.as_str()), ("us-east-1", 10 << 30, "pod-a"));
        let dir = tempfile::tempdir().expect("temp dir");
        let id = dir.path().join("id");
        std::fs::write(&id, "file-id\n").expect("write");
        let text = format!("{S3}    accessKeyIdFile: {}\n", id.display());
        let (StorageChoice::S3(s3), _) = parse(&text).expect("from the file") else { panic!("s3") };
        assert_eq!((s3.access_key_id.as_str(), s3.secret_access_key.as_str()), ("file-id", "the-secret"));
        let text = format!("{S3}    secretAccessKeyFile: {}\n", dir.path().join("none").display());
        assert!(parse(&text).expect_err("unreadable").starts_with("config key 'storage.s3.secretAccessKeyFile'"));
        let err = parse_in(S3, &|_| None).expect_err("no credentials");
        assert!(err.contains("'storage.s3.accessKeyIdFile'") && err.contains("AWS_ACCESS_KEY_ID"), "{err}");

        let peers = format!("{S3}cluster:\n  dns: replicas\n  port: 9000\n  scheme: https\n");
        let cluster = parse(&peers).expect("POD_IP").1.expect("cluster");
        assert_eq!(cluster.me, "https://10.0.0.9:9000");
        let dns = cluster.dns.expect("dns");
        assert_eq!((dns.name.as_str(), dns.scheme.as_str(), dns.port), ("replicas", "https", 9000));
        let err = parse_in(&format!("{S3}cluster:\n  dns: replicas\n"), &|name| env(name).filter(|_| name != "POD_IP"))
            .expect_err("no own URL");
        assert!(err.contains("'cluster.self'") && err.contains("POD_IP"), "{err}");
    }

    #[test]
    fn errors_name_the_key() {
        for (yaml, key) in [
            ("storage:\n  type: nfs\n", "storage.type"),
            ("storage:\n  type: s3\n", "storage.s3"),
            ("storage:\n  type: s3\n  s3:\n    bucket: b\n", "storage.s3.endpoint"),
            ("storage:\n  type: s3\n  s3:\n    endpoint: ftp://x\n    bucket: b\n", "storage.s3.endpoint"),
            ("cluster:\n  self: http://a:1\n", "cluster.peers"),
            ("cluster:\n  peers: [http://a:1]\n  dns: x\n", "cluster.peers"),
            ("cluster:\n  peers: [nonsense]\n", "cluster.peers[0]"),
            // Replicas need a shared bucket, even when nothing else is missing; a bucket has no maxCacheSize.
            ("cluster:\n  peers: [http://a:1]\n  self: http://a:1\n", "'storage.type' (in f.yaml) is required when"),
            (&format!("maxCacheSize: 1Gi\n{S3}"), "'maxCacheSize' and 'storage.type'"),
        ] {
            let err = parse(yaml).expect_err(yaml);
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }
}
