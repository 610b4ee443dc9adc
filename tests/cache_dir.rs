//! The cache directory under stress: a full disk and a second server on the same directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::images;
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::{skopeo, TestDir};

/// A small tmpfs mounted for the duration of a test (unmounted on drop).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Tmpfs(path.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_passes_blobs_through_uncached_and_keeps_serving() {
    let up = Upstream::start();
    let dir = TestDir::new("diskfull");
    // Far smaller than the 6 MB layer plus the cache's free-space reserve.
    let mount = match Tmpfs::mount(&dir.path().join("cache"), "4m") {
        Ok(m) => m,
        Err(e) if unsafe_not_root() => {
            eprintln!("skipped: mounting a tmpfs needs root ({e})");
            return;
        }
        Err(e) => panic!("mount tmpfs: {e}"),
    };
    let image = images::custom(&up, &dir.subdir("work"), "library/fat:1", &[6_000_000, 2_000]);
    let big = image.manifest().layers[0].digest.clone();
    let config = ServerConfig { image_path: Some(mount.0.clone()), ..ServerConfig::for_upstream(&up.url()) };
    let mut server = Server::start_with(config);

    for round in 1..=2 {
        let dest = dir.path().join(format!("out{round}"));
        skopeo::pull_verified(&server.url(), &image, &image.reference(), &dest);
    }
    up.settle_log();
    let gets = up.access_log_count("GET", &format!("/blobs/{big}"));
    assert_eq!(gets, 2, "an uncacheable blob is fetched for each pull, never served half-cached");
    let hex = big.trim_start_matches("sha256:");
    let stored = walk(&mount.0).into_iter().filter(|p| p.to_string_lossy().contains(hex)).collect::<Vec<_>>();
    assert!(stored.is_empty(), "the blob that does not fit is not in the cache: {stored:?}");
    // The small manifest still made it into the cache and is served from there.
    let manifests = walk(&mount.0.join("manifests"));
    assert!(!manifests.is_empty(), "manifests are still cached");
    server.stop();
}

fn unsafe_not_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) != Some("0")))
        .unwrap_or(true)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_second_server_on_the_same_cache_refuses_to_start_naming_the_directory() {
    let up = Upstream::start();
    let server = Server::start(&up.url());
    let out = Command::new(env!("CARGO_BIN_EXE_ociregistry"))
        .arg("--config-file")
        .arg(server.config_file())
        .args(["serve", "--port", &common::ports::free_port().to_string()])
        .output()
        .expect("run a second server");
    assert!(!out.status.success(), "second server must exit with an error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&server.cache_dir().display().to_string()), "message names the directory: {stderr}");
    // The first server is unaffected.
    let resp = common::http::client().get(format!("{}/v2/", server.url())).timeout(Duration::from_secs(5)).send();
    assert!(resp.map(|r| r.status().is_success()).unwrap_or(false), "first server still serves");
}
