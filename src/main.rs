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
use actors::{ClusterSettings, DnsPeers, S3Settings};
use actors::{Mirror, MirrorConfig, ScrubSettings, StartError, StorageChoice};
use clap::Parser;

use crate::config::{ConfigError, Settings};
use crate::server_tls::TlsLoadError;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Version => println!("{}", cli::version_line()),
        cli::Command::ConfigKeys => println!("{}", config::config_keys().join("\n")),
        _ => {}
    }
    if matches!(cli.command, cli::Command::Version | cli::Command::ConfigKeys) {
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
    let image_path = settings.image_path.clone();
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
fn load_server_tls(settings: &Settings, conf: &config::ServerTls) -> Result<Arc<server_tls::ServerTls>, ConfigError> {
    let files = server_tls::TlsFiles {
        cert: conf.cert.clone(),
        key: conf.key.clone(),
        client_ca: conf.client_ca.clone(),
        require_client_cert: conf.client_auth == config::ClientAuth::Verify,
    };
    let invalid = |key: &str, path: &Path, reason: String| ConfigError::InvalidValue {
        key: format!("serverTlsConfig.{key}"),
        file: settings.config_source.clone(),
        value: format!("{:?}", path.display().to_string()),
        reason,
    };
    server_tls::ServerTls::load(files).map(Arc::new).map_err(|err| match err {
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
        TlsLoadError::Config(detail) => ConfigError::InvalidValue {
            key: "serverTlsConfig".to_string(),
            file: settings.config_source.clone(),
            value: "(section)".to_string(),
            reason: detail,
        },
    })
}

/// Build each registry's TLS client configuration now, so that a CA, certificate or key file that is not usable
/// PEM stops the server as an invalid value of its key (exit 2) rather than as a start failure.
fn check_registry_tls(settings: &Settings, i: usize, host: &str, opts: &TlsOptions) -> Result<(), ConfigError> {
    let invalid = |key: &str, path: &Path, reason: String| ConfigError::InvalidValue {
        key: format!("registries[{i}].tls.{key}"),
        file: settings.config_source.clone(),
        value: format!("{:?}", path.display().to_string()),
        reason,
    };
    match actors::upstream::tls::client_config(host, opts) {
        Ok(_) => Ok(()),
        Err(TlsSetupError::CaFile { path, detail }) => {
            Err(invalid("ca", &path, format!("not a usable PEM CA certificate: {detail}")))
        }
        Err(TlsSetupError::ClientCert { cert, key, detail }) => {
            Err(invalid("cert", &cert, format!("not usable with registries[{i}].tls.key {}: {detail}", key.display())))
        }
        Err(TlsSetupError::Config { detail, .. }) => Err(ConfigError::InvalidValue {
            key: format!("registries[{i}].tls"),
            file: settings.config_source.clone(),
            value: "(section)".to_string(),
            reason: detail,
        }),
    }
}

/// The actors' configuration from the settings, with each registry's TLS files checked to be usable.
fn mirror_config(settings: &Settings) -> Result<MirrorConfig, ConfigError> {
    for (i, spec) in settings.registries.iter().enumerate() {
        let host = spec.base_url.parse::<actix_web::http::Uri>().ok().and_then(|u| u.host().map(str::to_string));
        check_registry_tls(settings, i, host.as_deref().unwrap_or(""), &spec.tls)?;
    }
    let cluster = settings.cluster.as_ref().map(|c| cluster_settings(settings, c)).transpose()?;
    let storage = match &settings.storage {
        config::StorageSettings::Filesystem => StorageChoice::Filesystem,
        config::StorageSettings::S3(s3) => StorageChoice::S3(Box::new(s3_settings(settings, s3, cluster.as_ref())?)),
    };
    Ok(MirrorConfig {
        storage,
        cluster,
        image_path: settings.image_path.clone(),
        upstreams: settings.registries.clone(),
        timeouts: settings.timeouts,
        policy: settings.upstream_policy,
        min_free_space: settings.min_free_space,
        max_blob_size: settings.max_blob_size,
        actor_idle_timeout: settings.actor_idle_timeout,
        scrub: ScrubSettings { interval: settings.scrub_interval, ..ScrubSettings::default() },
        freshness: settings.freshness,
        air_gapped: settings.air_gapped,
        lifecycle: settings.lifecycle.clone(),
    })
}

/// One credential: from its file when `file_key` is set, else from the environment variable.
fn s3_secret(settings: &Settings, file: Option<&Path>, file_key: &str, env: &str) -> Result<String, ConfigError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::InvalidValue {
            key: format!("storage.s3.{file_key}"),
            file: settings.config_source.clone(),
            value: path.display().to_string(),
            reason: format!("cannot read it: {err}"),
        })?;
        return Ok(text.trim().to_string());
    }
    match std::env::var(env) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
        _ => Err(ConfigError::RequiredBy {
            key: format!("storage.s3.{file_key}"),
            because: "storage.type: s3".to_string(),
            file: settings.config_source.clone(),
            note: format!(" (or set the {env} environment variable)"),
        }),
    }
}

/// `storage.s3` with its credentials read.
fn s3_settings(
    settings: &Settings,
    s3: &config::S3Config,
    cluster: Option<&ClusterSettings>,
) -> Result<S3Settings, ConfigError> {
    let access_key_id = s3_secret(settings, s3.access_key_id_file.as_deref(), "accessKeyIdFile", "AWS_ACCESS_KEY_ID")?;
    let secret_access_key =
        s3_secret(settings, s3.secret_access_key_file.as_deref(), "secretAccessKeyFile", "AWS_SECRET_ACCESS_KEY")?;
    let replica = match cluster {
        Some(c) => c.me.clone(),
        None => std::env::var("HOSTNAME").unwrap_or_else(|_| "ociregistry".to_string()),
    };
    Ok(S3Settings {
        endpoint: s3.endpoint.clone(),
        bucket: s3.bucket.clone(),
        region: s3.region.clone(),
        prefix: s3.prefix.clone(),
        path_style: s3.path_style,
        access_key_id,
        secret_access_key,
        local_dir: settings.image_path.clone(),
        local_cache_size: s3.local_cache_size,
        replica,
    })
}

/// `cluster`, with this replica's own URL: `cluster.self`, else `scheme://$POD_IP:port`.
fn cluster_settings(settings: &Settings, c: &config::ClusterConfig) -> Result<ClusterSettings, ConfigError> {
    let port = c.port.unwrap_or(settings.port);
    let me = match (&c.self_url, std::env::var("POD_IP")) {
        (Some(url), _) => url.clone(),
        (None, Ok(ip)) if ip.parse::<std::net::IpAddr>().is_ok() => {
            let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
            format!("{}://{host}:{port}", c.scheme)
        }
        _ => {
            return Err(ConfigError::RequiredBy {
                key: "cluster.self".to_string(),
                because: "cluster".to_string(),
                file: settings.config_source.clone(),
                note: " (or set the POD_IP environment variable to this replica's address)".to_string(),
            })
        }
    };
    Ok(ClusterSettings {
        me,
        peers: c.peers.clone(),
        dns: c.dns.as_ref().map(|name| DnsPeers { name: name.clone(), scheme: c.scheme.clone(), port }),
    })
}
