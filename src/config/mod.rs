//! Runtime settings: the `Settings` the server runs with, and `load`, which builds them from the
//! command line, the config file (or the embedded default config) and the built-in defaults,
//! in that order of precedence.

mod admin;
mod auth;
mod duration;
mod error;
mod file;
pub mod files;
mod flags;
pub mod life;
mod ports;
mod registry;
mod secret;
mod server_tls;
mod size;
pub mod storage;
mod tls;
mod values;
mod yaml;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use actors::freshness::TagTtl;

use crate::cli::Cli;

pub use admin::read_token as admin_token;
pub use duration::parse_duration;
pub use error::ConfigError;
pub use registry::RegistrySettings;
pub use values::{parse_host, LogFormat, LogLevel};
// Types and defaults of public `Settings` fields, named by the server modules rather than by
// this crate's minimal `main`.
#[allow(unused_imports)]
pub use {
    admin::AdminSettings,
    auth::{AuthSettings, DEFAULT_HELPER_CACHE_TIME, ECR_HELPER},
    registry::{DEFAULT_MAX_CONCURRENT, MAX_MAX_CONCURRENT},
    secret::Secret,
    server_tls::{ClientAuth, ServerTls},
    tls::TlsSettings,
    values::{Scheme, UpstreamPolicy},
};

/// The config used when no `--config-file` is given.
pub const EMBEDDED_CONFIG: &str = include_str!("default-config.yaml");
/// `config_source` when the embedded config is used.
pub const EMBEDDED_SOURCE: &str = "embedded default";

pub const DEFAULT_IMAGE_PATH: &str = "/var/lib/ociregistry";
pub const DEFAULT_HOST: &str = "0.0.0.0";
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(60);
/// Small, so that a small volume still caches; a full disk is handled per object anyway.
pub const DEFAULT_MIN_FREE_SPACE: u64 = 1 << 20;
/// The largest blob fetched, and archive entry `load` decompresses (`maxBlobSize`): well above any real layer (the
/// largest public ones, CUDA and model images, run to a few GiB), far below a volume an endless body could fill.
pub const DEFAULT_MAX_BLOB_SIZE: u64 = 16 << 30;
pub const DEFAULT_ACTOR_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_SCRUB_INTERVAL: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything the server needs to know to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Cache directory (`imagePath`, `--image-path`).
    pub image_path: PathBuf,
    /// Listen IP address (`host`, `--host`).
    pub host: String,
    /// Listen port (`port`, `--port`).
    pub port: u16,
    pub log_level: LogLevel,
    /// Text or JSON log lines (`logFormat`, `--log-format`).
    pub log_format: LogFormat,
    pub log_file: Option<PathBuf>,
    /// Time allowed for an upstream to send its response head (`pullTimeout`).
    pub pull_timeout: Duration,
    /// Time allowed to connect to an upstream (`connectTimeout`).
    pub connect_timeout: Duration,
    /// An upstream body that sends no bytes this long fails (`idleTimeout`).
    pub idle_timeout: Duration,
    /// A client connection that takes no bytes of a response for this long is closed (`clientIdleTimeout`,
    /// `--client-idle-timeout`): a client that stops reading must not hold a socket and a file for ever.
    pub client_idle_timeout: Duration,
    /// After SIGTERM or SIGINT, how long in-flight client responses and upstream fetches may still run before the
    /// process exits (`shutdownGrace`, `--shutdown-grace`); keep it below the pod's termination grace period.
    pub shutdown_grace: Duration,
    /// HTTPS on the main port (`serverTlsConfig`); `None` is plain HTTP.
    pub server_tls: Option<ServerTls>,
    /// Port of the health listener, `/health` and `/ready` (`health`, `--health`); `None` is off.
    pub health_port: Option<u16>,
    /// Port of the metrics listener, `/metrics` (`metrics`, `--metrics`); `None` is off.
    pub metrics_port: Option<u16>,
    /// The admin API listener (`admin`); `None` is off, the default: it can change the cache.
    pub admin: Option<AdminSettings>,
    /// Namespace used when a request names none (`defaultNs`, `--default-ns`).
    pub default_ns: Option<String>,
    pub registries: Vec<RegistrySettings>,
    /// Which namespaces without a `registries` entry may be dialled (`upstreamPolicy`).
    pub upstream_policy: UpstreamPolicy,
    /// Bytes the cache leaves free on its volume (`minFreeSpace`).
    pub min_free_space: u64,
    /// The largest blob fetched, and archive entry `load` decompresses (`maxBlobSize`); `None`: only the cache's
    /// own bound.
    pub max_blob_size: Option<u64>,
    /// How long a cached tag is served without asking the upstream (`tagTtl`; a registry may override it).
    pub tag_ttl: TagTtl,
    /// Tags named `latest` are checked on every pull (`alwaysPullLatest`, `--always-pull-latest`).
    pub always_pull_latest: bool,
    /// No upstream is ever dialled (`airGapped`, `--air-gapped`).
    pub air_gapped: bool,
    /// The longest a pull of a cached tag waits on the upstream to check it (`revalidateTimeout`).
    pub revalidate_timeout: Duration,
    /// How long an upstream 404 for a manifest is remembered (`negativeTtl`).
    pub negative_ttl: Duration,
    /// How long a repository's coalescing actor lives without requests (`actorIdleTimeout`).
    pub actor_idle_timeout: Duration,
    /// Time between the starts of two background scrub passes (`scrubInterval`); `None` is never.
    pub scrub_interval: Option<Duration>,
    /// The cache's life: `maxCacheSize`, `pinned`, `pruneConfig`, `preloadImages`, `imageFile`, `os`, `arch`.
    pub life: life::LifeSettings,
    /// Where the cache lives (`storage`).
    pub storage: storage::StorageSettings,
    /// The replica set (`cluster`).
    pub cluster: Option<storage::ClusterConfig>,
    /// "embedded default" or the config file path, for the startup banner.
    pub config_source: String,
}

impl Settings {
    /// The built-in defaults, with no registries.
    pub fn defaults(config_source: impl Into<String>) -> Self {
        Settings {
            image_path: PathBuf::from(DEFAULT_IMAGE_PATH),
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
            log_file: None,
            pull_timeout: DEFAULT_PULL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            client_idle_timeout: DEFAULT_CLIENT_IDLE_TIMEOUT,
            server_tls: None,
            health_port: None,
            metrics_port: None,
            admin: None,
            default_ns: None,
            registries: Vec::new(),
            upstream_policy: UpstreamPolicy::Public,
            min_free_space: DEFAULT_MIN_FREE_SPACE,
            max_blob_size: Some(DEFAULT_MAX_BLOB_SIZE),
            tag_ttl: actors::freshness::DEFAULT_TAG_TTL,
            always_pull_latest: false,
            air_gapped: false,
            revalidate_timeout: actors::freshness::DEFAULT_REVALIDATE_TIMEOUT,
            negative_ttl: actors::freshness::DEFAULT_NEGATIVE_TTL,
            actor_idle_timeout: DEFAULT_ACTOR_IDLE_TIMEOUT,
            scrub_interval: Some(DEFAULT_SCRUB_INTERVAL),
            life: life::LifeSettings::default(),
            storage: storage::StorageSettings::Filesystem,
            cluster: None,
            config_source: config_source.into(),
        }
    }

    fn apply_file(&mut self, file: file::FileConfig) {
        let file::FileConfig {
            image_path,
            host,
            port,
            log_level,
            log_format,
            log_file,
            pull_timeout,
            connect_timeout,
            idle_timeout,
            shutdown_grace,
            client_idle_timeout,
            default_ns,
            registries,
            upstream_policy,
            server_tls,
            health_port,
            metrics_port,
            admin,
            min_free_space,
            max_blob_size,
            tag_ttl,
            always_pull_latest,
            air_gapped,
            revalidate_timeout,
            negative_ttl,
            actor_idle_timeout,
            scrub_interval,
            life,
            storage,
            cluster,
        } = file;
        set(&mut self.image_path, image_path);
        set(&mut self.host, host);
        set(&mut self.port, port);
        set(&mut self.log_level, log_level);
        set(&mut self.log_format, log_format);
        self.log_file = log_file;
        set(&mut self.pull_timeout, pull_timeout);
        set(&mut self.connect_timeout, connect_timeout);
        set(&mut self.idle_timeout, idle_timeout);
        set(&mut self.shutdown_grace, shutdown_grace);
        set(&mut self.client_idle_timeout, client_idle_timeout);
        self.default_ns = default_ns;
        self.registries = registries;
        set(&mut self.upstream_policy, upstream_policy);
        self.server_tls = server_tls;
        self.health_port = health_port;
        self.metrics_port = metrics_port;
        self.admin = admin;
        set(&mut self.min_free_space, min_free_space);
        set(&mut self.max_blob_size, max_blob_size);
        set(&mut self.tag_ttl, tag_ttl);
        set(&mut self.always_pull_latest, always_pull_latest);
        set(&mut self.air_gapped, air_gapped);
        set(&mut self.revalidate_timeout, revalidate_timeout);
        set(&mut self.negative_ttl, negative_ttl);
        set(&mut self.actor_idle_timeout, actor_idle_timeout);
        set(&mut self.scrub_interval, scrub_interval);
        self.life = life;
        self.storage = storage;
        self.cluster = cluster;
    }
}

/// Overwrites `slot` when a value was given.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// A multi-line summary for the startup banner. Never shows a password.
impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        writeln!(f, "Config: {}", self.config_source)?;
        writeln!(f, "Image path: {}", self.image_path.display())?;
        match &self.storage {
            storage::StorageSettings::Filesystem => writeln!(f, "Storage: filesystem (image path)")?,
            storage::StorageSettings::S3(s3) => writeln!(
                f,
                "Storage: s3 bucket {} at {} (prefix '{}'), local tier up to {} bytes in the image path",
                s3.bucket, s3.endpoint, s3.prefix, s3.local_cache_size
            )?,
        }
        if let Some(cluster) = &self.cluster {
            match &cluster.dns {
                Some(name) => writeln!(f, "Cluster: replicas from DNS {name}")?,
                None => writeln!(f, "Cluster: replicas {}", cluster.peers.join(", "))?,
            }
        }
        writeln!(f, "Listen: {}:{}", self.host, self.port)?;
        writeln!(f, "Tls: {}", self.server_tls.as_ref().map_or_else(|| "none".to_string(), ServerTls::to_string))?;
        writeln!(
            f,
            "Ports: health {}, metrics {}, admin {}",
            dash(self.health_port.map(|p| p.to_string())),
            dash(self.metrics_port.map(|p| p.to_string())),
            dash(self.admin.as_ref().map(|admin| admin.port.to_string()))
        )?;
        writeln!(
            f,
            "Log: level {}, format {}, file {}",
            self.log_level,
            self.log_format,
            dash(self.log_file.as_ref().map(|p| p.display().to_string()))
        )?;
        writeln!(
            f,
            "Upstream timeouts: connect {}, response {}, idle {}",
            humantime::format_duration(self.connect_timeout),
            humantime::format_duration(self.pull_timeout),
            humantime::format_duration(self.idle_timeout)
        )?;
        writeln!(f, "Client idle timeout: {}", humantime::format_duration(self.client_idle_timeout))?;
        writeln!(f, "Shutdown grace: {}", humantime::format_duration(self.shutdown_grace))?;
        writeln!(f, "Default namespace: {}", dash(self.default_ns.clone()))?;
        writeln!(f, "Upstream policy: {}", self.upstream_policy)?;
        if self.air_gapped {
            writeln!(f, "Air-gapped: no upstream is ever contacted")?;
        } else {
            writeln!(
                f,
                "Tags: checked after {}{}, check waits at most {}; missing manifests remembered {}",
                self.tag_ttl,
                if self.always_pull_latest { " (latest: every pull)" } else { "" },
                humantime::format_duration(self.revalidate_timeout),
                humantime::format_duration(self.negative_ttl)
            )?;
        }
        writeln!(
            f,
            "Cache: keep {} free, blobs up to {}, scrub {}, idle actors retire after {}",
            self.min_free_space,
            self.max_blob_size.map_or_else(|| "the cache's size".to_string(), |n| format!("{n} bytes")),
            self.scrub_interval
                .map_or_else(|| "never".to_string(), |d| format!("every {}", humantime::format_duration(d))),
            humantime::format_duration(self.actor_idle_timeout)
        )?;
        writeln!(
            f,
            "Cache life: cap {}, {} pinned, prune {}, preload {}",
            self.life.max_cache_size.map_or_else(|| "none".to_string(), |n| format!("{n} bytes")),
            self.life.pinned.len(),
            self.life.prune.as_ref().map_or_else(
                || "off".to_string(),
                |p| format!(
                    "{:?} every {}{}",
                    p.kind,
                    humantime::format_duration(p.frequency),
                    if p.dry_run { " (dry run)" } else { "" }
                )
            ),
            self.life.preload_images.as_deref().unwrap_or("none")
        )?;
        write!(f, "Registries ({}):", self.registries.len())?;
        for registry in &self.registries {
            write!(f, "\n  {registry}")?;
        }
        Ok(())
    }
}

/// Builds the settings: command line > config file (or the embedded default config) >
/// built-in defaults. Returns warnings (unknown keys, options without effect) for the caller to
/// log once logging is set up. Fails on unsupported commands, options or keys, on invalid
/// values, on an unset `passwordFromEnv` variable, on missing or unreadable certificate and
/// admin token files, on two listeners sharing a port and on an unreadable or unparsable config
/// file.
pub fn load(cli: &Cli) -> Result<(Settings, Vec<String>), ConfigError> {
    load_with_env(cli, &|name| std::env::var(name).ok())
}

/// `load` with `env` resolving `passwordFromEnv` (the process environment in `load`, a map in
/// tests).
fn load_with_env(cli: &Cli, env: &auth::EnvLookup) -> Result<(Settings, Vec<String>), ConfigError> {
    let mut warnings = flags::check_supported(cli)?;
    let (text, source) = match &cli.config_file {
        None => (EMBEDDED_CONFIG.to_string(), EMBEDDED_SOURCE.to_string()),
        Some(path) => {
            let source = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::read(&source, &e))?;
            (text, source)
        }
    };
    let (file_config, file_warnings) = file::parse_config(&text, &source, env)?;
    warnings.extend(file_warnings);
    let mut settings = Settings::defaults(source);
    settings.apply_file(file_config);
    flags::apply(cli, &mut settings);
    ports::check_distinct(cli, &settings)?;
    files::check_image_path(cli, &settings)?;
    Ok((settings, warnings))
}

#[cfg(test)]
mod tests;
