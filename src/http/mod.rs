//! The HTTP layer: the registry API on the main port (HTTP or HTTPS), the operations listeners, the request log and
//! request metrics, and graceful shutdown. Handlers parse and validate, then ask the actors (`Mirror`); this module
//! never touches files or upstreams itself (a cached blob's file range is sent to a client's socket by the store's
//! `FileRange`, see `kernel_copy`).

mod errors;
mod framing;
mod gate;
mod handlers;
mod kernel_copy;
pub mod limits;
mod listener;
mod negotiate;
mod ops;
mod plain;
pub mod target;
mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServerHandle, Service};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpServer};
use actors::Metrics;
use futures_util::FutureExt;

pub use handlers::{AppState, RequestNote};

use crate::server_tls::ServerTls;

/// Where and how to listen.
pub struct ServeOptions {
    /// Listen address.
    pub host: String,
    /// The registry API's port.
    pub port: u16,
    /// HTTP workers of the main port.
    pub workers: usize,
    /// HTTPS on the main port.
    pub tls: Option<Arc<ServerTls>>,
    /// `/health` and `/ready`.
    pub health_port: Option<u16>,
    /// `/metrics`.
    pub metrics_port: Option<u16>,
    /// The admin API's port and bearer token.
    pub admin: Option<(u16, String)>,
    /// How long in-flight responses and upstream fetches may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// A client connection that takes no response bytes for this long is aborted (`clientIdleTimeout`).
    pub client_idle_timeout: Duration,
    /// The file descriptor limit, which bounds how many client connections are accepted at once.
    pub fd_limit: limits::FdLimit,
    /// The background preload (`preloadImages`), whose progress `/ready` reports.
    pub preload: Option<Arc<crate::commands::preload::PreloadStatus>>,
}

fn route_kind(path: &str) -> &'static str {
    if path == "/v2" || path == "/v2/" {
        "base"
    } else if path.contains("/manifests/") {
        "manifest"
    } else if path.contains("/blobs/") {
        "blob"
    } else {
        "other"
    }
}

/// A request as it came in, for the log line and the metrics recorded when it is answered.
struct Seen {
    method: String,
    uri: String,
    peer: String,
    started: Instant,
}

/// Record one answered request: the request log line and the request metrics.
fn record(metrics: &Metrics, seen: &Seen, status: u16, bytes: Option<u64>, note: Option<&RequestNote>) {
    let elapsed = seen.started.elapsed();
    let method = seen.method.as_str();
    let path = seen.uri.split('?').next().unwrap_or(&seen.uri);
    let route = route_kind(path);
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics.request_duration.with_label_values(&[route, method, class]).observe(elapsed.as_secs_f64());
    match (route, status) {
        (_, 400..) => metrics.api_errors.inc(),
        ("manifest", 200..=299) => metrics.manifest_pulls.inc(),
        ("blob", 200..=299) => metrics.blob_pulls.inc(),
        ("base", _) => metrics.v2_api_endpoint_hits.inc(),
        _ => {}
    }
    let ns = note.map(|n| n.ns.as_str()).unwrap_or("-");
    let cache = note.map(|n| n.cache).unwrap_or("-");
    let bytes = bytes.unwrap_or(0);
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    let (uri, peer) = (seen.uri.as_str(), seen.peer.as_str());
    tracing::info!(method, path = uri, ns, status, latency_ms, bytes, cache, peer, "request");
}

async fn bind_ops(
    name: &str,
    opts: &ServeOptions,
    port: u16,
    state: web::Data<ops::OpsState>,
    routes: fn(&mut web::ServiceConfig),
) -> std::io::Result<actix_web::dev::Server> {
    let host = opts.host.as_str();
    let cannot =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("cannot listen for {name} on {host}:{port}: {e}"));
    let listener = limits::listener(host, port, opts.client_idle_timeout).map_err(cannot)?;
    let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(routes))
        .workers(1)
        .max_connections(limits::OPS_MAX_CONNECTIONS)
        .disable_signals()
        .shutdown_timeout(5)
        .listen(listener)
        .map_err(cannot)?
        .run();
    tracing::info!("{name} listening on {host}:{port}");
    Ok(server)
}

fn health_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(ops::health))
        .route("/health", web::head().to(ops::health))
        .route("/ready", web::get().to(ops::ready))
        .route("/ready", web::head().to(ops::ready));
}

fn metrics_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(ops::metrics));
}

fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.default_service(web::to(ops::admin));
}

/// Wait for SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    async fn wait(kind: SignalKind) {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    }
    tokio::select! {
        _ = wait(SignalKind::terminate()) => tracing::info!("SIGTERM received"),
        _ = wait(SignalKind::interrupt()) => tracing::info!("SIGINT received"),
    }
}

/// Serve until a shutdown signal, then drain: stop accepting, let in-flight responses and upstream fetches finish
/// within the grace period (what completes is committed to the cache), and return.
pub async fn serve(state: AppState, opts: ServeOptions) -> std::io::Result<()> {
    let mirror = state.mirror.clone();
    let metrics = mirror.metrics().clone();
    let shutting_down = Arc::new(AtomicBool::new(false));
    // Built once, outside the per-worker factory: every worker shares the same actors and index.
    let state = web::Data::new(state);
    let grace = opts.shutdown_grace;
    let ops_listeners =
        [opts.health_port, opts.metrics_port, opts.admin.as_ref().map(|a| a.0)].iter().flatten().count();
    let budget = limits::connection_budget(opts.fd_limit.limit, limits::open_fds(), opts.workers, ops_listeners);
    tracing::info!(
        fd_limit = opts.fd_limit.limit,
        fd_limit_at_start = opts.fd_limit.was,
        max_connections = budget.per_worker * opts.workers,
        per_worker = budget.per_worker,
        reserve = budget.reserve,
        client_idle_timeout_ms = opts.client_idle_timeout.as_millis() as u64,
        "client connections limited by the file descriptor limit"
    );
    let app = move || {
        let metrics = metrics.clone();
        App::new()
            .app_data(state.clone())
            .wrap(DefaultHeaders::new().add(("Docker-Distribution-Api-Version", "registry/2.0")))
            .wrap_fn(move |req, srv| {
                let seen = Seen {
                    method: req.method().to_string(),
                    uri: req.uri().path_and_query().map_or_else(|| req.path().to_string(), |p| p.to_string()),
                    peer: req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
                    started: Instant::now(),
                };
                let metrics = metrics.clone();
                srv.call(req).map(move |res| {
                    if let Ok(res) = &res {
                        // A body the connection sends itself (or a HEAD's) announces its length by hand.
                        let bytes = match res.response().body().size() {
                            BodySize::Sized(n) => Some(n),
                            _ => res
                                .headers()
                                .get(actix_web::http::header::CONTENT_LENGTH)
                                .and_then(|v| v.to_str().ok()?.parse().ok()),
                        };
                        let note = res.response().extensions().get::<RequestNote>().cloned();
                        record(&metrics, &seen, res.status().as_u16(), bytes, note.as_ref());
                    }
                    res
                })
            })
            // One handler for every path: `dispatch` parses `/v2/...` itself, and a router pattern for it (`{tail:.*}`)
            // cost a regex match per request, 40% of the CPU of a cached manifest GET.
            .default_service(web::to(handlers::entry))
    };
    let cannot =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("cannot listen on {}:{}: {e}", opts.host, opts.port));
    let listener = limits::listener(&opts.host, opts.port, opts.client_idle_timeout).map_err(cannot)?;
    let accepting = listener::Accepting {
        workers: opts.workers,
        max_connections: budget.per_worker,
        shutdown_secs: grace.as_secs().max(1),
    };
    let main = match &opts.tls {
        Some(tls) => tls::serve(app, listener, tls.config(), accepting).map_err(cannot)?,
        None => plain::serve(app, listener, accepting).map_err(cannot)?,
    };
    let main_handle = main.handle();

    let ops_state = |admin_token: Option<String>| {
        web::Data::new(ops::OpsState {
            mirror: mirror.clone(),
            shutting_down: shutting_down.clone(),
            admin_token,
            preload: opts.preload.clone(),
        })
    };
    let mut ops_handles: Vec<ServerHandle> = Vec::new();
    let mut ops_servers = Vec::new();
    if let Some(port) = opts.health_port {
        ops_servers.push(bind_ops("health", &opts, port, ops_state(None), health_routes).await?);
    }
    if let Some(port) = opts.metrics_port {
        ops_servers.push(bind_ops("metrics", &opts, port, ops_state(None), metrics_routes).await?);
    }
    if let Some((port, token)) = opts.admin.clone() {
        ops_servers.push(bind_ops("admin API", &opts, port, ops_state(Some(token)), admin_routes).await?);
    }
    for server in ops_servers {
        ops_handles.push(server.handle());
        actix_rt::spawn(server);
    }
    if let Some(tls) = &opts.tls {
        tls.clone().watch();
    }

    let signalled = shutting_down.clone();
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let drain_mirror = mirror.clone();
    actix_rt::spawn(async move {
        shutdown_signal().await;
        let deadline = Instant::now() + grace;
        signalled.store(true, Ordering::Relaxed);
        tracing::info!(grace_secs = grace.as_secs(), "shutting down: no new connections; finishing in-flight pulls");
        main_handle.stop(true).await;
        // Responses are done (or the grace period ran out); upstream fetches still running finish and commit.
        while drain_mirror.fetches_in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if drain_mirror.fetches_in_flight() > 0 {
            tracing::warn!(
                running = drain_mirror.fetches_in_flight(),
                "grace period over; abandoning unfinished fetches"
            );
        }
        drain_mirror.flush().await;
        for handle in ops_handles {
            handle.stop(false).await;
        }
        let _ = drained_tx.send(());
    });

    main.await?;
    let _ = drained_rx.await;
    tracing::info!("stopped");
    Ok(())
}
