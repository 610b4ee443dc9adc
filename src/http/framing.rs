//! Where one HTTP/1 request ends in the bytes a client sent, by the same rules actix-http's decoder applies (its
//! `h1::decoder` and `h1::chunked`): the head as `httparse` reads it with at most 96 headers, then a body framed by a
//! positive `Content-Length` or by `Transfer-Encoding: chunked` (HTTP/1.1), or none. The connection gate
//! (`gate.rs`) uses it to hand actix-http one request at a time.
//!
//! Only requests actix-http accepts need to be framed exactly. A head it refuses (a bad request line, a duplicate or
//! unreadable `Content-Length`, a `Transfer-Encoding` other than chunked or beside a length, too many headers, a
//! head over its buffer limit) is answered with 400 or 431 and ends the connection, and a request whose body is the
//! rest of the connection (a WebSocket upgrade, `CONNECT`) cannot be framed at all: those are `Unframed`, and the
//! gate lets the connection's bytes pass as they come.

/// The most headers a request may have (actix-http's limit; one more is a 400).
const MAX_HEADERS: usize = 96;

/// The most bytes actix-http buffers for an incomplete head before it answers 431.
pub const MAX_HEAD: usize = 131_072;

/// What the start of a request's bytes says about it.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// The head is not complete yet: every byte so far belongs to it.
    Partial,
    /// The head is the first `len` bytes, and `body` follows it.
    Complete { len: usize, body: Body },
    /// Not a request actix-http frames the way this module does (see the module comment).
    Unframed,
}

/// How a request's body is delimited.
#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    None,
    /// Exactly this many bytes (more than zero).
    Length(u64),
    /// Chunks up to the last one and its trailers.
    Chunked(Chunked),
}

/// Read the head at the start of `bytes`.
pub fn head(bytes: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() < MAX_HEAD => return Head::Partial,
        Ok(httparse::Status::Partial) | Err(_) => return Head::Unframed,
    };
    let http11 = req.version == Some(1);
    let mut length = None;
    let mut chunked = false;
    let mut websocket = false;
    for header in req.headers.iter() {
        let value = || std::str::from_utf8(header.value).ok().map(str::trim);
        if header.name.eq_ignore_ascii_case("content-length") {
            match value() {
                Some(v) if length.is_none() && !v.starts_with('+') => match v.parse::<u64>() {
                    Ok(n) => length = Some(n),
                    Err(_) => return Head::Unframed,
                },
                _ => return Head::Unframed,
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only one, only in HTTP/1.1, only `chunked`: anything else is a 400.
            match value() {
                Some(v) if http11 && !chunked && v.eq_ignore_ascii_case("chunked") => chunked = true,
                _ => return Head::Unframed,
            }
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            websocket |= value().is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        }
    }
    let body = match (chunked, length) {
        (true, Some(_)) => return Head::Unframed,
        (true, None) => Body::Chunked(Chunked::default()),
        // actix-http reads the rest of the connection as the body of these.
        _ if websocket => return Head::Unframed,
        (false, Some(n)) if n > 0 => Body::Length(n),
        _ if req.method == Some("CONNECT") => return Head::Unframed,
        _ => Body::None,
    };
    Head::Complete { len, body }
}

/// Where a chunked body is, step by step as actix-http's `ChunkedState` reads it.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
enum Step {
    #[default]
    SizeFirst,
    SizeRest,
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

/// The framing of a chunked body, fed its bytes as they come.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Chunked {
    step: Step,
    /// Bytes left of the current chunk's data (while reading its size: the size so far).
    size: u64,
}

/// What a run of a chunked body's bytes held.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// All of them belong to the body, which goes on.
    More,
    /// The body ends after this many of them.
    End(usize),
    /// They break the chunked framing (actix-http fails the request).
    Invalid,
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

impl Chunked {
    /// Read `bytes`, the next bytes of the body.
    pub fn scan(&mut self, bytes: &[u8]) -> Scan {
        let mut i = 0;
        while i < bytes.len() {
            if self.step == Step::Data {
                let n = self.size.min((bytes.len() - i) as u64);
                self.size -= n;
                i += n as usize;
                if self.size == 0 {
                    self.step = Step::DataCr;
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.step = match (self.step, b) {
                (Step::SizeFirst, b) => match hex(b) {
                    Some(d) => {
                        self.size = d;
                        Step::SizeRest
                    }
                    None => return Scan::Invalid,
                },
                (Step::SizeRest, b'\t' | b' ') => Step::SizeLws,
                (Step::SizeRest | Step::SizeLws, b';') => Step::Extension,
                (Step::SizeRest | Step::SizeLws | Step::Extension, b'\r') => Step::SizeLf,
                (Step::SizeRest, b) => match hex(b).and_then(|d| self.size.checked_mul(16)?.checked_add(d)) {
                    Some(size) => {
                        self.size = size;
                        Step::SizeRest
                    }
                    None => return Scan::Invalid,
                },
                (Step::SizeLws, b'\t' | b' ') => Step::SizeLws,
                (Step::Extension, 0x00..=0x08 | 0x0a..=0x1f | 0x7f) => return Scan::Invalid,
                (Step::Extension, _) => Step::Extension,
                (Step::SizeLf, b'\n') if self.size > 0 => Step::Data,
                (Step::SizeLf, b'\n') => Step::EndCr,
                (Step::DataCr, b'\r') => Step::DataLf,
                (Step::DataLf, b'\n') => Step::SizeFirst,
                (Step::Trailer, b'\r') => Step::TrailerLf,
                (Step::Trailer, _) => Step::Trailer,
                (Step::TrailerLf, b'\n') => Step::EndCr,
                (Step::EndCr, b'\r') => Step::EndLf,
                (Step::EndCr, _) => Step::Trailer,
                (Step::EndLf, b'\n') => return Scan::End(i),
                _ => return Scan::Invalid,
            };
        }
        Scan::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> (usize, Body) {
        match head(bytes) {
            Head::Complete { len, body } => (len, body),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn heads_are_framed_as_actix_http_frames_them() {
        let get = b"GET /v2/ HTTP/1.1\r\nHost: a\r\n\r\nHEAD /v2/ HTTP/1.1\r\n";
        assert_eq!(complete(get), (30, Body::None));
        assert_eq!(head(&get[..20]), Head::Partial);
        assert_eq!(
            complete(b"\r\nGET / HTTP/1.0\r\n\r\n"),
            (20, Body::None),
            "empty lines before a request are its own"
        );
        assert_eq!(complete(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"), (38, Body::Length(5)));
        assert_eq!(complete(b"POST / HTTP/1.1\r\nContent-Length:  0 \r\n\r\n"), (40, Body::None));
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            (47, Body::Chunked(Chunked::default()))
        );
        for unframed in [
            &b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            assert_eq!(head(unframed), Head::Unframed, "{:?}", String::from_utf8_lossy(unframed));
        }
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(head(many.as_bytes()), Head::Unframed, "too many headers");
        let huge = format!("GET / HTTP/1.1\r\nA: {}", "b".repeat(MAX_HEAD));
        assert_eq!(head(huge.as_bytes()), Head::Unframed, "a head over actix-http's limit");
    }

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers_whatever_the_pieces() {
        let body = b"5;ext=1\r\nhello\r\nA \r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nGET";
        let end = body.len() - 3;
        for cut in 0..body.len() {
            let mut c = Chunked::default();
            let got = match c.scan(&body[..cut]) {
                Scan::More => match c.scan(&body[cut..]) {
                    Scan::End(n) => cut + n,
                    other => panic!("cut at {cut}: {other:?}"),
                },
                Scan::End(n) => n,
                Scan::Invalid => panic!("cut at {cut}: invalid"),
            };
            assert_eq!(got, end, "cut at {cut}");
        }
        let mut plain = Chunked::default();
        assert_eq!(plain.scan(b"0\r\n\r\n"), Scan::End(5));
        for bad in [&b"x\r\n"[..], b"5\r\nhelloX", b"1\n", b"0\r\n\rX", b"fffffffffffffffff\r\n"] {
            assert_eq!(Chunked::default().scan(bad), Scan::Invalid, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
