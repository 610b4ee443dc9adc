//! Clients that ask for a blob and then stop reading. Each holds a socket on our server, and the blob file it is
//! served from, until `clientIdleTimeout` passes without the client taking a byte: then the connection is closed
//! and both are released. Under a low file descriptor limit, a crowd of them must not keep cached blobs from other
//! clients: the server accepts only as many connections as it has descriptors to serve, and the rest wait in the
//! kernel's queue until the stalled ones are cut.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::http::{self, StatusCode};
use common::images::{self, Image};
use common::server::{Server, ServerConfig};
use common::upstream::Upstream;
use common::{wait_for, TestDir};

/// A client that sends `GET path` and reads nothing: its receive buffer (a few KiB) fills at once and its TCP
/// window stays shut, so the server's writes stop.
struct SlowReader {
    stream: TcpStream,
}

impl SlowReader {
    fn start(rt: &tokio::runtime::Runtime, port: u16, path: &str) -> SlowReader {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = rt
            .block_on(async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.set_recv_buffer_size(4096)?;
                socket.connect(addr).await
            })
            .and_then(|s| s.into_std())
            .expect("connect a slow reader");
        stream.set_nonblocking(false).expect("blocking");
        let mut stream = stream;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("send the request");
        SlowReader { stream }
    }

    /// Read what the server sent until it ends the connection (or `limit` passes without a byte): the bytes read
    /// (head included), and whether the connection ended.
    fn drain(mut self, limit: Duration) -> (usize, bool) {
        self.stream.set_read_timeout(Some(limit)).expect("read timeout");
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return (total, true),
                Ok(n) => total += n,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return (total, false)
                }
                Err(_) => return (total, true),
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_io().build().expect("tokio runtime")
}

/// An upstream with `hello` (small layers) and `big` (one 8 MB layer), and our server with this config for it.
fn setup(dir: &TestDir, config: impl FnOnce(ServerConfig) -> ServerConfig) -> (Upstream, Image, Image, Server) {
    let up = Upstream::start();
    let hello = images::hello(&up, dir.path());
    let big = images::custom(&up, dir.path(), "library/big:1", &[8_000_000]);
    let server = Server::start_with(config(ServerConfig::for_upstream(&up.url())));
    (up, hello, big, server)
}

/// The server's open descriptors once the test client's last connection has been closed on both sides.
fn idle_fds(server: &Server) -> usize {
    std::thread::sleep(Duration::from_millis(500));
    server.open_fds()
}

fn blob_path(image: &Image, digest: &str) -> String {
    format!("/v2/{}/blobs/{digest}?ns=docker.io", image.repo)
}

#[test]
fn a_client_that_stops_reading_is_disconnected_after_the_client_idle_timeout() {
    let dir = TestDir::new("slow-readers");
    let (_up, _hello, big, server) = setup(&dir, |c| c.extra("clientIdleTimeout: 2s"));
    let layer = big.manifest().layers[0].clone();
    let path = blob_path(&big, &layer.digest);
    let body = http::get_verified(&http::client(), &format!("{}{path}", server.url()), &layer.digest);
    let baseline = idle_fds(&server);

    const READERS: usize = 50;
    let rt = runtime();
    let readers: Vec<SlowReader> = (0..READERS).map(|_| SlowReader::start(&rt, server.port(), &path)).collect();
    // Premise: the server is serving them all (a socket and the blob file each).
    wait_for("the server to hold the slow readers' connections", Duration::from_secs(20), || {
        (server.open_fds() >= baseline + READERS).then_some(())
    });
    // Nothing is read; the connections must be cut after clientIdleTimeout (2 s), and every descriptor released.
    let t0 = Instant::now();
    wait_for("the server to release the slow readers' descriptors", Duration::from_secs(60), || {
        (server.open_fds() <= baseline).then_some(())
    });
    eprintln!("{READERS} slow readers cut {:?} after they were served", t0.elapsed());
    for (i, reader) in readers.into_iter().enumerate() {
        let (read, ended) = reader.drain(Duration::from_secs(10));
        assert!(ended, "slow reader {i}: the server kept the connection open ({read} bytes read)");
        assert!(read < body.len(), "slow reader {i}: the whole blob arrived ({read} bytes): it was never cut");
    }
    // A client that reads is served as before.
    http::get_verified(&http::client(), &format!("{}{path}", server.url()), &layer.digest);
}

#[test]
fn with_a_low_fd_limit_slow_readers_do_not_keep_cached_blobs_from_other_clients() {
    let dir = TestDir::new("slow-readers-fds");
    let (_up, hello, big, server) =
        setup(&dir, |c| ServerConfig { fd_limit: Some(256), ..c.extra("clientIdleTimeout: 3s") });
    let client = http::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().expect("reqwest client");
    // Cache everything first.
    let big_layer = big.manifest().layers[0].clone();
    let big_path = blob_path(&big, &big_layer.digest);
    let big_body = http::get_verified(&client, &format!("{}{big_path}", server.url()), &big_layer.digest);
    let small: Vec<String> = hello.blobs().iter().map(|b| b.digest.clone()).collect();
    for digest in &small {
        http::get_verified(&client, &format!("{}{}", server.url(), blob_path(&hello, digest)), digest);
    }

    let baseline = idle_fds(&server);
    // 150 slow readers: with 256 descriptors and two per connection, more than the server can hold at once.
    const READERS: usize = 150;
    let rt = runtime();
    let readers: Vec<SlowReader> = (0..READERS).map(|_| SlowReader::start(&rt, server.port(), &big_path)).collect();
    wait_for("the server to fill up with slow readers", Duration::from_secs(20), || {
        (server.open_fds() >= 150).then_some(())
    });

    // Another client gets every cached blob, twice, verified, never a 500: first on the connection it kept open
    // (opening the blob files needs the reserve), then on a new one (which waits in the kernel's queue until the
    // server has a connection to spare, at the latest when the slow readers ahead of it are cut).
    let t0 = Instant::now();
    for round in 0..2 {
        let client = match round {
            0 => client.clone(),
            _ => http::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().expect("reqwest client"),
        };
        for digest in &small {
            let url = format!("{}{}", server.url(), blob_path(&hello, digest));
            let resp = client.get(&url).send().unwrap_or_else(|e| panic!("round {round}: GET {url}: {e:#}"));
            assert_eq!(resp.status(), StatusCode::OK, "round {round}: GET {url}");
            let body = resp.bytes().expect("body");
            assert_eq!(common::sha256_digest(&body), *digest, "round {round}: GET {url}: digest");
        }
    }
    eprintln!(
        "{} cached blobs served to another client in {:?} beside {READERS} slow readers",
        small.len() * 2,
        t0.elapsed()
    );
    // Every slow reader is cut in turn (the later ones once the first are gone); then none got the whole blob.
    wait_for("the server to cut every slow reader", Duration::from_secs(90), || {
        (server.open_fds() <= baseline).then_some(())
    });
    for (i, reader) in readers.into_iter().enumerate() {
        let (read, ended) = reader.drain(Duration::from_secs(30));
        assert!(ended && read < big_body.len(), "slow reader {i}: {read} bytes, ended {ended}");
    }
    let logs = server.logs();
    assert!(!logs.contains("status=500"), "the server answered 500:\n{}", server.log_tail());
    let exhausted = logs.matches("Too many open files").count();
    assert!(exhausted <= 1, "descriptor exhaustion logged {exhausted} times:\n{}", server.log_tail());
}
