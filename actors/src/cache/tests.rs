//! Cache actor tests over the in-memory store: the order of reference writes, the scrub, access times.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;

use super::{CacheActor, ScrubSettings, Touches};
use crate::claim::{BlobClaim, ClaimReply};
use crate::digest::Digest;
use crate::messages::{
    AwaitBlob, ClaimBlob, CommitBlob, Flush, Invalidate, KeepGoneTag, LinkReference, PutManifest, Release, ReleaseBlob,
};
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::reference::{ImageKey, Reference};
use crate::store::memory::{MemoryStorage, SharedMemory};
use crate::store::{RefKey, Store, StoredObject};

struct Rig {
    cache: Addr<CacheActor>,
    memory: Arc<MemoryStorage>,
    store: Store,
    touches: Arc<Touches>,
}

fn rig(scrub: ScrubSettings) -> Rig {
    rig_over(SharedMemory::default(), scrub)
}

/// A cache actor over what `memory` already holds (its index loads in the background).
fn rig_over(memory: SharedMemory, scrub: ScrubSettings) -> Rig {
    let store = Store::new(Arc::new(memory.clone()), 0);
    let touches = Arc::new(Touches::default());
    let cache = CacheActor::new(store.clone(), touches.clone(), scrub, Arc::new(Metrics::new())).start();
    Rig { cache, memory: memory.0, store, touches }
}

fn no_scrub() -> ScrubSettings {
    ScrubSettings { interval: None, ..ScrubSettings::default() }
}

fn image() -> ImageKey {
    ImageKey::new("docker.io".parse().expect("ns"), "library/app".parse().expect("repo"))
}

fn tag(t: &str) -> Reference {
    t.parse().expect("tag")
}

fn manifest(n: u8) -> (Digest, Bytes) {
    let bytes = Bytes::from(format!(r#"{{"schemaVersion":2,"n":{n}}}"#));
    (Digest::sha256_of(&bytes), bytes)
}

async fn put(r: &Rig, reference: &str, n: u8) -> Digest {
    let (digest, bytes) = manifest(n);
    let media_type = "application/vnd.oci.image.manifest.v1+json".to_string();
    let msg = PutManifest { image: image(), reference: tag(reference), digest: digest.clone(), media_type, bytes };
    r.cache.send(msg).await.expect("mailbox").expect("stored");
    digest
}

async fn commit(r: &Rig, bytes: &'static [u8]) -> Digest {
    let digest = Digest::sha256_of(bytes);
    let mut writer = r.store.begin_blob(&digest).await.expect("begin");
    writer.append(Bytes::from_static(bytes)).await.expect("append");
    let blob = writer.finish().await.map_err(|_| "finish").expect("verified");
    r.cache.send(CommitBlob { blob }).await.expect("mailbox").expect("committed");
    digest
}

#[actix_rt::test]
async fn a_relinked_or_invalidated_tag_is_stored_as_the_last_decision_left_it() {
    let r = rig(no_scrub());
    let a = put(&r, "t", 1).await;
    let b = put(&r, "other", 2).await;
    // Relink t to b, invalidate it, link it again to a, and relink to b — sent without waiting, as a burst.
    let link = |d: &Digest| LinkReference { image: image(), reference: tag("t"), digest: d.clone() };
    let key = RefKey { image: image(), reference: tag("t") };
    let burst = vec![r.cache.send(link(&b)), r.cache.send(link(&a))];
    let invalidate = r.cache.send(Invalidate { key: key.clone() });
    for reply in futures_util::future::join_all(burst).await {
        reply.expect("mailbox").expect("linked");
    }
    assert!(invalidate.await.expect("mailbox").expect("invalidated"), "the tag existed");
    let stored: Vec<_> = r.memory.records().into_iter().filter(|rec| rec.key() == key).collect();
    assert!(stored.is_empty(), "the invalidated tag stays gone in the store: {stored:?}");
    assert!(r.store.index().resolve(&key).is_none());
    r.cache.send(link(&b)).await.expect("mailbox").expect("linked");
    let stored: Vec<_> = r.memory.records().into_iter().filter(|rec| rec.key() == key).collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].digest, b, "the relinked tag names the new manifest in the store");
    assert_eq!(r.store.index().resolve(&key).map(|m| m.digest), Some(b));
}

#[actix_rt::test]
async fn a_gone_tag_starts_its_ttl_again_only_while_it_names_the_manifest_served() {
    let r = rig(no_scrub());
    let a = put(&r, "t", 1).await;
    let b = put(&r, "other", 2).await;
    let key = RefKey { image: image(), reference: tag("t") };
    let checked = || r.store.index().resolve_checked(&key).map(|(meta, at)| (meta.digest, at)).expect("cached");
    let (_, first) = checked();
    let keep = |d: &Digest| KeepGoneTag { image: image(), reference: tag("t"), digest: d.clone() };
    tokio::time::sleep(Duration::from_millis(20)).await;
    r.cache.send(keep(&a)).await.expect("mailbox");
    let (digest, again) = checked();
    assert_eq!(digest, a, "the tag still names what it named");
    assert!(again > first, "its confirmation time starts again: {first} -> {again}");
    // A tag relinked since the stale serve keeps its own digest and time.
    tokio::time::sleep(Duration::from_millis(20)).await;
    r.cache.send(keep(&b)).await.expect("mailbox");
    assert_eq!(checked(), (a.clone(), again), "a different digest changes nothing");
    let stored: Vec<_> = r.memory.records().into_iter().filter(|rec| rec.key() == key).collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].digest, a, "the store's record is untouched");
}

#[actix_rt::test]
async fn the_scrub_finds_damaged_and_missing_blobs_and_the_cache_forgets_them() {
    let r = rig(ScrubSettings { interval: Some(Duration::from_millis(100)), rate: u64::MAX / 4 });
    let good = commit(&r, b"a good blob").await;
    let damaged = commit(&r, b"a blob that rots").await;
    let lost = commit(&r, b"a blob that vanishes").await;
    r.memory.damage_blob(&damaged, b"a blob that r0ts");
    r.memory.lose_blob(&lost);
    for _ in 0..60 {
        if r.store.index().blob(&damaged).is_none() && r.store.index().blob(&lost).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(r.store.index().blob(&damaged).is_none(), "a damaged blob is un-indexed by a later pass");
    assert!(r.memory.blob_bytes(&damaged).is_none(), "and moved out of the store");
    assert!(r.store.index().blob(&lost).is_none(), "a missing blob is un-indexed");
    assert!(r.store.index().blob(&good).is_some_and(|b| b.verified), "an intact blob stays, verified");
}

#[actix_rt::test]
async fn access_times_reach_the_store_in_batches() {
    let r = rig(no_scrub());
    let digest = commit(&r, b"served blob").await;
    let before = r.store.index().blobs()[0].2;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..100 {
        r.touches.blob(&digest);
    }
    r.cache.send(Flush).await.expect("mailbox");
    let after = r.store.index().blobs()[0].2;
    assert!(after > before, "the index has the new access time ({before} -> {after})");
    let inventory = crate::store::inventory(&SharedMemory(r.memory.clone())).await;
    let recorded: Vec<_> = inventory.access.iter().filter(|e| e.object == StoredObject::Blob(digest.clone())).collect();
    assert_eq!(recorded.len(), 1, "a hundred touches, one entry: {recorded:?}");
    assert_eq!(recorded[0].at, after);
}

#[actix_rt::test]
async fn what_is_stored_is_indexed_in_the_background_and_a_tag_of_a_missing_manifest_is_removed() {
    let memory = SharedMemory::default();
    let (digest, bytes) = manifest(1);
    let storage: &dyn crate::store::Storage = &memory;
    storage.put_manifest(&digest, "application/vnd.oci.image.manifest.v1+json", bytes).await.expect("put");
    let stored = |reference: &str, digest: &Digest| crate::store::RefRecord {
        namespace: image().ns().clone(),
        repository: image().repo().clone(),
        reference: tag(reference),
        digest: digest.clone(),
        created: 1,
        pulled: 1,
    };
    storage.put_record(&stored("t", &digest)).await.expect("record");
    storage.put_record(&stored("orphan", &Digest::sha256_of(b"gone"))).await.expect("record");
    let r = rig_over(memory, no_scrub());
    for _ in 0..100 {
        if !r.store.index().loading() && r.memory.records().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!r.store.index().loading(), "the load ends");
    let key = |reference: &str| RefKey { image: image(), reference: tag(reference) };
    assert_eq!(r.store.index().resolve(&key("t")).map(|m| m.digest), Some(digest));
    assert!(r.store.index().ref_digest(&key("orphan")).is_none(), "a tag of a missing manifest is not indexed");
    let left: Vec<_> = r.memory.records().into_iter().map(|rec| rec.reference.to_string()).collect();
    assert_eq!(left, vec!["t".to_string()], "and removed from the store");
}

#[actix_rt::test]
async fn await_blob_answers_when_the_claim_ends_cached_or_not() {
    let r = rig(no_scrub());
    let (kept, dropped) = (&b"a blob that is kept"[..], &b"a blob whose fetch fails"[..]);
    let await_blob = |bytes: &[u8]| r.cache.send(AwaitBlob { digest: Digest::sha256_of(bytes) });
    assert!(!await_blob(kept).await.expect("mailbox"), "nothing claims it and nothing has it: no at once");

    let lease = |bytes: &[u8]| {
        let claim = r.cache.send(ClaimBlob { digest: Digest::sha256_of(bytes) });
        async move {
            match claim.await.expect("mailbox") {
                ClaimReply::Lead(lease) => lease,
                ClaimReply::Claim(_) => panic!("a new blob is led"),
            }
        }
    };
    let (kept_lease, dropped_lease) = (lease(kept).await, lease(dropped).await);
    let (kept_wait, dropped_wait) = (await_blob(kept), await_blob(dropped));
    // The leader settles its readers first, as it does once the digest matches, then commits or releases.
    kept_lease.publisher.settle(Outcome::Done { size: kept.len() as u64 });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut writer = r.store.begin_blob(&Digest::sha256_of(kept)).await.expect("begin");
    writer.append(Bytes::copy_from_slice(kept)).await.expect("append");
    let blob = writer.verify().await.map_err(|_| "verify").expect("verified").sync().await.expect("synced");
    r.cache.send(CommitBlob { blob }).await.expect("mailbox").expect("committed");
    dropped_lease.publisher.settle(Outcome::Abandoned);
    let transfer = dropped_lease.transfer.clone();
    r.cache.send(ReleaseBlob { transfer, cause: Release::Failed }).await.expect("mailbox");
    let answer = |wait| async move { tokio::time::timeout(Duration::from_secs(10), wait).await.expect("answered") };
    assert!(answer(kept_wait).await.expect("mailbox"), "committed: yes, once the commit is done");
    assert!(!answer(dropped_wait).await.expect("mailbox"), "released without a commit: no");
    assert!(await_blob(kept).await.expect("mailbox"), "cached: yes at once");
}

#[actix_rt::test]
async fn a_claim_between_verification_and_commit_follows_as_a_hit() {
    let r = rig(no_scrub());
    let bytes = &b"a blob verified and not yet committed"[..];
    let claim = || r.cache.send(ClaimBlob { digest: Digest::sha256_of(bytes) });
    let ClaimReply::Lead(lease) = claim().await.expect("mailbox") else { panic!("a new blob is led") };
    assert!(!lease.transfer.served_verified(), "the leader's own followers wait for the upstream");
    match claim().await.expect("mailbox") {
        ClaimReply::Claim(BlobClaim::Follow(t)) => assert!(!t.served_verified(), "running: a follower, not a hit"),
        _ => panic!("a running transfer is followed"),
    }
    // Settled once the digest matched; the commit comes after the fsync.
    lease.publisher.settle(Outcome::Done { size: bytes.len() as u64 });
    match claim().await.expect("mailbox") {
        ClaimReply::Claim(BlobClaim::Follow(t)) => {
            assert!(t.served_verified(), "verified: served with nothing asked of the upstream, a hit");
            assert!(t.same(&lease.transfer), "the same transfer's bytes");
        }
        _ => panic!("a verified transfer being committed is followed"),
    }
}
