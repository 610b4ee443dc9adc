//! Writing one blob through any backend: the backend's `BlobWrite` plus the hashing that decides whether the bytes
//! may ever be committed. A `BlobWriter` becomes a `VerifiedBlob` only when the bytes hash to the digest, and only a
//! `VerifiedBlob` can be committed, so an unverified blob cannot reach its final name by construction. Dropping
//! either discards the bytes.

use std::sync::Arc;

use bytes::Bytes;

use crate::digest::{Digest, Digester};
use crate::error::StoreError;
use crate::store::backend::{BlobWrite, ObjectReader};
use crate::store::records::Version;

/// A blob being written and hashed. See the module documentation.
pub struct BlobWriter {
    digest: Digest,
    inner: Box<dyn BlobWrite>,
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
    inner: Box<dyn BlobWrite>,
}

impl BlobWriter {
    pub(crate) fn new(digest: Digest, inner: Box<dyn BlobWrite>) -> BlobWriter {
        let hasher = Some(Digester::new(digest.algorithm()));
        BlobWriter { digest, inner, hasher, written: 0 }
    }

    /// Bytes appended so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// A reader of what has been appended, for the transfer's followers.
    pub fn reader(&self) -> Arc<dyn ObjectReader> {
        self.inner.reader()
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
    pub async fn finish(mut self) -> Result<VerifiedBlob, FinishError> {
        let actual = match self.hasher.take() {
            Some(h) => h.finalize(),
            None => return Err(FinishError::Store(StoreError::Task { op: "hash", detail: "hashing failed".into() })),
        };
        if actual != self.digest {
            return Err(FinishError::Mismatch(actual));
        }
        self.inner.sync().await.map_err(FinishError::Store)?;
        Ok(VerifiedBlob { digest: self.digest, size: self.written, inner: self.inner })
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
        self.inner.commit(&self.digest).await
    }
}
