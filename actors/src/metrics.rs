//! Prometheus metrics: every metric this server exports, in one place.
//!
//! The Go server's names are kept as they were so existing dashboards keep working; some break Prometheus naming
//! rules (a counter without `_total`, gauges ending in `_total`) and are listed in docs/operations.md as deliberate
//! exceptions. The rest follow the rules. The set is created once at start and passed to whoever records into it
//! (no global registry). Gauges that describe the cache are computed at scrape time (`refresh`).

use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::store::{Capacity, Index};

/// See the module documentation. Fields are the metrics; their help texts say what each counts.
pub struct Metrics {
    registry: Registry,
    /// Go: manifest pulls answered from the cache, by namespace.
    pub cached_pulls_by_ns: IntCounterVec,
    /// Go: manifest pulls fetched from the upstream, by namespace (Go name, no `_total`).
    pub upstream_pulls_by_ns: IntCounterVec,
    /// Go: manifest requests answered.
    pub manifest_pulls: IntCounter,
    /// Go: blob requests answered.
    pub blob_pulls: IntCounter,
    /// Go: `/v2/` requests.
    pub v2_api_endpoint_hits: IntCounter,
    /// Go: requests answered with an error.
    pub api_errors: IntCounter,
    go_blob_bytes: IntGauge,
    go_manifest_bytes: IntGauge,
    go_manifest_count: IntGauge,
    go_blob_count: IntGauge,
    /// Request latency to the response head, by route kind, method and status class.
    pub request_duration: HistogramVec,
    /// Body bytes sent to clients, by namespace.
    pub served_bytes: IntCounterVec,
    /// Upstream responses by namespace, kind (manifest, blob, token) and status.
    pub upstream_fetches: IntCounterVec,
    /// Body bytes received from upstreams, by namespace and kind.
    pub upstream_bytes: IntCounterVec,
    /// Time bulk transfers waited for the bandwidth budget, by namespace.
    pub bandwidth_wait: CounterVec,
    /// `upstreamBandwidth` in bytes per second, by namespace (`*`: all upstreams together).
    bandwidth_limit: IntGaugeVec,
    /// The pull budget each upstream's answers state (`RateLimit-Limit`), by namespace.
    pub ratelimit_limit: IntGaugeVec,
    /// Pulls left as the last answer said (`RateLimit-Remaining`), by namespace.
    pub ratelimit_remaining: IntGaugeVec,
    /// The budget's window in seconds (`w=`), by namespace.
    pub ratelimit_window: IntGaugeVec,
    /// `rateLimitReserve`, by namespace.
    pub ratelimit_reserve: IntGaugeVec,
    /// Background manifest GETs held back to keep the reserve, by namespace.
    pub ratelimit_deferred: IntCounterVec,
    /// Upstream failures by namespace and reason.
    pub upstream_errors: IntCounterVec,
    /// Clients served by one upstream fetch (the coalescing ratio), by kind.
    pub fetch_waiters: HistogramVec,
    /// Upstream fetches running now, by kind.
    pub fetches_in_flight: IntGaugeVec,
    /// Front-door lookups by kind and result (hit, miss).
    pub cache_requests: IntCounterVec,
    /// Bearer tokens fetched, by namespace.
    pub token_fetches: IntCounterVec,
    /// Image actors alive (one per repository with recent requests).
    pub image_actors: IntGauge,
    /// Damaged objects found in the store (and fetched again), by kind and fault.
    pub store_faults: IntCounterVec,
    /// Cached tags served without the upstream's confirmation, by namespace and reason.
    pub stale_serves: IntCounterVec,
    /// Requests refused before anything was asked or served, by namespace and reason (namespace, repository).
    pub denied: IntCounterVec,
    /// Circuit breaker state per upstream (0 closed, 1 open, 2 half-open).
    pub breaker_state: IntGaugeVec,
    /// Images removed from the cache, by reason (cap, disk, prune).
    pub evictions: IntCounterVec,
    /// Bytes of manifests and blobs removed from the cache, by reason (cap, disk, prune).
    pub evicted_bytes: IntCounterVec,
    /// `maxCacheSize` (0: no cap).
    pub cache_max_bytes: IntGauge,
    cache_bytes: IntGaugeVec,
    cache_entries: IntGaugeVec,
    volume_free: IntGauge,
    volume_size: IntGauge,
    cache_loading: IntGauge,
    /// Time since each evicted image's last pull, by reason (issue 24: the cap is too small when it is short).
    pub eviction_idle: HistogramVec,
    /// `ociregistry_range_passthrough_total{ns}`: ranges answered from the upstream ahead of the blob's transfer.
    pub range_passthrough: IntCounterVec,
    /// `ociregistry_range_passthrough_bytes_total{ns}`: their bytes passed on to clients.
    pub range_passthrough_bytes: IntCounterVec,
    /// The process's open file descriptors and their soft limit (standard names), read at scrape time.
    open_fds: IntGauge,
    max_fds: IntGauge,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let m = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition");
    r.register(Box::new(m.clone())).expect("unique metric name");
    m
}

fn float_counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    let m = CounterVec::new(Opts::new(name, help), labels).expect("metric definition");
    r.register(Box::new(m.clone())).expect("unique metric name");
    m
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let m = IntCounter::with_opts(Opts::new(name, help)).expect("metric definition");
    r.register(Box::new(m.clone())).expect("unique metric name");
    m
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let m = IntGauge::with_opts(Opts::new(name, help)).expect("metric definition");
    r.register(Box::new(m.clone())).expect("unique metric name");
    m
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric definition");
    r.register(Box::new(m.clone())).expect("unique metric name");
    m
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let m = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("metric definition");
    r.register(Box::new(m.clone())).expect("unique metric name");
    m
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Define and register every metric. The definitions are constant, so this cannot fail at run time.
    pub fn new() -> Metrics {
        let r = Registry::new();
        let latency =
            vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
        let waiters = vec![1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0, 500.0, 1000.0];
        Metrics {
            cached_pulls_by_ns: counter_vec(&r, "ociregistry_cached_pulls_by_ns_total", "Manifest pulls served from the cache, by namespace (Go server name).", &["ns"]),
            upstream_pulls_by_ns: counter_vec(&r, "ociregistry_upstream_pulls_by_ns", "Manifest pulls fetched from the upstream, by namespace (Go server name).", &["ns"]),
            manifest_pulls: counter(&r, "ociregistry_manifest_pulls_total", "Manifest requests answered (Go server name)."),
            blob_pulls: counter(&r, "ociregistry_blob_pulls_total", "Blob requests answered (Go server name)."),
            v2_api_endpoint_hits: counter(&r, "ociregistry_v2_api_endpoint_hits_total", "Requests to /v2/ (Go server name)."),
            api_errors: counter(&r, "ociregistry_api_errors_total", "Requests answered with an error (Go server name)."),
            go_blob_bytes: gauge(&r, "ociregistry_blob_bytes_on_disk_total", "Bytes of cached blobs (Go server name)."),
            go_manifest_bytes: gauge(&r, "ociregistry_manifest_bytes_on_disk_total", "Bytes of cached manifests (Go server name)."),
            go_manifest_count: gauge(&r, "ociregistry_cached_manifest_count", "Cached manifests (Go server name)."),
            go_blob_count: gauge(&r, "ociregistry_cached_blob_count", "Cached blobs (Go server name)."),
            request_duration: histogram_vec(&r, "ociregistry_http_request_duration_seconds", "Time from request to response head, by route kind, method and status class.", &["route", "method", "status_class"], latency),
            served_bytes: counter_vec(&r, "ociregistry_served_bytes_total", "Body bytes sent to clients, by namespace.", &["ns"]),
            upstream_fetches: counter_vec(&r, "ociregistry_upstream_fetches_total", "Upstream responses, by namespace, kind (manifest, blob, token) and HTTP status.", &["ns", "kind", "status"]),
            upstream_bytes: counter_vec(&r, "ociregistry_upstream_bytes_total", "Body bytes received from upstreams, by namespace and kind.", &["ns", "kind"]),
            bandwidth_wait: float_counter_vec(&r, "ociregistry_upstream_bandwidth_wait_seconds_total", "Time transfers of large blobs from an upstream waited for its upstreamBandwidth budget, by namespace.", &["ns"]),
            bandwidth_limit: gauge_vec(&r, "ociregistry_upstream_bandwidth_limit_bytes", "upstreamBandwidth in bytes per second, by namespace (ns=\"*\": all upstreams together); absent where no cap is set.", &["ns"]),
            ratelimit_limit: gauge_vec(&r, "ociregistry_upstream_ratelimit_limit", "The pull budget an upstream's answers state (RateLimit-Limit: pulls per window), by namespace; absent until an answer carries it.", &["ns"]),
            ratelimit_remaining: gauge_vec(&r, "ociregistry_upstream_ratelimit_remaining", "Pulls left in the window, as an upstream's last answer stated (RateLimit-Remaining), by namespace; absent until an answer carries it.", &["ns"]),
            ratelimit_window: gauge_vec(&r, "ociregistry_upstream_ratelimit_window_seconds", "The window of an upstream's pull budget in seconds (RateLimit-*: w=), by namespace; absent until an answer states it.", &["ns"]),
            ratelimit_reserve: gauge_vec(&r, "ociregistry_upstream_ratelimit_reserve", "rateLimitReserve: pulls of the budget kept for clients; at or below it, background work makes no manifest GET. By namespace.", &["ns"]),
            ratelimit_deferred: counter_vec(&r, "ociregistry_upstream_ratelimit_deferred_total", "Manifest GETs of background work (preload, load of an image list) held back while the pull budget was at or below rateLimitReserve, by namespace.", &["ns"]),
            upstream_errors: counter_vec(&r, "ociregistry_upstream_errors_total", "Upstream failures, by namespace and reason (timeout, connect, 429, 5xx, digest_mismatch, auth, refused).", &["ns", "reason"]),
            fetch_waiters: histogram_vec(&r, "ociregistry_fetch_waiters", "Client requests served by one upstream fetch (the coalescing ratio), by kind.", &["kind"], waiters),
            fetches_in_flight: gauge_vec(&r, "ociregistry_fetches_in_flight", "Upstream fetches running now, by kind.", &["kind"]),
            cache_requests: counter_vec(&r, "ociregistry_cache_requests_total", "Manifests and blobs served, by kind and by where they came from: hit (the cache) or miss (an upstream fetch).", &["kind", "result"]),
            token_fetches: counter_vec(&r, "ociregistry_token_fetches_total", "Bearer tokens fetched from upstream token endpoints, by namespace.", &["ns"]),
            image_actors: gauge(&r, "ociregistry_image_actors", "Image actors alive: repositories with requests within actorIdleTimeout or fetches running."),
            stale_serves: counter_vec(&r, "ociregistry_stale_serves_total", "Cached tags served without the upstream's confirmation because checking failed, by namespace and reason (timeout, unreachable, 429, 5xx, auth, gone, fetch_failed, breaker_open).", &["ns", "reason"]),
            denied: counter_vec(&r, "ociregistry_denied_total", "Requests refused with DENIED before anything was asked upstream or served from the cache, by namespace and reason: repository (a registry's allow or deny list; ns is the registry) or namespace (not a registry this mirror may dial; ns is (unlisted)).", &["ns", "reason"]),
            breaker_state: gauge_vec(&r, "ociregistry_upstream_breaker_state", "Circuit breaker of each upstream: 0 closed, 1 open (requests fail at once, cached tags are not checked), 2 half-open (one probe in flight).", &["ns"]),
            store_faults: counter_vec(&r, "ociregistry_store_faults_total", "Damaged objects found in the cache store and fetched again, by kind (blob, manifest) and fault (missing, corrupt, size, unreadable, changed).", &["kind", "fault"]),
            evictions: counter_vec(&r, "ociregistry_evictions_total", "Images removed from the cache, by reason: cap (maxCacheSize), disk (a full volume), prune.", &["reason"]),
            evicted_bytes: counter_vec(&r, "ociregistry_evicted_bytes_total", "Bytes of manifests and blobs removed from the cache, by reason: cap, disk, prune.", &["reason"]),
            cache_max_bytes: gauge(&r, "ociregistry_cache_max_bytes", "The cache's size cap, maxCacheSize, in bytes (0: no cap); compare with the sum of ociregistry_cache_bytes."),
            cache_bytes: gauge_vec(&r, "ociregistry_cache_bytes", "Bytes in the cache, by kind (blob, manifest).", &["kind"]),
            cache_entries: gauge_vec(&r, "ociregistry_cache_entries", "Entries in the cache, by kind (blob, manifest, reference).", &["kind"]),
            volume_free: gauge(&r, "ociregistry_cache_volume_free_bytes", "Free bytes on the cache filesystem (for unprivileged users)."),
            volume_size: gauge(&r, "ociregistry_cache_volume_size_bytes", "Size of the cache filesystem in bytes."),
            cache_loading: gauge(&r, "ociregistry_cache_index_loading", "1 while the cache's index is still being loaded from the store after start (cached content is served meanwhile), else 0."),
            eviction_idle: histogram_vec(&r, "ociregistry_eviction_idle_seconds", "Time from each evicted image's last pull to its eviction, by reason (cap, disk, prune); many under an hour mean the cache is too small for what is pulled.", &["reason"], EVICTION_IDLE_BUCKETS.to_vec()),
            range_passthrough: counter_vec(&r, "ociregistry_range_passthrough_total", "Blob ranges answered with a ranged GET to the upstream, ahead of the blob's own transfer (rangePassThrough): bytes as the upstream sent them, not verified against the digest by the mirror. By namespace.", &["ns"]),
            range_passthrough_bytes: counter_vec(&r, "ociregistry_range_passthrough_bytes_total", "Bytes of blob ranges passed on to clients from ranged upstream GETs ahead of the blob's transfer (rangePassThrough), by namespace.", &["ns"]),
            open_fds: gauge(&r, "process_open_fds", "Number of open file descriptors."),
            max_fds: gauge(&r, "process_max_fds", "Maximum number of open file descriptors (the soft RLIMIT_NOFILE)."),
            registry: r,
        }
    }

    /// Show the bandwidth caps (`ns`, bytes per second; `*` for all upstreams together) and start every listed
    /// namespace's wait counter at 0 when any cap is set, so a dashboard shows 0 rather than nothing.
    pub fn bandwidth_caps(&self, caps: &[(String, Option<std::num::NonZeroU64>)]) {
        if caps.iter().all(|(_, cap)| cap.is_none()) {
            return;
        }
        for (ns, cap) in caps {
            if let Some(rate) = cap {
                self.bandwidth_limit.with_label_values(&[ns]).set(i64::try_from(rate.get()).unwrap_or(i64::MAX));
            }
            if ns != "*" {
                self.bandwidth_wait.with_label_values(&[ns]).inc_by(0.0);
            }
        }
    }

    /// Show each listed upstream's `rateLimitReserve` and start its deferred counter at 0.
    pub fn pull_budgets<'a>(&self, reserves: impl IntoIterator<Item = (&'a str, u64)>) {
        for (ns, reserve) in reserves {
            self.ratelimit_reserve.with_label_values(&[ns]).set(i64::try_from(reserve).unwrap_or(i64::MAX));
            self.ratelimit_deferred.with_label_values(&[ns]).inc_by(0);
        }
    }

    /// Start every per-upstream counter a dashboard sums or an alert takes `increase` of at 0 for each configured
    /// upstream namespace, and the cache's hit/miss and eviction counters for every label, so that a panel shows 0 rather than "No
    /// data" and the first event is an increase Prometheus can see (a series born at 1 has none). `stale_reasons`
    /// are the `reason` labels of `ociregistry_stale_serves_total` (freshness owns them).
    pub fn upstreams(&self, namespaces: &[&str], stale_reasons: &[&str]) {
        for ns in namespaces {
            self.token_fetches.with_label_values(&[ns]).inc_by(0);
            self.cached_pulls_by_ns.with_label_values(&[ns]).inc_by(0);
            self.upstream_pulls_by_ns.with_label_values(&[ns]).inc_by(0);
            self.served_bytes.with_label_values(&[ns]).inc_by(0);
            self.breaker_state.with_label_values(&[ns]).set(0);
            for kind in ["manifest", "blob"] {
                self.upstream_bytes.with_label_values(&[ns, kind]).inc_by(0);
            }
            for reason in ERROR_REASONS {
                self.upstream_errors.with_label_values(&[ns, reason]).inc_by(0);
            }
            for reason in stale_reasons {
                self.stale_serves.with_label_values(&[ns, reason]).inc_by(0);
            }
            self.range_passthrough.with_label_values(&[ns]).inc_by(0);
            self.range_passthrough_bytes.with_label_values(&[ns]).inc_by(0);
        }
        for kind in ["manifest", "blob"] {
            for result in ["hit", "miss"] {
                self.cache_requests.with_label_values(&[kind, result]).inc_by(0);
            }
        }
        for reason in ["cap", "disk", "prune"] {
            self.evictions.with_label_values(&[reason]).inc_by(0);
            self.evicted_bytes.with_label_values(&[reason]).inc_by(0);
            let _ = self.eviction_idle.with_label_values(&[reason]);
        }
    }

    /// The process's file descriptors now (`process_open_fds`) and its soft limit (`process_max_fds`; `None`:
    /// unlimited, not set). The server reads them, as it reads its limits at start; the actors only show them.
    pub fn process_fds(&self, open: u64, max: Option<u64>) {
        self.open_fds.set(i64::try_from(open).unwrap_or(i64::MAX));
        if let Some(max) = max {
            self.max_fds.set(i64::try_from(max).unwrap_or(i64::MAX));
        }
    }

    /// Update the gauges that describe the cache.
    pub fn refresh(&self, index: &Index, capacity: Option<Capacity>) {
        self.cache_loading.set(i64::from(index.loading()));
        let (blobs, blob_bytes) = index.blob_totals();
        let (manifests, manifest_bytes) = index.manifest_totals();
        self.go_blob_bytes.set(blob_bytes as i64);
        self.go_manifest_bytes.set(manifest_bytes as i64);
        self.go_blob_count.set(blobs as i64);
        self.go_manifest_count.set(manifests as i64);
        self.cache_bytes.with_label_values(&["blob"]).set(blob_bytes as i64);
        self.cache_bytes.with_label_values(&["manifest"]).set(manifest_bytes as i64);
        self.cache_entries.with_label_values(&["blob"]).set(blobs as i64);
        self.cache_entries.with_label_values(&["manifest"]).set(manifests as i64);
        self.cache_entries.with_label_values(&["reference"]).set(index.ref_count() as i64);
        if let Some(c) = capacity {
            self.volume_free.set(c.free as i64);
            self.volume_size.set(c.total as i64);
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Buckets of `ociregistry_eviction_idle_seconds`: a minute, ten minutes, an hour (the alert's bound), six hours, a
/// day, a week, thirty days.
const EVICTION_IDLE_BUCKETS: [f64; 7] = [60.0, 600.0, 3600.0, 21600.0, 86400.0, 604800.0, 2592000.0];

/// Every value [`error_reason`] gives (kept next to it), started at 0 for each upstream.
const ERROR_REASONS: [&str; 10] =
    ["timeout", "connect", "too_large", "429", "5xx", "digest_mismatch", "auth", "refused", "breaker", "tls"];

/// The `reason` label of an upstream error.
pub fn error_reason(err: &crate::error::UpstreamError) -> &'static str {
    use crate::error::UpstreamError as E;
    match err {
        E::HeadTimeout { .. } | E::Idle { .. } => "timeout",
        E::Connect { .. } | E::Broken { .. } | E::LengthMismatch { .. } => "connect",
        E::TooLarge { .. } => "too_large",
        E::TooManyRequests { .. } => "429",
        E::Status { .. } => "5xx",
        E::DigestMismatch { .. } => "digest_mismatch",
        E::Unauthorized { .. } | E::Credentials { .. } | E::TokenEndpoint { .. } => "auth",
        E::Refused { .. } => "refused",
        E::CircuitOpen { .. } => "breaker",
        E::Tls { .. } => "tls",
    }
}
