//! The `.type` beside a stored manifest is checked against the manifest's content at the start-up scan and on every
//! read from disk: a wrong one is quarantined and written again from the content; a manifest that says nothing of
//! itself and has no valid type is moved aside.

use std::fs;
use std::sync::Arc;

use bytes::Bytes;

use super::layout::Layout;
use super::FsStorage;
use crate::digest::Digest;
use crate::reference::Reference;
use crate::store::{inventory, ManifestType, RefKey, Storage, Store};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An OCI image manifest without `mediaType` (its shape tells its type).
fn shaped_manifest() -> Bytes {
    Bytes::from_static(
        br#"{"schemaVersion":2,"config":{"digest":"sha256:aa","size":2},"layers":[{"digest":"sha256:bb","size":3}]}"#,
    )
}

/// A manifest stored by an earlier run with `media_type`, then its `.type` replaced by `tampered` (`None`: removed).
async fn stored(dir: &std::path::Path, bytes: &Bytes, tampered: Option<&[u8]>) -> (Digest, Layout) {
    let digest = Digest::sha256_of(bytes);
    let layout = Layout::new(dir);
    {
        let storage = FsStorage::open(dir).expect("open");
        storage.put_manifest(&digest, OCI_MANIFEST, bytes.clone()).await.expect("put");
    }
    match tampered {
        Some(text) => fs::write(layout.manifest_type(&digest), text).expect("tamper"),
        None => fs::remove_file(layout.manifest_type(&digest)).expect("remove"),
    }
    (digest, layout)
}

fn quarantined(layout: &Layout) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(layout.quarantine_dir())
        .expect("quarantine dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_scan_replaces_a_type_that_does_not_fit_the_content() {
    for tampered in [&b"text/html"[..], OCI_INDEX.as_bytes(), b"", &[b'x'; 4096], &[0xff, 0xfe]] {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = shaped_manifest();
        let (digest, layout) = stored(dir.path(), &bytes, Some(tampered)).await;
        let storage = FsStorage::open(dir.path()).expect("reopen");
        let inv = inventory(&storage).await;
        assert_eq!((inv.report.manifests, inv.report.quarantined), (1, 1), "{:?}", inv.report);
        assert_eq!(inv.manifests[0].meta.media_type, OCI_MANIFEST, "indexed with the content's type");
        assert_eq!(fs::read_to_string(layout.manifest_type(&digest)).expect("rewritten"), OCI_MANIFEST);
        let aside = quarantined(&layout);
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert!(aside[0].starts_with(&format!("manifests_sha256_{}.type.", digest.hex())), "{aside:?}");
        assert_eq!(fs::read(layout.quarantine_dir().join(&aside[0])).expect("kept"), tampered, "kept for inspection");
        assert!(layout.manifest(&digest).exists(), "the manifest itself stays");
    }
}

#[tokio::test]
async fn the_scan_keeps_a_fitting_type_and_writes_a_missing_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = shaped_manifest();
    let (digest, layout) = stored(dir.path(), &bytes, None).await;
    let inv = inventory(&FsStorage::open(dir.path()).expect("reopen")).await;
    assert_eq!((inv.report.manifests, inv.report.quarantined), (1, 0), "{:?}", inv.report);
    assert_eq!(inv.manifests[0].meta.media_type, OCI_MANIFEST);
    assert_eq!(fs::read_to_string(layout.manifest_type(&digest)).expect("written"), OCI_MANIFEST);
    let inv = inventory(&FsStorage::open(dir.path()).expect("reopen")).await;
    assert_eq!((inv.report.manifests, inv.report.quarantined), (1, 0), "{:?}", inv.report);
    assert!(quarantined(&layout).is_empty());
}

#[tokio::test]
async fn the_scan_never_opens_a_type_that_is_not_a_regular_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = shaped_manifest();
    let (digest, layout) = stored(dir.path(), &bytes, None).await;
    let fifo = layout.manifest_type(&digest);
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::from(0o600), 0)
        .expect("mkfifo");
    let storage = FsStorage::open(dir.path()).expect("reopen");
    let inv = tokio::time::timeout(std::time::Duration::from_secs(10), inventory(&storage))
        .await
        .expect("the scan does not block on a FIFO");
    assert_eq!((inv.report.manifests, inv.report.quarantined), (1, 1), "{:?}", inv.report);
    assert_eq!(fs::read_to_string(&fifo).expect("a regular file again"), OCI_MANIFEST);
}

#[tokio::test]
async fn a_manifest_of_no_known_type_without_a_valid_type_is_moved_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = Bytes::from_static(br#"{"schemaVersion":2,"hello":"world"}"#);
    let (digest, layout) = stored(dir.path(), &bytes, Some(b"text/html")).await;
    let inv = inventory(&FsStorage::open(dir.path()).expect("reopen")).await;
    assert_eq!((inv.report.manifests, inv.report.quarantined), (0, 2), "{:?}", inv.report);
    assert!(!layout.manifest(&digest).exists() && !layout.manifest_type(&digest).exists());
    assert_eq!(quarantined(&layout).len(), 2);
}

#[tokio::test]
async fn a_manifest_of_no_known_type_keeps_a_valid_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = Bytes::from_static(br#"{"schemaVersion":2,"hello":"world"}"#);
    let (_, layout) = stored(dir.path(), &bytes, Some(OCI_INDEX.as_bytes())).await;
    let inv = inventory(&FsStorage::open(dir.path()).expect("reopen")).await;
    assert_eq!((inv.report.manifests, inv.report.quarantined), (1, 0), "{:?}", inv.report);
    assert_eq!(inv.manifests[0].meta.media_type, OCI_INDEX, "nothing in the content contradicts it");
    assert!(quarantined(&layout).is_empty());
}

#[tokio::test]
async fn a_type_read_while_the_index_loads_is_checked_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = Bytes::from(format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#));
    let (digest, layout) = stored(dir.path(), &bytes, Some(OCI_MANIFEST.as_bytes())).await;
    let store = Store::new(Arc::new(FsStorage::open(dir.path()).expect("reopen")), 0);
    assert_eq!(store.storage().read_manifest_type(&digest).await.expect("read").as_deref(), Some(OCI_INDEX));
    assert_eq!(fs::read_to_string(layout.manifest_type(&digest)).expect("rewritten"), OCI_INDEX);
    assert_eq!(quarantined(&layout).len(), 1);
    // The lookup of a request that misses while the index loads gets the checked type.
    fs::write(layout.manifest_type(&digest), "text/html").expect("tamper again");
    let image = crate::reference::ImageKey::new("docker.io".parse().expect("ns"), "library/x".parse().expect("repo"));
    let key = RefKey { image, reference: Reference::Digest(digest.clone()) };
    let (meta, _) = store.lookup_manifest(&key).await.expect("lookup").expect("found");
    assert_eq!(meta.media_type, ManifestType::OciIndex.as_str());
    assert_eq!(quarantined(&layout).len(), 2);
}
