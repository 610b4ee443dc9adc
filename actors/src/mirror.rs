//! `Mirror`: the front door the HTTP layer talks to, and the place the actors are started.
//!
//! A cache hit is answered here, on the caller's thread, from the shared index and the committed files: no actor
//! round trip, no lock beyond one index shard, no disk access for a manifest HEAD. A miss goes to the repository's
//! `ImageActor` (created on first use), which coalesces it with every other request for the same object. The front
//! door also decides which namespaces may be dialled at all: configured upstreams, and others only as
//! `upstreamPolicy` allows (under `public`, a host that resolves to any non-public address is refused); a refused
//! namespace gets `MirrorError::Denied` before any connection is attempted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use dashmap::DashMap;
use futures_util::stream::BoxStream;

use crate::cache::CacheActor;
use crate::digest::Digest;
use crate::error::{MirrorError, StoreError};
use crate::fetch::FetchContext;
use crate::image::ImageActor;
use crate::messages::{BlobReply, Fetch, GetBlob, GetManifest};
use crate::metrics::Metrics;
use crate::reference::{ImageKey, Named, Namespace, Reference};
use crate::store::{DirLock, ManifestMeta, RebuildReport, RefKey, Store};
use crate::transfer::{file_stream, verified_passthrough, Transfer};
use crate::upstream::auth::{pull_scope, Credentials};
use crate::upstream::guard::{AddressGuard, ListedHosts, Purpose, UpstreamPolicy};
use crate::upstream::pool::UpstreamPool;
use crate::upstream::tls::{client_config, TlsOptions, TlsSetupError};
use crate::upstream::{Timeouts, Upstream, DEFAULT_MAX_CONCURRENT};

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
}

/// Everything `Mirror::start` needs.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// The cache directory (`imagePath`).
    pub image_path: PathBuf,
    /// The upstreams that may be dialled.
    pub upstreams: Vec<UpstreamSpec>,
    /// Timeouts toward upstreams.
    pub timeouts: Timeouts,
    /// Which unlisted namespaces may be dialled.
    pub policy: UpstreamPolicy,
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
}

/// A manifest ready to serve.
#[derive(Debug, Clone)]
pub struct ManifestResponse {
    /// Digest, media type, size.
    pub meta: ManifestMeta,
    /// The bytes (absent when only the head was asked for and the manifest was cached).
    pub bytes: Option<Bytes>,
    /// Served from the cache rather than fetched now.
    pub from_cache: bool,
}

enum BlobSource {
    File(std::fs::File),
    Transfer(Transfer),
    Uncached(BoxStream<'static, Result<Bytes, std::io::Error>>),
}

/// A blob ready to serve.
pub struct BlobResponse {
    /// Its size, when known.
    pub size: Option<u64>,
    /// Served from the cache rather than fetched now.
    pub from_cache: bool,
    source: BlobSource,
}

impl BlobResponse {
    /// Whether `stream` can start at an offset (not for a blob passed through uncached).
    pub fn supports_range(&self) -> bool {
        !matches!(self.source, BlobSource::Uncached(_)) && self.size.is_some()
    }

    /// The bytes `start..end` (end exclusive; `None` = to the end). Offsets are ignored for uncached blobs.
    pub fn stream(self, start: u64, end: Option<u64>) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
        match self.source {
            BlobSource::File(file) => {
                let size = self.size.unwrap_or(0);
                file_stream(file, size, start, end.unwrap_or(size))
            }
            BlobSource::Transfer(t) => t.stream(start, end),
            BlobSource::Uncached(s) => s,
        }
    }
}

struct Inner {
    store: Store,
    cache: Addr<CacheActor>,
    pool: Addr<UpstreamPool>,
    upstreams: HashMap<Namespace, Arc<Upstream>>,
    /// Unlisted namespaces admitted by `upstreamPolicy`, built on first use.
    admitted: DashMap<Namespace, Arc<Upstream>>,
    guard: Arc<AddressGuard>,
    /// TLS configuration for admitted namespaces: the system roots.
    default_tls: Arc<rustls::ClientConfig>,
    metrics: Arc<Metrics>,
    images: DashMap<ImageKey, Addr<ImageActor>>,
    /// Image actors live on their own thread so HTTP workers only do HTTP.
    image_arbiter: ArbiterHandle,
    _lock: DirLock,
}

/// See the module documentation. Cheap to clone; share one across all HTTP workers.
#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

/// The canonical namespace for a configured registry name (Docker Hub has several names).
fn canonical(ns: Namespace) -> Namespace {
    if ns.is_docker_hub() {
        "docker.io".parse().unwrap_or(ns)
    } else {
        ns
    }
}

impl Mirror {
    /// Lock and index the cache directory, build every upstream's TLS configuration, and start the actors. Must be
    /// called inside a running actix system.
    pub fn start(config: MirrorConfig) -> Result<(Mirror, RebuildReport), StartError> {
        // Trusts nothing: unlisted namespaces are checked with it, and admitted ones connect through it.
        let guard = Arc::new(AddressGuard::new(config.policy));
        let listed = Arc::new(ListedHosts::new(config.upstreams.iter().map(|s| (s.namespace.as_str(), &*s.base_url))));
        let mut upstreams = HashMap::new();
        for spec in config.upstreams {
            let host = authority(&spec.base_url).map(|a| host_of(&a).to_string()).unwrap_or_default();
            let tls = client_config(&host, &spec.tls)?;
            let namespace = canonical(spec.namespace);
            let upstream = Upstream {
                namespace: namespace.clone(),
                base_url: spec.base_url,
                tls,
                credentials: spec.credentials,
                max_concurrent: spec.max_concurrent,
                guard: Arc::new(AddressGuard::for_listed(config.policy, listed.clone())),
                listed: true,
            };
            upstreams.insert(namespace, Arc::new(upstream));
        }
        let default_tls = client_config("", &TlsOptions::default())?;
        let (store, lock) = Store::open(&config.image_path)?;
        let report = store.rebuild();
        let scrub = store.clone();
        actix_rt::spawn(async move {
            if let Ok(bad) = tokio::task::spawn_blocking(move || scrub.scrub_blobs()).await {
                if bad > 0 {
                    tracing::warn!(quarantined = bad, "blob scrub moved corrupt blobs to quarantine");
                } else {
                    tracing::debug!("blob scrub found every cached blob intact");
                }
            }
        });
        let cache = CacheActor::new(store.clone()).start();
        let timeouts = config.timeouts;
        let pool_arbiter = Arbiter::new().handle();
        let metrics = Arc::new(Metrics::new());
        let pool_metrics = metrics.clone();
        let pool = UpstreamPool::start_in_arbiter(&pool_arbiter, move |_| UpstreamPool::new(timeouts, pool_metrics));
        let image_arbiter = Arbiter::new().handle();
        let inner = Inner {
            store,
            cache,
            pool,
            upstreams,
            admitted: DashMap::new(),
            guard,
            default_tls,
            metrics,
            images: DashMap::new(),
            image_arbiter,
            _lock: lock,
        };
        Ok((Mirror { inner: Arc::new(inner) }, report))
    }

    /// The metrics every part records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Refresh the cache gauges and render every metric (for `/metrics`).
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.refresh(self.index(), self.inner.store.layout().root());
        self.inner.metrics.encode()
    }

    /// Forget a cached reference so its next pull asks the upstream (admin API). False when it was not cached.
    pub async fn invalidate(&self, image: &ImageKey, reference: &Reference) -> Result<bool, MirrorError> {
        let key = RefKey { image: image.clone(), reference: reference.clone() };
        self.inner
            .cache
            .send(crate::messages::Invalidate { key })
            .await?
            .map_err(|e| MirrorError::Internal(e.to_string()))
    }

    /// Whether the cache directory takes new files now (readiness).
    pub async fn cache_writable(&self) -> bool {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || store.probe_writable()).await.unwrap_or(false)
    }

    /// Upstream fetches running now (graceful shutdown waits for them).
    pub fn fetches_in_flight(&self) -> i64 {
        let gauge = &self.inner.metrics.fetches_in_flight;
        gauge.with_label_values(&["manifest"]).get() + gauge.with_label_values(&["blob"]).get()
    }

    /// The shared index (for metrics and listings).
    pub fn index(&self) -> &crate::store::Index {
        self.inner.store.index()
    }

    /// The upstream for a namespace: a configured one, or one `upstreamPolicy` admits; otherwise `Denied`, decided
    /// before any connection is made.
    pub async fn upstream(&self, ns: &Namespace) -> Result<Arc<Upstream>, MirrorError> {
        if let Some(listed) = self.inner.upstreams.get(ns) {
            return Ok(listed.clone());
        }
        if let Some(admitted) = self.inner.admitted.get(ns) {
            return Ok(admitted.clone());
        }
        let guard = &self.inner.guard;
        match guard.policy() {
            UpstreamPolicy::Listed => {
                tracing::info!(namespace = %ns, "refused: not a listed registry (upstreamPolicy: listed)");
                return Err(MirrorError::Denied(ns.clone()));
            }
            UpstreamPolicy::Public => {
                let host = host_of(ns.as_str());
                let port = port_of(ns.as_str()).unwrap_or(443);
                if let Err(refused) = guard.resolve(host, port, Purpose::Registry).await {
                    tracing::info!(namespace = %ns, reason = %refused, "refused by upstreamPolicy: public");
                    return Err(MirrorError::Denied(ns.clone()));
                }
            }
            UpstreamPolicy::Any => {}
        }
        let upstream = Arc::new(Upstream {
            namespace: ns.clone(),
            base_url: Upstream::default_base_url(ns, true),
            tls: self.inner.default_tls.clone(),
            credentials: Credentials::Anonymous,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            guard: guard.clone(),
            listed: false,
        });
        Ok(self.inner.admitted.entry(ns.clone()).or_insert(upstream).clone())
    }

    async fn image_actor(&self, image: &ImageKey) -> Result<Addr<ImageActor>, MirrorError> {
        if let Some(addr) = self.inner.images.get(image) {
            return Ok(addr.clone());
        }
        let upstream = self.upstream(image.ns()).await?;
        let cx = FetchContext {
            pool: self.inner.pool.clone(),
            cache: self.inner.cache.clone(),
            upstream,
            image: image.clone(),
            store: self.inner.store.clone(),
            metrics: self.inner.metrics.clone(),
        };
        let arbiter = self.inner.image_arbiter.clone();
        // The entry API makes creation atomic: two workers asking at once get the same actor.
        let addr = self
            .inner
            .images
            .entry(image.clone())
            .or_insert_with(|| ImageActor::start_in_arbiter(&arbiter, move |_| ImageActor::new(cx)))
            .clone();
        Ok(addr)
    }

    fn cached_manifest(&self, image: &ImageKey, reference: &Reference) -> Option<ManifestMeta> {
        let key = RefKey { image: image.clone(), reference: reference.clone() };
        match self.index().resolve(&key) {
            Some(meta) => Some(meta),
            None => match reference {
                Reference::Digest(d) => self.index().manifest(d),
                Reference::Tag(_) => None,
            },
        }
    }

    /// A manifest by tag or digest: from the cache, or fetched once for all concurrent askers. `want_body: false`
    /// (HEAD) answers a cached manifest from memory.
    pub async fn manifest(
        &self,
        image: &ImageKey,
        reference: &Reference,
        want_body: bool,
    ) -> Result<ManifestResponse, MirrorError> {
        let hit = self.cached_manifest(image, reference);
        let result = if hit.is_some() { "hit" } else { "miss" };
        self.inner.metrics.cache_requests.with_label_values(&["manifest", result]).inc();
        if let Some(meta) = hit {
            self.inner.metrics.cached_pulls_by_ns.with_label_values(&[image.ns().as_str()]).inc();
            tracing::info!("serving manifest from cache: \"{}\"", Named(image, reference));
            if !want_body {
                return Ok(ManifestResponse { meta, bytes: None, from_cache: true });
            }
            let store = self.inner.store.clone();
            let digest = meta.digest.clone();
            match tokio::task::spawn_blocking(move || store.read_manifest(&digest)).await {
                Ok(Ok(bytes)) => return Ok(ManifestResponse { meta, bytes: Some(bytes.into()), from_cache: true }),
                other => {
                    tracing::warn!(digest = %meta.digest, "cached manifest unreadable ({other:?}); fetching again")
                }
            }
        }
        let actor = self.image_actor(image).await?;
        let reply = actor.send(GetManifest { reference: reference.clone() }).await??;
        Ok(ManifestResponse { meta: reply.meta, bytes: Some(reply.bytes), from_cache: false })
    }

    /// A blob: from the cache, from the transfer already fetching it, or from a new single fetch.
    pub async fn blob(&self, image: &ImageKey, digest: &Digest) -> Result<BlobResponse, MirrorError> {
        let resp = self.blob_from_anywhere(image, digest).await;
        if let Ok(resp) = &resp {
            // Counted by where the bytes finally came from: a request that found the blob committed by the time its
            // claim was answered is a hit too.
            let result = if resp.from_cache { "hit" } else { "miss" };
            self.inner.metrics.cache_requests.with_label_values(&["blob", result]).inc();
        }
        resp
    }

    async fn blob_from_anywhere(&self, image: &ImageKey, digest: &Digest) -> Result<BlobResponse, MirrorError> {
        if let Some(resp) = self.cached_blob(digest) {
            return Ok(resp);
        }
        let actor = self.image_actor(image).await?;
        match actor.send(GetBlob { digest: digest.clone() }).await?? {
            BlobReply::Cached(_) => self
                .cached_blob(digest)
                .ok_or_else(|| MirrorError::Internal(format!("blob {digest} vanished from the cache"))),
            BlobReply::Transfer(transfer) => match transfer.wait_started().await {
                Ok(size) => Ok(BlobResponse { size, from_cache: false, source: BlobSource::Transfer(transfer) }),
                Err(MirrorError::Uncacheable) => self.uncached_blob(image, digest).await,
                Err(e) => Err(e),
            },
            BlobReply::Uncached => self.uncached_blob(image, digest).await,
        }
    }

    fn cached_blob(&self, digest: &Digest) -> Option<BlobResponse> {
        let size = self.index().blob(digest)?;
        match self.inner.store.open_blob(digest) {
            Ok(file) => Some(BlobResponse { size: Some(size), from_cache: true, source: BlobSource::File(file) }),
            Err(e) => {
                tracing::warn!(blob = %digest, error = %e, "indexed blob cannot be opened; fetching again");
                None
            }
        }
    }

    async fn uncached_blob(&self, image: &ImageKey, digest: &Digest) -> Result<BlobResponse, MirrorError> {
        let upstream = self.upstream(image.ns()).await?;
        let name = upstream.namespace.to_string();
        let resp = self.inner.pool.send(blob_fetch(upstream, image, digest, false)).await??;
        if resp.status == 404 {
            return Err(MirrorError::BlobUnknown(digest.clone()));
        }
        let size = resp.content_length;
        let stream = verified_passthrough(digest.clone(), size, name, resp.body);
        Ok(BlobResponse { size, from_cache: false, source: BlobSource::Uncached(stream) })
    }

    /// A blob's size without its bytes: from the index, else a HEAD to the upstream (nothing is fetched or cached).
    pub async fn blob_size(&self, image: &ImageKey, digest: &Digest) -> Result<Option<u64>, MirrorError> {
        if let Some(size) = self.index().blob(digest) {
            return Ok(Some(size));
        }
        let upstream = self.upstream(image.ns()).await?;
        let resp = self.inner.pool.send(blob_fetch(upstream, image, digest, true)).await??;
        if resp.status == 404 {
            return Err(MirrorError::BlobUnknown(digest.clone()));
        }
        Ok(resp.content_length)
    }
}

/// A GET or HEAD of a blob that the front door sends itself (uncached pass-through, blob HEAD).
fn blob_fetch(upstream: Arc<Upstream>, image: &ImageKey, digest: &Digest, head: bool) -> Fetch {
    let path = crate::fetch::blob_path(image, digest);
    let scope = Some(pull_scope(image.repo().as_str()));
    Fetch { upstream, path, head, accept: None, scope, range_from: None }
}

/// `host:port` of a URL (the port made explicit).
fn authority(url: &str) -> Option<String> {
    let uri = url.parse::<awc::http::Uri>().ok()?;
    let host = uri.host()?;
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
    Some(format!("{host}:{port}"))
}

/// The host part of `host[:port]` (IPv6 stays bracketed).
fn host_of(host_port: &str) -> &str {
    match host_port.rfind(':') {
        Some(i) if !host_port[i..].contains(']') => &host_port[..i],
        _ => host_port,
    }
}

/// The port of `host[:port]`, if any.
fn port_of(host_port: &str) -> Option<u16> {
    let i = host_port.rfind(':')?;
    host_port[i + 1..].parse().ok().filter(|_| !host_port[i..].contains(']'))
}
