//! Compact forms of what the index keeps per entry: a reference key as one byte string, and a manifest's graph as one
//! byte string of raw digests. With 100,000 cached images the index is most of the server's memory; these forms hold
//! the same information as `RefKey` and `ManifestLinks` in a single allocation each, and are turned back into those
//! types whenever the index hands something out.
//!
//! - Reference key: `namespace 0 repository 0 't' tag` or `namespace 0 repository 0 'd' algorithm hash`, where
//!   `algorithm` is one byte (`DIGEST_ALGORITHMS`) and `hash` the raw hash bytes. No valid namespace or repository
//!   contains a 0 byte, so the form is unambiguous; it is only ever made from a validated `RefKey`.
//! - Manifest graph: the number of blob links (two bytes, little-endian), then each link's digest as an algorithm byte
//!   and its hash bytes, blobs first, then child manifests.

use crate::digest::{Digest, DigestAlgorithm};
use crate::graph::ManifestLinks;
use crate::reference::{ImageKey, Reference};
use crate::store::records::RefKey;

const DIGEST_ALGORITHMS: [DigestAlgorithm; 2] = [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512];

fn push_digest(out: &mut Vec<u8>, digest: &Digest) {
    let alg = DIGEST_ALGORITHMS.iter().position(|a| *a == digest.algorithm()).unwrap_or(0);
    out.push(alg as u8);
    out.extend_from_slice(digest.bytes());
}

/// One digest from the front of `bytes`, and what follows it.
fn take_digest(bytes: &[u8]) -> Option<(Digest, &[u8])> {
    let (&alg, rest) = bytes.split_first()?;
    let alg = *DIGEST_ALGORITHMS.get(usize::from(alg))?;
    let len = alg.hex_len() / 2;
    let (hash, rest) = (rest.get(..len)?, rest.get(len..)?);
    Some((Digest::from_bytes(alg, hash)?, rest))
}

/// A reference key's compact form.
pub(super) fn key_bytes(key: &RefKey) -> Vec<u8> {
    let (ns, repo) = (key.image.ns().as_str(), key.image.repo().as_str());
    let reference = match &key.reference {
        Reference::Tag(tag) => tag.as_str().len(),
        Reference::Digest(digest) => 1 + digest.bytes().len(),
    };
    // Exactly as long as it will be: the index keeps it, so no spare capacity is left to be trimmed (or wasted).
    let mut out = Vec::with_capacity(ns.len() + repo.len() + 3 + reference);
    out.extend_from_slice(ns.as_bytes());
    out.push(0);
    out.extend_from_slice(repo.as_bytes());
    out.push(0);
    match &key.reference {
        Reference::Tag(tag) => {
            out.push(b't');
            out.extend_from_slice(tag.as_str().as_bytes());
        }
        Reference::Digest(digest) => {
            out.push(b'd');
            push_digest(&mut out, digest);
        }
    }
    out
}

/// The reference key a compact form stands for.
pub(super) fn key_of(bytes: &[u8]) -> Option<RefKey> {
    let mut parts = bytes.splitn(3, |b| *b == 0);
    let ns = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let repo = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let (kind, rest) = parts.next()?.split_first()?;
    let reference = match kind {
        b't' => Reference::Tag(std::str::from_utf8(rest).ok()?.parse().ok()?),
        b'd' => match take_digest(rest)? {
            (digest, []) => Reference::Digest(digest),
            _ => return None,
        },
        _ => return None,
    };
    Some(RefKey { image: ImageKey::new(ns, repo), reference })
}

/// A manifest graph's compact form (empty for a manifest that links nothing).
pub(super) fn links_bytes(links: &ManifestLinks) -> Box<[u8]> {
    if links.blobs.is_empty() && links.manifests.is_empty() {
        return Box::new([]);
    }
    let len = 2 + links.blobs.iter().chain(links.manifests.iter()).map(|d| 1 + d.bytes().len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&u16::try_from(links.blobs.len()).unwrap_or(u16::MAX).to_le_bytes());
    for digest in links.blobs.iter().take(usize::from(u16::MAX)).chain(links.manifests.iter()) {
        push_digest(&mut out, digest);
    }
    out.into_boxed_slice()
}

/// The manifest graph a compact form stands for.
pub(super) fn links_of(bytes: &[u8]) -> ManifestLinks {
    let Some((count, mut rest)) = bytes.split_first_chunk::<2>() else {
        return ManifestLinks::default();
    };
    let blobs = usize::from(u16::from_le_bytes(*count));
    let mut all = Vec::new();
    while let Some((digest, next)) = take_digest(rest) {
        all.push(digest);
        rest = next;
    }
    let manifests = all.split_off(blobs.min(all.len()));
    ManifestLinks { blobs: all.into(), manifests: manifests.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(reference: &str) -> RefKey {
        RefKey {
            image: ImageKey::new("registry.example:5000".parse().expect("ns"), "team/app".parse().expect("repo")),
            reference: reference.parse().expect("reference"),
        }
    }

    #[test]
    fn reference_keys_round_trip() {
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        for k in [key("v1.2"), key("latest"), key(&Digest::sha256_of(b"m").to_string()), key(&sha512)] {
            assert_eq!(key_of(&key_bytes(&k)), Some(k.clone()), "{k}");
        }
        assert_ne!(key_bytes(&key("a")), key_bytes(&key("b")));
        assert_eq!(key_of(b"docker.io\0library/x\0q1"), None, "an unknown kind");
    }

    #[test]
    fn manifest_graphs_round_trip() {
        let d = |s: &str| Digest::sha256_of(s.as_bytes());
        let sha512 = Digest::of(DigestAlgorithm::Sha512, b"big");
        let graphs = [
            ManifestLinks::default(),
            ManifestLinks { blobs: vec![d("c"), d("l0"), sha512.clone()].into(), manifests: Box::new([]) },
            ManifestLinks { blobs: Box::new([]), manifests: vec![d("amd64"), d("arm64")].into() },
            ManifestLinks { blobs: vec![d("a")].into(), manifests: vec![sha512].into() },
        ];
        for links in graphs {
            assert_eq!(links_of(&links_bytes(&links)), links);
        }
        assert_eq!(links_bytes(&ManifestLinks::default()).len(), 0, "no allocation for an empty graph");
    }
}
