//! The multi-line summary of the settings for the startup log. Never shows a password or a token.

use std::fmt;

use actors::upstream::auth::Credentials;
use actors::upstream::guard::UpstreamPolicy;
use actors::upstream::DEFAULT_MAX_CONCURRENT;
use actors::{StorageChoice, UpstreamSpec};

use crate::config::Settings;
use crate::server_tls::TlsFiles;

/// A multi-line summary for the startup banner. Never shows a password.
impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        writeln!(f, "Config: {}", self.config_source)?;
        writeln!(f, "Image path: {}", self.mirror.image_path.display())?;
        match &self.mirror.storage {
            StorageChoice::Filesystem => writeln!(f, "Storage: filesystem (image path)")?,
            StorageChoice::S3(s3) => writeln!(
                f,
                "Storage: s3 bucket {} at {} (prefix '{}'), local tier up to {} bytes in the image path",
                s3.bucket, s3.endpoint, s3.prefix, s3.local_cache_size
            )?,
        }
        if let Some(cluster) = &self.mirror.cluster {
            match &cluster.dns {
                Some(dns) => writeln!(f, "Cluster: replicas from DNS {}", dns.name)?,
                None => writeln!(f, "Cluster: replicas {}", cluster.peers.join(", "))?,
            }
        }
        writeln!(f, "Listen: {}:{}", self.host, self.port)?;
        writeln!(f, "Tls: {}", self.server_tls.as_ref().map_or_else(|| "none".to_string(), tls_line))?;
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
            humantime::format_duration(self.mirror.timeouts.connect),
            humantime::format_duration(self.mirror.timeouts.head),
            humantime::format_duration(self.mirror.timeouts.idle)
        )?;
        writeln!(f, "Client idle timeout: {}", humantime::format_duration(self.client_idle_timeout))?;
        writeln!(f, "Shutdown grace: {}", humantime::format_duration(self.shutdown_grace))?;
        writeln!(f, "Default namespace: {}", dash(self.default_ns.clone()))?;
        writeln!(f, "Upstream policy: {}", policy_name(self.mirror.policy))?;
        if let Some(rate) = self.mirror.upstream_bandwidth {
            writeln!(f, "Upstream bandwidth: {} (all upstreams together)", rate_text(rate.get()))?;
        }
        if self.mirror.air_gapped {
            writeln!(f, "Air-gapped: no upstream is ever contacted")?;
        } else {
            writeln!(
                f,
                "Tags: checked after {}{}, check waits at most {}; missing manifests remembered {}",
                self.mirror.freshness.tag_ttl,
                if self.mirror.freshness.always_pull_latest { " (latest: every pull)" } else { "" },
                humantime::format_duration(self.mirror.freshness.revalidate_timeout),
                humantime::format_duration(self.mirror.freshness.negative_ttl)
            )?;
        }
        writeln!(
            f,
            "Cache: keep {} free, blobs up to {}, scrub {}, idle actors retire after {}",
            self.mirror.min_free_space,
            self.mirror.max_blob_size.map_or_else(|| "the cache's size".to_string(), |n| format!("{n} bytes")),
            self.mirror
                .scrub
                .interval
                .map_or_else(|| "never".to_string(), |d| format!("every {}", humantime::format_duration(d))),
            humantime::format_duration(self.mirror.actor_idle_timeout)
        )?;
        writeln!(
            f,
            "Cache life: cap {}, {} pinned, prune {}, preload {}",
            self.mirror.lifecycle.max_cache_size.map_or_else(|| "none".to_string(), |n| format!("{n} bytes")),
            self.mirror.lifecycle.pins.patterns().count(),
            self.mirror.lifecycle.prune.as_ref().map_or_else(
                || "off".to_string(),
                |p| format!(
                    "{} every {}{}",
                    p.request.rules.first().map_or("none", rule_name),
                    humantime::format_duration(p.every),
                    if p.request.dry_run { " (dry run)" } else { "" }
                )
            ),
            self.preload_images.as_deref().unwrap_or("none")
        )?;
        write!(f, "Registries ({}):", self.mirror.upstreams.len())?;
        for registry in &self.mirror.upstreams {
            write!(f, "\n  {}", upstream_line(registry))?;
        }
        Ok(())
    }
}

/// `https`, and whether clients must present a certificate (`serverTlsConfig.clientAuth`).
pub fn tls_line(tls: &TlsFiles) -> String {
    format!("https (client certificates: {})", if tls.require_client_cert { "verify" } else { "none" })
}

/// One registry: `name -> base URL`, and how it is reached when not the default way. Never shows a password.
pub fn upstream_line(spec: &UpstreamSpec) -> String {
    let mut line = format!("{} -> {}", spec.namespace, spec.base_url);
    match &spec.credentials {
        Credentials::Anonymous => {}
        Credentials::Basic { user, .. } => line += &format!(" (auth: basic (user {user}))"),
        Credentials::Helper { name, .. } => line += &format!(" (auth: helper {name})"),
    }
    let tls = &spec.tls;
    if tls.client_cert.is_some() {
        line += " (mTLS)";
    }
    if let Some(ca) = &tls.ca_file {
        line += &format!(" (ca {})", ca.display());
    }
    if tls.ca_only {
        line += " (caOnly)";
    }
    if spec.max_concurrent != DEFAULT_MAX_CONCURRENT {
        line += &format!(" (maxConcurrent {})", spec.max_concurrent);
    }
    if let Some(reserve) = spec.rate_limit_reserve {
        line += &format!(" (rateLimitReserve {reserve})");
    }
    if let Some(rate) = spec.bandwidth {
        line += &format!(" (upstreamBandwidth {})", rate_text(rate.get()));
    }
    if tls.insecure_skip_verify {
        line += " (TLS verification disabled)";
    }
    for (list, patterns) in [("allow", spec.access.allow()), ("deny", spec.access.deny())] {
        if !patterns.is_empty() {
            line += &format!(" ({list} {})", patterns.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "));
        }
    }
    line
}

/// A rate for the banner, in both units an operator may have written: `625000 B/s (5 Mbit/s)`.
pub fn rate_text(bytes_per_second: u64) -> String {
    format!("{bytes_per_second} B/s ({} Mbit/s)", bytes_per_second as f64 * 8.0 / 1e6)
}

/// The `pruneConfig.type` a rule comes from.
fn rule_name(rule: &actors::PruneRule) -> &'static str {
    match rule {
        actors::PruneRule::NotPulledFor(_) => "Accessed",
        actors::PruneRule::CreatedMoreThan(_) => "Created",
        _ => "Pattern",
    }
}

/// `public`, `listed` or `any`.
pub fn policy_name(policy: UpstreamPolicy) -> &'static str {
    match policy {
        UpstreamPolicy::Public => "public",
        UpstreamPolicy::Listed => "listed",
        UpstreamPolicy::Any => "any",
    }
}
