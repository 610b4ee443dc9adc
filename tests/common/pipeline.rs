//! Raw HTTP/1 over one connection, plain or TLS, for pipelining tests: requests written as bytes, all at once, and
//! responses read back by hand, each framed as the request's method says (a `HEAD` answer, a 1xx, 204 or 304 has no
//! body; otherwise a chunked body, `Content-Length` bytes, or everything to the end of the connection).
//!
//! The TLS client is rustls (the server's own TLS library), trusting the test CA from `certs`, offering only
//! `http/1.1` through ALPN.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A byte stream both ways.
pub trait Wire: Read + Write + Send {}
impl<T: Read + Write + Send> Wire for T {}

/// One client connection: writes go straight to the stream, reads through a buffer.
pub struct Conn(BufReader<Box<dyn Wire>>);

/// Where to connect: `127.0.0.1:port`, over TLS trusting `ca` if given.
#[derive(Clone, Debug)]
pub struct Target {
    pub port: u16,
    pub ca: Option<std::path::PathBuf>,
}

impl Target {
    pub fn connect(&self) -> Conn {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(60))).expect("read timeout");
        tcp.set_nodelay(true).expect("nodelay");
        let wire: Box<dyn Wire> = match &self.ca {
            None => Box::new(tcp),
            Some(ca) => Box::new(tls(tcp, ca)),
        };
        Conn(BufReader::with_capacity(64 * 1024, wire))
    }
}

fn tls(tcp: TcpStream, ca: &Path) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots.add(cert.expect("a CA certificate")).expect("add the CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from("localhost").expect("server name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
    rustls::StreamOwned::new(conn, tcp)
}

/// One request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ask {
    pub method: &'static str,
    pub path: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: &'static str,
    pub headers: Vec<(String, String)>,
}

impl Ask {
    pub fn new(method: &'static str, path: &str) -> Ask {
        Ask { method, path: path.to_string(), version: "HTTP/1.1", headers: Vec::new() }
    }

    pub fn get(path: &str) -> Ask {
        Ask::new("GET", path)
    }

    pub fn head(path: &str) -> Ask {
        Ask::new("HEAD", path)
    }

    pub fn with(mut self, name: &str, value: &str) -> Ask {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn http10(mut self) -> Ask {
        self.version = "HTTP/1.0";
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut s = format!("{} {} {}\r\nHost: mirror\r\n", self.method, self.path, self.version);
        for (name, value) in &self.headers {
            s.push_str(&format!("{name}: {value}\r\n"));
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

/// One response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub status: u16,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether the server said it closes the connection after this answer.
    pub fn closes(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || (self.version == "HTTP/1.0"
                && !self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")))
    }

    /// A short description for assertion messages.
    pub fn summary(&self) -> String {
        format!("{} {} {:?}, {} body bytes", self.version, self.status, self.headers, self.body.len())
    }
}

impl Conn {
    /// Write these requests at once.
    pub fn send(&mut self, asks: &[Ask]) {
        let bytes: Vec<u8> = asks.iter().flat_map(Ask::bytes).collect();
        let wire = self.0.get_mut();
        wire.write_all(&bytes).expect("send the requests");
        wire.flush().expect("flush the requests");
    }

    /// Write these bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let wire = self.0.get_mut();
        wire.write_all(bytes).expect("send");
        wire.flush().expect("flush");
    }

    /// Read the answer to `ask` (its method says whether a body follows).
    pub fn answer(&mut self, ask: &Ask) -> io::Result<Answer> {
        let line = self.line()?;
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("header line {line:?}")))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let mut answer = Answer { version, status, headers, body: Vec::new() };
        if ask.method == "HEAD" || matches!(status, 100..=199 | 204 | 304) {
            return Ok(answer);
        }
        if answer.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            answer.body = self.chunked()?;
        } else if let Some(len) = answer.header("content-length") {
            let len: usize =
                len.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
            answer.body = vec![0; len];
            self.0.read_exact(&mut answer.body)?;
        } else {
            self.0.read_to_end(&mut answer.body)?;
        }
        Ok(answer)
    }

    /// Send `asks` at once and read their answers.
    pub fn pipeline(&mut self, asks: &[Ask]) -> Vec<Answer> {
        self.send(asks);
        asks.iter()
            .enumerate()
            .map(|(i, ask)| self.answer(ask).unwrap_or_else(|e| panic!("answer {i} ({ask:?}): {e}")))
            .collect()
    }

    /// Whatever the server sends until it closes the connection (a TLS connection closed without `close_notify`
    /// counts as closed).
    pub fn rest(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        match self.0.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("reading to the end of the connection: {e}"),
        }
        rest
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.0.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection ended"));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    fn chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("chunk size {line:?}")))?;
            if size == 0 {
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.0.read_exact(&mut body[start..])?;
            if !self.line()?.is_empty() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "no CRLF after a chunk"));
            }
        }
    }
}
