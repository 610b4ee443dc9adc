//! Request rate over many kept-alive connections (for HEAD, which wrk mishandles: it waits for a body of the
//! advertised length) and latency of sequential requests on one connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::http::Conn;

fn headers(accept: &str) -> Vec<(&str, &str)> {
    if accept.is_empty() {
        Vec::new()
    } else {
        vec![("Accept", accept)]
    }
}

/// `latency`: `--n` sequential requests (after `--warmup` more) on one kept-alive connection; prints p50, p90, p99
/// and max in milliseconds, and how many took over 10 ms (a delayed-ACK stall costs 40 ms).
pub fn cmd_latency(args: &crate::Args) -> Result<(), String> {
    let addr = args.str("addr")?;
    let path = args.str("path")?;
    let method = args.str_or("method", "GET");
    let accept = args.str_or("accept", "");
    let n = args.num("n", 200)? as usize;
    let warmup = args.num("warmup", 20)? as usize;
    let headers = headers(&accept);
    let mut conn = Conn::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut times, mut bad, mut reconnects) = (Vec::with_capacity(n), 0u64, 0u64);
    for i in 0..warmup + n {
        if !conn.reusable {
            conn = Conn::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
            reconnects += 1;
        }
        let start = Instant::now();
        conn.send(&method, &path, &headers, None, &[]).map_err(|e| format!("send: {e}"))?;
        let head = conn.read_head(method == "HEAD").map_err(|e| format!("response: {e}"))?;
        conn.skip_body(&head).map_err(|e| format!("body: {e}"))?;
        let elapsed = start.elapsed();
        if head.status != 200 {
            bad += 1;
        }
        if i >= warmup {
            times.push(elapsed.as_secs_f64() * 1000.0);
        }
    }
    let slow = times.iter().filter(|&&t| t > 10.0).count();
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    println!(
        "p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3} over_10ms={slow} non200={bad} reconnects={reconnects}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

/// `load`: `--connections` kept-alive connections, one thread each, send `--method` to `--path` back to back for
/// `--seconds` (after half a second of warm-up); prints requests per second.
pub fn cmd_load(args: &crate::Args) -> Result<(), String> {
    let addr = args.str("addr")?;
    let path = args.str("path")?;
    let method = args.str_or("method", "HEAD");
    let accept = args.str_or("accept", "");
    let connections = args.num("connections", 32)? as usize;
    let seconds = args.num("seconds", 5)?;
    let headers = headers(&accept);
    let (done, stop) = (AtomicU64::new(0), AtomicBool::new(false));
    let (non2xx, errors) = (AtomicU64::new(0), AtomicU64::new(0));
    let (requests, elapsed) = std::thread::scope(|s| {
        for _ in 0..connections {
            s.spawn(|| {
                let mut conn: Option<Conn> = None;
                while !stop.load(Ordering::Relaxed) {
                    if conn.as_ref().is_none_or(|c| !c.reusable) {
                        conn = Conn::connect(&addr).ok();
                    }
                    let Some(c) = conn.as_mut() else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let r = c.send(&method, &path, &headers, None, &[]).and_then(|()| {
                        let head = c.read_head(method == "HEAD")?;
                        c.skip_body(&head)?;
                        Ok(head.status)
                    });
                    match r {
                        Ok(status) => {
                            if !(200..300).contains(&status) {
                                non2xx.fetch_add(1, Ordering::Relaxed);
                            }
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        let (before, start) = (done.load(Ordering::Relaxed), Instant::now());
        std::thread::sleep(Duration::from_secs(seconds));
        let requests = done.load(Ordering::Relaxed) - before;
        let elapsed = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        (requests, elapsed)
    });
    println!(
        "rps={:.0} requests={requests} non2xx={} errors={}",
        requests as f64 / elapsed,
        non2xx.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}
