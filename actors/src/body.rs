//! An upstream response body as the pool hands it out: a bounded channel of `Send` events that ends with an explicit
//! `End` or an error. A channel that closes without either is a broken transfer, never a finished one.

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::UpstreamError;

/// One event of an upstream body.
#[derive(Debug)]
pub enum BodyEvent {
    /// The next bytes.
    Data(Bytes),
    /// The body is complete.
    End,
}

/// The receiving end of a body.
pub type Body = mpsc::Receiver<Result<BodyEvent, UpstreamError>>;
