//! The checks of the final settings, after the command line is laid over the file, so that a value a flag brings in
//! is checked too, and the message says which value came from which flag: the listeners' ports (the main `port`,
//! `health`, `metrics` and `admin.port` all bind `host`, so no two may be the same) and the cache directory.

use std::io;

use super::error::ConfigError;
use super::settings::Settings;
use crate::cli::{Cli, Command};

/// Fails naming the first two listeners (in the order port, health, metrics, admin.port) that share a port.
pub fn check_distinct(cli: &Cli, settings: &Settings) -> Result<(), ConfigError> {
    let serve = match &cli.command {
        Command::Serve(serve) => Some(serve),
        _ => None,
    };
    let flag = |given: bool, name: &'static str| given.then_some(name);
    let listeners = [
        ("port", Some(settings.port), flag(serve.is_some_and(|s| s.port.is_some()), "--port")),
        ("health", settings.health_port, flag(serve.is_some_and(|s| s.health.is_some()), "--health")),
        ("metrics", settings.metrics_port, flag(serve.is_some_and(|s| s.metrics.is_some()), "--metrics")),
        ("admin.port", settings.admin.as_ref().map(|admin| admin.port), None),
    ];
    for (index, &(key, port, key_flag)) in listeners.iter().enumerate() {
        let Some(port) = port else {
            continue;
        };
        let Some(&(other, _, other_flag)) = listeners[index + 1..].iter().find(|(_, p, _)| *p == Some(port)) else {
            continue;
        };
        let from: Vec<String> = [(key, key_flag), (other, other_flag)]
            .iter()
            .filter_map(|(name, flag)| flag.map(|flag| format!("{name} from {flag}")))
            .collect();
        let from = if from.is_empty() { String::new() } else { format!(" ({})", from.join(", ")) };
        return Err(ConfigError::Conflict {
            key: key.to_string(),
            other: other.to_string(),
            file: settings.config_source.clone(),
            reason: format!(
                "both are port {port}{from}; every listener binds {} and needs a port of its own",
                settings.host
            ),
        });
    }
    Ok(())
}

/// Fails unless the cache directory is a directory or does not exist yet (the server creates it). Names
/// `imagePath`, and `--image-path` when the value came from it.
pub fn check_image_path(cli: &Cli, settings: &Settings) -> Result<(), ConfigError> {
    let path = &settings.mirror.image_path;
    let reason = match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => "it is not a directory".to_string(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) if err.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
            "a part of the path is not a directory".to_string()
        }
        // Anything else (no permission to look) is reported when the server opens the directory.
        Err(_) => return Ok(()),
    };
    let reason = match cli.image_path {
        Some(_) => format!("{reason} (set by --image-path)"),
        None => reason,
    };
    Err(ConfigError::InvalidValue {
        key: "imagePath".to_string(),
        file: settings.config_source.clone(),
        value: format!("{:?}", path.display().to_string()),
        reason: format!("{reason}; imagePath must name the cache directory"),
    })
}
