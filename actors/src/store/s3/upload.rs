//! A blob written to the S3 store: spooled to the tier's partial file (so followers read the growing object from
//! local disk, and a broken download is resumed across restarts exactly as on the filesystem store), and uploaded
//! by `complete`, verified, with a multipart upload streamed from that file: the object appears under its key only
//! complete. An object another replica uploaded already is not uploaded again (content-addressed: the same bytes).
//! The spool then becomes the tier's hot copy.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::{ObjectStoreExt, WriteMultipart};

use super::bucket::{s3_error, Bucket};
use super::locks::WritingMark;
use super::tier::Tier;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::store::backend::{ObjectReader, Patch, Upload};
use crate::store::keys;
use crate::store::records::Version;

/// Upload parts of this size (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once.
const PART_CONCURRENCY: usize = 4;

/// See the module documentation.
pub(super) struct S3Upload {
    pub(super) spool: Box<dyn Upload>,
    pub(super) bucket: Bucket,
    pub(super) digest: Digest,
    pub(super) tier: Arc<Tier>,
    /// Bytes in the spool.
    pub(super) size: u64,
    pub(super) mark: WritingMark,
}

#[async_trait]
impl Upload for S3Upload {
    fn reader(&self) -> Arc<dyn ObjectReader> {
        self.spool.reader()
    }

    fn resumed(&self) -> u64 {
        self.spool.resumed()
    }

    async fn append(&mut self, data: Bytes) -> Result<(), StoreError> {
        let len = data.len() as u64;
        self.spool.append(data).await?;
        self.size += len;
        Ok(())
    }

    async fn truncate(&mut self) -> Result<(), StoreError> {
        self.size = 0;
        self.spool.truncate().await
    }

    fn patcher(&self) -> Option<Arc<dyn Patch>> {
        self.spool.patcher()
    }

    fn skip(&mut self, len: u64) {
        self.spool.skip(len);
        self.size += len;
    }

    async fn sync(&mut self) -> Result<(), StoreError> {
        self.spool.sync().await
    }

    async fn complete(self: Box<Self>) -> Result<Version, StoreError> {
        let key = keys::blob(&self.digest);
        // Another replica may have uploaded the same blob meanwhile: content-addressed, so it is the same bytes.
        if !self.bucket.exists(&key).await? {
            upload(&self.bucket, &key, &*self.spool.reader()).await?;
        }
        let S3Upload { spool, digest, tier, size, mark, .. } = *self;
        let version = spool.complete().await?;
        tier.note(&digest, size).await;
        drop(mark);
        Ok(version)
    }

    async fn abort(self: Box<Self>) {
        self.spool.abort().await;
    }
}

/// Upload what `reader` holds to `key`, in parts.
async fn upload(bucket: &Bucket, key: &str, reader: &dyn ObjectReader) -> Result<(), StoreError> {
    let path = bucket.keys.path(key);
    let mut size = 0u64;
    let upload = bucket.s3.put_multipart(&path).await.map_err(|e| s3_error("upload", &path, e))?;
    let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    loop {
        let chunk = reader
            .read_range(size, PART_SIZE)
            .await
            .map_err(|e| StoreError::io("read spool of", std::path::Path::new(path.as_ref()), &e))?;
        if chunk.is_empty() {
            break;
        }
        size += chunk.len() as u64;
        parts.wait_for_capacity(PART_CONCURRENCY).await.map_err(|e| s3_error("upload", &path, e))?;
        parts.put(chunk);
    }
    parts.finish().await.map_err(|e| s3_error("upload", &path, e))?;
    Ok(())
}
