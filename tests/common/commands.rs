//! The `load`, `list` and `prune` commands run as the operator runs them (`ociregistry --config-file CFG load ...`),
//! and the size of a cache as the cap counts it.

use std::path::Path;
use std::process::Command;

/// What a command printed and how it exited.
#[derive(Debug)]
pub struct Ran {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// `ociregistry --config-file CONFIG ARGS...`, with the output captured.
pub fn ociregistry(config: &Path, args: &[&str]) -> Ran {
    let out = Command::new(env!("CARGO_BIN_EXE_ociregistry"))
        .arg("--config-file")
        .arg(config)
        .args(args)
        .output()
        .expect("run ociregistry");
    Ran {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Like [`ociregistry`], panicking unless it exits 0.
pub fn ociregistry_ok(config: &Path, args: &[&str]) -> Ran {
    let ran = ociregistry(config, args);
    assert!(ran.ok, "ociregistry {args:?} failed ({:?}):\n{}\n{}", ran.code, ran.stdout, ran.stderr);
    ran
}

/// Bytes the cap counts: blob files and manifest files (not their `.type` files, records or the journal).
pub fn cache_bytes(cache: &Path) -> u64 {
    fn sum(dir: &Path, skip_type: bool) -> u64 {
        let mut total = 0;
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                total += sum(&p, skip_type);
            } else if !(skip_type && p.extension().is_some_and(|x| x == "type")) {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        total
    }
    sum(&cache.join("blobs"), false) + sum(&cache.join("manifests"), true)
}

/// Whether the cache holds a blob or manifest file named by this digest.
pub fn holds(cache: &Path, digest: &str) -> bool {
    let (alg, hex) = digest.split_once(':').expect("a digest");
    cache.join("blobs").join(alg).join(hex).exists() || cache.join("manifests").join(alg).join(hex).exists()
}
