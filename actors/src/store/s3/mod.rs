//! The S3-compatible store: a backend over a bucket shared by every replica (through `object_store`), with a bounded
//! local disk tier in front of it for hot blobs.
//!
//! In the bucket, under `prefix`: the store's keys (`store::keys`: blobs, manifests and their `.type`, reference
//! records, `quarantine/`) and the access journal as one object per batch, `access/<replica>/<ms>.log`. The jobs:
//! `settings` (where the bucket is), `keys` (the prefix), `bucket` (the object operations), `tier` (the local disk
//! tier and its LRU), `locks` (one task per digest), `upload` (blob writes: spooled locally, uploaded whole).
//!
//! Reading a blob: from the tier when it has it (local-disk speed, `sendfile`), else downloaded from the bucket into
//! the tier first. One digest is written or downloaded by one task at a time. Unfinished writes (`tmp/`: the spool
//! and the upstream's validator) live in the tier, not in the bucket. Everything else (the scan of the bucket,
//! manifests and their `.type`, records, the journal) is the store's, on top of this backend.

mod bucket;
mod keys;
mod locks;
mod settings;
mod tier;
mod upload;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;

use self::bucket::{Bucket, BUCKET_VERSION};
use self::keys::Keys;
use self::locks::{Busy, Writing};
pub use self::settings::S3Settings;
use self::tier::Tier;
use self::upload::S3Upload;
use super::backend::{Backend, BytesReader, Journal, Listed, OpenedBlob, Res, Upload};
use super::fs::FsStorage;
use super::keys as names;
use super::records::{Capacity, Version};
use crate::digest::Digest;
use crate::error::StoreError;

/// See the module documentation.
pub struct S3Storage {
    bucket: Bucket,
    tier: Arc<Tier>,
    /// One task at a time downloads a digest into the tier (or starts writing it).
    busy: Busy,
    /// Digests being written (fetched from the upstream): not committed, so a reader finds nothing at once instead of
    /// waiting for the write to end.
    writing: Writing,
    replica: String,
    location: String,
}

impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location)
    }
}

/// The blob a key names, if it names one.
fn blob_of(key: &str) -> Option<Digest> {
    key.starts_with("blobs/").then(|| names::digest_in(key)).flatten()
}

/// Whether a key is an unfinished write's (kept in the tier).
fn local_only(key: &str) -> bool {
    key.starts_with("tmp/")
}

impl S3Storage {
    /// A store over the bucket, with its local tier in `settings.local_dir` (locked like a filesystem store).
    pub async fn open(settings: S3Settings) -> Result<S3Storage, StoreError> {
        // The S3 client's TLS takes the process's default provider: make it ring, as everywhere else here. An
        // error only says one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s3 = AmazonS3Builder::new()
            .with_endpoint(&settings.endpoint)
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key)
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_allow_http(settings.endpoint.starts_with("http://"))
            .build()
            .map_err(|e| StoreError::Io {
                op: "configure",
                path: format!("s3 {}/{}", settings.endpoint, settings.bucket),
                detail: e.to_string(),
                disk_full: false,
            })?;
        let local = FsStorage::open(&settings.local_dir)?;
        Ok(S3Storage {
            bucket: Bucket { s3: Arc::new(s3), keys: Keys::new(&settings.prefix) },
            tier: Arc::new(Tier::new(local, settings.local_cache_size)),
            busy: Busy::default(),
            writing: Writing::default(),
            replica: Keys::replica_segment(&settings.replica),
            location: format!("s3://{}/{} at {}", settings.bucket, settings.prefix, settings.endpoint),
        })
    }

    /// Check that the bucket is there and the credentials are accepted (see `Bucket::check`).
    pub async fn check_bucket(&self) -> Result<(), String> {
        self.bucket.check(&self.location).await
    }

    /// Open a blob from the tier, downloading it from the bucket first when the tier lacks it.
    async fn open_blob(&self, digest: &Digest) -> Res<Option<OpenedBlob>> {
        if let Some(opened) = self.tier.open(digest).await? {
            return Ok(Some(opened));
        }
        if self.writing.contains(digest) {
            return Ok(None);
        }
        let _guard = self.busy.hold(digest).await;
        // Downloaded by another task while this one waited?
        if let Some(opened) = self.tier.open(digest).await? {
            return Ok(Some(opened));
        }
        // A write began meanwhile: its partial file is not to be touched.
        if self.writing.contains(digest) || !self.download(digest).await? {
            return Ok(None);
        }
        self.tier.open(digest).await
    }

    /// Download a blob from the bucket into the tier. `Ok(false)` when the bucket does not have it.
    async fn download(&self, digest: &Digest) -> Res<bool> {
        let key = names::blob(digest);
        let path = self.bucket.keys.path(&key);
        let got = match object_store::ObjectStoreExt::get(&*self.bucket.s3, &path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(bucket::s3_error("get", &path, e)),
        };
        let mut write = self.tier.local().upload(&key).await?;
        if write.resumed() > 0 {
            write.truncate().await?;
        }
        let mut body = got.into_stream();
        while let Some(chunk) = body.next().await {
            write.append(chunk.map_err(|e| bucket::s3_error("get", &path, e))?).await?;
        }
        write.sync().await?;
        write.complete().await?;
        Ok(true)
    }
}

impl Backend for S3Storage {
    fn location(&self) -> &str {
        &self.location
    }

    async fn open(&self, key: &str) -> Res<Option<OpenedBlob>> {
        let Some(digest) = blob_of(key) else {
            let got = self.get(key).await?;
            return Ok(got.map(|(b, version)| OpenedBlob {
                size: b.len() as u64,
                reader: Arc::new(BytesReader(b)),
                version,
            }));
        };
        self.open_blob(&digest).await
    }

    async fn get(&self, key: &str) -> Res<Option<(Bytes, Version)>> {
        if local_only(key) {
            return self.tier.local().get(key).await;
        }
        Ok(self.bucket.get(key).await?.map(|b| (b, BUCKET_VERSION)))
    }

    async fn head(&self, key: &str) -> Res<Option<Version>> {
        if local_only(key) {
            return self.tier.local().head(key).await;
        }
        Ok(self.bucket.exists(key).await?.then_some(BUCKET_VERSION))
    }

    async fn current_version(&self, key: &str) -> Res<Option<Version>> {
        // Content-addressed in the bucket: what was read stays good without a request per read.
        Ok(Some(BUCKET_VERSION).filter(|_| !local_only(key)))
    }

    async fn put(&self, key: &str, bytes: Bytes, durable: bool) -> Res<()> {
        if local_only(key) {
            return self.tier.local().put(key, bytes, durable).await;
        }
        self.bucket.put(key, bytes).await
    }

    async fn upload(&self, key: &str) -> Res<Box<dyn Upload>> {
        let Some(digest) = blob_of(key) else {
            return self.tier.local().upload(key).await;
        };
        // A download of the same digest into the tier finishes first; then the write is marked, and readers stop
        // waiting for it.
        let guard = self.busy.hold(&digest).await;
        let mark = self.writing.mark(&digest);
        drop(guard);
        let spool = self.tier.local().upload(key).await?;
        let size = spool.resumed();
        let (bucket, tier) = (self.bucket.clone(), self.tier.clone());
        Ok(Box::new(S3Upload { spool, bucket, digest, tier, size, mark }))
    }

    async fn delete(&self, key: &str) -> Res<()> {
        if local_only(key) {
            return self.tier.local().delete(key).await;
        }
        if let Some(digest) = blob_of(key) {
            self.tier.forget(&digest);
            self.tier.local().delete(key).await?;
        }
        self.bucket.delete(key).await
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Res<Listed>> {
        self.bucket.list(prefix)
    }

    fn shared(&self) -> bool {
        true
    }

    /// The damage was seen in the tier's copy (or the bucket's, downloaded into it): drop both, keep the bucket's
    /// bytes aside for inspection. A bucket has no compare-and-move: `version` is checked against the tier's copy.
    async fn quarantine(&self, key: &str, version: Option<Version>, aside: &str) -> Res<bool> {
        if let Some(digest) = blob_of(key) {
            self.tier.forget(&digest);
            self.tier.local().quarantine(key, version, aside).await?;
        }
        self.bucket.move_aside(key, aside).await
    }

    fn journal(&self) -> Journal {
        Journal::Batches { writer: self.replica.clone() }
    }

    async fn prepare_scan(&self) -> usize {
        // What this replica already holds locally, for the tier's bookkeeping (the bucket is the record of what is
        // cached).
        self.tier.load().await;
        0
    }

    async fn capacity(&self) -> Option<Capacity> {
        // The bucket has no notion of free space; the spool and the tier need the local disk.
        self.tier.local().capacity().await
    }

    async fn probe_writable(&self) -> bool {
        let key = format!("tmp/probe-{}", self.replica);
        let ok = self.bucket.put(&key, Bytes::from_static(b"probe")).await.is_ok();
        let _ = self.bucket.delete(&key).await;
        ok && self.tier.local().probe_writable().await
    }
}
