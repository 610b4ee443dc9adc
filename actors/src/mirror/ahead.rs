//! Ranges ahead of a blob's transfer (issue 25): a lazy puller reads a layer's table of contents at its end before
//! anything else, and containerd may fetch one layer as several ranges at once. A range of a blob whose transfer has
//! not delivered its start, and will not within about a second at its current pace (`pace.rs`), is answered with a
//! ranged GET of just that range (`Range: bytes=S-E`) through the upstream pool (its auth, retries, breaker, and
//! `upstreamBandwidth`, whose lane a range takes by its own length), streamed to the client as soon as the upstream
//! answers. The blob's transfer runs on as before, once per digest, verified before it is committed.
//!
//! Honesty: the mirror cannot check a range against the blob's digest (the client does, chunk by chunk, for the lazy
//! formats). A passed-through range is exactly the bytes the upstream sent for it: the answer must be a 206 whose
//! `Content-Range` is the range asked for, of the blob's size; not a byte more than the range is passed on, and a
//! body that ends short cuts the client's response. They are never cached as such: written into the blob's download
//! as a piece (`pieces.rs`), so that the transfer does not fetch them again, they are hashed with the rest before the
//! blob is committed. Counted in `ociregistry_range_passthrough_total` and `_bytes_total`; `rangePassThrough: false`
//! turns it off (ranges then wait for the transfer's verified bytes, as before).
//!
//! An answer that cannot be used as the range (an upstream that ignores `Range` and sends the whole blob with 200, a
//! `Content-Range` or length other than the one asked for, an error) is dropped at once, which closes its upstream
//! connection, and the range waits for the transfer instead: nothing of it reaches the client, and no second
//! transfer starts.

use bytes::Bytes;
use futures_util::stream;
use prometheus::IntCounter;

use super::blobs::blob_fetch;
use super::response::{BlobResponse, BlobSource};
use super::Mirror;
use crate::body::{Body, BodyEvent};
use crate::digest::Digest;
use crate::pieces::Piece;
use crate::read::ByteStream;
use crate::reference::ImageKey;

/// A single range as a request states it, before a size resolves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=FIRST-LAST`, or `bytes=FIRST-` (to the end).
    From {
        /// The first byte.
        first: u64,
        /// The last byte, if stated.
        last: Option<u64>,
    },
    /// `bytes=-N`: the last N bytes.
    Suffix(u64),
}

impl RangeSpec {
    /// The bytes `start..end` (end exclusive) it names of a body of `size` bytes; `None` when it names none of them
    /// (unsatisfiable: 416).
    pub fn span(self, size: u64) -> Option<(u64, u64)> {
        let (start, end) = match self {
            RangeSpec::Suffix(0) => return None,
            RangeSpec::Suffix(n) => (size.saturating_sub(n), size),
            RangeSpec::From { first, last: None } => (first, size),
            RangeSpec::From { first, last: Some(last) } => (first, last.saturating_add(1).min(size)),
        };
        (start < size).then_some((start, end))
    }
}

impl Mirror {
    /// The response for the bytes `start..end` (end exclusive) of `blob`, as the front door answered it: unchanged,
    /// unless it follows a transfer that will not reach `start` soon and the upstream answers a ranged GET of
    /// exactly that range (see the module documentation). Costs a cached blob one `match`.
    pub async fn range_ahead(
        &self,
        image: &ImageKey,
        digest: &Digest,
        blob: BlobResponse,
        (start, end): (u64, u64),
    ) -> BlobResponse {
        let BlobSource::Transfer(transfer) = &blob.source else {
            return blob;
        };
        let Some(size) = blob.size.filter(|_| self.inner.range_pass_through && start < end) else {
            return blob;
        };
        if transfer.reaches_soon(start) {
            return blob;
        }
        // Its bytes go into the download too, so the transfer does not fetch them again (`pieces.rs`); a range that
        // overlaps another piece, or a store that cannot take pieces, is passed through without being kept.
        let piece = transfer.claim_piece(start, end);
        match self.fetch_range(image, digest, (start, end), size, piece).await {
            Some(bytes) => BlobResponse { size: Some(size), from_cache: false, source: BlobSource::Ranged(bytes) },
            None => blob,
        }
    }

    /// A range of a blob whose size is not known yet (its transfer's upstream announced none), as the request states
    /// it: passed through as above unless the transfer will reach its start soon (a suffix never), with the blob's
    /// size from the upstream's `Content-Range` and the range checked against it. `Ok`: the response, the bytes
    /// `start..end` it carries, and the blob's size; `Err`: `blob` unchanged (served whole, as before).
    pub async fn range_unsized(
        &self,
        image: &ImageKey,
        digest: &Digest,
        blob: BlobResponse,
        spec: RangeSpec,
    ) -> Result<(BlobResponse, (u64, u64), u64), BlobResponse> {
        let BlobSource::Transfer(transfer) = &blob.source else {
            return Err(blob);
        };
        let soon = match spec {
            RangeSpec::From { first, .. } => transfer.reaches_soon(first),
            RangeSpec::Suffix(n) => n == 0,
        };
        if !self.inner.range_pass_through || blob.size.is_some() || soon {
            return Err(blob);
        }
        let Ok(upstream) = self.inner.admission.upstream(image.ns()).await else {
            return Err(blob);
        };
        let name = upstream.namespace.to_string();
        let mut fetch = blob_fetch(upstream, image, digest, false);
        match spec {
            RangeSpec::From { first, last } => {
                (fetch.range_from, fetch.range_end) = (Some(first), last.map(|l| l.saturating_add(1)))
            }
            RangeSpec::Suffix(n) => fetch.range_suffix = Some(n),
        }
        let Ok(Ok(resp)) = self.inner.pool.send(fetch).await else {
            return Err(blob);
        };
        // The blob's size is the one the upstream states; the range must be what the request names of it.
        let stated = (resp.status == 206).then(|| resp.content_range.as_deref().and_then(parse_content_range));
        let checked = stated.flatten().and_then(|(_, _, total)| total).and_then(|size| {
            let span = spec.span(size)?;
            mismatch(resp.content_range.as_deref(), resp.content_length, span, size).is_none().then_some((span, size))
        });
        let Some(((start, end), size)) = checked else {
            tracing::warn!(blob = %digest, upstream = %name, ?spec, status = resp.status, content_range = ?resp.content_range, "ranged upstream GET of a blob of unknown size not usable; not passed on");
            return Err(blob);
        };
        let metrics = &self.inner.metrics;
        metrics.range_passthrough.with_label_values(&[&name]).inc();
        let counted = metrics.range_passthrough_bytes.with_label_values(&[&name]);
        let bytes = exact(resp.body, end - start, counted, None);
        Ok((
            BlobResponse { size: Some(size), from_cache: false, source: BlobSource::Ranged(bytes) },
            (start, end),
            size,
        ))
    }

    /// A ranged GET of `start..end` of the blob of `size` bytes: its body bounded to exactly the range, or `None`
    /// when the upstream's answer is not that range.
    async fn fetch_range(
        &self,
        image: &ImageKey,
        digest: &Digest,
        (start, end): (u64, u64),
        size: u64,
        piece: Option<Piece>,
    ) -> Option<ByteStream> {
        let upstream = self.inner.admission.upstream(image.ns()).await.ok()?;
        let name = upstream.namespace.to_string();
        let mut fetch = blob_fetch(upstream, image, digest, false);
        fetch.range_from = Some(start);
        fetch.range_end = Some(end);
        let resp = match self.inner.pool.send(fetch).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                tracing::info!(blob = %digest, upstream = %name, start, end, error = %e, "ranged upstream GET failed; the range waits for the blob's transfer");
                return None;
            }
            Err(_) => return None,
        };
        let len = end - start;
        let problem = match resp.status {
            206 => mismatch(resp.content_range.as_deref(), resp.content_length, (start, end), size),
            status => Some(format!("status {status} instead of 206")),
        };
        if let Some(problem) = problem {
            // Dropping the body closes the upstream connection at once (the pump stops with its receiver).
            tracing::warn!(blob = %digest, upstream = %name, start, end, "ranged upstream GET answered {problem}; not passed on, the range waits for the blob's transfer");
            return None;
        }
        tracing::debug!(blob = %digest, upstream = %name, start, end, "range passed through ahead of the transfer");
        let metrics = &self.inner.metrics;
        metrics.range_passthrough.with_label_values(&[&name]).inc();
        let counted = metrics.range_passthrough_bytes.with_label_values(&[&name]);
        Some(exact(resp.body, len, counted, piece))
    }
}

/// What is wrong with a 206 answer to `Range: bytes=start-(end-1)` of a blob of `size` bytes, if anything: its
/// `Content-Range` must be that range, of that size (or of an unstated one, `*`), and its length, if stated, the
/// range's.
pub(super) fn mismatch(
    content_range: Option<&str>,
    content_length: Option<u64>,
    (start, end): (u64, u64),
    size: u64,
) -> Option<String> {
    let Some(value) = content_range else {
        return Some("206 without Content-Range".into());
    };
    match parse_content_range(value) {
        Some((first, last, total)) if first == start && last + 1 == end && total.is_none_or(|t| t == size) => {
            match content_length {
                Some(n) if n != end - start => Some(format!("Content-Length {n} for a range of {}", end - start)),
                _ => None,
            }
        }
        _ => Some(format!("Content-Range {value:?} for bytes {start}-{}/{size}", end - 1)),
    }
}

/// `bytes FIRST-LAST/TOTAL` (`TOTAL` may be `*`): first, last, total.
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        n => Some(n.parse::<u64>().ok()?),
    };
    let (first, last) = (first.trim().parse::<u64>().ok()?, last.trim().parse::<u64>().ok()?);
    (last >= first).then_some((first, last, total))
}

/// `body` as exactly `len` bytes: a byte more, or an end short of `len`, ends the stream with an error (the client's
/// response is cut, never a clean end) and closes the upstream body at once. Bytes passed on are added to `counted`,
/// and written into the blob's download first through `piece` while it takes them.
pub(super) fn exact(body: Body, len: u64, counted: IntCounter, piece: Option<Piece>) -> ByteStream {
    struct State {
        body: Body,
        left: u64,
        counted: IntCounter,
        done: bool,
        piece: Option<Piece>,
    }
    let fail = |s: &mut State, why: String| {
        s.done = true;
        s.piece = None;
        s.body.close();
        std::io::Error::other(why)
    };
    let state = State { body, left: len, counted, done: false, piece };
    Box::pin(stream::unfold(state, move |mut s| async move {
        if s.done {
            return None;
        }
        let item: Result<Bytes, std::io::Error> = match s.body.recv().await {
            Some(Ok(BodyEvent::Data(chunk))) if chunk.len() as u64 > s.left => {
                Err(fail(&mut s, format!("the upstream sent more than the {len} bytes of the range")))
            }
            Some(Ok(BodyEvent::Data(chunk))) => {
                if let Some(piece) = s.piece.as_mut() {
                    if !piece.write(chunk.clone()).await {
                        s.piece = None;
                    }
                }
                s.left -= chunk.len() as u64;
                s.counted.inc_by(chunk.len() as u64);
                // The whole range: nothing more is read (the body, dropped with the stream, ends the pump), and the
                // piece is complete.
                s.done = s.left == 0;
                if s.done {
                    s.piece = None;
                }
                Ok(chunk)
            }
            Some(Ok(BodyEvent::End)) => {
                let why = format!("the range ended {} bytes short", s.left);
                Err(fail(&mut s, why))
            }
            Some(Err(e)) => Err(fail(&mut s, e.to_string())),
            None => Err(fail(&mut s, "the upstream body ended without completing".into())),
        };
        Some((item, s))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::sync::mpsc;

    #[test]
    fn only_the_range_asked_for_of_the_blobs_size_is_taken() {
        let want = (100, 200);
        let cases: &[(Option<&str>, Option<u64>, bool)] = &[
            (Some("bytes 100-199/1000"), Some(100), true),
            (Some("bytes 100-199/*"), None, true),
            (Some("bytes 100-199/1001"), Some(100), false),
            (Some("bytes 0-199/1000"), Some(200), false),
            (Some("bytes 100-198/1000"), Some(99), false),
            (Some("bytes 100-199/1000"), Some(1000), false),
            (Some("100-199/1000"), Some(100), false),
            (Some("bytes x-199/1000"), Some(100), false),
            (None, Some(100), false),
        ];
        for (range, length, ok) in cases {
            assert_eq!(mismatch(*range, *length, want, 1000).is_none(), *ok, "{range:?} {length:?}");
        }
    }

    #[test]
    fn a_stated_range_names_bytes_of_a_size_or_none() {
        let from = |first, last| RangeSpec::From { first, last };
        assert_eq!(RangeSpec::Suffix(10).span(1000), Some((990, 1000)));
        assert_eq!(RangeSpec::Suffix(5000).span(1000), Some((0, 1000)));
        assert_eq!(RangeSpec::Suffix(0).span(1000), None);
        assert_eq!(from(100, None).span(1000), Some((100, 1000)));
        assert_eq!(from(990, Some(5000)).span(1000), Some((990, 1000)));
        assert_eq!(from(1000, None).span(1000), None);
    }

    async fn run(chunks: &[&'static [u8]], end: bool, len: u64) -> (Vec<u8>, bool, bool, u64) {
        let (tx, rx) = mpsc::channel(16);
        for c in chunks {
            tx.send(Ok(BodyEvent::Data(Bytes::from_static(c)))).await.expect("send");
        }
        if end {
            tx.send(Ok(BodyEvent::End)).await.expect("send");
        }
        let counter = IntCounter::new("c", "c").expect("counter");
        let mut out = exact(rx, len, counter.clone(), None);
        let (mut got, mut failed) = (Vec::new(), false);
        while let Some(item) = out.next().await {
            match item {
                Ok(b) => got.extend_from_slice(&b),
                Err(_) => failed = true,
            }
        }
        (got, failed, tx.is_closed(), counter.get())
    }

    #[tokio::test]
    async fn a_range_is_passed_on_exactly_or_cut() {
        let (got, failed, closed, counted) = run(&[b"abc", b"def"], true, 6).await;
        assert!(got == b"abcdef" && !failed && counted == 6, "{got:?} {failed} {closed}");
        let (got, failed, closed, _) = run(&[b"abc", b"defg"], true, 6).await;
        assert!(got == b"abc" && failed && closed, "a byte too many: cut before it, {got:?}");
        let (got, failed, _, _) = run(&[b"abc"], true, 6).await;
        assert!(got == b"abc" && failed, "short: ends with an error");
    }
}
