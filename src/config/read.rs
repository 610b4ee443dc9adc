//! Reading a config text into `schema::FileConfig`: YAML (with merge keys) whose top level is a mapping, keys the
//! schema does not have warned about with their full path (`serde_ignored`), and a refused value reported with the
//! file, its key path (`serde_path_to_error`) and the value as written, or `(not shown)` for credentials.

use serde_path_to_error::Segment;
use serde_yaml::Value;

use super::error::ConfigError;
use super::kinds::{describe, HIDDEN, MARK};
use super::schema::FileConfig;

/// Parses config text; `file` names the document in messages (a path or "embedded default"). Returns the values
/// and a warning for each unknown key, sorted by key path.
pub fn parse_config(text: &str, file: &str) -> Result<(FileConfig, Vec<String>), ConfigError> {
    let mut document: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::parse(file, e))?;
    document.apply_merge().map_err(|e| ConfigError::parse(file, e))?;
    if document.is_null() {
        document = Value::Mapping(Default::default());
    }
    if !document.is_mapping() {
        let reason = "the top level must be a mapping of config keys such as 'port' and 'registries'";
        return Err(ConfigError::parse(file, reason));
    }
    let mut unknown = Vec::new();
    drop_odd_keys(&mut document, "", &mut unknown);
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(key_path(&path));
    let deserializer = serde_ignored::Deserializer::new(document.clone(), &mut record);
    let config: FileConfig =
        serde_path_to_error::deserialize(deserializer).map_err(|err| refused(file, &document, &err))?;
    unknown.sort();
    let warnings = unknown.into_iter().map(|key| format!("unknown key '{key}' in {file}, ignored")).collect();
    Ok((config, warnings))
}

/// Removes the keys that are not strings (`1: x`), which no key path names, recording them as unknown.
fn drop_odd_keys(value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => {
            map.retain(|key, _| {
                if !key.is_string() {
                    unknown.push(join(path, &describe(key)));
                }
                key.is_string()
            });
            for (key, item) in map.iter_mut() {
                drop_odd_keys(item, &join(path, key.as_str().unwrap_or_default()), unknown);
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                drop_odd_keys(item, &format!("{path}[{index}]"), unknown);
            }
        }
        _ => {}
    }
}

/// `key` under `parent` (none at the top level): `registries[0].scheme`.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `registries[0].shceme`.
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Map { parent, key } => join(&key_path(parent), key),
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => key_path(parent),
    }
}

/// The error for a refused value: a kind's own (marked: value and reason), or serde's for a value of the wrong shape
/// (a string where a mapping or a list belongs), shown from the document.
fn refused(file: &str, document: &Value, err: &serde_path_to_error::Error<serde_yaml::Error>) -> ConfigError {
    let key = err.path().to_string();
    let message = err.inner().to_string();
    let (value, reason) = match message.split_once(MARK).and_then(|(_, rest)| rest.split_once(MARK)) {
        Some((value, reason)) => (value.to_string(), reason.to_string()),
        None => {
            let (mut at, mut hidden) = (Some(document), false);
            for segment in err.path().iter() {
                (at, hidden) = match segment {
                    Segment::Seq { index } => (at.and_then(|v| v.get(index)), false),
                    Segment::Map { key } => (at.and_then(|v| v.get(key)), matches!(key.as_str(), "auth" | "token")),
                    _ => (None, false),
                };
            }
            let value = match at {
                _ if hidden => HIDDEN.to_string(),
                Some(value) => describe(value),
                None => "(unknown)".to_string(),
            };
            let reason = match message.split_once(", expected ") {
                Some((_, expected)) => format!("expected {}", expected.replace("a sequence", "a list")),
                None => message,
            };
            (value, reason)
        }
    };
    ConfigError::invalid(file, &key, &value, reason)
}
