//! The connection gate: an HTTP/1 connection hands actix-http one request at a time, so that pipelined requests
//! cannot change how an earlier response is framed.
//!
//! actix-http's h1 codec keeps one set of flags per connection (is the request a `HEAD`, its HTTP version, keep-alive
//! or close), set when it decodes a request and read when it encodes a response head. Its dispatcher decodes
//! pipelined requests ahead while a handler is pending, so a response would be encoded with the flags of a later
//! request: a `GET` behind which a `HEAD` waits loses its body, an HTTP/1.0 or `Connection: close` request changes
//! the version and keep-alive of the answer before it. The gate sits between the socket and the dispatcher (`Gate`)
//! and lets the dispatcher read the bytes of one request only (framed by `framing`), then nothing more until the
//! service has answered that request: `InTurn` wraps the service and settles the request's turn when its future
//! resolves, in the same poll in which the dispatcher encodes the response head. From then on the codec's flags
//! are that response's own, and the next request may be read (while the body goes out, if it is long).
//!
//! A turn settles when the service's future resolves or is dropped, so no answer the service gives can leave the
//! gate shut. The answers the dispatcher makes itself (400 for a head it refuses, 431, 408) end the connection's
//! reading anyway, and what the gate cannot frame (see `framing`) makes it open for good: the bytes then pass as
//! they come, as without the gate. Bytes that arrive while the gate is shut are read ahead into its buffer (up to
//! actix-http's own limit), so a client that resets or closes the connection is still noticed.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll, Waker};

use actix_http::Request;
use actix_service::{Service, ServiceFactory};
use bytes::{Buf, BytesMut};
use futures_util::TryFutureExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::framing::{self, Body, Chunked, Head, Scan};

/// Read ahead while the gate is shut, at most this much (actix-http stops reading at the same size).
const HOLD_MAX: usize = framing::MAX_HEAD;

/// Each read from the connection asks for at least this much room.
const READ_ROOM: usize = 8 * 1024;

/// What a connection's gate and the service wrapper of its requests share.
#[derive(Default)]
struct Shared {
    /// Requests whose answers were settled.
    settled: Cell<u64>,
    /// The dispatcher, waiting for the next request's bytes.
    waiter: Cell<Option<Waker>>,
}

/// A connection's handle for its requests (in their connection data): each request takes a turn.
#[derive(Clone)]
pub struct Turns(Rc<Shared>);

impl Turns {
    fn begin(&self) -> Turn {
        Turn(self.0.clone())
    }
}

/// One request's turn: settled when dropped, which lets the gate hand the dispatcher the next request.
struct Turn(Rc<Shared>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.settled.set(self.0.settled.get() + 1);
        if let Some(waker) = self.0.waiter.take() {
            waker.wake();
        }
    }
}

/// Where the gate is in the current request.
enum Phase {
    /// Reading its head; the first `given` bytes of the buffer were handed already (a head that came in pieces), and
    /// the first `parsed` were found to be an incomplete head (not parsed again until more come).
    Head { given: usize, parsed: usize },
    /// Handing this many bytes of its body.
    Length(u64),
    /// Handing its chunked body.
    Chunked(Chunked),
    /// Handed whole: the next request waits until its answer is settled.
    Answering,
    /// Framing given up (or never wanted, for HTTP/2): everything passes.
    Open,
}

/// A connection whose reads hand actix-http one request at a time (see the module comment). Writes pass through.
pub struct Gate<T> {
    io: T,
    /// Bytes read from `io` and not yet handed over (but see `Phase::Head`).
    buf: BytesMut,
    /// Bytes at the front of `buf` that belong to the current request and can be handed over.
    cleared: usize,
    phase: Phase,
    /// Requests handed over whole (heads, that is: their bodies follow).
    handed: u64,
    /// `io` reached its end.
    eof: bool,
    shared: Rc<Shared>,
}

impl<T> Gate<T> {
    /// A gated HTTP/1 connection.
    pub fn new(io: T) -> Self {
        Gate::with_phase(io, Phase::Head { given: 0, parsed: 0 })
    }

    /// A connection that is not gated (HTTP/2 multiplexes its requests and frames each response on its own stream).
    pub fn open(io: T) -> Self {
        Gate::with_phase(io, Phase::Open)
    }

    fn with_phase(io: T, phase: Phase) -> Self {
        Gate { io, buf: BytesMut::new(), cleared: 0, phase, handed: 0, eof: false, shared: Rc::default() }
    }

    /// The handle its requests carry, if it is gated.
    pub fn turns(&self) -> Option<Turns> {
        (!matches!(self.phase, Phase::Open)).then(|| Turns(self.shared.clone()))
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

/// What the gate may do next (see `Gate::frame`).
enum Next {
    /// Hand the cleared bytes, or look again (the phase moved on).
    Again,
    /// Hand the rest of a head that is still coming.
    PartialHead,
    /// Read more of the connection: the current request needs it.
    Read,
    /// Shut until the current answer is settled.
    Shut,
}

impl<T: AsyncRead + Unpin> Gate<T> {
    /// Read more of the connection into the buffer: `Ready(Ok(0))` at its end.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_ROOM / 8 {
            self.buf.reserve(READ_ROOM);
        }
        let n = ready!(tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf))?;
        self.eof |= n == 0;
        Poll::Ready(Ok(n))
    }

    /// Work out which buffered bytes belong to the current request (`cleared`), moving through its phases.
    fn frame(&mut self) -> Next {
        match &mut self.phase {
            Phase::Open if self.buf.is_empty() => Next::Read,
            Phase::Open => {
                self.cleared = self.buf.len();
                Next::Again
            }
            // Every byte of a head still coming belongs to it.
            Phase::Head { given, parsed } if *parsed == self.buf.len() => {
                if *given < self.buf.len() {
                    Next::PartialHead
                } else {
                    Next::Read
                }
            }
            Phase::Head { given, parsed } => match framing::head(&self.buf) {
                Head::Partial => {
                    *parsed = self.buf.len();
                    if *given < self.buf.len() {
                        Next::PartialHead
                    } else {
                        Next::Read
                    }
                }
                Head::Complete { len, body } => {
                    self.buf.advance(*given);
                    self.cleared = len - *given;
                    self.handed += 1;
                    self.phase = match body {
                        Body::None => Phase::Answering,
                        Body::Length(n) => Phase::Length(n),
                        Body::Chunked(c) => Phase::Chunked(c),
                    };
                    Next::Again
                }
                Head::Unframed => {
                    self.buf.advance(*given);
                    self.phase = Phase::Open;
                    Next::Again
                }
            },
            Phase::Length(0) => {
                self.phase = Phase::Answering;
                Next::Again
            }
            Phase::Length(_) if self.buf.is_empty() => Next::Read,
            Phase::Length(left) => {
                let n = (*left).min(self.buf.len() as u64);
                *left -= n;
                self.cleared = n as usize;
                Next::Again
            }
            Phase::Chunked(_) if self.buf.is_empty() => Next::Read,
            Phase::Chunked(chunked) => {
                match chunked.scan(&self.buf) {
                    Scan::More => self.cleared = self.buf.len(),
                    Scan::End(n) => {
                        self.cleared = n;
                        self.phase = Phase::Answering;
                    }
                    Scan::Invalid => self.phase = Phase::Open,
                }
                Next::Again
            }
            Phase::Answering if self.shared.settled.get() >= self.handed => {
                self.phase = Phase::Head { given: 0, parsed: 0 };
                if self.buf.is_empty() && self.buf.capacity() > 4 * READ_ROOM {
                    // Room a burst of pipelined requests took is not kept for the connection's life.
                    self.buf = BytesMut::new();
                }
                Next::Again
            }
            Phase::Answering => Next::Shut,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Gate<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.cleared > 0 {
                let n = this.cleared.min(out.remaining());
                out.put_slice(&this.buf[..n]);
                this.buf.advance(n);
                this.cleared -= n;
                return Poll::Ready(Ok(()));
            }
            match this.frame() {
                Next::Again => {}
                Next::PartialHead => {
                    // Handed as it comes (the dispatcher's keep-alive timer must see it), and kept, to read the
                    // head again with what follows.
                    if let Phase::Head { given, .. } = &mut this.phase {
                        let n = (this.buf.len() - *given).min(out.remaining());
                        out.put_slice(&this.buf[*given..*given + n]);
                        *given += n;
                    }
                    return Poll::Ready(Ok(()));
                }
                Next::Read if matches!(this.phase, Phase::Open) && !this.eof => {
                    return Pin::new(&mut this.io).poll_read(cx, out);
                }
                Next::Read => {
                    // The end of the connection, if it came, is the dispatcher's to see.
                    if this.eof || ready!(this.fill(cx))? == 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
                Next::Shut => {
                    if this.eof && this.buf.is_empty() {
                        // The client is done sending, and nothing it sent waits here: the dispatcher may know.
                        return Poll::Ready(Ok(()));
                    }
                    // Read ahead meanwhile, to notice a reset or the end.
                    if !this.eof && this.buf.len() < HOLD_MAX {
                        if let Poll::Ready(read) = this.fill(cx) {
                            read?;
                            continue;
                        }
                    }
                    // The settled turn wakes the dispatcher for what waits here; with nothing here, the connection
                    // wakes it when bytes come (an extra wake-up per request would cost a poll and a read).
                    if this.buf.is_empty() {
                        this.shared.waiter.take();
                    } else {
                        this.shared.waiter.set(Some(cx.waker().clone()));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Gate<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

pin_project_lite::pin_project! {
    /// A request's answer being made, holding its turn.
    pub struct InTurnFuture<F> {
        #[pin]
        fut: F,
        turn: Option<Turn>,
    }
}

impl<F: Future> Future for InTurnFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = ready!(this.fut.poll(cx));
        // Settled as the answer leaves for the dispatcher, which encodes its head before it reads again.
        drop(this.turn.take());
        Poll::Ready(out)
    }
}

/// The service factory of gated connections: `S`'s services, each request in its turn.
pub struct InTurn<S>(pub S);

impl<S: ServiceFactory<Request>> ServiceFactory<Request> for InTurn<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Config = S::Config;
    type Service = InTurnService<S::Service>;
    type InitError = S::InitError;
    type Future = futures_util::future::MapOk<S::Future, fn(S::Service) -> InTurnService<S::Service>>;

    fn new_service(&self, config: S::Config) -> Self::Future {
        fn wrap<S>(inner: S) -> InTurnService<S> {
            InTurnService { inner }
        }
        self.0.new_service(config).map_ok(wrap as fn(S::Service) -> InTurnService<S::Service>)
    }
}

/// A service whose requests take their connection's turns (when they carry `Turns`).
pub struct InTurnService<S> {
    inner: S,
}

impl<S: Service<Request>> Service<Request> for InTurnService<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = InTurnFuture<S::Future>;

    actix_service::forward_ready!(inner);

    fn call(&self, req: Request) -> Self::Future {
        let turn = req.conn_data::<Turns>().map(Turns::begin);
        InTurnFuture { fut: self.inner.call(req), turn }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// What one read of the gate gives at once: `None` while it is shut (or waits for bytes).
    fn read_now<T: AsyncRead + Unpin>(gate: &mut Gate<T>) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        let n = gate.read(&mut buf).now_or_never()?.expect("read");
        buf.truncate(n);
        Some(buf)
    }

    #[tokio::test]
    async fn the_gate_hands_one_request_then_waits_for_its_turn_to_settle() {
        let first = &b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"[..];
        let second = &b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"[..];
        let third = &b"HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n"[..];
        let (mut client, server) = tokio::io::duplex(1024);
        let mut gate = Gate::new(server);
        let turns = gate.turns().expect("a gated connection has turns");
        // The first head in two pieces: each piece is handed as it comes.
        client.write_all(&first[..10]).await.expect("write");
        assert_eq!(read_now(&mut gate).as_deref(), Some(&first[..10]));
        assert_eq!(read_now(&mut gate), None, "nothing more yet");
        client.write_all(&[&first[10..], second, b"abc", third].concat()).await.expect("write");
        assert_eq!(read_now(&mut gate).as_deref(), Some(&first[10..]), "the rest of the first head, alone");
        assert_eq!(read_now(&mut gate), None, "shut while the first request is answered");
        drop(turns.begin());
        assert_eq!(read_now(&mut gate).as_deref(), Some(second), "the second head once the first is answered");
        // Its answer may come before its body is read (actix answers without reading it): the body still follows.
        drop(turns.begin());
        assert_eq!(read_now(&mut gate).as_deref(), Some(&b"abc"[..]), "its body");
        assert_eq!(read_now(&mut gate).as_deref(), Some(third), "then the third, its turn being settled");
        // The client is done sending: the end reaches the dispatcher only once nothing waits in the gate.
        drop(client);
        assert_eq!(read_now(&mut gate).as_deref(), Some(&b""[..]), "the end of the connection");
    }

    #[tokio::test]
    async fn what_the_gate_cannot_frame_passes_as_it_comes() {
        let bad = &b"GET / HTTP/1.1\r\nBad Header\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"[..];
        let mut gate = Gate::new(bad);
        let mut all = Vec::new();
        while let Some(bytes) = read_now(&mut gate) {
            if bytes.is_empty() {
                break;
            }
            all.extend_from_slice(&bytes);
        }
        assert_eq!(all, bad, "everything, unframed, up to the end");
        let mut open = Gate::open(&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..]);
        assert!(open.turns().is_none(), "an open connection takes no turns");
        assert_eq!(read_now(&mut open).map(|b| b.len()), Some(24));
    }
}
