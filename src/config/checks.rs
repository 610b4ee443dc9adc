//! The checks of the final settings, after the command line is laid over the file, so that a value a flag brings in
//! is checked too, and the message says which value came from which flag: the listeners' ports (the main `port`,
//! `health`, `metrics` and `admin.port` all bind `host`, so no two may be the same) and the cache directory.

use std::io;

use super::error::ConfigError;
use super::settings::Settings;
use crate::cli::{Cli, Command};

/// Fails naming the first two listeners (in the order port, health, metrics, admin.port) that share a port.
pub fn check_distinct(cli: &Cli, settings: &Settings) -> Result<(), ConfigError> {
    let (port_flag, health_flag, metrics_flag) = match &cli.command {
        Command::Serve(serve) => (serve.port.is_some(), serve.health.is_some(), serve.metrics.is_some()),
        _ => (false, false, false),
    };
    let listeners = [
        ("port", Some(settings.port), port_flag.then_some("--port")),
        ("health", settings.health_port, health_flag.then_some("--health")),
        ("metrics", settings.metrics_port, metrics_flag.then_some("--metrics")),
        ("admin.port", settings.admin.as_ref().map(|admin| admin.port), None),
    ];
    let on: Vec<_> = listeners.into_iter().filter_map(|(key, port, flag)| Some((key, port?, flag))).collect();
    for (index, &(key, port, key_flag)) in on.iter().enumerate() {
        let Some(&(other, _, other_flag)) = on[index + 1..].iter().find(|(_, p, _)| *p == port) else {
            continue;
        };
        let from: Vec<String> = [(key, key_flag), (other, other_flag)]
            .iter()
            .filter_map(|(name, flag)| flag.map(|flag| format!("{name} from {flag}")))
            .collect();
        let from = if from.is_empty() { String::new() } else { format!(" ({})", from.join(", ")) };
        let host = &settings.host;
        let reason = format!("both are port {port}{from}; every listener binds {host} and needs a port of its own");
        let (key, other, file) = (key.to_string(), other.to_string(), settings.config_source.clone());
        return Err(ConfigError::Conflict { key, other, file, reason });
    }
    Ok(())
}

/// Fails unless the cache directory is a directory or does not exist yet (the server creates it). Names
/// `imagePath`, and `--image-path` when the value came from it.
pub fn check_image_path(cli: &Cli, settings: &Settings) -> Result<(), ConfigError> {
    let path = &settings.mirror.image_path;
    let reason = match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => "it is not a directory",
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) if err.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
            "a part of the path is not a directory"
        }
        // Anything else (no permission to look) is reported when the server opens the directory.
        Err(_) => return Ok(()),
    };
    let flag = if cli.image_path.is_some() { " (set by --image-path)" } else { "" };
    let reason = format!("{reason}{flag}; imagePath must name the cache directory");
    let shown = format!("{:?}", path.display().to_string());
    Err(ConfigError::invalid(&settings.config_source, "imagePath", &shown, reason))
}
