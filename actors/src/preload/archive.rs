//! Reading image archives: an OCI image layout (a directory, or a tar of one) and a `docker save` tarball, either
//! tar gzipped or not. Nothing here trusts the archive: every blob and manifest is checked against its digest when
//! it enters the cache (`import`).
//!
//! A gzipped tar is decompressed once into a temporary file (the system's temporary directory), since blobs are read
//! at random; a plain tar is read in place, by the offset of each entry. The decompression is bounded
//! (`SpoolBound`): its tar headers are read as the bytes come, so an entry that declares more than the largest blob
//! accepted is refused before any of its bytes are written, and the whole may not grow past the cache's bound or
//! the temporary directory's free space; a refused archive leaves nothing behind (a gzip bomb of a few MB cannot
//! become GiBs on disk).
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
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fetch::bound::{BlobBound, Limit};
use crate::store::Store;

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

/// What a gzipped archive may decompress to. `None`: no bound of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SpoolBound {
    /// The largest entry: the largest blob accepted (`maxBlobSize`, the cache's bound).
    pub entry: Option<Limit>,
    /// The most bytes in all: the cache's bound (whatever is loaded must fit in it).
    pub total: Option<Limit>,
}

impl SpoolBound {
    /// The bound of an archive loaded into `store`.
    pub async fn of(bound: BlobBound, store: &Store) -> SpoolBound {
        let total = store.capacity().await.map(|c| c.total);
        SpoolBound {
            entry: bound.limit_for(total, store.min_free()),
            total: bound.cache_limit(total, store.min_free()),
        }
    }
}

/// A decompressing reader that copies every byte it gives into the spool file, up to `max` bytes in all.
struct Spooler<'a, R> {
    inner: R,
    out: &'a mut File,
    written: u64,
    /// The bound and what it is (for the error).
    max: Option<(u64, String)>,
}

impl<R: Read> Read for Spooler<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some((max, why)) = &self.max {
            if self.written + n as u64 > *max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("it decompresses to more than {max} bytes ({why}); refused"),
                ));
            }
        }
        self.out.write_all(&buf[..n])?;
        self.written += n as u64;
        Ok(n)
    }
}

/// The free space of the volume of the system's temporary directory, where a gzipped archive is decompressed.
fn temp_free() -> Option<u64> {
    let st = rustix::fs::statvfs(std::env::temp_dir()).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The tar entries of `reader` (name -> offset of its data, size), refusing an entry larger than `entry_max`.
fn index_tar(reader: impl Read, entry_max: Option<Limit>) -> io::Result<HashMap<String, (u64, u64)>> {
    let mut entries = HashMap::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let entry = entry?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            continue;
        }
        let name = clean(&entry.path()?.to_string_lossy());
        let size = entry.size();
        if let Some(limit) = entry_max.filter(|l| size > l.bytes) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{name} declares {size} bytes, more than the largest blob accepted, {limit}; refused"),
            ));
        }
        entries.insert(name, (entry.raw_file_position(), size));
    }
    Ok(entries)
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
    /// Open a directory, a tar, or a gzipped tar (decompressed within `bound`).
    pub fn open(path: &Path, bound: SpoolBound) -> io::Result<Source> {
        if path.is_dir() {
            return Ok(Source { kind: SourceKind::Dir(path.to_path_buf()) });
        }
        let mut file = File::open(path)?;
        let mut magic = [0u8; 2];
        let gz = file.read_exact(&mut magic).is_ok() && is_gzip(&magic);
        file.seek(SeekFrom::Start(0))?;
        let (file, entries, spool) = if gz {
            // Decompressed and indexed in one pass: each header is checked before its entry's bytes are spooled.
            // On any error the spool is removed with its handle.
            let mut spool = tempfile::Builder::new().prefix("ociregistry-load-").tempfile()?;
            let free = temp_free().map(|free| (free, format!("the free space of {}", std::env::temp_dir().display())));
            let cache = bound.total.map(|l| (l.bytes, format!("the largest cache, {l}")));
            let max = [free, cache].into_iter().flatten().min_by_key(|(n, _)| *n);
            let decoder = flate2::read::MultiGzDecoder::new(io::BufReader::new(file));
            let mut spooler = Spooler { inner: decoder, out: spool.as_file_mut(), written: 0, max };
            let entries = index_tar(&mut spooler, bound.entry)?;
            // The end-of-archive blocks and anything after them: not needed to read the entries.
            drop(spooler);
            let (f, path) = spool.into_parts();
            (f, entries, Some(path))
        } else {
            let entries = index_tar(&file, None)?;
            (file, entries, None)
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::bound::LimitBy;

    /// A gzipped tar of one `size`-byte entry of zeros (a small gzip bomb), in a temporary file.
    fn gzipped_zeros(size: u64) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let gz = flate2::write::GzEncoder::new(file.reopen().expect("reopen"), flate2::Compression::best());
        let mut tar = tar::Builder::new(gz);
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "blobs/sha256/zeros", io::repeat(0).take(size)).expect("tar");
        tar.into_inner().expect("tar").finish().expect("gzip");
        file
    }

    fn limit(bytes: u64, by: LimitBy) -> Option<Limit> {
        Some(Limit { bytes, by })
    }

    #[test]
    fn a_gzipped_entry_over_the_largest_blob_is_refused_by_its_header() {
        let bomb = gzipped_zeros(4 << 20);
        let bound = SpoolBound { entry: limit(1 << 20, LimitBy::MaxBlobSize), total: None };
        let err = Source::open(bomb.path(), bound).err().expect("refused").to_string();
        assert!(err.contains("blobs/sha256/zeros declares 4194304 bytes"), "{err}");
        assert!(err.contains("maxBlobSize"), "{err}");
    }

    #[test]
    fn a_gzipped_archive_is_bounded_in_all_and_loads_within_its_bounds() {
        let bomb = gzipped_zeros(4 << 20);
        let bound = SpoolBound { entry: None, total: limit(3 << 20, LimitBy::MaxCacheSize) };
        let err = Source::open(bomb.path(), bound).err().expect("refused").to_string();
        assert!(err.contains("more than 3145728 bytes"), "{err}");
        let bound = SpoolBound { entry: limit(4 << 20, LimitBy::MaxBlobSize), total: limit(5 << 20, LimitBy::Volume) };
        let source = Source::open(bomb.path(), bound).expect("within the bounds");
        let entry = source.entry("blobs/sha256/zeros").expect("entry");
        assert_eq!(entry.size, 4 << 20);
        assert_eq!(entry.read_at((4 << 20) - 3, 3).expect("read"), vec![0, 0, 0]);
    }
}
