//! Walking a parsed YAML document against the known key set: building key paths such as
//! `registries[0].tls.ca`, warning about unknown keys, and typed reads whose errors name the
//! file, the key path and the bad value.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde_yaml::Value;

use super::duration::{self, DurationError};
use super::error::ConfigError;
use super::size::{self, SizeError};
use actors::freshness::TagTtl;

/// Reading context for one document: its name for messages and the warnings collected so far.
pub struct Walker {
    pub file: String,
    pub warnings: Vec<String>,
}

/// The known keys present in one mapping, in document order, with their full key paths.
pub struct Section<'v> {
    path: String,
    entries: Vec<(&'static str, &'v Value)>,
}

impl<'v> Section<'v> {
    /// The value of `name`, or `None` when absent or null (YAML `key:` with nothing after it).
    pub fn get(&self, name: &str) -> Option<&'v Value> {
        self.entries.iter().find(|(key, _)| *key == name).map(|(_, value)| *value).filter(|value| !value.is_null())
    }

    /// The full key path of `name` within this section.
    pub fn key(&self, name: &str) -> String {
        join(&self.path, name)
    }
}

/// `parent.key`, or just `key` at the top level.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A short rendering of a value for error messages: scalars verbatim (strings quoted),
/// collections by kind.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "(a list)".to_string(),
        Value::Mapping(_) => "(a mapping)".to_string(),
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, describe(&tagged.value)),
    }
}

/// Whether a value is what the Go server treats as unset: null, false, 0, "", an empty list, or
/// a mapping whose values are all unset.
pub fn is_default(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Sequence(items) => items.is_empty(),
        Value::Mapping(map) => map.values().all(is_default),
        Value::Tagged(_) => false,
    }
}

impl Walker {
    pub fn new(file: impl Into<String>) -> Self {
        Walker { file: file.into(), warnings: Vec::new() }
    }

    /// Reads `value` (at key path `path`) as a mapping whose keys must be in `known`; other keys
    /// produce a warning. A null value is an empty section.
    pub fn section<'v>(
        &mut self,
        path: &str,
        value: &'v Value,
        known: &[&'static str],
    ) -> Result<Section<'v>, ConfigError> {
        let map = match value {
            Value::Null => return Ok(Section { path: path.to_string(), entries: Vec::new() }),
            Value::Mapping(map) => map,
            other => return Err(self.invalid(path, other, "expected a mapping of keys")),
        };
        let mut entries = Vec::new();
        for (key, value) in map {
            let name = key.as_str();
            match name.and_then(|n| known.iter().find(|k| **k == n)) {
                Some(known_key) => entries.push((*known_key, value)),
                None => {
                    let shown = name.map_or_else(|| describe(key), str::to_string);
                    self.warnings.push(format!("unknown key '{}' in {}, ignored", join(path, &shown), self.file));
                }
            }
        }
        Ok(Section { path: path.to_string(), entries })
    }

    pub fn invalid(&self, key: &str, value: &Value, reason: impl ToString) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.to_string(),
            file: self.file.clone(),
            value: describe(value),
            reason: reason.to_string(),
        }
    }

    pub fn unsupported(&self, key: &str) -> ConfigError {
        ConfigError::UnsupportedKey { key: key.to_string(), file: self.file.clone() }
    }

    pub fn missing(&self, key: &str) -> ConfigError {
        ConfigError::MissingKey { key: key.to_string(), file: self.file.clone() }
    }

    /// An invalid value that must not be echoed (a password, or what may be one): the message shows
    /// `(not shown)` in place of the value.
    pub fn invalid_hidden(&self, key: &str, reason: impl ToString) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.to_string(),
            file: self.file.clone(),
            value: "(not shown)".to_string(),
            reason: reason.to_string(),
        }
    }

    /// `key` is absent but `because` is set and needs it; `note` is appended to the message.
    pub fn required_by(&self, key: &str, because: &str, note: &str) -> ConfigError {
        ConfigError::RequiredBy {
            key: key.to_string(),
            because: because.to_string(),
            file: self.file.clone(),
            note: note.to_string(),
        }
    }

    /// `key` and `other` are both set but exclude each other.
    pub fn conflict(&self, key: &str, other: &str, reason: impl ToString) -> ConfigError {
        ConfigError::Conflict {
            key: key.to_string(),
            other: other.to_string(),
            file: self.file.clone(),
            reason: reason.to_string(),
        }
    }

    pub fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }

    /// A string; an empty string counts as absent.
    pub fn string(&self, section: &Section<'_>, name: &str) -> Result<Option<String>, ConfigError> {
        match section.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.invalid(&section.key(name), other, "expected a string")),
        }
    }

    /// A boolean; absent means false.
    pub fn boolean(&self, section: &Section<'_>, name: &str) -> Result<bool, ConfigError> {
        match section.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.invalid(&section.key(name), other, "expected true or false")),
        }
    }

    /// A TCP port. With `zero_means_unset`, 0 and "" read as absent (the Go server's "no listener").
    pub fn port(&self, section: &Section<'_>, name: &str, zero_means_unset: bool) -> Result<Option<u16>, ConfigError> {
        let Some(value) = section.get(name) else {
            return Ok(None);
        };
        if zero_means_unset && value.as_str() == Some("") {
            return Ok(None);
        }
        let port = value.as_u64().and_then(|n| u16::try_from(n).ok());
        match port {
            Some(0) if zero_means_unset => Ok(None),
            Some(p) if p > 0 => Ok(Some(p)),
            _ => Err(self.invalid(&section.key(name), value, "expected a port number from 1 to 65535")),
        }
    }

    /// A whole number within `range`.
    pub fn integer(
        &self,
        section: &Section<'_>,
        name: &str,
        range: RangeInclusive<u64>,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(value) = section.get(name) else {
            return Ok(None);
        };
        match value.as_u64() {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(self.invalid(
                &section.key(name),
                value,
                format!("expected a whole number from {} to {}", range.start(), range.end()),
            )),
        }
    }

    /// A duration: whole milliseconds, or a string such as "10s".
    pub fn duration(&self, section: &Section<'_>, name: &str) -> Result<Option<Duration>, ConfigError> {
        let Some(value) = section.get(name) else {
            return Ok(None);
        };
        let parsed = match value {
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(millis), _) => duration::from_millis(millis),
                (None, Some(_)) => Err(DurationError::NotPositive),
                _ => Err(DurationError::Unparsable),
            },
            Value::String(s) => duration::parse_duration(s),
            _ => Err(DurationError::Unparsable),
        };
        parsed.map(Some).map_err(|err| self.invalid(&section.key(name), value, err))
    }

    /// A duration, or `never` (`Some(None)`).
    pub fn duration_or_never(
        &self,
        section: &Section<'_>,
        name: &str,
    ) -> Result<Option<Option<Duration>>, ConfigError> {
        match section.get(name) {
            Some(Value::String(s)) if s.trim() == "never" => Ok(Some(None)),
            _ => Ok(self.duration(section, name)?.map(Some)),
        }
    }

    /// A tag TTL: `never`, or a duration that may be zero (`0s`: every pull).
    pub fn ttl(&self, section: &Section<'_>, name: &str) -> Result<Option<TagTtl>, ConfigError> {
        let Some(value) = section.get(name) else {
            return Ok(None);
        };
        let parsed = match value {
            Value::String(s) if s.trim() == "never" => Ok(TagTtl::Never),
            Value::Number(n) => {
                n.as_u64().map(|ms| TagTtl::After(Duration::from_millis(ms))).ok_or(DurationError::NotPositive)
            }
            Value::String(s) => match duration::parse_duration(s) {
                Ok(d) => Ok(TagTtl::After(d)),
                Err(DurationError::NotPositive) if !s.trim().starts_with('-') => Ok(TagTtl::After(Duration::ZERO)),
                Err(e) => Err(e),
            },
            _ => Err(DurationError::Unparsable),
        };
        parsed.map(Some).map_err(|err| self.invalid(&section.key(name), value, format!("{err} (or \"never\")")))
    }

    /// A byte size: a whole number of bytes, or a string with a unit (`500Mi`).
    pub fn size(&self, section: &Section<'_>, name: &str) -> Result<Option<u64>, ConfigError> {
        let Some(value) = section.get(name) else {
            return Ok(None);
        };
        let parsed = match value {
            Value::Number(n) => n.as_u64().ok_or(SizeError::Unparsable),
            Value::String(s) => size::parse_size(s),
            _ => Err(SizeError::Unparsable),
        };
        parsed.map(Some).map_err(|err| self.invalid(&section.key(name), value, err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Value {
        serde_yaml::from_str(text).expect("test YAML parses")
    }

    #[test]
    fn unknown_keys_warn_with_path() {
        let mut walker = Walker::new("f.yaml");
        let value = doc("a: 1\nzz: 2\n");
        let section = walker.section("outer[1]", &value, &["a"]).expect("mapping");
        assert!(section.get("a").is_some());
        assert_eq!(walker.warnings, vec!["unknown key 'outer[1].zz' in f.yaml, ignored".to_string()]);
    }

    #[test]
    fn defaults_are_recognised() {
        assert!(is_default(&doc("{a: '', b: false, c: 0, d: ~, e: [], f: {g: ''}}")));
        assert!(!is_default(&doc("{a: x}")));
        assert!(!is_default(&doc("{a: {b: true}}")));
    }

    #[test]
    fn typed_reads_name_key_and_value() {
        let mut walker = Walker::new("f.yaml");
        let value = doc("p: 70000\nb: yes\nd: 0\ns: 5\n");
        let section = walker.section("", &value, &["p", "b", "d", "s"]).expect("mapping");
        let err = walker.port(&section, "p", false).expect_err("too big");
        assert_eq!(
            err.to_string(),
            "config key 'p' (in f.yaml) has an invalid value 70000: \
             expected a port number from 1 to 65535"
        );
        let err = walker.boolean(&section, "b").expect_err("not bool");
        assert!(err.to_string().contains("'b'") && err.to_string().contains("\"yes\""));
        let err = walker.duration(&section, "d").expect_err("zero");
        assert!(err.to_string().contains("greater than zero"));
        let err = walker.string(&section, "s").expect_err("not string");
        assert!(err.to_string().contains("expected a string"));
        assert_eq!(walker.integer(&section, "s", 1..=5).expect("in range"), Some(5));
        let err = walker.integer(&section, "s", 1..=4).expect_err("too big");
        assert_eq!(
            err.to_string(),
            "config key 's' (in f.yaml) has an invalid value 5: expected a whole number from 1 to 4"
        );
        assert!(walker.integer(&section, "b", 1..=4).is_err());
        assert_eq!(walker.integer(&section, "absent", 1..=4).expect("absent"), None);
    }

    #[test]
    fn zero_or_empty_port_can_mean_unset() {
        let mut walker = Walker::new("f.yaml");
        let value = doc("zero: 0\nempty: ''\nnull:\nport: 8081\ntext: '8081'\n");
        let section = walker.section("", &value, &["zero", "empty", "null", "port", "text"]).expect("mapping");
        for name in ["zero", "empty", "null", "absent"] {
            assert_eq!(walker.port(&section, name, true).expect("unset"), None, "{name}");
        }
        assert_eq!(walker.port(&section, "port", true).expect("set"), Some(8081));
        assert!(walker.port(&section, "zero", false).is_err());
        assert!(walker.port(&section, "empty", false).is_err());
        let err = walker.port(&section, "text", true).expect_err("a string");
        assert!(err.to_string().contains("'text'") && err.to_string().contains("\"8081\""), "{err}");
    }
}
