//! Writing one blob through any backend: the backend's `Upload`, the resume and validator handling every backend
//! shares, and the hashing that decides whether the bytes may ever be committed. A `BlobWriter` becomes a
//! `CheckedBlob` only when the bytes hash to the digest (readers may then be told the bytes are good), that becomes
//! a `VerifiedBlob` only once the bytes are durable, and only a `VerifiedBlob` can be committed, so an unverified
//! or unsynced blob cannot reach its final name by construction.
//! A write that resumes the bytes of an earlier attempt hashes them first, so the digest covers the whole blob.
//! Bytes that fail verification are discarded; bytes of a write that just stopped are kept for the next attempt,
//! with the upstream's validator (`ETag`) of the object they are part of, so that the next attempt asks for the rest
//! only if the object is still the same (`If-Range`). The validator is stored beside the upload (`keys::validator`)
//! and forgotten when the write ends.

use std::sync::Arc;

use bytes::Bytes;

use crate::digest::{Digest, Digester};
use crate::error::StoreError;
use crate::store::backend::{ObjectReader, Patch, Upload};
use crate::store::records::Version;
use crate::store::storage::{Begun, Storage};

/// How much of a resumed write is read back at once to rebuild the hash state.
const RESUME_CHUNK: usize = 1024 * 1024;

/// A blob being written and hashed. See the module documentation.
pub struct BlobWriter {
    digest: Digest,
    inner: Box<dyn Upload>,
    storage: Arc<dyn Storage>,
    /// The validator an earlier attempt recorded, or the one recorded by this one.
    validator: Option<String>,
    /// `None` only if a hashing task died, which fails verification.
    hasher: Option<Digester>,
    written: u64,
}

/// Why `BlobWriter::finish` gave no verified blob.
#[derive(Debug)]
pub enum FinishError {
    /// The bytes hash to this other digest.
    Mismatch(Digest),
    /// The store could not make them durable.
    Store(StoreError),
}

/// A complete blob whose bytes match its digest, ready to be committed by the cache actor.
pub struct VerifiedBlob {
    digest: Digest,
    size: u64,
    inner: Box<dyn Upload>,
    storage: Arc<dyn Storage>,
    /// A validator was recorded beside the bytes: forgotten once they are committed.
    validator: bool,
}

impl BlobWriter {
    /// A writer over `inner`, with the bytes it resumes hashed already.
    pub(crate) async fn new(digest: Digest, storage: Arc<dyn Storage>, begun: Begun) -> Result<BlobWriter, StoreError> {
        let Begun { upload: inner, validator } = begun;
        let mut hasher = Digester::new(digest.algorithm());
        let resumed = inner.resumed();
        let reader = inner.reader();
        let mut pos = 0;
        while pos < resumed {
            let chunk = reader
                .read_range(pos, RESUME_CHUNK.min((resumed - pos) as usize))
                .await
                .map_err(|e| StoreError::Task { op: "read resumed bytes", detail: e.to_string() })?;
            if chunk.is_empty() {
                break;
            }
            pos += chunk.len() as u64;
            hasher = tokio::task::spawn_blocking(move || {
                hasher.update(&chunk);
                hasher
            })
            .await
            .map_err(|e| StoreError::Task { op: "hash resumed bytes", detail: e.to_string() })?;
        }
        Ok(BlobWriter { digest, inner, storage, validator, hasher: Some(hasher), written: pos })
    }

    /// The bytes an earlier attempt left are the whole blob already: they hash to the digest (an attempt stopped
    /// after its last byte arrived, before it was committed). Nothing more needs fetching.
    pub fn resumed_whole(&self) -> bool {
        self.written > 0 && self.hasher.clone().is_some_and(|h| h.finalize() == self.digest)
    }

    /// Bytes an earlier attempt left, resumed (and hashed) by this writer.
    pub fn resumed(&self) -> u64 {
        self.inner.resumed().min(self.written)
    }

    /// The validator (`ETag`) of the object an earlier attempt was fetching, if it recorded one.
    pub fn validator(&self) -> Option<String> {
        self.validator.clone()
    }

    /// Record the upstream's validator of the object being fetched.
    pub async fn set_validator(&mut self, validator: &str) -> Result<(), StoreError> {
        self.validator = Some(validator.to_string());
        self.storage.set_validator(&self.digest, validator).await
    }

    /// Delete the bytes written so far (the upstream no longer has the object).
    pub async fn discard(self) {
        self.inner.abort().await;
        if self.validator.is_some() {
            self.storage.clear_validator(&self.digest).await;
        }
    }

    /// Start over from byte 0 (the upstream sent the whole object instead of the rest).
    pub async fn restart(&mut self) -> Result<(), StoreError> {
        self.inner.truncate().await?;
        self.hasher = Some(Digester::new(self.digest.algorithm()));
        self.written = 0;
        Ok(())
    }

    /// Bytes appended so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// A reader of what has been appended, for the transfer's followers.
    pub fn reader(&self) -> Arc<dyn ObjectReader> {
        self.inner.reader()
    }

    /// Where pieces of the blob fetched ahead of the appends are written, if the backend keeps them (`Patch`).
    pub fn patcher(&self) -> Option<Arc<dyn Patch>> {
        self.inner.patcher()
    }

    /// The next `len` bytes were written by a piece (`patcher`): read them back and hash them, as if appended. So the
    /// digest covers every byte, in order, whoever fetched it.
    pub async fn adopt(&mut self, len: u64) -> Result<(), StoreError> {
        let reader = self.inner.reader();
        let (mut pos, end) = (self.written, self.written + len);
        while pos < end {
            let chunk = reader
                .read_range(pos, RESUME_CHUNK.min((end - pos) as usize))
                .await
                .map_err(|e| StoreError::Task { op: "read a piece fetched ahead", detail: e.to_string() })?;
            if chunk.is_empty() {
                return Err(StoreError::Task { op: "read a piece fetched ahead", detail: format!("nothing at {pos}") });
            }
            pos += chunk.len() as u64;
            let hashing = self.hasher.take().map(|mut h| {
                tokio::task::spawn_blocking(move || {
                    h.update(&chunk);
                    h
                })
            });
            if let Some(task) = hashing {
                self.hasher = task.await.ok();
            }
        }
        self.inner.skip(len);
        self.written = end;
        Ok(())
    }

    /// Append bytes; they are hashed on the blocking pool while the backend writes them.
    pub async fn append(&mut self, data: Bytes) -> Result<(), StoreError> {
        let len = data.len() as u64;
        let hashing = self.hasher.take().map(|mut h| {
            let data = data.clone();
            tokio::task::spawn_blocking(move || {
                h.update(&data);
                h
            })
        });
        let written = self.inner.append(data).await;
        if let Some(task) = hashing {
            self.hasher = task.await.ok();
        }
        written?;
        self.written += len;
        Ok(())
    }

    /// Check the digest and make the bytes durable.
    pub async fn finish(self) -> Result<VerifiedBlob, FinishError> {
        self.verify().await?.sync().await.map_err(FinishError::Store)
    }

    /// Check the digest. The bytes are whole and right, so readers may be told so, but not durable yet: only
    /// `CheckedBlob::sync` makes a blob that can be committed.
    pub async fn verify(mut self) -> Result<CheckedBlob, FinishError> {
        let actual = match self.hasher.take() {
            Some(h) => h.finalize(),
            None => return Err(FinishError::Store(StoreError::Task { op: "hash", detail: "hashing failed".into() })),
        };
        if actual != self.digest {
            self.inner.abort().await;
            if self.validator.is_some() {
                self.storage.clear_validator(&self.digest).await;
            }
            return Err(FinishError::Mismatch(actual));
        }
        Ok(CheckedBlob {
            digest: self.digest,
            size: self.written,
            inner: self.inner,
            storage: self.storage,
            validator: self.validator.is_some(),
        })
    }
}

/// A blob whose bytes hash to its digest, not yet made durable. See `BlobWriter::verify`.
pub struct CheckedBlob {
    digest: Digest,
    size: u64,
    inner: Box<dyn Upload>,
    storage: Arc<dyn Storage>,
    /// A validator was recorded beside the bytes: forgotten once they are committed.
    validator: bool,
}

impl CheckedBlob {
    /// Its size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Make the bytes durable (an fsync on a disk), so the blob can be committed.
    pub async fn sync(mut self) -> Result<VerifiedBlob, StoreError> {
        self.inner.sync().await?;
        let CheckedBlob { digest, size, inner, storage, validator } = self;
        Ok(VerifiedBlob { digest, size, inner, storage, validator })
    }
}

impl VerifiedBlob {
    /// The blob.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Its size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Publish it under its digest (the cache actor's job).
    pub(crate) async fn commit(self) -> Result<Version, StoreError> {
        let version = self.inner.complete().await?;
        if self.validator {
            self.storage.clear_validator(&self.digest).await;
        }
        Ok(version)
    }
}
