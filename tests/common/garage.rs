//! A 3-node Garage cluster (the S3-compatible distributed store) on loopback, for the scale-out tests.
//!
//! The `garage` binary comes from `$OCIREGISTRY_GARAGE`, else the test cache `scripts/test` installs it into
//! (`${XDG_CACHE_HOME:-~/.cache}/ociregistry-test/garage/bin/garage`), else `PATH`. Each node has its own
//! directories, RPC port and S3 port; they are connected, given a layout (one zone, replication factor 3), and a
//! bucket and a key with read and write on it are created. Nodes are killed on drop; one can be stopped alone to
//! see the cluster serve on without it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::ports::free_port;
use super::process::{run, ChildGuard};
use super::{wait_for, TestDir};

/// The bucket every test uses (a cluster per test, so no sharing).
pub const BUCKET: &str = "ociregistry";
/// The region Garage answers for.
pub const REGION: &str = "garage";
const KEY_NAME: &str = "ociregistry-test";
/// A fixed RPC secret: the cluster lives on loopback for one test.
const RPC_SECRET: &str = "6b1d3e5c0f2a49d8b7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4";

/// Where the garage binary is, or why not.
pub fn garage_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("OCIREGISTRY_GARAGE") {
        return Ok(PathBuf::from(path));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("ociregistry-test/garage/bin/garage"));
    if let Some(path) = cache.filter(|p| p.is_file()) {
        return Ok(path);
    }
    let found = Command::new("sh").arg("-c").arg("command -v garage").output().map_err(|e| e.to_string())?;
    if found.status.success() {
        return Ok(PathBuf::from(String::from_utf8_lossy(&found.stdout).trim()));
    }
    Err("garage is not installed: scripts/test installs it (cargo install --locked garage) into \
         ~/.cache/ociregistry-test/garage; or set OCIREGISTRY_GARAGE"
        .to_string())
}

struct Node {
    config: PathBuf,
    rpc_port: u16,
    s3_port: u16,
    guard: Option<ChildGuard>,
}

/// See the module documentation.
pub struct Garage {
    bin: PathBuf,
    nodes: Vec<Node>,
    pub access_key_id: String,
    pub secret_access_key: String,
    dir: TestDir,
}

impl Garage {
    /// Three nodes, connected, with a layout, the bucket and a key.
    pub fn start() -> Garage {
        let bin = garage_binary().unwrap_or_else(|e| panic!("{e}"));
        let dir = TestDir::new("garage");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let (rpc_port, s3_port) = (free_port(), free_port());
            let base = dir.subdir(&format!("node{i}"));
            let config = base.join("garage.toml");
            std::fs::write(&config, node_config(&base, rpc_port, s3_port)).expect("write garage config");
            nodes.push(Node { config, rpc_port, s3_port, guard: None });
        }
        let mut garage = Garage { bin, nodes, access_key_id: String::new(), secret_access_key: String::new(), dir };
        for i in 0..3 {
            garage.start_node(i);
        }
        garage.form_cluster();
        garage
    }

    fn cli(&self, node: usize) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(&self.nodes[node].config);
        cmd
    }

    fn start_node(&mut self, i: usize) {
        let mut cmd = self.cli(i);
        cmd.arg("server").env("RUST_LOG", "garage=warn");
        let guard = ChildGuard::spawn(&format!("garage-{i}"), &mut cmd, self.dir.path());
        self.nodes[i].guard = Some(guard);
        let port = self.nodes[i].s3_port;
        wait_for(&format!("garage node {i} S3 port {port}"), Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    /// Connect the nodes, assign and apply a layout, create the bucket and the key.
    fn form_cluster(&mut self) {
        let mut ids = Vec::new();
        for i in 0..3 {
            let out = run(self.cli(i).args(["node", "id", "-q"]));
            let id = out.trim().split('@').next().unwrap_or_default().to_string();
            assert_eq!(id.len(), 64, "garage node id: {out}");
            ids.push(id);
        }
        for (i, id) in ids.iter().enumerate().skip(1) {
            let addr = format!("{id}@127.0.0.1:{}", self.nodes[i].rpc_port);
            wait_for(&format!("garage node 0 connects to node {i}"), Duration::from_secs(30), || {
                self.cli(0).args(["node", "connect", &addr]).output().ok().filter(|o| o.status.success())
            });
        }
        for id in &ids {
            run(self.cli(0).args(["layout", "assign", "-z", "dc1", "-c", "1G", &id[..16]]));
        }
        run(self.cli(0).args(["layout", "apply", "--version", "1"]));
        // The layout reaches every node through gossip; bucket creation needs a quorum that knows it.
        wait_for("garage bucket creation", Duration::from_secs(60), || {
            self.cli(0).args(["bucket", "create", BUCKET]).output().ok().filter(|o| o.status.success())
        });
        let out = run(self.cli(0).args(["key", "create", KEY_NAME]));
        self.access_key_id = field(&out, "Key ID").unwrap_or_else(|| panic!("no key id in: {out}"));
        self.secret_access_key = field(&out, "Secret key").unwrap_or_else(|| panic!("no secret in: {out}"));
        run(self.cli(0).args(["bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", KEY_NAME]));
    }

    /// The S3 endpoint of node `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// Kill node `i` (SIGKILL: a crashed machine).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut guard) = self.nodes[i].guard.take() {
            guard.kill();
        }
    }

    /// The `storage:` YAML for a server using node `i` as its endpoint, credentials from files in `dir`.
    pub fn storage_yaml(&self, i: usize, dir: &Path, local_cache_size: &str) -> String {
        let (id, secret) = (dir.join("s3-access-key-id"), dir.join("s3-secret-access-key"));
        std::fs::write(&id, &self.access_key_id).expect("write key id");
        std::fs::write(&secret, &self.secret_access_key).expect("write secret");
        format!(
            "storage:\n  type: s3\n  s3:\n    endpoint: {}\n    bucket: {BUCKET}\n    region: {REGION}\n    \
             pathStyle: true\n    accessKeyIdFile: {}\n    secretAccessKeyFile: {}\n    localCacheSize: {local_cache_size}\n",
            self.endpoint(i),
            id.display(),
            secret.display()
        )
    }
}

/// The value after `name:` on a line of the CLI's output.
fn field(out: &str, name: &str) -> Option<String> {
    out.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim().eq_ignore_ascii_case(name)).then(|| value.trim().to_string())
    })
}

fn node_config(base: &Path, rpc_port: u16, s3_port: u16) -> String {
    format!(
        "metadata_dir = \"{meta}\"\n\
         data_dir = \"{data}\"\n\
         db_engine = \"sqlite\"\n\
         replication_factor = 3\n\
         rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
         rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
         rpc_secret = \"{RPC_SECRET}\"\n\
         \n\
         [s3_api]\n\
         s3_region = \"{REGION}\"\n\
         api_bind_addr = \"127.0.0.1:{s3_port}\"\n",
        meta = base.join("meta").display(),
        data = base.join("data").display(),
    )
}

/// A client of the test bucket through node `node`.
pub fn bucket(garage: &Garage, node: usize) -> object_store::aws::AmazonS3 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(garage.endpoint(node))
        .with_bucket_name(BUCKET)
        .with_region(REGION)
        .with_access_key_id(&garage.access_key_id)
        .with_secret_access_key(&garage.secret_access_key)
        .with_virtual_hosted_style_request(false)
        .with_allow_http(true)
        .build()
        .expect("S3 client")
}

/// Every object in the bucket under `prefix` (e.g. `blobs/`), with its bytes, read through node `node`.
pub fn objects(garage: &Garage, node: usize, prefix: &str) -> Vec<(String, Vec<u8>)> {
    use futures_util::StreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};
    let bucket = bucket(garage, node);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let root = object_store::path::Path::from(prefix.trim_end_matches('/'));
        let listed: Vec<_> = bucket.list(Some(&root)).collect().await;
        let mut out = Vec::new();
        for meta in listed {
            let meta = meta.expect("list the bucket");
            let bytes = bucket.get(&meta.location).await.expect("get").bytes().await.expect("read object");
            out.push((meta.location.to_string(), bytes.to_vec()));
        }
        out
    })
}
