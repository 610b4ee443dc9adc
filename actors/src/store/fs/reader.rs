//! Positioned reads of one open file, chunk after chunk, for a client's stream.
//!
//! What the page cache holds is copied on the caller's thread (`preadv2` with `RWF_NOWAIT`, which never waits for
//! the disk); whatever would have to wait for the disk is read on the blocking pool, so a hot blob costs no thread
//! hop and a cold one never blocks an HTTP worker. Each chunk is lent out (`Lent`) and its memory comes back when
//! the last holder drops it (the connection copies a chunk out as it takes it), so the next chunk of the same
//! stream is read into the same buffer: a large blob streams through one buffer, still warm in the CPU cache, with
//! no allocation and no zeroing per chunk. The handle stays valid when the file is renamed or unlinked, so a reader
//! keeps the bytes it opened.
//!
//! A reader of a committed blob keeps the file's `Stamp` from when it was opened, so its client's stream can ask,
//! before the last chunk leaves, whether the bytes changed since (`ObjectReader::changed`: one `fstat`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::store::backend::ObjectReader;
use crate::store::records::Version;
use crate::store::send::FileRange;
use crate::store::stamp::Stamp;

/// A buffer back from the chunk it was lent to, waiting for the next read.
type Spare = Mutex<Option<Vec<u8>>>;

pub(super) struct FileReader {
    file: Arc<File>,
    spare: Arc<Spare>,
    /// A committed blob's file as opened; `None` for the growing file of a write.
    stamp: Option<Stamp>,
}

impl FileReader {
    /// A reader of a write's growing file.
    pub(super) fn new(file: Arc<File>) -> Self {
        FileReader { file, spare: Arc::new(Mutex::new(None)), stamp: None }
    }

    /// A reader of a committed blob's file, opened as `stamp` says.
    pub(super) fn committed(file: Arc<File>, stamp: Stamp) -> Self {
        FileReader { stamp: Some(stamp), ..FileReader::new(file) }
    }

    /// `len` initialised bytes to read into: the spare buffer when it is back and large enough, else a new one.
    fn buffer(&self, len: usize) -> Vec<u8> {
        match self.spare.lock().ok().and_then(|mut spare| spare.take()) {
            Some(mut buf) if buf.capacity() >= len => {
                // Zeroes only what the buffer never held (nothing, chunk after chunk of the same size).
                buf.resize(len, 0);
                buf
            }
            _ => vec![0; len],
        }
    }
}

/// A chunk's memory, lent to whoever holds the `Bytes`; given back to its reader (if it is still there) on drop.
struct Lent {
    buf: Vec<u8>,
    len: usize,
    home: Weak<Spare>,
}

impl Lent {
    /// The first `len` bytes of `buf` as a chunk whose memory goes back to `home` when it is dropped.
    fn chunk(buf: Vec<u8>, len: usize, home: Weak<Spare>) -> Bytes {
        Bytes::from_owner(Lent { buf, len, home })
    }
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            if let Ok(mut spare) = home.lock() {
                *spare = Some(std::mem::take(&mut self.buf));
            }
        }
    }
}

/// Read what the page cache holds of `buf.len()` bytes at `offset`, without waiting for the disk: the number of bytes
/// copied, 0 when none could be had that way (not cached, or a filesystem that cannot tell).
fn read_cached(file: &File, buf: &mut [u8], offset: u64) -> usize {
    use rustix::io::{preadv2, ReadWriteFlags};
    let mut filled = 0;
    while filled < buf.len() {
        let slice = &mut [std::io::IoSliceMut::new(&mut buf[filled..])];
        match preadv2(file, slice, offset + filled as u64, ReadWriteFlags::NOWAIT) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

/// Reads up to this size are tried from the page cache on the caller's thread: a client's chunks (`read.rs`) and
/// the small blobs read whole. The large reads of background work (scrub, resume, spool upload) go to the pool.
const INLINE_READ: usize = 256 * 1024;

impl ObjectReader for FileReader {
    fn read_range(&self, offset: u64, len: usize) -> BoxFuture<'static, std::io::Result<Bytes>> {
        let mut buf = self.buffer(len);
        let home = Arc::downgrade(&self.spare);
        let cached = if len <= INLINE_READ { read_cached(&self.file, &mut buf, offset) } else { 0 };
        if cached == len {
            return futures_util::future::ready(Ok(Lent::chunk(buf, len, home))).boxed();
        }
        // The rest (or the end of the file: then the pool finds nothing more) from the blocking pool.
        let file = self.file.clone();
        async move {
            let (buf, n) = tokio::task::spawn_blocking(move || {
                let n = file.read_at(&mut buf[cached..], offset + cached as u64)?;
                Ok::<_, std::io::Error>((buf, cached + n))
            })
            .await
            .map_err(std::io::Error::other)??;
            Ok(Lent::chunk(buf, n, home))
        }
        .boxed()
    }

    fn file_range(&self, start: u64, end: u64) -> Option<FileRange> {
        Some(FileRange::new(self.file.clone(), start, end, self.stamp))
    }

    fn changed(&self) -> std::io::Result<Option<Version>> {
        match &self.stamp {
            Some(stamp) => stamp.changed(&self.file),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::stamp::file_of;

    #[tokio::test]
    async fn chunks_read_the_right_bytes_and_reuse_the_buffer_given_back() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let reader = FileReader::new(file_of(&data));
        let first = reader.read_range(0, 4096).await.expect("read");
        assert_eq!(&first[..], &data[..4096]);
        let first_at = first.as_ptr();
        // Held: the next chunk cannot use its memory.
        let second = reader.read_range(4096, 4096).await.expect("read");
        assert_eq!(&second[..], &data[4096..8192]);
        assert_ne!(second.as_ptr(), first_at);
        drop(first);
        drop(second);
        // Given back: the next chunk is read into it, and holds the new bytes.
        let third = reader.read_range(8192, 4096).await.expect("read");
        assert_eq!(&third[..], &data[8192..12288]);
        let reused = third.as_ptr();
        drop(third);
        let fourth = reader.read_range(12288, 4096).await.expect("read");
        assert_eq!(fourth.as_ptr(), reused);
        assert_eq!(&fourth[..], &data[12288..16384]);
    }

    #[tokio::test]
    async fn a_read_past_the_end_is_short_and_then_empty() {
        let data = vec![7u8; 10_000];
        let reader = FileReader::new(file_of(&data));
        let tail = reader.read_range(8_000, 4096).await.expect("read");
        assert_eq!(tail.len(), 2_000);
        assert!(tail.iter().all(|b| *b == 7));
        drop(tail);
        // A buffer given back with stale bytes past the short read never shows them.
        let none = reader.read_range(10_000, 4096).await.expect("read");
        assert!(none.is_empty());
    }

    #[test]
    fn a_committed_blobs_reader_tells_a_change_in_place_but_not_an_unlink() {
        use std::time::{Duration, SystemTime};
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("blob");
        std::fs::write(&path, vec![1u8; 10_000]).expect("write");
        let open = || {
            let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open");
            // Times in the past, so that a write now changes them whatever the clock's granularity.
            file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)).expect("set mtime");
            let stamp = Stamp::of(&file.metadata().expect("stat"));
            (Arc::new(file), stamp)
        };
        let (file, stamp) = open();
        let reader = FileReader::committed(file.clone(), stamp);
        assert_eq!(reader.changed().expect("fstat"), None, "untouched");
        file.write_at(b"x", 5_000).expect("write in place");
        let now = Stamp::of(&file.metadata().expect("stat")).version();
        assert_eq!(reader.changed().expect("fstat"), Some(now), "written in place");

        let (file, stamp) = open();
        let reader = FileReader::committed(file.clone(), stamp);
        file.set_len(4_000).expect("truncate");
        assert!(reader.changed().expect("fstat").is_some(), "cut short");

        let (file, stamp) = open();
        let reader = FileReader::committed(file, stamp);
        std::fs::remove_file(&path).expect("unlink");
        assert_eq!(reader.changed().expect("fstat"), None, "evicted while read: the bytes are the same");
    }

    #[test]
    fn a_writes_reader_never_tells_a_change() {
        let file = file_of(&[1u8; 100]);
        let reader = FileReader::new(file.clone());
        file.write_at(b"more", 100).expect("the write goes on");
        assert_eq!(reader.changed().expect("no check"), None);
    }

    #[tokio::test]
    async fn a_chunk_outliving_its_reader_stays_readable() {
        let data = vec![3u8; 5_000];
        let reader = FileReader::new(file_of(&data));
        let chunk = reader.read_range(0, 5_000).await.expect("read");
        drop(reader);
        assert_eq!(chunk.len(), 5_000);
        assert!(chunk.iter().all(|b| *b == 3));
    }
}
