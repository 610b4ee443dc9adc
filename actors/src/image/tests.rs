//! The coalescer's unit tests: a real `ImageActor` and `CacheActor` over the in-memory store, with a scripted
//! upstream in the pool's place (a `Recipient<Fetch>`). Each test counts what reached the upstream and checks what
//! every waiter got.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{Activity, ImageActor};
use crate::body::BodyEvent;
use crate::cache::{CacheActor, ScrubSettings, Touches};
use crate::claim::BlobClaim;
use crate::digest::Digest;
use crate::error::{MirrorError, UpstreamError};
use crate::fetch::FetchContext;
use crate::messages::{Fetch, GetBlob, GetManifest, Retire, UpstreamResponse};
use crate::metrics::Metrics;
use crate::outcome::{Outcome, PassReason};
use crate::reference::{ImageKey, Reference};
use crate::store::memory::{MemoryStorage, SharedMemory};
use crate::store::Store;
use crate::transfer::Joined;
use crate::upstream::guard::{AddressGuard, UpstreamPolicy};
use crate::upstream::tls::{client_config, TlsOptions};
use crate::upstream::Upstream;

/// What the scripted upstream answers for one path.
#[derive(Clone)]
enum Script {
    /// 200 with these bytes in `chunks` pieces, `pause` apart; `digest` for `Docker-Content-Digest`.
    Body { bytes: Bytes, chunks: usize, pause: Duration, digest: Option<String> },
    /// This error before any response.
    Error(UpstreamError),
}

/// The pool's stand-in. Counts requests per (method, path).
struct FakeUpstream {
    scripts: HashMap<String, Script>,
    seen: Arc<Mutex<HashMap<String, usize>>>,
}

impl Actor for FakeUpstream {
    type Context = Context<Self>;
}

impl Handler<Fetch> for FakeUpstream {
    type Result = ResponseFuture<Result<UpstreamResponse, UpstreamError>>;

    fn handle(&mut self, msg: Fetch, _ctx: &mut Self::Context) -> Self::Result {
        let method = if msg.head { "HEAD" } else { "GET" };
        *self.seen.lock().expect("lock").entry(format!("{method} {}", msg.path)).or_default() += 1;
        let script = self.scripts.get(&msg.path).cloned();
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(64);
            let Some(script) = script else {
                let _ = tx.send(Ok(BodyEvent::End)).await;
                return Ok(UpstreamResponse {
                    status: 404,
                    content_type: None,
                    content_length: None,
                    docker_digest: None,
                    link: None,
                    etag: None,
                    content_range: None,
                    body: rx,
                });
            };
            let (bytes, chunks, pause, digest) = match script {
                Script::Error(e) => return Err(e),
                Script::Body { bytes, chunks, pause, digest } => (bytes, chunks, pause, digest),
            };
            let len = bytes.len() as u64;
            if msg.head {
                let _ = tx.send(Ok(BodyEvent::End)).await;
            } else {
                actix_rt::spawn(async move {
                    let step = bytes.len().div_ceil(chunks.max(1)).max(1);
                    for piece in bytes.chunks(step) {
                        tokio::time::sleep(pause).await;
                        if tx.send(Ok(BodyEvent::Data(Bytes::copy_from_slice(piece)))).await.is_err() {
                            return;
                        }
                    }
                    let _ = tx.send(Ok(BodyEvent::End)).await;
                });
            }
            Ok(UpstreamResponse {
                status: 200,
                content_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
                content_length: Some(len),
                docker_digest: digest,
                link: None,
                etag: None,
                content_range: None,
                body: rx,
            })
        })
    }
}

struct Rig {
    actor: Addr<ImageActor>,
    memory: Arc<MemoryStorage>,
    store: Store,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    metrics: Arc<Metrics>,
    stopped: Arc<AtomicBool>,
}

fn image() -> ImageKey {
    ImageKey::new("docker.io".parse().expect("ns"), "library/app".parse().expect("repo"))
}

fn blob_path(d: &Digest) -> String {
    format!("/v2/library/app/blobs/{d}")
}

impl Rig {
    fn start(scripts: HashMap<String, Script>) -> Rig {
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let pool = FakeUpstream { scripts, seen: seen.clone() }.start();
        let memory = SharedMemory::default();
        let store = Store::new(Arc::new(memory.clone()), 0);
        let metrics = Arc::new(Metrics::new());
        let scrub = ScrubSettings { interval: None, ..ScrubSettings::default() };
        let cache = CacheActor::new(store.clone(), Arc::new(Touches::default()), scrub, metrics.clone()).start();
        let upstream = Arc::new(Upstream {
            namespace: "docker.io".parse().expect("ns"),
            base_url: "http://upstream.test".into(),
            tls: client_config("", &TlsOptions { ca_only: true, ..TlsOptions::default() }).expect("tls"),
            credentials: crate::upstream::auth::Credentials::Anonymous,
            max_concurrent: 8,
            guard: Arc::new(AddressGuard::new(UpstreamPolicy::Any)),
            listed: true,
            tag_ttl: None,
            breaker: Default::default(),
            budget: Default::default(),
            access: Default::default(),
            pull_budget: Default::default(),
        });
        let cx = FetchContext {
            pool: pool.recipient(),
            cache,
            upstream,
            image: image(),
            store: store.clone(),
            metrics: metrics.clone(),
            freshness: crate::freshness::Freshness::default(),
            stale: Arc::default(),
            cluster: None,
            shared: false,
            bound: Default::default(),
        };
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        let activity = Arc::new(Activity::new(std::time::Instant::now()));
        let actor = ImageActor::new(cx, activity, Box::new(move |_| flag.store(true, Ordering::SeqCst))).start();
        Rig { actor, memory: memory.0, store, seen, metrics, stopped }
    }

    fn count(&self, key: &str) -> usize {
        self.seen.lock().expect("lock").get(key).copied().unwrap_or(0)
    }

    /// Ask for a blob and read it the way the front door would; `Err` carries what the waiter saw instead.
    async fn pull_blob(&self, digest: &Digest) -> Result<Bytes, String> {
        let claim = self
            .actor
            .send(GetBlob { digest: digest.clone(), from_peer: false })
            .await
            .expect("mailbox")
            .map_err(|e| e.to_string())?;
        let transfer = match claim {
            BlobClaim::Follow(t) => t,
            BlobClaim::Cached => return Ok(Bytes::from(self.memory.blob_bytes(digest).expect("cached"))),
            BlobClaim::PassThrough(r) => return Err(format!("pass through: {r}")),
        };
        match transfer.join().await {
            Joined::Stream { .. } => {}
            other => return Err(format!("{other:?}")),
        }
        let mut stream = transfer.stream(0, None);
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.map_err(|e| format!("stream: {e}"))?);
        }
        Ok(Bytes::from(out))
    }
}

fn body(bytes: &Bytes, chunks: usize, pause_ms: u64) -> Script {
    Script::Body { bytes: bytes.clone(), chunks, pause: Duration::from_millis(pause_ms), digest: None }
}

#[actix_rt::test]
async fn a_storm_for_one_blob_makes_one_fetch_and_every_waiter_gets_every_byte() {
    let bytes = Bytes::from((0..200_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let digest = Digest::sha256_of(&bytes);
    let rig = Rig::start(HashMap::from([(blob_path(&digest), body(&bytes, 8, 20))]));
    let pulls = (0..20).map(|_| rig.pull_blob(&digest));
    let results = futures_util::future::join_all(pulls).await;
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.as_ref().map(|b| b.len()), Ok(bytes.len()), "waiter {i}");
        assert!(r.as_ref().is_ok_and(|b| b == &bytes), "waiter {i} got other bytes");
    }
    assert_eq!(rig.count(&format!("GET {}", blob_path(&digest))), 1, "one upstream fetch for 20 waiters");
    assert_eq!(rig.memory.blob_bytes(&digest).as_deref(), Some(&bytes[..]), "committed to the store");
    assert!(rig.store.index().blob(&digest).is_some_and(|b| b.verified), "indexed as verified");
    // Later requests are answered from the cache, with no new fetch.
    assert_eq!(rig.pull_blob(&digest).await, Ok(bytes.clone()));
    assert_eq!(rig.count(&format!("GET {}", blob_path(&digest))), 1);
}

#[actix_rt::test]
async fn a_failed_fetch_fails_every_waiter_with_its_error_and_the_next_request_asks_again() {
    let digest = Digest::sha256_of(b"never arrives");
    let error = UpstreamError::Status { upstream: "docker.io".into(), status: 500 };
    let rig = Rig::start(HashMap::from([(blob_path(&digest), Script::Error(error))]));
    let results = futures_util::future::join_all((0..5).map(|_| rig.pull_blob(&digest))).await;
    for r in &results {
        let seen = r.as_ref().expect_err("must fail");
        assert!(seen.contains("Failed") && seen.contains("500"), "a named failure with the upstream's error: {seen}");
    }
    assert_eq!(rig.count(&format!("GET {}", blob_path(&digest))), 1, "the waiters shared one attempt");
    assert!(rig.pull_blob(&digest).await.is_err());
    assert_eq!(rig.count(&format!("GET {}", blob_path(&digest))), 2, "a failure is forgotten: the next request asks");
}

#[actix_rt::test]
async fn a_corrupt_body_never_completes_for_any_reader_and_nothing_is_stored() {
    let good = Bytes::from_static(b"the blob the digest names, long enough to come in pieces");
    let digest = Digest::sha256_of(&good);
    let bad = Bytes::from_static(b"the blob the digest names, long enough to come in piecez");
    let rig = Rig::start(HashMap::from([(blob_path(&digest), body(&bad, 4, 10))]));
    let results = futures_util::future::join_all((0..4).map(|_| rig.pull_blob(&digest))).await;
    for r in &results {
        let seen = r.as_ref().expect_err("a corrupt body must end in an error");
        assert!(seen.contains("hash to"), "{seen}");
    }
    assert!(rig.memory.blob_bytes(&digest).is_none(), "nothing committed");
    assert!(rig.store.index().blob(&digest).is_none(), "nothing indexed");
}

#[actix_rt::test]
async fn a_blob_larger_than_the_free_space_is_passed_through_without_stopping_other_caching() {
    let big = Bytes::from(vec![7u8; 10_000]);
    let small = Bytes::from_static(b"a small blob");
    let (big_digest, small_digest) = (Digest::sha256_of(&big), Digest::sha256_of(&small));
    let scripts =
        HashMap::from([(blob_path(&big_digest), body(&big, 2, 1)), (blob_path(&small_digest), body(&small, 1, 1))]);
    let rig = Rig::start(scripts);
    rig.memory.set_capacity(1_000, 1_000_000);
    let GetBlobReply::Follow(transfer) = get(&rig, &big_digest).await else { panic!("the first request leads") };
    assert!(matches!(transfer.join().await, Joined::PassThrough(PassReason::TooLarge { size: 10_000 })));
    assert!(matches!(transfer.outcome().await, Outcome::PassThrough(_)));
    let (mut handed, len) = transfer.take_handoff().expect("the leader's body is handed to one waiter");
    assert_eq!(len, Some(10_000));
    assert!(transfer.take_handoff().is_none(), "only once");
    let mut received = 0;
    while let Some(Ok(BodyEvent::Data(chunk))) = handed.recv().await {
        received += chunk.len();
    }
    assert_eq!(received, 10_000, "the handed-off body is the whole blob");
    // Asked again soon: passed through at once, without a new leader's fetch.
    assert!(matches!(get(&rig, &big_digest).await, GetBlobReply::PassThrough(PassReason::TooLarge { .. })));
    assert_eq!(rig.count(&format!("GET {}", blob_path(&big_digest))), 1);
    // Smaller blobs are still cached meanwhile.
    assert_eq!(rig.pull_blob(&small_digest).await, Ok(small.clone()));
    assert_eq!(rig.memory.blob_bytes(&small_digest).as_deref(), Some(&small[..]));
}

type GetBlobReply = BlobClaim;

async fn get(rig: &Rig, digest: &Digest) -> BlobClaim {
    rig.actor.send(GetBlob { digest: digest.clone(), from_peer: false }).await.expect("mailbox").expect("claim")
}

#[actix_rt::test]
async fn a_storm_for_one_tag_makes_one_head_and_one_get_and_records_the_tag() {
    let manifest = Bytes::from_static(
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#,
    );
    let digest = Digest::sha256_of(&manifest);
    let path = "/v2/library/app/manifests/v1".to_string();
    let script = Script::Body {
        bytes: manifest.clone(),
        chunks: 1,
        pause: Duration::from_millis(30),
        digest: Some(digest.to_string()),
    };
    let rig = Rig::start(HashMap::from([(path.clone(), script)]));
    let tag: Reference = "v1".parse().expect("tag");
    let asks = (0..10).map(|_| {
        rig.actor.send(GetManifest { reference: tag.clone(), cached: None, referrers_of: None, from_peer: false })
    });
    for reply in futures_util::future::join_all(asks).await {
        let reply = reply.expect("mailbox").expect("manifest");
        assert_eq!((reply.bytes.clone(), reply.meta.digest.clone()), (manifest.clone(), digest.clone()));
    }
    assert_eq!(rig.count(&format!("GET {path}")), 1, "one GET for ten waiters");
    assert!(rig.count(&format!("HEAD {path}")) <= 1);
    let records = rig.memory.records();
    assert_eq!(records.len(), 1, "the tag is recorded once: {records:?}");
    assert_eq!(records[0].digest, digest);
}

#[actix_rt::test]
async fn an_unknown_manifest_is_a_named_404_for_every_waiter() {
    let rig = Rig::start(HashMap::new());
    let tag: Reference = "missing".parse().expect("tag");
    let asks = (0..3).map(|_| {
        rig.actor.send(GetManifest { reference: tag.clone(), cached: None, referrers_of: None, from_peer: false })
    });
    for reply in futures_util::future::join_all(asks).await {
        assert!(matches!(reply.expect("mailbox"), Err(MirrorError::ManifestUnknown(_))));
    }
}

#[actix_rt::test]
async fn an_actor_retires_only_when_idle_long_enough_with_nothing_in_flight_and_tells_its_registry() {
    let manifest = Bytes::from_static(br#"{"schemaVersion":2}"#);
    let path = "/v2/library/app/manifests/slow".to_string();
    let script = Script::Body { bytes: manifest, chunks: 1, pause: Duration::from_millis(300), digest: None };
    let rig = Rig::start(HashMap::from([(path, script)]));
    let retire = |ms| rig.actor.send(Retire { idle_for: Duration::from_millis(ms) });
    let _ = rig
        .actor
        .send(GetManifest { reference: "x".parse().expect("tag"), cached: None, referrers_of: None, from_peer: false })
        .await;
    assert_eq!(rig.metrics.image_actors.get(), 1);
    assert!(!retire(200).await.expect("mailbox"), "busy a moment ago: not idle long enough");
    tokio::time::sleep(Duration::from_millis(250)).await;
    // A fetch in flight keeps it alive even when asked to retire at once.
    let slow = rig.actor.send(GetManifest {
        reference: "slow".parse().expect("tag"),
        cached: None,
        referrers_of: None,
        from_peer: false,
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!retire(0).await.expect("mailbox"), "a fetch is in flight");
    slow.await.expect("mailbox").expect("the slow manifest");
    assert!(!rig.stopped.load(Ordering::SeqCst));
    assert!(retire(0).await.expect("mailbox"), "idle with nothing in flight: retires");
    for _ in 0..40 {
        if rig.stopped.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(rig.stopped.load(Ordering::SeqCst), "told its registry");
    assert_eq!(rig.metrics.image_actors.get(), 0);
    let late = rig
        .actor
        .send(GetManifest { reference: "x".parse().expect("tag"), cached: None, referrers_of: None, from_peer: false })
        .await;
    assert!(late.is_err(), "a retired actor's mailbox is closed, which the front door answers with a fresh actor");
}
