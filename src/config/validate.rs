//! The one validation step: a `FileConfig` (the file's values with the command line's laid over them) becomes
//! `Settings`, with the defaults of every key that is not set, the checks that involve more than one key (a key
//! another one requires, keys that exclude each other), the files the config names checked readable, and the admin
//! token read. Registries are checked in `registry.rs`.

use std::path::PathBuf;
use std::time::Duration;

use super::error::{quoted, Check, ConfigError, EnvLookup};
use super::kinds::{ClientAuth, Kind, PruneKind, Val};
use super::registry::registries;
use super::schema::{AdminFile, ClusterFile, FileConfig, PruneFile, ServerTlsFile, StorageFile};
use super::settings::*;
use crate::files::read_token;
use crate::values::secret::Secret;
use actors::upstream::Timeouts;

/// The settings from `file`, read from `source`; `env` resolves `passwordFromEnv`. Returns the warnings.
pub fn settings(file: FileConfig, source: &str, env: &EnvLookup) -> Result<(Settings, Vec<String>), ConfigError> {
    let mut check = Check { file: source, warnings: Vec::new() };
    if file.hello_world.get() == Some(true) {
        return Err(ConfigError::UnsupportedKey { key: "helloWorld".to_string(), file: source.to_string() });
    }
    let max_cache_size = file.max_cache_size.get().flatten();
    let pinned = list(&check, "pinned", file.pinned, "expected an image pattern such as docker.io/library/*")?;
    let prune = file.prune_config.map(|p| prune(&check, p)).transpose()?.flatten();
    let storage = storage(&check, file.storage)?;
    let cluster = file.cluster.map(|c| cluster(&check, c)).transpose()?;
    if cluster.is_some() && storage == StorageSettings::Filesystem {
        let note = " (replicas share their cache through storage.type: s3)";
        return Err(check.required_by("storage.type", "cluster", note));
    }
    if max_cache_size.is_some() && storage != StorageSettings::Filesystem {
        return Err(check.conflict(
            "maxCacheSize",
            "storage.type",
            "the cap applies to a filesystem cache; with s3 the local tier is capped by storage.s3.localCacheSize \
             and the bucket's size by the bucket's own lifecycle rules",
        ));
    }
    let registries = registries(&mut check, file.registries.unwrap_or_default(), env)?;
    let server_tls = file.server_tls_config.map(|s| server_tls(&mut check, s)).transpose()?.flatten();
    let admin = file.admin.map(|a| admin(&check, a)).transpose()?.flatten();
    let pins = actors::Pins::new(&pinned).map_err(|e| check.invalid("pinned", format!("{pinned:?}"), e))?;
    let freshness = &actors::freshness::Freshness::default();
    // The built-in defaults, each beside its key.
    let settings = Settings {
        image_path: file.image_path.get().unwrap_or_else(|| PathBuf::from("/var/lib/ociregistry")),
        host: file.host.get().unwrap_or_else(|| "0.0.0.0".to_string()),
        port: file.port.get().unwrap_or(8080),
        log_level: file.log_level.get().unwrap_or(crate::values::LogLevel::Info),
        log_format: file.log_format.get().unwrap_or_default(),
        log_file: file.log_file.get(),
        timeouts: Timeouts {
            connect: file.connect_timeout.get().unwrap_or(Duration::from_secs(10)),
            head: file.pull_timeout.get().unwrap_or(Duration::from_secs(60)),
            idle: file.idle_timeout.get().unwrap_or(Duration::from_secs(60)),
        },
        client_idle_timeout: file.client_idle_timeout.get().unwrap_or(Duration::from_secs(60)),
        shutdown_grace: file.shutdown_grace.get().unwrap_or(Duration::from_secs(60)),
        server_tls,
        health_port: file.health.get().flatten(),
        metrics_port: file.metrics.get().flatten(),
        admin,
        default_ns: file.default_ns.get(),
        registries,
        upstream_policy: file.upstream_policy.get().unwrap_or_default(),
        // Small, so that a small volume still caches; a full disk is handled per object anyway.
        min_free_space: file.min_free_space.get().unwrap_or(1 << 20),
        // Well above any real layer (the largest public ones, CUDA and model images, run to a few GiB), far below a
        // volume an endless body could fill; it also bounds an archive entry `load` decompresses.
        max_blob_size: file.max_blob_size.get().unwrap_or(Some(16 << 30)),
        freshness: actors::freshness::Freshness {
            tag_ttl: file.tag_ttl.get().unwrap_or(freshness.tag_ttl),
            always_pull_latest: file.always_pull_latest.get().unwrap_or(false),
            revalidate_timeout: file.revalidate_timeout.get().unwrap_or(freshness.revalidate_timeout),
            negative_ttl: file.negative_ttl.get().unwrap_or(freshness.negative_ttl),
        },
        air_gapped: file.air_gapped.get().unwrap_or(false),
        actor_idle_timeout: file.actor_idle_timeout.get().unwrap_or(Duration::from_secs(60)),
        scrub_interval: file.scrub_interval.get().unwrap_or(actors::ScrubSettings::default().interval),
        lifecycle: actors::LifecycleSettings { max_cache_size, pins, prune },
        preload_images: file.preload_images.get(),
        image_file: file.image_file.get(),
        platform: actors::preload::PlatformFilter { os: file.os.get(), arch: file.arch.get() },
        storage,
        cluster,
        config_source: source.to_string(),
    };
    Ok((settings, check.warnings))
}

/// The values of a list (absent: none); an empty entry (`- ~`) is refused with `reason`.
fn list<K: Kind>(
    check: &Check<'_>,
    key: &str,
    items: Option<Vec<Val<K>>>,
    reason: &str,
) -> Result<Vec<K::Out>, ConfigError> {
    let items = items.unwrap_or_default().into_iter().enumerate();
    items.map(|(i, item)| item.0.ok_or_else(|| check.invalid(&format!("{key}[{i}]"), "null".into(), reason))).collect()
}

/// `pruneConfig`: its values are checked even when it is off; `None` unless `enabled`.
fn prune(check: &Check<'_>, p: PruneFile) -> Result<Option<actors::PruneSchedule>, ConfigError> {
    if p.enabled.get() != Some(true) {
        return Ok(None);
    }
    let duration = p.duration.get().unwrap_or(DEFAULT_PRUNE_DURATION);
    let rule = match p.kind.get().unwrap_or(PruneKind::Accessed) {
        PruneKind::Accessed => actors::PruneRule::NotPulledFor(duration),
        PruneKind::Created => actors::PruneRule::CreatedMoreThan(duration),
        PruneKind::Pattern => match p.expr.get() {
            Some(exprs) => actors::PruneRule::Matches(exprs),
            None => return Err(check.required_by("pruneConfig.expr", "pruneConfig.type", " (type: pattern)")),
        },
    };
    let dry_run = p.dry_run.get().unwrap_or(false) || p.dryrun.get().unwrap_or(false);
    let request = actors::PruneRequest { rules: vec![rule], limit: p.count.get().flatten(), dry_run };
    Ok(Some(actors::PruneSchedule { request, every: p.frequency.get().unwrap_or(DEFAULT_PRUNE_FREQUENCY) }))
}

fn storage(check: &Check<'_>, storage: Option<StorageFile>) -> Result<StorageSettings, ConfigError> {
    let Some(storage) = storage.filter(|s| s.s3_type.get() == Some(true)) else {
        return Ok(StorageSettings::Filesystem);
    };
    let Some(s3) = storage.s3 else {
        return Err(check.required_by("storage.s3", "storage.type: s3", " (it names the bucket)"));
    };
    Ok(StorageSettings::S3(S3Config {
        endpoint: s3.endpoint.get().ok_or_else(|| check.missing("storage.s3.endpoint"))?,
        bucket: s3.bucket.get().ok_or_else(|| check.missing("storage.s3.bucket"))?,
        region: s3.region.get().unwrap_or_else(|| "us-east-1".into()),
        prefix: s3.prefix.get().unwrap_or_default().trim_matches('/').to_string(),
        path_style: s3.path_style.get().unwrap_or(false),
        access_key_id_file: s3.access_key_id_file.get(),
        secret_access_key_file: s3.secret_access_key_file.get(),
        local_cache_size: s3.local_cache_size.get().unwrap_or(DEFAULT_LOCAL_CACHE_SIZE),
    }))
}

fn cluster(check: &Check<'_>, c: ClusterFile) -> Result<ClusterConfig, ConfigError> {
    let peers = list(check, "cluster.peers", c.peers, "expected a base URL such as http://10.0.0.5:8080")?;
    let dns = c.dns.get();
    if peers.is_empty() && dns.is_none() {
        let note = " (or cluster.dns: how the replicas find each other)";
        return Err(check.required_by("cluster.peers", "cluster", note));
    }
    if !peers.is_empty() && dns.is_some() {
        return Err(check.conflict("cluster.peers", "cluster.dns", "the replica set comes from one of them"));
    }
    let scheme = c.scheme.get().unwrap_or_else(|| "http".into());
    Ok(ClusterConfig { peers, self_url: c.self_url.get(), dns, port: c.port.get().flatten(), scheme })
}

/// `serverTlsConfig`: `None` (plain HTTP) when neither `cert` nor `key` is set.
fn server_tls(check: &mut Check<'_>, s: ServerTlsFile) -> Result<Option<ServerTls>, ConfigError> {
    let (cert, key, ca) = (s.cert.get(), s.key.get(), s.ca.get());
    let client_auth = s.client_auth.get().unwrap_or(ClientAuth::None);
    let k = |name: &str| format!("serverTlsConfig.{name}");
    match (&cert, &key) {
        (Some(_), None) => return Err(check.required_by(&k("key"), &k("cert"), "")),
        (None, Some(_)) => return Err(check.required_by(&k("cert"), &k("key"), "")),
        _ => {}
    }
    if client_auth == ClientAuth::Verify {
        if ca.is_none() {
            return Err(check.required_by(&k("ca"), &k("clientAuth"), " to verify"));
        }
        // Client certificates are requested in the TLS handshake: no HTTPS, no client certificates.
        if cert.is_none() {
            return Err(check.required_by(&k("cert"), &k("clientAuth"), " to verify"));
        }
    }
    if client_auth == ClientAuth::None && ca.is_some() {
        check.warnings.push(format!(
            "config key '{}' in {} has no effect while '{}' is none (client certificates are not requested), ignored",
            k("ca"),
            check.file,
            k("clientAuth")
        ));
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        return Ok(None);
    };
    check.readable(&k("cert"), &cert, "server certificate file")?;
    check.readable(&k("key"), &key, "server key file")?;
    let client_ca = ca.filter(|_| client_auth == ClientAuth::Verify);
    if let Some(ca) = &client_ca {
        check.readable(&k("ca"), ca, "client CA file")?;
    }
    Ok(Some(ServerTls { cert, key, client_ca, client_auth }))
}

/// `admin`: `None` (no admin listener) when neither key is set; the token is read here, the one time.
fn admin(check: &Check<'_>, a: AdminFile) -> Result<Option<AdminSettings>, ConfigError> {
    match (a.port.get(), a.token_file.get()) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(check.required_by("admin.tokenFile", "admin.port", "")),
        (None, Some(_)) => Err(check.required_by("admin.port", "admin.tokenFile", "")),
        (Some(port), Some(token_file)) => {
            let token = read_token(&token_file).map_err(|reason| {
                check.invalid("admin.tokenFile", quoted(&token_file.display().to_string()), reason)
            })?;
            Ok(Some(AdminSettings { port, token_file, token: Secret::new(token) }))
        }
    }
}

/// The Go server's prune defaults.
const DEFAULT_PRUNE_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
const DEFAULT_PRUNE_FREQUENCY: Duration = Duration::from_secs(24 * 3600);
/// The local disk tier in front of a bucket when `localCacheSize` is not set.
const DEFAULT_LOCAL_CACHE_SIZE: u64 = 10 << 30;
