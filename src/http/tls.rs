//! The main listener over TLS: what actix-web's `HttpServer::listen_rustls_0_23` assembles (actix-server accepting,
//! actix-tls's rustls acceptor with its handshake timeout and concurrent-handshake limit, HTTP/2 or HTTP/1 by ALPN,
//! the app), with the same settings, but with HTTP/1 connections behind the connection gate (`gate`) so that
//! pipelined requests are handed to actix-http one at a time. HTTP/2 connections are not gated (each response is
//! framed on its own stream). The rustls configuration is `ServerTls`'s, whose certificate and client CA reload in
//! place. Like the plain listener, the app gets actix-web's default `AppConfig` (it reads neither the scheme nor the
//! host from it).

use std::fmt;
use std::net::TcpListener;

use actix_http::{error::DispatchError, Extensions, HttpService, KeepAlive, Protocol, Request, Response};
use actix_server::Server;
use actix_service::{fn_service, map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_tls::accept::TlsError;
use actix_web::body::MessageBody;
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;

use super::gate::{Gate, InTurn};
use super::plain::{CLIENT_DISCONNECT_TIMEOUT, CLIENT_REQUEST_TIMEOUT};

/// A client connection after the handshake.
type Tls = Gate<TlsStream<TcpStream>>;

/// Serve `factory`'s app over TLS (`config`) on `listener` with `workers` workers, each taking at most
/// `max_connections` connections, draining for up to `shutdown_secs` when stopped. Signals are left to the caller.
pub fn serve<F, I, S, B>(
    factory: F,
    listener: TcpListener,
    config: rustls::ServerConfig,
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
            .on_connect_ext(|conn: &Tls, ext: &mut Extensions| {
                if let Some(turns) = conn.turns() {
                    ext.insert(turns);
                }
            })
            .finish(InTurn(map_config(app, |_| AppConfig::default())));
        Acceptor::new(config.clone())
            .map_err(|e: TlsError<std::io::Error, std::convert::Infallible>| match e {
                TlsError::Tls(e) => DispatchError::Io(e),
                TlsError::Timeout => DispatchError::SlowRequestTimeout,
                TlsError::Service(never) => match never {},
            })
            .and_then(fn_service(|tls: TlsStream<TcpStream>| async move {
                let peer = tls.get_ref().0.peer_addr().ok();
                let (io, protocol) = match tls.get_ref().1.alpn_protocol() {
                    Some(b"h2") => (Gate::open(tls), Protocol::Http2),
                    _ => (Gate::new(tls), Protocol::Http1),
                };
                Ok::<_, DispatchError>((io, protocol, peer))
            }))
            .and_then(http)
    })?;
    Ok(builder.run())
}
