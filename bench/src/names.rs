//! `names`: requests for repositories that do not exist, each name new (what a scanner or a typo storm sends), and
//! what they cost in resident memory: before, at the peak, right after, and once the server has had time to let
//! go of per-repository state (for ours: once `ociregistry_image_actors` is back to 0).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::http::Client;
use crate::rss::{status_kib, Sampler};

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The value of a gauge without labels in a `/metrics` exposition at `addr`.
pub fn gauge(addr: &str, name: &str) -> Option<f64> {
    let (_, body) = Client::new(addr).request("GET", "/metrics", &[], None).ok()?;
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `names --addr H:P --prefix library/nope- [--query ?ns=..] --count N --clients C --pid PID [--metrics H:P]
/// [--settle-s 90]`.
pub fn cmd_names(args: &crate::Args) -> Result<(), String> {
    let addr = args.str("addr")?;
    let prefix = args.str("prefix")?;
    let query = args.str_or("query", "");
    let count = args.num("count", 20_000)?;
    let clients = args.num("clients", 16)?.max(1);
    let pid = args.num("pid", 0)? as u32;
    let metrics = args.str_or("metrics", "");
    let settle = Duration::from_secs(args.num("settle-s", 90)?);
    let rss = || status_kib(pid, "VmRSS").unwrap_or(0);
    let start_kib = rss();
    let sampler = Sampler::start(&[pid]);
    let (next, other) = (AtomicU64::new(0), AtomicU64::new(0));
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                let mut client = Client::new(&addr);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return;
                    }
                    let path = format!("/v2/{prefix}{i}/manifests/latest{query}");
                    match client.request("GET", &path, &[("Accept", ACCEPT)], None) {
                        Ok((head, _)) if head.status == 404 => {}
                        _ => {
                            other.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let wall = t0.elapsed().as_secs_f64();
    let peak_kib = sampler.stop()[0];
    let end_kib = rss();
    let actors_end = if metrics.is_empty() { None } else { gauge(&metrics, "ociregistry_image_actors") };
    let settled = Instant::now();
    loop {
        let done = match actors_end {
            Some(_) => gauge(&metrics, "ociregistry_image_actors") == Some(0.0),
            None => settled.elapsed() >= Duration::from_secs(5),
        };
        if done || settled.elapsed() >= settle {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let idle_s = settled.elapsed().as_secs_f64();
    let idle_kib = rss();
    let actors_idle = if metrics.is_empty() { None } else { gauge(&metrics, "ociregistry_image_actors") };
    let show = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.0}"));
    println!(
        "requests={count} not_404={} wall_s={wall:.2} rss_start_kib={start_kib} rss_peak_kib={peak_kib} \
         rss_end_kib={end_kib} rss_idle_kib={idle_kib} idle_after_s={idle_s:.1} actors_end={} actors_idle={}",
        other.load(Ordering::Relaxed),
        show(actors_end),
        show(actors_idle)
    );
    Ok(())
}
