//! A minimal blocking HTTP/1.1 client over one kept-alive TCP connection: enough for a registry's pull and push
//! API, with no allocation per body chunk and `TCP_NODELAY` set (as Go's and containerd's clients do), so that the
//! figures measure the server rather than the client.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What the response says about its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A response head; the body is read separately (or skipped) with [`Conn::read_body`].
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    framing: Framing,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

pub struct Conn {
    reader: BufReader<TcpStream>,
    host: String,
    /// False once the server said `Connection: close` or a body ran to EOF.
    pub reusable: bool,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Conn {
    pub fn connect(addr: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Conn { reader: BufReader::with_capacity(256 * 1024, stream), host: addr.to_string(), reusable: true })
    }

    /// Write a request head (and `body`, if any) in one write. `body_len` is sent as `Content-Length` when given
    /// (the caller then writes the body with [`Conn::write_all`] if `body` is empty).
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body_len: Option<u64>,
        body: &[u8],
    ) -> io::Result<()> {
        let mut req = Vec::with_capacity(256 + body.len());
        write!(req, "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ocibench\r\n", self.host)?;
        for (name, value) in headers {
            write!(req, "{name}: {value}\r\n")?;
        }
        if let Some(n) = body_len {
            write!(req, "Content-Length: {n}\r\n")?;
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        self.reader.get_mut().write_all(&req)
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    fn line(&mut self, buf: &mut String) -> io::Result<()> {
        buf.clear();
        if self.reader.read_line(buf)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by the server"));
        }
        Ok(())
    }

    /// Read a response head. `head_request`: the request was a HEAD, so no body follows whatever the headers say.
    pub fn read_head(&mut self, head_request: bool) -> io::Result<Head> {
        let mut line = String::new();
        self.line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            self.line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let mut head = Head { status, headers, framing: Framing::None };
        if head.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            self.reusable = false;
        }
        head.framing = if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::None
        } else if head.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            Framing::Chunked
        } else if let Some(n) = head.header("content-length") {
            Framing::Length(n.parse().map_err(|_| bad(format!("bad content-length {n:?}")))?)
        } else {
            Framing::UntilClose
        };
        Ok(head)
    }

    fn pump(&mut self, mut remaining: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let total = remaining;
        while remaining > 0 {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "body cut short"));
            }
            let n = buf.len().min(remaining as usize);
            sink(&buf[..n]);
            self.reader.consume(n);
            remaining -= n as u64;
        }
        Ok(total)
    }

    /// Read the body of `head`, handing each piece to `sink`; returns its length.
    pub fn read_body(&mut self, head: &Head, sink: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        match head.framing {
            Framing::None => Ok(0),
            Framing::Length(n) => self.pump(n, sink),
            Framing::UntilClose => {
                self.reusable = false;
                let mut total = 0;
                loop {
                    let buf = self.reader.fill_buf()?;
                    if buf.is_empty() {
                        return Ok(total);
                    }
                    let n = buf.len();
                    sink(buf);
                    self.reader.consume(n);
                    total += n as u64;
                }
            }
            Framing::Chunked => {
                let mut total = 0;
                let mut line = String::new();
                loop {
                    self.line(&mut line)?;
                    let size = line.trim_end().split(';').next().unwrap_or("");
                    let size = u64::from_str_radix(size.trim(), 16).map_err(|_| bad(format!("bad chunk {line:?}")))?;
                    if size == 0 {
                        loop {
                            self.line(&mut line)?;
                            if line.trim_end().is_empty() {
                                return Ok(total);
                            }
                        }
                    }
                    total += self.pump(size, sink)?;
                    self.line(&mut line)?;
                }
            }
        }
    }

    /// Read and drop a body.
    pub fn skip_body(&mut self, head: &Head) -> io::Result<u64> {
        self.read_body(head, &mut |_| {})
    }

    /// A whole exchange with a small body in and the body out in memory.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<(Head, Vec<u8>)> {
        self.send(method, path, headers, body.map(|b| b.len() as u64), body.unwrap_or_default())?;
        let head = self.read_head(method == "HEAD")?;
        let mut out = Vec::new();
        self.read_body(&head, &mut |b| out.extend_from_slice(b))?;
        Ok((head, out))
    }
}

/// A connection that reopens itself when the server closed the previous one.
pub struct Client {
    pub addr: String,
    conn: Option<Conn>,
    /// Connections opened so far.
    pub connects: u64,
}

impl Client {
    pub fn new(addr: &str) -> Client {
        Client { addr: addr.to_string(), conn: None, connects: 0 }
    }

    /// The open connection, reconnecting if needed.
    pub fn conn(&mut self) -> io::Result<&mut Conn> {
        if self.conn.as_ref().is_none_or(|c| !c.reusable) {
            self.conn = Some(Conn::connect(&self.addr)?);
            self.connects += 1;
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// Forget the connection (after an error).
    pub fn reset(&mut self) {
        self.conn = None;
    }

    /// A whole exchange (see [`Conn::request`]); the connection is dropped on error.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<(Head, Vec<u8>)> {
        let r = self.conn()?.request(method, path, headers, body);
        if r.is_err() {
            self.reset();
        }
        r
    }

    /// GET (or HEAD) streaming the body through `sink`.
    pub fn fetch(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<(Head, u64)> {
        let r = (|| {
            let c = self.conn()?;
            c.send(method, path, headers, None, &[])?;
            let head = c.read_head(method == "HEAD")?;
            let n = c.read_body(&head, sink)?;
            Ok((head, n))
        })();
        if r.is_err() {
            self.reset();
        }
        r
    }
}

/// Drain whatever a reader holds (used for large request bodies read from a generator).
pub fn copy_to(conn: &mut Conn, reader: &mut dyn Read) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        conn.write_all(&buf[..n])?;
        total += n as u64;
    }
}
