//! One image of an archive into the cache, with no upstream: an OCI layout's blobs, platform manifests and top
//! manifest, in that order; a `docker save` image's config and layers, and a Docker schema 2 manifest written for
//! them (see `archive`). Every object enters through `import`, verified.

use super::archive::{
    is_index, oci_blob_path, AnyManifest, Descriptor, DockerConfig, DockerSaveEntry, Entry, Source, WrittenManifest,
    DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_MANIFEST,
};
use super::error::{Fault, Object, PreloadError};
use super::import;
use super::names::ImageRef;
use super::platform::PlatformFilter;
use crate::digest::{Digest, DigestAlgorithm, Digester};
use crate::mirror::Mirror;
use crate::reference::{ImageKey, Reference};
use crate::store::for_new_manifest;

impl Mirror {
    async fn import_object_blob(&self, source: &Source, file: &str, digest: &Digest) -> Result<u64, PreloadError> {
        let entry = source.entry(file).map_err(|e| PreloadError::object(Object::Blob(digest.clone()), e))?;
        import::import_blob(self.cache(), self.store(), digest, &entry).await?;
        Ok(entry.size)
    }

    /// One image of an OCI layout: every blob, then every platform manifest, then the top manifest with its names.
    pub(super) async fn import_oci(
        &self,
        source: &Source,
        names: &[ImageRef],
        top: &Descriptor,
        platform: &PlatformFilter,
    ) -> Result<u64, PreloadError> {
        let top_digest =
            top.digest.parse::<Digest>().map_err(|e| PreloadError::object(Object::File("index.json"), e))?;
        let top_bytes = source
            .read(&oci_blob_path(&top_digest))
            .map_err(|e| PreloadError::object(Object::Manifest(top_digest.clone()), e))?;
        let top_type = media_type(&top.media_type, &top_bytes);
        let (image, _) = &names[0];
        let mut bytes = 0;
        if is_index(&top_type) {
            let in_index = |fault: Fault| PreloadError::object(Object::Index(top_digest.clone()), fault);
            let index: AnyManifest = serde_json::from_slice(&top_bytes).map_err(|e| in_index(e.into()))?;
            let mut children = 0;
            for child in index.manifests.iter().filter(|c| platform.accepts(c.platform.as_ref())) {
                let digest = child.digest.parse::<Digest>().map_err(|e| in_index(e.into()))?;
                // A layout copied for one platform lists every platform but holds only its own.
                let Ok(child_bytes) = source.read(&oci_blob_path(&digest)) else { continue };
                bytes += self.import_oci_manifest(source, image, &digest, &child.media_type, child_bytes).await?;
                children += 1;
            }
            if children == 0 {
                return Err(PreloadError::NoPlatformInArchive { index: top_digest, platform: platform.clone() });
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
    ) -> Result<u64, PreloadError> {
        let blob_bytes = self.import_oci_blobs(source, digest, &bytes).await?;
        let media_type = media_type(declared, &bytes);
        import::import_manifest(self.cache(), image, Reference::Digest(digest.clone()), digest, &media_type, bytes)
            .await?;
        Ok(blob_bytes)
    }

    /// The config and layers of an image manifest.
    async fn import_oci_blobs(&self, source: &Source, digest: &Digest, bytes: &[u8]) -> Result<u64, PreloadError> {
        let in_manifest = |fault: Fault| PreloadError::object(Object::Manifest(digest.clone()), fault);
        let manifest: AnyManifest = serde_json::from_slice(bytes).map_err(|e| in_manifest(e.into()))?;
        let mut total = 0;
        for d in manifest.config.iter().chain(&manifest.layers) {
            let blob = d.digest.parse::<Digest>().map_err(|e| in_manifest(e.into()))?;
            total += self.import_object_blob(source, &oci_blob_path(&blob), &blob).await?;
        }
        Ok(total)
    }

    /// One image of a `docker save` archive: config and layers as blobs, and a Docker schema 2 manifest written for
    /// them (see `archive`).
    pub(super) async fn import_docker(
        &self,
        source: &Source,
        names: &[ImageRef],
        entry: &DockerSaveEntry,
    ) -> Result<u64, PreloadError> {
        let in_config = |fault: Fault| PreloadError::object(Object::Config(entry.config.clone()), fault);
        let config_bytes = source.read(&entry.config).map_err(|e| in_config(e.into()))?;
        let config_digest = Digest::sha256_of(&config_bytes);
        let config: DockerConfig = serde_json::from_slice(&config_bytes).map_err(|e| in_config(e.into()))?;
        let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        let mut total = self.import_object_blob(source, &entry.config, &config_digest).await?;
        let mut layers = Vec::new();
        for (i, file) in entry.layers.iter().enumerate() {
            let in_layer = |fault: Fault| PreloadError::object(Object::Layer(file.clone()), fault);
            let layer = source.entry(file).map_err(|e| in_layer(e.into()))?;
            let head = layer.head().map_err(|e| in_layer(e.into()))?;
            let gzipped = head.starts_with(&[0x1f, 0x8b]);
            // An uncompressed layer's digest is its diff ID (from the config): the import checks the bytes against it.
            let digest = match diff_ids.get(i).and_then(|d| d.parse::<Digest>().ok()) {
                Some(d) if !gzipped => d,
                _ => hash_entry(&layer).await.map_err(in_layer)?,
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
        let bytes = serde_json::to_vec(&manifest).map_err(PreloadError::WriteManifest)?;
        let digest = Digest::sha256_of(&bytes);
        for (image, reference) in names {
            import::import_manifest(self.cache(), image, reference.clone(), &digest, DOCKER_MANIFEST, bytes.clone())
                .await?;
        }
        Ok(total)
    }
}

/// The sha256 of an archive entry (a gzipped layer of a `docker save` archive, whose digest nothing names).
async fn hash_entry(entry: &Entry) -> Result<Digest, Fault> {
    let entry = entry.clone();
    tokio::task::spawn_blocking(move || {
        let mut hasher = Digester::new(DigestAlgorithm::Sha256);
        let mut pos = 0;
        while pos < entry.size {
            let chunk = entry.read_at(pos, 1 << 20)?;
            if chunk.is_empty() {
                return Err(Fault::EndsEarly);
            }
            pos += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(hasher.finalize())
    })
    .await?
}

/// A descriptor's media type when it fits the manifest, else what the manifest says of itself.
fn media_type(declared: &str, bytes: &[u8]) -> String {
    for_new_manifest(Some(declared), bytes).as_str().to_string()
}
