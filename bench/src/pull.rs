//! Pulling images the way containerd does through a mirror: `HEAD` the tag, `GET` the manifest by the digest that
//! answered, then `GET` the config and every layer, on one kept-alive connection per client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::http::Client;
use crate::image::{hex, sha256_hex};
use crate::rss::Sampler;

/// containerd 1.6's `Accept` on manifest requests.
pub const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, */*";

/// How much a pull checks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Sizes and the manifest digest.
    Sizes,
    /// Also every blob's sha256.
    Digests,
}

/// Pull `repo:tag` completely; returns the bytes received (manifest and blobs).
pub fn pull_image(c: &mut Client, repo: &str, tag: &str, query: &str, verify: Verify) -> Result<u64, String> {
    let (head, _) = c
        .request("HEAD", &format!("/v2/{repo}/manifests/{tag}{query}"), &[("Accept", ACCEPT)], None)
        .map_err(|e| format!("HEAD {repo}:{tag}: {e}"))?;
    if head.status != 200 {
        return Err(format!("HEAD {repo}:{tag}: status {}", head.status));
    }
    let digest = head.header("docker-content-digest").ok_or("HEAD: no Docker-Content-Digest")?.to_string();
    let (head, manifest) = c
        .request("GET", &format!("/v2/{repo}/manifests/{digest}{query}"), &[("Accept", ACCEPT)], None)
        .map_err(|e| format!("GET manifest {repo}@{digest}: {e}"))?;
    if head.status != 200 {
        return Err(format!("GET manifest {repo}@{digest}: status {}", head.status));
    }
    if format!("sha256:{}", sha256_hex(&manifest)) != digest {
        return Err(format!("manifest {repo}@{digest}: wrong digest"));
    }
    let m: serde_json::Value = serde_json::from_slice(&manifest).map_err(|e| format!("manifest JSON: {e}"))?;
    let descriptors = std::iter::once(&m["config"]).chain(m["layers"].as_array().into_iter().flatten());
    let mut total = manifest.len() as u64;
    for d in descriptors {
        let (Some(blob), Some(size)) = (d["digest"].as_str(), d["size"].as_u64()) else {
            return Err(format!("manifest {repo}@{digest}: descriptor without digest or size"));
        };
        let mut hasher = (verify == Verify::Digests).then(Sha256::new);
        let (head, n) = c
            .fetch("GET", &format!("/v2/{repo}/blobs/{blob}{query}"), &[], &mut |b| {
                if let Some(h) = hasher.as_mut() {
                    h.update(b);
                }
            })
            .map_err(|e| format!("GET blob {blob}: {e}"))?;
        if head.status != 200 {
            return Err(format!("GET blob {blob}: status {}", head.status));
        }
        if n != size {
            return Err(format!("GET blob {blob}: {n} bytes, expected {size}"));
        }
        if let Some(h) = hasher {
            if format!("sha256:{}", hex(&h.finalize())) != blob {
                return Err(format!("GET blob {blob}: wrong digest"));
            }
        }
        total += n;
    }
    Ok(total)
}

/// `storm`: `--clients` clients pull the same image at the same instant, each on a connection of its own. Client 0
/// checks every digest, the others sizes only (hashing 50 copies would make the client the bottleneck). Prints the
/// wall time until the last client finished and the peak RSS of `--rss-pids` during the storm.
pub fn cmd_storm(args: &crate::Args) -> Result<(), String> {
    let addr = args.str("addr")?;
    let repo = args.str("repo")?;
    let tag = args.str_or("tag", "1");
    let query = args.str_or("query", "");
    let clients = args.num("clients", 10)? as usize;
    let pids = args.pids("rss-pids")?;
    let sampler = Sampler::start(&pids);
    let barrier = Arc::new(Barrier::new(clients + 1));
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let (addr, repo, tag, query, barrier) =
                (addr.clone(), repo.clone(), tag.clone(), query.clone(), barrier.clone());
            std::thread::spawn(move || {
                let verify = if i == 0 { Verify::Digests } else { Verify::Sizes };
                barrier.wait();
                pull_image(&mut Client::new(&addr), &repo, &tag, &query, verify)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let results: Vec<_> = workers.into_iter().map(|w| w.join().expect("storm client")).collect();
    let wall = start.elapsed().as_secs_f64();
    let peaks = sampler.stop();
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    for e in failed.iter().take(3) {
        eprintln!("ocibench storm {repo}: {e}");
    }
    let bytes: u64 = results.iter().filter_map(|r| r.as_ref().ok()).sum();
    println!(
        "wall_s={wall:.3} ok={} failed={} bytes={bytes} peak_rss_kib={}",
        clients - failed.len(),
        failed.len(),
        peaks.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",")
    );
    Ok(())
}

/// `pull-all`: `--clients` pullers share the images `<prefix><i, 4 digits>` for i < `--count` (each image pulled
/// once, every digest checked); prints images per second.
pub fn cmd_pull_all(args: &crate::Args) -> Result<(), String> {
    let addr = args.str("addr")?;
    let prefix = args.str("prefix")?;
    let tag = args.str_or("tag", "1");
    let query = args.str_or("query", "");
    let count = args.num("count", 1500)? as usize;
    let clients = args.num("clients", 10)? as usize;
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let (errors, bytes) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| {
                    let mut c = Client::new(&addr);
                    let (mut errors, mut bytes) = (Vec::new(), 0u64);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return (errors, bytes);
                        }
                        match pull_image(&mut c, &format!("{prefix}{i:04}"), &tag, &query, Verify::Digests) {
                            Ok(n) => bytes += n,
                            Err(e) => errors.push(e),
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("puller")).fold((Vec::new(), 0), |(mut e, b), (e2, b2)| {
            e.extend(e2);
            (e, b + b2)
        })
    });
    let wall = start.elapsed().as_secs_f64();
    for e in errors.iter().take(3) {
        eprintln!("ocibench pull-all: {e}");
    }
    println!(
        "images={count} failed={} wall_s={wall:.3} images_per_s={:.1} bytes={bytes}",
        errors.len(),
        (count - errors.len()) as f64 / wall
    );
    Ok(())
}
