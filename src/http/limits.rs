//! Socket options of every listener (no Nagle delay, the send timeout) and the file descriptor budget.
//!
//! **No Nagle delay.** A response often leaves in two writes: the head, then the body (a streamed blob's first chunk
//! comes from the store a moment later). With Nagle's algorithm the second small write waits until the first is
//! acknowledged, and a client that delays its ACK (Linux does, for up to 40 ms) stalls every such response on a
//! kept-alive connection. `TCP_NODELAY` is set on the listener; accepted sockets inherit it (Linux copies the
//! listener's options to each accepted socket), so it covers every connection of every listener, TLS included.
//!
//! **Send timeout.** A client that sends a blob GET and never reads would hold its socket, and the blob file it is
//! served from, for ever: actix-web's own timeouts do not cover a response in progress (`client_request_timeout`
//! bounds reading the first request head, `keep_alive` the pause between requests, `client_disconnect_timeout` the
//! close), and a response body stream is polled only when the socket takes more bytes, so a timer inside the body
//! never runs while the client stalls. The kernel does see it: the client's receive window stays at zero, or sent
//! bytes stay unacknowledged. `TCP_USER_TIMEOUT` (set on the listener; accepted sockets inherit it) makes the kernel
//! abort a connection that made no such progress for `clientIdleTimeout`; the next write fails and the connection,
//! its file and its buffers are released. A client that reads, however slowly, is never cut.
//!
//! **File descriptors.** At start the soft `RLIMIT_NOFILE` is raised to the hard limit. Each client connection
//! costs up to two descriptors (its socket, and the blob file or transfer it is served from); the rest of the server
//! (upstream connections, temporary files, the cache lock, the log, the runtime) needs a reserve. The main listener
//! takes at most `(limit - reserve - ops listeners) / 2` connections (split over the workers); beyond that actix
//! stops accepting and new connections wait in the kernel's backlog until one closes, so accepting can never take
//! the descriptors that serving the accepted connections needs (an `open` of a cached blob failing with EMFILE).

use std::net::TcpListener;
use std::time::Duration;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors one client connection may hold: its socket and the file its response is read from.
const FDS_PER_CONNECTION: u64 = 2;
/// The least reserve kept for everything but client connections.
const MIN_RESERVE: u64 = 64;
/// actix-web's own per-worker default, kept as the ceiling when descriptors are plentiful.
const MAX_CONNECTIONS_PER_WORKER: usize = 25_000;
/// Connections each operations listener (health, metrics, admin) accepts at once: probes and scrapes need few.
pub const OPS_MAX_CONNECTIONS: usize = 16;
/// The kernel's queue of connections not yet accepted, per listener.
const BACKLOG: i32 = 1024;

/// The file descriptor limit after `raise_fd_limit`.
#[derive(Debug, Clone, Copy)]
pub struct FdLimit {
    /// The soft limit now in force.
    pub limit: u64,
    /// The soft limit the process started with.
    pub was: u64,
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (an unlimited hard limit is capped at the kernel's `nr_open`).
/// On failure the limit stays as it was.
pub fn raise_fd_limit() -> FdLimit {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let was = current.unwrap_or(u64::MAX);
    let hard = maximum.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(was)
    });
    if hard > was {
        match setrlimit(Resource::Nofile, Rlimit { current: Some(hard), maximum }) {
            Ok(()) => return FdLimit { limit: hard, was },
            Err(e) => tracing::warn!(soft = was, hard, "cannot raise the file descriptor limit: {e}"),
        }
    }
    FdLimit { limit: was, was }
}

/// How many client connections the listeners may hold within the descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// Connections each worker of the main listener accepts at once (`HttpServer::max_connections`).
    pub per_worker: usize,
    /// Descriptors kept for everything else.
    pub reserve: u64,
}

/// The budget for `limit` descriptors, `open_now` of them already in use, `workers` workers on the main port and
/// `ops_listeners` operations listeners: the reserve is the larger of `MIN_RESERVE` and an eighth of the limit,
/// plus what is open now.
pub fn connection_budget(limit: u64, open_now: u64, workers: usize, ops_listeners: usize) -> ConnectionBudget {
    let reserve = MIN_RESERVE.max(limit / 8) + open_now;
    let ops = (ops_listeners * OPS_MAX_CONNECTIONS) as u64;
    let for_clients = limit.saturating_sub(reserve).saturating_sub(ops) / FDS_PER_CONNECTION;
    let per_worker = (for_clients / workers.max(1) as u64).clamp(1, MAX_CONNECTIONS_PER_WORKER as u64) as usize;
    ConnectionBudget { per_worker, reserve }
}

/// The soft `RLIMIT_NOFILE` now in force; `None` when unlimited.
pub fn fd_soft_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// Descriptors open in this process now (0 when `/proc` cannot tell).
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map(|dir| dir.count() as u64).unwrap_or(0)
}

/// A listening socket on `host:port` with `TCP_NODELAY` and the send timeout set: connections accepted from it
/// inherit both, so a response is never held back by Nagle's algorithm, and one that takes no bytes for
/// `send_timeout` is aborted by the kernel.
pub fn listener(host: &str, port: u16, send_timeout: Duration) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind((host, port))?;
    let millis = u32::try_from(send_timeout.as_millis()).unwrap_or(u32::MAX);
    rustix::net::sockopt::set_tcp_user_timeout(&listener, millis)?;
    rustix::net::sockopt::set_tcp_nodelay(&listener, true)?;
    rustix::net::listen(&listener, BACKLOG)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_keeps_a_reserve_and_two_descriptors_per_connection() {
        // 256 descriptors, 30 open, 2 workers, no operations listeners: (256 - 64 - 30) / 2 / 2.
        assert_eq!(connection_budget(256, 30, 2, 0), ConnectionBudget { per_worker: 40, reserve: 94 });
        // Operations listeners take their share first.
        assert_eq!(connection_budget(256, 30, 2, 3).per_worker, 28);
        // A large limit: an eighth is kept, and actix's own ceiling applies.
        assert_eq!(connection_budget(4096, 30, 4, 0), ConnectionBudget { per_worker: 444, reserve: 542 });
        assert_eq!(connection_budget(1 << 20, 30, 2, 3).per_worker, MAX_CONNECTIONS_PER_WORKER);
        // Too few descriptors for any client still accepts one per worker rather than none.
        assert_eq!(connection_budget(64, 30, 2, 0).per_worker, 1);
    }

    #[test]
    fn accepted_sockets_inherit_the_send_timeout_and_no_nagle_delay() {
        let listener = listener("127.0.0.1", 0, Duration::from_millis(2500)).expect("listen");
        let addr = listener.local_addr().expect("address");
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        assert_eq!(rustix::net::sockopt::tcp_user_timeout(&accepted).expect("getsockopt"), 2500);
        assert!(rustix::net::sockopt::tcp_nodelay(&accepted).expect("getsockopt"), "TCP_NODELAY is inherited");
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let limit = raise_fd_limit();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(now.current, Some(limit.limit));
        assert!(limit.limit >= limit.was);
        if let Some(hard) = now.maximum {
            assert_eq!(limit.limit, hard);
        }
    }
}
