//! The bucket's key names: the filesystem layout's, under a prefix.

use object_store::path::Path;

use crate::digest::Digest;
use crate::store::records::{RefKey, StoredObject};

/// What a key in the bucket holds.
pub(super) enum Kind {
    Blob(Digest),
    Manifest(Digest),
    Record,
    Access,
    Other,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    /// A replica's name as one key segment (`http://10.0.0.5:8080` -> `http___10.0.0.5_8080`).
    pub(super) fn replica_segment(replica: &str) -> String {
        let name: String =
            replica.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
        if name.is_empty() {
            "replica".to_string()
        } else {
            name
        }
    }

    pub(super) fn new(prefix: &str) -> Keys {
        let prefix = prefix.trim_matches('/');
        Keys { prefix: if prefix.is_empty() { String::new() } else { format!("{prefix}/") } }
    }

    fn key(&self, rest: &str) -> Path {
        Path::from(format!("{}{rest}", self.prefix))
    }

    pub(super) fn root(&self) -> Path {
        Path::from(self.prefix.trim_end_matches('/'))
    }

    pub(super) fn blob(&self, d: &Digest) -> Path {
        self.key(&format!("blobs/{}/{}", d.algorithm(), d.hex()))
    }

    pub(super) fn manifest(&self, d: &Digest) -> Path {
        self.key(&format!("manifests/{}/{}", d.algorithm(), d.hex()))
    }

    pub(super) fn manifest_type(&self, d: &Digest) -> Path {
        self.key(&format!("manifests/{}/{}.type", d.algorithm(), d.hex()))
    }

    pub(super) fn record(&self, k: &RefKey) -> Path {
        let hashed = Digest::sha256_of(k.to_string().as_bytes());
        let hex = hashed.hex();
        self.key(&format!("refs/{}/{hex}.json", &hex[..2]))
    }

    pub(super) fn object(&self, object: &StoredObject) -> Path {
        match object {
            StoredObject::Blob(d) => self.blob(d),
            StoredObject::Manifest(d) => self.manifest(d),
            StoredObject::Record(k) => self.record(k),
        }
    }

    pub(super) fn quarantine(&self, key: &Path) -> Path {
        let name = key.as_ref().strip_prefix(self.prefix.as_str()).unwrap_or(key.as_ref()).replace('/', "_");
        self.key(&format!("quarantine/{name}.{:08x}", rand::random::<u32>()))
    }

    pub(super) fn access_dir(&self, replica: &str) -> Path {
        self.key(&format!("access/{replica}"))
    }

    pub(super) fn access(&self, replica: &str, name: &str) -> Path {
        self.key(&format!("access/{replica}/{name}.log"))
    }

    pub(super) fn probe(&self, replica: &str) -> Path {
        self.key(&format!("tmp/probe-{replica}"))
    }

    /// What `key` holds.
    pub(super) fn classify(&self, key: &Path) -> Kind {
        let rest = key.as_ref().strip_prefix(self.prefix.as_str()).unwrap_or(key.as_ref());
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["blobs", alg, hex] => format!("{alg}:{hex}").parse().map_or(Kind::Other, Kind::Blob),
            ["manifests", _, name] if name.ends_with(".type") => Kind::Other,
            ["manifests", alg, hex] => format!("{alg}:{hex}").parse().map_or(Kind::Other, Kind::Manifest),
            ["refs", _, _] => Kind::Record,
            ["access", _, _] => Kind::Access,
            _ => Kind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Reference;

    #[test]
    fn keys_classify_back_to_what_they_hold() {
        let digest = Digest::sha256_of(b"blob");
        for prefix in ["", "mirror", "/a/b/"] {
            let keys = Keys::new(prefix);
            assert!(matches!(keys.classify(&keys.blob(&digest)), Kind::Blob(d) if d == digest), "{prefix}");
            assert!(matches!(keys.classify(&keys.manifest(&digest)), Kind::Manifest(d) if d == digest), "{prefix}");
            assert!(matches!(keys.classify(&keys.manifest_type(&digest)), Kind::Other), "{prefix}");
            let image =
                crate::reference::ImageKey::new("docker.io".parse().expect("ns"), "library/x".parse().expect("repo"));
            let key = RefKey { image, reference: Reference::Tag("1".parse().expect("tag")) };
            assert!(matches!(keys.classify(&keys.record(&key)), Kind::Record), "{prefix}");
            let replica = Keys::replica_segment("http://10.0.0.5:8080");
            assert_eq!(replica, "http___10.0.0.5_8080");
            assert!(matches!(keys.classify(&keys.access(&replica, "00000001")), Kind::Access), "{prefix}");
            assert!(matches!(keys.classify(&keys.probe(&replica)), Kind::Other), "{prefix}");
        }
    }
}
