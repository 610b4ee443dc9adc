//! Where the bucket is, how to reach it, and the local disk tier's place and size (`storage.s3`).

use std::fmt;
use std::path::PathBuf;

/// Where the bucket is and how to reach it.
#[derive(Clone)]
pub struct S3Settings {
    /// `http(s)://host[:port]`.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The region (Garage: `garage`).
    pub region: String,
    /// Keys are stored under this prefix (no leading or trailing slash; empty for none).
    pub prefix: String,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted ones.
    pub path_style: bool,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key (never logged).
    pub secret_access_key: String,
    /// The local disk tier's directory (`imagePath`).
    pub local_dir: PathBuf,
    /// The local disk tier's size cap in bytes.
    pub local_cache_size: u64,
    /// This replica's name in the bucket's access journal.
    pub replica: String,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}
