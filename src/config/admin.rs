//! The `admin` section: the admin API listener, off unless `port` is set. Every admin request needs the bearer token
//! held in `tokenFile`, so the file is checked when the config is loaded: readable, one token, not empty. Its content
//! never appears in a message, a warning or the banner; `main` reads it again (with `read_token`) when it starts.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::error::{io_reason, ConfigError};
use super::files::open_regular;
use super::yaml::{Section, Walker};

const ADMIN_KEYS: &[&str] = &["port", "tokenFile"];

/// A token file larger than this is refused: it is not a token file (a certificate, a log, `/dev/zero`).
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// The admin API listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Listen port, on the same `host` as the main port.
    pub port: u16,
    /// File holding the bearer token every admin request must present; the admin listener reads it when it starts.
    pub token_file: PathBuf,
}

/// Reads the `admin` value at key path `path`: `None` (no admin listener) when neither key is set.
pub fn parse_admin(walker: &mut Walker, path: &str, value: &Value) -> Result<Option<AdminSettings>, ConfigError> {
    let section = walker.section(path, value, ADMIN_KEYS)?;
    let port = walker.port(&section, "port", false)?;
    let token_file = walker.string(&section, "tokenFile")?.map(PathBuf::from);
    match (port, token_file) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(walker.required_by(&section.key("tokenFile"), &section.key("port"), "")),
        (None, Some(_)) => Err(walker.required_by(&section.key("port"), &section.key("tokenFile"), "")),
        (Some(port), Some(token_file)) => {
            check_token_file(walker, &section, &token_file)?;
            Ok(Some(AdminSettings { port, token_file }))
        }
    }
}

/// Fails unless `file` holds a usable admin token (see `read_token`). Messages name the file, never its content.
fn check_token_file(walker: &Walker, section: &Section<'_>, file: &Path) -> Result<(), ConfigError> {
    read_token(file)
        .map(drop)
        .map_err(|reason| walker.invalid(&section.key("tokenFile"), &Value::String(file.display().to_string()), reason))
}

/// The token in `file`: a readable regular file (never a FIFO, which would block) of at most
/// `MAX_TOKEN_FILE_BYTES` holding one token (surrounding white space, such as the newline `openssl rand -hex 32 >
/// FILE` writes, does not count). The error says what is wrong, never what the file holds.
pub fn read_token(file: &Path) -> Result<String, String> {
    let mut bytes = Vec::new();
    let read = open_regular(file).and_then(|f| f.take(MAX_TOKEN_FILE_BYTES + 1).read_to_end(&mut bytes));
    read.map_err(|err| format!("cannot read the admin token file: {}", io_reason(&err)))?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(format!(
            "the admin token file is larger than {MAX_TOKEN_FILE_BYTES} bytes; it must hold only the token"
        ));
    }
    match std::str::from_utf8(&bytes).map(str::trim) {
        Err(_) => Err("the admin token file is not text".to_string()),
        Ok("") => Err("the admin token file is empty".to_string()),
        Ok(token) if token.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err("the admin token file must hold one token: a single word, no spaces or line breaks".to_string())
        }
        Ok(token) => Ok(token.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-secret-token";

    /// A temporary directory with `token` (a valid token file, as `openssl rand -hex 32 > token` writes it).
    fn files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).expect("write");
        dir
    }

    fn parse(yaml: &str) -> (Result<Option<AdminSettings>, ConfigError>, Vec<String>) {
        let value: Value = serde_yaml::from_str(yaml).expect("test YAML parses");
        let mut walker = Walker::new("cfg.yaml");
        let result = parse_admin(&mut walker, "admin", &value);
        (result, walker.warnings)
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
        assert_eq!(admin, AdminSettings { port: 8082, token_file: dir.path().join("token") });
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
