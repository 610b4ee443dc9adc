//! The `serverTlsConfig` section: HTTPS on the main port (`cert` + `key`) and, with `clientAuth: verify`, client
//! certificates that must be signed by `ca`. The files must exist and be readable when the config is loaded; parsing
//! them (and reloading them when they change) is the TLS code's job. A section whose values are all empty or `none`
//! (the Go server's default config) means plain HTTP.

use std::fmt;
use std::path::PathBuf;

use serde_yaml::Value;

use super::error::ConfigError;
use super::tls::check_readable;
use super::yaml::Walker;

const SERVER_TLS_KEYS: &[&str] = &["cert", "key", "ca", "clientAuth"];

/// Whether clients must present a certificate (`serverTlsConfig.clientAuth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is requested.
    #[default]
    None,
    /// A client certificate signed by `serverTlsConfig.ca` is required; a client without one fails the handshake.
    Verify,
}

impl ClientAuth {
    /// Parses `none` or `verify`, in any letter case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Some(ClientAuth::None),
            "verify" => Some(ClientAuth::Verify),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Verify => "verify",
        }
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// HTTPS on the main port. Only paths: the server's TLS code loads the files, and loads them again when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// Server certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Private key (PEM) of the certificate.
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to; set exactly when `client_auth` is `Verify`
    /// (a `ca` given with `clientAuth: none` is ignored with a warning).
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// `https (client certificates: verify)`, for the startup banner.
impl fmt::Display for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https (client certificates: {})", self.client_auth)
    }
}

/// Reads the `serverTlsConfig` value at key path `path`: `None` (plain HTTP) when neither `cert` nor `key` is set.
pub fn parse_server_tls(walker: &mut Walker, path: &str, value: &Value) -> Result<Option<ServerTls>, ConfigError> {
    let section = walker.section(path, value, SERVER_TLS_KEYS)?;
    let cert = walker.string(&section, "cert")?.map(PathBuf::from);
    let key = walker.string(&section, "key")?.map(PathBuf::from);
    let ca = walker.string(&section, "ca")?.map(PathBuf::from);
    let client_auth = match walker.string(&section, "clientAuth")? {
        None => ClientAuth::None,
        Some(text) => ClientAuth::parse(&text).ok_or_else(|| {
            walker.invalid(&section.key("clientAuth"), &Value::String(text.clone()), "expected none or verify")
        })?,
    };
    match (&cert, &key) {
        (Some(_), None) => return Err(walker.required_by(&section.key("key"), &section.key("cert"), "")),
        (None, Some(_)) => return Err(walker.required_by(&section.key("cert"), &section.key("key"), "")),
        _ => {}
    }
    if client_auth == ClientAuth::Verify {
        if ca.is_none() {
            return Err(walker.required_by(&section.key("ca"), &section.key("clientAuth"), " to verify"));
        }
        // Client certificates are requested in the TLS handshake: no HTTPS, no client certificates.
        if cert.is_none() {
            return Err(walker.required_by(&section.key("cert"), &section.key("clientAuth"), " to verify"));
        }
    }
    if client_auth == ClientAuth::None && ca.is_some() {
        let message = format!(
            "config key '{}' in {} has no effect while '{}' is none (client certificates are not requested), ignored",
            section.key("ca"),
            walker.file,
            section.key("clientAuth")
        );
        walker.warn(message);
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        return Ok(None);
    };
    check_readable(walker, &section, "cert", &cert, "server certificate file")?;
    check_readable(walker, &section, "key", &key, "server key file")?;
    let client_ca = match client_auth {
        ClientAuth::None => None,
        ClientAuth::Verify => ca,
    };
    if let Some(ca) = &client_ca {
        check_readable(walker, &section, "ca", ca, "client CA file")?;
    }
    Ok(Some(ServerTls { cert, key, client_ca, client_auth }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary directory with readable `server.crt`, `server.key` and `ca.crt` (contents are not parsed here).
    fn files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["server.crt", "server.key", "ca.crt"] {
            std::fs::write(dir.path().join(name), "not parsed at load time").expect("write");
        }
        dir
    }

    fn parse(yaml: &str) -> (Result<Option<ServerTls>, ConfigError>, Vec<String>) {
        let value: Value = serde_yaml::from_str(yaml).expect("test YAML parses");
        let mut walker = Walker::new("cfg.yaml");
        let result = parse_server_tls(&mut walker, "serverTlsConfig", &value);
        (result, walker.warnings)
    }

    /// Parses a valid section that produces no warning.
    fn load(yaml: &str) -> Option<ServerTls> {
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
        assert_eq!(load("{cert: '', key: '', ca: '', clientAuth: none}"), None);
        assert_eq!(load("{cert: , key: , ca: , clientAuth: }"), None);
        assert_eq!(load("{}"), None);
        assert_eq!(load("~"), None);
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
            assert_eq!(tls.client_auth, ClientAuth::None);
            assert_eq!(tls.to_string(), "https (client certificates: none)");
        }
    }

    #[test]
    fn https_with_client_certificates() {
        let dir = files();
        let d = dir.path().display();
        let tls = load(&format!("{{cert: {d}/server.crt, key: {d}/server.key, ca: {d}/ca.crt, clientAuth: Verify}}"))
            .expect("https");
        assert_eq!(tls.client_ca, Some(dir.path().join("ca.crt")));
        assert_eq!(tls.client_auth, ClientAuth::Verify);
        assert_eq!(tls.to_string(), "https (client certificates: verify)");
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
        assert_eq!(ClientAuth::parse(" None "), Some(ClientAuth::None));
        assert_eq!(ClientAuth::parse("VERIFY"), Some(ClientAuth::Verify));
        assert_eq!(ClientAuth::parse("require"), None);
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
        assert_eq!((tls.client_auth, tls.client_ca), (ClientAuth::None, None));
        assert_eq!(warnings, [warning]);
        // An unused CA is not read, and without a certificate there is no HTTPS at all.
        let (result, warnings) = parse(&format!("{{ca: {d}/nope.crt}}"));
        assert_eq!(result.expect("valid"), None);
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
        assert_eq!(result.expect("valid"), None);
        assert_eq!(warnings, ["unknown key 'serverTlsConfig.clientauth' in cfg.yaml, ignored"]);
        let msg = error("{cert: [a]}");
        assert!(msg.starts_with("config key 'serverTlsConfig.cert' (in cfg.yaml) has an invalid value (a list)"));
        let msg = error("on");
        assert!(msg.starts_with("config key 'serverTlsConfig' (in cfg.yaml) has an invalid value \"on\""), "{msg}");
    }
}
