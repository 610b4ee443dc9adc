//! The scrub: every blob in the cache is hashed again in the background, pass after pass, at a bounded rate, so
//! damage that no request happened to read (bit rot, a bad disk) is found and the blob fetched again on its next
//! request. It reads like any other reader (through the store) and changes nothing itself: what it finds goes to the
//! cache actor as `BlobVerified` or `ReportDamage`.

use std::time::{Duration, Instant};

use actix::Addr;

use super::CacheActor;
use crate::digest::{Digest, Digester};
use crate::error::StoreError;
use crate::messages::{BlobVerified, Fault, ReportDamage};
use crate::store::{Store, StoredObject, Version};

/// How much of a blob is read and hashed at once.
const CHUNK: usize = 1024 * 1024;

/// When and how fast the scrub runs.
#[derive(Debug, Clone, Copy)]
pub struct ScrubSettings {
    /// Time from the start of one pass to the start of the next (`scrubInterval`); `None` turns the scrub off.
    pub interval: Option<Duration>,
    /// Bytes read per second at most, so the scrub never competes seriously with clients for the disk.
    pub rate: u64,
}

impl Default for ScrubSettings {
    fn default() -> Self {
        ScrubSettings { interval: Some(Duration::from_secs(24 * 3600)), rate: 32 * 1024 * 1024 }
    }
}

/// Run passes until the actor goes away: the first right after start, then one every `interval`.
pub(super) async fn run(store: Store, cache: Addr<CacheActor>, settings: ScrubSettings) {
    let Some(interval) = settings.interval else {
        return;
    };
    loop {
        let started = Instant::now();
        let (checked, damaged) = pass(&store, &cache, settings.rate).await;
        if !cache.connected() {
            return;
        }
        if damaged > 0 {
            tracing::warn!(checked, damaged, "scrub pass found damaged blobs; they will be fetched again");
        } else {
            tracing::debug!(checked, "scrub pass found every cached blob intact");
        }
        tokio::time::sleep(interval.saturating_sub(started.elapsed()).max(Duration::from_millis(100))).await;
    }
}

/// One pass over the blobs indexed now; returns how many were checked and how many were damaged.
async fn pass(store: &Store, cache: &Addr<CacheActor>, rate: u64) -> (usize, usize) {
    let (mut checked, mut damaged) = (0, 0);
    for (digest, size, _) in store.index().blobs() {
        if store.index().blob(&digest).is_none() {
            continue;
        }
        checked += 1;
        match check(store, &digest, size, rate).await {
            Found::Intact(version) => cache.do_send(BlobVerified { digest, version }),
            // Out of descriptors or memory: nothing is known about the blob; the next pass looks again.
            Found::Unknown => {}
            Found::Damaged(fault, version) => {
                damaged += 1;
                let object = StoredObject::Blob(digest);
                if cache.send(ReportDamage { object, fault, version }).await.is_err() {
                    break;
                }
            }
        }
    }
    (checked, damaged)
}

/// What one check found.
enum Found {
    Intact(Version),
    Damaged(Fault, Option<Version>),
    /// The server could not look (out of file descriptors or memory).
    Unknown,
}

/// Hash one blob at no more than `rate` bytes per second.
async fn check(store: &Store, digest: &Digest, size: u64, rate: u64) -> Found {
    match hash(store, digest, size, rate).await {
        Ok(version) => Found::Intact(version),
        Err(None) => Found::Unknown,
        Err(Some((fault, version))) => Found::Damaged(fault, version),
    }
}

async fn hash(
    store: &Store,
    digest: &Digest,
    size: u64,
    rate: u64,
) -> Result<Version, Option<(Fault, Option<Version>)>> {
    let opened = match store.open_blob(digest).await {
        Ok(Some(opened)) => opened,
        Ok(None) => return Err(Some((Fault::Missing, None))),
        Err(StoreError::Exhausted { .. }) => return Err(None),
        Err(e) => return Err(Some((Fault::Unreadable(e.to_string()), None))),
    };
    let version = Some(opened.version);
    if opened.size != size {
        return Err(Some((Fault::WrongSize { found: opened.size, expected: size }, version)));
    }
    let mut hasher = Digester::new(digest.algorithm());
    let mut pos = 0;
    while pos < opened.size {
        let chunk = match opened.reader.read_range(pos, CHUNK).await {
            Ok(chunk) if !chunk.is_empty() => chunk,
            Ok(_) => return Err(Some((Fault::WrongSize { found: pos, expected: size }, version))),
            Err(e) => return Err(Some((Fault::Unreadable(e.to_string()), version))),
        };
        pos += chunk.len() as u64;
        let pause = Duration::from_secs_f64(chunk.len() as f64 / rate.max(1) as f64);
        hasher = tokio::task::spawn_blocking(move || {
            hasher.update(&chunk);
            hasher
        })
        .await
        .map_err(|_| None)?;
        tokio::time::sleep(pause).await;
    }
    if &hasher.finalize() == digest {
        Ok(opened.version)
    } else {
        Err(Some((Fault::Corrupt, version)))
    }
}
