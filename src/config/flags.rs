//! The command line's part in the settings: rejects options of the Go server that this build does not implement
//! yet, and lays the given options over the file's values in the file's own structure, before the one validation
//! step, so that a flag and its key have one meaning.

use super::error::ConfigError;
use super::kinds::Val;
use super::schema::FileConfig;
use crate::cli::{Cli, Command};

/// Fails for options not implemented yet.
pub fn check_supported(cli: &Cli) -> Result<(), ConfigError> {
    if matches!(&cli.command, Command::Serve(serve) if serve.hello_world == Some(true)) {
        return Err(ConfigError::UnsupportedFlag { flag: "--hello-world" });
    }
    Ok(())
}

/// Sets `slot` when the option was given.
fn set<T: Clone, K: super::kinds::Kind<Out = T>>(slot: &mut Val<K>, given: &Option<T>) {
    if given.is_some() {
        *slot = Val(given.clone());
    }
}

/// Overrides file values with the options given on the command line.
pub fn overlay(cli: &Cli, file: &mut FileConfig) {
    set(&mut file.image_path, &cli.image_path);
    set(&mut file.log_level, &cli.log_level);
    set(&mut file.log_format, &cli.log_format);
    set(&mut file.log_file, &cli.log_file);
    let Command::Serve(serve) = &cli.command else {
        return;
    };
    set(&mut file.port, &serve.port);
    set(&mut file.host, &serve.host);
    set(&mut file.pull_timeout, &serve.pull_timeout);
    set(&mut file.connect_timeout, &serve.connect_timeout);
    set(&mut file.idle_timeout, &serve.idle_timeout);
    set(&mut file.client_idle_timeout, &serve.client_idle_timeout);
    set(&mut file.shutdown_grace, &serve.shutdown_grace);
    // 0 switches off a listener that the file turns on, as `health: 0` does in the file.
    set(&mut file.health, &serve.health.map(|port| (port != 0).then_some(port)));
    set(&mut file.metrics, &serve.metrics.map(|port| (port != 0).then_some(port)));
    set(&mut file.default_ns, &serve.default_ns);
    set(&mut file.always_pull_latest, &serve.always_pull_latest);
    set(&mut file.air_gapped, &serve.air_gapped);
    set(&mut file.preload_images, &serve.preload_images.clone().filter(|f| !f.is_empty()));
    set(&mut file.os, &serve.os);
    set(&mut file.arch, &serve.arch);
}
