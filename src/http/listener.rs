//! What the two main listeners (`plain` and `tls`) share: how their connections are accepted (workers, the cap on
//! connections per worker, draining at shutdown, signals left to the caller) and the HTTP settings each connection
//! is served with, which are actix-web's `HttpServer` defaults: the first request head within 5 s, the close within
//! 1 s, an idle kept-alive connection for 5 s, and a client may shut its side of the connection after its request.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use actix_http::body::BoxBody;
use actix_http::{HttpServiceBuilder, KeepAlive, Request, Response};
use actix_server::{GracefulShutdownSignal, ServerBuilder};
use actix_service::{Service, ServiceFactory};

const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How a main listener accepts connections.
#[derive(Debug, Clone, Copy)]
pub struct Accepting {
    /// Worker threads.
    pub workers: usize,
    /// Connections each worker takes at once.
    pub max_connections: usize,
    /// How long open connections may drain when the server stops.
    pub shutdown_secs: u64,
}

impl Accepting {
    /// An actix-server builder with these settings, and the signal its connections drain on.
    pub fn builder(self) -> (ServerBuilder, GracefulShutdownSignal) {
        let builder = actix_server::Server::build()
            .workers(self.workers)
            .max_concurrent_connections(self.max_connections)
            .disable_signals()
            .shutdown_timeout(self.shutdown_secs);
        let shutdown = builder.graceful_shutdown_signal();
        (builder, shutdown)
    }
}

/// The HTTP settings of a main listener's connections (of type `T`, listening on `addr`), draining on `shutdown`.
pub fn http<T, S>(shutdown: GracefulShutdownSignal, addr: SocketAddr) -> HttpServiceBuilder<T, S>
where
    S: ServiceFactory<Request, Config = ()>,
    S::Error: Into<Response<BoxBody>> + 'static,
    S::InitError: fmt::Debug,
    <S::Service as Service<Request>>::Future: 'static,
{
    HttpServiceBuilder::default()
        .graceful_shutdown_signal(move || {
            let shutdown = shutdown.clone();
            async move { shutdown.notified().await }
        })
        .keep_alive(KeepAlive::default())
        .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
        .h1_allow_half_closed(true)
        .local_addr(addr)
}
