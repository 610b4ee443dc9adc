//! Filesystem store tests: atomic commits, verification, the directory lock, the start-up scan's rules, conditional
//! quarantine and the access journal.

use std::fs;
use std::sync::Arc;

use bytes::Bytes;

use super::layout::Layout;
use super::FsStorage;
use crate::digest::Digest;
use crate::reference::ImageKey;
use crate::store::{inventory, AccessEntry, FinishError, ManifestRead, RefRecord, Storage, Store, StoredObject};

fn image() -> ImageKey {
    ImageKey::new("docker.io".parse().expect("ns"), "library/hello".parse().expect("repo"))
}

fn record(image: &ImageKey, tag: &str, digest: &Digest) -> RefRecord {
    RefRecord::of_tag(image, tag, digest)
}

fn open(dir: &std::path::Path) -> (Store, Layout) {
    let storage = FsStorage::open(dir).expect("open");
    (Store::new(Arc::new(storage), 0), Layout::new(dir))
}

#[tokio::test]
async fn blob_becomes_visible_only_through_a_verified_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, layout) = open(dir.path());
    let data = Bytes::from_static(b"layer bytes");
    let digest = Digest::sha256_of(&data);
    let mut writer = store.begin_blob(&digest).await.expect("begin");
    writer.append(data.slice(..5)).await.expect("write");
    writer.append(data.slice(5..)).await.expect("write");
    assert_eq!(writer.reader().read_range(0, 100).await.expect("read growing"), data, "followers read what is written");
    assert!(!layout.blob(&digest).exists(), "nothing at the final path before commit");
    let blob = writer.finish().await.map_err(|_| "finish").expect("digest matches");
    assert_eq!(blob.size(), data.len() as u64);
    let version = blob.commit().await.expect("commit");
    assert_eq!(fs::read(layout.blob(&digest)).expect("read"), data);
    let opened = store.open_blob(&digest).await.expect("open").expect("present");
    assert_eq!((opened.size, opened.version), (data.len() as u64, version));
    assert_eq!(fs::read_dir(layout.tmp_dir()).expect("tmp").count(), 0, "no temp file left");
}

#[tokio::test]
async fn a_mismatching_blob_is_rejected_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, layout) = open(dir.path());
    let digest = Digest::sha256_of(b"expected");
    let mut writer = store.begin_blob(&digest).await.expect("begin");
    writer.append(Bytes::from_static(b"corrupted")).await.expect("write");
    match writer.finish().await {
        Err(FinishError::Mismatch(actual)) => assert_eq!(actual, Digest::sha256_of(b"corrupted")),
        _ => panic!("a mismatching blob must not verify"),
    }
    assert!(!layout.blob(&digest).exists());
    assert_eq!(fs::read_dir(layout.tmp_dir()).expect("tmp").count(), 0, "temp file removed on drop");
}

#[test]
fn second_open_of_a_locked_directory_fails_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = FsStorage::open(dir.path()).expect("open");
    let err = FsStorage::open(dir.path()).expect_err("second open must fail");
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
}

#[tokio::test]
async fn two_tags_sharing_a_digest_survive_the_scan_with_their_graph() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = Digest::sha256_of(b"layer");
    let bytes = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[{{"digest":"{layer}"}}]}}"#
    ));
    let digest = Digest::sha256_of(&bytes);
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let other = ImageKey::new("ghcr.io".parse().expect("ns"), "library/hello".parse().expect("repo"));
    {
        let storage = FsStorage::open(dir.path()).expect("open");
        storage.put_manifest(&digest, mt, bytes.clone()).await.expect("put");
        for r in [record(&image(), "a", &digest), record(&image(), "b", &digest), record(&other, "a", &digest)] {
            storage.put_record(&r).await.expect("record");
        }
    }
    let storage = FsStorage::open(dir.path()).expect("reopen");
    let inv = inventory(&storage).await;
    assert_eq!((inv.report.manifests, inv.report.refs, inv.report.quarantined), (1, 3, 0), "{:?}", inv.report);
    let m = &inv.manifests[0];
    assert_eq!((&m.meta.digest, m.meta.media_type.as_str(), m.meta.size), (&digest, mt, bytes.len() as u64));
    assert_eq!(&*m.links.blobs, [layer], "the image graph is parsed from the stored bytes");
}

#[tokio::test]
async fn the_scan_removes_partials_and_quarantines_what_cannot_be_indexed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = b"good blob";
    let good_digest = Digest::sha256_of(good);
    let bad_manifest = Digest::sha256_of(b"original manifest");
    let orphan = record(&image(), "gone", &Digest::sha256_of(b"no such manifest"));
    {
        let (_store, layout) = open(dir.path());
        fs::write(layout.tmp_dir().join("0001.blob"), b"half a blo").expect("partial");
        fs::write(layout.blob(&good_digest), good).expect("good blob");
        fs::write(layout.root().join("blobs/sha256").join("not-a-digest"), b"junk").expect("junk");
        fs::write(layout.manifest(&bad_manifest), b"tampered manifest").expect("bad manifest");
        fs::create_dir_all(layout.root().join("refs").join("ab")).expect("refs shard");
        fs::write(layout.root().join("refs").join("ab").join("broken.json"), b"{not json").expect("bad record");
        let path = layout.reference(&orphan.key());
        fs::create_dir_all(path.parent().expect("shard")).expect("shard");
        fs::write(&path, serde_json::to_vec(&orphan).expect("json")).expect("orphan record");
    }
    let (store, layout) = open(dir.path());
    let inv = inventory(&**store.storage()).await;
    assert_eq!(inv.report.partial_removed, 1, "{:?}", inv.report);
    assert_eq!(inv.report.manifests, 0, "{:?}", inv.report);
    assert_eq!(inv.report.quarantined, 3, "junk name, tampered manifest, broken record: {:?}", inv.report);
    assert_eq!(inv.blobs.len(), 1);
    assert_eq!((&inv.blobs[0].digest, inv.blobs[0].size), (&good_digest, good.len() as u64));
    assert_eq!(inv.records, vec![orphan.clone()], "a record of a missing manifest is reported (the cache drops it)");
    assert_eq!(fs::read_dir(layout.tmp_dir()).expect("tmp").count(), 0);
    assert_eq!(fs::read_dir(layout.quarantine_dir()).expect("q").count(), 3);
}

#[tokio::test]
async fn the_scan_never_opens_what_is_not_a_regular_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, layout) = open(dir.path());
    // A FIFO under a manifest's name: opening it for reading would block until a writer came.
    let fifo = layout.manifest(&Digest::sha256_of(b"never written"));
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::from(0o600), 0)
        .expect("mkfifo");
    let inv = tokio::time::timeout(std::time::Duration::from_secs(10), inventory(&**store.storage()))
        .await
        .expect("the scan does not block on a FIFO");
    assert_eq!((inv.report.manifests, inv.report.quarantined), (0, 1), "{:?}", inv.report);
    assert!(!fifo.exists(), "moved aside");
}

#[tokio::test]
async fn quarantine_moves_only_the_version_found_damaged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, layout) = open(dir.path());
    let data = Bytes::from_static(b"blob");
    let digest = Digest::sha256_of(&data);
    let mut writer = store.begin_blob(&digest).await.expect("begin");
    writer.append(data).await.expect("write");
    let old = writer.finish().await.map_err(|_| "finish").expect("verified").commit().await.expect("commit");
    // The blob is stored again (a new file under the same name): the old version's report must leave it alone.
    fs::write(layout.tmp_dir().join("x"), b"blob").expect("write");
    fs::rename(layout.tmp_dir().join("x"), layout.blob(&digest)).expect("replace");
    let object = StoredObject::Blob(digest.clone());
    assert!(!store.storage().quarantine(&object, Some(old), "test").await.expect("quarantine"));
    assert!(layout.blob(&digest).exists());
    let current = store.open_blob(&digest).await.expect("open").expect("present").version;
    assert!(store.storage().quarantine(&object, Some(current), "test").await.expect("quarantine"));
    assert!(!layout.blob(&digest).exists());
    assert!(store.open_blob(&digest).await.expect("open").is_none());
}

#[tokio::test]
async fn access_times_survive_a_reopen_and_a_rewrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blob = StoredObject::Blob(Digest::sha256_of(b"b"));
    {
        let storage = FsStorage::open(dir.path()).expect("open");
        storage.record_access(vec![AccessEntry { object: blob.clone(), at: 5 }]).await.expect("append");
        storage.record_access(vec![AccessEntry { object: blob.clone(), at: 9 }]).await.expect("append");
    }
    let storage = FsStorage::open(dir.path()).expect("reopen");
    assert_eq!(inventory(&storage).await.access, vec![AccessEntry { object: blob.clone(), at: 9 }]);
    storage.rewrite_access(vec![AccessEntry { object: blob.clone(), at: 7 }]).await.expect("rewrite");
    assert_eq!(inventory(&storage).await.access, vec![AccessEntry { object: blob, at: 7 }]);
}

#[tokio::test]
async fn a_hot_manifest_is_served_from_memory_only_while_its_stored_copy_is_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, layout) = open(dir.path());
    let bytes = Bytes::from_static(br#"{"schemaVersion":2}"#);
    let digest = Digest::sha256_of(&bytes);
    let mt = "application/vnd.oci.image.manifest.v1+json";
    store.storage().put_manifest(&digest, mt, bytes.clone()).await.expect("put");
    let meta = crate::store::ManifestMeta { digest: digest.clone(), media_type: mt.into(), size: bytes.len() as u64 };
    store.index().insert_manifest(meta, crate::graph::ManifestLinks::default());
    let read = || async { store.read_manifest(&digest).await.expect("read") };
    assert!(matches!(read().await, ManifestRead::Found(b) if b == bytes));
    assert!(store.index().hot_manifest(&digest).is_some(), "kept hot once read and verified");
    assert!(matches!(read().await, ManifestRead::Found(b) if b == bytes), "a hit");
    // Damaged in place (same size): the stored copy's version changes, so it is read and checked again.
    std::thread::sleep(std::time::Duration::from_millis(10));
    fs::write(layout.manifest(&digest), br#"{"schemaVersion":3}"#).expect("damage");
    assert!(matches!(read().await, ManifestRead::Corrupt), "never served from memory once the stored copy changed");
    fs::remove_file(layout.manifest(&digest)).expect("delete");
    assert!(matches!(read().await, ManifestRead::Missing));
}

#[tokio::test]
async fn pieces_written_ahead_are_hashed_in_order_and_never_resumed_as_the_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _layout) = open(dir.path());
    let data = Bytes::from((0..300u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let digest = Digest::sha256_of(&data);
    // A piece at 200..300 while the appends are at 100: the blob verifies with the piece adopted in order.
    let mut writer = store.begin_blob(&digest).await.expect("begin");
    writer.append(data.slice(..100)).await.expect("append");
    let patch = writer.patcher().expect("the filesystem keeps pieces");
    patch.write_at(200, data.slice(200..)).await.expect("piece");
    writer.append(data.slice(100..200)).await.expect("append up to the piece");
    writer.adopt(100).await.expect("adopt the piece");
    assert_eq!(writer.written(), 300);
    let blob = writer.verify().await.map_err(|_| "verify").expect("the digest matches");
    drop(blob);
    // Stopped cleanly with a piece ahead: the next attempt resumes the appended bytes only.
    let mut writer = store.begin_blob(&digest).await.expect("begin");
    writer.restart().await.expect("restart");
    writer.append(data.slice(..50)).await.expect("append");
    writer.patcher().expect("patch").write_at(250, data.slice(250..)).await.expect("piece");
    drop(writer);
    assert_eq!(store.begin_blob(&digest).await.expect("again").resumed(), 50);
    // Killed with a piece ahead (no cleanup): the bytes appended, up to the last append, are what is resumed.
    let mut writer = store.begin_blob(&digest).await.expect("begin");
    writer.append(data.slice(50..120)).await.expect("append");
    writer.patcher().expect("patch").write_at(250, data.slice(250..)).await.expect("piece");
    writer.append(data.slice(120..180)).await.expect("append after the piece was written");
    std::mem::forget(writer);
    let writer = store.begin_blob(&digest).await.expect("after a kill");
    assert_eq!(writer.resumed(), 180);
    assert!(!writer.resumed_whole());
}
