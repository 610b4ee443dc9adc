//! A range of a committed blob's file, copied to a client's socket inside the kernel (`sendfile`): the bytes go from
//! the page cache to the socket with no copy through this process, which is what a web server serving files does.
//! The HTTP layer drives it on plain-HTTP connections (`src/http/kernel_copy.rs`); this type is the only thing that
//! touches the file, so the store keeps its rule that nothing outside it reads or writes cache files.
//!
//! `sendfile` waits for the disk when the pages are not in the page cache, and it would wait on an HTTP worker. So
//! before each piece the first and last pages of it are probed without waiting (`preadv2` with `RWF_NOWAIT`); a
//! piece that is not all there is first read on the blocking pool (`warm`), which brings it into the page cache, and
//! then sent. A hot blob costs two tiny probes per `SEND_PIECE`; a cold one costs what the streamed path costs.
//!
//! A range of a committed blob's file carries the `Stamp` of the file as it was opened (the version the cache
//! verified): before a `sendfile` that may send the range's last byte, an `fstat` of the open file checks that the
//! bytes have not changed since. If they have (the file was written in place while it was sent), the range fails
//! instead: the connection ends the response short, so a client never gets a body that looks whole with bytes that
//! are not the blob's, and the change is reported (`on_change`) so the file is moved aside and fetched again. That
//! is one `fstat` per response for a client that keeps up (its last piece leaves in one call), one per call of the
//! last piece for a slow one. A range of a transfer's growing file has no stamp: its bytes were hashed as they
//! were written.

use std::fs::File;
use std::io::{self, IoSliceMut};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rustix::io::{preadv2, ReadWriteFlags};

use crate::store::records::Version;
use crate::store::stamp::Stamp;

/// At most this much is handed to one `sendfile` (nginx's `sendfile_max_chunk` default): one call never holds a
/// worker for long, and the cold-page probe covers a bounded piece.
pub const SEND_PIECE: u64 = 2 * 1024 * 1024;

/// Told the file's version when a committed blob's file is found changed while it is sent.
type OnChange = Box<dyn FnOnce(Version) + Send>;

/// The bytes `start..end` of an open file, with how far they have been sent.
pub struct FileRange {
    file: Arc<File>,
    pos: u64,
    end: u64,
    /// Sent without a probe up to here: the piece `warm` just read.
    warmed_to: u64,
    /// A committed blob's file as it was opened: checked before the last piece leaves.
    stamp: Option<Stamp>,
    on_change: Option<OnChange>,
}

impl std::fmt::Debug for FileRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRange")
            .field("pos", &self.pos)
            .field("end", &self.end)
            .field("checked", &self.stamp.is_some())
            .finish()
    }
}

impl FileRange {
    /// A range of `file`; with a `stamp` (a committed blob's file as opened), one that fails rather than send its
    /// last byte if the file changed since.
    pub(crate) fn new(file: Arc<File>, start: u64, end: u64, stamp: Option<Stamp>) -> Self {
        FileRange { file, pos: start, end: end.max(start), warmed_to: start, stamp, on_change: None }
    }

    /// Have `report` told the file's version if the file is found changed while the range is sent.
    pub(crate) fn on_change(mut self, report: impl FnOnce(Version) + Send + 'static) -> Self {
        self.on_change = Some(Box::new(report));
        self
    }

    /// Whether the file still holds the bytes it was opened with (always, for a range without a stamp); when it does
    /// not, the change is reported (once) and the answer is an error.
    fn recheck(&mut self) -> io::Result<()> {
        let Some(stamp) = &self.stamp else {
            return Ok(());
        };
        let Some(now) = stamp.changed(&self.file)? else {
            return Ok(());
        };
        if let Some(report) = self.on_change.take() {
            report(now);
        }
        Err(io::Error::new(io::ErrorKind::InvalidData, "cached blob file changed while it was sent"))
    }

    /// Bytes not sent yet.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    fn piece(&self) -> u64 {
        self.remaining().min(SEND_PIECE)
    }

    /// Whether the next `send_to` may have to wait for the disk (its piece is not known to be in the page cache).
    pub fn needs_warming(&self) -> bool {
        if self.pos < self.warmed_to || self.remaining() == 0 {
            return false;
        }
        let last = self.pos + self.piece() - 1;
        !(cached(&self.file, self.pos) && cached(&self.file, last))
    }

    /// Read the next piece on the blocking pool so that it is in the page cache; `send_to` then sends it without a
    /// probe. An error is the disk's (the file is damaged or gone): the response cannot be finished.
    pub fn warm(&self) -> impl std::future::Future<Output = io::Result<()>> + Send + 'static {
        let (file, pos, len) = (self.file.clone(), self.pos, self.piece());
        async move {
            tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; len as usize];
                let mut done = 0;
                while done < buf.len() {
                    match file.read_at(&mut buf[done..], pos + done as u64)? {
                        0 => break,
                        n => done += n,
                    }
                }
                Ok(())
            })
            .await
            .map_err(io::Error::other)?
        }
    }

    /// Remember that the piece at the current position was just warmed.
    pub fn warmed(&mut self) {
        self.warmed_to = self.pos + self.piece();
    }

    /// Copy the next bytes to `socket` (non-blocking) inside the kernel: how many left. `WouldBlock` when the
    /// socket takes nothing now; `UnexpectedEof` when the file ends before the range does (it was damaged);
    /// `InvalidData`, before the last piece (or where a committed blob's file ends early), when the file changed
    /// since it was opened.
    pub fn send_to(&mut self, socket: impl AsFd) -> io::Result<u64> {
        if self.remaining() == 0 {
            return Ok(0);
        }
        let piece = self.piece();
        if piece == self.remaining() {
            // This call may send the last byte: the bytes must still be the ones that were verified.
            self.recheck()?;
        }
        let mut offset = self.pos;
        let n = rustix::fs::sendfile(socket, &*self.file, Some(&mut offset), piece as usize)?;
        if n == 0 {
            // Cut short in place: reported as a change (with the version now), so the copy is moved aside.
            self.recheck()?;
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cached blob file ended before its size"));
        }
        self.pos += n as u64;
        Ok(n as u64)
    }
}

/// Whether the page holding `offset` is in the page cache (a read of one byte that may not wait for the disk).
fn cached(file: &File, offset: u64) -> bool {
    let mut byte = [0u8; 1];
    matches!(preadv2(file, &mut [IoSliceMut::new(&mut byte)], offset, ReadWriteFlags::NOWAIT), Ok(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::stamp::file_of;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[tokio::test]
    async fn a_range_arrives_whole_through_the_socket() {
        let data: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let mut range = FileRange::new(file_of(&data), 1000, data.len() as u64 - 7, None);
        let (tx, mut rx) = UnixStream::pair().expect("socket pair");
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).expect("read");
            got
        });
        if range.needs_warming() {
            range.warm().await.expect("warm");
            range.warmed();
        }
        while range.remaining() > 0 {
            range.send_to(&tx).expect("send");
        }
        drop(tx);
        assert_eq!(reader.join().expect("reader"), &data[1000..data.len() - 7]);
    }

    #[tokio::test]
    async fn a_file_shorter_than_its_range_is_an_error_not_a_short_success() {
        let data = vec![1u8; 10_000];
        let mut range = FileRange::new(file_of(&data), 0, 20_000, None);
        let (tx, _rx) = UnixStream::pair().expect("socket pair");
        assert_eq!(range.send_to(&tx).expect("the bytes that are there"), 10_000);
        let err = range.send_to(&tx).expect_err("then the end of the file");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// A file holding `data`, its times set in the past (so that a write now changes them whatever the clock's
    /// granularity), with the stamp of that state: a committed blob's file as opened.
    fn committed(data: &[u8]) -> (Arc<File>, Stamp) {
        let file = file_of(data);
        file.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
            .expect("set mtime");
        let stamp = Stamp::of(&file.metadata().expect("stat"));
        (file, stamp)
    }

    /// Send `range` to `tx` until it ends or fails; the error, if it failed.
    fn send_all(range: &mut FileRange, tx: &UnixStream) -> Option<io::Error> {
        while range.remaining() > 0 {
            if let Err(e) = range.send_to(tx) {
                return Some(e);
            }
        }
        None
    }

    fn reading(mut rx: UnixStream) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let _ = rx.read_to_end(&mut got);
            got
        })
    }

    #[test]
    fn a_file_written_in_place_while_sent_fails_before_its_last_piece_and_reports_its_version_now() {
        let data: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let (file, stamp) = committed(&data);
        let reported = Arc::new(std::sync::Mutex::new(None));
        let seen = reported.clone();
        let mut range = FileRange::new(file.clone(), 0, data.len() as u64, Some(stamp))
            .on_change(move |now| *seen.lock().expect("lock") = Some(now));
        let (tx, rx) = UnixStream::pair().expect("socket pair");
        let reader = reading(rx);
        // The first piece leaves; then the file is written in place.
        while range.remaining() > data.len() as u64 - SEND_PIECE {
            range.send_to(&tx).expect("the first piece");
        }
        file.write_at(b"tampered", 3 * 1024 * 1024).expect("write in place");
        let err = send_all(&mut range, &tx).expect("the range fails");
        drop(tx);
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let got = reader.join().expect("reader");
        assert!(got.len() < data.len(), "{} of {} bytes: never the whole body", got.len(), data.len());
        // Not checked per piece: the middle piece left, the last one did not.
        assert_eq!(got.len() as u64, data.len() as u64 - range.remaining());
        assert_eq!(range.remaining(), data.len() as u64 - 2 * SEND_PIECE, "refused exactly at the last piece");
        let now = Stamp::of(&file.metadata().expect("stat")).version();
        assert_eq!(*reported.lock().expect("lock"), Some(now), "reported once, with the version there now");
    }

    #[test]
    fn a_file_cut_short_while_sent_is_reported_where_it_ends() {
        let data = vec![6u8; 5 * 1024 * 1024];
        let (file, stamp) = committed(&data);
        let reported = Arc::new(std::sync::Mutex::new(None));
        let seen = reported.clone();
        let mut range = FileRange::new(file.clone(), 0, data.len() as u64, Some(stamp))
            .on_change(move |now| *seen.lock().expect("lock") = Some(now));
        file.set_len(1024 * 1024).expect("cut");
        let (tx, rx) = UnixStream::pair().expect("socket pair");
        let reader = reading(rx);
        let err = send_all(&mut range, &tx).expect("the range fails");
        drop(tx);
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(reader.join().expect("reader").len(), 1024 * 1024, "what was there, and no more");
        assert!(reported.lock().expect("lock").is_some(), "reported as a change");
    }

    #[test]
    fn a_file_unlinked_while_sent_still_arrives_whole() {
        let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("blob");
        std::fs::write(&path, &data).expect("write");
        let file = Arc::new(File::open(&path).expect("open"));
        let stamp = Stamp::of(&file.metadata().expect("stat"));
        let mut range = FileRange::new(file, 0, data.len() as u64, Some(stamp))
            .on_change(|_| panic!("an evicted file's bytes did not change"));
        let (tx, rx) = UnixStream::pair().expect("socket pair");
        let reader = reading(rx);
        range.send_to(&tx).expect("a first piece");
        // Evicted (or replaced by a fresh copy) while a client reads it: its bytes stay what they were.
        std::fs::remove_file(&path).expect("unlink");
        assert!(send_all(&mut range, &tx).is_none(), "the rest is sent");
        drop(tx);
        assert_eq!(reader.join().expect("reader"), data);
    }

    #[test]
    fn a_range_without_a_stamp_is_never_refused() {
        // A running transfer's growing file: its bytes were hashed as they were written.
        let data = vec![5u8; 100_000];
        let file = file_of(&data);
        let mut range = FileRange::new(file.clone(), 0, data.len() as u64, None);
        file.write_at(b"more", 100_000).expect("the file grows");
        let (tx, rx) = UnixStream::pair().expect("socket pair");
        let reader = reading(rx);
        assert!(send_all(&mut range, &tx).is_none());
        drop(tx);
        assert_eq!(reader.join().expect("reader"), data);
    }

    #[test]
    fn pages_just_written_are_cached_and_a_warmed_piece_needs_no_probe() {
        let range = FileRange::new(file_of(&vec![9u8; 100_000]), 0, 100_000, None);
        // Written a moment ago, so in the page cache (where RWF_NOWAIT works).
        assert!(!range.needs_warming());
        let mut past = FileRange::new(file_of(&[1u8; 10]), 0, 100_000, None);
        // Nothing is at the piece's last byte: it is not known to be cached, until warmed.
        assert!(past.needs_warming());
        past.warmed();
        assert!(!past.needs_warming());
    }
}
