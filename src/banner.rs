//! The startup banner: what runs, where, with which configuration and cache, in the spirit of the Go server's.

use std::time::SystemTime;

use crate::config::Settings;
use crate::summary::{policy_name, rate_text, tls_line, upstream_line};

fn ids() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_string()
    };
    format!("{}:{}", field("Uid:"), field("Gid:"))
}

/// Print the banner to standard error. The cache's index loads in the background; its summary is logged when done
/// (`cache index loaded`).
pub fn print(settings: &Settings) {
    let line = "-".repeat(70);
    let args: Vec<String> = std::env::args().collect();
    let upstreams: Vec<String> = settings.mirror.upstreams.iter().map(upstream_line).collect();
    eprintln!("{line}");
    eprintln!("OCI Registry: pull-only, pull-through, caching OCI Distribution Server");
    eprintln!("Version: {}", env!("CARGO_PKG_VERSION"));
    eprintln!("Started: {} (port {})", humantime::format_rfc3339_seconds(SystemTime::now()), settings.port);
    eprintln!("Running as (uid:gid) {}", ids());
    eprintln!("Process id: {}", std::process::id());
    eprintln!("Tls: {}", settings.server_tls.as_ref().map_or_else(|| "none".to_string(), tls_line));
    let port = |p: Option<u16>| p.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
    eprintln!(
        "Ports: registry {}, health {}, metrics {}, admin {}",
        settings.port,
        port(settings.health_port),
        port(settings.metrics_port),
        port(settings.admin.as_ref().map(|a| a.port))
    );
    eprintln!("Command line: {}", args.join(" "));
    eprintln!("Config: {}", settings.config_source);
    eprintln!(
        "Cache: {} (its index loads in the background; served from meanwhile)",
        settings.mirror.image_path.display()
    );
    eprintln!("Upstreams: {}", if upstreams.is_empty() { "none".to_string() } else { upstreams.join(", ") });
    eprintln!("Upstream policy: {} (namespaces not listed above)", policy_name(settings.mirror.policy));
    if let Some(rate) = settings.mirror.upstream_bandwidth {
        eprintln!("Upstream bandwidth: {} for all upstreams together", rate_text(rate.get()));
    }
    eprintln!("{line}");
}
