//! Runtime settings: `load` builds the `Settings` the server runs with from the command line, the config file (or
//! the embedded default config) and the built-in defaults, in that order of precedence.
//!
//! The file's format is `schema.rs` (serde types, the one list of keys), its value forms `kinds.rs` (over
//! `crate::values`), the reading with key paths in messages `read.rs`; the command line is laid over the same
//! structure (`flags.rs`); one validation step (`validate.rs`, `registry.rs`, `storage.rs`) builds `Settings`
//! (`settings.rs`; its summary for the startup log is `src/summary.rs`), and `checks.rs` checks the listeners' ports
//! and the cache directory on it. `keys.rs` lists the keys for `ociregistry config-keys`.

mod checks;
mod error;
mod flags;
mod keys;
mod kinds;
mod read;
mod registry;
mod schema;
mod settings;
mod storage;
mod validate;

use crate::cli::Cli;

pub use error::ConfigError;
pub use keys::config_keys;
pub use settings::Settings;

/// The config used when no `--config-file` is given.
pub const EMBEDDED_CONFIG: &str = include_str!("default-config.yaml");
/// `config_source` when the embedded config is used.
pub const EMBEDDED_SOURCE: &str = "embedded default";

/// Builds the settings: command line > config file (or the embedded default config) > built-in defaults. Returns
/// warnings (unknown keys, options without effect) for the caller to log once logging is set up. Fails on
/// unsupported options or keys, on invalid values, on an unset `passwordFromEnv` variable, on missing or
/// unreadable certificate and admin token files, on two listeners sharing a port and on an unreadable or
/// unparsable config file.
pub fn load(cli: &Cli) -> Result<(Settings, Vec<String>), ConfigError> {
    load_with_env(cli, &|name| std::env::var(name).ok())
}

/// `load` with `env` resolving `passwordFromEnv` (the process environment in `load`, a map in tests).
fn load_with_env(cli: &Cli, env: &error::EnvLookup) -> Result<(Settings, Vec<String>), ConfigError> {
    flags::check_supported(cli)?;
    let (text, source) = match &cli.config_file {
        None => (EMBEDDED_CONFIG.to_string(), EMBEDDED_SOURCE.to_string()),
        Some(path) => {
            let source = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::read(&source, &e))?;
            (text, source)
        }
    };
    let (mut file, mut warnings) = read::parse_config(&text, &source)?;
    flags::overlay(cli, &mut file);
    let (settings, more) = validate::settings(file, &source, env)?;
    warnings.extend(more);
    checks::check_distinct(cli, &settings)?;
    checks::check_image_path(cli, &settings)?;
    Ok((settings, warnings))
}

#[cfg(test)]
mod tests;
