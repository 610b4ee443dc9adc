//! A relay in front of a real registry that answers like Docker Hub's pull budget (docker-registry sends no such
//! headers, hence this test-only relay): every answer carries `ratelimit-limit: L;w=W` and `ratelimit-remaining:
//! R;w=W`; each manifest `GET` spends one of the remaining count (a `HEAD`, a blob or `/v2/` spends none), and once
//! none is left a manifest `GET` is answered 429 `TOOMANYREQUESTS` without reaching the registry.
//!
//! One request per connection: the request goes to the registry with `Connection: close`, the answer comes back
//! with the headers added and `Connection: close`, and both connections end with it (requests through it carry no
//! body: the mirror only reads). Counts the manifest `GET`s it saw and those it refused.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::thread_server::ServerThread;

/// The budget and what was spent of it.
#[derive(Debug)]
struct Budget {
    limit: u64,
    window_secs: u64,
    remaining: u64,
    /// Sent as the `ratelimit-remaining` value instead of the count (a registry's malformed header).
    garbled: Option<String>,
    manifest_gets: usize,
    refused: usize,
}

pub struct RateLimitRelay {
    server: ServerThread,
    budget: Arc<Mutex<Budget>>,
}

impl RateLimitRelay {
    /// A relay to `upstream_url` (`http://127.0.0.1:PORT`) with a budget of `limit` manifest GETs per `window_secs`,
    /// all of it remaining.
    pub fn start(upstream_url: &str, limit: u64, window_secs: u64) -> RateLimitRelay {
        let target = upstream_url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("the relay forwards to plain HTTP, not {upstream_url}"))
            .trim_end_matches('/')
            .to_string();
        let budget = Arc::new(Mutex::new(Budget {
            limit,
            window_secs,
            remaining: limit,
            garbled: None,
            manifest_gets: 0,
            refused: 0,
        }));
        let shared = budget.clone();
        let server = ServerThread::spawn("ratelimit-relay", move |listener| async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let (target, budget) = (target.clone(), shared.clone());
                tokio::spawn(async move { relay(client, &target, &budget).await });
            }
        });
        RateLimitRelay { server, budget }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Set what is left of the budget (0: manifest GETs are refused with 429 from now on).
    pub fn set_remaining(&self, n: u64) {
        self.budget.lock().expect("lock").remaining = n;
    }

    /// Send `value` as the `ratelimit-remaining` header from now on (the count is still kept and spent).
    pub fn garble_remaining(&self, value: &str) {
        self.budget.lock().expect("lock").garbled = Some(value.to_string());
    }

    /// What is left of the budget.
    pub fn remaining(&self) -> u64 {
        self.budget.lock().expect("lock").remaining
    }

    /// Manifest GETs received, refused ones included.
    pub fn manifest_gets(&self) -> usize {
        self.budget.lock().expect("lock").manifest_gets
    }

    /// Manifest GETs answered 429 because the budget was spent.
    pub fn refused(&self) -> usize {
        self.budget.lock().expect("lock").refused
    }
}

impl Drop for RateLimitRelay {
    fn drop(&mut self) {
        self.server.stop();
    }
}

/// Read an HTTP head (up to and including the empty line); `None` at EOF or on an error.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// The head's lines without `Connection` headers, then `Connection: close` and `extra`, then the empty line.
fn rewrite_head(head: &[u8], extra: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n");
    out.push_str(extra);
    out.push_str("\r\n");
    out.into_bytes()
}

async fn relay(mut client: TcpStream, target: &str, budget: &Mutex<Budget>) {
    let Some(head) = read_head(&mut client).await else { return };
    let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let spends = method == "GET" && path.contains("/manifests/");
    let (headers, refuse) = {
        let mut b = budget.lock().expect("lock");
        let refuse = spends && b.remaining == 0;
        if spends {
            b.manifest_gets += 1;
            if refuse {
                b.refused += 1;
            } else {
                b.remaining -= 1;
            }
        }
        let w = b.window_secs;
        let remaining = b.garbled.clone().unwrap_or_else(|| format!("{};w={w}", b.remaining));
        (format!("ratelimit-limit: {};w={w}\r\nratelimit-remaining: {remaining}\r\n", b.limit), refuse)
    };
    if refuse {
        let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#;
        let extra = format!("{headers}Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
        let mut answer = rewrite_head(b"HTTP/1.1 429 Too Many Requests\r\n\r\n", &extra);
        answer.extend_from_slice(body.as_bytes());
        let _ = client.write_all(&answer).await;
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(target).await else { return };
    if upstream.write_all(&rewrite_head(&head, "")).await.is_err() {
        return;
    }
    let Some(answer_head) = read_head(&mut upstream).await else { return };
    if client.write_all(&rewrite_head(&answer_head, &headers)).await.is_err() {
        return;
    }
    // The registry closes after its answer (Connection: close): its body is the rest of the stream.
    let _ = tokio::io::copy(&mut upstream, &mut client).await;
    let _ = client.shutdown().await;
}
