//! ociregistry: a pull-only, pull-through, caching OCI Distribution server.
//!
//! `main` parses the command line and the configuration, sets up logging, starts the actors (`actors::Mirror`)
//! and serves the registry API (`http`). Errors in configuration end the process with exit code 2 and one line
//! naming the file, key or flag (a certificate that is not usable PEM included); errors at start (cache directory
//! locked or unwritable, a port in use) with 1, printed once.

mod banner;
mod cli;
mod commands;
mod config;
mod files;
mod http;
mod logging;
mod server_tls;
mod summary;
mod values;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use actors::reference::Namespace;
use actors::upstream::tls::{TlsOptions, TlsSetupError};
use actors::{Mirror, MirrorConfig, StartError};
use clap::Parser;

use crate::config::{ConfigError, Settings};
use crate::server_tls::TlsLoadError;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Version => println!("{}", cli::version_line()),
        cli::Command::ConfigKeys(ref args) => print!("{}", commands::config_keys::render(args)),
        _ => {}
    }
    if matches!(cli.command, cli::Command::Version | cli::Command::ConfigKeys(_)) {
        return ExitCode::SUCCESS;
    }
    let (settings, warnings) = match config::load(&cli) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("ociregistry: {err}");
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, cli::Command::Load(_) | cli::Command::List(_) | cli::Command::Prune(_)) {
        // Commands print their results on standard output; the log says only what went wrong unless asked for more.
        let level = cli.log_level.unwrap_or(values::LogLevel::Warn);
        let json = settings.log_format == values::LogFormat::Json;
        if let Err(err) = logging::init(level, cli.log_file.as_deref(), json) {
            eprintln!("ociregistry: {err}");
            return ExitCode::from(2);
        }
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        return commands::run(&cli, settings);
    }
    let mirror_config = match mirror_config(&settings) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("ociregistry: {err}");
            return ExitCode::from(2);
        }
    };
    let default_ns = match settings.default_ns.as_deref().map(str::parse::<Namespace>).transpose() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("ociregistry: config key 'defaultNs' (in {}): {e}", settings.config_source);
            return ExitCode::from(2);
        }
    };
    let tls = match settings.server_tls.as_ref().map(|conf| load_server_tls(&settings, conf)).transpose() {
        Ok(tls) => tls,
        Err(err) => {
            eprintln!("ociregistry: {err}");
            return ExitCode::from(2);
        }
    };
    let admin = settings.admin.as_ref().map(|admin| (admin.port, admin.token.expose().to_string()));
    if let Err(err) =
        logging::init(settings.log_level, settings.log_file.as_deref(), settings.log_format == values::LogFormat::Json)
    {
        eprintln!("ociregistry: {err}");
        return ExitCode::from(2);
    }
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    // A start error is printed once on standard error; when the log goes to a file, it is logged there too.
    let log_to_file = settings.log_file.is_some();
    let image_path = settings.mirror.image_path.clone();
    // Before the cache is opened: the index load and every connection count against the limit.
    let fd_limit = http::limits::raise_fd_limit();
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        let mirror = match Mirror::start(mirror_config).await {
            Ok(mirror) => mirror,
            Err(err @ StartError::Store(_)) => return Err(format!("imagePath {}: {err}", image_path.display())),
            Err(err) => return Err(err.to_string()),
        };
        banner::print(&settings);
        let preload = settings
            .preload_images
            .clone()
            .map(|spec| commands::preload::spawn(mirror.clone(), spec, settings.platform.clone()));
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let state = http::AppState { mirror, default_ns };
        let options = http::ServeOptions {
            host: settings.host.clone(),
            port: settings.port,
            workers,
            tls,
            health_port: settings.health_port,
            metrics_port: settings.metrics_port,
            admin,
            shutdown_grace: settings.shutdown_grace,
            client_idle_timeout: settings.client_idle_timeout,
            fd_limit,
            preload,
        };
        tracing::info!("server is running");
        http::serve(state, options).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if log_to_file {
                tracing::error!("{err}");
            }
            eprintln!("ociregistry: {err}");
            ExitCode::from(1)
        }
    }
}

/// Load the main port's certificate, key and client CA: a file that is not usable PEM is an invalid value of its
/// key (exit 2), like a missing one.
fn load_server_tls(
    settings: &Settings,
    files: &server_tls::TlsFiles,
) -> Result<Arc<server_tls::ServerTls>, ConfigError> {
    let invalid = |key: &str, path: &Path, reason: String| {
        let value = format!("{:?}", path.display().to_string());
        ConfigError::invalid(&settings.config_source, &format!("serverTlsConfig.{key}"), &value, reason)
    };
    server_tls::ServerTls::load(files.clone()).map(Arc::new).map_err(|err| match err {
        TlsLoadError::Cert { path, detail } => {
            invalid("cert", &path, format!("not a usable PEM certificate: {detail}"))
        }
        TlsLoadError::Key { path, detail } => invalid("key", &path, format!("not a usable PEM private key: {detail}")),
        TlsLoadError::Pair { cert, key, detail } => invalid(
            "key",
            &key,
            format!("does not go with the certificate {} (serverTlsConfig.cert): {detail}", cert.display()),
        ),
        TlsLoadError::ClientCa { path, detail } => {
            invalid("ca", &path, format!("not a usable PEM CA certificate: {detail}"))
        }
        TlsLoadError::Config(detail) => {
            ConfigError::invalid(&settings.config_source, "serverTlsConfig", "(section)", detail)
        }
    })
}

/// Build each registry's TLS client configuration now, so that a CA, certificate or key file that is not usable
/// PEM stops the server as an invalid value of its key (exit 2) rather than as a start failure.
fn check_registry_tls(settings: &Settings, i: usize, host: &str, opts: &TlsOptions) -> Result<(), ConfigError> {
    let invalid = |key: &str, path: &Path, reason: String| {
        let value = format!("{:?}", path.display().to_string());
        ConfigError::invalid(&settings.config_source, &format!("registries[{i}].tls.{key}"), &value, reason)
    };
    match actors::upstream::tls::client_config(host, opts) {
        Ok(_) => Ok(()),
        Err(TlsSetupError::CaFile { path, detail }) => {
            Err(invalid("ca", &path, format!("not a usable PEM CA certificate: {detail}")))
        }
        Err(TlsSetupError::ClientCert { cert, key, detail }) => {
            Err(invalid("cert", &cert, format!("not usable with registries[{i}].tls.key {}: {detail}", key.display())))
        }
        Err(TlsSetupError::Config { detail, .. }) => {
            Err(ConfigError::invalid(&settings.config_source, &format!("registries[{i}].tls"), "(section)", detail))
        }
    }
}

/// The actors' configuration from the settings, with each registry's TLS files checked to be usable.
fn mirror_config(settings: &Settings) -> Result<MirrorConfig, ConfigError> {
    for (i, spec) in settings.mirror.upstreams.iter().enumerate() {
        let host = spec.base_url.parse::<actix_web::http::Uri>().ok().and_then(|u| u.host().map(str::to_string));
        check_registry_tls(settings, i, host.as_deref().unwrap_or(""), &spec.tls)?;
    }
    Ok(settings.mirror.clone())
}
