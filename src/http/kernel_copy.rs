//! Plain-HTTP connections that can send a blob's bytes from its file to the socket inside the kernel
//! (`sendfile`), the way nginx serves files: no copy of the body through this process, so a warm large blob costs
//! a fraction of the CPU a streamed one does.
//!
//! actix-http writes a response by copying its head and every body chunk into its write buffer, then writing that
//! buffer to the connection; it has no way to hand a file to the socket. So the connection is wrapped (`Conn`), and
//! the body of a response that can leave from files (`FileBody`) is made of `Stretch`es (`actors::Stretch`): bytes,
//! which it yields to actix-http as any body does, and file ranges, each of which it gives to the connection's
//! `Slot` and waits for while the wrapper sends it. The stretches come in the order they go out, so which bytes go
//! where is settled by the type; *when* they go rests on three facts of actix-http's h1 dispatcher and codec
//! (`Cargo.toml` pins the minor version they were checked on; `tests/kernel_copy.rs` and `tests/pipelining.rs`
//! check them):
//! - it calls the connection's `poll_flush` only after everything in its write buffer was written, and calls it
//!   while a response body is pending, write buffer empty or not;
//! - while a response body is pending it puts nothing else in its write buffer (the next pipelined response waits
//!   for the body's end);
//! - a body announced with `no_chunking` and a `BodyStream` is written as it comes (no chunk framing, no count
//!   against the `Content-Length`), so bytes sent beside it do not upset its framing.
//!
//! So, for each response:
//! - the handler answers with the head (`Content-Length` set by hand, no chunking) and a `FileBody`;
//! - the dispatcher encodes the head into its buffer and polls the body, which yields the stretches of bytes it has
//!   (into the buffer, after the head), and at a file range puts the range in the slot and waits;
//! - the dispatcher writes the buffer and calls `poll_flush`: the wrapper sends the range there, after those bytes
//!   and before anything else, and wakes the body when it is done;
//! - the body goes on with its next stretch, and once they are all out it ends, and actix-http goes on to the next
//!   request of the connection.
//!
//! A verified cached blob is one file stretch (a GET of it is the head, then one `sendfile` loop); a client behind a
//! running fetch gets chunks, and each large stretch the transfer has written as a file range (`read.rs`).
//!
//! A failure part-way (the client went away, the file was damaged, the kernel's send timeout fired) fails the flush,
//! which closes the connection: the client sees a body shorter than its `Content-Length`, never a wrong one.
//! Connections over TLS are served by the streamed path: TLS has to see the bytes.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll, Waker};

use actix_web::rt::net::TcpStream;
use actors::{FileRange, Stretch, StretchStream};
use bytes::Bytes;
use futures_util::Stream;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

type Warming = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// `sendfile` calls one poll of a connection makes at most (each sends up to `SEND_PIECE`, 2 MiB).
const PIECES_PER_POLL: usize = 8;

/// A range being sent, and the body waiting for it.
struct Job {
    range: FileRange,
    /// The piece being read into the page cache first (it was not there).
    warming: Option<Warming>,
    sent: u64,
}

/// How a job ended: the bytes that left, and why it stopped short if it did.
struct Ended {
    sent: u64,
    error: Option<io::Error>,
}

/// What one connection's wrapper and the body of its current response share.
#[derive(Default)]
struct Slot {
    job: Option<Job>,
    /// How the last job ended.
    ended: Option<Ended>,
    /// The body to wake when it did.
    waiter: Option<Waker>,
}

/// A connection's handle for its responses (in each request's connection data): whether it can send files.
#[derive(Clone)]
pub struct KernelCopy(Rc<RefCell<Slot>>);

impl KernelCopy {
    /// A body of `len` bytes, made of `stretches`, that this connection sends: bytes through actix-http, file ranges
    /// from their files in their place; `served` counts every byte that leaves (byte stretches as they are yielded,
    /// file ranges once sent).
    pub fn body(&self, len: u64, stretches: StretchStream, served: IntCounter) -> FileBody {
        let slot = self.0.clone();
        let stretches = Some(stretches);
        FileBody { slot, len, yielded: 0, sent: 0, stretches, registered: false, served: Some(served) }
    }
}

/// The body of a response whose bytes the connection sends, some of them from files (see the module comment).
/// Announce its length with `no_chunking` (actix-http passes the body through as it is): the files' bytes do not go
/// through it, and it fails (closing the connection) if its stretches together fall short of `len`.
pub struct FileBody {
    slot: Rc<RefCell<Slot>>,
    len: u64,
    /// Bytes of byte stretches handed to actix-http.
    yielded: u64,
    /// Bytes the connection sent from files for this body.
    sent: u64,
    /// What is left of the body (`None` once it ended or failed).
    stretches: Option<StretchStream>,
    /// A range of this body is the connection's job now.
    registered: bool,
    /// Counts the bytes served; taken when the bytes sent from files are reported.
    served: Option<IntCounter>,
}

impl FileBody {
    /// Report the bytes sent from files (once).
    fn report(&mut self) {
        if let Some(served) = self.served.take() {
            served.inc_by(self.sent);
        }
    }

    /// The end of the body: what it yielded and what was sent must add up to the announced length.
    fn finish(&mut self) -> Option<Result<Bytes, io::Error>> {
        self.report();
        let total = self.yielded + self.sent;
        (total != self.len)
            .then(|| Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{total} of {} bytes sent", self.len))))
    }
}

impl Stream for FileBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.registered {
                let slot = this.slot.clone();
                let mut slot = slot.borrow_mut();
                let Some(Ended { sent, error }) = slot.ended.take() else {
                    // The connection sends it at its next flush (after what this body yielded before).
                    slot.waiter = Some(cx.waker().clone());
                    return Poll::Pending;
                };
                this.registered = false;
                this.sent += sent;
                if let Some(e) = error {
                    this.report();
                    return Poll::Ready(Some(Err(e)));
                }
                continue;
            }
            let Some(stretches) = this.stretches.as_mut() else {
                return Poll::Ready(this.finish());
            };
            match ready!(stretches.as_mut().poll_next(cx)) {
                Some(Ok(Stretch::Bytes(chunk))) => {
                    this.yielded += chunk.len() as u64;
                    if let Some(served) = &this.served {
                        served.inc_by(chunk.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Some(Ok(Stretch::File(range))) => {
                    let mut slot = this.slot.borrow_mut();
                    if slot.job.is_some() {
                        return Poll::Ready(Some(Err(io::Error::other("a connection sends one file at a time"))));
                    }
                    slot.ended = None;
                    slot.job = Some(Job { range, warming: None, sent: 0 });
                    this.registered = true;
                }
                Some(Err(e)) => {
                    this.stretches = None;
                    this.report();
                    return Poll::Ready(Some(Err(e)));
                }
                None => this.stretches = None,
            }
        }
    }
}

/// A plain-HTTP client connection: a TCP stream that sends its slot's file range when actix-http flushes it.
pub struct Conn {
    tcp: TcpStream,
    slot: Rc<RefCell<Slot>>,
}

impl Conn {
    pub fn new(tcp: TcpStream) -> Self {
        Conn { tcp, slot: Rc::default() }
    }

    /// The handle its requests carry.
    pub fn handle(&self) -> KernelCopy {
        KernelCopy(self.slot.clone())
    }

    /// Send the pending range, if any, to its end: `Ready(Ok)` when there is nothing (more) to send.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut pieces = PIECES_PER_POLL;
        let (sent, error) = loop {
            let mut slot = self.slot.borrow_mut();
            let Some(job) = slot.job.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            if job.range.remaining() == 0 {
                break (job.sent, None);
            }
            if let Some(warming) = job.warming.as_mut() {
                match ready!(warming.as_mut().poll(cx)) {
                    Ok(()) => {
                        job.warming = None;
                        job.range.warmed();
                    }
                    Err(e) => break (job.sent, Some(e)),
                }
                continue;
            }
            if job.range.needs_warming() {
                job.warming = Some(Box::pin(job.range.warm()));
                continue;
            }
            if let Err(e) = ready!(self.tcp.poll_write_ready(cx)) {
                break (job.sent, Some(e));
            }
            if pieces == 0 {
                // Let the worker's other connections run before the next pieces (a fast client never fills the
                // socket, so this connection would otherwise keep the worker for the whole blob).
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            pieces -= 1;
            match self.tcp.try_io(Interest::WRITABLE, || job.range.send_to(&self.tcp)) {
                Ok(n) => job.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => break (job.sent, Some(e)),
            }
        };
        let mut slot = self.slot.borrow_mut();
        slot.job = None;
        // The body reports the error (actix-http logs it); the flush fails with it too, which closes the connection.
        let failed = error.as_ref().map(|e| io::Error::new(e.kind(), e.to_string()));
        slot.ended = Some(Ended { sent, error });
        if let Some(waiter) = slot.waiter.take() {
            waiter.wake();
        }
        match failed {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    /// Bytes from actix-http's write buffer go straight through: a pending range is sent only at the flush that
    /// follows them (see the module comment).
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
