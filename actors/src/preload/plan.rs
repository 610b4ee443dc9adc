//! Which images an archive holds, and the names each is loaded as: an OCI layout's `index.json` (names from its
//! annotations), a `docker save` archive's `manifest.json` (names from `RepoTags`), or `--resolve-ref` for an
//! archive of one image.

use serde::Deserialize;

use super::archive::{Descriptor, DockerSaveEntry, Source};
use super::error::{Object, PreloadError, OCI_REF_NAME};
use super::names::{parse_image_ref, ImageRef, Resolve};
use crate::reference::{Reference, Tag};

/// The annotation containerd writes with an image's full name.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// One image an archive holds, with its names or why it has none.
pub(crate) struct PlanItem {
    /// What the report calls it when it has no name.
    pub label: String,
    pub names: Result<Vec<ImageRef>, PreloadError>,
    pub kind: PlanKind,
}

/// Where the image is in the archive.
pub(crate) enum PlanKind {
    /// An OCI layout's manifest or index.
    Oci(Descriptor),
    /// An image of a `docker save` archive.
    Docker(DockerSaveEntry),
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// The images of an archive in either format.
pub(crate) fn plan(source: &Source, resolve: Option<&Resolve>) -> Result<Vec<PlanItem>, PreloadError> {
    if source.has("index.json") && source.has("oci-layout") {
        oci_plan(source, resolve)
    } else if source.has("manifest.json") {
        docker_plan(source, resolve)
    } else {
        Err(PreloadError::UnknownFormat)
    }
}

fn oci_plan(source: &Source, resolve: Option<&Resolve>) -> Result<Vec<PlanItem>, PreloadError> {
    let file = |fault: super::error::Fault| PreloadError::object(Object::File("index.json"), fault);
    let index: OciIndex =
        serde_json::from_slice(&source.read("index.json").map_err(|e| file(e.into()))?).map_err(|e| file(e.into()))?;
    if index.manifests.is_empty() {
        return Err(PreloadError::NoImages { file: "index.json" });
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
                        (None, Some(tag)) => {
                            tag.parse().map_err(|source| PreloadError::BadTag { tag: tag.clone(), source })
                        }
                        (None, None) => Ok(Reference::Tag(Tag::latest())),
                    };
                    reference.map(|r| vec![(image.clone(), r)])
                }
                (Some(_), _) => Err(PreloadError::ResolveRefNotSingle),
                (None, Some(full)) => parse_image_ref(full).map(|n| vec![n]).map_err(PreloadError::from),
                (None, None) => Err(PreloadError::Nameless {
                    found: annotations.get(OCI_REF_NAME).map_or("absent", String::as_str).to_string(),
                }),
            };
            PlanItem { label: d.digest.clone(), names, kind: PlanKind::Oci(d) }
        })
        .collect())
}

fn docker_plan(source: &Source, resolve: Option<&Resolve>) -> Result<Vec<PlanItem>, PreloadError> {
    let file = |fault: super::error::Fault| PreloadError::object(Object::File("manifest.json"), fault);
    let entries: Vec<DockerSaveEntry> =
        serde_json::from_slice(&source.read("manifest.json").map_err(|e| file(e.into()))?)
            .map_err(|e| file(e.into()))?;
    if entries.is_empty() {
        return Err(PreloadError::NoImages { file: "manifest.json" });
    }
    let single = entries.len() == 1;
    Ok(entries
        .into_iter()
        .map(|entry| {
            let tags = entry.repo_tags.clone().unwrap_or_default();
            let names = match resolve {
                Some((image, reference)) if single => {
                    let reference = reference.clone().unwrap_or(Reference::Tag(Tag::latest()));
                    Ok(vec![(image.clone(), reference)])
                }
                Some(_) => Err(PreloadError::ResolveRefNotSingle),
                None if tags.is_empty() => Err(PreloadError::NoRepoTags),
                None => tags.iter().map(|t| parse_image_ref(t).map_err(PreloadError::from)).collect(),
            };
            PlanItem { label: entry.config.clone(), names, kind: PlanKind::Docker(entry) }
        })
        .collect())
}
