//! `Mirror`: the front door the HTTP layer talks to, and the place the actors are started.
//!
//! A cache hit is answered on the caller's thread, from the shared index and the store: no actor round trip, no
//! lock beyond one index shard, no disk access for a manifest HEAD. A miss goes to the repository's `ImageActor`,
//! which coalesces it with every other request for the same object. Damage found on the way (a blob or manifest
//! missing, short or corrupt in the store) is reported to the cache actor, which un-indexes it, and the same request
//! then fetches the object again.
//!
//! Files: `admission` (which namespaces may be dialled), `actors` (the registry of live image actors), `manifests`
//! and `blobs` (serving), `loading` (misses looked up in the store while the index loads at start), `response` (what
//! the HTTP layer gets back).

mod actors;
mod admission;
mod ahead;
mod blobs;
mod loading;
mod manifests;
mod response;
mod tags;

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;

use self::actors::ImageActors;
use self::admission::{authority, canonical, host_of, Admission};
pub use self::ahead::RangeSpec;
pub use self::response::{BlobResponse, ManifestResponse};
use crate::access::{AccessRule, Refusal};
use crate::cache::{CacheActor, LifecycleSettings, ScrubSettings, Touches};
use crate::cache::{PruneReport, PruneRequest};
use crate::cluster::{Cluster, ClusterSettings};
use crate::error::{MirrorError, StoreError};
use crate::fetch::bound::BlobBound;
use crate::fetch::FetchContext;
use crate::freshness::{Freshness, StaleNotes, StaleReason, TagTtl};
use crate::image::ImageActor;
use crate::messages::{Fault, Flush, Invalidate, Prune, ReportDamage};
use crate::metrics::Metrics;
use crate::reference::{ImageKey, Namespace, Reference};
use crate::store::{FsStorage, Index, RefKey, S3Settings, S3Storage, Store, StoredObject, Version};
use crate::upstream::auth::Credentials;
use crate::upstream::bandwidth::{Bandwidth, Budget};
use crate::upstream::guard::{AddressGuard, ListedHosts, UpstreamPolicy};
use crate::upstream::pool::UpstreamPool;
use crate::upstream::pull_budget::PullBudget;
use crate::upstream::tls::{client_config, TlsOptions, TlsSetupError};
use crate::upstream::{Timeouts, Upstream};

/// The `ns` label of `ociregistry_denied_total{reason="namespace"}`: refused namespaces come from clients, so they
/// are not labels of their own.
const UNLISTED: &str = "(unlisted)";

/// Attempts at reaching a live image actor before giving up (each failed one found an actor that had just retired).
const ACTOR_ATTEMPTS: usize = 3;

/// One configured upstream registry.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// The namespace clients name it by.
    pub namespace: Namespace,
    /// `scheme://host[:port]` to dial.
    pub base_url: String,
    /// TLS options.
    pub tls: TlsOptions,
    /// Credentials.
    pub credentials: Credentials,
    /// `maxConcurrent`.
    pub max_concurrent: usize,
    /// This registry's `tagTtl`, when it overrides the mirror's.
    pub tag_ttl: Option<TagTtl>,
    /// This registry's `upstreamBandwidth` in bytes per second, within the mirror's.
    pub bandwidth: Option<NonZeroU64>,
    /// Which of its repositories are served (`allow`, `deny`).
    pub access: AccessRule,
    /// This registry's `rateLimitReserve`, when it overrides the mirror's.
    pub rate_limit_reserve: Option<u64>,
}

/// Everything `Mirror::start` needs.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// The cache directory (`imagePath`).
    pub image_path: PathBuf,
    /// The upstreams that may be dialled.
    pub upstreams: Vec<UpstreamSpec>,
    /// `upstreamBandwidth`: bytes per second all upstreams together may use.
    pub upstream_bandwidth: Option<NonZeroU64>,
    /// `rateLimitReserve`: pulls of an upstream's stated budget kept for clients (background work waits).
    pub rate_limit_reserve: u64,
    /// Timeouts toward upstreams.
    pub timeouts: Timeouts,
    /// Which unlisted namespaces may be dialled.
    pub policy: UpstreamPolicy,
    /// Bytes left free on the cache volume (`minFreeSpace`).
    pub min_free_space: u64,
    /// The largest blob fetched, and archive entry `load` decompresses (`maxBlobSize`); `None`: only the cache's
    /// own bound.
    pub max_blob_size: Option<u64>,
    /// How long an image actor lives without requests (`actorIdleTimeout`).
    pub actor_idle_timeout: Duration,
    /// The background scrub (`scrubInterval`).
    pub scrub: ScrubSettings,
    /// Tag freshness and stale-if-error (`tagTtl`, `alwaysPullLatest`, `revalidateTimeout`, `negativeTtl`).
    pub freshness: Freshness,
    /// `airGapped`: never dial an upstream; a miss is a 404 at once.
    pub air_gapped: bool,
    /// `rangePassThrough`: a range ahead of a blob's transfer is fetched from the upstream on its own (`ahead`).
    pub range_pass_through: bool,
    /// The size cap, pins and background pruning (`maxCacheSize`, `pinned`, `pruneConfig`).
    pub lifecycle: LifecycleSettings,
    /// Where bytes at rest live (`storage`): `imagePath` itself, or a bucket with `imagePath` as the local tier.
    pub storage: StorageChoice,
    /// The replica set, when several replicas share a bucket (`cluster`).
    pub cluster: Option<ClusterSettings>,
}

/// Where bytes at rest live.
#[derive(Debug, Clone)]
pub enum StorageChoice {
    /// A directory (`imagePath`).
    Filesystem,
    /// An S3-compatible bucket shared by replicas, with a local disk tier in `imagePath`.
    S3(Box<S3Settings>),
}

/// Why the mirror could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The cache directory could not be opened or is locked.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An upstream's TLS settings are unusable.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The bucket of `storage.s3` does not exist or refuses the credentials.
    #[error("storage.s3: {0}")]
    Bucket(String),
}

struct Inner {
    store: Store,
    cache: Addr<CacheActor>,
    pool: Addr<UpstreamPool>,
    admission: Admission,
    actors: ImageActors,
    touches: Arc<Touches>,
    metrics: Arc<Metrics>,
    freshness: Freshness,
    stale: Arc<StaleNotes>,
    air_gapped: bool,
    range_pass_through: bool,
    cluster: Option<Arc<Cluster>>,
    /// The store is shared with other replicas: what the index lacks may be in it.
    shared: bool,
    /// The most bytes a blob may take.
    bound: BlobBound,
}

/// See the module documentation. Cheap to clone; share one across all HTTP workers.
#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

impl Mirror {
    /// Lock the cache directory, build every upstream's TLS configuration, and start the actors. Returns at once: the
    /// index is loaded from the store in the background (cached content is served meanwhile). Must be called inside
    /// a running actix system.
    pub async fn start(config: MirrorConfig) -> Result<Mirror, StartError> {
        // Trusts nothing: unlisted namespaces are checked with it, and admitted ones connect through it.
        let guard = Arc::new(AddressGuard::new(config.policy));
        let hosts = config.upstreams.iter().map(|s| (s.namespace.as_str(), &*s.base_url));
        let listed_hosts = Arc::new(ListedHosts::new(hosts));
        let mut listed = HashMap::new();
        let shared_cap = config.upstream_bandwidth.map(|rate| Arc::new(Bandwidth::new(rate)));
        let mut caps = vec![("*".to_string(), config.upstream_bandwidth)];
        for spec in config.upstreams {
            let host = authority(&spec.base_url).map(|a| host_of(&a).to_string()).unwrap_or_default();
            let tls = client_config(&host, &spec.tls)?;
            let namespace = canonical(spec.namespace);
            caps.push((namespace.to_string(), spec.bandwidth));
            let own_cap = spec.bandwidth.map(|rate| Arc::new(Bandwidth::new(rate)));
            let upstream = Upstream {
                namespace: namespace.clone(),
                base_url: spec.base_url,
                tls,
                credentials: spec.credentials,
                max_concurrent: spec.max_concurrent,
                guard: Arc::new(AddressGuard::for_listed(config.policy, listed_hosts.clone())),
                listed: true,
                tag_ttl: spec.tag_ttl,
                breaker: Default::default(),
                budget: Budget::new(own_cap, shared_cap.clone()),
                access: spec.access,
                pull_budget: PullBudget::new(spec.rate_limit_reserve.unwrap_or(config.rate_limit_reserve)),
            };
            listed.insert(namespace, Arc::new(upstream));
        }
        let default_tls = client_config("", &TlsOptions::default())?;
        let (store, shared) = match config.storage {
            StorageChoice::Filesystem => {
                (Store::new(Arc::new(FsStorage::open(&config.image_path)?), config.min_free_space), false)
            }
            // With a bucket shared by replicas, what the index lacks (another replica stored it, or the listing has
            // not reached it) is looked for in the bucket and adopted, also after the load.
            StorageChoice::S3(settings) => {
                let bucket = S3Storage::open(*settings).await?;
                bucket.check_bucket().await.map_err(StartError::Bucket)?;
                (Store::new(Arc::new(bucket), config.min_free_space), true)
            }
        };
        let bound = BlobBound::new(config.max_blob_size, config.lifecycle.max_cache_size);
        let metrics = Arc::new(Metrics::new());
        metrics.bandwidth_caps(&caps);
        // The refusal counters show 0 from the start, for each registry with lists and for unlisted namespaces.
        for (ns, upstream) in &listed {
            if !upstream.access.is_open() {
                metrics.denied.with_label_values(&[ns.as_str(), "repository"]);
            }
        }
        if config.policy != UpstreamPolicy::Any {
            metrics.denied.with_label_values(&[UNLISTED, "namespace"]);
        }
        metrics.pull_budgets(listed.iter().map(|(ns, up)| (ns.as_str(), up.pull_budget.reserve())));
        let namespaces: Vec<&str> = caps.iter().map(|(ns, _)| ns.as_str()).filter(|ns| *ns != "*").collect();
        metrics.upstreams(&namespaces, &StaleReason::ALL.map(StaleReason::label));
        let touches = Arc::new(Touches::default());
        let cache = CacheActor::new(store.clone(), touches.clone(), config.scrub, metrics.clone())
            .with_lifecycle(config.lifecycle)
            .start();
        let cluster = config.cluster.as_ref().map(|c| Cluster::new(c, default_tls.clone()));
        let timeouts = config.timeouts;
        let pool_metrics = metrics.clone();
        let probe_within = config.freshness.revalidate_timeout;
        let pool = UpstreamPool::start_in_arbiter(&Arbiter::new().handle(), move |_| {
            UpstreamPool::new(timeouts, pool_metrics).probing_within(probe_within)
        });
        let inner = Inner {
            store,
            cache,
            pool,
            admission: Admission::new(
                listed,
                guard,
                default_tls,
                (Budget::new(None, shared_cap), config.rate_limit_reserve),
            ),
            actors: ImageActors::new(config.actor_idle_timeout),
            touches,
            metrics,
            freshness: config.freshness,
            stale: Arc::new(StaleNotes::default()),
            air_gapped: config.air_gapped,
            range_pass_through: config.range_pass_through,
            cluster,
            shared,
            bound,
        };
        Ok(Mirror { inner: Arc::new(inner) })
    }

    /// Wait until the index holds everything the store had at start (a shared bucket is listed in the background;
    /// a command such as `list` or `prune` needs the whole of it).
    pub async fn indexed(&self) {
        while self.index().loading() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The metrics every part records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Refresh the cache gauges and render every metric (for `/metrics`).
    pub async fn render_metrics(&self) -> String {
        let capacity = self.inner.store.capacity().await;
        self.inner.metrics.refresh(self.index(), capacity);
        self.inner.metrics.encode()
    }

    /// The shared index (for listings), read-only.
    pub fn index(&self) -> &Index {
        self.inner.store.index()
    }

    /// Image actors alive now.
    pub fn image_actors(&self) -> usize {
        self.inner.actors.len()
    }

    /// Forget a cached reference so its next pull asks the upstream (admin API). False when it was not cached.
    pub async fn invalidate(&self, image: &ImageKey, reference: &Reference) -> Result<bool, MirrorError> {
        let key = RefKey { image: image.clone(), reference: reference.clone() };
        self.inner.cache.send(Invalidate { key }).await?.map_err(|e| MirrorError::Internal(e.to_string()))
    }

    /// Whether the cache takes new objects now (readiness).
    pub async fn cache_writable(&self) -> bool {
        self.inner.store.probe_writable().await
    }

    /// Upstream fetches running now (graceful shutdown waits for them).
    pub fn fetches_in_flight(&self) -> i64 {
        let gauge = &self.inner.metrics.fetches_in_flight;
        gauge.with_label_values(&["manifest"]).get() + gauge.with_label_values(&["blob"]).get()
    }

    /// Record pending access times (shutdown).
    pub async fn flush(&self) {
        let _ = self.inner.cache.send(Flush).await;
    }

    /// Prune the cache now (see `cache::prune`); replies once the store has removed everything.
    pub async fn prune(&self, request: PruneRequest) -> Result<PruneReport, MirrorError> {
        Ok(self.inner.cache.send(Prune { request }).await?)
    }

    /// The cache actor, for preloading.
    pub(crate) fn cache(&self) -> &Addr<CacheActor> {
        &self.inner.cache
    }

    /// The store, for preloading.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The most bytes a blob may take, for preloading.
    pub(crate) fn blob_bound(&self) -> BlobBound {
        self.inner.bound
    }

    /// What a fetch for `image` runs with; admission decides whether its namespace may be dialled at all.
    async fn fetch_context(&self, image: &ImageKey) -> Result<FetchContext, MirrorError> {
        let upstream = self.inner.admission.upstream(image.ns()).await?;
        Ok(FetchContext {
            pool: self.inner.pool.clone().recipient(),
            cache: self.inner.cache.clone(),
            upstream,
            image: image.clone(),
            store: self.inner.store.clone(),
            metrics: self.inner.metrics.clone(),
            freshness: self.inner.freshness,
            stale: self.inner.stale.clone(),
            cluster: self.inner.cluster.clone(),
            shared: self.inner.shared,
            bound: self.inner.bound,
        })
    }

    /// Send `msg` to the repository's image actor (started on first use), retrying with a fresh actor when the one
    /// found has just retired.
    async fn ask<M>(&self, image: &ImageKey, msg: M) -> Result<M::Result, MirrorError>
    where
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        ImageActor: Handler<M>,
        <ImageActor as Actor>::Context: ToEnvelope<ImageActor, M>,
    {
        let actors = &self.inner.actors;
        let mut last = MirrorError::Internal("no image actor".into());
        for _ in 0..ACTOR_ATTEMPTS {
            let addr = match actors.get(image) {
                Some(addr) => addr,
                None => actors.start(image, self.fetch_context(image).await?),
            };
            match addr.send(msg.clone()).await {
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    actors.forget(image, &addr);
                    last = e.into();
                }
            }
        }
        Err(last)
    }

    /// Refuse `image` when its registry's allow or deny list does: before anything is looked up, created or asked,
    /// cached or not. Counted, and logged with the rule.
    fn admit(&self, image: &ImageKey) -> Result<(), MirrorError> {
        let Some(refusal) = self.refusal(image) else {
            return Ok(());
        };
        tracing::info!(repository = %image, rule = %refusal, "refused by the registry's allow/deny lists");
        self.inner.metrics.denied.with_label_values(&[image.ns().as_str(), "repository"]).inc();
        Err(MirrorError::RepositoryDenied { image: image.clone(), list: refusal.list() })
    }

    /// Why the registry's allow or deny list refuses `image`, if it does (unlisted namespaces have no lists).
    pub(crate) fn refusal(&self, image: &ImageKey) -> Option<Refusal> {
        self.inner.admission.listed.get(image.ns())?.access.check(image.repo()).err()
    }

    /// `result`, with a namespace refused by admission (`upstreamPolicy`) counted.
    fn counted<T>(&self, result: Result<T, MirrorError>) -> Result<T, MirrorError> {
        if let Err(MirrorError::Denied(_)) = &result {
            self.inner.metrics.denied.with_label_values(&[UNLISTED, "namespace"]).inc();
        }
        result
    }

    /// Tell the cache actor a stored object is damaged, and wait until it is un-indexed.
    async fn report_damage(&self, object: StoredObject, fault: Fault, version: Option<Version>) {
        let _ = self.inner.cache.send(ReportDamage { object, fault, version }).await;
    }
}
