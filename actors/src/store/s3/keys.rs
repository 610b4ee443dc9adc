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
