//! Preloading: skopeo-made archives (docker-archive, plain and gzipped; OCI layout, directory and tar) load into a
//! stopped server's directory and through a running server's admin API with the upstream stopped, and containerd
//! then pulls them through the mirror; an image list loads every platform of an index (a bad line fails alone, and
//! the exit code says so); `list --json` shows what was loaded; `serve` preloads in the background and `/ready`
//! reports it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::admin::server_with_admin;
use common::commands::{holds, ociregistry, ociregistry_ok};
use common::containerd::Containerd;
use common::images::{self, Image};
use common::process::run;
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::{skopeo, wait_for, TestDir};
use serde_json::Value;

/// `skopeo copy docker://UPSTREAM/REPO:TAG DEST` from the upstream's push registry.
fn skopeo_to(up: &Upstream, image: &Image, dest: &str, all: bool) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--src-tls-verify=false", "--src-no-creds"]);
    if all {
        cmd.arg("--all");
    }
    cmd.arg(format!("docker://{}/{}:{}", up.push_host(), image.repo, image.tag)).arg(dest);
    run(&mut cmd);
}

fn gzip_file(src: &Path, dest: &Path) {
    let mut input = std::fs::File::open(src).expect("open");
    let mut out =
        flate2::write::GzEncoder::new(std::fs::File::create(dest).expect("create"), flate2::Compression::fast());
    std::io::copy(&mut input, &mut out).expect("gzip");
    out.finish().expect("gzip");
}

fn tar_dir(src: &Path, dest: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(dest).expect("create"));
    b.append_dir_all(".", src).expect("tar");
    b.finish().expect("tar");
}

/// The `list --json` entries, by `repository:reference`.
fn listed(config: &Path) -> Vec<Value> {
    let out = ociregistry_ok(config, &["list", "--json"]);
    serde_json::from_str::<Vec<Value>>(&out.stdout).unwrap_or_else(|e| panic!("list --json: {e}\n{}", out.stdout))
}

fn entry<'a>(entries: &'a [Value], repo: &str, reference: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| e["repository"] == repo && e["reference"] == reference)
        .unwrap_or_else(|| panic!("{repo}:{reference} not listed: {entries:#?}"))
}

#[test]
fn skopeo_archives_load_with_the_upstream_stopped_then_containerd_pulls_them_through_the_mirror() {
    let mut up = Upstream::start();
    let dir = TestDir::new("archives");
    let hello = images::hello(&up, dir.path());
    let docker2 = images::docker2(&up, dir.path());
    let multi = images::multi(&up, dir.path());
    let big = images::custom(&up, &dir.subdir("w"), "library/plain:2", &[400_000]);
    // A docker-archive without a name, one with a name (gzipped), an OCI layout directory (every platform), and the
    // OCI layout of another image as a tar (loaded later through the running server).
    let unnamed = dir.path().join("hello.tar");
    skopeo_to(&up, &hello, &format!("docker-archive:{}", unnamed.display()), false);
    let named = dir.path().join("docker2.tar");
    skopeo_to(&up, &docker2, &format!("docker-archive:{}:docker.io/library/docker2:v1", named.display()), false);
    let named_gz = dir.path().join("docker2.tar.gz");
    gzip_file(&named, &named_gz);
    let layout = dir.path().join("multi-oci");
    skopeo_to(&up, &multi, &format!("oci:{}:latest", layout.display()), true);
    let plain_layout = dir.path().join("plain-oci");
    skopeo_to(&up, &big, &format!("oci:{}:2", plain_layout.display()), false);
    let plain_tar = dir.path().join("plain-oci.tar");
    tar_dir(&plain_layout, &plain_tar);
    up.stop();

    let (mut server, _admin) = server_with_admin(ServerConfig::for_upstream(&up.url()), &dir);
    server.stop();
    let config = server.config_file().to_path_buf();
    let cache = server.cache_dir().to_path_buf();
    // An archive without a name needs one.
    let nameless = ociregistry(&config, &["load", "--image-file", &unnamed.display().to_string()]);
    assert!(!nameless.ok && nameless.stdout.contains("--resolve-ref"), "{nameless:?}");
    let file = |p: &PathBuf| p.display().to_string();
    ociregistry_ok(
        &config,
        &["load", "--image-file", &file(&unnamed), "--resolve-ref", "docker.io/library/hello:latest"],
    );
    let gz = ociregistry_ok(&config, &["load", "--image-file", &file(&named_gz)]);
    assert!(gz.stdout.contains("loaded 1 image(s)"), "{}", gz.stdout);
    // Loading the same archive again changes nothing (idempotent), and the plain tar loads too.
    let before = common::cached_files(&cache);
    ociregistry_ok(&config, &["load", "--image-file", &file(&named)]);
    assert_eq!(common::cached_files(&cache), before, "loading again changes nothing");
    ociregistry_ok(&config, &["load", "--image-file", &file(&layout), "--resolve-ref", "docker.io/library/multi"]);
    // OCI layouts keep the original digests.
    assert!(holds(&cache, &multi.digest) && multi.blobs().iter().all(|b| holds(&cache, &b.digest)));
    let entries = listed(&config);
    let multi_entry = entry(&entries, "library/multi", "latest");
    assert_eq!(multi_entry["digest"], multi.digest.as_str());
    assert_eq!((multi_entry["type"].as_str(), multi_entry["platforms"].as_u64()), (Some("index"), Some(2)));
    let docker2_digest = entry(&entries, "library/docker2", "v1")["digest"].as_str().expect("digest").to_string();
    let hello_digest = entry(&entries, "library/hello", "latest")["digest"].as_str().expect("digest").to_string();

    // The server starts on the loaded cache; the upstream is gone. An archive loads through the admin API too.
    server.restart();
    let remote = ociregistry_ok(
        &config,
        &["load", "--image-file", &file(&plain_tar), "--resolve-ref", "docker.io/library/plain"],
    );
    assert!(remote.stdout.contains("loaded 1 image(s)"), "{}", remote.stdout);
    let ctr = Containerd::start();
    ctr.set_mirror(&server.url());
    ctr.pull(&hello.reference());
    assert_eq!(ctr.image_digest(&hello.reference()), Some(hello_digest));
    ctr.pull(&docker2.reference());
    assert_eq!(ctr.image_digest(&docker2.reference()), Some(docker2_digest));
    ctr.pull_all_platforms(&multi.reference());
    assert_eq!(ctr.image_digest(&multi.reference()), Some(multi.digest.clone()));
    let plain_ref = "docker.io/library/plain:2";
    ctr.pull(plain_ref);
    assert_eq!(ctr.image_digest(plain_ref), Some(big.digest.clone()), "an OCI layout keeps its digest");
    let content = ctr.content();
    for image in [&hello, &docker2, &multi, &big] {
        for b in image.manifests.iter().map(|m| &m.config) {
            assert!(content.contains(&b.digest), "{}: config {} pulled", image.reference(), b.digest);
        }
    }
    assert!(ctr.snapshot_count() >= 4, "the loaded layers unpack");
}

#[test]
fn an_image_list_loads_every_platform_a_bad_line_fails_alone_and_list_json_shows_them() {
    let mut up = Upstream::start();
    let dir = TestDir::new("list");
    let multi = images::multi(&up, dir.path());
    let hello = images::hello(&up, dir.path());
    let list = dir.path().join("images.txt");
    std::fs::write(
        &list,
        "# the site's images\n\ndocker.io/library/multi:latest\nhello   # Docker Hub, library/, latest\n\
         docker.io/library/missing:1\n",
    )
    .expect("write list");
    let mut server = Server::start(&up.url());
    server.stop();
    let config = server.config_file().to_path_buf();
    let ran = ociregistry(&config, &["load", "--image-file", &list.display().to_string()]);
    assert_eq!(ran.code, Some(1), "one image failed: exit 1\n{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("loaded 2 image(s)") && ran.stdout.contains("library/missing:1"), "{}", ran.stdout);
    let entries = listed(&config);
    assert_eq!(entry(&entries, "library/multi", "latest")["platforms"], 2);
    entry(&entries, "library/hello", "latest");
    assert_eq!(entries.len(), 2, "images only, not their platform manifests: {entries:#?}");
    let table = ociregistry_ok(&config, &["list", "--header", "--pattern", "multi"]);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", table.stdout);
    assert!(lines[0].starts_with("IMAGE") && lines[0].contains("TAG/DIGEST") && lines[0].contains("SIZE"));
    assert!(lines[1].starts_with("docker.io/library/multi") && lines[1].contains("index"), "{}", table.stdout);

    // Every platform is served with the upstream gone.
    up.stop();
    server.restart();
    skopeo::pull_verified(&server.url(), &multi, &multi.reference(), &dir.path().join("multi"));
    skopeo::pull_verified(&server.url(), &hello, &hello.reference(), &dir.path().join("hello"));
}

#[test]
fn serve_preloads_in_the_background_and_ready_reports_it() {
    let mut up = Upstream::start();
    let dir = TestDir::new("serve-preload");
    let multi = images::multi(&up, dir.path());
    let list = dir.path().join("images.txt");
    std::fs::write(&list, "docker.io/library/multi:latest\n").expect("write list");
    let health = common::ports::free_port();
    let config = ServerConfig::for_upstream(&up.url())
        .extra(&format!("health: {health}\npreloadImages: {}\narch: arm64", list.display()));
    let server = Server::start_with(config);
    let ready = format!("http://127.0.0.1:{health}/ready");
    let body = wait_for("the preload to finish", Duration::from_secs(60), || {
        let resp = common::http::client().get(&ready).send().ok()?;
        assert_eq!(resp.status().as_u16(), 200, "a running preload does not hold readiness back");
        let body = resp.text().ok()?;
        body.contains("preload done").then_some(body)
    });
    assert!(body.contains("1 of 1 images loaded, 0 failed"), "{body}");
    let arm = multi.platform("linux/arm64");
    let amd = multi.platform("linux/amd64");
    assert!(arm.blobs().iter().all(|b| holds(server.cache_dir(), &b.digest)), "arch: arm64 was preloaded");
    assert!(!holds(server.cache_dir(), &amd.config.digest), "only the configured platform");
    up.stop();
    let (digest, _, _) = images::get_manifest(&server.url(), "docker.io/library/multi", &arm.digest);
    assert_eq!(digest, arm.digest, "the preloaded platform is served with the upstream gone");
}
