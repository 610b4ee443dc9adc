//! The scan over the in-memory backend: what is indexed, what is moved aside (and counted), what a shared store only
//! leaves out, and the order and size of the batches.

use bytes::Bytes;
use tokio::sync::mpsc;

use super::*;
use crate::reference::ImageKey;
use crate::store::memory::SharedMemory;
use crate::store::{inventory, AccessEntry, RefKey, Storage, StoredObject};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn manifest() -> Bytes {
    let layer = Digest::sha256_of(b"layer");
    Bytes::from(format!(r#"{{"schemaVersion":2,"config":{{"digest":"{layer}"}},"layers":[{{"digest":"{layer}"}}]}}"#))
}

fn record(tag: &str, digest: &Digest) -> RefRecord {
    let image = ImageKey::new("docker.io".parse().expect("ns"), "library/x".parse().expect("repo"));
    RefRecord::of_tag(&image, tag, digest)
}

/// A store holding one good object of each kind, and one unfit object of each kind.
async fn planted() -> (SharedMemory, Digest, Digest, RefRecord) {
    let memory = SharedMemory::default();
    let blob = Digest::sha256_of(b"blob");
    memory.0.plant(&keys::blob(&blob), b"blob");
    let bytes = manifest();
    let digest = Digest::sha256_of(&bytes);
    memory.put_manifest(&digest, "text/html", bytes).await.expect("manifest with a wrong type");
    let good = record("1", &digest);
    memory.put_record(&good).await.expect("record");
    memory.0.plant("blobs/sha256/not-a-digest", b"junk");
    memory.0.plant(&keys::manifest(&Digest::sha256_of(b"other")), b"tampered");
    memory.0.plant("refs/ab/broken.json", b"{not json");
    let elsewhere = record("2", &digest);
    memory.0.plant("refs/cd/elsewhere.json", &serde_json::to_vec(&elsewhere).expect("json"));
    let access = vec![AccessEntry { object: StoredObject::Blob(blob.clone()), at: 42 }];
    memory.record_access(access).await.expect("access");
    (memory, blob, digest, good)
}

#[tokio::test]
async fn the_scan_indexes_what_is_fit_and_moves_the_rest_aside() {
    let (memory, blob, digest, good) = planted().await;
    let inv = inventory(&memory).await;
    let r = &inv.report;
    assert_eq!((r.blobs, r.blob_bytes, r.manifests, r.refs), (1, 4, 1, 1), "{r:?}");
    assert_eq!(r.quarantined, 5, "junk name, tampered manifest, wrong type, broken record, misplaced record: {r:?}");
    assert_eq!(inv.blobs[0].digest, blob);
    assert_eq!((&inv.manifests[0].meta.digest, inv.manifests[0].meta.media_type.as_str()), (&digest, OCI_MANIFEST));
    assert_eq!(inv.records, vec![good]);
    assert_eq!(inv.access, vec![AccessEntry { object: StoredObject::Blob(blob), at: 42 }]);
    // This backend has no move: what is moved aside is deleted (`Backend::quarantine`'s default).
    assert_eq!(memory.0.keys("blobs/").len() + memory.0.keys("refs/").len(), 2, "only the fit objects are left");
    assert_eq!(memory.0.keys("manifests/").len(), 2, "the manifest and its type");
    let kept_type = memory.get(&keys::manifest_type(&digest)).await.expect("get").expect("rewritten");
    assert_eq!(kept_type.0, OCI_MANIFEST.as_bytes(), "the type written again from the content");
    assert_eq!(inventory(&memory).await.report.quarantined, 0, "nothing unfit is left");
}

#[tokio::test]
async fn a_shared_store_only_leaves_out_what_is_unfit_but_repairs_a_type() {
    let (memory, _, digest, good) = planted().await;
    memory.0.set_shared();
    let inv = inventory(&memory).await;
    assert_eq!((inv.report.blobs, inv.report.manifests, inv.report.refs), (1, 1, 1), "{:?}", inv.report);
    assert_eq!(inv.records, vec![good]);
    assert_eq!(inv.report.quarantined, 1, "only the wrong type: {:?}", inv.report);
    let kept_type = memory.get(&keys::manifest_type(&digest)).await.expect("get").expect("rewritten");
    assert_eq!(kept_type.0, OCI_MANIFEST.as_bytes(), "the type written again from the content");
    assert_eq!(memory.0.keys("blobs/").len(), 2, "another replica may be writing what looks unfit: left alone");
    assert_eq!(memory.0.keys("refs/").len(), 3);
    assert_eq!(memory.0.keys("manifests/").len(), 3);
}

#[tokio::test]
async fn batches_come_bounded_and_in_order_and_the_scan_stops_when_nobody_listens() {
    let memory = SharedMemory::default();
    for n in 0..(BATCH + 10) {
        memory.0.plant(&keys::blob(&Digest::sha256_of(&n.to_be_bytes())), b"x");
    }
    let bytes = manifest();
    let digest = Digest::sha256_of(&bytes);
    memory.put_manifest(&digest, OCI_MANIFEST, bytes).await.expect("manifest");
    memory.put_record(&record("1", &digest)).await.expect("record");
    let (tx, mut rx) = mpsc::channel(64);
    scan(&memory, tx).await;
    let mut batches = Vec::new();
    while let Some(batch) = rx.recv().await {
        batches.push((batch.blobs.len(), batch.manifests.len(), batch.records.len()));
    }
    assert_eq!(batches[0], (BATCH, 0, 0), "a full batch goes as soon as it is full: {batches:?}");
    let manifests_at = batches.iter().position(|b| b.1 > 0).expect("the manifest");
    let records_at = batches.iter().position(|b| b.2 > 0).expect("the record");
    assert!(batches[..manifests_at].iter().all(|b| b.1 == 0 && b.2 == 0), "blobs first: {batches:?}");
    assert!(manifests_at <= records_at, "manifests before records: {batches:?}");

    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    tokio::time::timeout(std::time::Duration::from_secs(5), scan(&memory, tx)).await.expect("stops at once");
}

#[tokio::test]
async fn a_record_is_read_back_only_under_its_own_key() {
    let (memory, _, digest, good) = planted().await;
    assert_eq!(memory.read_record(&good.key()).await.expect("read"), Some(good));
    let missing = RefKey { reference: "nope".parse().expect("tag"), ..record("1", &digest).key() };
    assert_eq!(memory.read_record(&missing).await.expect("read"), None);
}
