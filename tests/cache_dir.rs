//! The cache directory under stress: a blob larger than the free space, a volume smaller than any fixed reserve, a
//! read-only directory, and a second server on the same directory.

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

fn mount_or_skip(path: &Path, size: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(path, size) {
        Ok(m) => Some(m),
        Err(e) if unsafe_not_root() => {
            eprintln!("skipped: mounting a tmpfs needs root ({e})");
            None
        }
        Err(e) => panic!("mount tmpfs: {e}"),
    }
}

fn stored(dir: &Path, digest: &str) -> bool {
    let hex = digest.trim_start_matches("sha256:");
    walk(dir).iter().any(|p| p.to_string_lossy().contains(hex))
}

#[test]
fn a_blob_larger_than_the_free_space_passes_through_while_everything_else_is_still_cached() {
    let up = Upstream::start();
    let dir = TestDir::new("diskfull");
    // Far smaller than the 6 MB layer; room for everything else.
    let Some(mount) = mount_or_skip(&dir.path().join("cache"), "4m") else { return };
    let image = images::custom(&up, &dir.subdir("work"), "library/fat:1", &[6_000_000, 2_000]);
    let after = images::custom(&up, &dir.subdir("work2"), "library/slim:1", &[300_000]);
    let big = image.manifest().layers[0].digest.clone();
    let config = ServerConfig { image_path: Some(mount.0.clone()), ..ServerConfig::for_upstream(&up.url()) };
    let mut server = Server::start_with(config);

    for round in 1..=2 {
        let dest = dir.path().join(format!("out{round}"));
        skopeo::pull_verified(&server.url(), &image, &image.reference(), &dest);
    }
    up.settle_log();
    let gets = up.access_log_count("GET", &format!("/blobs/{big}"));
    assert_eq!(gets, 2, "an uncacheable blob is fetched once for each pull, never served half-cached");
    assert!(!stored(&mount.0, &big), "the blob that does not fit is not in the cache");
    // Everything that fits is cached, at once, and so is the next image: one big blob stops nothing else.
    let small = &image.manifest().layers[1];
    for digest in [&image.digest, &image.manifest().config.digest, &small.digest] {
        assert!(stored(&mount.0, digest), "{digest} fits and is cached");
    }
    skopeo::pull_verified(&server.url(), &after, &after.reference(), &dir.path().join("after"));
    for b in after.blobs() {
        assert!(stored(&mount.0, &b.digest), "{} of the next image is cached", b.digest);
    }
    server.stop();
}

#[test]
fn a_volume_smaller_than_any_fixed_reserve_still_caches() {
    let mut up = Upstream::start();
    let dir = TestDir::new("smallvol");
    let Some(mount) = mount_or_skip(&dir.path().join("cache"), "3m") else { return };
    let image = images::custom(&up, &dir.subdir("work"), "library/tiny:1", &[1_000_000, 500_000]);
    let config = ServerConfig { image_path: Some(mount.0.clone()), ..ServerConfig::for_upstream(&up.url()) };
    let mut server = Server::start_with(config);
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("out1"));
    for b in image.blobs() {
        assert!(stored(&mount.0, &b.digest), "{} is cached on a 3 MiB volume", b.digest);
    }
    up.stop();
    server.restart();
    skopeo::pull_verified(&server.url(), &image, &image.reference(), &dir.path().join("out2"));
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

/// A read-only bind mount of a directory for the duration of a test.
struct ReadOnlyBind(PathBuf);

impl ReadOnlyBind {
    fn mount(source: &Path, target: &Path) -> Result<ReadOnlyBind, String> {
        std::fs::create_dir_all(target).map_err(|e| e.to_string())?;
        let run = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("mount").args(args).output().map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        };
        let (src, dst) = (source.to_string_lossy().into_owned(), target.to_string_lossy().into_owned());
        run(&["--bind", &src, &dst])?;
        let bind = ReadOnlyBind(target.to_path_buf());
        run(&["-o", "remount,bind,ro", &dst])?;
        Ok(bind)
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_cache_serves_what_it_has_passes_the_rest_through_and_is_not_ready() {
    let up = Upstream::start();
    let dir = TestDir::new("readonly");
    let cached = images::custom(&up, &dir.subdir("work"), "library/early:1", &[200_000]);
    let late = images::custom(&up, &dir.subdir("work2"), "library/late:1", &[300_000]);
    let cache = dir.subdir("cache");
    let mut first =
        Server::start_with(ServerConfig { image_path: Some(cache.clone()), ..ServerConfig::for_upstream(&up.url()) });
    skopeo::pull_verified(&first.url(), &cached, &cached.reference(), &dir.path().join("out1"));
    first.stop();

    let ro = match ReadOnlyBind::mount(&cache, &dir.path().join("ro-cache")) {
        Ok(m) => m,
        Err(e) if unsafe_not_root() => {
            eprintln!("skipped: a read-only bind mount needs root ({e})");
            return;
        }
        Err(e) => panic!("read-only bind mount: {e}"),
    };
    let health = common::ports::free_port();
    let config = ServerConfig { image_path: Some(ro.0.clone()), ..ServerConfig::for_upstream(&up.url()) }
        .extra(&format!("health: {health}"));
    let server = Server::start_with(config);
    let ready = common::http::client().get(format!("http://127.0.0.1:{health}/ready")).send().expect("ready");
    assert_eq!(ready.status().as_u16(), 503, "not ready: the cache directory takes no files");
    up.settle_log();
    let before = up.access_log().len();
    // What was cached is served from the read-only cache without asking the upstream.
    skopeo::pull_verified(&server.url(), &cached, &cached.reference(), &dir.path().join("out2"));
    up.settle_log();
    // After a restart a tag is checked once with a HEAD (its tagTtl counts from the last check); nothing is fetched.
    let asked: Vec<_> =
        up.access_log()[before..].iter().filter(|e| e.method == "GET").map(|e| e.path().to_string()).collect();
    assert!(asked.iter().all(|p| !p.contains("library/early")), "cached image served from cache: {asked:?}");
    // New content still pulls, passed through uncached.
    skopeo::pull_verified(&server.url(), &late, &late.reference(), &dir.path().join("out3"));
    let hex = late.manifest().layers[0].digest.trim_start_matches("sha256:").to_string();
    assert!(!walk(&cache).iter().any(|p| p.to_string_lossy().contains(&hex)), "nothing written to a read-only cache");
    drop(server);
}
