//! Reading image archives: an OCI image layout (a directory, or a tar of one) and a `docker save` tarball, either
//! tar gzipped or not. Nothing here trusts the archive: every blob and manifest is checked against its digest when
//! it enters the cache (`import`).
//!
//! A gzipped tar is decompressed once into a temporary file (the system's temporary directory), since blobs are read
//! at random; a plain tar is read in place, by the offset of each entry.
//!
//! What becomes of each format:
//! - OCI layout: each entry of `index.json` is an image, its manifests and blobs are taken as they are, so the
//!   image keeps its digests (a pull by the original digest finds it). Its name comes from the entry's
//!   `io.containerd.image.name` annotation, or `org.opencontainers.image.ref.name` when that is a full reference,
//!   or `--resolve-ref` (which a single-image layout whose entry names only a tag, as `skopeo copy ... oci:DIR:TAG`
//!   writes it, needs; the tag is then taken from the entry unless `--resolve-ref` names one).
//! - `docker save`: the archive has no registry manifest, only each image's config and uncompressed layers, so the
//!   loader writes a Docker schema 2 manifest for it: the config (`application/vnd.docker.container.image.v1+json`)
//!   and the layers as they are in the archive (`application/vnd.docker.image.rootfs.diff.tar`, or `.tar.gzip` for a
//!   gzipped one). Its digest is therefore not the one the image had in its registry (whose layers were compressed),
//!   but it is the same for the same archive every time: loading twice changes nothing. Names come from
//!   `RepoTags`, or `--resolve-ref` for an archive of one image.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Uncompressed Docker layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Gzipped Docker layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Where an archive's files are: a directory, or a tar file (decompressed into a temporary file if it was gzipped).
pub(crate) struct Source {
    kind: SourceKind,
}

enum SourceKind {
    Dir(PathBuf),
    Tar {
        file: Arc<File>,
        /// Entry name -> (offset of its data, size).
        entries: HashMap<String, (u64, u64)>,
        /// The decompressed copy of a gzipped tar, deleted with the source.
        _spool: Option<tempfile::TempPath>,
    },
}

/// A file of the archive opened for reading at offsets.
#[derive(Clone)]
pub(crate) struct Entry {
    pub file: Arc<File>,
    pub offset: u64,
    pub size: u64,
}

impl Entry {
    /// Up to `len` bytes at `pos` (relative to the entry).
    pub fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let len = len.min(self.size.saturating_sub(pos) as usize);
        let mut buf = vec![0; len];
        let mut done = 0;
        while done < len {
            let n = self.file.read_at(&mut buf[done..], self.offset + pos + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "archive entry ends early"));
            }
            done += n;
        }
        Ok(buf)
    }

    /// The first bytes (to tell gzip from tar).
    pub fn head(&self) -> io::Result<Vec<u8>> {
        self.read_at(0, 8)
    }
}

/// Whether a file starts like a gzip stream.
fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

/// Whether `path` is an archive (a directory, a tar, a gzip) rather than a text list of images.
pub fn is_archive(path: &Path) -> io::Result<bool> {
    if path.is_dir() {
        return Ok(true);
    }
    let mut head = [0u8; 512];
    let mut f = File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(is_gzip(&head[..n]) || (n == 512 && &head[257..262] == b"ustar"))
}

fn clean(name: &str) -> String {
    name.trim_start_matches("./").trim_start_matches('/').to_string()
}

impl Source {
    /// Open a directory, a tar, or a gzipped tar.
    pub fn open(path: &Path) -> io::Result<Source> {
        if path.is_dir() {
            return Ok(Source { kind: SourceKind::Dir(path.to_path_buf()) });
        }
        let mut file = File::open(path)?;
        let mut magic = [0u8; 2];
        let gz = file.read_exact(&mut magic).is_ok() && is_gzip(&magic);
        file.seek(SeekFrom::Start(0))?;
        let (file, spool) = if gz {
            let mut spool = tempfile::Builder::new().prefix("ociregistry-load-").tempfile()?;
            io::copy(&mut flate2::read::MultiGzDecoder::new(io::BufReader::new(file)), spool.as_file_mut())?;
            let (f, path) = spool.into_parts();
            (f, Some(path))
        } else {
            (file, None)
        };
        let mut entries = HashMap::new();
        {
            let mut reader = &file;
            reader.seek(SeekFrom::Start(0))?;
            let mut archive = tar::Archive::new(reader);
            for entry in archive.entries()? {
                let entry = entry?;
                let kind = entry.header().entry_type();
                if !(kind.is_file() || kind == tar::EntryType::Continuous) {
                    continue;
                }
                let name = clean(&entry.path()?.to_string_lossy());
                entries.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
        if entries.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a tar archive (no files in it)"));
        }
        Ok(Source { kind: SourceKind::Tar { file: Arc::new(file), entries, _spool: spool } })
    }

    /// A file of the archive.
    pub fn entry(&self, name: &str) -> io::Result<Entry> {
        let name = clean(name);
        match &self.kind {
            SourceKind::Dir(root) => {
                if name.split('/').any(|c| c == "..") {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{name}: leaves the archive")));
                }
                let file = File::open(root.join(&name))?;
                let size = file.metadata()?.len();
                Ok(Entry { file: Arc::new(file), offset: 0, size })
            }
            SourceKind::Tar { file, entries, .. } => match entries.get(&name) {
                Some((offset, size)) => Ok(Entry { file: file.clone(), offset: *offset, size: *size }),
                None => Err(io::Error::new(io::ErrorKind::NotFound, format!("{name} is not in the archive"))),
            },
        }
    }

    /// Whether the archive has this file.
    pub fn has(&self, name: &str) -> bool {
        self.entry(name).is_ok()
    }

    /// A small file's bytes (JSON), at most 8 MiB.
    pub fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let entry = self.entry(name)?;
        if entry.size > 8 << 20 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{name} is too large for a JSON file")));
        }
        entry.read_at(0, entry.size as usize)
    }
}

/// The path of a blob in an OCI layout.
pub(crate) fn oci_blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

/// A descriptor, as OCI and Docker manifests write it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
}

/// A platform, as an index writes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PlatformSpec {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An index (OCI) or manifest list (Docker), or an image manifest: the parts the loader walks.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct AnyManifest {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// One entry of a `docker save` archive's `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DockerSaveEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    pub layers: Vec<String>,
}

/// The parts of a Docker image config the loader needs.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct DockerConfig {
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// A Docker schema 2 manifest as the loader writes it for a `docker save` image: fixed field order, no white space,
/// so the same image always gets the same bytes and digest.
#[derive(Debug, Serialize)]
pub(crate) struct WrittenManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: &'static str,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// Whether a media type is an index (OCI) or a manifest list (Docker).
pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.index.v1+json"
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
}
