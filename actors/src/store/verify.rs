//! Hashing a committed blob's stored copy whole before part of it is served: a range of a blob whose stored version
//! is not the one verified (it changed at rest, or nothing was verified since start) is served only once the whole
//! copy matches its digest. The bytes are read through the store like any client's and hashed on the blocking pool,
//! never on an HTTP worker; concurrent requests for the same digest and version share one hash (`Verifications`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, Shared};
use futures_util::FutureExt;

use super::backend::{ObjectReader, OpenedBlob};
use super::records::Version;
use crate::digest::{Digest, Digester};

/// How much is read and hashed at once.
const CHUNK: usize = 1024 * 1024;

/// What hashing a stored copy whole found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The copy opened matches the digest, and was not changed while it was read.
    Intact,
    /// Its bytes do not match the digest, or it ends before its size.
    Corrupt,
    /// It changed while it was read (now this version).
    Changed(Version),
    /// It could not be read.
    Unreadable(String),
    /// Nothing is known: the hash itself could not run to its end (its task was cancelled, as at shutdown).
    Unknown(String),
}

type Pending = Shared<BoxFuture<'static, Verdict>>;

/// The hashes running now, by digest and version (the version's bit the index keeps for itself cleared).
#[derive(Default)]
pub(crate) struct Verifications(Mutex<HashMap<(Digest, u64), Pending>>);

impl std::fmt::Debug for Verifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifications")
    }
}

impl Verifications {
    /// Hash `opened` (a copy of `digest`) whole, or wait for the hash of the same copy another request started. The
    /// hash runs as a task of its own, so it finishes (and is forgotten) even if every request waiting for it goes.
    pub(crate) fn verify(self: &Arc<Self>, digest: &Digest, opened: &OpenedBlob) -> Pending {
        let key = (digest.clone(), opened.version.0 & !1);
        let mut running = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pending) = running.get(&key) {
            return pending.clone();
        }
        let (all, reader, size, digest) = (self.clone(), opened.reader.clone(), opened.size, digest.clone());
        let task = tokio::spawn(async move {
            let verdict = hash_whole(&*reader, size, &digest).await;
            all.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&(digest, key.1));
            verdict
        });
        let pending = async move { task.await.unwrap_or_else(|e| Verdict::Unknown(e.to_string())) }.boxed().shared();
        running.insert(key, pending.clone());
        pending
    }

    /// Hashes running now (tests).
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Read `size` bytes of `object` and hash them on the blocking pool; then ask whether the copy changed meanwhile.
pub(crate) async fn hash_whole(object: &dyn ObjectReader, size: u64, digest: &Digest) -> Verdict {
    let read = async {
        let mut hasher = Digester::new(digest.algorithm());
        let mut pos = 0;
        while pos < size {
            let len = (size - pos).min(CHUNK as u64) as usize;
            let chunk = object.read_range(pos, len).await.map_err(|e| Verdict::Unreadable(e.to_string()))?;
            if chunk.is_empty() {
                return Err(Verdict::Corrupt);
            }
            pos += chunk.len() as u64;
            hasher = tokio::task::spawn_blocking(move || {
                hasher.update(&chunk);
                hasher
            })
            .await
            .map_err(|e| Verdict::Unknown(e.to_string()))?;
        }
        Ok(hasher.finalize())
    };
    let hashed = read.await;
    match object.changed() {
        Ok(Some(now)) => return Verdict::Changed(now),
        Ok(None) => {}
        Err(e) => return Verdict::Unreadable(e.to_string()),
    }
    match hashed {
        Ok(found) if &found == digest => Verdict::Intact,
        Ok(_) => Verdict::Corrupt,
        Err(verdict) => verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::tests::Held;
    use std::sync::atomic::Ordering;

    fn opened(held: &Arc<Held>, version: u64) -> OpenedBlob {
        OpenedBlob { reader: held.clone(), size: held.bytes.len() as u64, version: Version(version) }
    }

    #[tokio::test]
    async fn requests_for_the_same_copy_share_one_hash() {
        let held = Held::new(vec![3u8; 3 * CHUNK + 10]);
        let digest = Digest::sha256_of(&held.bytes);
        let all = Arc::new(Verifications::default());
        let first = all.verify(&digest, &opened(&held, 8));
        // The same version, as the index sees it (its lowest bit is the index's).
        let second = all.verify(&digest, &opened(&held, 9));
        assert_eq!(all.running(), 1);
        assert_eq!((first.await, second.await), (Verdict::Intact, Verdict::Intact));
        assert_eq!(held.read.load(Ordering::Relaxed), held.bytes.len() as u64, "read once");
        assert_eq!(all.running(), 0, "forgotten once done");
        // Another version is another hash.
        assert_eq!(all.verify(&digest, &opened(&held, 10)).await, Verdict::Intact);
        assert_eq!(held.read.load(Ordering::Relaxed), 2 * held.bytes.len() as u64);
    }

    #[tokio::test]
    async fn a_copy_is_found_corrupt_short_or_changed() {
        let want = vec![1u8; CHUNK + 5];
        let digest = Digest::sha256_of(&want);
        let mut other = want.clone();
        other[CHUNK] = 2;
        assert_eq!(hash_whole(&*Held::new(other), want.len() as u64, &digest).await, Verdict::Corrupt);
        let short = Held::new(want[..CHUNK].to_vec());
        assert_eq!(hash_whole(&*short, want.len() as u64, &digest).await, Verdict::Corrupt);
        let changed = Held::new(want.clone());
        changed.change(Version(99));
        assert_eq!(hash_whole(&*changed, want.len() as u64, &digest).await, Verdict::Changed(Version(99)));
        assert_eq!(hash_whole(&*Held::new(want.clone()), want.len() as u64, &digest).await, Verdict::Intact);
    }
}
