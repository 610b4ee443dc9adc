//! The image graph: which blobs and child manifests a manifest references.
//!
//! Parsed once, when a manifest is stored (and again at start from the stored bytes), with serde types of our own
//! that accept every manifest shape we serve: OCI image manifests and Docker schema 2 manifests (`config` plus
//! `layers`), OCI indexes and Docker manifest lists (`manifests`), and the short-lived OCI artifact manifest
//! (`blobs`). A field we do not know is ignored; a descriptor whose digest we cannot verify (an algorithm we do not
//! support) is left out, since we could never fetch it either. This is what lets the cache tell which blobs an image
//! needs, for eviction and garbage collection.

use serde::Deserialize;

use crate::digest::Digest;

/// What one manifest references. Boxed slices, exactly as long as the lists: the index holds one per cached manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestLinks {
    /// Blobs: the config and the layers (or an artifact's blobs).
    pub blobs: Box<[Digest]>,
    /// Child manifests (of an index or manifest list).
    pub manifests: Box<[Digest]>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AnyManifest {
    config: Option<Descriptor>,
    layers: Vec<Descriptor>,
    blobs: Vec<Descriptor>,
    manifests: Vec<Descriptor>,
}

/// Why a manifest's references could not be read.
#[derive(Debug, thiserror::Error)]
#[error("manifest is not a JSON object of a known shape: {0}")]
pub struct GraphError(String);

impl ManifestLinks {
    /// Parse a manifest's references from its bytes.
    pub fn parse(bytes: &[u8]) -> Result<ManifestLinks, GraphError> {
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(GraphError("not a JSON object".into()));
        }
        let any: AnyManifest = serde_json::from_slice(bytes).map_err(|e| GraphError(e.to_string()))?;
        let digests = |list: &[Descriptor]| -> Vec<Digest> {
            let mut out: Vec<Digest> = list.iter().filter_map(|d| d.digest.parse().ok()).collect();
            out.dedup();
            out
        };
        let mut blobs = Vec::with_capacity(1 + any.layers.len() + any.blobs.len());
        if let Some(config) = any.config.as_ref().and_then(|c| c.digest.parse::<Digest>().ok()) {
            blobs.push(config);
        }
        blobs.extend(digests(&any.layers));
        blobs.extend(digests(&any.blobs));
        Ok(ManifestLinks { blobs: blobs.into(), manifests: digests(&any.manifests).into() })
    }

    /// Parse, or no references at all for bytes that are not a manifest we understand (they are still served).
    pub fn parse_or_empty(bytes: &[u8]) -> ManifestLinks {
        ManifestLinks::parse(bytes).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifest_lists_config_then_layers() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
               "config":{{"mediaType":"x","size":1,"digest":"{}"}},
               "layers":[{{"mediaType":"y","size":2,"digest":"{}"}},{{"size":3,"digest":"{}"}}]}}"#,
            d('a'),
            d('b'),
            d('c')
        );
        let links = ManifestLinks::parse(json.as_bytes()).expect("parses");
        let names: Vec<String> = links.blobs.iter().map(|x| x.to_string()).collect();
        assert_eq!(names, vec![d('a'), d('b'), d('c')]);
        assert!(links.manifests.is_empty());
    }

    #[test]
    fn index_lists_children_and_skips_unverifiable_digests() {
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","platform":{{"os":"linux"}}}},
               {{"digest":"sha384:{}"}}]}}"#,
            d('e'),
            "f".repeat(96)
        );
        let links = ManifestLinks::parse(json.as_bytes()).expect("parses");
        assert_eq!(links.manifests.len(), 1);
        assert_eq!(links.manifests[0].to_string(), d('e'));
        assert!(links.blobs.is_empty());
    }

    #[test]
    fn artifact_blobs_and_garbage() {
        let json = format!(r#"{{"blobs":[{{"digest":"{}"}}]}}"#, d('1'));
        assert_eq!(ManifestLinks::parse(json.as_bytes()).expect("parses").blobs.len(), 1);
        for bad in ["", "[]", "not json", r#"{"layers":"x"}"#] {
            assert!(ManifestLinks::parse(bad.as_bytes()).is_err(), "{bad:?} must not parse");
            assert_eq!(ManifestLinks::parse_or_empty(bad.as_bytes()), ManifestLinks::default());
        }
    }
}
