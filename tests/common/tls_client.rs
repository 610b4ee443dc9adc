//! HTTPS toward our server from the command line: the test client (reqwest)
//! is built without TLS, so these tests use curl (HTTP/1.1 and HTTP/2,
//! client certificates) and `openssl s_client` (the certificate a handshake
//! presents, and a raw keep-alive connection held open across a certificate
//! reload).
//!
//! Also: a new server leaf from an existing test CA (`certs`), for reloads.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::certs::CertKey;
use super::process::run;

/// What curl is given for TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsOpts {
    /// `--cacert`: the CA that signed the server's certificate.
    pub ca: Option<PathBuf>,
    /// `--cert`/`--key`: a client certificate.
    pub client: Option<CertKey>,
    /// `--http2` (ALPN offers h2 and http/1.1).
    pub http2: bool,
}

/// What curl did.
#[derive(Debug)]
pub struct CurlResult {
    /// curl's exit code (0: a response was received, whatever its status).
    pub exit: i32,
    /// The HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// `1.1`, `2`, ... (`0` without a response).
    pub http_version: String,
    pub body: Vec<u8>,
    /// curl's error messages.
    pub stderr: String,
}

const MARK: &str = "@@curl-write-out ";

/// `curl` a URL (GET, or `method`) with `tls`; never panics on a failed
/// transfer (that is for the test to judge).
pub fn curl(url: &str, tls: &TlsOpts, method: Option<&str>) -> CurlResult {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--noproxy", "*", "--max-time", "60"])
        .arg("-w")
        .arg(format!("%{{stderr}}{MARK}%{{http_code}} %{{http_version}}\\n"));
    if let Some(ca) = &tls.ca {
        cmd.arg("--cacert").arg(ca);
    }
    if let Some(c) = &tls.client {
        cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
    }
    cmd.arg(if tls.http2 { "--http2" } else { "--http1.1" });
    if let Some(m) = method {
        cmd.args(["-X", m]);
    }
    let out = cmd.arg(url).stdin(Stdio::null()).output().expect("run curl (is it installed?)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let written = stderr.lines().rev().find_map(|l| l.strip_prefix(MARK)).unwrap_or("000 0").to_string();
    let (code, version) = written.split_once(' ').unwrap_or(("000", "0"));
    let status = code.parse::<u16>().ok().filter(|&c| c != 0);
    CurlResult {
        exit: out.status.code().unwrap_or(-1),
        status,
        http_version: version.to_string(),
        body: out.stdout,
        stderr: stderr.lines().filter(|l| !l.starts_with(MARK)).collect::<Vec<_>>().join("\n"),
    }
}

/// The serial number (`openssl x509 -serial` form, hex upper case) of the
/// certificate a new handshake with `127.0.0.1:port` presents, or the
/// handshake's error output. `client` is presented if the server asks.
pub fn served_serial(port: u16, client: Option<&CertKey>) -> Result<String, String> {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"]);
    if let Some(c) = client {
        cmd.arg("-cert").arg(&c.cert).arg("-key").arg(&c.key);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let begin = text.find("-----BEGIN CERTIFICATE-----");
    let end = text.find("-----END CERTIFICATE-----");
    let (Some(b), Some(e)) = (begin, end) else {
        return Err(format!("no certificate in the handshake:\n{text}{}", String::from_utf8_lossy(&out.stderr)));
    };
    let pem = &text[b..e + "-----END CERTIFICATE-----".len()];
    Ok(pem_serial(pem.as_bytes()))
}

/// The serial of a PEM certificate, as `openssl x509 -noout -serial` prints it
/// after `serial=`.
pub fn pem_serial(pem: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl x509");
    child.stdin.take().expect("stdin").write_all(pem).expect("write PEM");
    let out = child.wait_with_output().expect("openssl x509");
    assert!(out.status.success(), "openssl x509 -serial: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().trim_start_matches("serial=").to_string()
}

/// The serial of a certificate file.
pub fn file_serial(cert: &Path) -> String {
    pem_serial(&std::fs::read(cert).unwrap_or_else(|e| panic!("read {}: {e}", cert.display())))
}

/// A new server leaf (`IP:127.0.0.1, DNS:localhost`, new key, new random
/// serial) signed by the CA that `certs::generate(dir)` made in `dir`;
/// written as `dir/NAME.pem` and `dir/NAME.key`.
pub fn new_server_leaf(dir: &Path, name: &str) -> CertKey {
    let ck = CertKey { cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}.key")) };
    let csr = dir.join(format!("{name}.csr"));
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-new", "-nodes", "-config", "openssl.cnf", "-subj", "/CN=localhost"])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout"])
        .arg(&ck.key)
        .arg("-out")
        .arg(&csr));
    let serial = format!("0x{:016x}", rand::random::<u64>() >> 1);
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["x509", "-req", "-days", "2", "-set_serial", &serial, "-in"])
        .arg(&csr)
        .args(["-CA", "ca.pem", "-CAkey", "ca.key", "-extfile", "openssl.cnf", "-extensions", "server_ext", "-out"])
        .arg(&ck.cert));
    ck
}

/// Put `from`'s certificate and key in place of `to`'s the way a secret
/// rotation does: each file replaced whole (written beside, then renamed).
pub fn replace_files(from: &CertKey, to: &CertKey) {
    for (src, dst) in [(&from.cert, &to.cert), (&from.key, &to.key)] {
        let tmp = dst.with_extension("rotating");
        std::fs::copy(src, &tmp).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        std::fs::rename(&tmp, dst).unwrap_or_else(|e| panic!("rename onto {}: {e}", dst.display()));
    }
}

/// One TLS connection held open (`openssl s_client -quiet`), on which HTTP/1.1
/// requests are written one at a time: a keep-alive connection whose life
/// the test controls.
pub struct KeepAlive {
    child: Child,
    stdin: ChildStdin,
    output: Arc<Mutex<Vec<u8>>>,
    sent: usize,
}

impl KeepAlive {
    pub fn open(port: u16, ca: &Path, client: Option<&CertKey>) -> KeepAlive {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"])
            .arg("-CAfile")
            .arg(ca)
            .args(["-verify_return_error", "-alpn", "http/1.1"]);
        if let Some(c) = client {
            cmd.arg("-cert").arg(&c.cert).arg("-key").arg(&c.key);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run openssl s_client");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        KeepAlive { child, stdin, output, sent: 0 }
    }

    /// Status lines received so far. A status line may follow the previous
    /// body on the same text line (`{}HTTP/1.1 200 OK`), so they are found
    /// by their prefix anywhere.
    fn responses(&self) -> Vec<String> {
        let out = self.output.lock().unwrap();
        let text = String::from_utf8_lossy(&out);
        text.match_indices("HTTP/1.1 ")
            .map(|(i, _)| text[i..].lines().next().unwrap_or("").trim_end().to_string())
            .collect()
    }

    /// Send `GET path` on this connection and wait (up to 10 s) for its
    /// response; its status line, or `Err` if the connection is gone or no
    /// answer came.
    pub fn get(&mut self, path: &str) -> Result<String, String> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n");
        self.stdin.write_all(req.as_bytes()).map_err(|e| format!("write on the connection: {e}"))?;
        self.stdin.flush().map_err(|e| format!("flush the connection: {e}"))?;
        self.sent += 1;
        let start = Instant::now();
        loop {
            let got = self.responses();
            if got.len() >= self.sent {
                return Ok(got[self.sent - 1].clone());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the connection closed ({status}) after {} responses", got.len()));
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!("no response to request {} within 10 s", self.sent));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
