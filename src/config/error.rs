//! The configuration error type: every way building the settings can fail, each rendered as one line that names
//! the file, the key path and the offending value where there is one; and `Check`, which builds them for one file.

use std::io;
use std::path::Path;

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

    /// A Go server key this build does not implement is set to a non-default value.
    #[error(
        "config key '{key}' (in {file}) is not supported yet by this build; \
         remove it or set it to its default"
    )]
    UnsupportedKey { key: String, file: String },

    /// A key holds a value of the wrong type or outside its allowed set.
    #[error("config key '{key}' (in {file}) has an invalid value {value}: {reason}")]
    InvalidValue { key: String, file: String, value: String, reason: String },

    /// A required key is absent.
    #[error("config key '{key}' (in {file}) is required")]
    MissingKey { key: String, file: String },

    /// A key is absent that another key, which is set, needs (`tls.key` for `tls.cert`). `note` is empty or starts
    /// with a separator, e.g. " (or set 'passwordFromEnv')".
    #[error("config key '{key}' (in {file}) is required when '{because}' is set{note}")]
    RequiredBy { key: String, because: String, file: String, note: String },

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

    /// A parse failure, flattened to one line.
    pub fn parse(file: &str, reason: impl ToString) -> Self {
        ConfigError::Parse { file: file.to_string(), reason: one_line(&reason.to_string()) }
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

/// A string value as messages show it.
pub fn quoted(text: &str) -> String {
    format!("{text:?}")
}

impl Check<'_> {
    pub fn invalid(&self, key: &str, value: String, reason: impl ToString) -> ConfigError {
        ConfigError::InvalidValue { key: key.into(), file: self.file.into(), value, reason: reason.to_string() }
    }

    pub fn missing(&self, key: &str) -> ConfigError {
        ConfigError::MissingKey { key: key.to_string(), file: self.file.to_string() }
    }

    /// `key` is absent but `because` is set and needs it; `note` is appended to the message.
    pub fn required_by(&self, key: &str, because: &str, note: &str) -> ConfigError {
        ConfigError::RequiredBy { key: key.into(), because: because.into(), file: self.file.into(), note: note.into() }
    }

    pub fn conflict(&self, key: &str, other: &str, reason: impl ToString) -> ConfigError {
        let (key, other, reason) = (key.to_string(), other.to_string(), reason.to_string());
        ConfigError::Conflict { key, other, file: self.file.to_string(), reason }
    }

    /// The values of a list (absent: none); an empty entry (`- ~`) is refused with `reason`.
    pub fn list<K: Kind>(
        &self,
        key: &str,
        items: Option<Vec<Val<K>>>,
        reason: &str,
    ) -> Result<Vec<K::Out>, ConfigError> {
        let items = items.unwrap_or_default().into_iter().enumerate();
        items
            .map(|(i, item)| item.0.ok_or_else(|| self.invalid(&format!("{key}[{i}]"), "null".into(), reason)))
            .collect()
    }

    /// Fails unless `file` (the value of `key`) is a regular file that can be opened for reading; `what` names it.
    pub fn readable(&self, key: &str, file: &Path, what: &str) -> Result<(), ConfigError> {
        open_regular(file).map(drop).map_err(|err| {
            self.invalid(
                key,
                quoted(&file.display().to_string()),
                format!("cannot read the {what}: {}", io_reason(&err)),
            )
        })
    }
}

/// Collapses line breaks so that a message stays on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
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
