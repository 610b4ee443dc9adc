//! The main listener for plain HTTP: what actix-web's `HttpServer::listen` assembles (actix-server accepting, an
//! HTTP/1 service per connection, the app), with the same settings, but over `kernel_copy::Conn` so that a cached
//! blob's bytes can go from its file to the socket inside the kernel, behind the connection gate (`gate`) so that
//! pipelined requests are handed to actix-http one at a time. Each connection's `KernelCopy` handle and `Turns` are
//! put in its requests' connection data. The TLS listener (`tls`) is built the same way, without `Conn` (TLS must
//! see the bytes).

use std::fmt;
use std::net::TcpListener;
use std::time::Duration;

use actix_http::{error::DispatchError, Extensions, HttpService, KeepAlive, Request, Response};
use actix_server::Server;
use actix_service::{fn_service, map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt};
use actix_web::body::MessageBody;
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;

use super::gate::{Gate, InTurn};
use super::kernel_copy::Conn;

/// actix-web's defaults for `HttpServer`, which the TLS listener keeps: the first request head within 5 s, the close
/// within 1 s, an idle kept-alive connection for 5 s.
pub(super) const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
pub(super) const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Serve `factory`'s app on `listener` with `workers` workers, each taking at most `max_connections` connections,
/// draining for up to `shutdown_secs` when stopped. Signals are left to the caller.
pub fn serve<F, I, S, B>(
    factory: F,
    listener: TcpListener,
    workers: usize,
    max_connections: usize,
    shutdown_secs: u64,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let builder = Server::build()
        .workers(workers)
        .max_concurrent_connections(max_connections)
        .disable_signals()
        .shutdown_timeout(shutdown_secs);
    let shutdown = builder.graceful_shutdown_signal();
    let addr = listener.local_addr()?;
    let builder = builder.listen("ociregistry", listener, move || {
        let shutdown = shutdown.clone();
        let app = factory().into_factory().map_err(|err| err.into().error_response());
        let http = HttpService::build()
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .keep_alive(KeepAlive::default())
            .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
            .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
            .h1_allow_half_closed(true)
            .local_addr(addr)
            .on_connect_ext(|conn: &Gate<Conn>, ext: &mut Extensions| {
                ext.insert(conn.get_ref().handle());
                if let Some(turns) = conn.turns() {
                    ext.insert(turns);
                }
            })
            .h1(InTurn(map_config(app, |_| AppConfig::default())));
        fn_service(|tcp: TcpStream| async move {
            let peer = tcp.peer_addr().ok();
            Ok::<_, DispatchError>((Gate::new(Conn::new(tcp)), peer))
        })
        .and_then(http)
    })?;
    Ok(builder.run())
}
