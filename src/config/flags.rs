//! The command line's part in the settings: rejects commands and options of the Go server
//! that this build does not implement yet, and lays the given options over the file values.

use super::error::ConfigError;
use super::Settings;
use crate::cli::{Cli, Command, ServeArgs};

/// Fails for commands and options not implemented yet; returns warnings for options that are
/// accepted but have no effect yet.
pub fn check_supported(cli: &Cli) -> Result<Vec<String>, ConfigError> {
    match &cli.command {
        Command::Serve(serve) => check_serve(serve),
        Command::Version | Command::Load(_) | Command::List(_) | Command::Prune(_) => Ok(Vec::new()),
    }
}

fn check_serve(serve: &ServeArgs) -> Result<Vec<String>, ConfigError> {
    let unsupported = [("--hello-world", serve.hello_world == Some(true))];
    if let Some((flag, _)) = unsupported.iter().find(|(_, used)| *used) {
        return Err(ConfigError::UnsupportedFlag { flag });
    }
    Ok(Vec::new())
}

/// Overrides file values with the options given on the command line.
pub fn apply(cli: &Cli, settings: &mut Settings) {
    if let Some(path) = &cli.image_path {
        settings.image_path = path.clone();
    }
    if let Some(level) = cli.log_level {
        settings.log_level = level;
    }
    if let Some(format) = cli.log_format {
        settings.log_format = format;
    }
    if let Some(path) = &cli.log_file {
        settings.log_file = Some(path.clone());
    }
    let Command::Serve(serve) = &cli.command else {
        return;
    };
    if let Some(port) = serve.port {
        settings.port = port;
    }
    if let Some(host) = &serve.host {
        settings.host = host.clone();
    }
    if let Some(timeout) = serve.pull_timeout {
        settings.pull_timeout = timeout;
    }
    if let Some(timeout) = serve.connect_timeout {
        settings.connect_timeout = timeout;
    }
    if let Some(timeout) = serve.idle_timeout {
        settings.idle_timeout = timeout;
    }
    if let Some(timeout) = serve.client_idle_timeout {
        settings.client_idle_timeout = timeout;
    }
    if let Some(grace) = serve.shutdown_grace {
        settings.shutdown_grace = grace;
    }
    // 0 switches off a listener that the file turns on, as `health: 0` does in the file.
    if let Some(port) = serve.health {
        settings.health_port = (port != 0).then_some(port);
    }
    if let Some(port) = serve.metrics {
        settings.metrics_port = (port != 0).then_some(port);
    }
    if let Some(ns) = &serve.default_ns {
        settings.default_ns = Some(ns.clone());
    }
    if let Some(on) = serve.always_pull_latest {
        settings.always_pull_latest = on;
    }
    if let Some(on) = serve.air_gapped {
        settings.air_gapped = on;
    }
    if let Some(files) = serve.preload_images.as_ref().filter(|f| !f.is_empty()) {
        settings.life.preload_images = Some(files.clone());
    }
    if let Some(os) = &serve.os {
        settings.life.os = Some(os.clone());
    }
    if let Some(arch) = &serve.arch {
        settings.life.arch = Some(arch.clone());
    }
}
