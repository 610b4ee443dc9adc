//! Free TCP ports on 127.0.0.1.
//!
//! The kernel picks a free port (bind to port 0); we release it at once so
//! that a child process can bind it. Ports already handed out in this process
//! are never handed out again, so two tests running in parallel cannot be
//! given the same one (another process could still race us; starters retry).

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port that was free a moment ago and that no other test of this process
/// has been given.
pub fn free_port() -> u16 {
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        if given.insert(port) {
            return port;
        }
    }
}

/// A port on which nothing listens: for "upstream down" cases and for the
/// containerd fallback `server` that must never answer.
pub fn closed_port() -> u16 {
    let port = free_port();
    assert!(
        std::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err(),
        "port {port} unexpectedly accepts connections"
    );
    port
}
