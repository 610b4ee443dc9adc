//! The names of stored objects, relative to the store's root: one naming for every backend (the filesystem store
//! joins them to `imagePath`, the S3 store puts them under its prefix).
//!
//! ```text
//! blobs/<alg>/<hex>                 blob bytes, content-addressed
//! manifests/<alg>/<hex>             manifest bytes exactly as the upstream sent them
//! manifests/<alg>/<hex>.type        the manifest's media type (one line)
//! refs/<xx>/<sha256 of key>.json    one record per (namespace, repository, tag or digest) -> manifest digest
//! access.log, access/<writer>/…     access times (see `journal`)
//! tmp/partial-<alg>-<hex>[.etag]    an unfinished blob write (resumed by the next fetch of that blob) and the
//!                                   upstream's validator of the object it was fetching
//! quarantine/<key with / as _>.<n>  damaged objects moved aside, for inspection
//! ```

use crate::digest::{Digest, DigestAlgorithm};
use crate::store::records::{RefKey, StoredObject};

/// The digest algorithms objects are stored under.
pub(crate) const ALGORITHMS: [DigestAlgorithm; 2] = [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512];

/// `<top>/<alg>/<hex><suffix>`, in one allocation of the right size (a blob's key is made on every cache hit).
fn named(top: &str, d: &Digest, suffix: &str) -> String {
    let (alg, hex) = (d.algorithm().as_str(), d.hex());
    let mut key = String::with_capacity(top.len() + alg.len() + hex.len() + suffix.len() + 2);
    for part in [top, "/", alg, "/", &hex, suffix] {
        key.push_str(part);
    }
    key
}

/// A blob's key.
pub(crate) fn blob(d: &Digest) -> String {
    named("blobs", d, "")
}

/// A manifest's key.
pub(crate) fn manifest(d: &Digest) -> String {
    named("manifests", d, "")
}

/// The key of a manifest's media type.
pub(crate) fn manifest_type(d: &Digest) -> String {
    named("manifests", d, ".type")
}

/// A reference record's key: the key is hashed, so any repository name maps to one flat, safe name.
pub(crate) fn record(k: &RefKey) -> String {
    let hashed = Digest::sha256_of(k.to_string().as_bytes());
    let hex = hashed.hex();
    format!("refs/{}/{hex}.json", &hex[..2])
}

/// The key an object is stored under.
pub(crate) fn object(object: &StoredObject) -> String {
    match object {
        StoredObject::Blob(d) => blob(d),
        StoredObject::Manifest(d) => manifest(d),
        StoredObject::Record(k) => record(k),
    }
}

/// Where an unfinished write of the object `key` keeps its bytes (a blob's: `tmp/partial-<alg>-<hex>`).
pub(crate) fn staging(key: &str) -> String {
    format!("tmp/partial-{}", key.strip_prefix("blobs/").unwrap_or(key).replace('/', "-"))
}

/// Where the upstream's validator (`ETag`) of an unfinished blob write is kept.
pub(crate) fn validator(d: &Digest) -> String {
    format!("{}.etag", staging(&blob(d)))
}

/// A fresh key in `quarantine/` for the object `key`.
pub(crate) fn quarantine(key: &str) -> String {
    format!("quarantine/{}.{:08x}", key.replace('/', "_"), rand::random::<u32>())
}

/// The digest a listed key under `blobs/<alg>/` or `manifests/<alg>/` names, if it is one.
pub(crate) fn digest_in(key: &str) -> Option<Digest> {
    let mut parts = key.split('/');
    let (_, alg, hex) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    format!("{alg}:{hex}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_what_they_hold() {
        let d = Digest::sha256_of(b"blob");
        assert_eq!(blob(&d), format!("blobs/sha256/{}", d.hex()));
        assert_eq!(manifest_type(&d), format!("manifests/sha256/{}.type", d.hex()));
        assert_eq!(digest_in(&blob(&d)), Some(d.clone()));
        assert_eq!(digest_in(&manifest(&d)), Some(d.clone()));
        assert_eq!(digest_in(&manifest_type(&d)), None);
        assert_eq!(digest_in("blobs/sha256/x/y"), None);
        assert_eq!(staging(&blob(&d)), format!("tmp/partial-sha256-{}", d.hex()));
        assert_eq!(validator(&d), format!("tmp/partial-sha256-{}.etag", d.hex()));
        assert!(quarantine(&manifest_type(&d)).starts_with(&format!("quarantine/manifests_sha256_{}.type.", d.hex())));
    }
}
