//! The bucket, through `object_store`: the object operations of the seam on the store's keys under the prefix,
//! errors as `StoreError`s, and the start-up check of the bucket.
//!
//! A bucket object is content-addressed or replaced whole, and a bucket has no compare-and-move: every object read
//! from it has the one version `BUCKET_VERSION` (a manifest's hot bytes stay good without a request per read; one
//! replica's removal is seen by the others when their index drops it). Listed blobs carry a hash of their ETag.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::keys::Keys;
use crate::error::StoreError;
use crate::store::backend::Listed;
use crate::store::records::Version;

/// The version of every object read from the bucket (see the module documentation).
pub(super) const BUCKET_VERSION: Version = Version(1);
/// How long the start-up check of the bucket waits for an answer.
const BUCKET_CHECK: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) fn s3_error(op: &'static str, key: &Path, err: object_store::Error) -> StoreError {
    StoreError::Io { op, path: key.to_string(), detail: err.to_string(), disk_full: false }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    pub(super) s3: Arc<AmazonS3>,
    pub(super) keys: Keys,
}

impl Bucket {
    pub(super) async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.keys.path(key);
        match self.s3.get(&path).await {
            Ok(got) => got.bytes().await.map(Some).map_err(|e| s3_error("get", &path, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error("get", &path, e)),
        }
    }

    pub(super) async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.keys.path(key);
        match self.s3.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(s3_error("head", &path, e)),
        }
    }

    pub(super) async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.keys.path(key);
        self.s3.put(&path, PutPayload::from(bytes)).await.map(|_| ()).map_err(|e| s3_error("put", &path, e))
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.keys.path(key);
        match self.s3.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error("delete", &path, e)),
        }
    }

    /// Copy `key` to `aside` and delete it: whether it was there.
    pub(super) async fn move_aside(&self, key: &str, aside: &str) -> Result<bool, StoreError> {
        let (path, dest) = (self.keys.path(key), self.keys.path(aside));
        match self.s3.copy(&path, &dest).await {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(s3_error("copy", &path, e)),
        }
        self.delete(key).await.map(|()| true)
    }

    pub(super) fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed, StoreError>> {
        let (keys, root) = (self.keys.clone(), self.keys.path(prefix));
        let listing = self.s3.list(Some(&root));
        listing
            .filter_map(move |item| {
                let found = match item {
                    Ok(meta) => keys.key_of(&meta.location).map(|key| {
                        let version = Version(hash_etag(meta.e_tag.as_deref()));
                        let stored = meta.last_modified.timestamp();
                        Ok(Listed { key, size: meta.size, stored, version, plain: true })
                    }),
                    Err(e) => Some(Err(s3_error("list", &root, e))),
                };
                futures_util::future::ready(found)
            })
            .boxed()
    }

    /// Ask the bucket for one page of its listing: a missing bucket or refused credentials are an error that will not
    /// go away (`Err`, the start fails naming them); a store that does not answer yet is only warned about (the
    /// replica starts, not ready, and serves its local tier).
    pub(super) async fn check(&self, location: &str) -> Result<(), String> {
        let probe = tokio::time::timeout(BUCKET_CHECK, self.s3.list_with_delimiter(Some(&self.keys.root()))).await;
        match probe {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(
                e @ (object_store::Error::NotFound { .. }
                | object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }),
            )) => Err(format!("{location}: {e}")),
            Ok(Err(e)) if is_refusal(&e) => Err(format!("{location}: {e}")),
            Ok(Err(e)) => {
                tracing::warn!(store = %location, error = %e, "the bucket does not answer yet");
                Ok(())
            }
            Err(_) => {
                tracing::warn!(store = %location, "the bucket did not answer within {BUCKET_CHECK:?}");
                Ok(())
            }
        }
    }
}

/// Whether a store error is the store refusing this bucket or these credentials (an S3 error code in its text), not
/// a passing failure.
fn is_refusal(e: &object_store::Error) -> bool {
    let text = e.to_string();
    ["NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"]
        .iter()
        .any(|code| text.contains(code))
}

/// A version for a bucket object: a hash of its ETag (or 0 when it has none).
fn hash_etag(etag: Option<&str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    etag.unwrap_or_default().hash(&mut h);
    h.finish()
}
