//! Preloading the cache: from a list of image references, pulled through the configured upstreams exactly as a
//! client would pull them (through `Mirror`'s front door: the manifest, every platform's manifest, every blob read to
//! its end), or from an archive (`docker save`, OCI layout) with no upstream at all, every object entering the cache
//! verified through the cache actor (`import`).
//!
//! Loading is additive and idempotent: what is cached already is not fetched again, a tag is recorded for what it
//! names now. One image failing does not stop the others; the summary says which failed and why.
//!
//! Files: `archive` (reading archives), `import` (into the cache), `pull` (through the front door).

pub mod archive;
mod import;
mod pull;

use std::path::Path;

use serde::Deserialize;

use self::archive::{
    is_index, oci_blob_path, AnyManifest, Descriptor, DockerConfig, DockerSaveEntry, Source, SpoolBound,
    WrittenManifest, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_MANIFEST,
};
use crate::digest::Digest;
use crate::mirror::Mirror;
use crate::reference::{ImageKey, Named, Namespace, Reference};
use crate::store::for_new_manifest;

pub use self::archive::is_archive;

/// Which platforms of an index to load: all of them unless `os` or `arch` (or both) are given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformFilter {
    /// `linux`, `windows`, ...
    pub os: Option<String>,
    /// `amd64`, `arm64`, ... (`arm64/v8`: with a variant).
    pub arch: Option<String>,
}

impl PlatformFilter {
    fn accepts(&self, p: Option<&archive::PlatformSpec>) -> bool {
        let Some(p) = p else { return self.os.is_none() && self.arch.is_none() };
        let os_ok = self.os.as_deref().is_none_or(|os| os == p.os);
        let arch_ok = self.arch.as_deref().is_none_or(|want| {
            let (arch, variant) = want.split_once('/').map_or((want, None), |(a, v)| (a, Some(v)));
            arch == p.architecture && variant.is_none_or(|v| p.variant.as_deref() == Some(v))
        });
        os_ok && arch_ok
    }
}

/// Progress of a load, reported as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadEvent {
    /// How many images the file names.
    Planned {
        /// The number.
        images: usize,
    },
    /// An image is being loaded.
    Started {
        /// `ns/repo:tag`.
        image: String,
    },
    /// An image is done.
    Finished {
        /// `ns/repo:tag`.
        image: String,
        /// Bytes of its blobs (cached before or now), or why it failed.
        result: Result<u64, String>,
    },
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct LoadSummary {
    /// Images now cached.
    pub loaded: Vec<String>,
    /// Images that failed, with the reason.
    pub failed: Vec<(String, String)>,
    /// Bytes of the loaded images' blobs.
    pub bytes: u64,
}

impl LoadSummary {
    fn record(&mut self, image: String, result: &Result<u64, String>) {
        match result {
            Ok(bytes) => {
                self.loaded.push(image);
                self.bytes += bytes;
            }
            Err(why) => self.failed.push((image, why.clone())),
        }
    }
}

/// An image and the tag or digest it is named by.
pub type ImageRef = (ImageKey, Reference);

/// Parse an image reference as people write it: `docker.io/library/alpine:3.20`, `alpine` (Docker Hub, `latest`),
/// `registry.k8s.io/pause@sha256:...`, `localhost:5000/app:1`.
pub fn parse_image_ref(text: &str) -> Result<ImageRef, String> {
    let text = text.trim().trim_start_matches("docker://");
    let bad = |why: String| format!("{text:?} is not an image reference: {why}");
    let (name, reference) = match text.split_once('@') {
        Some((name, digest)) => (name, Reference::Digest(digest.parse().map_err(|e| bad(format!("{e}")))?)),
        None => {
            let last_slash = text.rfind('/').map_or(0, |i| i + 1);
            match text[last_slash..].rfind(':') {
                Some(i) => {
                    let at = last_slash + i;
                    (&text[..at], Reference::Tag(text[at + 1..].parse().map_err(|e| bad(format!("{e}")))?))
                }
                None => (text, Reference::Tag("latest".parse().map_err(|e| bad(format!("{e}")))?)),
            }
        }
    };
    let (ns, repo) = match name.split_once('/') {
        Some((first, rest)) if Namespace::looks_like_host(first) => (first, rest),
        _ => ("docker.io", name),
    };
    let ns: Namespace = ns.parse().map_err(|e| bad(format!("{e}")))?;
    let repo = repo.parse().map_err(|e| bad(format!("{e}")))?;
    Ok((ImageKey::new(ns, repo), reference))
}

/// The image references of a list file: one a line; blank lines and `#` comments (whole-line or after the
/// reference) are skipped. Each entry is the line's text and its parse.
pub fn parse_list(text: &str) -> Vec<(String, Result<ImageRef, String>)> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(|line| (line.to_string(), parse_image_ref(line)))
        .collect()
}

impl Mirror {
    /// Pull every image of a list through the configured upstreams, as a client would, one image at a time.
    pub async fn load_list(&self, text: &str, platform: &PlatformFilter, progress: &dyn Fn(LoadEvent)) -> LoadSummary {
        let entries = parse_list(text);
        progress(LoadEvent::Planned { images: entries.len() });
        let mut summary = LoadSummary::default();
        for (line, parsed) in entries {
            let (name, result) = match parsed {
                Ok((image, reference)) => {
                    let name = Named(&image, &reference).to_string();
                    progress(LoadEvent::Started { image: name.clone() });
                    (name, pull::pull_image(self, &image, &reference, platform).await)
                }
                Err(why) => (line, Err(why)),
            };
            summary.record(name.clone(), &result);
            progress(LoadEvent::Finished { image: name, result });
        }
        summary
    }

    /// Load an archive (an OCI layout directory or tar, a `docker save` tar; gzipped or not) with no upstream.
    /// `resolve_ref` names the image of a single-image archive (see `archive`).
    pub async fn load_archive(
        &self,
        path: &Path,
        resolve_ref: Option<&str>,
        platform: &PlatformFilter,
        progress: &dyn Fn(LoadEvent),
    ) -> LoadSummary {
        let mut summary = LoadSummary::default();
        let what = path.display().to_string();
        let opened = {
            let path = path.to_path_buf();
            let bound = SpoolBound::of(self.blob_bound(), self.store()).await;
            tokio::task::spawn_blocking(move || Source::open(&path, bound)).await
        };
        let source = match opened {
            Ok(Ok(source)) => source,
            Ok(Err(e)) => return fail_all(&mut summary, what, format!("cannot read the archive: {e}"), progress),
            Err(e) => return fail_all(&mut summary, what, e.to_string(), progress),
        };
        let resolve = match resolve_ref.map(parse_resolve).transpose() {
            Ok(r) => r,
            Err(e) => return fail_all(&mut summary, what, format!("--resolve-ref: {e}"), progress),
        };
        let plan = if source.has("index.json") && source.has("oci-layout") {
            oci_plan(&source, resolve.as_ref())
        } else if source.has("manifest.json") {
            docker_plan(&source, resolve.as_ref())
        } else {
            Err("neither an OCI image layout (index.json, oci-layout) nor a docker save archive (manifest.json)".into())
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(why) => return fail_all(&mut summary, what, why, progress),
        };
        progress(LoadEvent::Planned { images: plan.len() });
        for item in plan {
            let result = match item.names {
                Ok(names) => {
                    let name = names.iter().map(|(i, r)| Named(i, r).to_string()).collect::<Vec<_>>().join(", ");
                    progress(LoadEvent::Started { image: name.clone() });
                    let result = match item.kind {
                        PlanKind::Oci(descriptor) => self.import_oci(&source, &names, &descriptor, platform).await,
                        PlanKind::Docker(entry) => self.import_docker(&source, &names, &entry).await,
                    };
                    (name, result)
                }
                Err(why) => (item.label, Err(why)),
            };
            summary.record(result.0.clone(), &result.1);
            progress(LoadEvent::Finished { image: result.0, result: result.1 });
        }
        summary
    }

    async fn import_object_blob(&self, source: &Source, file: &str, digest: &Digest) -> Result<u64, String> {
        let entry = source.entry(file).map_err(|e| format!("blob {digest}: {e}"))?;
        import::import_blob(self.cache(), self.store(), digest, &entry).await?;
        Ok(entry.size)
    }

    /// One image of an OCI layout: every blob, then every platform manifest, then the top manifest with its names.
    async fn import_oci(
        &self,
        source: &Source,
        names: &[(ImageKey, Reference)],
        top: &Descriptor,
        platform: &PlatformFilter,
    ) -> Result<u64, String> {
        let top_digest: Digest = top.digest.parse().map_err(|e| format!("index.json: {e}"))?;
        let top_bytes = source.read(&oci_blob_path(&top_digest)).map_err(|e| format!("manifest {top_digest}: {e}"))?;
        let top_type = media_type(&top.media_type, &top_bytes);
        let (image, _) = &names[0];
        let mut bytes = 0;
        if is_index(&top_type) {
            let index: AnyManifest =
                serde_json::from_slice(&top_bytes).map_err(|e| format!("index {top_digest}: {e}"))?;
            let mut children = 0;
            for child in index.manifests.iter().filter(|c| platform.accepts(c.platform.as_ref())) {
                let digest: Digest = child.digest.parse().map_err(|e| format!("index {top_digest}: {e}"))?;
                // A layout copied for one platform lists every platform but holds only its own.
                let Ok(child_bytes) = source.read(&oci_blob_path(&digest)) else { continue };
                bytes += self.import_oci_manifest(source, image, &digest, &child.media_type, child_bytes).await?;
                children += 1;
            }
            if children == 0 {
                return Err(format!("index {top_digest} has no platform manifest in the archive for {platform:?}"));
            }
        } else {
            bytes += self.import_oci_blobs(source, &top_digest, &top_bytes).await?;
        }
        for (image, reference) in names {
            import::import_manifest(self.cache(), image, reference.clone(), &top_digest, &top_type, top_bytes.clone())
                .await?;
        }
        Ok(bytes)
    }

    /// A platform manifest of an index: its blobs, then itself, recorded by its digest as a client's pull records it.
    async fn import_oci_manifest(
        &self,
        source: &Source,
        image: &ImageKey,
        digest: &Digest,
        declared: &str,
        bytes: Vec<u8>,
    ) -> Result<u64, String> {
        let blob_bytes = self.import_oci_blobs(source, digest, &bytes).await?;
        let media_type = media_type(declared, &bytes);
        import::import_manifest(self.cache(), image, Reference::Digest(digest.clone()), digest, &media_type, bytes)
            .await?;
        Ok(blob_bytes)
    }

    /// The config and layers of an image manifest.
    async fn import_oci_blobs(&self, source: &Source, digest: &Digest, bytes: &[u8]) -> Result<u64, String> {
        let manifest: AnyManifest = serde_json::from_slice(bytes).map_err(|e| format!("manifest {digest}: {e}"))?;
        let mut total = 0;
        for d in manifest.config.iter().chain(&manifest.layers) {
            let blob: Digest = d.digest.parse().map_err(|e| format!("manifest {digest}: {e}"))?;
            total += self.import_object_blob(source, &oci_blob_path(&blob), &blob).await?;
        }
        Ok(total)
    }

    /// One image of a `docker save` archive: config and layers as blobs, and a Docker schema 2 manifest written for
    /// them (see `archive`).
    async fn import_docker(
        &self,
        source: &Source,
        names: &[(ImageKey, Reference)],
        entry: &DockerSaveEntry,
    ) -> Result<u64, String> {
        let config_bytes = source.read(&entry.config).map_err(|e| format!("config {}: {e}", entry.config))?;
        let config_digest = Digest::sha256_of(&config_bytes);
        let config: DockerConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| format!("config {}: {e}", entry.config))?;
        let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        let mut total = self.import_object_blob(source, &entry.config, &config_digest).await?;
        let mut layers = Vec::new();
        for (i, file) in entry.layers.iter().enumerate() {
            let layer = source.entry(file).map_err(|e| format!("layer {file}: {e}"))?;
            let head = layer.head().map_err(|e| format!("layer {file}: {e}"))?;
            let gzipped = head.starts_with(&[0x1f, 0x8b]);
            // An uncompressed layer's digest is its diff ID (from the config): the import checks the bytes against it.
            let digest = match diff_ids.get(i).and_then(|d| d.parse::<Digest>().ok()) {
                Some(d) if !gzipped => d,
                _ => hash_entry(&layer).await.map_err(|e| format!("layer {file}: {e}"))?,
            };
            total += self.import_object_blob(source, file, &digest).await?;
            let media_type = if gzipped { DOCKER_LAYER_GZIP } else { DOCKER_LAYER };
            layers.push(Descriptor {
                media_type: media_type.into(),
                digest: digest.to_string(),
                size: layer.size,
                platform: None,
                annotations: None,
            });
        }
        let manifest = WrittenManifest {
            schema_version: 2,
            media_type: DOCKER_MANIFEST,
            config: Descriptor {
                media_type: DOCKER_CONFIG.into(),
                digest: config_digest.to_string(),
                size: config_bytes.len() as u64,
                platform: None,
                annotations: None,
            },
            layers,
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
        let digest = Digest::sha256_of(&bytes);
        for (image, reference) in names {
            import::import_manifest(self.cache(), image, reference.clone(), &digest, DOCKER_MANIFEST, bytes.clone())
                .await?;
        }
        Ok(total)
    }
}

/// The sha256 of an archive entry (a gzipped layer of a `docker save` archive, whose digest nothing names).
async fn hash_entry(entry: &archive::Entry) -> Result<Digest, String> {
    let entry = entry.clone();
    tokio::task::spawn_blocking(move || {
        let mut hasher = crate::digest::Digester::new(crate::digest::DigestAlgorithm::Sha256);
        let mut pos = 0;
        while pos < entry.size {
            let chunk = entry.read_at(pos, 1 << 20).map_err(|e| e.to_string())?;
            if chunk.is_empty() {
                return Err("the archive entry ends early".to_string());
            }
            pos += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(hasher.finalize())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A descriptor's media type when it fits the manifest, else what the manifest says of itself.
fn media_type(declared: &str, bytes: &[u8]) -> String {
    for_new_manifest(Some(declared), bytes).as_str().to_string()
}

/// One image an archive holds, with its names or why it has none.
struct PlanItem {
    label: String,
    names: Result<Vec<(ImageKey, Reference)>, String>,
    kind: PlanKind,
}

enum PlanKind {
    Oci(Descriptor),
    Docker(DockerSaveEntry),
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `--resolve-ref`: an image name, with the tag or digest it names, if it names one.
type Resolve = (ImageKey, Option<Reference>);

fn parse_resolve(text: &str) -> Result<Resolve, String> {
    let (image, reference) = parse_image_ref(text)?;
    let last = text.rsplit('/').next().unwrap_or(text);
    Ok((image, (last.contains(':') || last.contains('@')).then_some(reference)))
}

fn oci_plan(source: &Source, resolve: Option<&Resolve>) -> Result<Vec<PlanItem>, String> {
    let index: OciIndex = serde_json::from_slice(&source.read("index.json").map_err(|e| format!("index.json: {e}"))?)
        .map_err(|e| format!("index.json: {e}"))?;
    if index.manifests.is_empty() {
        return Err("index.json names no image".into());
    }
    let single = index.manifests.len() == 1;
    Ok(index
        .manifests
        .into_iter()
        .map(|d| {
            let annotations = d.annotations.clone().unwrap_or_default();
            let full = annotations.get(CONTAINERD_NAME).or(annotations.get(OCI_REF_NAME)).filter(|n| n.contains('/'));
            let tag_only = annotations.get(OCI_REF_NAME).filter(|n| !n.contains('/') && !n.contains(':'));
            let names = match (resolve, full) {
                (Some((image, reference)), _) if single => {
                    // `--resolve-ref repo` without a tag takes the layout's tag, else `latest`.
                    let reference = match (reference, tag_only) {
                        (Some(r), _) => Ok(r.clone()),
                        (None, Some(tag)) => tag.parse().map_err(|e| format!("{OCI_REF_NAME} {tag:?}: {e}")),
                        (None, None) => "latest".parse().map_err(|e| format!("{e}")),
                    };
                    reference.map(|r| vec![(image.clone(), r)])
                }
                (Some(_), _) => Err("--resolve-ref names the image of a single-image archive only".into()),
                (None, Some(full)) => parse_image_ref(full).map(|n| vec![n]),
                (None, None) => Err(format!(
                    "no image name in the archive ({} is {:?}): give one with --resolve-ref",
                    OCI_REF_NAME,
                    annotations.get(OCI_REF_NAME).map(String::as_str).unwrap_or("absent")
                )),
            };
            PlanItem { label: d.digest.clone(), names, kind: PlanKind::Oci(d) }
        })
        .collect())
}

fn docker_plan(source: &Source, resolve: Option<&Resolve>) -> Result<Vec<PlanItem>, String> {
    let entries: Vec<DockerSaveEntry> =
        serde_json::from_slice(&source.read("manifest.json").map_err(|e| format!("manifest.json: {e}"))?)
            .map_err(|e| format!("manifest.json: {e}"))?;
    if entries.is_empty() {
        return Err("manifest.json names no image".into());
    }
    let single = entries.len() == 1;
    Ok(entries
        .into_iter()
        .map(|entry| {
            let tags = entry.repo_tags.clone().unwrap_or_default();
            let names = match resolve {
                Some((image, reference)) if single => {
                    let reference = reference.clone().map_or_else(|| "latest".parse().map_err(|e| format!("{e}")), Ok);
                    reference.map(|r| vec![(image.clone(), r)])
                }
                Some(_) => Err("--resolve-ref names the image of a single-image archive only".into()),
                None if tags.is_empty() => Err("no RepoTags in manifest.json: give a name with --resolve-ref".into()),
                None => tags.iter().map(|t| parse_image_ref(t)).collect(),
            };
            PlanItem { label: entry.config.clone(), names, kind: PlanKind::Docker(entry) }
        })
        .collect())
}

fn fail_all(summary: &mut LoadSummary, what: String, why: String, progress: &dyn Fn(LoadEvent)) -> LoadSummary {
    progress(LoadEvent::Planned { images: 1 });
    let result = Err(why);
    summary.record(what.clone(), &result);
    progress(LoadEvent::Finished { image: what, result });
    std::mem::take(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_as_people_write_them() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for (text, want) in [
            ("docker.io/library/alpine:3.20", "docker.io/library/alpine:3.20".to_string()),
            ("alpine", "docker.io/library/alpine:latest".to_string()),
            ("bitnami/redis:7", "docker.io/bitnami/redis:7".to_string()),
            ("localhost:5000/app:1", "localhost:5000/app:1".to_string()),
            ("127.0.0.1:5000/team/app", "127.0.0.1:5000/team/app:latest".to_string()),
            (&format!("registry.k8s.io/pause@{digest}"), format!("registry.k8s.io/pause@{digest}")),
            ("docker://index.docker.io/hello:1", "docker.io/library/hello:1".to_string()),
        ] {
            let (image, reference) = parse_image_ref(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(Named(&image, &reference).to_string(), want, "{text}");
        }
        for bad in ["", "UPPER/case:1", "a:b:c/d", "x@sha256:short"] {
            assert!(parse_image_ref(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn list_files_skip_comments_and_blank_lines() {
        let text = "# images for the edge site\n\nalpine:3.20  # base\n  registry.k8s.io/pause:3.9\nnot/VALID\n";
        let entries = parse_list(text);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].0, "alpine:3.20");
        assert!(entries[0].1.is_ok() && entries[1].1.is_ok());
        assert!(entries[2].1.is_err(), "a bad line is reported, not skipped");
    }

    #[test]
    fn platform_filter() {
        let p = |os: &str, arch: &str, variant: Option<&str>| archive::PlatformSpec {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
        };
        let all = PlatformFilter::default();
        assert!(all.accepts(Some(&p("linux", "arm64", Some("v8")))) && all.accepts(None));
        let arm = PlatformFilter { os: Some("linux".into()), arch: Some("arm64".into()) };
        assert!(arm.accepts(Some(&p("linux", "arm64", Some("v8")))));
        assert!(!arm.accepts(Some(&p("linux", "amd64", None))) && !arm.accepts(None));
        let v7 = PlatformFilter { os: None, arch: Some("arm/v7".into()) };
        assert!(v7.accepts(Some(&p("linux", "arm", Some("v7")))) && !v7.accepts(Some(&p("linux", "arm", Some("v6")))));
    }
}
