//! Tests of the `registries` entries, their `auth` and their `tls` (ported from the former `registry.rs`,
//! `auth.rs` and `tls.rs` tests), each run through the whole reading and validation of a config file.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// The list and its entries.
mod registry {
    use super::*;

    fn parse(text: &str) -> (Result<Vec<UpstreamSpec>, ConfigError>, Vec<String>) {
        match parse_with(&placed("registries", text), "cfg.yaml", &|_| None) {
            Ok((settings, warnings)) => (Ok(settings.mirror.upstreams), warnings),
            Err(err) => (Err(err), Vec::new()),
        }
    }

    fn error(text: &str) -> String {
        match parse(text).0 {
            Ok(list) => panic!("expected an error, got {list:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn allow_and_deny_lists_compile_and_bad_patterns_name_their_key() {
        let list = parse("- name: quay.io\n  allow: [org/**]\n  deny: [org/secret/*]\n").0.expect("valid");
        let access = &list[0].access;
        assert_eq!(access.check(&"org/a/b".parse().expect("repo")), Ok(()));
        assert!(access.check(&"org/secret/x".parse().expect("repo")).is_err(), "deny wins");
        assert!(access.check(&"other/x".parse().expect("repo")).is_err(), "not allowed");
        let msg = error("- name: quay.io\n  deny: [org/*, 'a//b']\n");
        assert!(msg.starts_with("config key 'registries[0].deny[1]'") && msg.contains("\"a//b\""), "{msg}");
        assert!(msg.contains("empty path segment"), "{msg}");
        let msg = error("- name: a.io\n- name: quay.io\n  allow: ['x/***']\n");
        assert!(msg.starts_with("config key 'registries[1].allow[0]'") && msg.contains("'***'"), "{msg}");
        let msg = error("- name: quay.io\n  allow: [x/, ~]\n");
        assert!(msg.starts_with("config key 'registries[0].allow[0]'"), "{msg}");
        let msg = error("- name: quay.io\n  allow: [x, ~]\n");
        assert!(msg.starts_with("config key 'registries[0].allow[1]'") && msg.contains("null"), "{msg}");
        let msg = error("- name: docker.io\n  deny: [library/*, nginx]\n");
        assert!(msg.starts_with("config key 'registries[0].deny[1]'") && msg.contains("library/nginx"), "{msg}");
        let msg = error("- name: quay.io\n  deny: org/*\n");
        assert!(msg.contains("'registries[0].deny'") && msg.contains("expected a list"), "{msg}");
        let list = parse("- name: quay.io\n  allow: []\n").0.expect("valid");
        assert!(list[0].access.is_open(), "an empty allow list allows everything not denied");
    }

    #[test]
    fn full_entry() {
        let (result, warnings) = parse(
            "- name: localhost:5000\n  scheme: HTTP\n  endpoint: http://127.0.0.1:5000/\n  \
             description: local\n  tls: {insecureSkipVerify: false}\n",
        );
        let list = result.expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(list[0].base_url, "http://127.0.0.1:5000");
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
        assert!(matches!(registry.credentials, Credentials::Anonymous));
        assert!(same(&registry.tls, &TlsOptions::default()));
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
        let base = |credentials, tls| UpstreamSpec {
            namespace: "my-registry:5000".parse().expect("a namespace"),
            base_url: "https://10.0.0.5:5000".to_string(),
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            tag_ttl: None,
            bandwidth: None,
            access: Default::default(),
            rate_limit_reserve: None,
            credentials,
            tls,
        };
        let anonymous = base(Credentials::Anonymous, TlsOptions::default());
        assert_eq!(upstream_line(&anonymous), "my-registry:5000 -> https://10.0.0.5:5000");
        let mutual = TlsOptions {
            ca_file: Some(PathBuf::from("/my/ca.crt")),
            ca_only: true,
            client_cert: Some((PathBuf::from("/my/client.cert"), PathBuf::from("/my/client.key"))),
            insecure_skip_verify: false,
        };
        let password = "thepass".to_string();
        let mut basic = base(Credentials::Basic { user: "theuser".to_string(), password }, mutual);
        basic.max_concurrent = 8;
        assert_eq!(
            upstream_line(&basic),
            "my-registry:5000 -> https://10.0.0.5:5000 (auth: basic (user theuser)) (mTLS) (ca /my/ca.crt) (caOnly) \
             (maxConcurrent 8)"
        );
        assert!(!format!("{basic:?}").contains("thepass"));
        let helper = Credentials::Helper { name: "ecr-login".to_string(), cache_time: Duration::from_secs(300) };
        assert_eq!(
            upstream_line(&base(helper, TlsOptions::default())),
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
        assert!(same(&registry.tls, &TlsOptions::default()));
        assert!(matches!(registry.credentials, Credentials::Anonymous));
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

/// `registries[].auth`.
mod auth {
    use super::*;

    const PASSWORD: &str = "s3cr3t-Pa55";

    fn env(name: &str) -> Option<String> {
        match name {
            "REG_PASSWORD" => Some(PASSWORD.to_string()),
            "EMPTY_VAR" => Some(String::new()),
            _ => None,
        }
    }

    fn parse(yaml: &str) -> (Result<Credentials, ConfigError>, Vec<String>) {
        match parse_with(&placed("registries[0].auth", yaml), "cfg.yaml", &env) {
            Ok((settings, warnings)) => (Ok(settings.mirror.upstreams[0].credentials.clone()), warnings),
            Err(err) => (Err(err), Vec::new()),
        }
    }

    /// The same credentials, password included (their `Debug` hides it).
    #[track_caller]
    fn assert_auth(got: Credentials, expected: Credentials) {
        let same = match (&got, &expected) {
            (Credentials::Anonymous, Credentials::Anonymous) => true,
            (Credentials::Basic { user, password }, Credentials::Basic { user: u, password: p }) => {
                user == u && password == p
            }
            (Credentials::Helper { name, cache_time }, Credentials::Helper { name: n, cache_time: c }) => {
                name == n && cache_time == c
            }
            _ => false,
        };
        assert!(same, "{got:?} is not {expected:?}");
    }

    fn load(yaml: &str) -> Credentials {
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

    fn basic(user: &str) -> Credentials {
        Credentials::Basic { user: user.to_string(), password: PASSWORD.to_string() }
    }

    #[test]
    fn anonymous_forms() {
        assert_auth(load("~"), Credentials::Anonymous);
        assert_auth(load("{}"), Credentials::Anonymous);
        assert_auth(
            load(
                "{user: '', password: '', passwordFromEnv: , helper: '', \
                 token: {provider: '', providerOpts: '', expiry: ''}}",
            ),
            Credentials::Anonymous,
        );
    }

    #[test]
    fn basic_with_inline_password() {
        assert_auth(load(&format!("{{user: theuser, password: '{PASSWORD}'}}")), basic("theuser"));
    }

    #[test]
    fn basic_with_password_from_env() {
        assert_auth(load("{user: theuser, passwordFromEnv: REG_PASSWORD, password: ''}"), basic("theuser"));
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
        assert_auth(
            load("{helper: ecr-login}"),
            Credentials::Helper { name: "ecr-login".to_string(), cache_time: DEFAULT_HELPER_CACHE_TIME },
        );
        assert_auth(
            load("{helper: gcr, helperCacheTime: 30s, user: ''}"),
            Credentials::Helper { name: "gcr".to_string(), cache_time: Duration::from_secs(30) },
        );
        let shown = |auth: &str| parse_with(&placed("registries[0].auth", auth), "cfg.yaml", &env).expect("valid").0;
        assert_eq!(
            upstream_line(&shown("{helper: acr-env}").mirror.upstreams[0]),
            "a.io -> https://a.io (auth: helper acr-env)"
        );
        let basic_text = format!("{{user: theuser, password: '{PASSWORD}'}}");
        assert!(upstream_line(&shown(&basic_text).mirror.upstreams[0]).ends_with("(auth: basic (user theuser))"));
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
        assert_auth(
            result.expect("valid"),
            Credentials::Helper { name: "ecr-login".to_string(), cache_time: DEFAULT_HELPER_CACHE_TIME },
        );
        assert_eq!(
            warnings,
            ["config key 'registries[0].auth.token' in cfg.yaml (provider ecr) is mapped to helper 'ecr-login': \
              install docker-credential-ecr-login in the image (see docs/configuration.md)"]
        );

        let (result, warnings) =
            parse("{token: {provider: ECR, providerOpts: 'profile=default,region=us-south-1', expiry: 6h}}");
        assert_auth(
            result.expect("valid"),
            Credentials::Helper { name: "ecr-login".to_string(), cache_time: Duration::from_secs(6 * 3600) },
        );
        assert_eq!(warnings.len(), 2);
        assert!(warnings[1].starts_with("config key 'registries[0].auth.token.providerOpts' in cfg.yaml is ignored"));
        assert!(!warnings[1].contains("us-south-1"));

        let (result, _) = parse("{token: {provider: ecr, expiry: ''}, helperCacheTime: 1m}");
        assert_auth(
            result.expect("valid"),
            Credentials::Helper { name: "ecr-login".to_string(), cache_time: Duration::from_secs(60) },
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
        let settings = parse_with(
            &placed("registries[0].auth", &format!("{{user: theuser, password: '{PASSWORD}'}}")),
            "cfg.yaml",
            &env,
        )
        .expect("valid")
        .0;
        let text =
            format!("{:?} {:#?} {}", basic("theuser"), basic("theuser"), upstream_line(&settings.mirror.upstreams[0]));
        assert!(!text.contains(PASSWORD) && text.contains("***"), "{text}");
    }
}

/// `registries[].tls`.
mod tls {
    use super::*;

    /// A temporary directory with readable `ca.pem`, `client.pem` and `client.key` (contents are not parsed here).
    fn files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["ca.pem", "client.pem", "client.key"] {
            std::fs::write(dir.path().join(name), "not parsed at load time").expect("write");
        }
        dir
    }

    fn parse(yaml: &str) -> (Result<TlsOptions, ConfigError>, Vec<String>) {
        match parse_with(&placed("registries[0].tls", yaml), "cfg.yaml", &|_| None) {
            Ok((settings, warnings)) => (Ok(settings.mirror.upstreams[0].tls.clone()), warnings),
            Err(err) => (Err(err), Vec::new()),
        }
    }

    fn error(yaml: &str) -> String {
        match parse(yaml).0 {
            Ok(tls) => panic!("expected an error, got {tls:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn all_keys_load() {
        let dir = files();
        let d = dir.path().display();
        let (result, warnings) =
            parse(&format!("{{ca: {d}/ca.pem, caOnly: true, cert: {d}/client.pem, key: {d}/client.key}}"));
        let tls = result.expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(tls.ca_file, Some(dir.path().join("ca.pem")));
        assert!(tls.ca_only && tls.client_cert.is_some());
        assert_eq!(tls.client_cert, Some((dir.path().join("client.pem"), dir.path().join("client.key"))));
        assert!(!tls.insecure_skip_verify);
    }

    #[test]
    fn default_values_are_no_tls_options() {
        let (result, warnings) = parse("{ca: '', caOnly: false, cert: '', key: , insecureSkipVerify: false}");
        assert!(same(&result.expect("valid"), &TlsOptions::default()));
        assert!(warnings.is_empty());
        assert!(same(&parse("~").0.expect("null section"), &TlsOptions::default()));
    }

    #[test]
    fn cert_and_key_go_together() {
        let dir = files();
        let d = dir.path().display();
        assert_eq!(
            error(&format!("{{cert: {d}/client.pem}}")),
            "config key 'registries[0].tls.key' (in cfg.yaml) is required when 'registries[0].tls.cert' is set"
        );
        assert_eq!(
            error(&format!("{{key: {d}/client.key, cert: ''}}")),
            "config key 'registries[0].tls.cert' (in cfg.yaml) is required when 'registries[0].tls.key' is set"
        );
    }

    #[test]
    fn ca_only_requires_ca() {
        assert_eq!(
            error("{caOnly: true}"),
            "config key 'registries[0].tls.ca' (in cfg.yaml) is required when 'registries[0].tls.caOnly' is set"
        );
        let msg = error("{caOnly: 'yes'}");
        assert!(msg.contains("'registries[0].tls.caOnly'") && msg.contains("expected true or false"), "{msg}");
    }

    #[test]
    fn unreadable_files_name_key_and_file() {
        let dir = files();
        let d = dir.path().display();
        for (yaml, key, file, what) in [
            (format!("{{ca: {d}/nope.pem}}"), "ca", format!("{d}/nope.pem"), "CA file"),
            (
                format!("{{cert: {d}/nope.pem, key: {d}/client.key}}"),
                "cert",
                format!("{d}/nope.pem"),
                "client certificate file",
            ),
            (format!("{{cert: {d}/client.pem, key: {d}/nope.key}}"), "key", format!("{d}/nope.key"), "client key file"),
        ] {
            assert_eq!(
                error(&yaml),
                format!(
                    "config key 'registries[0].tls.{key}' (in cfg.yaml) has an invalid value \"{file}\": \
                     cannot read the {what}: No such file or directory"
                )
            );
        }
        let msg = error(&format!("{{ca: {d}}}"));
        assert!(msg.contains("'registries[0].tls.ca'") && msg.ends_with("cannot read the CA file: it is a directory"));
    }

    #[test]
    fn insecure_skip_verify_warns() {
        let (result, warnings) = parse("{insecureSkipVerify: true}");
        assert!(result.expect("accepted").insecure_skip_verify);
        assert_eq!(
            warnings,
            ["TLS certificate verification is disabled for registry 'a.io' \
              (registries[0].tls.insecureSkipVerify in cfg.yaml)"]
        );
    }
}
