//! The tier's bookkeeping over a real local store: blobs noted, trimmed to the cap least recently used first, files
//! of evicted blobs deleted, and what a restart finds loaded again.

use bytes::Bytes;

use super::*;

/// A blob of `len` bytes committed to the tier's local store, as a download or a spool would.
async fn stored(tier: &Tier, n: u8, len: usize) -> Digest {
    let bytes = Bytes::from(vec![n; len]);
    let digest = Digest::sha256_of(&bytes);
    let mut up = tier.local().upload(&keys::blob(&digest)).await.expect("upload");
    up.append(bytes).await.expect("append");
    up.complete().await.expect("complete");
    tier.note(&digest, len as u64).await;
    digest
}

async fn present(tier: &Tier, d: &Digest) -> bool {
    tier.local().head(&keys::blob(d)).await.expect("head").is_some()
}

#[tokio::test]
async fn the_tier_keeps_at_most_its_cap_least_recently_used_out_first() {
    let dir = tempfile::tempdir().expect("dir");
    let tier = Tier::new(FsStorage::open(dir.path()).expect("open"), 300);
    let a = stored(&tier, 1, 100).await;
    let b = stored(&tier, 2, 100).await;
    let c = stored(&tier, 3, 100).await;
    assert_eq!(tier.used(), 300);
    assert!(tier.open(&a).await.expect("open").is_some(), "a is used again: b is now the oldest");
    let d = stored(&tier, 4, 100).await;
    assert!(!present(&tier, &b).await, "the least recently used blob's file is deleted");
    for kept in [&a, &c, &d] {
        assert!(present(&tier, kept).await);
    }
    assert_eq!(tier.used(), 300);
    tier.forget(&a);
    assert_eq!(tier.used(), 200, "a forgotten blob no longer counts");
}

#[tokio::test]
async fn a_blob_larger_than_the_cap_is_kept_until_the_next_one() {
    let dir = tempfile::tempdir().expect("dir");
    let tier = Tier::new(FsStorage::open(dir.path()).expect("open"), 100);
    let big = stored(&tier, 1, 500).await;
    assert!(present(&tier, &big).await, "the blob just stored is never evicted (it is being served)");
    let small = stored(&tier, 2, 10).await;
    assert!(!present(&tier, &big).await && present(&tier, &small).await);
}

#[tokio::test]
async fn a_reopened_tier_loads_what_its_disk_holds() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = {
        let tier = Tier::new(FsStorage::open(dir.path()).expect("open"), 1000);
        (stored(&tier, 1, 100).await, stored(&tier, 2, 50).await)
    };
    let tier = Tier::new(FsStorage::open(dir.path()).expect("reopen"), 1000);
    assert_eq!(tier.used(), 0);
    tier.load().await;
    assert_eq!(tier.used(), 150);
    let opened = tier.open(&a).await.expect("open").expect("held");
    assert_eq!(opened.size, 100);
    assert!(opened.reader.file_range(0, 100).is_some(), "served from a local file (sendfile)");
    assert!(tier.open(&b).await.expect("open").is_some());
}
