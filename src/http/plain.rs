//! The main listener for plain HTTP: what actix-web's `HttpServer::listen` assembles (actix-server accepting, an
//! HTTP/1 service per connection, the app), with the same settings, but over `kernel_copy::Conn` so that a cached
//! blob's bytes can go from its file to the socket inside the kernel, behind the connection gate (`gate`) so that
//! pipelined requests are handed to actix-http one at a time. Each connection's `KernelCopy` handle and `Turns` are
//! put in its requests' connection data. The TLS listener (`tls`) is built the same way, without `Conn` (TLS must
//! see the bytes).

use std::fmt;
use std::net::TcpListener;

use actix_http::{error::DispatchError, Extensions, Request, Response};
use actix_server::Server;
use actix_service::{fn_service, map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt};
use actix_web::body::MessageBody;
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;

use super::gate::{Gate, InTurn};
use super::kernel_copy::Conn;
use super::listener::{self, Accepting};

/// Serve `factory`'s app on `listener`, accepting as `accepting` says.
pub fn serve<F, I, S, B>(factory: F, listener: TcpListener, accepting: Accepting) -> std::io::Result<Server>
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
