//! Store tests: atomic commits, verification, the directory lock and the rebuild rules.

use std::fs;

use bytes::Bytes;

use super::*;
use crate::reference::Tag;

fn image() -> ImageKey {
    ImageKey::new("docker.io".parse().expect("ns"), "library/hello".parse().expect("repo"))
}

fn tag(t: &str) -> Reference {
    Reference::Tag(t.parse::<Tag>().expect("tag"))
}

#[test]
fn blob_becomes_visible_only_through_a_verified_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _lock) = Store::open(dir.path()).expect("open");
    let data = b"layer bytes";
    let digest = Digest::sha256_of(data);
    let (mut writer, _reader) = store.begin_blob(&digest).expect("begin");
    writer.write(data).expect("write");
    assert!(!store.layout().blob(&digest).exists(), "nothing at the final path before commit");
    assert_eq!(store.index().blob(&digest), None);
    writer.verify().expect("digest matches");
    assert_eq!(store.commit_blob(writer).expect("commit"), data.len() as u64);
    assert_eq!(fs::read(store.layout().blob(&digest)).expect("read"), data);
    assert_eq!(store.index().blob(&digest), Some(data.len() as u64));
    assert_eq!(fs::read_dir(store.layout().tmp_dir()).expect("tmp").count(), 0, "no temp file left");
}

#[test]
fn a_mismatching_blob_is_rejected_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _lock) = Store::open(dir.path()).expect("open");
    let digest = Digest::sha256_of(b"expected");
    let (mut writer, _reader) = store.begin_blob(&digest).expect("begin");
    writer.write(b"corrupted").expect("write");
    assert!(writer.verify().is_err());
    drop(writer);
    assert!(!store.layout().blob(&digest).exists());
    assert_eq!(fs::read_dir(store.layout().tmp_dir()).expect("tmp").count(), 0, "temp file removed on drop");
}

#[test]
fn second_open_of_a_locked_directory_fails_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, _lock) = Store::open(dir.path()).expect("open");
    let err = Store::open(dir.path()).expect_err("second open must fail");
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
}

#[test]
fn two_tags_sharing_a_digest_and_the_rebuild_keep_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = Bytes::from_static(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#);
    let digest = Digest::sha256_of(&bytes);
    let mt = "application/vnd.oci.image.manifest.v1+json";
    {
        let (store, _lock) = Store::open(dir.path()).expect("open");
        store.put_manifest(&image(), &tag("a"), &digest, mt, &bytes).expect("put a");
        store.put_manifest(&image(), &tag("b"), &digest, mt, &bytes).expect("put b");
        let other = ImageKey::new("ghcr.io".parse().expect("ns"), "library/hello".parse().expect("repo"));
        store.put_manifest(&other, &tag("a"), &digest, mt, &bytes).expect("put other ns");
    }
    let (store, _lock) = Store::open(dir.path()).expect("reopen");
    let report = store.rebuild();
    assert_eq!((report.manifests, report.refs, report.quarantined), (1, 3, 0), "{report:?}");
    for t in ["a", "b"] {
        let key = RefKey { image: image(), reference: tag(t) };
        let meta = store.index().resolve(&key).expect("tag resolves after rebuild");
        assert_eq!(
            (meta.digest.clone(), meta.media_type.as_str(), meta.size),
            (digest.clone(), mt, bytes.len() as u64)
        );
    }
}

#[test]
fn rebuild_removes_partials_and_quarantines_corrupt_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = b"good blob";
    let good_digest = Digest::sha256_of(good);
    let bad_manifest = Digest::sha256_of(b"original manifest");
    {
        let (store, _lock) = Store::open(dir.path()).expect("open");
        let layout = store.layout().clone();
        fs::write(layout.tmp_dir().join("0001.blob"), b"half a blo").expect("partial");
        fs::write(layout.blob(&good_digest), good).expect("good blob");
        fs::write(layout.blobs_dir().join("sha256").join("not-a-digest"), b"junk").expect("junk");
        fs::write(layout.manifest(&bad_manifest), b"tampered manifest").expect("bad manifest");
        let corrupt_blob = Digest::sha256_of(b"blob as expected");
        fs::write(layout.blob(&corrupt_blob), b"blob bit-rotted").expect("corrupt blob");
        fs::create_dir_all(layout.refs_dir().join("ab")).expect("refs shard");
        fs::write(layout.refs_dir().join("ab").join("broken.json"), b"{not json").expect("bad record");
    }
    let (store, _lock) = Store::open(dir.path()).expect("reopen");
    let report = store.rebuild();
    assert_eq!(report.partial_removed, 1, "{report:?}");
    assert_eq!(report.manifests, 0, "{report:?}");
    assert_eq!(report.quarantined, 3, "junk name, tampered manifest, broken record: {report:?}");
    assert_eq!(store.index().blob(&good_digest), Some(good.len() as u64));
    assert_eq!(store.scrub_blobs(), 1, "the scrub finds the bit-rotted blob");
    assert_eq!(store.index().blob(&good_digest), Some(good.len() as u64), "good blob kept");
    assert_eq!(store.index().blob_totals().0, 1, "only the good blob stays indexed");
    assert_eq!(fs::read_dir(store.layout().tmp_dir()).expect("tmp").count(), 0);
    assert_eq!(fs::read_dir(store.layout().quarantine_dir()).expect("q").count(), 4);
}
