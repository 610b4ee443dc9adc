//! Manifest media types: the ones this server knows, what a manifest's own bytes say it is, and whether a type kept
//! or announced beside it agrees. The content is the truth: its digest was verified, a `.type` file or an upstream's
//! `Content-Type` was not.
//!
//! What the bytes say: their `mediaType` when they have one (it names a known manifest type, or the content is of no
//! known type); without it, their shape. Docker schema2 manifests and manifest lists always carry `mediaType`, so a
//! manifest without one is an OCI image manifest when it has `config` and `layers` (image-spec 1.1 artifacts included:
//! they are image manifests with an `artifactType`), an OCI index when it has `manifests`, and a Docker schema1
//! manifest when it says `schemaVersion: 1` and has `fsLayers` (signed when it has `signatures`). The OCI artifact
//! manifest of the image-spec 1.1 release candidates carries its `mediaType` always. The oci-spec crate is not a
//! dependency, and its types would parse whole manifests: this probe reads only the fields that tell a type.

use std::fmt;

use serde::de::IgnoredAny;
use serde::Deserialize;

/// A manifest media type this server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManifestType {
    /// `application/vnd.oci.image.manifest.v1+json`
    OciManifest,
    /// `application/vnd.oci.image.index.v1+json`
    OciIndex,
    /// `application/vnd.oci.artifact.manifest.v1+json` (image-spec 1.1 release candidates)
    OciArtifact,
    /// `application/vnd.docker.distribution.manifest.v2+json`
    DockerManifest,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`
    DockerList,
    /// `application/vnd.docker.distribution.manifest.v1+json` (schema1, unsigned)
    DockerSchema1,
    /// `application/vnd.docker.distribution.manifest.v1+prettyjws` (schema1, signed)
    DockerSchema1Signed,
}

impl ManifestType {
    /// Every known type.
    pub const ALL: [ManifestType; 7] = [
        ManifestType::OciManifest,
        ManifestType::OciIndex,
        ManifestType::OciArtifact,
        ManifestType::DockerManifest,
        ManifestType::DockerList,
        ManifestType::DockerSchema1,
        ManifestType::DockerSchema1Signed,
    ];

    /// Its name, as served in `Content-Type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ManifestType::OciManifest => "application/vnd.oci.image.manifest.v1+json",
            ManifestType::OciIndex => "application/vnd.oci.image.index.v1+json",
            ManifestType::OciArtifact => "application/vnd.oci.artifact.manifest.v1+json",
            ManifestType::DockerManifest => "application/vnd.docker.distribution.manifest.v2+json",
            ManifestType::DockerList => "application/vnd.docker.distribution.manifest.list.v2+json",
            ManifestType::DockerSchema1 => "application/vnd.docker.distribution.manifest.v1+json",
            ManifestType::DockerSchema1Signed => "application/vnd.docker.distribution.manifest.v1+prettyjws",
        }
    }

    /// The known type `text` names (case aside; parameters such as `; charset=` and surrounding blanks ignored).
    pub fn parse(text: &str) -> Option<ManifestType> {
        let name = text.split(';').next().unwrap_or("").trim();
        ManifestType::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether a manifest whose content is of type `content` may be served as `self`: the same type, or both Docker
    /// schema1 (its signed and unsigned forms are told apart by how the upstream served them, not by their JSON).
    fn fits(self, content: ManifestType) -> bool {
        use ManifestType::{DockerSchema1, DockerSchema1Signed};
        self == content
            || matches!((self, content), (DockerSchema1 | DockerSchema1Signed, DockerSchema1 | DockerSchema1Signed))
    }

    /// What a manifest's bytes say it is (see the module documentation); `None` when they fit no known type.
    pub fn of_content(bytes: &[u8]) -> Option<ManifestType> {
        /// The fields that tell a manifest's type; any of them of the wrong JSON kind makes the content unknown.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            media_type: Option<String>,
            schema_version: Option<u64>,
            config: Option<serde_json::Map<String, serde_json::Value>>,
            layers: Option<Vec<IgnoredAny>>,
            manifests: Option<Vec<IgnoredAny>>,
            fs_layers: Option<Vec<IgnoredAny>>,
            signatures: Option<Vec<IgnoredAny>>,
        }
        // serde would also read a struct from a JSON array: a manifest is an object.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return None;
        }
        let probe: Probe = serde_json::from_slice(bytes).ok()?;
        if let Some(declared) = &probe.media_type {
            return ManifestType::parse(declared);
        }
        let Probe { config, layers, manifests, fs_layers, signatures, schema_version, .. } = probe;
        match (config.is_some() && layers.is_some(), manifests.is_some()) {
            (true, false) => Some(ManifestType::OciManifest),
            (false, true) => Some(ManifestType::OciIndex),
            _ if schema_version == Some(1) && fs_layers.is_some() => {
                Some(if signatures.is_some() { ManifestType::DockerSchema1Signed } else { ManifestType::DockerSchema1 })
            }
            _ => None,
        }
    }
}

impl fmt::Display for ManifestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A type kept beside a manifest, judged against the manifest's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The kept type agrees with the content (or the content does not say, and the kept type is a manifest type).
    Agrees(ManifestType),
    /// No type kept: the content's.
    Missing(ManifestType),
    /// The kept type contradicts the content, or is no manifest type at all: the content's replaces it.
    Wrong {
        /// What was kept.
        kept: String,
        /// What the content says.
        content: ManifestType,
    },
    /// Neither the content nor a kept type says what manifest this is: it is damaged.
    Unknown,
}

/// Judge the type `kept` beside a manifest (`None`: nothing kept) against its `bytes`.
pub fn check(kept: Option<&str>, bytes: &[u8]) -> Verdict {
    let kept_type = kept.and_then(ManifestType::parse);
    match (kept, kept_type, ManifestType::of_content(bytes)) {
        (Some(_), Some(k), Some(content)) if k.fits(content) => Verdict::Agrees(k),
        (Some(_), Some(k), None) => Verdict::Agrees(k),
        (None, _, Some(content)) => Verdict::Missing(content),
        (Some(kept), _, Some(content)) => Verdict::Wrong { kept: kept.to_string(), content },
        (_, _, None) => Verdict::Unknown,
    }
}

/// The type to store for verified manifest bytes that their source `announced` (an upstream's `Content-Type`, an
/// archive's descriptor): the announced one when it fits the content, else what the content says; content of no
/// known type keeps an announced manifest type, or is taken for an OCI image manifest.
pub fn for_new_manifest(announced: Option<&str>, bytes: &[u8]) -> ManifestType {
    match check(announced.filter(|a| !a.trim().is_empty()), bytes) {
        Verdict::Agrees(t) | Verdict::Missing(t) => t,
        Verdict::Wrong { kept, content } => {
            tracing::debug!(announced = %kept, content = %content, "a manifest's announced type does not fit its content; storing the content's");
            content
        }
        Verdict::Unknown => ManifestType::OciManifest,
    }
}

#[cfg(test)]
mod tests {
    use super::ManifestType::*;
    use super::*;

    const CONFIG: &str =
        r#""config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":2}"#;
    const LAYERS: &str =
        r#""layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:bb","size":3}]"#;

    #[test]
    fn every_known_type_parses_back_from_its_name() {
        for t in ManifestType::ALL {
            assert_eq!(ManifestType::parse(t.as_str()), Some(t));
            assert_eq!(ManifestType::parse(&format!(" {} ; charset=utf-8\n", t.as_str().to_uppercase())), Some(t));
        }
        for other in [
            "",
            "text/html",
            "application/json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.manifest.v1+jsonx",
        ] {
            assert_eq!(ManifestType::parse(other), None, "{other:?}");
        }
    }

    /// The detection table: content -> the type it says it is.
    #[test]
    fn the_content_tells_its_type() {
        let oci_manifest = format!(r#"{{"schemaVersion":2,{CONFIG},{LAYERS}}}"#);
        let artifact = format!(
            r#"{{"schemaVersion":2,"artifactType":"application/vnd.example.sbom","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44","size":2}},{LAYERS}}}"#
        );
        let cases: Vec<(String, Option<ManifestType>)> = vec![
            // Declared by mediaType, whatever the shape.
            (format!(r#"{{"schemaVersion":2,"mediaType":"{}",{CONFIG},{LAYERS}}}"#, OciManifest), Some(OciManifest)),
            (
                format!(r#"{{"schemaVersion":2,"mediaType":"{}",{CONFIG},{LAYERS}}}"#, DockerManifest),
                Some(DockerManifest),
            ),
            (format!(r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#, DockerList), Some(DockerList)),
            (format!(r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#, OciIndex), Some(OciIndex)),
            (format!(r#"{{"mediaType":"{}","artifactType":"x/y","blobs":[]}}"#, OciArtifact), Some(OciArtifact)),
            // A declared type that is no manifest type: the content is of no known type.
            (format!(r#"{{"schemaVersion":2,"mediaType":"text/html",{CONFIG},{LAYERS}}}"#), None),
            // Without mediaType: the shape.
            (oci_manifest, Some(OciManifest)),
            (artifact, Some(OciManifest)),
            (r#"{"schemaVersion":2,"manifests":[{"digest":"sha256:cc","size":1}]}"#.into(), Some(OciIndex)),
            (r#"{"schemaVersion":2,"manifests":[],"artifactType":"x/y"}"#.into(), Some(OciIndex)),
            (
                r#"{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[{"blobSum":"sha256:dd"}],"history":[]}"#.into(),
                Some(DockerSchema1),
            ),
            (
                r#"{"schemaVersion":1,"name":"a","fsLayers":[],"history":[],"signatures":[{"protected":"x"}]}"#.into(),
                Some(DockerSchema1Signed),
            ),
            // Fits nothing.
            (r#"{"schemaVersion":2}"#.into(), None),
            (format!(r#"{{"schemaVersion":2,{LAYERS}}}"#), None),
            (format!(r#"{{"schemaVersion":2,{CONFIG},{LAYERS},"manifests":[]}}"#), None),
            (r#"{"schemaVersion":2,"config":[],"layers":[]}"#.into(), None),
            (r#"{"schemaVersion":2,"manifests":{}}"#.into(), None),
            (r#"{"schemaVersion":2,"mediaType":7,"manifests":[]}"#.into(), None),
            (r#"{"schemaVersion":2,"fsLayers":[]}"#.into(), None),
            (r#"["application/vnd.oci.image.index.v1+json",2,null,null,[]]"#.into(), None),
            ("<html>hello</html>".into(), None),
            (String::new(), None),
        ];
        for (bytes, want) in cases {
            assert_eq!(ManifestType::of_content(bytes.as_bytes()), want, "{bytes}");
        }
    }

    #[test]
    fn a_kept_type_is_judged_against_the_content() {
        let manifest = format!(r#"{{"schemaVersion":2,{CONFIG},{LAYERS}}}"#);
        let docker = format!(r#"{{"schemaVersion":2,"mediaType":"{}",{CONFIG},{LAYERS}}}"#, DockerManifest);
        let schema1 = r#"{"schemaVersion":1,"fsLayers":[],"signatures":[]}"#;
        let junk = r#"{"schemaVersion":2}"#;
        let wrong = |kept: &str, content| Verdict::Wrong { kept: kept.into(), content };
        let cases: Vec<(Option<&str>, &str, Verdict)> = vec![
            (Some(OciManifest.as_str()), &manifest, Verdict::Agrees(OciManifest)),
            (Some("text/html"), &manifest, wrong("text/html", OciManifest)),
            (Some(""), &manifest, wrong("", OciManifest)),
            (Some(OciIndex.as_str()), &manifest, wrong(OciIndex.as_str(), OciManifest)),
            (Some(DockerManifest.as_str()), &manifest, wrong(DockerManifest.as_str(), OciManifest)),
            (Some(OciManifest.as_str()), &docker, wrong(OciManifest.as_str(), DockerManifest)),
            (None, &docker, Verdict::Missing(DockerManifest)),
            (Some(DockerSchema1.as_str()), schema1, Verdict::Agrees(DockerSchema1)),
            (Some(DockerSchema1Signed.as_str()), schema1, Verdict::Agrees(DockerSchema1Signed)),
            (Some(OciIndex.as_str()), junk, Verdict::Agrees(OciIndex)),
            (Some("text/html"), junk, Verdict::Unknown),
            (None, junk, Verdict::Unknown),
        ];
        for (kept, bytes, want) in cases {
            assert_eq!(check(kept, bytes.as_bytes()), want, "{kept:?} for {bytes}");
        }
    }

    #[test]
    fn a_new_manifest_is_stored_with_the_type_its_content_allows() {
        let manifest = format!(r#"{{"schemaVersion":2,{CONFIG},{LAYERS}}}"#);
        let schema1 = r#"{"schemaVersion":1,"fsLayers":[]}"#;
        let m = manifest.as_bytes();
        assert_eq!(for_new_manifest(Some(OciManifest.as_str()), m), OciManifest);
        assert_eq!(for_new_manifest(Some("application/json"), m), OciManifest);
        assert_eq!(for_new_manifest(Some(OciIndex.as_str()), m), OciManifest);
        assert_eq!(for_new_manifest(None, m), OciManifest);
        assert_eq!(for_new_manifest(Some(""), br#"{"manifests":[]}"#), OciIndex);
        assert_eq!(for_new_manifest(Some(DockerSchema1Signed.as_str()), schema1.as_bytes()), DockerSchema1Signed);
        assert_eq!(for_new_manifest(Some(DockerList.as_str()), b"{}"), DockerList);
        assert_eq!(for_new_manifest(Some("application/vnd.example"), b"{}"), OciManifest);
    }
}
