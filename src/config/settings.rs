//! `Settings`, what the server runs with once the config file and the command line are read and checked, in the
//! actors' own types where they have one (`UpstreamPolicy`, `TagTtl`, `Credentials`, `TlsOptions`,
//! `PruneSchedule`), and the built-in defaults. Its summary for the startup log is `src/summary.rs`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use actors::freshness::TagTtl;
use actors::upstream::auth::Credentials;
use actors::upstream::guard::UpstreamPolicy;
use actors::upstream::tls::TlsOptions;

use super::kinds::{ClientAuth, Scheme};
use crate::values::secret::Secret;
use crate::values::{LogFormat, LogLevel};

/// Everything the server needs to know to run. Each field's key is named in `schema.rs`; its default in
/// `validate.rs`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub image_path: PathBuf,
    pub host: String,
    pub port: u16,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub log_file: Option<PathBuf>,
    /// Time allowed for an upstream to send its response head (`pullTimeout`).
    pub pull_timeout: Duration,
    pub connect_timeout: Duration,
    /// An upstream body that sends no bytes this long fails (`idleTimeout`).
    pub idle_timeout: Duration,
    /// A client connection that takes no bytes of a response for this long is closed (`clientIdleTimeout`).
    pub client_idle_timeout: Duration,
    /// After SIGTERM or SIGINT, how long in-flight work may still run (`shutdownGrace`).
    pub shutdown_grace: Duration,
    /// HTTPS on the main port (`serverTlsConfig`); `None` is plain HTTP.
    pub server_tls: Option<ServerTls>,
    /// Ports of the health and metrics listeners; `None` is off.
    pub health_port: Option<u16>,
    pub metrics_port: Option<u16>,
    /// The admin API listener; `None` is off, the default: it can change the cache.
    pub admin: Option<AdminSettings>,
    pub default_ns: Option<String>,
    pub registries: Vec<RegistrySettings>,
    pub upstream_policy: UpstreamPolicy,
    pub min_free_space: u64,
    /// The largest blob fetched (`maxBlobSize`); `None`: only the cache's own bound.
    pub max_blob_size: Option<u64>,
    pub tag_ttl: TagTtl,
    pub always_pull_latest: bool,
    pub air_gapped: bool,
    pub revalidate_timeout: Duration,
    pub negative_ttl: Duration,
    pub actor_idle_timeout: Duration,
    /// Time between two background scrub passes; `None` is never.
    pub scrub_interval: Option<Duration>,
    /// The cache's life: `maxCacheSize`, `pinned`, `pruneConfig`, `preloadImages`, `imageFile`, `os`, `arch`.
    pub life: LifeSettings,
    pub storage: StorageSettings,
    pub cluster: Option<ClusterConfig>,
    /// "embedded default" or the config file path, for messages and the startup banner.
    pub config_source: String,
}

/// How to reach one upstream registry.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// `host[:port]`, matched exactly against the namespace of a request.
    pub name: String,
    pub scheme: Scheme,
    /// URL to dial instead of `scheme://name`; scheme lower-cased, no trailing slash.
    pub endpoint: Option<String>,
    pub max_concurrent: usize,
    pub tag_ttl: Option<TagTtl>,
    pub auth: Credentials,
    pub tls: TlsOptions,
}

/// The built-in defaults.
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

/// Concurrent upstream fetches per registry when `maxConcurrent` is not set.
pub const DEFAULT_MAX_CONCURRENT: usize = 32;

impl RegistrySettings {
    /// The base URL to dial, without a trailing slash: `endpoint`, else `scheme://name`.
    pub fn base_url(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            // Docker Hub's registry API lives at registry-1.docker.io, not at docker.io.
            None if matches!(self.name.as_str(), "docker.io" | "index.docker.io") => {
                format!("{}://registry-1.docker.io", self.scheme)
            }
            None => format!("{}://{}", self.scheme, self.name),
        }
    }
}

impl fmt::Display for RegistrySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.name, self.base_url())?;
        match &self.auth {
            Credentials::Anonymous => {}
            Credentials::Basic { user, .. } => write!(f, " (auth: basic (user {user}))")?,
            Credentials::Helper { name, .. } => write!(f, " (auth: helper {name})")?,
        }
        if self.tls.client_cert.is_some() {
            f.write_str(" (mTLS)")?;
        }
        if let Some(ca) = &self.tls.ca_file {
            write!(f, " (ca {})", ca.display())?;
        }
        if self.tls.ca_only {
            f.write_str(" (caOnly)")?;
        }
        if self.max_concurrent != DEFAULT_MAX_CONCURRENT {
            write!(f, " (maxConcurrent {})", self.max_concurrent)?;
        }
        if self.tls.insecure_skip_verify {
            f.write_str(" (TLS verification disabled)")?;
        }
        Ok(())
    }
}

/// HTTPS on the main port. Only paths: the server's TLS code loads the files, and again when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA certificates client certificates must chain to; set exactly when `client_auth` is `Verify`.
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl fmt::Display for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https (client certificates: {})", self.client_auth)
    }
}

/// The admin API listener, with the token every admin request must present, read once from `tokenFile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub port: u16,
    pub token_file: PathBuf,
    pub token: Secret,
}

/// The cache's life.
#[derive(Debug, Clone, Default)]
pub struct LifeSettings {
    /// `maxCacheSize` in bytes; `None`: no cap.
    pub max_cache_size: Option<u64>,
    /// `pinned` patterns, checked.
    pub pinned: Vec<String>,
    /// `pruneConfig` when enabled.
    pub prune: Option<actors::PruneSchedule>,
    /// Files (or globs), comma-separated, loaded in the background after start.
    pub preload_images: Option<String>,
    /// The file `load` uses when `--image-file` is not given.
    pub image_file: Option<PathBuf>,
    /// The platform preloads take from an index (all when unset).
    pub os: Option<String>,
    pub arch: Option<String>,
}

/// `storage`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StorageSettings {
    /// `imagePath` holds everything.
    #[default]
    Filesystem,
    /// A bucket shared by replicas; `imagePath` is this replica's local tier.
    S3(S3Config),
}

/// `storage.s3`; the credentials are read at start (`main.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub prefix: String,
    pub path_style: bool,
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key_file: Option<PathBuf>,
    pub local_cache_size: u64,
}

/// `cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Every replica's base URL.
    pub peers: Vec<String>,
    /// This replica's base URL as the others reach it (else `scheme://$POD_IP:port`).
    pub self_url: Option<String>,
    /// A headless Service name whose A records are the replicas.
    pub dns: Option<String>,
    /// The port replicas listen on (for `dns` and `$POD_IP`); the server's `port` when absent.
    pub port: Option<u16>,
    /// `http` or `https` toward peers.
    pub scheme: String,
}
