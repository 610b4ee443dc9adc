//! The S3-compatible store: the storage trait over a bucket shared by every replica (through `object_store`), with a
//! bounded local disk tier in front of it for hot blobs.
//!
//! In the bucket, under `prefix`: `blobs/<alg>/<hex>`, `manifests/<alg>/<hex>` (and `.type`), `refs/<xx>/<hash>.json`
//! (the filesystem layout's names), `access/<replica>/<ms>.log` and `quarantine/`. A blob is written to a local spool
//! file (the tier's `tmp/partial-…`, so followers read the growing object from local disk, and a broken download is
//! resumed across restarts exactly as on the filesystem store), and `commit` uploads it, verified, with a multipart
//! upload streamed from that file: the object appears under its key only complete. An object another replica
//! uploaded already is not uploaded again. The spool then becomes the tier's hot copy.
//!
//! Reading a blob: from the tier when it has it (local-disk speed), else downloaded from the bucket into the tier
//! first. The tier holds at most `local_cache_size` bytes of blobs (least recently used go first; a file being read
//! stays readable after it is removed). One digest is written or downloaded by one task at a time.

mod keys;
mod manifest_type;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashMap;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::sync::mpsc;

use self::keys::Keys;
use super::backend::{BlobWrite, ObjectReader, OpenedBlob, Storage};
use super::fs::FsStorage;
use super::records::{
    AccessEntry, Capacity, Inventory, ManifestMeta, RefKey, RefRecord, StoredBlob, StoredManifest, StoredObject,
    Version,
};
use crate::digest::Digest;
use crate::error::StoreError;
use crate::graph::ManifestLinks;

/// Upload parts of this size (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once.
const PART_CONCURRENCY: usize = 4;
/// Objects per batch the scan sends to the cache actor.
const SCAN_BATCH: usize = 512;
/// The version every manifest read from the bucket has (see `manifest_version`).
const MANIFEST_VERSION: Version = Version(1);
/// How long the start-up check of the bucket waits for an answer.
const BUCKET_CHECK: std::time::Duration = std::time::Duration::from_secs(10);

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

/// The tier's bookkeeping: blobs held, their sizes and recency.
#[derive(Debug, Default)]
struct Tier {
    used: u64,
    tick: u64,
    held: HashMap<Digest, (u64, u64)>,
}

/// See the module documentation.
pub struct S3Storage {
    bucket: Arc<AmazonS3>,
    keys: Keys,
    /// The local disk tier (it also holds the directory lock of this replica's `imagePath`).
    local: Arc<FsStorage>,
    tier: Arc<Mutex<Tier>>,
    cap: u64,
    /// One task at a time downloads a digest into the tier (or starts writing it).
    busy: Arc<DashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// Digests being written (fetched from the upstream): not committed, so a reader finds nothing at once instead of
    /// waiting for the write to end.
    writing: Arc<DashMap<Digest, ()>>,
    replica: String,
    location: String,
}

impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location)
    }
}

fn s3_error(op: &'static str, key: &Path, err: object_store::Error) -> StoreError {
    StoreError::Io { op, path: key.to_string(), detail: err.to_string(), disk_full: false }
}

impl S3Storage {
    /// A store over the bucket, with its local tier in `settings.local_dir` (locked like a filesystem store).
    pub async fn open(settings: S3Settings) -> Result<S3Storage, StoreError> {
        // The S3 client's TLS takes the process's default provider: make it ring, as everywhere else here. An
        // error only says one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bucket = AmazonS3Builder::new()
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
        let location = format!("s3://{}/{} at {}", settings.bucket, settings.prefix, settings.endpoint);
        let store = S3Storage {
            bucket: Arc::new(bucket),
            keys: Keys::new(&settings.prefix),
            local: Arc::new(local),
            tier: Arc::default(),
            cap: settings.local_cache_size,
            busy: Arc::default(),
            writing: Arc::default(),
            replica: Keys::replica_segment(&settings.replica),
            location,
        };
        Ok(store)
    }

    /// Ask the bucket for one page of its listing: a missing bucket or refused credentials are an error that will not
    /// go away (`Err`, the start fails naming them); a store that does not answer yet is only warned about (the
    /// replica starts, not ready, and serves its local tier).
    pub async fn check_bucket(&self) -> Result<(), String> {
        let root = self.keys.root();
        let probe = tokio::time::timeout(BUCKET_CHECK, self.bucket.list_with_delimiter(Some(&root))).await;
        match probe {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(
                e @ (object_store::Error::NotFound { .. }
                | object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }),
            )) => Err(format!("{}: {e}", self.location)),
            Ok(Err(e)) if is_refusal(&e) => Err(format!("{}: {e}", self.location)),
            Ok(Err(e)) => {
                tracing::warn!(store = %self.location, error = %e, "the bucket does not answer yet");
                Ok(())
            }
            Err(_) => {
                tracing::warn!(store = %self.location, "the bucket did not answer within {BUCKET_CHECK:?}");
                Ok(())
            }
        }
    }

    /// Wait until no other task writes or downloads `digest`; the guard holds it.
    async fn hold(&self, digest: &Digest) -> DigestGuard {
        let lock = self.busy.entry(digest.clone()).or_default().clone();
        let guard = lock.lock_owned().await;
        DigestGuard { digest: digest.clone(), busy: self.busy.clone(), _guard: Some(guard) }
    }

    /// Note a blob in the tier (most recently used), and trim the tier to its cap.
    async fn tier_use(&self, digest: &Digest, size: u64) {
        let evict = {
            let mut tier = self.tier.lock().unwrap_or_else(|p| p.into_inner());
            tier.tick += 1;
            let tick = tier.tick;
            if let Some(old) = tier.held.insert(digest.clone(), (size, tick)) {
                tier.used -= old.0;
            }
            tier.used += size;
            let mut evict = Vec::new();
            while tier.used > self.cap && tier.held.len() > 1 {
                let Some(oldest) =
                    tier.held.iter().filter(|(d, _)| *d != digest).min_by_key(|(_, (_, t))| *t).map(|(d, _)| d.clone())
                else {
                    break;
                };
                if let Some((size, _)) = tier.held.remove(&oldest) {
                    tier.used -= size;
                }
                evict.push(oldest);
            }
            evict
        };
        for digest in evict {
            let _ = self.local.remove(&StoredObject::Blob(digest)).await;
        }
    }

    fn tier_forget(&self, digest: &Digest) {
        let mut tier = self.tier.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((size, _)) = tier.held.remove(digest) {
            tier.used -= size;
        }
    }

    /// Download a blob from the bucket into the tier. `Ok(false)` when the bucket does not have it.
    async fn download(&self, digest: &Digest) -> Result<bool, StoreError> {
        let key = self.keys.blob(digest);
        let got = match self.bucket.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(s3_error("get", &key, e)),
        };
        let mut write = self.local.begin_blob(digest).await?;
        if write.resumed() > 0 {
            write.restart().await?;
        }
        let mut body = got.into_stream();
        while let Some(chunk) = body.next().await {
            write.append(chunk.map_err(|e| s3_error("get", &key, e))?).await?;
        }
        write.sync().await?;
        write.commit(digest).await?;
        Ok(true)
    }
}

/// Exclusive use of one digest in the tier, released on drop.
struct DigestGuard {
    digest: Digest,
    busy: Arc<DashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for DigestGuard {
    fn drop(&mut self) {
        self._guard = None;
        self.busy.remove_if(&self.digest, |_, lock| Arc::strong_count(lock) == 1);
    }
}

/// A digest marked as being written, unmarked on drop.
struct WritingMark {
    digest: Digest,
    writing: Arc<DashMap<Digest, ()>>,
}

impl Drop for WritingMark {
    fn drop(&mut self) {
        self.writing.remove(&self.digest);
    }
}

/// A blob spooled to the tier, uploaded to the bucket by `commit`.
struct S3BlobWrite {
    spool: Box<dyn BlobWrite>,
    bucket: Arc<AmazonS3>,
    key: Path,
    tier: Arc<Mutex<Tier>>,
    /// Bytes in the spool.
    size: u64,
    _mark: WritingMark,
}

#[async_trait]
impl BlobWrite for S3BlobWrite {
    fn reader(&self) -> Arc<dyn ObjectReader> {
        self.spool.reader()
    }

    fn resumed(&self) -> u64 {
        self.spool.resumed()
    }

    fn validator(&self) -> Option<String> {
        self.spool.validator()
    }

    async fn set_validator(&mut self, validator: &str) -> Result<(), StoreError> {
        self.spool.set_validator(validator).await
    }

    async fn discard(self: Box<Self>) {
        self.spool.discard().await;
    }

    async fn restart(&mut self) -> Result<(), StoreError> {
        self.size = 0;
        self.spool.restart().await
    }

    async fn append(&mut self, data: Bytes) -> Result<(), StoreError> {
        let len = data.len() as u64;
        self.spool.append(data).await?;
        self.size += len;
        Ok(())
    }

    async fn sync(&mut self) -> Result<(), StoreError> {
        self.spool.sync().await
    }

    async fn commit(self: Box<Self>, digest: &Digest) -> Result<Version, StoreError> {
        let key = self.key.clone();
        let reader = self.spool.reader();
        // Another replica may have uploaded the same blob meanwhile: content-addressed, so it is the same bytes.
        let present = match self.bucket.head(&key).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(s3_error("head", &key, e)),
        };
        if !present {
            let mut size = 0u64;
            let upload = self.bucket.put_multipart(&key).await.map_err(|e| s3_error("upload", &key, e))?;
            let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            loop {
                let chunk = reader
                    .read_range(size, PART_SIZE)
                    .await
                    .map_err(|e| StoreError::io("read spool of", std::path::Path::new(key.as_ref()), &e))?;
                if chunk.is_empty() {
                    break;
                }
                size += chunk.len() as u64;
                parts.wait_for_capacity(PART_CONCURRENCY).await.map_err(|e| s3_error("upload", &key, e))?;
                parts.put(chunk);
            }
            parts.finish().await.map_err(|e| s3_error("upload", &key, e))?;
        }
        let S3BlobWrite { spool, tier, size, _mark, .. } = *self;
        let version = spool.commit(digest).await?;
        let mut tier = tier.lock().unwrap_or_else(|p| p.into_inner());
        tier.tick += 1;
        let tick = tier.tick;
        if let Some((old, _)) = tier.held.insert(digest.clone(), (size, tick)) {
            tier.used -= old;
        }
        tier.used += size;
        Ok(version)
    }
}

#[async_trait]
impl Storage for S3Storage {
    fn location(&self) -> &str {
        &self.location
    }

    fn shared(&self) -> bool {
        true
    }

    async fn scan(&self, found: mpsc::Sender<Inventory>) {
        // The tier: what this replica already holds locally, for its LRU bookkeeping (not sent: the bucket is the
        // record of what is cached).
        let (tx, mut rx) = mpsc::channel::<Inventory>(4);
        let local = self.local.clone();
        let held = async move {
            let mut held = Vec::new();
            while let Some(batch) = rx.recv().await {
                held.extend(batch.blobs.into_iter().map(|b| (b.digest, b.size)));
            }
            held
        };
        let ((), held) = futures_util::future::join(local.scan(tx), held).await;
        for (digest, size) in held {
            self.tier_use(&digest, size).await;
        }
        // The bucket, paged by the client: blobs go out as they are listed; manifests, records and access journals
        // are read after the listing, in that order.
        let mut batch = Inventory::default();
        let mut manifests = Vec::new();
        let mut records = Vec::new();
        let mut access = Vec::new();
        let mut listing = self.bucket.list(Some(&self.keys.root()));
        while let Some(item) = listing.next().await {
            let meta = match item {
                Ok(meta) => meta,
                Err(e) => {
                    tracing::warn!(error = %e, store = %self.location, "listing the bucket failed; the index is partial");
                    break;
                }
            };
            match self.keys.classify(&meta.location) {
                keys::Kind::Blob(digest) => {
                    batch.report.blobs += 1;
                    batch.report.blob_bytes += meta.size;
                    let version = Version(hash_etag(meta.e_tag.as_deref()));
                    let stored = meta.last_modified.timestamp();
                    batch.blobs.push(StoredBlob { digest, size: meta.size, stored, version });
                    if batch.blobs.len() >= SCAN_BATCH && !send(&found, &mut batch).await {
                        return;
                    }
                }
                keys::Kind::Manifest(digest) => manifests.push(digest),
                keys::Kind::Record => records.push(meta.location),
                keys::Kind::Access => access.push(meta.location),
                keys::Kind::Other => {}
            }
        }
        if !send(&found, &mut batch).await {
            return;
        }
        for digest in manifests {
            let Ok(Some((bytes, _))) = self.read_manifest(&digest).await else { continue };
            if Digest::of(digest.algorithm(), &bytes) != digest {
                tracing::warn!(manifest = %digest, "manifest in the bucket does not match its digest; ignored");
                continue;
            }
            let media_type = match self.checked_type(&digest, &bytes).await {
                Ok(Some(t)) => t.as_str().to_string(),
                Ok(None) => {
                    batch.report.quarantined += 1;
                    continue;
                }
                Err(e) => match super::ManifestType::of_content(&bytes) {
                    Some(t) => {
                        tracing::warn!(manifest = %digest, error = %e, "cannot check the manifest's media type; using its content's");
                        t.as_str().to_string()
                    }
                    None => continue,
                },
            };
            let links = ManifestLinks::parse_or_empty(&bytes);
            let meta = ManifestMeta { digest, media_type, size: bytes.len() as u64 };
            batch.manifests.push(StoredManifest { meta, links });
            batch.report.manifests += 1;
            if batch.manifests.len() >= SCAN_BATCH && !send(&found, &mut batch).await {
                return;
            }
        }
        if !send(&found, &mut batch).await {
            return;
        }
        for key in records {
            let Ok(got) = self.bucket.get(&key).await else { continue };
            let Ok(bytes) = got.bytes().await else { continue };
            if let Ok(record) = serde_json::from_slice::<RefRecord>(&bytes) {
                batch.records.push(record);
                batch.report.refs += 1;
            }
            if batch.records.len() >= SCAN_BATCH && !send(&found, &mut batch).await {
                return;
            }
        }
        for key in access {
            let Ok(got) = self.bucket.get(&key).await else { continue };
            let Ok(bytes) = got.bytes().await else { continue };
            batch.access.extend(super::fs::parse_journal(&String::from_utf8_lossy(&bytes)));
        }
        send(&found, &mut batch).await;
    }

    async fn open_blob(&self, digest: &Digest) -> Result<Option<OpenedBlob>, StoreError> {
        if let Some(opened) = self.local.open_blob(digest).await? {
            self.tier_use(digest, opened.size).await;
            return Ok(Some(opened));
        }
        if self.writing.contains_key(digest) {
            return Ok(None);
        }
        let _guard = self.hold(digest).await;
        // Downloaded by another task while this one waited?
        if let Some(opened) = self.local.open_blob(digest).await? {
            self.tier_use(digest, opened.size).await;
            return Ok(Some(opened));
        }
        // A write began meanwhile: its partial file is not to be touched.
        if self.writing.contains_key(digest) {
            return Ok(None);
        }
        if !self.download(digest).await? {
            return Ok(None);
        }
        let opened = self.local.open_blob(digest).await?;
        if let Some(opened) = &opened {
            self.tier_use(digest, opened.size).await;
        }
        Ok(opened)
    }

    async fn begin_blob(&self, digest: &Digest) -> Result<Box<dyn BlobWrite>, StoreError> {
        // A download of the same digest into the tier finishes first; then the write is marked, and readers stop
        // waiting for it.
        let guard = self.hold(digest).await;
        self.writing.insert(digest.clone(), ());
        let mark = WritingMark { digest: digest.clone(), writing: self.writing.clone() };
        drop(guard);
        let spool = self.local.begin_blob(digest).await?;
        let size = spool.resumed();
        let (bucket, key, tier) = (self.bucket.clone(), self.keys.blob(digest), self.tier.clone());
        Ok(Box::new(S3BlobWrite { spool, bucket, key, tier, size, _mark: mark }))
    }

    async fn read_manifest(&self, digest: &Digest) -> Result<Option<(Bytes, Version)>, StoreError> {
        let key = self.keys.manifest(digest);
        match self.bucket.get(&key).await {
            Ok(got) => got.bytes().await.map(|b| Some((b, MANIFEST_VERSION))).map_err(|e| s3_error("get", &key, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error("get", &key, e)),
        }
    }

    async fn manifest_version(&self, _digest: &Digest) -> Result<Option<Version>, StoreError> {
        // A manifest in the bucket is content-addressed and was verified when read: its hot bytes stay good without a
        // request to the bucket per read (one replica's removal is seen by the others when their index drops it).
        Ok(Some(MANIFEST_VERSION))
    }

    async fn read_manifest_type(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        let Some((bytes, _)) = self.read_manifest(digest).await? else {
            return Ok(None);
        };
        if Digest::of(digest.algorithm(), &bytes) != *digest {
            return Ok(None);
        }
        Ok(self.checked_type(digest, &bytes).await?.map(|t| t.as_str().to_string()))
    }

    async fn put_manifest(&self, digest: &Digest, media_type: &str, bytes: Bytes) -> Result<(), StoreError> {
        let type_key = self.keys.manifest_type(digest);
        self.bucket
            .put(&type_key, PutPayload::from(media_type.to_string()))
            .await
            .map_err(|e| s3_error("put", &type_key, e))?;
        let key = self.keys.manifest(digest);
        self.bucket.put(&key, PutPayload::from(bytes)).await.map_err(|e| s3_error("put", &key, e))?;
        Ok(())
    }

    async fn put_record(&self, record: &RefRecord) -> Result<(), StoreError> {
        let key = self.keys.record(&record.key());
        let json = serde_json::to_vec_pretty(record).unwrap_or_default();
        self.bucket.put(&key, PutPayload::from(json)).await.map_err(|e| s3_error("put", &key, e))?;
        Ok(())
    }

    async fn read_record(&self, key: &RefKey) -> Result<Option<RefRecord>, StoreError> {
        let path = self.keys.record(key);
        let bytes = match self.bucket.get(&path).await {
            Ok(got) => got.bytes().await.map_err(|e| s3_error("get", &path, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(s3_error("get", &path, e)),
        };
        // A record for another key (a hash collision of the key name) or an unreadable one is no record.
        Ok(serde_json::from_slice::<RefRecord>(&bytes).ok().filter(|r| &r.key() == key))
    }

    async fn remove(&self, object: &StoredObject) -> Result<(), StoreError> {
        let mut keys = vec![self.keys.object(object)];
        match object {
            StoredObject::Blob(d) => {
                self.tier_forget(d);
                self.local.remove(object).await?;
            }
            StoredObject::Manifest(d) => keys.push(self.keys.manifest_type(d)),
            StoredObject::Record(_) => {}
        }
        for key in keys {
            match self.bucket.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(s3_error("delete", &key, e)),
            }
        }
        Ok(())
    }

    async fn quarantine(&self, object: &StoredObject, version: Option<Version>, why: &str) -> Result<bool, StoreError> {
        // The damage was seen in the tier's copy (or the bucket's, downloaded into it): drop both, keep the
        // bucket's bytes aside for inspection.
        let key = self.keys.object(object);
        if let StoredObject::Blob(d) = object {
            self.tier_forget(d);
            self.local.quarantine(object, version, why).await?;
        }
        let aside = self.keys.quarantine(&key);
        match self.bucket.copy(&key, &aside).await {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(s3_error("copy", &key, e)),
        }
        tracing::warn!(object = %object, moved_to = %aside, "quarantined in the bucket: {why}");
        match self.bucket.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(s3_error("delete", &key, e)),
        }
    }

    async fn record_access(&self, entries: Vec<AccessEntry>) -> Result<(), StoreError> {
        let text = super::fs::encode_journal(&entries);
        if text.is_empty() {
            return Ok(());
        }
        let key = self.keys.access(&self.replica, &format!("{:020}", super::records::now_ms()));
        self.bucket.put(&key, PutPayload::from(text)).await.map_err(|e| s3_error("put", &key, e))?;
        Ok(())
    }

    async fn rewrite_access(&self, entries: Vec<AccessEntry>) -> Result<(), StoreError> {
        let mine = self.keys.access_dir(&self.replica);
        let old: Vec<Path> =
            self.bucket.list(Some(&mine)).filter_map(|m| async move { m.ok().map(|m| m.location) }).collect().await;
        self.record_access(entries).await?;
        for key in old {
            let _ = self.bucket.delete(&key).await;
        }
        Ok(())
    }

    async fn capacity(&self) -> Option<Capacity> {
        // The bucket has no notion of free space; the spool and the tier need the local disk.
        self.local.capacity().await
    }

    async fn probe_writable(&self) -> bool {
        let key = self.keys.probe(&self.replica);
        let ok = self.bucket.put(&key, PutPayload::from_static(b"probe")).await.is_ok();
        let _ = self.bucket.delete(&key).await;
        ok && self.local.probe_writable().await
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

/// Send the batch gathered so far (and start a new one); false when the receiver is gone (the scan stops).
async fn send(found: &mpsc::Sender<Inventory>, batch: &mut Inventory) -> bool {
    let full = std::mem::take(batch);
    found.send(full).await.is_ok()
}

/// A version for a bucket object: a hash of its ETag (or 0 when it has none).
fn hash_etag(etag: Option<&str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    etag.unwrap_or_default().hash(&mut h);
    h.finish()
}
