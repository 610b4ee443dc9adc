//! A TCP proxy in front of a real upstream that can be switched, while tests run, into the ways an upstream fails at
//! an edge site: forward (healthy), refuse (every connection closed at once), black hole (connections accepted and
//! never answered), one HTTP status for every request (429, 503, ...), or a slow link (answers throttled). Switching drops the connections opened in
//! the previous mode, so a client's kept-alive connection cannot outlive the change. Counts accepted connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::thread_server::ServerThread;

/// What the proxy does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    Refuse,
    BlackHole,
    Status(u16),
    /// Forward, the answers at most this many bytes per second (a slow upstream link).
    Throttle(u64),
}

pub struct FaultProxy {
    server: ServerThread,
    mode: watch::Sender<Mode>,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    /// A proxy to `127.0.0.1:target_port`, forwarding.
    pub fn start(target_port: u16) -> FaultProxy {
        let (mode, rx) = watch::channel(Mode::Forward);
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (connections.clone(), requests.clone());
        let server = ServerThread::spawn("fault-proxy", move |listener| async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let (rx, seen) = (rx.clone(), seen.clone());
                tokio::spawn(async move { serve(client, target_port, rx, seen).await });
            }
        });
        FaultProxy { server, mode, connections, requests }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Switch mode; connections of the previous mode are dropped.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Request lines seen in `Status` mode.
    pub fn answered(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.stop();
    }
}

async fn serve(mut client: TcpStream, target: u16, mut rx: watch::Receiver<Mode>, seen: Arc<Mutex<Vec<String>>>) {
    let mode = *rx.borrow_and_update();
    let work = async {
        match mode {
            Mode::Refuse => {}
            Mode::BlackHole => std::future::pending::<()>().await,
            Mode::Forward => {
                if let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", target)).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            }
            Mode::Throttle(rate) => {
                if let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)).await {
                    let (mut client_read, mut client_write) = client.split();
                    let (mut up_read, mut up_write) = upstream.into_split();
                    let requests = tokio::io::copy(&mut client_read, &mut up_write);
                    let answers = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match up_read.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                            let pause = std::time::Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
                            tokio::time::sleep(pause).await;
                        }
                    };
                    tokio::select! {
                        _ = requests => {}
                        _ = answers => {}
                    }
                }
            }
            Mode::Status(status) => loop {
                // Read one request head (requests here have no body), answer it, keep the connection.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
                seen.lock().expect("lock").push(line);
                let body = format!("{{\"errors\":[{{\"code\":\"UNAVAILABLE\",\"message\":\"status {status} from the fault proxy\"}}]}}");
                let resp = format!(
                    "HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if client.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            },
        }
    };
    tokio::select! {
        _ = work => {}
        _ = rx.changed() => {}
    }
}
