//! Start-up with a large cache: writing a cache directory in the server's on-disk layout (docs/architecture.md,
//! actors/src/store/layout.rs) without pulling anything, and timing a server start until it serves from it.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http::Conn;
use crate::image::{sha256_hex, MANIFEST_TYPE};
use crate::names::gauge;
use crate::pull::ACCEPT;
use crate::rss::status_kib;

/// One cached image: its manifest file, the manifest's `.type` file and its tag's reference record.
fn write_entry(root: &Path, ns: &str, repo: &str, tag: &str, i: usize, now: u64) -> std::io::Result<()> {
    let fake = |what: &str| format!("sha256:{}", sha256_hex(format!("{what}/{repo}/{i}").as_bytes()));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": fake("config"), "size": 1469},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": fake("layer0"), "size": 3623807},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": fake("layer1"), "size": 10485760},
        ],
    });
    let bytes = serde_json::to_vec(&manifest)?;
    let hex = sha256_hex(&bytes);
    let dir = root.join("manifests/sha256");
    fs::write(dir.join(&hex), &bytes)?;
    fs::write(dir.join(format!("{hex}.type")), MANIFEST_TYPE)?;
    // refs/<xx>/<sha256 of "ns/repo:tag">.json, the record's fields as in store::RefRecord.
    let key = sha256_hex(format!("{ns}/{repo}:{tag}").as_bytes());
    let record = serde_json::json!({
        "namespace": ns, "repository": repo, "reference": tag,
        "digest": format!("sha256:{hex}"), "created": now, "pulled": now,
    });
    let shard = root.join("refs").join(&key[..2]);
    fs::create_dir_all(&shard)?;
    fs::write(shard.join(format!("{key}.json")), serde_json::to_vec(&record)?)
}

/// `gen-cache`: `--count` single-tag images `<prefix><i, 6 digits>:<tag>` under namespace `--ns`, written into
/// `--dir` by a few threads.
pub fn cmd_gen_cache(args: &crate::Args) -> Result<(), String> {
    let dir = args.str("dir")?;
    let count = args.num("count", 100_000)? as usize;
    let ns = args.str_or("ns", "docker.io");
    let prefix = args.str_or("prefix", "library/start-");
    let tag = args.str_or("tag", "1");
    let root = Path::new(&dir);
    for d in ["manifests/sha256", "blobs/sha256", "refs", "tmp", "quarantine"] {
        fs::create_dir_all(root.join(d)).map_err(|e| format!("create {dir}/{d}: {e}"))?;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let threads = 4;
    let start = Instant::now();
    let results: Vec<std::io::Result<()>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (ns, prefix, tag) = (&ns, &prefix, &tag);
                s.spawn(move || {
                    (t..count)
                        .step_by(threads)
                        .try_for_each(|i| write_entry(root, ns, &format!("{prefix}{i:06}"), tag, i, now))
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("gen-cache worker")).collect()
    });
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        return Err(format!("gen-cache: {e}"));
    }
    println!("manifests={count} wall_s={:.3}", start.elapsed().as_secs_f64());
    Ok(())
}

/// `wait-ready`: poll `HEAD --path` (a cached manifest) every 2 ms until it answers 200; print the time since
/// `--t0-ns` (wall clock, taken just before the server was started) and the server's RSS then and a second later.
/// With `--metrics H:P`, then poll the server's `ociregistry_cache_index_loading` gauge every 10 ms until it is 0 and
/// print the time since `--t0-ns` and the RSS then (`nan` for a server without that gauge).
pub fn cmd_wait_ready(args: &crate::Args) -> Result<(), String> {
    let addr = args.str("addr")?;
    let path = args.str("path")?;
    let pid = args.num("pid", 0)? as u32;
    let t0_ns = args.num("t0-ns", 0)?;
    let metrics = args.str_or("metrics", "");
    let timeout = Duration::from_secs(args.num("timeout-s", 60)?);
    let since_t0 = || {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        Duration::from_nanos(now.saturating_sub(t0_ns))
    };
    let alive = || Path::new(&format!("/proc/{pid}")).exists();
    let mut last = String::from("no answer");
    loop {
        let elapsed = since_t0();
        if elapsed > timeout || !alive() {
            println!(
                "ok=false ready_ms=nan rss_kib=nan rss_1s_kib=nan loaded_ms=nan rss_loaded_kib=nan last={}",
                last.replace(' ', "_")
            );
            return Ok(());
        }
        let answer = Conn::connect(&addr).and_then(|mut c| c.request("HEAD", &path, &[("Accept", ACCEPT)], None));
        match answer {
            Ok((head, _)) if head.status == 200 => break,
            Ok((head, _)) => last = format!("status {}", head.status),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let ready = since_t0();
    let rss = status_kib(pid, "VmRSS").unwrap_or(0);
    std::thread::sleep(Duration::from_secs(1));
    let rss_1s = status_kib(pid, "VmRSS").unwrap_or(0);
    let (mut loaded_ms, mut rss_loaded) = ("nan".to_string(), "nan".to_string());
    if !metrics.is_empty() {
        while since_t0() < timeout && alive() {
            match gauge(&metrics, "ociregistry_cache_index_loading") {
                Some(0.0) => {
                    loaded_ms = format!("{:.1}", since_t0().as_secs_f64() * 1000.0);
                    rss_loaded = status_kib(pid, "VmRSS").unwrap_or(0).to_string();
                    break;
                }
                Some(_) => {}
                None => break,
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    println!(
        "ok=true ready_ms={:.1} rss_kib={rss} rss_1s_kib={rss_1s} loaded_ms={loaded_ms} rss_loaded_kib={rss_loaded} hwm_kib={}",
        ready.as_secs_f64() * 1000.0,
        status_kib(pid, "VmHWM").unwrap_or(0)
    );
    Ok(())
}
