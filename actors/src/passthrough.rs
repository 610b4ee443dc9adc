//! An upstream body streamed straight to one client without touching the store (the blob cannot be cached). The
//! digest and length are checked as bytes pass; the last chunk is held back until the check has passed, so a bad
//! body never reaches the client as a complete response.

use bytes::Bytes;
use futures_util::stream;

use crate::body::{Body, BodyEvent};
use crate::digest::{Digest, Digester};
use crate::error::UpstreamError;
use crate::read::ByteStream;

struct State {
    digest: Digest,
    expected_len: Option<u64>,
    upstream: String,
    body: Body,
    hasher: Option<Digester>,
    held: Option<Bytes>,
    seen: u64,
    done: bool,
}

impl State {
    /// The error for a body that ended but did not verify.
    fn mismatch(&self, actual: Option<Digest>) -> UpstreamError {
        match actual {
            Some(actual) if actual != self.digest => {
                UpstreamError::DigestMismatch { upstream: self.upstream.clone(), expected: self.digest.clone(), actual }
            }
            _ => UpstreamError::LengthMismatch {
                upstream: self.upstream.clone(),
                expected: self.expected_len.unwrap_or(0),
                got: self.seen,
            },
        }
    }
}

/// See the module documentation.
pub fn verified_passthrough(digest: Digest, expected_len: Option<u64>, upstream: String, body: Body) -> ByteStream {
    let hasher = Some(Digester::new(digest.algorithm()));
    let state = State { digest, expected_len, upstream, body, hasher, held: None, seen: 0, done: false };
    Box::pin(stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            match s.body.recv().await {
                Some(Ok(BodyEvent::Data(chunk))) => {
                    s.seen += chunk.len() as u64;
                    if let Some(h) = s.hasher.as_mut() {
                        h.update(&chunk);
                    }
                    if let Some(prev) = s.held.replace(chunk) {
                        return Some((Ok(prev), s));
                    }
                }
                Some(Ok(BodyEvent::End)) => {
                    s.done = true;
                    let length_ok = s.expected_len.is_none_or(|n| n == s.seen);
                    let actual = s.hasher.take().map(Digester::finalize);
                    if actual.as_ref() == Some(&s.digest) && length_ok {
                        let last = s.held.take().unwrap_or_default();
                        return Some((Ok(last), s));
                    }
                    let err = s.mismatch(actual);
                    tracing::warn!(error = %err, "uncached blob failed verification; aborting the client's download");
                    return Some((Err(std::io::Error::other(err.to_string())), s));
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
    use futures_util::StreamExt;
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn passthrough_verifies_and_holds_back_the_last_chunk() {
        let good = Bytes::from_static(b"some blob bytes");
        let d = Digest::sha256_of(&good);
        for (payload, ok) in [(good.clone(), true), (Bytes::from_static(b"some blob bytez"), false)] {
            let (tx, rx) = mpsc::channel(4);
            tx.send(Ok(BodyEvent::Data(payload.slice(..5)))).await.expect("send");
            tx.send(Ok(BodyEvent::Data(payload.slice(5..)))).await.expect("send");
            tx.send(Ok(BodyEvent::End)).await.expect("send");
            let items: Vec<_> = verified_passthrough(d.clone(), Some(15), "up".into(), rx).collect().await;
            let clean = items.iter().all(|i| i.is_ok());
            assert_eq!(clean, ok, "payload {payload:?}");
            if !ok {
                let delivered: usize = items.iter().filter_map(|i| i.as_ref().ok()).map(|b| b.len()).sum();
                assert!(delivered < 15, "a bad body must never be delivered whole");
            }
        }
    }
}
