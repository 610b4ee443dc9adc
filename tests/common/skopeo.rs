//! skopeo as a client of a registry (ours or the upstream), and checks of
//! what it wrote.
//!
//! skopeo calls `GET /v2/` first, sends no `?ns=`, and sends one `Accept`
//! header line per media type. A `docker://` reference cannot carry
//! `host:port` as a path segment, so through our server the namespace is the
//! first path segment as a host name: `docker://127.0.0.1:PORT/docker.io/library/hello:latest`.
//!
//! Two destinations: `oci:DIR:latest` (an OCI layout; skopeo converts Docker
//! schema2 manifests to OCI on the way, so the top digest changes for them)
//! and `dir:DIR` (keeps every manifest byte for byte, so any manifest's
//! digest can be checked).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use super::images::{Image, DOCKER_MANIFEST};
use super::process::try_run;
use super::sha256_digest;

/// `http://127.0.0.1:PORT` -> `127.0.0.1:PORT`
fn host_of(server_url: &str) -> &str {
    server_url.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/')
}

fn copy_cmd(server_url: &str, src_ref: &str, dest: &str, all: bool) -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--src-tls-verify=false", "--src-no-creds"]);
    if all {
        cmd.arg("--all");
    }
    cmd.arg(format!("docker://{}/{src_ref}", host_of(server_url))).arg(dest);
    cmd
}

/// `skopeo copy docker://HOST/SRC_REF oci:DEST:latest`; `Err` holds skopeo's
/// output.
pub fn try_copy_from(server_url: &str, src_ref: &str, dest: &Path, all: bool) -> Result<String, String> {
    try_run(&mut copy_cmd(server_url, src_ref, &format!("oci:{}:latest", dest.display()), all))
}

/// Like [`try_copy_from`], panicking on failure.
pub fn copy_from(server_url: &str, src_ref: &str, dest: &Path, all: bool) {
    if let Err(e) = try_copy_from(server_url, src_ref, dest, all) {
        panic!("{e}");
    }
}

/// `skopeo copy docker://HOST/SRC_REF dir:DEST`, manifests kept byte for byte.
pub fn try_copy_to_dir(server_url: &str, src_ref: &str, dest: &Path, all: bool) -> Result<String, String> {
    try_run(&mut copy_cmd(server_url, src_ref, &format!("dir:{}", dest.display()), all))
}

/// Like [`try_copy_to_dir`], panicking on failure.
pub fn copy_to_dir(server_url: &str, src_ref: &str, dest: &Path, all: bool) {
    if let Err(e) = try_copy_to_dir(server_url, src_ref, dest, all) {
        panic!("{e}");
    }
}

/// What a copy wrote, every file already checked against its digest.
#[derive(Debug)]
pub struct Pulled {
    /// Digest of the top manifest (or index).
    pub top: String,
    /// Digests of every blob and manifest written.
    pub digests: BTreeSet<String>,
}

impl Pulled {
    /// Every manifest and blob of `image` (all platforms) is present.
    pub fn assert_has_all_of(&self, image: &Image) {
        for m in &image.manifests {
            if image.is_index() {
                assert!(
                    self.digests.contains(&m.digest),
                    "{}: child manifest {} missing from the copy",
                    image.reference(),
                    m.digest
                );
            }
            for b in m.blobs() {
                assert!(
                    self.digests.contains(&b.digest),
                    "{}: blob {} missing from the copy",
                    image.reference(),
                    b.digest
                );
            }
        }
    }
}

fn check_file(path: &Path, digest: &str) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(sha256_digest(&bytes), digest, "content of {} does not match its name", path.display());
}

/// Check an OCI layout written by skopeo: every `blobs/sha256/<hex>` hashes
/// to its name; `top` is the manifest `index.json` names.
pub fn verify_oci_layout(dir: &Path) -> Pulled {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("read index.json"))
            .expect("index.json JSON");
    let top = index["manifests"][0]["digest"].as_str().expect("index.json names a manifest").to_string();
    let mut digests = BTreeSet::new();
    for entry in std::fs::read_dir(dir.join("blobs/sha256")).expect("read blobs dir") {
        let entry = entry.expect("dir entry");
        let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
        check_file(&entry.path(), &digest);
        digests.insert(digest);
    }
    assert!(digests.contains(&top), "top manifest {top} not in blobs/");
    Pulled { top, digests }
}

/// Check a `dir:` copy: `manifest.json` is the top manifest, child manifests
/// are `<hex>.manifest.json`, blobs are `<hex>`; each hashes to its name.
pub fn verify_dir(dir: &Path) -> Pulled {
    let top_bytes = std::fs::read(dir.join("manifest.json")).expect("read manifest.json");
    let top = sha256_digest(&top_bytes);
    let mut digests = BTreeSet::from([top.clone()]);
    for entry in std::fs::read_dir(dir).expect("read copy dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "manifest.json" || name == "version" {
            continue;
        }
        let hex = name.trim_end_matches(".manifest.json");
        let digest = format!("sha256:{hex}");
        check_file(&entry.path(), &digest);
        digests.insert(digest);
    }
    Pulled { top, digests }
}

/// Copy `src_ref` (e.g. `image.reference()` or `image.digest_reference()`)
/// from `server_url` into `dest` and check every byte against `image`: OCI
/// images through an OCI layout, Docker schema2 through `dir:` (which keeps
/// its manifest as is); every platform of an index.
pub fn pull_verified(server_url: &str, image: &Image, src_ref: &str, dest: &Path) {
    let all = image.is_index();
    let pulled = if image.media_type == DOCKER_MANIFEST {
        copy_to_dir(server_url, src_ref, dest, all);
        verify_dir(dest)
    } else {
        copy_from(server_url, src_ref, dest, all);
        verify_oci_layout(dest)
    };
    assert_eq!(pulled.top, image.digest, "{src_ref}: top manifest digest");
    pulled.assert_has_all_of(image);
}
