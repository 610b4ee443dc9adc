//! The `tls` section of a `registries` entry: an extra CA (optionally the only one trusted), a client certificate
//! and key for mutual TLS, and skipping verification. The files must exist and be readable when the config is
//! loaded; parsing them is the TLS code's job.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::error::{io_reason, ConfigError};
use super::files::open_regular;
use super::yaml::{Section, Walker};

const TLS_KEYS: &[&str] = &["ca", "caOnly", "cert", "key", "insecureSkipVerify"];

/// TLS options toward one upstream registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Extra CA certificates (PEM) trusted for this registry, in addition to the system roots.
    pub ca: Option<PathBuf>,
    /// Trust only `ca`, not the system roots (`caOnly`; requires `ca`).
    pub ca_only: bool,
    /// Client certificate (PEM) for mutual TLS; set exactly when `key` is.
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    pub key: Option<PathBuf>,
    /// Skip certificate verification (dangerous; the Go server allows it, so do we).
    pub insecure_skip_verify: bool,
}

impl TlsSettings {
    /// Whether a client certificate is presented (mutual TLS).
    pub fn is_mutual(&self) -> bool {
        self.cert.is_some()
    }
}

/// Reads a registry's `tls` value at key path `path`; `registry` names the registry in the warning for
/// `insecureSkipVerify`.
pub fn parse_tls(walker: &mut Walker, path: &str, value: &Value, registry: &str) -> Result<TlsSettings, ConfigError> {
    let section = walker.section(path, value, TLS_KEYS)?;
    let ca = walker.string(&section, "ca")?.map(PathBuf::from);
    let ca_only = walker.boolean(&section, "caOnly")?;
    let cert = walker.string(&section, "cert")?.map(PathBuf::from);
    let key = walker.string(&section, "key")?.map(PathBuf::from);
    let insecure_skip_verify = walker.boolean(&section, "insecureSkipVerify")?;
    if ca_only && ca.is_none() {
        return Err(walker.required_by(&section.key("ca"), &section.key("caOnly"), ""));
    }
    match (&cert, &key) {
        (Some(_), None) => return Err(walker.required_by(&section.key("key"), &section.key("cert"), "")),
        (None, Some(_)) => return Err(walker.required_by(&section.key("cert"), &section.key("key"), "")),
        _ => {}
    }
    for (name, file, what) in
        [("ca", &ca, "CA file"), ("cert", &cert, "client certificate file"), ("key", &key, "client key file")]
    {
        if let Some(file) = file {
            check_readable(walker, &section, name, file, what)?;
        }
    }
    if insecure_skip_verify {
        let message = format!(
            "TLS certificate verification is disabled for registry '{registry}' ({} in {})",
            section.key("insecureSkipVerify"),
            walker.file
        );
        walker.warn(message);
    }
    Ok(TlsSettings { ca, ca_only, cert, key, insecure_skip_verify })
}

/// Fails unless `file` (the value of key `name`) is a regular file that can be opened for reading; `what` names the
/// file in the message ("CA file").
pub(super) fn check_readable(
    walker: &Walker,
    section: &Section<'_>,
    name: &str,
    file: &Path,
    what: &str,
) -> Result<(), ConfigError> {
    open_regular(file).map(drop).map_err(|err| {
        walker.invalid(
            &section.key(name),
            &Value::String(file.display().to_string()),
            format!("cannot read the {what}: {}", io_reason(&err)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary directory with readable `ca.pem`, `client.pem` and `client.key` (contents are not parsed here).
    fn files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["ca.pem", "client.pem", "client.key"] {
            std::fs::write(dir.path().join(name), "not parsed at load time").expect("write");
        }
        dir
    }

    fn parse(yaml: &str) -> (Result<TlsSettings, ConfigError>, Vec<String>) {
        let value: Value = serde_yaml::from_str(yaml).expect("test YAML parses");
        let mut walker = Walker::new("cfg.yaml");
        let result = parse_tls(&mut walker, "registries[0].tls", &value, "a.io");
        (result, walker.warnings)
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
        assert_eq!(tls.ca, Some(dir.path().join("ca.pem")));
        assert!(tls.ca_only && tls.is_mutual());
        assert_eq!(tls.cert, Some(dir.path().join("client.pem")));
        assert_eq!(tls.key, Some(dir.path().join("client.key")));
        assert!(!tls.insecure_skip_verify);
    }

    #[test]
    fn default_values_are_no_tls_options() {
        let (result, warnings) = parse("{ca: '', caOnly: false, cert: '', key: , insecureSkipVerify: false}");
        assert_eq!(result.expect("valid"), TlsSettings::default());
        assert!(warnings.is_empty());
        assert_eq!(parse("~").0.expect("null section"), TlsSettings::default());
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
