//! Test images made without a network.
//!
//! Images are written as OCI image layouts (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`) and pushed to the real upstream with skopeo.
//! Layers are valid gzip-compressed tars (containerd unpacks them) holding
//! random bytes, so every layer is unique and incompressible; the config's
//! `rootfs.diff_ids` are the sha256 of the uncompressed tars (containerd
//! checks them when unpacking).
//!
//! After a push, [`read_back`] asks the registry what it stores (skopeo may
//! rewrite manifests, e.g. for `--format v2s2`), so tests compare against the
//! upstream's own digests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::http;
use super::process::run;
use super::sha256_digest;
use super::upstream::Upstream;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A blob as a manifest names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// A platform as written in an index: `os`, `architecture`, `variant`.
#[derive(Debug, Clone, Copy)]
pub struct Platform {
    pub os: &'static str,
    pub arch: &'static str,
    pub variant: Option<&'static str>,
}

pub const LINUX_AMD64: Platform = Platform { os: "linux", arch: "amd64", variant: None };
pub const LINUX_ARM64_V8: Platform = Platform { os: "linux", arch: "arm64", variant: Some("v8") };

impl Platform {
    /// `os/arch[/variant]`, as `ctr --platform` takes it.
    pub fn name(&self) -> String {
        match self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.arch),
            None => format!("{}/{}", self.os, self.arch),
        }
    }
}

// ---------------------------------------------------------------------------
// Random bytes

/// splitmix64: fast even in a debug build (a 32 MiB layer in ~0.1 s), and
/// seeded from the OS so every run's layers are new.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        Rng(rand::random())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        for chunk in v.chunks_mut(8) {
            let x = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&x[..chunk.len()]);
        }
        v
    }
}

impl Default for Rng {
    fn default() -> Self {
        Rng::new()
    }
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    Rng::new().bytes(n)
}

// ---------------------------------------------------------------------------
// OCI image layout

/// An OCI image layout directory being written.
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn create(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("create layout");
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write oci-layout");
        std::fs::write(
            dir.join("index.json"),
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).to_string(),
        )
        .expect("write index.json");
        Layout { dir: dir.to_path_buf() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Store a blob under its digest.
    pub fn put_blob(&self, bytes: &[u8], media_type: &str) -> BlobRef {
        let digest = sha256_digest(bytes);
        let path = self.dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        std::fs::write(path, bytes).expect("write blob");
        BlobRef { digest, size: bytes.len() as u64, media_type: media_type.to_string() }
    }

    /// Name a manifest or index in `index.json` with a tag
    /// (`org.opencontainers.image.ref.name`), as `oci:DIR:TAG` finds it.
    pub fn tag(&self, desc: &BlobRef, tag: &str) {
        let path = self.dir.join("index.json");
        let mut index: Value = serde_json::from_slice(&std::fs::read(&path).expect("read index.json")).unwrap();
        index["manifests"].as_array_mut().unwrap().push(json!({
            "mediaType": desc.media_type,
            "digest": desc.digest,
            "size": desc.size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        std::fs::write(&path, index.to_string()).expect("write index.json");
    }

    /// Write one image (layers, config, manifest) and return the manifest's
    /// descriptor. Each layer is a tar.gz with one random file of the given
    /// size.
    pub fn add_image(&self, layer_sizes: &[usize], platform: Platform) -> BlobRef {
        let mut rng = Rng::new();
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, &size) in layer_sizes.iter().enumerate() {
            let tar = layer_tar(&mut rng, i, size);
            diff_ids.push(sha256_digest(&tar));
            layers.push(self.put_blob(&gzip(&tar), OCI_LAYER_GZIP));
        }
        let mut config = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": platform.arch,
            "os": platform.os,
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/data/none"],
                "Labels": {"ociregistry.e2e.nonce": format!("{:016x}", rng.next_u64())},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": layer_sizes.iter().enumerate()
                .map(|(i, s)| json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("e2e layer {i} ({s} bytes)")}))
                .collect::<Vec<_>>(),
        });
        if let Some(v) = platform.variant {
            config["variant"] = json!(v);
        }
        let config = self.put_blob(config.to_string().as_bytes(), OCI_CONFIG);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(&config),
            "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
        });
        self.put_blob(manifest.to_string().as_bytes(), OCI_MANIFEST)
    }

    /// Write an index over one image per platform; returns its descriptor.
    pub fn add_index(&self, images: &[(Platform, &[usize])]) -> BlobRef {
        let manifests: Vec<Value> = images
            .iter()
            .map(|(platform, sizes)| {
                let m = self.add_image(sizes, *platform);
                let mut p = json!({"architecture": platform.arch, "os": platform.os});
                if let Some(v) = platform.variant {
                    p["variant"] = json!(v);
                }
                let mut d = descriptor(&m);
                d["platform"] = p;
                d
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        self.put_blob(index.to_string().as_bytes(), OCI_INDEX)
    }
}

fn descriptor(b: &BlobRef) -> Value {
    json!({"mediaType": b.media_type, "digest": b.digest, "size": b.size})
}

/// An uncompressed layer tar: a directory, a small text file and one random
/// file of `size` bytes.
fn layer_tar(rng: &mut Rng, index: usize, size: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_mtime(1_704_067_200);
    dir.set_size(0);
    dir.set_cksum();
    b.append_data(&mut dir, "data/", std::io::empty()).expect("tar dir");
    let note = format!("e2e layer {index}\n");
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_mtime(1_704_067_200);
    h.set_size(note.len() as u64);
    h.set_cksum();
    b.append_data(&mut h, format!("data/layer-{index}.txt"), note.as_bytes()).expect("tar note");
    let content = rng.bytes(size);
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_mtime(1_704_067_200);
    h.set_size(size as u64);
    h.set_cksum();
    b.append_data(&mut h, format!("data/random-{index}-{:08x}.bin", rng.next_u64() as u32), &content[..])
        .expect("tar file");
    b.into_inner().expect("finish tar")
}

/// gzip without compression: random content does not compress, and stored
/// deflate blocks keep a 32 MiB layer fast in a debug build. Still a valid
/// gzip stream for containerd and skopeo.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// A layout with one single-platform image tagged `tag`.
pub fn image_layout(dir: &Path, tag: &str, layer_sizes: &[usize]) -> Layout {
    let layout = Layout::create(dir);
    let m = layout.add_image(layer_sizes, LINUX_AMD64);
    layout.tag(&m, tag);
    layout
}

/// A layout with a linux/amd64 + linux/arm64/v8 index tagged `tag`.
pub fn index_layout(dir: &Path, tag: &str, amd64: &[usize], arm64: &[usize]) -> Layout {
    let layout = Layout::create(dir);
    let i = layout.add_index(&[(LINUX_AMD64, amd64), (LINUX_ARM64_V8, arm64)]);
    layout.tag(&i, tag);
    layout
}

// ---------------------------------------------------------------------------
// Push and read back

/// Manifest format on the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Keep the layout's OCI manifest (or index) byte for byte.
    Oci,
    /// Docker schema2 (`skopeo --format v2s2`).
    V2s2,
}

/// `skopeo copy oci:LAYOUT:TAG docker://UPSTREAM/DEST` (`DEST` like
/// `library/hello:latest`), every platform of an index included.
pub fn push(layout: &Path, tag: &str, upstream: &Upstream, dest: &str, format: Format) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--all", "--dest-tls-verify=false"]);
    cmd.arg("--dest-no-creds");
    if format == Format::V2s2 {
        cmd.args(["--format", "v2s2"]);
    }
    cmd.arg(format!("oci:{}:{tag}", layout.display())).arg(format!("docker://{}/{dest}", upstream.push_host()));
    run(&mut cmd);
}

/// One image manifest (not an index) as stored upstream.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// `os/arch[/variant]` from the index entry; `None` for a lone manifest.
    pub platform: Option<String>,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
}

impl Manifest {
    /// Config and layers.
    pub fn blobs(&self) -> Vec<&BlobRef> {
        std::iter::once(&self.config).chain(&self.layers).collect()
    }
}

/// An image as stored upstream: what its tag points at (a manifest or an
/// index) and every image manifest under it.
#[derive(Debug, Clone)]
pub struct Image {
    /// Repository, e.g. `library/hello`.
    pub repo: String,
    pub tag: String,
    /// Digest of what the tag points at.
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// The manifest itself, or the children of an index.
    pub manifests: Vec<Manifest>,
}

impl Image {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    /// `docker.io/library/hello:latest`
    pub fn reference(&self) -> String {
        format!("docker.io/{}:{}", self.repo, self.tag)
    }

    /// `docker.io/library/hello@sha256:…`
    pub fn digest_reference(&self) -> String {
        format!("docker.io/{}@{}", self.repo, self.digest)
    }

    /// The only manifest of a single-platform image.
    pub fn manifest(&self) -> &Manifest {
        assert!(!self.is_index(), "{} is an index", self.reference());
        &self.manifests[0]
    }

    /// The child manifest whose platform starts with `platform`
    /// (`linux/arm64` matches `linux/arm64/v8`).
    pub fn platform(&self, platform: &str) -> &Manifest {
        self.manifests
            .iter()
            .find(|m| m.platform.as_deref().is_some_and(|p| p.starts_with(platform)))
            .unwrap_or_else(|| panic!("{} has no {platform} manifest", self.reference()))
    }

    /// Every blob (configs and layers) of every platform.
    pub fn blobs(&self) -> Vec<&BlobRef> {
        self.manifests.iter().flat_map(|m| m.blobs()).collect()
    }
}

/// GET a manifest from a registry, accepting every manifest type; checks
/// that the body's sha256 equals `Docker-Content-Digest`.
pub fn get_manifest(base_url: &str, repo: &str, reference: &str) -> (String, String, Vec<u8>) {
    let url = format!("{base_url}/v2/{repo}/manifests/{reference}");
    let resp = http::client()
        .get(&url)
        .header("Accept", http::ACCEPT_ALL_MANIFESTS)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    let digest = http::header(&resp, "Docker-Content-Digest");
    let media_type = http::header(&resp, "Content-Type");
    let bytes = resp.bytes().expect("manifest body").to_vec();
    assert_eq!(digest, sha256_digest(&bytes), "GET {url}: digest header");
    (digest, media_type, bytes)
}

/// What a registry stores under `repo:tag`.
pub fn read_back(base_url: &str, repo: &str, tag: &str) -> Image {
    let (digest, media_type, bytes) = get_manifest(base_url, repo, tag);
    let json: Value = serde_json::from_slice(&bytes).expect("manifest JSON");
    let manifests = if media_type == OCI_INDEX || media_type == DOCKER_LIST {
        json["manifests"]
            .as_array()
            .expect("index manifests")
            .iter()
            .map(|entry| {
                let child = entry["digest"].as_str().expect("child digest");
                let (d, mt, b) = get_manifest(base_url, repo, child);
                assert_eq!(d, child);
                let p = &entry["platform"];
                let mut platform =
                    format!("{}/{}", p["os"].as_str().unwrap_or(""), p["architecture"].as_str().unwrap_or(""));
                if let Some(v) = p["variant"].as_str() {
                    platform = format!("{platform}/{v}");
                }
                parse_manifest(d, mt, b, Some(platform))
            })
            .collect()
    } else {
        vec![parse_manifest(digest.clone(), media_type.clone(), bytes.clone(), None)]
    };
    Image { repo: repo.to_string(), tag: tag.to_string(), digest, media_type, bytes, manifests }
}

fn parse_manifest(digest: String, media_type: String, bytes: Vec<u8>, platform: Option<String>) -> Manifest {
    let json: Value = serde_json::from_slice(&bytes).expect("manifest JSON");
    let blob = |v: &Value| BlobRef {
        digest: v["digest"].as_str().expect("digest").to_string(),
        size: v["size"].as_u64().expect("size"),
        media_type: v["mediaType"].as_str().unwrap_or("").to_string(),
    };
    Manifest {
        digest,
        media_type,
        platform,
        config: blob(&json["config"]),
        layers: json["layers"].as_array().expect("layers").iter().map(blob).collect(),
        bytes,
    }
}

// ---------------------------------------------------------------------------
// The standard fixture

/// The images every e2e test can rely on, as stored upstream.
pub struct Fixture {
    /// `library/hello:latest`: OCI manifest, 3 small layers.
    pub hello: Image,
    /// `library/docker2:v1`: Docker schema2 manifest, 2 layers.
    pub docker2: Image,
    /// `library/multi:latest`: OCI index, linux/amd64 + linux/arm64/v8.
    pub multi: Image,
    /// `library/big:1`: one ~32 MiB layer.
    pub big: Image,
}

impl Fixture {
    pub fn all(&self) -> [&Image; 4] {
        [&self.hello, &self.docker2, &self.multi, &self.big]
    }
}

/// Generate an image layout under `work`, push it as `repo_tag` (e.g.
/// `library/hello:latest`), read it back from the upstream.
pub fn make(
    upstream: &Upstream,
    work: &Path,
    repo_tag: &str,
    format: Format,
    build: impl FnOnce(&Path, &str) -> Layout,
) -> Image {
    let (repo, tag) = repo_tag.split_once(':').expect("repo:tag");
    let dir = work.join(format!("layout-{}-{tag}", repo.replace('/', "_")));
    let layout = build(&dir, tag);
    push(layout.dir(), tag, upstream, repo_tag, format);
    read_back(&upstream.push_url(), repo, tag)
}

/// A single-platform OCI image `repo_tag` with layers of these sizes.
pub fn custom(upstream: &Upstream, work: &Path, repo_tag: &str, layer_sizes: &[usize]) -> Image {
    make(upstream, work, repo_tag, Format::Oci, |d, t| image_layout(d, t, layer_sizes))
}

/// `library/hello:latest`: 3 layers (~300 KiB, ~700 KiB, ~5 KiB).
pub fn hello(upstream: &Upstream, work: &Path) -> Image {
    make(upstream, work, "library/hello:latest", Format::Oci, |d, t| image_layout(d, t, &[300_000, 700_000, 5_000]))
}

/// `library/docker2:v1`: Docker schema2, 2 layers.
pub fn docker2(upstream: &Upstream, work: &Path) -> Image {
    make(upstream, work, "library/docker2:v1", Format::V2s2, |d, t| image_layout(d, t, &[200_000, 90_000]))
}

/// `library/multi:latest`: OCI index over linux/amd64 and linux/arm64/v8.
pub fn multi(upstream: &Upstream, work: &Path) -> Image {
    make(upstream, work, "library/multi:latest", Format::Oci, |d, t| {
        index_layout(d, t, &[150_000, 40_000], &[160_000, 30_000])
    })
}

/// `library/big:1`: one 32 MiB layer.
pub fn big(upstream: &Upstream, work: &Path) -> Image {
    make(upstream, work, "library/big:1", Format::Oci, |d, t| image_layout(d, t, &[32 << 20]))
}

/// Fill `upstream` with the four standard images.
pub fn fixture(upstream: &Upstream, work: &Path) -> Fixture {
    Fixture {
        hello: hello(upstream, work),
        docker2: docker2(upstream, work),
        multi: multi(upstream, work),
        big: big(upstream, work),
    }
}

/// The artifact type of the test signatures.
pub const SIGNATURE_TYPE: &str = "application/vnd.ociregistry.e2e.signature";

/// Push a signature artifact whose `subject` is `subject`, the way a signer does on a registry without the
/// referrers API (the tag schema): the artifact, and an index listing it under the tag `sha256-<hex>`. Returns the
/// artifact's digest.
pub fn sign(upstream: &Upstream, work: &Path, repo: &str, subject: &Image) -> String {
    let layout = Layout::create(work);
    let empty = layout.put_blob(b"{}", "application/vnd.oci.empty.v1+json");
    let signature = layout.put_blob(&random_bytes(64), SIGNATURE_TYPE);
    let artifact = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_TYPE,
        "config": descriptor(&empty),
        "layers": [descriptor(&signature)],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.bytes.len()},
    });
    let artifact = layout.put_blob(artifact.to_string().as_bytes(), OCI_MANIFEST);
    let mut entry = descriptor(&artifact);
    entry["artifactType"] = json!(SIGNATURE_TYPE);
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]});
    let index = layout.put_blob(index.to_string().as_bytes(), OCI_INDEX);
    let tag = format!("sha256-{}", subject.digest.trim_start_matches("sha256:"));
    layout.tag(&index, &tag);
    push(layout.dir(), &tag, upstream, &format!("{repo}:{tag}"), Format::Oci);
    artifact.digest
}
