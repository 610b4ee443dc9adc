//! Writing one blob: a temporary file that hashes what it is given, and becomes the blob only through `commit`.
//! Dropping a writer without committing deletes its temporary file (readers that still hold it open keep reading
//! their copy until they see the transfer's outcome).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use crate::digest::{Digest, Digester};
use crate::error::StoreError;
use crate::store::{sync_dir, tmp_path, Layout};
use crate::transfer::{Transfer, TransferPublisher};

/// A blob being written. See the module documentation.
#[derive(Debug)]
pub struct BlobWriter {
    digest: Digest,
    tmp: PathBuf,
    file: File,
    hasher: Option<Digester>,
    written: u64,
    committed: bool,
}

/// What the leader of a blob fetch holds: the writer, the publisher its readers follow, and a reader handle.
pub struct BlobLease {
    /// Where the bytes go.
    pub writer: BlobWriter,
    /// How readers learn of progress.
    pub publisher: TransferPublisher,
    /// The readers' handle (hand it to waiting clients).
    pub transfer: Transfer,
}

impl BlobWriter {
    pub(crate) fn create(layout: &Layout, digest: &Digest) -> Result<(BlobWriter, File), StoreError> {
        let tmp = tmp_path(layout, "blob");
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| StoreError::io("create", &tmp, &e))?;
        let reader = File::open(&tmp).map_err(|e| StoreError::io("create", &tmp, &e))?;
        let hasher = Some(Digester::new(digest.algorithm()));
        Ok((BlobWriter { digest: digest.clone(), tmp, file, hasher, written: 0, committed: false }, reader))
    }

    /// The blob being written.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Whether the filesystem has room for `more` bytes plus the free-space reserve.
    pub fn has_room_for(&self, more: u64) -> bool {
        super::has_room_for(&self.tmp, more)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Append bytes (blocking). When this returns, readers of the file can see them.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.file.write_all(data).map_err(|e| StoreError::io("write", &self.tmp, &e))?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(data);
        }
        self.written += data.len() as u64;
        Ok(())
    }

    /// Check the bytes against the digest. `Err(actual)` on a mismatch.
    pub fn verify(&mut self) -> Result<(), Digest> {
        let actual = match self.hasher.take() {
            Some(h) => h.finalize(),
            None => return Err(Digest::sha256_of(b"writer already verified")),
        };
        if actual == self.digest {
            Ok(())
        } else {
            Err(actual)
        }
    }

    /// fsync, rename into place, fsync the directory. Only for verified writers.
    pub(crate) fn commit(mut self, layout: &Layout) -> Result<(Digest, u64), StoreError> {
        debug_assert!(self.hasher.is_none(), "commit of an unverified blob");
        self.file.sync_all().map_err(|e| StoreError::io("fsync", &self.tmp, &e))?;
        let dest = layout.blob(&self.digest);
        fs::rename(&self.tmp, &dest).map_err(|e| StoreError::io("rename", &dest, &e))?;
        self.committed = true;
        if let Some(parent) = dest.parent() {
            sync_dir(parent)?;
        }
        Ok((self.digest.clone(), self.written))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}
