//! The bucket's key names: the store's keys (`store::keys`) under a prefix, and a replica's name as a key segment.

use object_store::path::Path;

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

    /// The bucket path of the store's key `key`.
    pub(super) fn path(&self, key: &str) -> Path {
        Path::from(format!("{}{key}", self.prefix))
    }

    /// The store's key of a bucket path (`None`: outside the prefix).
    pub(super) fn key_of(&self, path: &Path) -> Option<String> {
        path.as_ref().strip_prefix(self.prefix.as_str()).map(str::to_string)
    }

    /// The prefix itself.
    pub(super) fn root(&self) -> Path {
        Path::from(self.prefix.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::store::keys;

    #[test]
    fn keys_map_to_paths_under_the_prefix_and_back() {
        let digest = Digest::sha256_of(b"blob");
        for (prefix, path) in [("", ""), ("mirror", "mirror/"), ("/a/b/", "a/b/")] {
            let k = Keys::new(prefix);
            for key in [keys::blob(&digest), keys::manifest_type(&digest), "access/r/1.log".to_string()] {
                assert_eq!(k.path(&key).as_ref(), format!("{path}{key}"), "{prefix}");
                assert_eq!(k.key_of(&k.path(&key)).as_deref(), Some(key.as_str()), "{prefix}");
            }
        }
        assert_eq!(Keys::replica_segment("http://10.0.0.5:8080"), "http___10.0.0.5_8080");
        assert_eq!(Keys::replica_segment(""), "replica");
    }
}
