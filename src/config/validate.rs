//! The one validation step: a `FileConfig` (the file's values with the command line's laid over them) becomes
//! `Settings`, with the defaults of every key that is not set, the checks that involve more than one key (a key
//! another one requires, keys that exclude each other), the files the config names checked readable, and the admin
//! token read. Registries are checked in `registry.rs`, `storage` and `cluster` in `storage.rs`.

use std::path::PathBuf;
use std::time::Duration;

use actors::freshness::Freshness;
use actors::preload::PlatformFilter;
use actors::upstream::Timeouts;
use actors::{LifecycleSettings, MirrorConfig, PruneRule, ScrubSettings, StorageChoice};

use super::error::{Check, ConfigError, EnvLookup};
use super::registry::registries;
use super::schema::{AdminFile, FileConfig, PruneFile, ServerTlsFile};
use super::settings::*;
use super::storage::{cluster, storage};
use crate::files::read_token;
use crate::server_tls::TlsFiles;
use crate::values::secret::Secret;

/// The settings from `file`, read from `source`; `env` resolves `passwordFromEnv` and the variables `storage` and
/// `cluster` fall back on. Returns the warnings.
pub fn settings(file: FileConfig, source: &str, env: &EnvLookup) -> Result<(Settings, Vec<String>), ConfigError> {
    let mut check = Check { file: source, env, warnings: Vec::new() };
    if file.hello_world.get() == Some(true) {
        let problem = "is not supported yet by this build; remove it or set it to its default";
        return Err(check.refuse("helloWorld", problem));
    }
    let max_cache_size = file.max_cache_size.get().flatten();
    let pinned = check.list("pinned", file.pinned)?;
    let pins = actors::Pins::new(&pinned).map_err(|e| check.invalid("pinned", format!("{pinned:?}"), e))?;
    let prune = file.prune_config.map(|p| prune(&check, p)).transpose()?.flatten();
    let image_path = file.image_path.get().unwrap_or_else(|| PathBuf::from("/var/lib/ociregistry"));
    let port = file.port.get().unwrap_or(8080);
    let mut storage = storage(&check, file.storage, &image_path, max_cache_size.is_some())?;
    let shared = matches!(storage, StorageChoice::S3(_));
    let cluster = file.cluster.map(|c| cluster(&check, c, port, shared)).transpose()?;
    if let (StorageChoice::S3(s3), Some(cluster)) = (&mut storage, &cluster) {
        // A replica is named in the bucket's access journal by its URL.
        s3.replica = cluster.me.clone();
    }
    let registries = registries(&mut check, file.registries.unwrap_or_default())?;
    let server_tls = file.server_tls_config.map(|s| server_tls(&mut check, s)).transpose()?.flatten();
    let admin = file.admin.map(|a| admin(&check, a)).transpose()?.flatten();
    let (freshness, scrub) = (Freshness::default(), ScrubSettings::default());
    // The built-in defaults, each beside its key.
    let mirror = MirrorConfig {
        image_path,
        upstreams: registries,
        upstream_bandwidth: file.upstream_bandwidth.get().flatten(),
        rate_limit_reserve: file.rate_limit_reserve.get().unwrap_or(actors::upstream::pull_budget::DEFAULT_RESERVE),
        timeouts: Timeouts {
            connect: file.connect_timeout.get().unwrap_or(Duration::from_secs(10)),
            head: file.pull_timeout.get().unwrap_or(Duration::from_secs(60)),
            idle: file.idle_timeout.get().unwrap_or(Duration::from_secs(60)),
        },
        policy: file.upstream_policy.get().unwrap_or_default(),
        // Small, so that a small volume still caches; a full disk is handled per object anyway.
        min_free_space: file.min_free_space.get().unwrap_or(1 << 20),
        // Well above any real layer (the largest public ones, CUDA and model images, run to a few GiB), far below a
        // volume an endless body could fill; it also bounds an archive entry `load` decompresses.
        max_blob_size: file.max_blob_size.get().unwrap_or(Some(16 << 30)),
        actor_idle_timeout: file.actor_idle_timeout.get().unwrap_or(Duration::from_secs(60)),
        scrub: ScrubSettings { interval: file.scrub_interval.get().unwrap_or(scrub.interval), ..scrub },
        freshness: Freshness {
            tag_ttl: file.tag_ttl.get().unwrap_or(freshness.tag_ttl),
            always_pull_latest: file.always_pull_latest.get().unwrap_or(false),
            revalidate_timeout: file.revalidate_timeout.get().unwrap_or(freshness.revalidate_timeout),
            negative_ttl: file.negative_ttl.get().unwrap_or(freshness.negative_ttl),
        },
        air_gapped: file.air_gapped.get().unwrap_or(false),
        // On: lazy pullers read a layer's table of contents at its end first (docs/configuration.md).
        range_pass_through: file.range_pass_through.get().unwrap_or(true),
        lifecycle: LifecycleSettings { max_cache_size, pins, prune },
        storage,
        cluster,
    };
    let settings = Settings {
        mirror,
        host: file.host.get().unwrap_or_else(|| "0.0.0.0".to_string()),
        port,
        log_level: file.log_level.get().unwrap_or(crate::values::LogLevel::Info),
        log_format: file.log_format.get().unwrap_or_default(),
        log_file: file.log_file.get(),
        client_idle_timeout: file.client_idle_timeout.get().unwrap_or(Duration::from_secs(60)),
        shutdown_grace: file.shutdown_grace.get().unwrap_or(Duration::from_secs(60)),
        server_tls,
        health_port: file.health.get().flatten(),
        metrics_port: file.metrics.get().flatten(),
        admin,
        default_ns: file.default_ns.get(),
        preload_images: file.preload_images.get(),
        image_file: file.image_file.get(),
        platform: PlatformFilter { os: file.os.get(), arch: file.arch.get() },
        config_source: source.to_string(),
    };
    Ok((settings, check.warnings))
}

/// `pruneConfig`: its values are checked even when it is off; `None` unless `enabled`.
fn prune(check: &Check<'_>, p: PruneFile) -> Result<Option<actors::PruneSchedule>, ConfigError> {
    if p.enabled.get() != Some(true) {
        return Ok(None);
    }
    // The Go server's defaults: 30 days, once a day.
    let duration = p.duration.get().unwrap_or(Duration::from_secs(30 * 24 * 3600));
    let rule = match (p.kind.get().unwrap_or(Some(PruneRule::NotPulledFor)), p.expr.get()) {
        (Some(rule), _) => rule(duration),
        (None, Some(exprs)) => PruneRule::Matches(exprs),
        (None, None) => return Err(check.required_by("pruneConfig.expr", "pruneConfig.type", " (type: pattern)")),
    };
    let dry_run = p.dry_run.get().unwrap_or(false) || p.dryrun.get().unwrap_or(false);
    let request = actors::PruneRequest { rules: vec![rule], limit: p.count.get().flatten(), dry_run };
    Ok(Some(actors::PruneSchedule { request, every: p.frequency.get().unwrap_or(Duration::from_secs(24 * 3600)) }))
}

/// `serverTlsConfig`: `None` (plain HTTP) when neither `cert` nor `key` is set.
fn server_tls(check: &mut Check<'_>, s: ServerTlsFile) -> Result<Option<TlsFiles>, ConfigError> {
    let (cert, key, ca) = (s.cert.get(), s.key.get(), s.ca.get());
    let verify = s.client_auth.get().unwrap_or(false);
    let k = |name: &str| format!("serverTlsConfig.{name}");
    check.together((&k("cert"), cert.is_some()), (&k("key"), key.is_some()))?;
    // Verifying needs the CA, and HTTPS: client certificates are requested in the TLS handshake.
    for (name, set) in [("ca", ca.is_some()), ("cert", cert.is_some())] {
        if verify && !set {
            return Err(check.required_by(&k(name), &k("clientAuth"), " to verify"));
        }
    }
    if !verify && ca.is_some() {
        let file = check.file;
        check.warnings.push(format!(
            "config key 'serverTlsConfig.ca' in {file} has no effect while 'serverTlsConfig.clientAuth' is none \
             (client certificates are not requested), ignored"
        ));
    }
    let client_ca = ca.filter(|_| verify);
    check.readable(&k("cert"), cert.as_deref(), "server certificate file")?;
    check.readable(&k("key"), key.as_deref(), "server key file")?;
    check.readable(&k("ca"), client_ca.as_deref(), "client CA file")?;
    let (Some(cert), Some(key)) = (cert, key) else {
        return Ok(None);
    };
    Ok(Some(TlsFiles { cert, key, client_ca, require_client_cert: verify }))
}

/// `admin`: `None` (no admin listener) when neither key is set; the token is read here, the one time.
fn admin(check: &Check<'_>, a: AdminFile) -> Result<Option<AdminSettings>, ConfigError> {
    let (port, token_file) = (a.port.get(), a.token_file.get());
    check.together(("admin.port", port.is_some()), ("admin.tokenFile", token_file.is_some()))?;
    let (Some(port), Some(token_file)) = (port, token_file) else {
        return Ok(None);
    };
    let shown = format!("{:?}", token_file.display().to_string());
    let token = read_token(&token_file).map_err(|reason| check.invalid("admin.tokenFile", shown, reason))?;
    Ok(Some(AdminSettings { port, token_file, token: Secret::new(token) }))
}
