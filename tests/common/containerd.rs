//! A private containerd daemon and `ctr` as the production client.
//!
//! The daemon gets its own root, state, sockets and `opt` dir in a temp dir;
//! CRI and the snapshotters that need special filesystems are disabled. Pulls
//! go through `ctr images pull --hosts-dir CERTS_D`, with
//! `CERTS_D/_default/hosts.toml` naming one mirror and a fallback `server` on
//! a closed port, so a pull can only succeed through the mirror. `ctr`
//! resolves and fetches in its own process and needs no `--plain-http` when
//! the mirror's URL is `http://` (hosts.toml is re-read on every pull).
//!
//! What containerd 1.6 sends to the mirror: `HEAD /v2/<name>/manifests/<tag>?ns=docker.io`,
//! then `GET .../manifests/<digest>?ns=docker.io` and `GET .../blobs/<digest>?ns=docker.io`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::ports::closed_port;
use super::process::{run, try_run, ChildGuard};
use super::{wait_for, TestDir};

/// The ctr namespace the tests use.
const NAMESPACE: &str = "test";

pub struct Containerd {
    guard: ChildGuard,
    socket: PathBuf,
    certs_d: PathBuf,
    _dir: TestDir,
}

impl Containerd {
    /// Start a daemon and wait until `ctr version` reaches it.
    pub fn start() -> Containerd {
        let dir = TestDir::new("containerd");
        let root = dir.subdir("root");
        let state = dir.subdir("state");
        let opt = dir.subdir("opt");
        let certs_d = dir.subdir("certs.d");
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
                root = root.display(),
                state = state.display(),
                opt = opt.display(),
                sock = socket.display(),
            ),
        )
        .expect("write containerd config");
        let mut guard = ChildGuard::spawn(
            "containerd",
            Command::new("containerd")
                .arg("--config")
                .arg(&config)
                .arg("--address")
                .arg(&socket)
                .arg("--root")
                .arg(&root)
                .arg("--state")
                .arg(&state),
            dir.path(),
        );
        wait_for("containerd to answer", Duration::from_secs(30), || {
            assert!(guard.is_running(), "containerd exited:\n{}", guard.log_tail());
            Command::new("ctr")
                .arg("-a")
                .arg(&socket)
                .arg("version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| ())
        });
        Containerd { guard, socket, certs_d, _dir: dir }
    }

    /// Point `_default` (every registry host) at one mirror, e.g.
    /// `http://127.0.0.1:PORT`, with a fallback server that never answers.
    pub fn set_mirror(&self, mirror_url: &str) {
        self.set_mirror_with(mirror_url, "");
    }

    /// Like [`Containerd::set_mirror`], with more keys for the mirror's
    /// `[host]` table (TOML lines, e.g. `ca = "/path/ca.pem"`).
    pub fn set_mirror_with(&self, mirror_url: &str, host_keys: &str) {
        let d = self.certs_d.join("_default");
        std::fs::create_dir_all(&d).expect("create hosts dir");
        let mut toml = format!(
            "server = \"http://127.0.0.1:{}\"\n\n[host.\"{mirror_url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            closed_port()
        );
        for line in host_keys.lines().filter(|l| !l.trim().is_empty()) {
            toml.push_str(&format!("  {}\n", line.trim()));
        }
        std::fs::write(d.join("hosts.toml"), toml).expect("write hosts.toml");
    }

    fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("-a").arg(&self.socket).arg("-n").arg(NAMESPACE);
        cmd
    }

    fn pull_cmd(&self, reference: &str, extra: &[&str]) -> Command {
        let mut cmd = self.ctr();
        cmd.args(["images", "pull", "--snapshotter", snapshotter()])
            .arg("--hosts-dir")
            .arg(&self.certs_d)
            .args(extra)
            .arg(reference);
        cmd
    }

    /// `ctr images pull REF` (default platform, unpacked).
    pub fn try_pull(&self, reference: &str) -> Result<String, String> {
        try_run(&mut self.pull_cmd(reference, &[]))
    }

    pub fn pull(&self, reference: &str) {
        self.try_pull(reference).unwrap_or_else(|e| panic!("{e}"));
    }

    /// `ctr images pull --platform PLATFORM REF`.
    pub fn pull_platform(&self, reference: &str, platform: &str) {
        try_run(&mut self.pull_cmd(reference, &["--platform", platform])).unwrap_or_else(|e| panic!("{e}"));
    }

    /// `ctr images pull --all-platforms REF`.
    pub fn pull_all_platforms(&self, reference: &str) {
        try_run(&mut self.pull_cmd(reference, &["--all-platforms"])).unwrap_or_else(|e| panic!("{e}"));
    }

    /// `ctr images rm --sync REF`: the image and (garbage-collected) its
    /// content are gone, so a new pull fetches everything again.
    pub fn rm(&self, reference: &str) {
        run(self.ctr().args(["images", "rm", "--sync", reference]));
    }

    /// The digest the image `reference` points at, from `ctr images ls`.
    pub fn image_digest(&self, reference: &str) -> Option<String> {
        let out = run(self.ctr().args(["images", "ls"]));
        out.lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&reference))
            .and_then(|cols| cols.get(2).map(|s| s.to_string()))
    }

    /// Digests in the content store (containerd verified each on commit).
    pub fn content(&self) -> BTreeSet<String> {
        run(self.ctr().args(["content", "ls", "-q"]))
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Number of committed snapshots (unpacked layers).
    pub fn snapshot_count(&self) -> usize {
        run(self.ctr().args(["snapshots", "--snapshotter", snapshotter(), "ls"]))
            .lines()
            .skip(1)
            .filter(|l| l.contains("Committed"))
            .count()
    }

    pub fn log_tail(&self) -> String {
        self.guard.log_tail()
    }
}

/// The snapshotter for pulls: `OCIREGISTRY_E2E_SNAPSHOTTER` if set, else
/// `overlayfs` if an overlay mount works here (it does on the project's
/// machines), else `native` (slower, but needs no special mounts).
fn snapshotter() -> &'static str {
    static S: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        std::env::var("OCIREGISTRY_E2E_SNAPSHOTTER").unwrap_or_else(|_| {
            if overlay_mount_works() {
                "overlayfs".to_string()
            } else {
                eprintln!("overlay mounts fail here; containerd tests use the native snapshotter");
                "native".to_string()
            }
        })
    })
}

fn overlay_mount_works() -> bool {
    let dir = TestDir::new("overlay-probe");
    let [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map(|d| dir.subdir(d));
    let mounted = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display()))
        .arg(&merged)
        .output()
        .is_ok_and(|o| o.status.success());
    if mounted {
        let _ = Command::new("umount").arg(&merged).status();
    }
    mounted
}
