//! `Settings`, what the server runs with once the config file and the command line are read and checked, in the
//! types of the code that uses each setting (the actors' `MirrorConfig` and `PlatformFilter`, the server's
//! `TlsFiles`), so nothing maps one type onto another. Each key's default is written where `validate.rs` reads it;
//! the summary for the startup log is `src/summary.rs`.

use std::path::PathBuf;
use std::time::Duration;

use actors::preload::PlatformFilter;
use actors::MirrorConfig;

use crate::server_tls::TlsFiles;
use crate::values::secret::Secret;
use crate::values::{LogFormat, LogLevel};

/// Everything the server needs to know to run. Each field's key is named in `schema.rs`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What the actors start with: `imagePath`, `registries`, the upstream timeouts, `upstreamPolicy`,
    /// `minFreeSpace`, `maxBlobSize`, `actorIdleTimeout`, `scrubInterval`, the tag freshness keys, `airGapped`,
    /// `maxCacheSize`, `pinned`, `pruneConfig`, `storage` and `cluster`.
    pub mirror: MirrorConfig,
    pub host: String,
    pub port: u16,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub log_file: Option<PathBuf>,
    /// A client connection that takes no bytes of a response for this long is closed (`clientIdleTimeout`).
    pub client_idle_timeout: Duration,
    /// After SIGTERM or SIGINT, how long in-flight work may still run (`shutdownGrace`).
    pub shutdown_grace: Duration,
    /// HTTPS on the main port (`serverTlsConfig`), only the paths: the server's TLS code loads the files, and again
    /// when they change. `None` is plain HTTP.
    pub server_tls: Option<TlsFiles>,
    /// Ports of the health and metrics listeners; `None` is off.
    pub health_port: Option<u16>,
    pub metrics_port: Option<u16>,
    /// The admin API listener; `None` is off, the default: it can change the cache.
    pub admin: Option<AdminSettings>,
    pub default_ns: Option<String>,
    /// Files (or globs), comma-separated, loaded in the background after start (`preloadImages`).
    pub preload_images: Option<String>,
    /// The file `load` uses when `--image-file` is not given.
    pub image_file: Option<PathBuf>,
    /// The platform preloads take from an index (`os`, `arch`; all when unset).
    pub platform: PlatformFilter,
    /// "embedded default" or the config file path, for messages and the startup banner.
    pub config_source: String,
}

/// The admin API listener, with the token every admin request must present, read once from `tokenFile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub port: u16,
    pub token_file: PathBuf,
    pub token: Secret,
}
