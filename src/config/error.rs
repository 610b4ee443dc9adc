//! The configuration error type: every way building the settings can fail, each rendered as one line that names
//! the file, the key path and the offending value where there is one; and `Check`, which builds them for one file.

use std::fmt::Display;
use std::io;
use std::path::Path;

use serde_yaml::Value;

use super::kinds::{Kind, Val};
use crate::files::{io_reason, open_regular};

/// Why the settings could not be built. `Display` is the one-line message shown to the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read (missing, a directory, not UTF-8, no permission).
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },

    /// The config file is not valid YAML, or its top level is not a mapping.
    #[error("cannot parse config file {file}: {reason}")]
    Parse { file: String, reason: String },

    /// One key is refused: `problem` ends the sentence, e.g. "is required", "has an invalid value 0: expected a
    /// port number from 1 to 65535", "is required when 'tls.cert' is set".
    #[error("config key '{key}' (in {file}) {problem}")]
    Key { key: String, file: String, problem: String },

    /// Two keys that exclude each other are both set.
    #[error("config keys '{key}' and '{other}' (in {file}) cannot be used together: {reason}")]
    Conflict { key: String, other: String, file: String, reason: String },

    /// A command-line option of the Go server that this build does not implement yet.
    #[error("`{flag}` is not supported yet by this build")]
    UnsupportedFlag { flag: &'static str },
}

impl ConfigError {
    /// A read failure for `path`, with the OS error text stripped of its "(os error N)" suffix.
    pub fn read(path: &str, err: &io::Error) -> Self {
        ConfigError::Read { path: path.to_string(), reason: io_reason(err) }
    }

    /// A parse failure, its line breaks collapsed so that the message stays on one line.
    pub fn parse(file: &str, reason: impl ToString) -> Self {
        let reason = reason.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        ConfigError::Parse { file: file.to_string(), reason }
    }

    /// `key` (in `file`) holds `value`, as messages show it, which is refused for `reason`.
    pub fn invalid(file: &str, key: &str, value: &str, reason: impl Display) -> Self {
        let problem = format!("has an invalid value {value}: {reason}");
        ConfigError::Key { key: key.to_string(), file: file.to_string(), problem }
    }
}

/// Looks up an environment variable; `load` passes the process environment, tests a map.
pub type EnvLookup = dyn Fn(&str) -> Option<String>;

/// The document being checked (for messages), the environment it may name variables of, and the warnings so far.
pub struct Check<'a> {
    pub file: &'a str,
    pub env: &'a EnvLookup,
    pub warnings: Vec<String>,
}

impl Check<'_> {
    pub fn invalid(&self, key: &str, value: String, reason: impl Display) -> ConfigError {
        ConfigError::invalid(self.file, key, &value, reason)
    }

    /// `key` is refused: `problem` ends the message (after "config key 'K' (in F) ").
    pub fn refuse(&self, key: &str, problem: impl ToString) -> ConfigError {
        ConfigError::Key { key: key.to_string(), file: self.file.to_string(), problem: problem.to_string() }
    }

    pub fn missing(&self, key: &str) -> ConfigError {
        self.refuse(key, "is required")
    }

    /// `key` is absent but `because` is set and needs it; `note` is appended to the message, e.g. " (or set
    /// 'passwordFromEnv')".
    pub fn required_by(&self, key: &str, because: &str, note: &str) -> ConfigError {
        self.refuse(key, format!("is required when '{because}' is set{note}"))
    }

    /// Fails when one of two keys that go together is set without the other: `(key, whether it is set)` each.
    pub fn together(&self, (a, a_set): (&str, bool), (b, b_set): (&str, bool)) -> Result<(), ConfigError> {
        match (a_set, b_set) {
            (true, false) => Err(self.required_by(b, a, "")),
            (false, true) => Err(self.required_by(a, b, "")),
            _ => Ok(()),
        }
    }

    pub fn conflict(&self, key: &str, other: &str, reason: impl ToString) -> ConfigError {
        let (key, other, reason) = (key.to_string(), other.to_string(), reason.to_string());
        ConfigError::Conflict { key, other, file: self.file.to_string(), reason }
    }

    /// The values of a list (absent: none); an empty entry (`- ~`) is refused for the reason `K` refuses null.
    pub fn list<K: Kind>(&self, key: &str, items: Option<Vec<Val<K>>>) -> Result<Vec<K::Out>, ConfigError> {
        let reason = K::read(&Value::Null).err().unwrap_or_else(|| "expected a value".to_string());
        let items = items.unwrap_or_default().into_iter().enumerate();
        items
            .map(|(i, item)| item.0.ok_or_else(|| self.invalid(&format!("{key}[{i}]"), "null".into(), &reason)))
            .collect()
    }

    /// Fails unless `file`, the value of `key` if it is set, is a regular file that can be opened for reading;
    /// `what` names it.
    pub fn readable(&self, key: &str, file: Option<&Path>, what: &str) -> Result<(), ConfigError> {
        let Some(file) = file else {
            return Ok(());
        };
        open_regular(file).map(drop).map_err(|err| {
            let reason = format!("cannot read the {what}: {}", io_reason(&err));
            self.invalid(key, format!("{:?}", file.display().to_string()), reason)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_error_drops_os_error_suffix() {
        let err = io::Error::from_raw_os_error(2);
        let msg = ConfigError::read("/x.yaml", &err).to_string();
        assert_eq!(msg, "cannot read config file /x.yaml: No such file or directory");
    }

    #[test]
    fn parse_error_is_one_line() {
        let msg = ConfigError::parse("f.yaml", "bad\n  thing").to_string();
        assert_eq!(msg, "cannot parse config file f.yaml: bad thing");
    }
}
