//! The cache seen as images: what eviction, pruning and listings work with.
//!
//! An image is a root reference (a tag, or a digest pulled by a client that no other reference of its repository
//! reaches) together with the digest references of the same repository that its manifest graph reaches (the
//! platform manifests of an index, which clients fetch by digest and which are recorded that way), and everything
//! that graph needs: the manifests it reaches and their blobs. Its last pull is the latest of all its references'.
//!
//! `users` counts, per manifest and per blob, the images that need it: a blob shared by two images is freed only
//! when both are gone. Built from the index on demand (eviction and pruning are rare next to reads): one pass over
//! the references and the manifests each one reaches.

use std::collections::{HashMap, HashSet};

use crate::digest::Digest;
use crate::reference::{Named, Reference};
use crate::store::{Index, RefKey, RefRecord};

/// One image: a root reference, its child references, and what its graph reaches in the cache.
#[derive(Debug, Clone)]
pub struct CachedImage {
    /// The root reference's record.
    pub root: RefRecord,
    /// Digest references of the same repository that the root's graph reaches (platform manifests of an index).
    pub children: Vec<RefKey>,
    /// The latest pull of the root or a child (unix seconds).
    pub pulled: i64,
    /// Manifests the graph reaches that are cached, the root's first.
    pub manifests: Vec<Digest>,
    /// Blobs the graph reaches that are cached.
    pub blobs: Vec<Digest>,
    /// Bytes of those manifests and blobs.
    pub bytes: u64,
}

impl CachedImage {
    /// `ns/repo:tag` or `ns/repo@digest`.
    pub fn name(&self) -> String {
        let key = self.root.key();
        Named(&key.image, &key.reference).to_string()
    }

    /// Every reference record of the image, the root first.
    pub fn refs(&self) -> impl Iterator<Item = RefKey> + '_ {
        std::iter::once(self.root.key()).chain(self.children.iter().cloned())
    }
}

/// Every image in the cache, and how many images need each manifest and blob.
#[derive(Debug, Default)]
pub(crate) struct ImageGraph {
    pub images: Vec<CachedImage>,
    pub manifest_users: HashMap<Digest, usize>,
    pub blob_users: HashMap<Digest, usize>,
}

/// The manifests and blobs reachable from `top` in the index (only those cached).
fn reach(index: &Index, top: &Digest) -> (Vec<Digest>, Vec<Digest>) {
    let (mut manifests, mut blobs) = (Vec::new(), Vec::new());
    let (mut seen, mut seen_blobs) = (HashSet::new(), HashSet::new());
    let mut stack = vec![top.clone()];
    while let Some(digest) = stack.pop() {
        if !seen.insert(digest.clone()) {
            continue;
        }
        let Some(links) = index.links(&digest) else { continue };
        manifests.push(digest);
        for blob in &links.blobs {
            if index.blob(blob).is_some() && seen_blobs.insert(blob.clone()) {
                blobs.push(blob.clone());
            }
        }
        stack.extend(links.manifests.iter().rev().cloned());
    }
    (manifests, blobs)
}

impl ImageGraph {
    /// The images of the cache as the index has them now.
    pub fn build(index: &Index) -> ImageGraph {
        let mut by_repo: HashMap<_, Vec<RefRecord>> = HashMap::new();
        for record in index.refs() {
            by_repo.entry(record.key().image).or_default().push(record);
        }
        let mut graph = ImageGraph::default();
        for records in by_repo.into_values() {
            let reached: Vec<(Vec<Digest>, Vec<Digest>)> = records.iter().map(|r| reach(index, &r.digest)).collect();
            // A digest reference is a child when another reference of the repository reaches its manifest.
            let is_child = |r: &RefRecord, own: usize| {
                matches!(&r.reference, Reference::Digest(d) if d == &r.digest)
                    && reached
                        .iter()
                        .enumerate()
                        .any(|(i, (m, _))| i != own && m.iter().skip(1).any(|x| x == &r.digest))
            };
            let children: Vec<bool> = records.iter().enumerate().map(|(i, r)| is_child(r, i)).collect();
            for (i, record) in records.iter().enumerate() {
                if children[i] {
                    continue;
                }
                let (manifests, blobs) = reached[i].clone();
                let kids: Vec<&RefRecord> = records
                    .iter()
                    .enumerate()
                    .filter(|(j, r)| children[*j] && manifests.iter().skip(1).any(|m| m == &r.digest))
                    .map(|(_, r)| r)
                    .collect();
                let pulled = kids.iter().map(|r| r.pulled).fold(record.pulled, i64::max);
                let bytes = manifests.iter().filter_map(|d| index.manifest(d)).map(|m| m.size).sum::<u64>()
                    + blobs.iter().filter_map(|d| index.blob(d)).map(|b| b.size).sum::<u64>();
                for m in &manifests {
                    *graph.manifest_users.entry(m.clone()).or_default() += 1;
                }
                for b in &blobs {
                    *graph.blob_users.entry(b.clone()).or_default() += 1;
                }
                graph.images.push(CachedImage {
                    root: record.clone(),
                    children: kids.iter().map(|r| r.key()).collect(),
                    pulled,
                    manifests,
                    blobs,
                    bytes,
                });
            }
        }
        graph.images.sort_by_key(|image| image.name());
        graph
    }
}

/// Every image in the cache (for listings), sorted by name.
pub fn cached_images(index: &Index) -> Vec<CachedImage> {
    ImageGraph::build(index).images
}
