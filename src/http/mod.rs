//! The HTTP layer: the actix-web server, its routes and request log. Handlers parse and validate, then ask the
//! actors (`Mirror`); this module never touches files or upstreams itself.

mod errors;
mod handlers;
mod negotiate;
pub mod target;

use std::time::Instant;

use actix_web::dev::Service;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpServer};
use futures_util::FutureExt;

pub use handlers::AppState;

/// Serve the registry API on `host:port` until the server is stopped (SIGINT/SIGTERM).
pub async fn serve(state: AppState, host: &str, port: u16, workers: usize) -> std::io::Result<()> {
    // Built once, outside the per-worker factory: every worker shares the same actors and index.
    let state = web::Data::new(state);
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(DefaultHeaders::new().add(("Docker-Distribution-Api-Version", "registry/2.0")))
            .wrap_fn(|req, srv| {
                let started = Instant::now();
                let method = req.method().clone();
                let uri = req.uri().to_string();
                let peer = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
                let host = req.connection_info().host().to_string();
                srv.call(req).map(move |res| {
                    if let Ok(res) = &res {
                        tracing::info!(
                            "{method}:{uri} status={} latency={:?} host={host} ip={peer}",
                            res.status().as_u16(),
                            started.elapsed()
                        );
                    }
                    res
                })
            })
            .service(web::resource(["/v2", "/v2/{tail:.*}"]).to(handlers::dispatch))
            .default_service(web::to(handlers::not_found))
    })
    .workers(workers)
    .bind((host, port))?
    .run()
    .await
}
