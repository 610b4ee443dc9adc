//! An upstream body streamed straight to one client without touching the store (the blob cannot be cached). The
//! digest and length are checked as bytes pass; the last chunk is held back until the check has passed, so a bad
//! body never reaches the client as a complete response.
//!
//! No disk is at stake, but a body must still end: one that passes its announced length, or (announcing none) the
//! largest blob accepted (`Expected::limit`), is cut there. The client's response then ends with an error (its
//! connection is cut, never a clean end), and the upstream body is closed at once, which closes its connection.

use bytes::Bytes;
use futures_util::stream;
use prometheus::IntCounterVec;

use crate::body::{Body, BodyEvent};
use crate::digest::{Digest, Digester};
use crate::error::UpstreamError;
use crate::fetch::bound::Limit;
use crate::metrics::error_reason;
use crate::read::ByteStream;

/// What a passed-through body must be, and where its failures are counted.
pub struct Expected {
    /// The blob asked for.
    pub digest: Digest,
    /// The length the upstream announced, if any: not a byte more is passed on.
    pub len: Option<u64>,
    /// For a body without a length: the most bytes passed on (`BlobBound::pass_through_limit`); `None`: unbounded.
    pub limit: Option<Limit>,
    /// The upstream's namespace (messages, metric label).
    pub upstream: String,
    /// `ociregistry_upstream_errors_total`, by namespace and reason.
    pub errors: IntCounterVec,
}

impl Expected {
    /// The error for a body that has now passed `seen` bytes, if that is more than it may send.
    fn over(&self, seen: u64) -> Option<UpstreamError> {
        let upstream = self.upstream.clone();
        match (self.len, self.limit) {
            (Some(expected), _) if seen > expected => {
                Some(UpstreamError::LengthMismatch { upstream, expected, got: seen })
            }
            (None, Some(limit)) if seen > limit.bytes => {
                Some(UpstreamError::TooLarge { upstream, limit: usize::try_from(limit.bytes).unwrap_or(usize::MAX) })
            }
            _ => None,
        }
    }

    /// Count a body that failed its check.
    fn count(&self, error: &UpstreamError) {
        self.errors.with_label_values(&[&self.upstream, error_reason(error)]).inc();
    }
}

struct State {
    expected: Expected,
    body: Body,
    hasher: Option<Digester>,
    held: Option<Bytes>,
    seen: u64,
    done: bool,
}

impl State {
    /// The error for a body that ended but did not verify.
    fn mismatch(&self, actual: Option<Digest>) -> UpstreamError {
        let upstream = self.expected.upstream.clone();
        match actual {
            Some(actual) if actual != self.expected.digest => {
                UpstreamError::DigestMismatch { upstream, expected: self.expected.digest.clone(), actual }
            }
            _ => UpstreamError::LengthMismatch { upstream, expected: self.expected.len.unwrap_or(0), got: self.seen },
        }
    }

    /// End the client's body with `error`; the upstream body is closed now (its pump stops and drops the
    /// connection), not when the client's response is dropped.
    fn fail(&mut self, error: &UpstreamError) -> std::io::Error {
        self.done = true;
        self.held = None;
        self.body.close();
        self.expected.count(error);
        std::io::Error::other(error.to_string())
    }
}

/// See the module documentation.
pub fn verified_passthrough(expected: Expected, body: Body) -> ByteStream {
    let hasher = Some(Digester::new(expected.digest.algorithm()));
    let state = State { expected, body, hasher, held: None, seen: 0, done: false };
    Box::pin(stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            match s.body.recv().await {
                Some(Ok(BodyEvent::Data(chunk))) => {
                    s.seen += chunk.len() as u64;
                    if let Some(err) = s.expected.over(s.seen) {
                        tracing::warn!(blob = %s.expected.digest, upstream = %s.expected.upstream, error = %err, "uncached blob sent more than it may; cut");
                        let err = s.fail(&err);
                        return Some((Err(err), s));
                    }
                    if let Some(h) = s.hasher.as_mut() {
                        h.update(&chunk);
                    }
                    if let Some(prev) = s.held.replace(chunk) {
                        return Some((Ok(prev), s));
                    }
                }
                Some(Ok(BodyEvent::End)) => {
                    s.done = true;
                    let length_ok = s.expected.len.is_none_or(|n| n == s.seen);
                    let actual = s.hasher.take().map(Digester::finalize);
                    if actual.as_ref() == Some(&s.expected.digest) && length_ok {
                        let last = s.held.take().unwrap_or_default();
                        return Some((Ok(last), s));
                    }
                    let err = s.mismatch(actual);
                    tracing::warn!(error = %err, "uncached blob failed verification; aborting the client's download");
                    let err = s.fail(&err);
                    return Some((Err(err), s));
                }
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(std::io::Error::other(e.to_string())), s));
                }
                None => {
                    s.done = true;
                    return Some((Err(std::io::Error::other("upstream body ended without completing")), s));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::bound::LimitBy;
    use futures_util::StreamExt;
    use tokio::sync::mpsc;

    fn errors() -> IntCounterVec {
        IntCounterVec::new(prometheus::Opts::new("errors", "test"), &["ns", "reason"]).expect("counter")
    }

    fn expected(digest: &Digest, len: Option<u64>, limit: Option<u64>, errors: &IntCounterVec) -> Expected {
        let limit = limit.map(|bytes| Limit { bytes, by: LimitBy::MaxBlobSize });
        Expected { digest: digest.clone(), len, limit, upstream: "up".into(), errors: errors.clone() }
    }

    #[tokio::test]
    async fn passthrough_verifies_and_holds_back_the_last_chunk() {
        let good = Bytes::from_static(b"some blob bytes");
        let d = Digest::sha256_of(&good);
        for (payload, ok) in [(good.clone(), true), (Bytes::from_static(b"some blob bytez"), false)] {
            let (tx, rx) = mpsc::channel(4);
            tx.send(Ok(BodyEvent::Data(payload.slice(..5)))).await.expect("send");
            tx.send(Ok(BodyEvent::Data(payload.slice(5..)))).await.expect("send");
            tx.send(Ok(BodyEvent::End)).await.expect("send");
            let items: Vec<_> = verified_passthrough(expected(&d, Some(15), None, &errors()), rx).collect().await;
            let clean = items.iter().all(|i| i.is_ok());
            assert_eq!(clean, ok, "payload {payload:?}");
            if !ok {
                let delivered: usize = items.iter().filter_map(|i| i.as_ref().ok()).map(|b| b.len()).sum();
                assert!(delivered < 15, "a bad body must never be delivered whole");
            }
        }
    }

    /// Feed `chunks` chunks of `size` bytes (then `End`) through a pass-through; the bytes delivered, whether it
    /// ended with an error, and whether the upstream body was closed once the pass-through stopped.
    async fn through(chunks: usize, size: usize, len: Option<u64>, limit: Option<u64>) -> (u64, bool, bool, u64) {
        let errors = errors();
        let (tx, rx) = mpsc::channel(4);
        let feeder = tx.clone();
        tokio::spawn(async move {
            for _ in 0..chunks {
                if feeder.send(Ok(BodyEvent::Data(Bytes::from(vec![0; size])))).await.is_err() {
                    return;
                }
            }
            let _ = feeder.send(Ok(BodyEvent::End)).await;
        });
        let digest = Digest::sha256_of(&vec![0u8; chunks * size]);
        let mut out = verified_passthrough(expected(&digest, len, limit, &errors), rx);
        let (mut delivered, mut failed) = (0u64, false);
        while let Some(item) = out.next().await {
            match item {
                Ok(bytes) => delivered += bytes.len() as u64,
                Err(_) => failed = true,
            }
        }
        // The stream is still held: only the pass-through itself can have closed the upstream body.
        let closed = tx.is_closed();
        drop(out);
        let counted = errors.get_metric_with_label_values(&["up", "too_large"]).map(|c| c.get()).unwrap_or(0)
            + errors.get_metric_with_label_values(&["up", "connect"]).map(|c| c.get()).unwrap_or(0);
        (delivered, failed, closed, counted)
    }

    #[tokio::test]
    async fn a_body_without_a_length_is_cut_past_the_limit_and_its_upstream_closed() {
        let (delivered, failed, closed, counted) = through(1000, 1024, None, Some(10 * 1024)).await;
        assert!(failed, "ends with an error, never a clean end");
        assert!(delivered <= 10 * 1024, "{delivered} bytes passed the limit");
        assert!(closed, "the upstream body is closed at the cut");
        assert_eq!(counted, 1, "the cut is counted");
        let (delivered, failed, _, counted) = through(10, 1024, None, Some(10 * 1024)).await;
        assert!(!failed && delivered == 10 * 1024 && counted == 0, "within the limit: {delivered} bytes, {failed}");
    }

    #[tokio::test]
    async fn a_body_longer_than_its_announced_length_is_cut_before_the_extra_bytes_pass() {
        let (delivered, failed, closed, counted) = through(1000, 1024, Some(4096), None).await;
        assert!(failed, "ends with an error");
        assert!(delivered <= 4096, "{delivered} bytes passed where 4096 were announced");
        assert!(closed, "the upstream body is closed at the cut");
        assert_eq!(counted, 1, "the cut is counted");
    }
}
