//! The main listener over TLS: what actix-web's `HttpServer::listen_rustls_0_23` assembles (actix-server accepting,
//! actix-tls's rustls acceptor with its handshake timeout and concurrent-handshake limit, HTTP/2 or HTTP/1 by ALPN,
//! the app), with the same settings, but with HTTP/1 connections behind the connection gate (`gate`) so that
//! pipelined requests are handed to actix-http one at a time. HTTP/2 connections are not gated (each response is
//! framed on its own stream). The rustls configuration is `ServerTls`'s, whose certificate and client CA reload in
//! place. Like the plain listener, the app gets actix-web's default `AppConfig` (it reads neither the scheme nor the
//! host from it).

use std::fmt;
use std::net::TcpListener;

use actix_http::{error::DispatchError, Extensions, Protocol, Request, Response};
use actix_server::Server;
use actix_service::{fn_service, map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_tls::accept::TlsError;
use actix_web::body::MessageBody;
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;

use super::gate::{Gate, InTurn};
use super::listener::{self, Accepting};

/// A client connection after the handshake.
type Tls = Gate<TlsStream<TcpStream>>;

/// Serve `factory`'s app over TLS (`config`) on `listener`, accepting as `accepting` says.
pub fn serve<F, I, S, B>(
    factory: F,
    listener: TcpListener,
    config: rustls::ServerConfig,
    accepting: Accepting,
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
    let (builder, shutdown) = accepting.builder();
    let addr = listener.local_addr()?;
    let builder = builder.listen("ociregistry", listener, move || {
        let app = factory().into_factory().map_err(|err| err.into().error_response());
        let http = listener::http(shutdown.clone(), addr)
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
