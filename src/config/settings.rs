//! `Settings`, what the server runs with once the config file and the command line are read and checked, in the
//! actors' own types where they have one (`UpstreamSpec` with its `Credentials` and `TlsOptions`, `Timeouts`,
//! `Freshness`, `LifecycleSettings`, `UpstreamPolicy`, `PlatformFilter`). Each key's default is given where
//! `validate.rs` reads it; the summary for the startup log is `src/summary.rs`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use actors::freshness::Freshness;
use actors::preload::PlatformFilter;
use actors::upstream::guard::UpstreamPolicy;
use actors::upstream::Timeouts;
use actors::{LifecycleSettings, UpstreamSpec};

use super::kinds::ClientAuth;
use crate::values::secret::Secret;
use crate::values::{LogFormat, LogLevel};

/// Everything the server needs to know to run. Each field's key is named in `schema.rs`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub image_path: PathBuf,
    pub host: String,
    pub port: u16,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub log_file: Option<PathBuf>,
    /// Toward upstreams: `connectTimeout`, `pullTimeout` (the response head), `idleTimeout` (a silent body).
    pub timeouts: Timeouts,
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
    /// `registries`, checked, as the actors take them.
    pub registries: Vec<UpstreamSpec>,
    pub upstream_policy: UpstreamPolicy,
    pub min_free_space: u64,
    /// The largest blob fetched (`maxBlobSize`); `None`: only the cache's own bound.
    pub max_blob_size: Option<u64>,
    /// `tagTtl`, `alwaysPullLatest`, `revalidateTimeout`, `negativeTtl`.
    pub freshness: Freshness,
    pub air_gapped: bool,
    pub actor_idle_timeout: Duration,
    /// Time between two background scrub passes; `None` is never.
    pub scrub_interval: Option<Duration>,
    /// `maxCacheSize`, `pinned`, `pruneConfig` (when enabled).
    pub lifecycle: LifecycleSettings,
    /// Files (or globs), comma-separated, loaded in the background after start (`preloadImages`).
    pub preload_images: Option<String>,
    /// The file `load` uses when `--image-file` is not given.
    pub image_file: Option<PathBuf>,
    /// The platform preloads take from an index (`os`, `arch`; all when unset).
    pub platform: PlatformFilter,
    pub storage: StorageSettings,
    pub cluster: Option<ClusterConfig>,
    /// "embedded default" or the config file path, for messages and the startup banner.
    pub config_source: String,
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
