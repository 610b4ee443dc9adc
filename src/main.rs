//! ociregistry: a pull-only, pull-through, caching OCI Distribution server.
//!
//! `main` parses the command line and the configuration, sets up logging, starts the actors (`actors::Mirror`)
//! and serves the registry API (`http`). Errors in configuration end the process with exit code 2 and one line
//! naming the file, key or flag; errors at start (cache directory locked or unwritable, bad certificate) with 1.

mod banner;
mod cli;
mod config;
mod http;
mod logging;
mod server_tls;

use std::process::ExitCode;

use actors::reference::Namespace;
use actors::upstream::auth::Credentials;
use actors::upstream::guard::UpstreamPolicy;
use actors::upstream::tls::TlsOptions;
use actors::upstream::Timeouts;
use actors::{Mirror, MirrorConfig, ScrubSettings, UpstreamSpec};
use clap::Parser;

use crate::config::{AuthSettings, ConfigError, Settings};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let cli::Command::Version = cli.command {
        println!("{}", cli::version_line());
        return ExitCode::SUCCESS;
    }
    let (settings, warnings) = match config::load(&cli) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("ociregistry: {err}");
            return ExitCode::from(2);
        }
    };
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
    if let Err(err) =
        logging::init(settings.log_level, settings.log_file.as_deref(), settings.log_format == config::LogFormat::Json)
    {
        eprintln!("ociregistry: {err}");
        return ExitCode::from(2);
    }
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    let tls = match &settings.server_tls {
        Some(conf) => {
            let files = server_tls::TlsFiles {
                cert: conf.cert.clone(),
                key: conf.key.clone(),
                client_ca: conf.client_ca.clone(),
                require_client_cert: conf.client_auth == config::ClientAuth::Verify,
            };
            match server_tls::ServerTls::load(files) {
                Ok(tls) => Some(std::sync::Arc::new(tls)),
                Err(err) => {
                    eprintln!("ociregistry: serverTlsConfig: {err}");
                    return ExitCode::from(1);
                }
            }
        }
        None => None,
    };
    let admin = match &settings.admin {
        Some(admin) => match std::fs::read_to_string(&admin.token_file) {
            Ok(token) if !token.trim().is_empty() => Some((admin.port, token.trim().to_string())),
            _ => {
                eprintln!("ociregistry: admin.tokenFile {}: cannot read a token from it", admin.token_file.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        let (mirror, report) = match Mirror::start(mirror_config).await {
            Ok(started) => started,
            Err(err) => return Err(err.to_string()),
        };
        banner::print(&settings, &report);
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
        };
        tracing::info!("server is running");
        http::serve(state, options).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("ociregistry: {err}");
            ExitCode::from(1)
        }
    }
}

/// The actors' configuration from the settings. Registry names were checked by `config::load`; a name that still
/// is not a valid namespace is reported against its key.
fn mirror_config(settings: &Settings) -> Result<MirrorConfig, ConfigError> {
    let mut upstreams = Vec::new();
    for (i, reg) in settings.registries.iter().enumerate() {
        let namespace: Namespace =
            reg.name.parse().map_err(|e: actors::reference::ReferenceError| ConfigError::InvalidValue {
                key: format!("registries[{i}].name"),
                file: settings.config_source.clone(),
                value: reg.name.clone(),
                reason: e.to_string(),
            })?;
        upstreams.push(UpstreamSpec {
            namespace,
            base_url: reg.base_url(),
            tls: TlsOptions {
                ca_file: reg.tls.ca.clone(),
                ca_only: reg.tls.ca_only,
                client_cert: reg.tls.cert.clone().zip(reg.tls.key.clone()),
                insecure_skip_verify: reg.tls.insecure_skip_verify,
            },
            credentials: match &reg.auth {
                AuthSettings::Anonymous => Credentials::Anonymous,
                AuthSettings::Basic { user, password } => {
                    Credentials::Basic { user: user.clone(), password: password.expose().to_string() }
                }
                AuthSettings::Helper { name, cache_time } => {
                    Credentials::Helper { name: name.clone(), cache_time: *cache_time }
                }
            },
            max_concurrent: reg.max_concurrent,
        });
    }
    Ok(MirrorConfig {
        image_path: settings.image_path.clone(),
        upstreams,
        timeouts: Timeouts {
            connect: settings.connect_timeout,
            head: settings.pull_timeout,
            idle: settings.idle_timeout,
        },
        policy: match settings.upstream_policy {
            config::UpstreamPolicy::Public => UpstreamPolicy::Public,
            config::UpstreamPolicy::Listed => UpstreamPolicy::Listed,
            config::UpstreamPolicy::Any => UpstreamPolicy::Any,
        },
        min_free_space: settings.min_free_space,
        actor_idle_timeout: settings.actor_idle_timeout,
        scrub: ScrubSettings { interval: settings.scrub_interval, ..ScrubSettings::default() },
    })
}
