//! The cache's life over the in-memory store: the cap evicts the least recently pulled images and keeps shared
//! blobs and pinned images, a full volume evicts before it passes through, pruning (and its dry run), collection of
//! unneeded blobs, imported manifests are checked.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use regex::Regex;

use super::{CacheActor, LifecycleSettings, Pins, PruneReport, PruneRequest, PruneRule, ScrubSettings, Touches};
use crate::digest::Digest;
use crate::messages::{CommitBlob, ImportError, ImportManifest, MakeRoom, Prune, PutManifest, Room};
use crate::metrics::Metrics;
use crate::reference::{ImageKey, Reference};
use crate::store::memory::{MemoryStorage, SharedMemory};
use crate::store::{now_unix, RefKey, Store, Version};

struct Rig {
    cache: Addr<CacheActor>,
    memory: Arc<MemoryStorage>,
    store: Store,
    metrics: Arc<Metrics>,
}

fn rig(settings: LifecycleSettings) -> Rig {
    let memory = SharedMemory::default();
    let store = Store::new(Arc::new(memory.clone()), 0);
    let metrics = Arc::new(Metrics::new());
    let scrub = ScrubSettings { interval: None, ..ScrubSettings::default() };
    let cache = CacheActor::new(store.clone(), Arc::new(Touches::default()), scrub, metrics.clone())
        .with_lifecycle(settings)
        .start();
    Rig { cache, memory: memory.0, store, metrics }
}

fn capped(cap: u64, pins: &[&str]) -> LifecycleSettings {
    LifecycleSettings { max_cache_size: Some(cap), pins: Pins::new(pins).expect("pins"), prune: None }
}

fn key(name: &str) -> ImageKey {
    name.parse().expect("image key")
}

fn tag(t: &str) -> Reference {
    t.parse().expect("tag")
}

/// A blob of `n` bytes with a distinct content.
fn blob(seed: u8, n: usize) -> Bytes {
    let mut v = vec![seed; n];
    v[0] = seed.wrapping_mul(31);
    Bytes::from(v)
}

async fn commit(r: &Rig, bytes: &Bytes) -> Digest {
    let digest = Digest::sha256_of(bytes);
    let mut writer = r.store.begin_blob(&digest).await.expect("begin");
    writer.append(bytes.clone()).await.expect("append");
    let blob = writer.finish().await.map_err(|_| "finish").expect("verified");
    r.cache.send(CommitBlob { blob }).await.expect("mailbox").expect("committed");
    digest
}

/// An image `name:t` whose manifest names `blobs`, committed blobs first as a pull does; pulled at `pulled`.
async fn image(r: &Rig, name: &str, t: &str, blobs: &[&Bytes], pulled: i64) -> (RefKey, Vec<Digest>) {
    let mut digests = Vec::new();
    for b in blobs {
        digests.push(commit(r, b).await);
    }
    let layers: Vec<String> = digests.iter().map(|d| format!(r#"{{"digest":"{d}","size":1}}"#)).collect();
    let bytes = Bytes::from(format!(
        r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":1}},"layers":[{}]}}"#,
        digests[0],
        layers[1..].join(",")
    ));
    let msg = PutManifest {
        image: key(name),
        reference: tag(t),
        digest: Digest::sha256_of(&bytes),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        bytes,
    };
    r.cache.send(msg).await.expect("mailbox").expect("stored");
    let k = RefKey { image: key(name), reference: tag(t) };
    r.store.index().set_pulled(&k, pulled);
    (k, digests)
}

fn cached(r: &Rig, d: &Digest) -> bool {
    r.store.index().blob(d).is_some() && r.memory.blob_bytes(d).is_some()
}

fn has_ref(r: &Rig, k: &RefKey) -> bool {
    r.store.index().ref_digest(k).is_some() && r.memory.records().iter().any(|rec| &rec.key() == k)
}

async fn settle(r: &Rig) {
    // Removals run through the write queue; a prune dry run is a barrier behind them.
    let _ = r.cache.send(Prune { request: PruneRequest { dry_run: true, ..PruneRequest::default() } }).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[actix_rt::test]
async fn the_cap_evicts_least_recently_pulled_images_keeping_shared_blobs_and_pins() {
    let r = rig(capped(9_000, &["docker.io/library/pinned*"]));
    let now = now_unix();
    let shared = blob(1, 1500);
    let (old, old_blobs) = image(&r, "docker.io/library/old", "1", &[&blob(2, 1500), &shared], now + 10).await;
    let (pinned, pinned_blobs) = image(&r, "docker.io/library/pinned", "1", &[&blob(3, 3000)], now + 5).await;
    let (mid, mid_blobs) = image(&r, "docker.io/library/mid", "1", &[&blob(4, 1500), &shared], now + 20).await;
    // 7,500 bytes of blobs plus manifests: under the cap. The next image pushes it over.
    let (new, new_blobs) = image(&r, "docker.io/library/new", "1", &[&blob(5, 1500)], now + 30).await;
    settle(&r).await;
    let used = r.store.index().blob_totals().1 + r.store.index().manifest_totals().1;
    assert!(used <= 8_100, "evicted down to the low watermark (90% of 9,000): {used}");
    assert!(!has_ref(&r, &old), "the least recently pulled image is evicted");
    assert!(!cached(&r, &old_blobs[0]), "with its own blob");
    assert!(cached(&r, &old_blobs[1]), "a blob a kept image still needs stays");
    assert!(has_ref(&r, &pinned) && cached(&r, &pinned_blobs[0]), "a pinned image stays, though older");
    assert!(has_ref(&r, &mid) && mid_blobs.iter().all(|d| cached(&r, d)), "a newer image stays");
    assert!(has_ref(&r, &new) && cached(&r, &new_blobs[0]));
    assert_eq!(r.metrics.evictions.with_label_values(&["cap"]).get(), 1);
    assert!(r.metrics.evicted_bytes.with_label_values(&["cap"]).get() >= 1500);
}

#[actix_rt::test]
async fn an_evicted_image_is_observed_with_the_time_since_its_last_pull() {
    let r = rig(capped(4_000, &[]));
    let now = now_unix();
    let (old, _) = image(&r, "docker.io/library/idle", "1", &[&blob(10, 1500)], now).await;
    let (recent, _) = image(&r, "docker.io/library/recent", "1", &[&blob(11, 1500)], now + 5).await;
    // Pull times are whole seconds: let at least one pass before the eviction.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (newest, _) = image(&r, "docker.io/library/newest", "1", &[&blob(12, 1500)], now + 6).await;
    settle(&r).await;
    assert!(!has_ref(&r, &old) && has_ref(&r, &recent) && has_ref(&r, &newest), "the least recently pulled went");
    let idle = r.metrics.eviction_idle.with_label_values(&["cap"]);
    assert_eq!(idle.get_sample_count(), 1, "one evicted image");
    let seconds = idle.get_sample_sum();
    assert!((1.0..60.0).contains(&seconds), "seconds from its last pull to its eviction: {seconds}");
    assert_eq!(r.metrics.eviction_idle.with_label_values(&["disk"]).get_sample_count(), 0);
}

#[actix_rt::test]
async fn room_beyond_the_cap_or_the_volume_is_made_by_eviction_and_refused_when_nothing_can_go() {
    let r = rig(capped(5_000, &[]));
    let now = now_unix();
    let (a, _) = image(&r, "docker.io/library/a", "1", &[&blob(6, 2000)], now).await;
    let (b, _) = image(&r, "docker.io/library/b", "1", &[&blob(7, 2000)], now + 1).await;
    let digest = Digest::sha256_of(b"incoming");
    let room = r.cache.send(MakeRoom { digest: digest.clone(), size: 2000, held: 0 }).await.expect("mailbox");
    assert_eq!(room, Room::Granted);
    assert!(!has_ref(&r, &a) && has_ref(&r, &b), "the older image made room under the cap");
    let too_big =
        r.cache.send(MakeRoom { digest: Digest::sha256_of(b"huge"), size: 6000, held: 0 }).await.expect("mailbox");
    assert_eq!(too_big, Room::TooLarge, "larger than the cap: passed through");

    // A full volume: evicts what is needed, or refuses when everything left is pinned.
    let r =
        rig(LifecycleSettings { pins: Pins::new(&["docker.io/library/keep"]).expect("pins"), ..Default::default() });
    let (gone, _) = image(&r, "docker.io/library/gone", "1", &[&blob(8, 4000)], now).await;
    let (keep, _) = image(&r, "docker.io/library/keep", "1", &[&blob(9, 4000)], now).await;
    r.memory.set_capacity(1000, 100_000);
    let room = r.cache.send(MakeRoom { digest: digest.clone(), size: 3000, held: 0 }).await.expect("mailbox");
    assert_eq!(room, Room::Granted, "a full volume evicts first");
    assert!(!has_ref(&r, &gone) && has_ref(&r, &keep));
    assert_eq!(r.metrics.evictions.with_label_values(&["disk"]).get(), 1);
    let room = r.cache.send(MakeRoom { digest: Digest::sha256_of(b"x"), size: 3000, held: 0 }).await.expect("mailbox");
    assert_eq!(room, Room::TooLarge, "nothing left that may go: passed through");
    assert!(has_ref(&r, &keep), "the pinned image is never evicted");
}

#[actix_rt::test]
async fn prune_by_rule_its_dry_run_and_the_collection_of_unneeded_blobs() {
    let r = rig(LifecycleSettings::default());
    let now = now_unix();
    let (a, a_blobs) = image(&r, "docker.io/library/app", "old", &[&blob(10, 100), &blob(11, 100)], now).await;
    let (b, b_blobs) = image(&r, "docker.io/library/app", "new", &[&blob(12, 100), &blob(11, 100)], now).await;
    // A blob nothing references, last used two hours ago, and one used just now.
    let stale = Digest::sha256_of(b"stale");
    r.store.index().insert_blob(stale.clone(), 5, now - 7200, Version(2), false);
    let fresh = commit(&r, &blob(13, 50)).await;

    let by_name = PruneRule::Matches(vec![Regex::new(":old$").expect("regex")]);
    let request = PruneRequest { rules: vec![by_name], limit: None, dry_run: true };
    let dry: PruneReport = r.cache.send(Prune { request: request.clone() }).await.expect("mailbox");
    assert_eq!(dry.images, vec!["docker.io/library/app:old".to_string()]);
    assert!(dry.dry_run && dry.blobs == 2, "its own blob and the stale one: {dry:?}");
    assert!(has_ref(&r, &a) && a_blobs.iter().all(|d| cached(&r, d)), "a dry run removes nothing");
    assert!(r.store.index().blob(&stale).is_some());

    let done = r.cache.send(Prune { request: PruneRequest { dry_run: false, ..request } }).await.expect("mailbox");
    assert_eq!(done.images, dry.images, "the real run removes what the dry run listed");
    assert!(!has_ref(&r, &a) && !cached(&r, &a_blobs[0]));
    assert!(cached(&r, &a_blobs[1]), "the blob the kept tag shares stays");
    assert!(has_ref(&r, &b) && b_blobs.iter().all(|d| cached(&r, d)));
    assert!(r.store.index().blob(&stale).is_none(), "an unreferenced blob unused for an hour is collected");
    assert!(cached(&r, &fresh), "an unreferenced blob used just now stays");

    // Age rules and pins.
    let r =
        rig(LifecycleSettings { pins: Pins::new(&["docker.io/library/pin:*"]).expect("pins"), ..Default::default() });
    let (p, _) = image(&r, "docker.io/library/pin", "1", &[&blob(14, 10)], now).await;
    let (q, _) = image(&r, "docker.io/library/q", "1", &[&blob(15, 10)], now).await;
    let rules = vec![PruneRule::CreatedBefore(now + 60)];
    let report = r.cache.send(Prune { request: PruneRequest { rules, ..PruneRequest::default() } }).await.expect("mb");
    assert_eq!(report.images, vec!["docker.io/library/q:1".to_string()], "pinned images are never pruned");
    assert!(has_ref(&r, &p) && !has_ref(&r, &q));
    let rules = vec![PruneRule::NotPulledFor(Duration::from_secs(3600))];
    let report = r.cache.send(Prune { request: PruneRequest { rules, ..PruneRequest::default() } }).await.expect("mb");
    assert!(report.images.is_empty(), "pulled just now: {report:?}");
}

#[actix_rt::test]
async fn an_imported_manifest_must_match_its_digest() {
    let r = rig(LifecycleSettings::default());
    let bytes = Bytes::from_static(br#"{"schemaVersion":2,"layers":[]}"#);
    let wrong = Digest::sha256_of(b"something else");
    let msg = |digest: Digest| ImportManifest {
        image: key("docker.io/library/loaded"),
        reference: tag("1"),
        digest,
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        bytes: bytes.clone(),
    };
    let refused = r.cache.send(msg(wrong.clone())).await.expect("mailbox");
    assert!(matches!(refused, Err(ImportError::Mismatch { .. })), "{refused:?}");
    assert!(r.store.index().manifest(&wrong).is_none());
    let right = Digest::sha256_of(&bytes);
    r.cache.send(msg(right.clone())).await.expect("mailbox").expect("stored");
    let k = RefKey { image: key("docker.io/library/loaded"), reference: tag("1") };
    assert_eq!(r.store.index().resolve(&k).map(|m| m.digest), Some(right));
}

#[actix_rt::test]
async fn a_growing_blob_asking_again_replaces_its_reservation_and_is_refused_past_the_free_space() {
    let r = rig(capped(5_000, &[]));
    let digest = Digest::sha256_of(b"growing");
    for (size, held) in [(3000, 0), (4000, 3000), (5000, 4000)] {
        let room = r.cache.send(MakeRoom { digest: digest.clone(), size, held }).await.expect("mailbox");
        assert_eq!(
            room,
            Room::Granted,
            "{size} bytes of one blob fit a 5000-byte cap: its reservation is not counted twice"
        );
    }
    // On the volume: room for more bytes than are free (less minFreeSpace) is refused, nothing being evictable.
    let r = rig(LifecycleSettings::default());
    r.memory.set_capacity(4000, 100_000);
    let room = r.cache.send(MakeRoom { digest: digest.clone(), size: 3000, held: 0 }).await.expect("mailbox");
    assert_eq!(room, Room::Granted);
    let room = r.cache.send(MakeRoom { digest: digest.clone(), size: 6000, held: 1000 }).await.expect("mailbox");
    assert_eq!(room, Room::TooLarge, "5000 more bytes do not fit in 4000 free");
}
